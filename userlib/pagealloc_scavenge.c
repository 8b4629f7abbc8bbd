// SPDX-License-Identifier: MIT
/*
 * The page allocator's side of the scavenger (Go's pageAlloc.scavengeOne,
 * mgcscavenge.go): which free, resident pages to release, taken from the
 * top of the heap down, and given back free and released once their memory
 * is returned to the OS. scavenge.c decides when and how many; pagealloc.h
 * says how the heap lock is dropped around the madvise.
 *
 * The walk starts at pa_scav_top, below which every free, resident page lies,
 * and skips chunks used within the scavenger's idle time (their pages are
 * likely to be allocated again soon), reporting when the first of them
 * turns idle.
 */
#include "pagealloc_impl.h"
#include "sysmem.h"

/* The bottom of the free, resident run that ends at page top (inclusive),
 * going no lower than floor: a word at a time. */
static unsigned resident_run_bottom(const struct heap_arena *ha, unsigned top, unsigned floor)
{
	unsigned i = top + 1;

	while (i > floor) {
		unsigned w = (i - 1) / 64;
		uint64_t v = (ha->alloc[w] | ha->scav[w]) & range_mask(0, i - w * 64);

		if (v) {
			i = w * 64 + 64 - (unsigned)__builtin_clzll(v);
			break;
		}
		i = w * 64;
	}
	return i > floor ? i : floor;
}

/* Highest free, resident page below hi, or -1. */
static long prev_resident_free(const struct heap_arena *ha, unsigned hi)
{
	while (hi > 0) {
		unsigned w = (hi - 1) / 64;
		uint64_t v = ~(ha->alloc[w] | ha->scav[w]) & range_mask(0, hi - w * 64);

		if (v)
			return (long)(w * 64 + 63 - (unsigned)__builtin_clzll(v));
		hi = w * 64;
	}
	return -1;
}

/* Set (take) or clear (give back) the allocation bits of pages
 * [first, first + n) of ha, whose scavenged bits are clear; hints: lower
 * the first fit hints if a run grew (pa_update_sums). */
static void mark_taken(struct heap_arena *ha, unsigned first, unsigned n, bool take, bool hints)
{
	for (unsigned w = first / 64; w * 64 < first + n; w++) {
		unsigned lo = w * 64 < first ? first - w * 64 : 0;
		unsigned hi = (w + 1) * 64 > first + n ? first + n - w * 64 : 64;

		if (take)
			ha->alloc[w] |= range_mask(lo, hi);
		else
			ha->alloc[w] &= ~range_mask(lo, hi);
	}
	if (hints)
		pa_update_sums(ha, first / PA_CHUNK_PAGES, (first + n - 1) / PA_CHUNK_PAGES);
	else
		pa_sums_only(ha, first / PA_CHUNK_PAGES, (first + n - 1) / PA_CHUNK_PAGES);
}

/*
 * The highest arena starting below top (arenas need not be adjacent: top
 * may sit at the base of one, above a gap), or NULL: looked up in the
 * arena map. Walked to from the head of the list, it cost a step per arena
 * below for each batch, and a batch holds at most an arena's pages:
 * releasing a freed block of n arenas took n * n steps.
 */
static struct heap_arena *arena_below(uintptr_t top)
{
	struct heap_arena *ha;

	if (!top)
		return NULL;
	if ((ha = arena_of(top - 1)))
		return ha;
	if ((ha = arena_of(top)))
		return ha->prev;
	for (ha = arenamap_last(); ha && ha->base >= top; ha = ha->prev)
		;
	return ha;
}

uint64_t pa_scavenging_pages;

uintptr_t pa_scavenge_take(uintptr_t npages, uint64_t idle_ns, struct pa_scav_batch *b)
{
	struct heap_arena *ha;
	uintptr_t kept_top = 0;	/* end of the highest resident run left alone */
	uint64_t now = idle_ns ? mh_nanotime() : 0;
	unsigned hi;

	b->n = 0;
	b->pages = 0;
	b->retry_at = 0;
	ha = arena_below(pa_scav_top);
	if (!ha)
		return 0;
	hi = pa_scav_top - ha->base >= MH_ARENA_SIZE ? MH_PAGES_PER_ARENA
						  : (unsigned)((pa_scav_top - ha->base) >> MH_PAGE_SHIFT);
	for (; ha; ha = ha->prev, hi = MH_PAGES_PER_ARENA) {
		while (b->pages < npages && b->n < PA_SCAV_BATCH) {
			long top = prev_resident_free(ha, hi);

			if (top < 0) {
				hi = 0;
				break;
			}
			unsigned c = (unsigned)top / PA_CHUNK_PAGES;
			unsigned floor = c * PA_CHUNK_PAGES;

			if (now - ha->chunk_used[c] < idle_ns) {
				/* Used within idle_ns: likely to be used again
				 * soon, so its pages stay (scavenge.c). */
				uint64_t cold_at = ha->chunk_used[c] + idle_ns;

				if (!b->retry_at || cold_at < b->retry_at)
					b->retry_at = cold_at;
				if (!kept_top)
					kept_top = ha->base + ((uintptr_t)(top + 1) << MH_PAGE_SHIFT);
				hi = floor;
				continue;
			}
			/* The run down to the chunk's floor, no longer than
			 * what is still wanted. */
			unsigned lo = resident_run_bottom(ha, (unsigned)top, floor);

			if ((uintptr_t)(top + 1 - lo) > npages - b->pages)
				lo = (unsigned)(top + 1 - (npages - b->pages));
			unsigned n = (unsigned)top + 1 - lo;

			mark_taken(ha, lo, n, true, true);
			b->base[b->n] = ha->base + ((uintptr_t)lo << MH_PAGE_SHIFT);
			b->npages[b->n++] = n;
			b->pages += n;
			hi = lo;
		}
		if (b->pages >= npages || b->n == PA_SCAV_BATCH)
			break;
	}
	/* Everything from here up is now in use, released, being released
	 * or left alone below kept_top. */
	pa_scav_top = ha ? ha->base + ((uintptr_t)hi << MH_PAGE_SHIFT) : 0;
	if (kept_top > pa_scav_top)
		pa_scav_top = kept_top;
	pa_scavenging_pages += b->pages;
	b->epoch = pa_epoch;
	return b->pages;
}

void pa_scavenge_release(const struct pa_scav_batch *b)
{
	for (unsigned i = 0; i < b->n; i++)
		sys_release((void *)b->base[i], (size_t)b->npages[i] << MH_PAGE_SHIFT);
}

/*
 * The pages go back free. If the page allocator did not change while they
 * were taken (no bit, no hint: pa_epoch), the free runs are again those of
 * the take, for which the hints held (the take only shortened runs and
 * moved none), and they stay. Else a run that grew lowers them, as any
 * free does. Lowered for every arena, a whole free region released from
 * the top down walked back through all the whole free arenas below at each
 * of its arenas: n * n steps.
 */
void pa_scavenge_return(const struct pa_scav_batch *b)
{
	bool hints = b->epoch != pa_epoch;

	for (unsigned i = 0; i < b->n; i++) {
		struct heap_arena *ha = arena_of(b->base[i]);
		unsigned first = (unsigned)arena_page(ha, b->base[i]);

		mark_taken(ha, first, (unsigned)b->npages[i], false, hints);
		pa_set_scavenged(ha, first, (unsigned)b->npages[i]);
		ha->chunk_released[first / PA_CHUNK_PAGES] = mh_nanotime();
	}
	pa_scavenging_pages -= b->pages;
}
