/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences between the kernels the module is built for:
 * Debian 12's 6.1 and the 6.12 series of bookworm-backports. Every
 * version test of the module is in this file, one shim per change, each
 * saying which kernel changed what; the rest of the module calls the
 * mheap_*() names below and never tests a version itself. The version is
 * the tree's own, as Kbuild passes it (MHEAP_KERNEL_AB: a.b as a * 256 + b,
 * from the VERSION and PATCHLEVEL of the tree's Makefile).
 */
#ifndef MHEAP_COMPAT_H
#define MHEAP_COMPAT_H

#include <linux/mm.h>
#include <linux/string.h>

/* Built for kernel a.b or a later one. */
#define MHEAP_KERNEL_SINCE(a, b) ((a) * 256 + (b) <= MHEAP_KERNEL_AB)

/*
 * 6.7 moved struct io_uring_cmd and io_uring_cmd_done() from
 * <linux/io_uring.h> to <linux/io_uring/cmd.h>, and the issue flags
 * (IO_URING_F_*) to <linux/io_uring_types.h>, which it includes ("io_uring:
 * split out cmd api into a separate header").
 */
#if MHEAP_KERNEL_SINCE(6, 7)
#include <linux/io_uring/cmd.h>
#else
#include <linux/io_uring.h>
#endif

/*
 * A command's SQE, as the module reads it: 64 bytes, or 128 with
 * IORING_SETUP_SQE128, whose command area (sqe.cmd, from byte 48) then
 * runs on into the second half.
 */
union mheap_uring_sqe {
	struct io_uring_sqe sqe;
	u8 bytes[2 * sizeof(struct io_uring_sqe)];
};

/*
 * Copy the SQE of ioucmd, once, into *copy: the module checks and uses only
 * the copy, since what io_uring points the driver to may be the SQ ring,
 * which user space can rewrite at any time.
 *
 * 6.5 replaced io_uring_cmd::cmd, a pointer to the command area, with
 * io_uring_cmd::sqe, the whole SQE ("io_uring: Pass whole sqe to
 * commands"). From then on the driver sees every field, in the ring or in
 * a copy of the whole SQE that io_uring makes when it punts the command.
 *
 * 6.1 shows the driver the command area alone, and io_uring copies just
 * that (io_uring_cmd_prep_async(), 16 or 80 bytes) before the driver's
 * first call for a command linked behind another, sent with IOSQE_ASYNC or
 * drained, and when the driver says -EAGAIN. The other fields are then
 * gone. On the other paths ->cmd points into the ring and the SQE lies
 * just before it, but only io_uring's own request flags (REQ_F_ASYNC_DATA
 * of struct io_kiocb) tell which case it is, and a check made there would
 * pass or fail the same SQE by the way it was issued. So on 6.1 the copy
 * has the command area and zeros elsewhere: the fields outside the area
 * read as zero, and the reserved ones (mheap_uring.c) are in effect
 * checked from 6.5 on only.
 */
static inline void mheap_uring_sqe_copy(const struct io_uring_cmd *ioucmd,
					unsigned int issue_flags,
					union mheap_uring_sqe *copy)
{
	size_t size = sizeof(struct io_uring_sqe);

	if (issue_flags & IO_URING_F_SQE128)
		size *= 2;
#if MHEAP_KERNEL_SINCE(6, 5)
	memcpy(copy->bytes, ioucmd->sqe, size);
#else
	memset(copy->bytes, 0, offsetof(struct io_uring_sqe, cmd));
	memcpy(copy->bytes + offsetof(struct io_uring_sqe, cmd), ioucmd->cmd,
	       size - offsetof(struct io_uring_sqe, cmd));
#endif
}

/*
 * 6.3 made vm_area_struct::vm_flags read-only: it is changed with
 * vm_flags_set() and vm_flags_clear(), which also take the VMA's write lock
 * for per-VMA locking ("mm: introduce vma->vm_flags wrapper
 * functions"). Before, the field was assigned under mmap_lock.
 * Both need mmap_lock held for writing.
 */
static inline void mheap_vm_flags_set(struct vm_area_struct *vma,
				      vm_flags_t flags)
{
#if MHEAP_KERNEL_SINCE(6, 3)
	vm_flags_set(vma, flags);
#else
	mmap_assert_write_locked(vma->vm_mm);
	vma->vm_flags |= flags;
#endif
}

static inline void mheap_vm_flags_clear(struct vm_area_struct *vma,
					vm_flags_t flags)
{
#if MHEAP_KERNEL_SINCE(6, 3)
	vm_flags_clear(vma, flags);
#else
	mmap_assert_write_locked(vma->vm_mm);
	vma->vm_flags &= ~flags;
#endif
}

/*
 * Unmap [addr, addr + size) of one VMA. 6.3 removed zap_page_range(), which
 * could cross VMAs ("mm: remove zap_page_range and create zap_vma_pages"),
 * and exports zap_page_range_single(), which 6.1 has but does not export. The range lies
 * within vma here, so both do the same. mmap_lock must be held.
 */
static inline void mheap_zap_range(struct vm_area_struct *vma,
				   unsigned long addr, unsigned long size)
{
	mmap_assert_locked(vma->vm_mm);
#if MHEAP_KERNEL_SINCE(6, 3)
	zap_page_range_single(vma, addr, size, NULL);
#else
	zap_page_range(vma, addr, size);
#endif
}

#endif /* MHEAP_COMPAT_H */
