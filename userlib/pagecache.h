/* SPDX-License-Identifier: MIT */
/*
 * Per-thread page caches (Go's mpagecache.go): see pagecache.c.
 * Every function runs under the heap lock.
 */
#ifndef MHEAP_PAGECACHE_H
#define MHEAP_PAGECACHE_H

#include "pagealloc.h"
#include "list.h"

/* Spans of up to this many pages come from the thread's page cache (as in
 * Go: a quarter of the chunk, so that a chunk serves several). */
#define PAGE_CACHE_SPAN_MAX	(PA_CHUNK_TAKE_PAGES / 4)

/*
 * The free pages a thread took from one chunk of the page
 * allocator, for its next small spans. Lives in the thread's mcache but
 * belongs to the heap lock, so that any thread holding the lock can give
 * every cache's pages back (page_caches_flush).
 */
struct page_cache {
	uintptr_t base;			/* the chunk's first byte; 0: none yet */
	uint64_t free;			/* bit i: page i of the chunk is the
					 * cache's to give */
	struct list_node link;		/* every registered cache (list.h) */
};

/* Count c among the caches page_caches_flush empties; c is zeroed. */
MH_HIDDEN void page_cache_register(struct page_cache *c);
/* Give c's pages back and forget c (its thread is going away). */
MH_HIDDEN void page_cache_unregister(struct page_cache *c);
/* npages pages (at most PAGE_CACHE_SPAN_MAX) from c, refilled from the page
 * allocator when empty; .base = 0 when c cannot serve the request. */
MH_HIDDEN struct pa_result page_cache_alloc(struct page_cache *c, uintptr_t npages);
/* Give the free pages of every registered cache back to the page
 * allocator, for whatever is about to read its bitmap for free pages. */
MH_HIDDEN void page_caches_flush(void);

#endif
