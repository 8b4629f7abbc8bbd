// SPDX-License-Identifier: MIT
/*
 * Reservation of heap arenas at hints and their registration in the arena
 * map (see arenamap.h). Runs under the heap lock.
 */
#include <errno.h>
#include <sys/mman.h>

#include "arenamap.h"
#include "pagealloc.h"
#include "sysmem.h"

#if MH_ARENA_L1_BITS == 0
struct heap_arena *mh_arena_l2[1u << MH_ARENA_L2_BITS] MH_LARGE_ZERO(mh_arena_l2);
#else
struct heap_arena **mh_arena_l1[1u << MH_ARENA_L1_BITS] MH_LARGE_ZERO(mh_arena_l1);
#endif

/* Go starts its amd64 heap at 0x00c000000000 and so do we: far from where
 * the kernel puts mmap and brk, with room to grow upwards. */
#define ARENA_HINT_START	((uintptr_t)0x00c0 << 32)
/* Give up on hints after this many occupied tries and let the OS choose. */
#define ARENA_HINT_TRIES	64

static uintptr_t arena_hint = ARENA_HINT_START;
static struct heap_arena *arena_list;
static uint64_t arena_count;

static bool register_arena(struct heap_arena *ha)
{
	uintptr_t n = ha->base >> MH_ARENA_SHIFT;
#if MH_ARENA_L1_BITS == 0
	STORE_RELEASE(&mh_arena_l2[n], ha);
#else
	struct heap_arena ***slot = &mh_arena_l1[n >> MH_ARENA_L2_BITS];
	struct heap_arena **l2 = *slot;

	if (!l2) {
		l2 = sys_alloc(sizeof(*l2) << MH_ARENA_L2_BITS);
		if (!l2)
			return false;
		STORE_RELEASE(slot, l2);
	}
	STORE_RELEASE(&l2[n & ((1u << MH_ARENA_L2_BITS) - 1)], ha);
#endif

	/* Keep the list in address order: runs may cross adjacent arenas. */
	struct heap_arena **pp = &arena_list, *prev = NULL;
	while (*pp && (*pp)->base < ha->base) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	ha->next = *pp;
	ha->prev = prev;
	if (ha->next)
		ha->next->prev = ha;
	*pp = ha;
	arena_count++;
	return true;
}

/* Sanitizers own the low address space (ASan's shadow covers 0xc000000000,
 * TSan refuses application mappings there): let the OS choose. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define USE_ARENA_HINTS 0
#else
#define USE_ARENA_HINTS 1
#endif

static void *reserve(size_t size)
{
	for (int i = 0; USE_ARENA_HINTS && i < ARENA_HINT_TRIES; i++) {
		uintptr_t at = arena_hint;

		if ((at + size) >> MH_ADDR_BITS)
			break;
		void *p = sys_reserve_at((void *)at, size);
		arena_hint = at + size;
		if (p)
			return p;
		if (errno != EEXIST)
			return NULL;
	}
	/* Hints exhausted (a sanitizer's shadow memory sits at 0xc000000000,
	 * say): anywhere will do, aligned to the arena size, and the next
	 * growth tries to continue right after it. */
	void *p = sys_reserve_aligned(size, MH_ARENA_SIZE);
	if (p)
		arena_hint = (uintptr_t)p + size;
	return p;
}

struct heap_arena *arenamap_grow(size_t n)
{
	size_t size = n * MH_ARENA_SIZE;
	char *base;
	struct heap_arena *first = NULL;

	/* A growth by more than one arena is for one large block (or arena
	 * chunk): one the kernel would not grant glibc's malloc is refused
	 * here too, before its arenas and span pointers are made
	 * (sys_could_commit). */
	if (n > 1 && !sys_could_commit(size)) {
		errno = ENOMEM;
		return NULL;
	}
	base = reserve(size);
	if (!base || (uintptr_t)(base + size) >> MH_ADDR_BITS || !sys_map(base, size)) {
		if (base)
			sys_free(base, size);
		errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct heap_arena *ha = sys_alloc(sizeof(*ha));

		if (ha) {
			ha->base = (uintptr_t)base + i * MH_ARENA_SIZE;
			pa_arena_init(ha);
		}
		if (!ha || !register_arena(ha)) {
			/* Arenas registered so far stay, as free pages; the
			 * rest of the reservation goes back. */
			if (ha)
				sys_free(ha, sizeof(*ha));
			sys_free(base + i * MH_ARENA_SIZE, (n - i) * MH_ARENA_SIZE);
			errno = ENOMEM;
			return NULL;
		}
		if (!first)
			first = ha;
	}
	return first;
}

void arenamap_set_spans(uintptr_t p, uintptr_t npages, struct mspan *s)
{
	while (npages) {
		struct heap_arena *ha = arena_of(p);
		uintptr_t i = arena_page(ha, p);
		uintptr_t k = MH_PAGES_PER_ARENA - i;

		if (k > npages)
			k = npages;
		for (uintptr_t j = 0; j < k; j++)
			STORE_RELAXED(&ha->spans[i + j], s);
		npages -= k;
		p += k << MH_PAGE_SHIFT;
	}
}

struct heap_arena *arenamap_first(void)
{
	return arena_list;
}

uint64_t arenamap_count(void)
{
	return arena_count;
}
