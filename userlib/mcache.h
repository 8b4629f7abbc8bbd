/* SPDX-License-Identifier: MIT */
/*
 * mcache: a thread's private cache of spans, one per size class, from which
 * it allocates without locks or atomics (Go's mcache.go; Go has one per P,
 * C has no Ps, so here it is one per thread). Created on a thread's first
 * allocation or free, and given back at thread exit: its spans return to
 * their mcentrals and its counters are added to the global ones.
 */
#ifndef MHEAP_MCACHE_H
#define MHEAP_MCACHE_H

#include "mspan.h"

struct mcache {
	/* Span allocated from per class; never NULL (an empty dummy span
	 * stands in, so the fast path needs no NULL check). */
	struct mspan *alloc[MH_NUM_CLASSES];
	/* Counters only this thread writes; readers use relaxed loads.
	 * Class 0 counts large objects. */
	uint64_t nmalloc[MH_NUM_CLASSES];
	uint64_t nfree[MH_NUM_CLASSES];
	struct mcache *next, *prev;	/* all caches, under caches_lock */
};

MH_HIDDEN extern __thread struct mcache *mh_tls_cache;
MH_HIDDEN extern struct mspan mh_empty_span;

MH_HIDDEN struct mcache *mcache_create(void);

/* This thread's cache, made on first use; NULL only when out of memory. */
static inline struct mcache *mcache_get(void)
{
	struct mcache *c = mh_tls_cache;

	return likely(c) ? c : mcache_create();
}

/* The allocation slow path: refill the window, sweep the span in place, or
 * swap it for another from the mcentral. Returns an object or 0 (ENOMEM). */
MH_HIDDEN uintptr_t mcache_alloc_slow(struct mcache *c, unsigned sizeclass);

/* Counters of caches that have gone away, and of frees by threads that
 * could not get a cache. Under caches_lock, except orphan_frees (atomic). */
MH_HIDDEN extern uint64_t mh_dead_nmalloc[MH_NUM_CLASSES];
MH_HIDDEN extern uint64_t mh_dead_nfree[MH_NUM_CLASSES];
MH_HIDDEN extern mh_lock_t mh_caches_lock;
MH_HIDDEN extern struct mcache *mh_caches;

/* Fork support: after fork only the calling thread exists; give back the
 * caches of all others. */
MH_HIDDEN void mcache_after_fork_child(void);
MH_HIDDEN void mcache_key_init(void);

#endif
