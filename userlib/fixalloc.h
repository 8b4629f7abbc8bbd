/* SPDX-License-Identifier: MIT */
/*
 * fixalloc: a free-list allocator for the heap's own fixed-size metadata
 * (spans, caches, bitmaps), as Go's mfixalloc.go. Memory comes from the OS in
 * 64 KiB slabs and is never returned; freed objects go on a free list and are
 * handed out again. Objects come back zeroed, except the first `keep` bytes
 * of a reused object, which survive (spans keep their generation counter
 * across reuse, so a stale pointer to a recycled span can be recognized).
 *
 * Not thread-safe: callers hold the heap lock.
 */
#ifndef MHEAP_FIXALLOC_H
#define MHEAP_FIXALLOC_H

#include "internal.h"

struct fixalloc {
	size_t size;		/* object size, at least a pointer */
	size_t keep;		/* leading bytes preserved across reuse */
	void *free;		/* free list, linked through the objects */
	char *chunk;		/* current slab */
	size_t nchunk;		/* bytes left in the current slab */
	uint64_t inuse;		/* bytes handed out */
};

MH_HIDDEN void fixalloc_init(struct fixalloc *f, size_t size, size_t keep);
/* NULL when the OS refuses memory. */
MH_HIDDEN void *fixalloc_alloc(struct fixalloc *f);
MH_HIDDEN void fixalloc_free(struct fixalloc *f, void *p);

#endif
