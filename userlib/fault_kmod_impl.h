// SPDX-License-Identifier: MIT
/*
 * What the kmod backend's files share: fault_kmod.c (the device, the
 * registry of prepared chunks, fork) and fault_kmod_uring.c (the io_uring
 * transport).
 */
#ifndef MHEAP_FAULT_KMOD_IMPL_H
#define MHEAP_FAULT_KMOD_IMPL_H

#include <sys/mman.h>

#include "fault.h"
#include "internal.h"
#include "sysmem.h"

/* The descriptor of /dev/mheap, the process's context; -1 until probed. */
MH_HIDDEN extern int kmod_dev_fd;

/* The ring: its SQ and CQ take one submitter at a time. */
MH_HIDDEN extern mh_lock_t kmod_ring_lock;
/* Set the ring up on first use (kmod_ring_lock held); true if usable. */
MH_HIDDEN bool kmod_ring_ready(void);
/* FAULT or RELEASE (MHEAP_URING_CMD_*) n ranges through the ring
 * (kmod_ring_lock held); how many of the leading ones were done, *err
 * set when not all. */
MH_HIDDEN unsigned kmod_ring_ranges(unsigned cmd_op, const struct fault_range *r, unsigned n,
				    int *err);
/* In a fork child (kmod_ring_lock held): forget the parent's ring. */
MH_HIDDEN void kmod_ring_forget(void);

/* The tables and rings of these files hold chunk addresses: they are noted
 * in the metadata registry (sysmem.h), so that the quarantine scan skips
 * them; unmapped, they are forgotten there first. */
static inline void kmod_meta_unmap(void *p, size_t len)
{
	sys_metadata_forget(p, len);
	munmap(p, len);
}

#endif
