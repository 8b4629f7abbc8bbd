/* SPDX-License-Identifier: MIT */
/*
 * fixalloc: a free-list allocator for the heap's own fixed-size metadata
 * (spans, caches, bitmaps), as Go's mfixalloc.go. Memory comes from the OS in
 * 64 KiB slabs and is never returned; freed objects go on a free list and are
 * handed out again. Objects come back zeroed, except the first `keep` bytes
 * of a reused object, which survive (spans keep their generation counter
 * across reuse, so a stale pointer to a recycled span can be recognized),
 * and the bytes from `zeroed` on, which the user sets itself (a span's
 * bitmaps: mspan_init_small clears them with atomic stores, as the stats
 * may peek at a stale span's window word, mspan.h).
 *
 * Objects of different threads apart: fixalloc_alloc_apart leaves
 * FIXALLOC_APART bytes free between an object it carves for one caller
 * and the next one it carves for another. Each thread writes its own span
 * structs at every malloc and free, and reading a struct's lines in order
 * (a sweep, a window refill) makes the core's prefetchers pull in lines
 * past its end: without the gap, the first lines of the next struct, which
 * another thread may be writing as often, pass between the two cores. One
 * sharing block (internal.h) of gap is not enough here, four are. Measured:
 * docs/heap-pages-log.md#span-structs-and-caches-of-two-threads-apart-2026-12-07-issue-24.
 *
 * One slab for several sizes: fixalloc_share makes a fixalloc carve from
 * another's slab. The page heap's span struct buckets and the thread
 * caches carve from one slab (mheap.c, mcache.c), so that a thread's
 * metadata of every size fills the same pages, where a slab per size left
 * a partly written last page in each (up to six pages a process more).
 * Every size is a whole number of sharing blocks, so objects of a shared
 * slab still start blocks of their own, and the gap between callers is
 * the slab's, whichever size each carved. Measured:
 * docs/heap-pages-log.md#one-slab-for-the-heaps-metadata-2026-12-07-issue-24.
 *
 * Not thread-safe: callers hold the heap lock (all users of a shared slab
 * the same lock).
 */
#ifndef MHEAP_FIXALLOC_H
#define MHEAP_FIXALLOC_H

#include "internal.h"

/* Where new objects are carved from. */
struct fixalloc_slab {
	char *chunk;		/* current slab */
	size_t nchunk;		/* bytes left in the current slab */
	const void *last;	/* fixalloc_alloc_apart: the caller the slab's
				 * last object was carved for */
};

struct fixalloc {
	size_t size;		/* object size, at least a pointer */
	size_t keep;		/* leading bytes preserved across reuse */
	size_t zeroed;		/* reuse zeroes [keep, zeroed) */
	void *free;		/* free list, linked through the objects */
	uint64_t inuse;		/* bytes handed out */
	struct fixalloc_slab *slab;	/* own, or another's (fixalloc_share) */
	struct fixalloc_slab own;
};

/* The gap between objects carved for different callers (above). */
#define FIXALLOC_APART		(4 * MH_SHARING_BLOCK)

/* zeroed: the end of the bytes reuse zeroes, at most size; 0 for size. */
MH_HIDDEN void fixalloc_init(struct fixalloc *f, size_t size, size_t keep, size_t zeroed);
/* NULL when the OS refuses memory. */
MH_HIDDEN void *fixalloc_alloc(struct fixalloc *f);
/* fixalloc_alloc for caller (any token that tells callers apart, such as
 * the address of a thread-local variable): a new object for a caller other
 * than the last one's starts a sharing block after that one's end. A
 * reused object comes from the free list as ever, wherever it lies. */
MH_HIDDEN void *fixalloc_alloc_apart(struct fixalloc *f, const void *caller);
MH_HIDDEN void fixalloc_free(struct fixalloc *f, void *p);
/* After fixalloc_init: f carves new objects from owner's slab (the free
 * lists stay apart). f's own slab must be unused. */
MH_HIDDEN void fixalloc_share(struct fixalloc *f, struct fixalloc *owner);

#endif
