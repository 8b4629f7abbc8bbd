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
 * may peek at a stale span's window word, mspan.h) or keeps (a thread
 * cache's run, below).
 *
 * Objects of different threads apart: fixalloc_alloc_run carves a
 * caller's new objects from a run of its own, FIXALLOC_RUN bytes of the
 * slab at a time on 4 KiB page boundaries, so that no two callers' new
 * objects share a page. Each thread writes its own span structs at every
 * malloc and free, and reading a struct's lines in order (a sweep, a
 * window refill) makes the core's prefetchers pull in lines past its end:
 * next to another thread's struct, its first lines, which that thread
 * writes as often, passed between the two cores. The prefetchers stay
 * within a 4 KiB page. A run that the slab's next bytes follow grows in
 * place, so one caller's objects stay dense across runs; a run too short
 * for an object is left (its rest, less than an object, unused). Runs
 * replaced a gap of FIXALLOC_APART (512) bytes wherever the caller
 * changed: two threads that made their span structs by turns paid the
 * gap for nearly every struct (a 512-byte gap a 640-byte struct), 200 kB
 * in tree-t2. Measured:
 * docs/heap-pages-log.md#span-structs-and-caches-of-two-threads-apart-2026-12-07-issue-24,
 * docs/heap-pages-log.md#metadata-runs-per-thread-not-a-gap-per-change-2026-12-07-issue-24.
 *
 * One slab for several sizes: fixalloc_share makes a fixalloc carve from
 * another's slab. The page heap's span struct buckets and the thread
 * caches carve from one slab (mheap.c, mcache.c), so that a thread's
 * metadata of every size fills the same pages, where a slab per size left
 * a partly written last page in each (up to six pages a process more).
 * Every size is a whole number of sharing blocks, so objects of a shared
 * slab still start blocks of their own, and a caller's run serves every
 * size. Measured:
 * docs/heap-pages-log.md#one-slab-for-the-heaps-metadata-2026-12-07-issue-24.
 *
 * A slab's objects come either all from runs or all from fixalloc_alloc
 * (the heap's metadata slab, the user arenas' chunk structs).
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
};

/* A caller's own stretch of a slab (fixalloc_alloc_run); zero: none yet. */
struct fixalloc_run {
	char *next;		/* where its next object goes */
	size_t left;		/* bytes left from there */
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

/* What the slab takes from the OS at a time (more for a larger object). */
#define FIXALLOC_SLAB		((size_t)64 << 10)
/* What a run takes of the slab at a time, in whole 4 KiB pages (above):
 * a quarter of a slab. Its pages cost memory only once written. */
#define FIXALLOC_RUN		((size_t)16 << 10)
_Static_assert(FIXALLOC_RUN % 4096 == 0 && FIXALLOC_SLAB % FIXALLOC_RUN == 0,
	       "runs of whole pages, a slab of whole runs: every run starts a page");

/* zeroed: the end of the bytes reuse zeroes, at most size; 0 for size. */
MH_HIDDEN void fixalloc_init(struct fixalloc *f, size_t size, size_t keep, size_t zeroed);
/* NULL when the OS refuses memory. */
MH_HIDDEN void *fixalloc_alloc(struct fixalloc *f);
/* fixalloc_alloc for the caller that owns run (a thread's, kept where
 * the thread's cache is): a new object is carved from run, which takes
 * more of the slab when it is too short (above). A reused object comes
 * from the free list as ever, wherever it lies. */
MH_HIDDEN void *fixalloc_alloc_run(struct fixalloc *f, struct fixalloc_run *run);
MH_HIDDEN void fixalloc_free(struct fixalloc *f, void *p);
/* After fixalloc_init: f carves new objects from owner's slab (the free
 * lists stay apart). f's own slab must be unused. */
MH_HIDDEN void fixalloc_share(struct fixalloc *f, struct fixalloc *owner);

#endif
