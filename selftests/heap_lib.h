/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests of the general heap (heap_*_test.c) share: the headers of
 * the layers they look into, and the helpers more than one of them uses:
 * pages in bytes, a free that goes past the thread's cache of large
 * blocks to the page heap, the state of the span at an address, a span
 * used up by the calling thread.
 */
#ifndef MHEAP_HEAP_LIB_H
#define MHEAP_HEAP_LIB_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arenamap.h"
#include "heapcheck.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "pagecache.h"
#include "sizeclass.h"

#define PAGES(n) ((uintptr_t)(n) << MH_PAGE_SHIFT)

/* A free that reaches the page heap: past the thread's own cache of large
 * blocks (largecache.c), which this empties. The tests of the span cache,
 * the page caches and the scavenger look at what a freed block does there. */
static inline void free_to_page_heap(void *p)
{
	mh_free(p);
	mcache_large_release(mh_tls_cache);
}

/* The state of the span at p (MSPAN_DEAD when no span maps it). */
static inline unsigned state_at(void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s ? s->state : MSPAN_DEAD;
}

/* Allocates objects of size until the span of the first is used up (and
 * still current), into objs; returns that span, *n the count. All of the
 * span's objects when it was fresh. */
static inline struct mspan *use_up_a_span(uint32_t size, void **objs, unsigned *n)
{
	struct mspan *s;

	*n = 0;
	objs[(*n)++] = mh_malloc(size);
	s = span_of((uintptr_t)objs[0]);
	while (mspan_window_free(s) || s->free_words || s->touched < s->nelems)
		objs[(*n)++] = mh_malloc(size);
	return s;
}

#endif /* MHEAP_HEAP_LIB_H */
