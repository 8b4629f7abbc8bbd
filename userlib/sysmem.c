// SPDX-License-Identifier: MIT
/*
 * Thin wrappers over mmap/madvise (see sysmem.h for the states). The heap
 * reserves whole 64 MiB heap arenas and maps them ready at once with
 * MAP_NORESERVE: untouched pages cost no memory, and the page heap tracks
 * which pages were released so it never has to ask the kernel.
 */
#include <errno.h>
#include <sys/mman.h>

#include "sysmem.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t metadata_bytes;

void *sys_reserve_at(void *hint, size_t size)
{
	void *p = mmap(hint, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
		       -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (p != hint) {	/* kernels before 4.17 treat the flag as a hint */
		munmap(p, size);
		errno = EEXIST;
		return NULL;
	}
	return p;
}

void *sys_reserve_aligned(size_t size, size_t align)
{
	size_t len = size + align;
	char *p = mmap(NULL, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *a = (char *)ALIGN_UP((uintptr_t)p, align);
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + size < p + len)
		munmap(a + size, (size_t)(p + len - (a + size)));
	return a;
}

bool sys_map(void *p, size_t size)
{
	return mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
}

void *sys_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	__atomic_add_fetch(&metadata_bytes, size, __ATOMIC_RELAXED);
	return p;
}

void sys_release(void *p, size_t size)
{
	/* MADV_DONTNEED rather than MADV_FREE: RSS drops at once, and the
	 * pages read as zero afterwards, which calloc relies on. */
	madvise(p, size, MADV_DONTNEED);
}

void sys_free(void *p, size_t size)
{
	munmap(p, size);
}

uint64_t sys_metadata_bytes(void)
{
	return __atomic_load_n(&metadata_bytes, __ATOMIC_RELAXED);
}
