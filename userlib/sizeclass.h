/* SPDX-License-Identifier: MIT */
/*
 * Size classes (Go's sizeclasses.go). Every small request is rounded up to
 * one of MH_NUM_CLASSES - 1 object sizes; class 0 stands for "large", an
 * object with a span of its own. See sizeclass.c for how the table is made.
 */
#ifndef MHEAP_SIZECLASS_H
#define MHEAP_SIZECLASS_H

#include "internal.h"

struct size_class {
	uint32_t size;		/* object size in bytes */
	uint32_t npages;	/* pages in one span of this class */
	uint32_t nelems;	/* objects in one span */
	uint32_t divmul;	/* offset * divmul >> 32 == offset / size */
};

/* Requests up to 1024 bytes are looked up in 8-byte steps, above in 128. */
#define MH_SMALL_SIZE_MAX	1024
#define MH_SMALL_SIZE_DIV	8
#define MH_LARGE_SIZE_DIV	128

MH_HIDDEN extern struct size_class mh_class[MH_NUM_CLASSES];
MH_HIDDEN extern uint8_t mh_size_to_class8[MH_SMALL_SIZE_MAX / MH_SMALL_SIZE_DIV + 1];
MH_HIDDEN extern uint8_t mh_size_to_class128[(MH_MAX_SMALL_SIZE - MH_SMALL_SIZE_MAX) /
					     MH_LARGE_SIZE_DIV + 1];

/* Fill the tables; idempotent, called once during heap initialisation. */
MH_HIDDEN void sizeclass_init(void);

/* The class of a request of size bytes, 1 <= size <= MH_MAX_SMALL_SIZE. */
static inline unsigned size_to_class(size_t size)
{
	if (size <= MH_SMALL_SIZE_MAX - 8)
		return mh_size_to_class8[(size + MH_SMALL_SIZE_DIV - 1) / MH_SMALL_SIZE_DIV];
	return mh_size_to_class128[(size - MH_SMALL_SIZE_MAX + MH_LARGE_SIZE_DIV - 1) /
				   MH_LARGE_SIZE_DIV];
}

/*
 * The class mh_aligned_alloc(align, size) serves a small size from, align a
 * power of two up to a page: objects sit at base + i * size in page-aligned
 * spans, so a class whose size is a multiple of align keeps every object
 * aligned. The largest class (32 KiB) is a multiple of every such align.
 * For align <= 8 it is malloc's class: every class is a multiple of 8.
 */
static inline unsigned aligned_class(size_t align, size_t size)
{
	unsigned cls = size_to_class(size);

	while (mh_class[cls].size % align)
		cls++;
	return cls;
}

#endif
