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
#include "testhooks.h"

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

#ifdef MH_TEST_HOOKS
bool mh_test_no_commit_probe;
#endif

static uintptr_t arena_hint = ARENA_HINT_START;
static struct heap_arena *arena_list, *arena_tail;	/* address order */
static uint64_t arena_count;

/* The L2 array that holds the entry of arena number n, allocated if it is
 * not there yet; NULL if there is no memory for it. */
static struct heap_arena **arena_l2(uintptr_t n)
{
#if MH_ARENA_L1_BITS == 0
	(void)n;
	return mh_arena_l2;
#else
	struct heap_arena ***slot = &mh_arena_l1[n >> MH_ARENA_L2_BITS];
	struct heap_arena **l2 = *slot;

	if (!l2) {
		l2 = sys_alloc(sizeof(*l2) << MH_ARENA_L2_BITS);
		if (l2)
			STORE_RELEASE(slot, l2);
	}
	return l2;
#endif
}

/*
 * Publish ha in the map (its L2 array exists: arenamap_grow made sure) and
 * put it in the list after prev (NULL: at the head), kept in address order
 * because runs may cross adjacent arenas.
 */
static void register_arena(struct heap_arena *ha, struct heap_arena *prev)
{
	uintptr_t n = ha->base >> MH_ARENA_SHIFT;

	STORE_RELEASE(&arena_l2(n)[n & ((1u << MH_ARENA_L2_BITS) - 1)], ha);
	ha->prev = prev;
	ha->next = prev ? prev->next : arena_list;
	if (ha->next)
		ha->next->prev = ha;
	else
		arena_tail = ha;
	if (prev)
		prev->next = ha;
	else
		arena_list = ha;
	arena_count++;
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

/*
 * Go's mheap.sysAlloc and pageAlloc.grow in one: the reservation, its
 * arenas' structs in one mapping (a mapping each, each noted in the sorted
 * metadata registry below the last one the kernel placed, cost a shift of
 * the whole registry each), the page allocator told once about the whole
 * range (pa_grow), their registration. Every step is linear in n whatever
 * the heap holds already: a terabyte's 16,384 arenas took minutes when
 * each cost a step per arena already there (docs/heap-pages-log.md).
 */
struct heap_arena *arenamap_grow(size_t n)
{
	size_t size = n * MH_ARENA_SIZE;
	struct heap_arena *ha, *prev;
	char *base;

	/* A growth by more than one arena is for one large block (or arena
	 * chunk): one the kernel would not grant glibc's malloc is refused
	 * here too, before its arenas and span pointers are made
	 * (sys_could_commit). */
	if (n > 1 && !test_hook_no_commit_probe() && !sys_could_commit(size)) {
		errno = ENOMEM;
		return NULL;
	}
	base = reserve(size);
	if (!base || (uintptr_t)(base + size) >> MH_ADDR_BITS || !sys_map(base, size))
		goto fail;
	/* Everything that can fail before the first arena is published: a
	 * failed growth leaves the heap as it was. */
	for (uintptr_t a = (uintptr_t)base; a < (uintptr_t)base + size; a += MH_ARENA_SIZE)
		if (!arena_l2(a >> MH_ARENA_SHIFT))
			goto fail;
	ha = sys_alloc(n * sizeof(*ha));
	if (!ha)
		goto fail;
	for (size_t i = 0; i < n; i++)
		ha[i].base = (uintptr_t)base + i * MH_ARENA_SIZE;
	pa_grow(ha, n);
	/* The hints put each reservation above the last, so a growth's
	 * arenas go at the tail of the list, in O(1) each; a reservation the
	 * OS placed lower (hints exhausted, or a sanitizer's build) finds its
	 * place walking down from the tail, once. From the head, for each
	 * arena, a growth by n cost n * (arenas so far) steps. */
	prev = arena_tail;
	while (prev && prev->base > ha->base)
		prev = prev->prev;
	for (size_t i = 0; i < n; i++)
		register_arena(&ha[i], i ? &ha[i - 1] : prev);
	return ha;
fail:
	if (base)
		sys_free(base, size);
	errno = ENOMEM;
	return NULL;
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

struct heap_arena *arenamap_last(void)
{
	return arena_tail;
}

uint64_t arenamap_count(void)
{
	return arena_count;
}
