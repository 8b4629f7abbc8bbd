// SPDX-License-Identifier: MIT
/*
 * The malloc family under its standard names, for LD_PRELOAD=libmheap.so:
 * the functions whose contract differs from every mh_* function's. Those
 * with the same contract (malloc, free, cfree, calloc, realloc,
 * aligned_alloc, memalign) are aliases at the end of malloc.c. Only the
 * shared object contains these names; programs that link libmheap.a keep
 * their libc malloc and call mh_* explicitly.
 */
#include <errno.h>
#include <stddef.h>
#include <unistd.h>

#include "internal.h"

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

EXPORT void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return mh_aligned_alloc(page, ALIGN_UP(size, page));
}

EXPORT size_t malloc_usable_size(void *p)
{
	return mh_usable_size(p);
}
