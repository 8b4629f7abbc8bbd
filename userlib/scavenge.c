// SPDX-License-Identifier: MIT
/*
 * The scavenger: when free pages are returned to the OS (Go's
 * mgcscavenge.go, without its background goroutine).
 *
 * Releasing memory is cheap (one madvise per run) but getting it back is
 * not: each 4 KiB page faults in again on first touch, about 3 us here, so an
 * allocator that releases eagerly and then grows again pays twice. The
 * policy keeps a reserve of free, resident pages and releases only what
 * exceeds it:
 *
 *   reserve = max(MHEAP_SCAVENGE_RESERVE,
 *                 in-use * MHEAP_SCAVENGE_PERCENT / 100,
 *                 recent peak of in-use - in-use)
 *
 * The recent peak is the highest in-use page count seen, decaying towards
 * the current one by half every MHEAP_SCAVENGE_DECAY_MS, and renewed (its
 * decay restarted) whenever the heap is back within an eighth of it: a
 * program that frees its working set and builds it again keeps its memory
 * and never faults twice, however long it goes on doing so, while memory
 * that stays unused is released within about ten periods. The policy runs
 * when a span's pages come back to the heap (no background thread: none is
 * safe to start inside a malloc drop-in), and acts only when the excess is
 * at least 1 MiB, so frees do not turn into a stream of small madvise
 * calls. Pages are released highest address first: first fit packs small
 * spans at the bottom, so the free pages at the top are the heap's unused
 * end and the holes of freed large objects, released in long runs, while
 * small spans are not what faults in again. mh_scavenge() releases
 * everything free at once.
 *
 * The defaults are in options.c; the measurements behind them in
 * docs/heap.md#scavenger.
 */
#include "mheap_impl.h"
#include "pagealloc.h"

#define SCAVENGE_MIN_BATCH (((uintptr_t)1 << 20) >> MH_PAGE_SHIFT)

static uintptr_t reserve_pages;
static uintptr_t reserve_percent;
static uint64_t decay_ns;
static uintptr_t peak_pages;	/* recent peak of in-use pages */
static uint64_t peak_time;	/* when the peak last moved */

void scavenge_init(void)
{
	reserve_pages = (uintptr_t)(mh_option(MH_OPT_SCAVENGE_RESERVE) >> MH_PAGE_SHIFT);
	reserve_percent = (uintptr_t)mh_option(MH_OPT_SCAVENGE_PERCENT);
	decay_ns = mh_option(MH_OPT_SCAVENGE_DECAY_MS) * 1000000u;
}

void scavenge_note_alloc(void)
{
	uintptr_t inuse = pa_total_pages - pa_free_pages;

	/* Back within an eighth of the recent peak: the working set is being
	 * rebuilt, so the peak is current again and its decay starts over
	 * (else a program that frees and rebuilds the same working set every
	 * 40 ms would see it decay after 100 ms and refault it for ever). */
	if (inuse >= peak_pages - peak_pages / 8) {
		if (inuse > peak_pages)
			peak_pages = inuse;
		peak_time = mh_nanotime();
	}
}

void scavenge_after_free(void)
{
	uintptr_t idle = pa_free_pages - pa_released_pages;
	uintptr_t inuse = pa_total_pages - pa_free_pages;
	uintptr_t reserve;

	if (idle < reserve_pages + SCAVENGE_MIN_BATCH)
		return;
	if (peak_pages > inuse) {
		uint64_t now = mh_nanotime();

		if (!decay_ns) {
			peak_pages = inuse;
		} else {
			while (now - peak_time >= decay_ns && peak_pages > inuse) {
				peak_pages = inuse + (peak_pages - inuse) / 2;
				peak_time += decay_ns;
			}
			if (now - peak_time >= decay_ns)
				peak_time = now;
		}
	}
	reserve = inuse * reserve_percent / 100;
	if (reserve < reserve_pages)
		reserve = reserve_pages;
	if (peak_pages > inuse && reserve < peak_pages - inuse)
		reserve = peak_pages - inuse;
	if (idle >= reserve + SCAVENGE_MIN_BATCH) {
		mheap_flush_caches();	/* cached pages are idle too */
		mh_heap.scavenged_pages += pa_scavenge(idle - reserve);
	}
}

void scavenge_all(void)
{
	mh_lock(&mh_heap.lock);
	mheap_flush_caches();
	mh_heap.scavenged_pages += pa_scavenge(pa_free_pages - pa_released_pages);
	mh_unlock(&mh_heap.lock);
}
