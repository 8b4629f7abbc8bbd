// SPDX-License-Identifier: MIT
/*
 * The frees that are given the block's size: C23's free_sized and
 * free_aligned_sized, C++'s sized operator delete and delete[] (every
 * delete of a C++14 program), all through mh_free_sized_checked
 * (mheap_impl.h). They take mh_free's fast path, where the size's class is
 * compared with the span's as well; anything else is checked the whole
 * way - checked_span, a double free, then whether the block could have
 * come from a request of that size and alignment - and then freed by
 * mh_free. A mismatch aborts with one "mheap: ..." line naming the call,
 * the address and what does not fit, as an invalid free does.
 */
#include <stdio.h>
#include <string.h>

#include "checkedfree.h"
#include "entry.h"
#include "mheap_impl.h"
#include "secure.h"
#include "sizeclass.h"

/*
 * Whether the block of s could have come from malloc(size), calloc or
 * realloc to size (align 1), or from aligned_alloc(align, size): a small
 * object must be of the class that request is served from; a large one
 * must have pages that malloc or realloc could give size
 * (large_block_fits).
 */
static bool block_fits(const struct mspan *s, size_t align, size_t size)
{
	if (s->state == MSPAN_SMALL)
		return size <= MH_MAX_SMALL_SIZE && align <= MH_PAGE_SIZE &&
		       aligned_class(align, size) == s->sizeclass;
	return (size > MH_MAX_SMALL_SIZE || align > MH_PAGE_SIZE) &&
	       large_block_fits(s->npages, size);
}

/* The calls that free with a size, as their messages name them (less the
 * leading " in "): by fn, and without or with an alignment. */
static const char *const sized_free_what[][2] = {
	[SIZED_FREE] = { " in free_sized", " in free_aligned_sized" },
	[SIZED_DELETE] = { " in operator delete", " in operator delete" },
	[SIZED_DELETE_ARRAY] = { " in operator delete[]", " in operator delete[]" },
};

/* Abort: a sized free (fn names it) of p, an allocated block of have
 * bytes, with a size or an alignment it cannot have; both modes word it
 * so, with the call's arguments as it had them. */
void sized_free_mismatch(uintptr_t p, const char *fn, bool aligned, size_t align, size_t size,
			 size_t have)
{
	char with[64];

	if (aligned)
		snprintf(with, sizeof(with), "alignment %zu and size %zu", align, size);
	else
		snprintf(with, sizeof(with), "size %zu", size);
	if (!IS_POW2(align))
		mh_fatal("%s of %#lx with %s: the alignment is not a power of two",
			 fn, (unsigned long)p, with);
	if (p % align)
		mh_fatal("%s of %#lx with %s: the object is not %zu-byte aligned (alignment mismatch)",
			 fn, (unsigned long)p, with, align);
	mh_fatal("%s of %#lx with %s: the object is %zu bytes (size mismatch)", fn,
		 (unsigned long)p, with, have);
}

/* The request a block freed with size came from: new's is rounded up. */
static inline size_t sized_request(enum sized_free_fn fn, bool aligned, size_t size)
{
	return fn != SIZED_FREE && !aligned ? cxx_new_request(size) : size;
}

/* heap_free_sized_default but its fast path: out of line, so that the
 * fast path saves and restores no registers
 * (docs/heap-objects-log.md#the-sized-frees-fast-path-without-its-slow-path-2026-12-07). */
static __attribute__((noinline)) void sized_free_slow(void *ptr, enum sized_free_fn fn,
						      bool aligned, size_t align, size_t size)
{
	const char *what = sized_free_what[fn][aligned];
	uintptr_t p = (uintptr_t)ptr;
	uint32_t idx;
	uint64_t gen;
	struct mspan *s;

	if (!ptr)
		return;
	/* In the secure mode: the caller read the entry table's free_sized
	 * before the heap was set up (entry.h), and p is the secure layer's,
	 * which checks its own sizes (the slow path only: no cost to the
	 * fast path, which such a thread, without a cache, misses). */
	if (unlikely(mh_secure)) {
		heap_free_sized_secure(ptr, fn, aligned, align, size);
		return;
	}
	/* gen before the checks: a remote free holds the span in the life
	 * they read or aborts (checked_span_life). */
	s = checked_span_life(span_of(p), p, &idx, &gen, what);
	/* A freed object is a double free, whatever the size says, named as
	 * the call, small or large. */
	if (s->state == MSPAN_SMALL && !mspan_obj_allocated(s, idx))
		mh_freed_pointer(p, what);
	if (!aligned)
		align = 1;
	if (!IS_POW2(align) || p % align || !block_fits(s, align, sized_request(fn, aligned, size)))
		sized_free_mismatch(p, what + strlen(" in "), aligned, align, size,
				    s->state == MSPAN_SMALL ? (size_t)s->elemsize :
							      (size_t)(s->npages << MH_PAGE_SHIFT));
	/* Freed from the span just checked (no second lookup), naming the
	 * call if a free of p racing this one wins. */
	heap_free_span(s, idx, ptr, gen, what);
}

/* A sized free in the default mode (mh_free_sized_checked: entry.h). */
void heap_free_sized_default(void *ptr, enum sized_free_fn fn, bool aligned, size_t align,
			       size_t size)
{
	uintptr_t p = (uintptr_t)ptr;
	struct mcache *c = mh_tls_fast_cache;
	struct mspan *s;

	/* mh_free's fast path, the size checked against the span it finds:
	 * every delete of a C++ program comes here (sized deallocation is
	 * the default from C++14), as fast as an unsized free
	 * (docs/heap-objects-log.md#the-sized-frees-own-fast-path-2026-12-06). */
	if (likely(!aligned && size <= MH_MAX_SMALL_SIZE)) {
		s = owned_span(c, p);
		if (likely(s && s->sizeclass == size_to_class(sized_request(fn, false, size)) &&
			   local_free(c, s, p)))
			return;
	}
	sized_free_slow(ptr, fn, aligned, align, size);
}

/* A sized free in the secure mode, whose blocks keep the size they were
 * asked with (new's too), checked as it is. */
void heap_free_sized_secure(void *ptr, enum sized_free_fn fn, bool aligned, size_t align,
			      size_t size)
{
	secure_free_sized(ptr, sized_free_what[fn][aligned], aligned, aligned ? align : 1, size);
}

MH_ENTRY(void, mh_free_sized_checked,
	 (void *ptr, enum sized_free_fn fn, bool aligned, size_t align, size_t size), free_sized,
	 (ptr, fn, aligned, align, size))
