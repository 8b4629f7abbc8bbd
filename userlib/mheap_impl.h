/* SPDX-License-Identifier: MIT */
/*
 * mheap: the page heap (Go's mheap.go). It owns the heap lock, the page
 * allocator and the arena map, makes spans out of runs of pages and takes
 * them back, and holds one mcentral per size class.
 *
 * Lock order: caches lock -> mcentral lock -> heap lock. Nothing that takes
 * the heap lock calls back into the allocator.
 */
#ifndef MHEAP_MHEAP_IMPL_H
#define MHEAP_MHEAP_IMPL_H

#include "arenamap.h"
#include "fixalloc.h"
#include "mspan.h"

/* mcentral (mcentral.c): the unowned spans of one size class. */
struct mcentral {
	mh_lock_t lock;
	struct list partial;	/* spans with free objects */
	struct list full;	/* spans that had none when put here */
} __attribute__((aligned(MH_SHARING_BLOCK)));

/* Span structs come in buckets by bitmap size, bitmaps stored behind them. */
#define SPAN_BUCKETS 6
/* Freed spans of up to this many pages are cached whole (spancache.c). */
#define SPAN_CACHE_PAGES 64	/* at most 64: span_cache_large_held */
/* Large objects of more pages than this are placed from the top of the
 * heap, apart from small spans (mheap.c, "placement"). */
#define SPAN_HIGH_PAGES 64

/* The span cache's two kinds of freed spans: of small objects, of large. */
enum span_cache_kind {
	CACHE_SMALL,
	CACHE_LARGE,
};

/* Where mheap_alloc_span puts a span. */
enum span_place {
	PLACE_LOW,	/* lowest free run: small spans, chunks, growing blocks */
	PLACE_LARGE,	/* a large object: high if longer than SPAN_HIGH_PAGES */
	PLACE_RELEASED,	/* pages free drops: released ones first (guarded blocks) */
};

struct mheap {
	mh_lock_t lock;
	int initialized;
	struct fixalloc spanalloc[SPAN_BUCKETS];
	struct fixalloc cachealloc;
	/* Where span structs are carved for a thread with no cache
	 * (span_struct_alloc). */
	struct fixalloc_run meta_run;
	uint64_t large_live_bytes;	/* bytes in large objects now */
	uintptr_t large_cacheable_pages;	/* pages of those of span cache lengths */
	uint64_t scavenged_pages;	/* pages released, cumulative */
	/* Freed spans by kind and length, their pages kept (spancache.c). */
	struct mspan *span_cache[2][SPAN_CACHE_PAGES + 1];
	uintptr_t span_cache_pages;		/* both kinds */
	uintptr_t span_cache_large_pages;
	uintptr_t span_cache_large_low;	/* no cached large object starts below */
	uint64_t span_cache_large_held;	/* bit n - 1: the large list of n pages has one */
	struct mcentral central[MH_NUM_CLASSES];
};

MH_HIDDEN extern struct mheap mh_heap;

/* Set the heap up on first use; cheap once done. */
MH_HIDDEN void mheap_init_slow(void);
static inline void mheap_init(void)
{
	if (unlikely(!LOAD_ACQUIRE(&mh_heap.initialized)))
		mheap_init_slow();
}

/*
 * A span of npages pages, its first page number a multiple of align_pages.
 * sizeclass > 0 makes a small-object span of that class, state tells what
 * else it is, place where it goes; a small span's pages come from the
 * calling thread's page cache pc when it has them (pagecache.c; NULL: no
 * cache). NULL with errno = ENOMEM when memory runs out.
 */
struct page_cache;
MH_HIDDEN struct mspan *mheap_alloc_span(uintptr_t npages, uintptr_t align_pages,
					 unsigned sizeclass, enum mspan_state state,
					 enum span_place place, struct page_cache *pc);
/* Up to n spans of small-object class sizeclass, made under one hold of the
 * heap lock and chained through their next links (mcentral.c, "batches"):
 * the first from wherever mheap_alloc_span would take it, the rest only
 * from the span cache. NULL with errno = ENOMEM when not even one could be
 * made. */
MH_HIDDEN struct mspan *mheap_alloc_small_spans(unsigned sizeclass, unsigned n,
						struct page_cache *pc);
/*
 * mheap_alloc_small_spans takes spares only while the span cache holds this
 * many times as many spans of their length. Churning one size leaves
 * hundreds there; random sizes up to 32 KiB leave a few per length, and
 * spares taken from those (for a class the thread may not ask for again
 * before it gives them back) sent the other thread's spans of that length
 * to fresh pages. With the limit their peak RSS is back to what it was,
 * while the 8 KiB churn takes the heap lock as rarely as without it.
 * Measured: docs/heap.md#mcentral-mcache-and-batches.
 */
#define SPARES_CACHED_MIN	8
/* Whether such a span would be made of resident pages as things stand:
 * a cached span of its length, or a free run none of whose pages has been
 * released (or never touched). */
MH_HIDDEN bool mheap_fits_resident(uintptr_t npages, uintptr_t align_pages,
				   enum span_place place);
/* Grow a large span in place to npages if the pages after it are free. */
MH_HIDDEN bool mheap_grow_span(struct mspan *s, uintptr_t npages);
/* Give a span's pages back to the page heap; the struct dies (gen moves on). */
MH_HIDDEN void mheap_free_span(struct mspan *s);
/* The same for a span whose pages were already dropped (a faulted arena
 * chunk): they count as released and read as zero. */
MH_HIDDEN void mheap_free_span_released(struct mspan *s, bool released);
/*
 * A large object's life, begun and ended exactly once however many frees
 * race for it (mheap.c). Its birth moves gen on to an odd value before
 * the state says MSPAN_LARGE (a release store); span_large_claim(s, p)
 * ends it for the one caller whose compare-and-swap moves that odd gen on
 * to even, having found s still the large object at p: a free that read
 * a gen from before a death and a rebirth fails its swap, one that reads
 * the even gen of a claimed span fails at once. Every free of a large
 * object claims it first; then the claimer alone owns it, for the page
 * heap or its thread's cache (largecache.c). Birth: heap lock held, or
 * the cache's owner, with no claim possible (even gen). Measured and
 * reasoned: docs/heap.md#the-threads-large-span-cache.
 */
MH_HIDDEN void span_large_birth(struct mspan *s);
MH_HIDDEN bool span_large_claim(struct mspan *s, uintptr_t p);
/* mheap_free_span for a chain of spans linked through next, under one hold
 * of the heap lock. */
MH_HIDDEN void mheap_free_spans(struct mspan *chain);
/* Span structs (mheap.c): the bucket for `words` bitmap words; a struct
 * of that bucket (NULL when out of memory); a struct's death (a freer that
 * still holds the pointer compares gen, or finds the state dead:
 * free_checked in free.c reads it without a lock). Heap lock held. */
MH_HIDDEN unsigned span_bucket(unsigned words);
MH_HIDDEN struct mspan *span_struct_alloc(unsigned words);
MH_HIDDEN void span_struct_kill(struct mspan *s);
/* The span cache (spancache.c), all under the heap lock: a freed span of
 * at most SPAN_CACHE_PAGES pages goes in, its struct dies; a span of
 * npages pages with room for `words` bitmap words comes out, of the kind
 * asked for if it has one (NULL if none); the lists of a kind, or both,
 * go back to the page allocator. */
MH_HIDDEN void span_cache_put(struct mspan *s, enum span_cache_kind kind);
MH_HIDDEN struct mspan *span_cache_take(uintptr_t npages, unsigned words,
					enum span_cache_kind kind);
MH_HIDDEN void flush_span_cache(enum span_cache_kind kind);
MH_HIDDEN void flush_span_caches(void);
/* Give every cached free page back to the page allocator, the span
 * cache's and the threads' page caches' (heap lock held). */
MH_HIDDEN void mheap_flush_caches(void);
/* The same, taking the heap lock. */
MH_HIDDEN void mheap_flush_caches_locking(void);
/* Run the scavenger's policy (heap lock held; see scavenge.c): how many
 * free pages to release. The caller passes it to scavenge_after_unlock
 * once it has dropped the heap lock, which releases them outside it. */
MH_HIDDEN uintptr_t scavenge_after_free(void);
MH_HIDDEN void scavenge_after_unlock(uintptr_t npages);
MH_HIDDEN void scavenge_init(void);
MH_HIDDEN void scavenge_note_alloc(void);
/* The scavenger's look at its window of reuse at time now (heap lock
 * held): doubled, halved or kept by its rule (scavenge.c); returns it. */
MH_HIDDEN uint64_t scavenge_adapt_window(uint64_t now);
/* The policy's verdict at time now (heap lock held): how many idle pages
 * exceed the reserve, the recent peak decayed to now; 0 below a batch. */
MH_HIDDEN uintptr_t scavenge_excess(uint64_t now);
/* A large block faulted in this many released pages (heap lock held);
 * scavenge_take_growth (lock held) says how many free resident pages to
 * release for them, scavenge_grown releases them (lock not held). */
MH_HIDDEN void scavenge_note_growth(uintptr_t faulted);
MH_HIDDEN uintptr_t scavenge_take_growth(void);
MH_HIDDEN void scavenge_grown(uintptr_t npages);
/* Release every free page now. */
MH_HIDDEN void scavenge_all(void);

/* mcentral.c */
MH_HIDDEN struct mspan *mcentral_cache_span(unsigned sizeclass, struct mcache *c,
					    struct mspan **spare);
MH_HIDDEN void mcentral_uncache_span(struct mspan *s);
MH_HIDDEN void mcentral_remote_event(struct mspan *s, unsigned sizeclass, uint64_t gen);

/* malloc_sized.c: the frees that are given the object's size - free_sized,
 * free_aligned_sized (C23), C++'s sized operator delete and delete[] -
 * are mh_free(p) once the size, and with aligned the alignment, match the
 * block; a mismatch aborts with one "mheap: ..." line naming fn, as an
 * invalid free does. */
enum sized_free_fn {
	SIZED_FREE,		/* free_sized, or free_aligned_sized */
	SIZED_DELETE,		/* operator delete(void *, size_t[, align_val_t]) */
	SIZED_DELETE_ARRAY,	/* operator delete[], the same */
};
MH_HIDDEN void mh_free_sized_checked(void *p, enum sized_free_fn fn, bool aligned, size_t align,
				     size_t size);
/*
 * The request C++'s operator new and new[] of size bytes (no alignment
 * given) make of the default heap: from 16 bytes on, a multiple of 16,
 * whose class is 16-aligned (sizeclass.c), where malloc's 24, 40 and 56
 * bytes are not. C++ asks of new[] storage aligned for any object that
 * fits in it, and Clang assumes that of every new-expression (an object
 * of 24, 40 or 56 bytes is zeroed with 16-byte aligned stores). Large
 * blocks are page-aligned as they are. The sized deletes check a block
 * against the class of this request.
 */
static inline size_t cxx_new_request(size_t size)
{
	return size >= 16 && size <= MH_MAX_SMALL_SIZE ? (size + 15) & ~(size_t)15 : size;
}
/* Large blocks (malloc_large.c): the pages of a block of size bytes; a
 * block of size bytes (zeroed if zero), aligned to align if above a page,
 * placed by place, or NULL with errno ENOMEM; one realloc moves to for
 * size, with room to grow if grows; whether a block of npages pages could
 * have come from malloc, calloc, realloc or aligned_alloc of size bytes. */
MH_HIDDEN uintptr_t large_npages(size_t size);
MH_HIDDEN void *large_alloc(size_t size, size_t align, bool zero, enum span_place place);
MH_HIDDEN void *realloc_moved_large(size_t size, bool grows);
MH_HIDDEN bool large_block_fits(uintptr_t npages, size_t size);
/* The free of p, a checked large block of s, by the thread of cache c or
 * none, into c's large blocks if keep (free.c). */
MH_HIDDEN void large_free(struct mcache *c, struct mspan *s, uintptr_t p, bool keep,
			  const char *what);

/* Fork handlers take every allocator lock (malloc.c registers them). */
MH_HIDDEN void mheap_lock_all(void);
MH_HIDDEN void mheap_unlock_all(void);

#endif
