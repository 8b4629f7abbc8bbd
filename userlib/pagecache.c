// SPDX-License-Identifier: MIT
/*
 * Per-thread page caches (Go's mpagecache.go).
 *
 * Small spans are carved by address-ordered first fit from pages every
 * thread shares. Two threads that make spans at the same time therefore
 * get alternate runs of pages: each one's objects end up spread over twice
 * the memory, a span of one thread next to a span of the other, and every
 * boundary is a place where one core's prefetchers pull in lines the other
 * core is writing (mimalloc's threads carve pages from segments of their
 * own).
 *
 * So, as Go gives each P, each thread's cache takes its small spans from a
 * chunk of pages of its own: the aligned chunk of 16 pages (128 KiB) that
 * holds the lowest free page, all of whose free pages it takes at once
 * (pa_chunk_take). Spans of up to 4 pages (the classes up to 4 KiB but
 * 640 B-1 KiB, whose spans take 5-8 pages, and 3456 B: sizeclass.c) come
 * from the lowest run that fits in the chunk; a span the chunk
 * cannot hold goes to the shared page allocator, and only an empty cache
 * takes a new chunk, so a thread never strands more than one chunk's worth
 * of pages. The thread's spans then sit together, and taking the chunk of
 * the lowest free page keeps the heap about as dense as first fit did. A
 * freed span of the right length in the span cache (spancache.c) still goes
 * before the page cache: its pages are resident already.
 *
 * Go's chunks are 64 pages. Ours are 16: the pages a cache holds are out
 * of reach of large objects, which then take fresh pages, so smaller
 * chunks keep the peak RSS lower, and two threads' loops run as fast with
 * 16 pages as with 64. Measured: docs/heap.md#page-caches.
 *
 * Pages in a cache are in use to the allocation bitmap but count as free
 * pages, so the stats and the scavenger's policy see them as idle, like
 * the span cache's (spancache.c). Whatever reads the bitmap for free pages - a
 * search that failed, the scavenger - first gives every cache's pages back
 * (page_caches_flush). The caches are reached from each mcache but only
 * under the heap lock, which is what lets one thread empty another's.
 */
#include "pagecache.h"

static struct list caches;	/* registered ones, heap lock */

void page_cache_register(struct page_cache *c)
{
	*c = (struct page_cache){ 0 };
	list_push_head(&caches, &c->link);
}

static void flush(struct page_cache *c)
{
	pa_chunk_return(c->base, c->free);
	c->free = 0;
}

void page_cache_unregister(struct page_cache *c)
{
	flush(c);
	list_remove(&caches, &c->link);
}

/* Where the lowest run of n set bits of w starts; -1 if there is none.
 * After step k, bit i stays set only if bits i..i+k are all set. */
static int find_run(uint64_t w, unsigned n)
{
	uint64_t starts = w;

	for (unsigned k = 1; k < n && starts; k++)
		starts &= w >> k;
	return starts ? __builtin_ctzll(starts) : -1;
}

struct pa_result page_cache_alloc(struct page_cache *c, uintptr_t npages)
{
	struct pa_result none = { 0 };
	int i;

	if (npages > PAGE_CACHE_SPAN_MAX)
		return none;
	if (!c->free) {
		c->base = pa_chunk_take(&c->free);
		if (!c->base)
			return none;
	}
	i = find_run(c->free, (unsigned)npages);
	if (i < 0)
		return none;
	c->free &= ~((((uint64_t)1 << npages) - 1) << i);
	return pa_chunk_alloc(c->base + ((uintptr_t)i << MH_PAGE_SHIFT), npages);
}

void page_caches_flush(void)
{
	struct page_cache *c;

	list_for_each(c, &caches, link)
		flush(c);
}
