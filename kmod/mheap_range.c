// SPDX-License-Identifier: GPL-2.0
/*
 * FAULT and RELEASE of ranges of a mapping of /dev/mheap (mheap_map.c has
 * the memory model, the huge pages and the locking they rely on): the
 * quarantine bitmap is set or cleared, the range's pages are zapped and
 * their references dropped, and the counters follow.
 *
 * A range boundary inside a block (FAULT or RELEASE of part of it) first
 * splits the multi-index entry into one entry per page (xas_split(), each
 * still the head page and one reference), before anything else changes, so
 * the command still acts on exactly its pages: their entries go and their
 * references with them, and the zap of the range clears the block's PMD.
 * The block's other pages stay and fault back in page by page with
 * vm_insert_page() of the subpage, and the compound page is freed with the
 * last of them (a block in which one page lives on holds 2 MiB; the
 * library faults whole 8 MiB chunks). A dropped page of it is never used
 * again: that index gets a new small page, so a pin of the old one keeps
 * what it had, as with small pages.
 */
#include <linux/bitmap.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/xarray.h>

#include "mheap_compat.h"
#include "mheap_internal.h"
#include "mheap_map.h"

/*
 * Runs of set bits that start at a position in [first, last] (last may be
 * npages, which is no position). Changing bits [first, last) changes only
 * these starts, so counting them before and after gives the change in runs.
 * The bitmap changes only under the map lock held for writing.
 */
static unsigned long run_starts(const struct mheap_map *map,
				unsigned long first, unsigned long last)
{
	const unsigned long *bm = map->quarantine;
	unsigned long end = min(last + 1, map->npages);
	unsigned long i = first, runs = 0;

	lockdep_assert_held(&map->lock);
	for (;;) {
		i = find_next_bit(bm, end, i);
		if (i >= end)
			return runs;
		if (i == 0 || !test_bit(i - 1, bm))
			runs++;
		i = find_next_zero_bit(bm, end, i);
	}
}

/* Set bits in [first, last). */
static unsigned long bits_set(const struct mheap_map *map,
			      unsigned long first, unsigned long last)
{
	const unsigned long *bm = map->quarantine;
	unsigned long i = first, n = 0, z;

	lockdep_assert_held(&map->lock);
	for (;;) {
		i = find_next_bit(bm, last, i);
		if (i >= last)
			return n;
		z = find_next_zero_bit(bm, last, i);
		n += z - i;
		i = z;
	}
}

/*
 * Unmap and drop the resident pages of [first, last), which start at addr
 * in vma. The map lock is held for writing, so no fault maps them again.
 *
 * What it costs is per command, not per page, wherever it can be: one zap of
 * the whole range (the kernel's mmu_gather flushes the TLB once, or once per
 * page table where dirty entries of these non-anonymous pages make
 * zap_pte_range() flush before it drops the page-table lock; a block's PMD
 * is one entry), then the xarray's references in batches of
 * MHEAP_DROP_BATCH entries: the entries of a batch are erased with one
 * xa_store_range() (a whole leaf node at a time where the batch covers one,
 * rather than entry by entry), the small pages go in one release_pages(),
 * and a whole block's 512 references in one folio_put_refs(). Between
 * batches the xarray lock is dropped and the CPU may be given up, so a
 * range of any size keeps latencies short. Blocks cut by the range's ends
 * have been split by split_ends() already: every whole-block entry met here
 * lies wholly inside the range.
 */
#define MHEAP_DROP_BATCH	XA_CHUNK_SIZE

static void drop_pages(struct mheap_map *map, struct vm_area_struct *vma,
		       unsigned long addr, unsigned long first,
		       unsigned long last)
{
	XA_STATE(xas, &map->pages, first);
	unsigned long start, next = first, dropped = 0;
	struct page *batch[MHEAP_DROP_BATCH], *blocks[MHEAP_DROP_BATCH], *page;
	int nr, nr_small, nr_blocks, i;

	lockdep_assert_held_write(&map->lock);
	start = first;
	if (!xa_find(&map->pages, &start, last - 1, XA_PRESENT))
		return;
	/* Page tables first: after this no CPU reaches the pages here. */
	mheap_zap_range(vma, addr, (last - first) << PAGE_SHIFT);

	do {
		/* Entries change only under the map lock, which is ours. */
		nr_small = 0;
		nr_blocks = 0;
		start = next;
		xas_set(&xas, start);
		rcu_read_lock();
		xas_for_each(&xas, page, last - 1) {
			if (PageHead(page) &&
			    xas_get_order(&xas) == MHEAP_BLOCK_ORDER) {
				blocks[nr_blocks++] = page;
				next = block_first(xas.xa_index) +
				       MHEAP_BLOCK_PAGES;
			} else {
				batch[nr_small++] = page;
				next = xas.xa_index + 1;
			}
			if (nr_small + nr_blocks == MHEAP_DROP_BATCH)
				break;
		}
		rcu_read_unlock();
		nr = nr_small + nr_blocks;
		if (!nr)
			break;
		xa_store_range(&map->pages, start, next - 1, NULL, GFP_KERNEL);
		/* Freed now unless a get_user_pages() pin still holds them. */
		release_pages(batch, nr_small);
		for (i = 0; i < nr_blocks; i++)
			folio_put_refs(page_folio(blocks[i]),
				       MHEAP_BLOCK_PAGES);
		dropped += nr_small + nr_blocks * MHEAP_BLOCK_PAGES;
		cond_resched();
	} while (nr == MHEAP_DROP_BATCH);
	mheap_count(map->ctx, MHEAP_C_RESIDENT, -(s64)(dropped << PAGE_SHIFT));
}

/*
 * If a range boundary at page offset idx cuts a whole block's entry, split
 * the entry into one per page, each the head page and one reference, as
 * before: nothing else changes, so this can come before the command does
 * anything, and need not be undone if it then fails. The xarray nodes it
 * needs are allocated first, which is the one way it can fail.
 */
static int split_block(struct mheap_map *map, unsigned long idx)
{
	XA_STATE(xas, &map->pages, block_first(idx));
	struct page *head;

	lockdep_assert_held_write(&map->lock);
	if (idx == block_first(idx) || idx >= map->npages ||
	    xa_get_order(&map->pages, idx) != MHEAP_BLOCK_ORDER)
		return 0;
	head = xa_load(&map->pages, idx);
	xas_split_alloc(&xas, head, MHEAP_BLOCK_ORDER, GFP_KERNEL);
	if (xas_error(&xas))
		return xas_error(&xas);
	xas_lock(&xas);
	xas_split(&xas, head, MHEAP_BLOCK_ORDER);
	xas_unlock(&xas);
	return 0;
}

/* The blocks cut by the ends of [first, last), split (see split_block()). */
static int split_ends(struct mheap_map *map, unsigned long first,
		      unsigned long last)
{
	return split_block(map, first) ?: split_block(map, last);
}

static int range_quarantine(struct mheap_map *map, struct vm_area_struct *vma,
			    unsigned long addr, unsigned long first,
			    unsigned long last)
{
	unsigned long added = (last - first) - bits_set(map, first, last);
	long runs = -(long)run_starts(map, first, last);
	int ret;

	/* Counted and changed with no fault or command in between. */
	lockdep_assert_held_write(&map->lock);
	ret = split_ends(map, first, last);
	if (ret)
		return ret;
	if (added) {
		ret = mheap_quarantine_reserve(map->ctx,
					       (u64)added << PAGE_SHIFT);
		if (ret)
			return ret;
	}
	bitmap_set(map->quarantine, first, last - first);
	runs += run_starts(map, first, last);
	map->nr_quarantined += added;
	map->nr_ranges += runs;
	mheap_count(map->ctx, MHEAP_C_RANGES, runs);
	drop_pages(map, vma, addr, first, last);
	return 0;
}

static int range_release(struct mheap_map *map, struct vm_area_struct *vma,
			 unsigned long addr, unsigned long first,
			 unsigned long last)
{
	unsigned long removed = bits_set(map, first, last);
	long runs = -(long)run_starts(map, first, last);
	int ret;

	lockdep_assert_held_write(&map->lock);
	ret = split_ends(map, first, last);
	if (ret)
		return ret;
	bitmap_clear(map->quarantine, first, last - first);
	runs += run_starts(map, first, last);
	map->nr_quarantined -= removed;
	map->nr_ranges += runs;
	mheap_count(map->ctx, MHEAP_C_RANGES, runs);
	if (removed)
		mheap_quarantine_unreserve(map->ctx, (u64)removed << PAGE_SHIFT);
	/* Whatever was not quarantined reads as zero afterwards too. */
	drop_pages(map, vma, addr, first, last);
	return 0;
}

/**
 * mheap_map_range - FAULT or RELEASE one range for the calling process
 * @file:       the descriptor the command came through
 * @r:          the range, as user space gave it
 * @quarantine: true for FAULT, false for RELEASE
 * @nonblock:   fail with -EAGAIN rather than wait for a lock (io_uring)
 *
 * Return: 0, or -EINVAL (bad or foreign range), -EDQUOT (over a limit),
 * -EINTR (fatal signal), -EAGAIN (would block), -ENOMEM (no memory to
 * split a huge page's index entry at a range boundary).
 */
int mheap_map_range(struct file *file, const struct mheap_range *r,
		    bool quarantine, bool nonblock)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	struct mheap_map *map;
	unsigned long first, last;
	u64 end;
	int ret;

	if (!r->len || !PAGE_ALIGNED(r->addr) || !PAGE_ALIGNED(r->len) ||
	    check_add_overflow(r->addr, r->len, &end) || end > TASK_SIZE)
		return -EINVAL;
	if (!mm)
		return -EINVAL;

	if (nonblock) {
		if (!mmap_read_trylock(mm))
			return -EAGAIN;
	} else if (mmap_read_lock_killable(mm)) {
		return -EINTR;
	}
	ret = -EINVAL;
	vma = vma_lookup(mm, r->addr);
	/* Only this descriptor's own mappings, whole ranges inside one. */
	if (!vma || vma->vm_ops != &mheap_vm_ops || vma->vm_file != file ||
	    end > vma->vm_end)
		goto out;
	map = vma->vm_private_data;
	if (!map)
		goto out;
	first = vma->vm_pgoff + ((r->addr - vma->vm_start) >> PAGE_SHIFT);
	last = first + (r->len >> PAGE_SHIFT);
	if (last > map->npages)
		goto out;

	if (nonblock) {
		ret = -EAGAIN;
		if (!down_write_trylock(&map->lock))
			goto out;
	} else {
		down_write(&map->lock);
	}
	if (quarantine)
		ret = range_quarantine(map, vma, r->addr, first, last);
	else
		ret = range_release(map, vma, r->addr, first, last);
	up_write(&map->lock);
out:
	mmap_read_unlock(mm);
	return ret;
}
