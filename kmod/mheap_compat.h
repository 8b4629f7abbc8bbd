/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences between the kernels the module is built for:
 * Debian 12's 6.1 and the 6.12 series of bookworm-backports. Every
 * version test of the module is in this file, one shim per change, each
 * saying which kernel changed what; the rest of the module calls the
 * mheap_*() names below and never tests a version itself. (So this is the
 * one file that make checkpatch lets use LINUX_VERSION_CODE.)
 */
#ifndef MHEAP_COMPAT_H
#define MHEAP_COMPAT_H

#include <linux/mm.h>
#include <linux/version.h>

/* Built for kernel a.b or a later one. */
#define MHEAP_KERNEL_SINCE(a, b) (LINUX_VERSION_CODE >= KERNEL_VERSION(a, b, 0))

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
 * The command area of the SQE. 6.5 replaced io_uring_cmd::cmd (a pointer to
 * the area) with io_uring_cmd::sqe (the whole SQE) and io_uring_sqe_cmd()
 * ("io_uring: Pass whole sqe to commands"). Either way
 * it points to a copy io_uring made, or to the SQ ring's memory, which user
 * space can change at any time: read it once.
 */
static inline const void *mheap_uring_cmd_area(const struct io_uring_cmd *ioucmd)
{
#if MHEAP_KERNEL_SINCE(6, 5)
	return io_uring_sqe_cmd(ioucmd->sqe);
#else
	return ioucmd->cmd;
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
