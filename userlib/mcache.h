/* SPDX-License-Identifier: MIT */
/*
 * mcache: a thread's private cache of spans, from which it allocates without
 * locks or atomics (Go's mcache.go; Go has one per P, C has no Ps, so here it
 * is one per thread). Created on a thread's first allocation or free, and
 * given back at thread exit: its spans return to their mcentrals and its
 * counters are added to the global ones.
 *
 * Thread exit: the cache goes back from a thread-key destructor, but the
 * thread may free and allocate after it: glibc frees the thread's own
 * buffers (__libc_thread_freeres) after all destructors, and other keys'
 * destructors run after ours, in more passes if they set their keys again;
 * a cache made in the last of the PTHREAD_DESTRUCTOR_ITERATIONS passes, or
 * after them, would never be given back. So once our destructor has run
 * (mh_tls_exited) the thread keeps no cache again: its frees go the remote
 * way and are counted with the dead caches' counters, and each of its
 * small allocations borrows a cache that is given back at once (about
 * 2 us per object, against nanoseconds: only what runs after our
 * destructor pays it). A thread whose very first allocation is made in a
 * destructor's last pass still keeps the cache it makes: nothing tells
 * that pass from the rest of the thread's life.
 *
 * Ownership beyond Go's: Go's mcache holds one span per class and hands a
 * used-up span back to its mcentral, where the next GC sweeps it. With
 * explicit free most objects are freed by the thread that allocated them,
 * often long after it moved on to another span; if that span went back to
 * the mcentral, every such free would be an atomic "remote" free and empty
 * spans would travel through the page heap again and again. So a cache keeps
 * owning the spans it used up, per class on three lists:
 *   partial  owned spans with at least 1/MH_CACHE_REUSE_SHARE of their
 *            objects freed by this thread since their sweep; the next
 *            refill sweeps the oldest and allocates from it;
 *   empty    owned spans whose every object is free; a refill takes the
 *            newest (warmest) when the partial list is empty;
 *   full     owned spans with fewer known frees; when other threads have
 *            freed into owned spans of the class (remote_hint, per class),
 *            a refill looks at a few of the oldest for those frees (their
 *            `remote` count) and rotates them, so a producer's spans are
 *            found again once its consumers have freed into them.
 * The oldest empty spans are given back beyond MH_CACHE_EMPTY_MAX bytes of
 * them per thread (and all of them when the thread asks for a large block
 * that only fresh pages could hold: kept for reuse, they lie scattered
 * where the thread's objects were and split the free pages around them
 * into runs too short for it), and the oldest used-up spans beyond
 * MH_CACHE_FULL_MAX bytes (long-lived data, or data other threads will
 * free: back at the mcentral their frees make them reusable by anyone).
 * So a thread neither hoards memory nor churns spans through the page
 * heap; and where spans must travel, they travel in batches (below).
 *
 * Trimming: a thread that allocated and went idle would keep its empty
 * spans (up to MH_CACHE_EMPTY_MAX) for ever, and no other thread may touch
 * an owner's lists while it runs. The empty lists (and the freed large
 * blocks it keeps, largecache.c, under a flag others set only with this
 * lock held) are the exception, by a
 * protocol: they change only under the cache's empty_lock, which the owner
 * takes in its slow paths (a span emptied, spares kept, a refill from
 * them, a trim) and mh_scavenge tries, under mh_caches_lock (so a fork
 * never finds it held by another thread), skipping a cache whose owner
 * holds it. An empty span has no object to free or hand out, so the
 * owner's fast paths never reach it (a free finds its span through the
 * arena map, whose entries the page heap changes under its lock). Spans
 * with live objects (current, partial, full) stay: their pages are in
 * use.
 * The scavenger's policy, when it releases pages, also trims the caches
 * whose threads made no refill since its previous such pass (at most one
 * per decay period; it only tries mh_caches_lock, as it may run under an
 * mcentral lock); mh_scavenge trims every cache.
 */
#ifndef MHEAP_MCACHE_H
#define MHEAP_MCACHE_H

#include "arenamap.h"
#include "fixalloc.h"
#include "mspan.h"
#include "pagecache.h"
#include "sizeclass.h"

/* Requests up to this size find their span by size (alloc_small): all of
 * the size-to-class table's 8-byte steps. Each change of a class's current
 * span rewrites its steps (up to 16, for the 128-byte-wide classes near
 * 1 KiB), about as many instructions as the table loads saved, but the
 * fast path is one dependent load shorter. Measured:
 * docs/heap.md#fast-paths. */
#define MH_DIRECT_MAX		MH_SMALL_SIZE_MAX

/* Entirely free spans a cache may keep for reuse, in bytes. */
#define MH_CACHE_EMPTY_MAX	((size_t)4 << 20)
/* Spans move between a cache and the page heap in batches, each under one
 * hold of the heap lock: a cache over MH_CACHE_EMPTY_MAX gives back its
 * oldest empty spans until it is MH_BATCH_BYTES under the cap, and a
 * refill that must make a span takes, of spans the page heap has cached
 * for its length, enough for MH_BATCH_OBJECTS objects within
 * MH_BATCH_BYTES (mcentral.c, "batches"): a fraction of the heap lock's
 * acquisitions, while larger batches would raise the peak RSS for no
 * speed. Measured: docs/heap.md#mcentral-mcache-and-batches. */
#define MH_BATCH_BYTES		((size_t)256 << 10)
#define MH_BATCH_OBJECTS	32
/* Used-up spans a cache keeps owning, in bytes, all classes together.
 * With a cap below the working set a thread frees itself, every free
 * into a span given back is a remote one (measured:
 * docs/heap.md#mcentral-mcache-and-batches). What it bounds is memory
 * other threads free into spans of a class this thread no longer
 * allocates. */
#define MH_CACHE_FULL_MAX	((size_t)32 << 20)
/* A used-up span goes back on the partial list once this share (1/N) of
 * its objects has been freed by this thread, not at its first free: each
 * adoption costs a sweep and list moves, and with random frees a span
 * taken back early yields few objects. At most this share of a used-up
 * span is free and waiting: 1/8 buys most of the speed for little memory.
 * Measured: docs/heap.md#mcentral-mcache-and-batches. */
#define MH_CACHE_REUSE_SHARE	8
/* Spans of the full list a refill looks at for remote frees. */
#define MH_CACHE_SCAN		8

/* The thread's cache of freed large objects (largecache.c): at most this
 * many spans, of this many bytes in all, none longer than
 * MH_LARGE_CACHE_SPAN_MAX bytes; a request takes a cached span up to
 * 1/MH_LARGE_CACHE_SLACK longer than it asks for. Measured:
 * docs/heap.md#the-threads-large-span-cache. */
#define MH_LARGE_CACHE_SPANS	16
#define MH_LARGE_CACHE_BYTES	((size_t)4 << 20)
#define MH_LARGE_CACHE_SPAN_MAX	((size_t)512 << 10)
#define MH_LARGE_CACHE_SLACK	4
/* The longest kept span in pages: one bit of large_lengths each. */
#define MH_LARGE_CACHE_PAGES_MAX (MH_LARGE_CACHE_SPAN_MAX >> MH_PAGE_SHIFT)
_Static_assert(MH_LARGE_CACHE_PAGES_MAX <= 64, "large_lengths has a bit per length");

struct mcache {
	/* Per class, spans of this cache that received their first remote
	 * free since their last sweep (a hint, added to by other threads):
	 * a refill scans the class's full list only when it is non-zero.
	 * Per class, so that a look that finds nothing in one class leaves
	 * the others' hints alone. First, and kept across reuse of the
	 * struct (fixalloc), so that a late freer's add never races with
	 * the zeroing of a new cache. */
	int64_t remote_hint[MH_NUM_CLASSES];
	/* Current span per class; never NULL (an empty dummy span stands
	 * in, so the fast path needs no NULL check). */
	struct mspan *alloc[MH_NUM_CLASSES];
	/* The same spans by request size, for requests up to MH_DIRECT_MAX
	 * bytes in steps of 8: alloc_small[(size + 7) / 8] is
	 * alloc[size_to_class(size)]. malloc's fast path loads the span
	 * straight from the size, one dependent load less than through the
	 * size-to-class table (mimalloc's pages_free_direct). Written with
	 * alloc[] (set_current in mcache.c), read by the owner only. */
	struct mspan *alloc_small[MH_DIRECT_MAX / MH_SMALL_SIZE_DIV + 1];
	/* Counters only this thread writes; readers use relaxed loads.
	 * Class 0 counts large objects. nmalloc counts a current span's
	 * window as allocated when the window is filled, so the allocation
	 * fast path updates no counter: objects allocated are nmalloc minus
	 * the bits left in the current span's window (mcache_nmalloc). */
	uint64_t nmalloc[MH_NUM_CLASSES];
	uint64_t nfree[MH_NUM_CLASSES];
	struct list partial[MH_NUM_CLASSES];
	struct list full[MH_NUM_CLASSES];
	struct list empty[MH_NUM_CLASSES];
	/* The heap arena of the latest free into the heap: its
	 * base and page-to-span map (heap arenas live as long as the
	 * process, so this never goes stale). A free inside it finds its
	 * span with one load instead of two dependent ones through the
	 * arena map (mcache_span_of). Before the first such free, a base
	 * no pointer of the heap has and a map of NULLs (mh_no_spans). */
	uintptr_t free_arena_base;
	struct mspan *const *free_arena_spans;
	/* The empty lists and empty_bytes: the owner takes it around every
	 * change to them, the scavenger (mcache_trim) tries it to take
	 * the spans of a thread that may be idle ("trimming" below). */
	mh_lock_t empty_lock;
	size_t empty_bytes;		/* bytes in owned, entirely free spans */
	/* Freed large objects this thread keeps (largecache.c), oldest
	 * first, their lengths in pages and how many it keeps of each
	 * length (at n-1 for n pages), under large_busy (largecache.c: set
	 * by the owner, or by others with empty_lock held); the lengths kept
	 * (bit n-1: a span of n pages), their count and bytes, read
	 * without it. */
	struct mspan *large[MH_LARGE_CACHE_SPANS];
	uint8_t large_npages[MH_LARGE_CACHE_SPANS];
	uint8_t large_count[MH_LARGE_CACHE_PAGES_MAX];
	uint8_t large_busy;
	uint64_t large_lengths;
	unsigned nlarge;
	size_t large_bytes;
	/* Refills this cache made (the owner's, relaxed), and the count the
	 * scavenger saw at its last pass (under mh_caches_lock): a cache
	 * that made none between two passes is idle ("trimming"). */
	uint32_t refills, refills_seen;
	size_t full_bytes;		/* bytes in spans on the full lists */
	struct list_node link;		/* on mh_caches, under caches_lock */
	/* Pages for this thread's next small spans; the heap lock's, not
	 * the owner's (pagecache.h). */
	struct page_cache pages;
	/* Where this thread's new span structs are carved (fixalloc.h,
	 * span_struct_alloc in mheap.c); the heap lock's. Last, and kept
	 * across reuse of the struct (fixalloc's `zeroed`): the next
	 * thread to take this cache carves on from it, so a thread's exit
	 * leaves no run unused. */
	struct fixalloc_run meta_run;
};

MH_HIDDEN extern __thread struct mcache *mh_tls_cache;
/* The cache the fast paths of malloc and free take (malloc.c): the
 * thread's cache, or mh_no_cache when it has none, so that those paths
 * need no test of NULL. Set and cleared with mh_tls_cache. The secure
 * mode does not come through here: its entry points are its own
 * (entry.h). */
MH_HIDDEN extern __thread struct mcache *mh_tls_fast_cache;
/* mh_tls_fast_cache of a thread without one (before its first allocation,
 * after its exit): a cache no thread owns, whose
 * current spans are all mh_empty_span (no window) and whose heap arena
 * holds no span (mh_no_spans), so that malloc's and free's fast paths
 * fall through to their slow paths without a test of their own. Read
 * only: mcache_span_of never moves it to another arena. */
MH_HIDDEN extern struct mcache mh_no_cache;
/* Set when the thread's cache has been given back at its exit. */
MH_HIDDEN extern __thread bool mh_tls_exited;

/* Objects of class cls c has allocated: exact for the calling thread's own
 * cache, a snapshot (off by at most a window) for a cache in use. */
static inline uint64_t mcache_nmalloc(struct mcache *c, unsigned cls)
{
	const struct mspan *s = LOAD_ACQUIRE(&c->alloc[cls]);

	return LOAD_RELAXED(&c->nmalloc[cls]) - (uint64_t)mspan_window_free((struct mspan *)s);
}

MH_HIDDEN extern struct mspan mh_empty_span;
MH_HIDDEN extern struct mspan *mh_no_spans[MH_PAGES_PER_ARENA];

/* The span holding p, or NULL for a free page or a pointer outside the
 * heap: span_of through the arena of the cache's last lookup. A thread's
 * frees land in the same heap arena nearly always, and the arena map's
 * walk would be the longest chain of dependent loads a free has.
 * Measured: docs/heap.md#explicit-free. */
static inline struct mspan *mcache_span_of(struct mcache *c, uintptr_t p)
{
	uintptr_t off = p - c->free_arena_base;

	if (unlikely(off >= MH_ARENA_SIZE)) {
		/* mh_no_cache first: a thread's frees before it has a cache
		 * come here through it (mh_tls_fast_cache), and would walk
		 * the arena map for nothing. */
		if (c == &mh_no_cache)
			return NULL;

		struct heap_arena *ha = arena_of(p);

		if (!ha)
			return NULL;
		c->free_arena_base = ha->base;
		c->free_arena_spans = ha->spans;
		off = p - ha->base;
	}
	return LOAD_RELAXED(&c->free_arena_spans[off >> MH_PAGE_SHIFT]);
}

/* Make this thread's cache; NULL when out of memory (errno = ENOMEM) or
 * after its exit (mh_tls_exited: no cache ever again). */
MH_HIDDEN struct mcache *mcache_create(void);
/* A cache that no thread keeps: for one allocation after the thread's
 * exit, then mcache_give_back. NULL (ENOMEM) when out of memory. */
MH_HIDDEN struct mcache *mcache_borrow(void);
/* Give c's spans back and add its counters to the dead caches'. */
MH_HIDDEN void mcache_give_back(struct mcache *c);
/* Count a malloc or free made without a cache (dead: mh_dead_nmalloc or
 * mh_dead_nfree) with the dead caches'. */
MH_HIDDEN void mcache_count_uncached(uint64_t *dead, unsigned cls);

/* This thread's cache, made on first use; NULL when out of memory or
 * after the thread's exit (mcache_create). */
static inline struct mcache *mcache_get(void)
{
	struct mcache *c = mh_tls_cache;

	return likely(c) ? c : mcache_create();
}

/* The allocation slow path: refill the window, sweep the span in place, or
 * swap it for another owned span or one from the mcentral. Returns an
 * object or 0 (ENOMEM). */
MH_HIDDEN uintptr_t mcache_alloc_slow(struct mcache *c, unsigned sizeclass);

/* Bookkeeping after the owner freed into s, which is not its current span:
 * s may move to the partial list, or, entirely free, go back. */
MH_HIDDEN void mcache_local_free_slow(struct mcache *c, struct mspan *s);

/* Give every entirely free span c keeps back to the page heap. */
MH_HIDDEN void mcache_release_empty(struct mcache *c);
/* The same for every thread's cache whose owner is not changing its empty
 * lists right now (mh_scavenge; "trimming" above); idle_only: only those
 * that made no refill since the previous such pass, and nothing if
 * mh_caches_lock is taken. No allocator lock held but perhaps an
 * mcentral's (idle_only). */
MH_HIDDEN void mcache_trim(bool idle_only);

/* The thread's cache of freed large objects (largecache.c). put: s, a
 * large object this thread has just claimed (span_large_claim), kept,
 * when it is short enough and no trim is taking the list, else false (the
 * caller frees it to the page heap); evicts the oldest beyond the caps. take: a kept span of at
 * least npages pages, reborn as a large object, or NULL. drain: every
 * kept span onto *chain (for mheap_free_spans), c->empty_lock held; none
 * if the owner is in a put or take (never when the owner calls it). */
MH_HIDDEN bool mcache_large_put(struct mcache *c, struct mspan *s);
MH_HIDDEN struct mspan *mcache_large_take(struct mcache *c, uintptr_t npages);
MH_HIDDEN void mcache_large_drain(struct mcache *c, struct mspan **chain);
/* Every large object c keeps back to the page heap. */
MH_HIDDEN void mcache_large_release(struct mcache *c);

/* Counters of caches that have gone away. Under caches_lock. */
MH_HIDDEN extern uint64_t mh_dead_nmalloc[MH_NUM_CLASSES];
MH_HIDDEN extern uint64_t mh_dead_nfree[MH_NUM_CLASSES];
MH_HIDDEN extern mh_lock_t mh_caches_lock;
MH_HIDDEN extern struct list mh_caches;

/* Fork support: after fork only the calling thread exists; take back the
 * spans of all other caches from the heap's own records, trusting nothing
 * of those caches but their counters (mcache.c, "Fork"), and retire them. */
MH_HIDDEN void mcache_after_fork_child(void);
MH_HIDDEN void mcache_key_init(void);

#endif
