/* SPDX-License-Identifier: MIT */
/*
 * The page allocator: which pages of the heap are free, and which free pages
 * have been returned to the OS. See pagealloc.c for the design.
 * All functions run under the heap lock.
 */
#ifndef MHEAP_PAGEALLOC_H
#define MHEAP_PAGEALLOC_H

#include "arenamap.h"

struct pa_result {
	uintptr_t base;		/* first byte, 0 when nothing fits */
	uintptr_t released;	/* pages of the run that had been released */
	bool needzero;		/* some page may hold old data */
};

/* Mark the pages of n new, adjacent arenas ha[0..n) free and released
 * (fresh mmap memory), with the search hints lowered once for all of them
 * (Go's pageAlloc.grow). Before they are in the arena map; those below
 * them are. */
MH_HIDDEN void pa_grow(struct heap_arena *ha, size_t n);
/* Where a run goes among the free pages. */
enum pa_where {
	PA_LOW,		/* the lowest-addressed free run that can hold it (first fit) */
	PA_HIGH,	/* the highest-addressed one, the pages taken from its top */
	PA_DIRTY,	/* where the fewest pages have been released (find_dirty) */
	PA_APART,	/* a resident place apart from small spans, low in its run; else none */
	PA_RELEASED,	/* the lowest place of released pages only; else first fit */
};
/* Where a run of npages, its first page number a multiple of align_pages
 * (a power of two), would go; 0 if no free run can hold it. */
MH_HIDDEN uintptr_t pa_find(uintptr_t npages, uintptr_t align_pages, enum pa_where where);
/* Such a run, marked in use. */
MH_HIDDEN struct pa_result pa_alloc(uintptr_t npages, uintptr_t align_pages,
				    enum pa_where where);
/* Whether free pages [base, base + npages) are all resident (none released). */
MH_HIDDEN bool pa_resident(uintptr_t base, uintptr_t npages);
/* Mark exactly pages [base, base + npages) in use if they are all free. */
MH_HIDDEN bool pa_alloc_at(uintptr_t base, uintptr_t npages, struct pa_result *res);
/*
 * Chunks for the per-thread page caches (pagecache.c): aligned runs of
 * PA_CHUNK_TAKE_PAGES pages, a power of two, so that a chunk's bits lie in
 * one allocation-bitmap word. pa_chunk_take takes every free page of the
 * chunk that holds the lowest free page (0 when no page is free) and
 * returns the chunk's base and which of its pages it took (*free, bit i
 * for page i of the chunk); they are marked in use but still count as free
 * pages and keep their scavenged bits. pa_chunk_alloc makes taken pages
 * [base, base + npages) a real allocation (counters and scavenged bits, as
 * pa_alloc); pa_chunk_return gives the taken pages still in free back (none: a no-op).
 */
#define PA_CHUNK_TAKE_PAGES	16	/* 128 KiB; pagecache.c says why */
MH_HIDDEN uintptr_t pa_chunk_take(uint64_t *free);
MH_HIDDEN struct pa_result pa_chunk_alloc(uintptr_t base, uintptr_t npages);
MH_HIDDEN void pa_chunk_return(uintptr_t base, uint64_t free);
/* Pages [base, base + npages) hold a small span: their chunks are marked,
 * for find_dirty to keep large objects out of. */
MH_HIDDEN void pa_mark_small(uintptr_t base, uintptr_t npages);
/* Free a run; released: its pages are known not resident (they read zero). */
MH_HIDDEN void pa_free(uintptr_t base, uintptr_t npages, bool released);
/* Free many runs (none released), the summaries brought up to date once, at
 * the end: pa_free_batch for each, then pa_free_batch_end, and nothing else
 * of the page allocator's in between; now is mh_nanotime() of the batch. */
MH_HIDDEN void pa_free_batch(uintptr_t base, uintptr_t npages, uint64_t now);
MH_HIDDEN void pa_free_batch_end(uint64_t now);
/*
 * Releasing free pages to the OS without holding the heap lock over the
 * madvise (Go's scavengeOne: allocRange, unlock, sysUnused, lock, free):
 * pa_scavenge_take picks up to npages free, resident pages, highest
 * addresses first, in at most PA_SCAV_BATCH runs, skipping the chunks
 * allocated from or freed into within the last idle_ns nanoseconds (0:
 * none skipped), and marks them in use so that nobody allocates them
 * meanwhile (they still count as free pages, and in pa_scavenging_pages);
 * it returns how many it took, and when a chunk it skipped will have been
 * idle long enough (retry_at). pa_scavenge_release returns their memory to
 * the OS, with or without the lock; pa_scavenge_return (heap lock held
 * again) makes them free and released.
 */
#define PA_SCAV_BATCH	16
struct pa_scav_batch {
	unsigned n;
	uintptr_t pages;
	uint64_t retry_at;	/* when the first chunk skipped turns idle, or 0 */
	uint64_t epoch;		/* the page allocator's state after the take */
	uintptr_t base[PA_SCAV_BATCH];
	uintptr_t npages[PA_SCAV_BATCH];
};
MH_HIDDEN uintptr_t pa_scavenge_take(uintptr_t npages, uint64_t idle_ns,
				     struct pa_scav_batch *b);
MH_HIDDEN void pa_scavenge_release(const struct pa_scav_batch *b);
MH_HIDDEN void pa_scavenge_return(const struct pa_scav_batch *b);

/* Page counts, exact under the heap lock. */
MH_HIDDEN extern uint64_t pa_total_pages;	/* all pages of all arenas */
MH_HIDDEN extern uint64_t pa_free_pages;	/* free pages */
MH_HIDDEN extern uint64_t pa_released_pages;	/* free pages returned to the OS */
MH_HIDDEN extern uint64_t pa_scavenging_pages;	/* free pages taken to be released */
/* Released pages allocated again in chunks the scavenger had released
 * pages of less than pa_refault_horizon_ns before (scavenge.c). */
MH_HIDDEN extern uint64_t pa_refault_pages;
MH_HIDDEN extern uint64_t pa_refault_horizon_ns;

/* For the heap checker: the length of a free run that begins below the
 * search hint for its size (pagealloc_search.c), or 0 when none does. */
MH_HIDDEN uintptr_t pa_hint_broken(void);

/* Summary of bits [from, from + len) of a bitmap (exposed for tests). */
MH_HIDDEN struct pa_sum pa_summarize(const uint64_t *bits, unsigned from, unsigned len);

#endif
