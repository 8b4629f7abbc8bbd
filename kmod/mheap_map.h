/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The state behind one mapping of /dev/mheap, shared by mheap_map.c (the
 * mapping's life and its page faults) and mheap_range.c (FAULT and
 * RELEASE of its ranges). Not ABI.
 */
#ifndef MHEAP_MAP_H
#define MHEAP_MAP_H

#include <linux/huge_mm.h>
#include <linux/mm.h>
#include <linux/refcount.h>
#include <linux/rwsem.h>
#include <linux/types.h>
#include <linux/xarray.h>

struct mheap_ctx;

/* A block: the pages one PMD maps (mheap_map.c, "Huge pages"). */
#define MHEAP_BLOCK_ORDER	HPAGE_PMD_ORDER
#define MHEAP_BLOCK_PAGES	HPAGE_PMD_NR

/**
 * struct mheap_map - the state behind one mapping of the device
 * @refs:       VMAs using it: one, and a second one while mremap() tries
 * @ctx:        the context it was mapped from (kept alive by vma->vm_file)
 * @mm:         the address space it belongs to; compared, never dereferenced
 * @npages:     its size in pages
 * @lock:       read: page faults; write: FAULT and RELEASE
 * @pages:      page offset -> struct page * of the resident pages; each
 *              page offset holds a page reference. A small page is an
 *              entry of its own; a block's compound page is one entry of
 *              order MHEAP_BLOCK_ORDER, or after a split one entry per page,
 *              each of them the head page
 * @quarantine: bitmap of the quarantined pages
 * @nr_quarantined: pages set in @quarantine
 * @nr_ranges:  runs of set bits in @quarantine
 */
struct mheap_map {
	refcount_t refs;
	struct mheap_ctx *ctx;
	const struct mm_struct *mm;
	unsigned long npages;
	struct rw_semaphore lock;
	struct xarray pages;
	unsigned long *quarantine;
	unsigned long nr_quarantined;
	unsigned long nr_ranges;
};

/* The first page offset of the block that page offset idx is in. */
static inline pgoff_t block_first(pgoff_t idx)
{
	return ALIGN_DOWN(idx, MHEAP_BLOCK_PAGES);
}

/* The mappings' vm_operations: a VMA with them is one of ours. */
extern const struct vm_operations_struct mheap_vm_ops;

#endif /* MHEAP_MAP_H */
