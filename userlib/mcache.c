// SPDX-License-Identifier: MIT
/* Per-thread caches: see mcache.h. */
#include <errno.h>
#include <string.h>

#include "mcache.h"
#include "mheap_impl.h"
#include "sizeclass.h"

__thread struct mcache *mh_tls_cache;
struct mspan mh_empty_span;
uint64_t mh_dead_nmalloc[MH_NUM_CLASSES];
uint64_t mh_dead_nfree[MH_NUM_CLASSES];
mh_lock_t mh_caches_lock = MH_LOCK_INIT;
struct mcache *mh_caches;

static pthread_key_t cache_key;
static int cache_key_ready;

static void release_spans(struct mcache *c)
{
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		struct mspan *s = c->alloc[cls];

		if (s != &mh_empty_span)
			mcentral_uncache_span(s);
		c->alloc[cls] = &mh_empty_span;
	}
}

/* Unlink c, fold its counters into the global ones and free it. Called
 * with caches_lock held. */
static void retire(struct mcache *c)
{
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		mh_dead_nmalloc[cls] += c->nmalloc[cls];
		mh_dead_nfree[cls] += c->nfree[cls];
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		mh_caches = c->next;
	if (c->next)
		c->next->prev = c->prev;
	mh_lock(&mh_heap.lock);
	fixalloc_free(&mh_heap.cachealloc, c);
	mh_unlock(&mh_heap.lock);
}

static void thread_exit(void *arg)
{
	struct mcache *c = arg;

	mh_tls_cache = NULL;
	release_spans(c);
	mh_lock(&mh_caches_lock);
	retire(c);
	mh_unlock(&mh_caches_lock);
}

void mcache_key_init(void)
{
	/* Outside every allocator lock: pthread_key_create may allocate. */
	if (!cache_key_ready && pthread_key_create(&cache_key, thread_exit) == 0) {
		STORE_RELEASE(&cache_key_ready, 1);
		if (mh_tls_cache)
			pthread_setspecific(cache_key, mh_tls_cache);
	}
}

struct mcache *mcache_create(void)
{
	struct mcache *c;

	mheap_init();
	mh_lock(&mh_heap.lock);
	if (!mh_heap.cachealloc.size)
		fixalloc_init(&mh_heap.cachealloc, sizeof(struct mcache), 0);
	c = fixalloc_alloc(&mh_heap.cachealloc);
	mh_unlock(&mh_heap.lock);
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++)
		c->alloc[cls] = &mh_empty_span;
	mh_lock(&mh_caches_lock);
	c->next = mh_caches;
	if (mh_caches)
		mh_caches->prev = c;
	mh_caches = c;
	mh_unlock(&mh_caches_lock);
	mh_tls_cache = c;
	/* Registers the exit hook. Before the key exists (the very first
	 * allocation) mcache_key_init registers this cache later. */
	if (LOAD_ACQUIRE(&cache_key_ready))
		pthread_setspecific(cache_key, c);
	return c;
}

uintptr_t mcache_alloc_slow(struct mcache *c, unsigned sizeclass)
{
	struct mspan *s = c->alloc[sizeclass];
	uintptr_t p;

	if (s != &mh_empty_span) {
		p = mspan_next_free(s);	/* the window ran out, the span may not */
		if (p)
			return p;
		/* Used up. If enough of it has been freed since the last
		 * sweep, sweeping in place beats a trip to the mcentral and
		 * keeps the thread on memory that is warm in its cache. */
		if (mspan_pending_frees(s) > s->nelems / 4) {
			mspan_sweep(s);
			p = mspan_next_free(s);
			if (p)
				return p;
		}
		c->alloc[sizeclass] = &mh_empty_span;
		mcentral_uncache_span(s);
	}
	for (;;) {
		s = mcentral_cache_span(sizeclass, c);
		if (!s)
			return 0;
		c->alloc[sizeclass] = s;
		p = mspan_next_free(s);
		if (p)
			return p;
		/* Nothing free after all (frees still in flight): next one. */
		c->alloc[sizeclass] = &mh_empty_span;
		mcentral_uncache_span(s);
	}
}

void mcache_after_fork_child(void)
{
	struct mcache *c = mh_caches, *next;

	for (; c; c = next) {
		next = c->next;
		if (c == mh_tls_cache)
			continue;
		release_spans(c);
		retire(c);
	}
}
