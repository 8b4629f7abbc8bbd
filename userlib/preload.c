// SPDX-License-Identifier: MIT
/*
 * The malloc family under its standard names, for LD_PRELOAD=libmheap.so:
 * the functions whose contract differs from every mh_* function's. Those
 * with the same contract (malloc, free, cfree, calloc, realloc,
 * aligned_alloc) are aliases at the end of malloc.c. Each behaves as
 * glibc's (selftests/preload_wrappers_test.c compares them case by case).
 * Only the shared object contains these names; programs that link
 * libmheap.a keep their libc malloc and call mh_* explicitly.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"
#include "mheap_impl.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return mh_realloc(p, total);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	int saved = errno;
	void *p;

	if (!IS_POW2(align) || align % sizeof(void *))
		return EINVAL;
	p = mh_aligned_alloc(align, size);
	if (!p) {
		int err = errno;

		errno = saved;
		return err;
	}
	*out = p;
	return 0;
}

EXPORT void *valloc(size_t size)
{
	return mh_aligned_alloc((size_t)sysconf(_SC_PAGESIZE), size);
}

/* The size rounded up to whole pages, one page for 0; a size within a page
 * of SIZE_MAX cannot be rounded and fails as glibc's does (ENOMEM). */
EXPORT void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded;

	if (__builtin_add_overflow(size, page - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded = ALIGN_DOWN(rounded, page);
	return mh_aligned_alloc(page, rounded ? rounded : page);
}

/* As glibc: an alignment that is not a power of two is rounded up to one (0
 * gives malloc's alignment); one above the largest power of two is EINVAL. */
EXPORT void *memalign(size_t align, size_t size)
{
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if (align <= 1)
		align = 1;
	else if (!IS_POW2(align))	/* the next power of two: 24 -> 32 */
		align = (size_t)2 << (63 - __builtin_clzl(align - 1));
	return mh_aligned_alloc(align, size);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return mh_usable_size(p);
}

/*
 * C23's sized frees (not in glibc 2.36). The size must be one the
 * block could have been allocated with - the same size class for a small
 * object, the same pages for a large one (or down to just over half of
 * them, what realloc keeps) - and, for free_aligned_sized, the block must
 * have the alignment; anything else aborts with one line, as an invalid
 * free does: "mheap: free_sized of 0x... with size 100: the object is 48
 * bytes (size mismatch)". NULL is a no-op.
 */
EXPORT void free_sized(void *p, size_t size)
{
	mh_free_sized_checked(p, SIZED_FREE, false, 0, size);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
	mh_free_sized_checked(p, SIZED_FREE, true, align, size);
}
