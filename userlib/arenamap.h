/* SPDX-License-Identifier: MIT */
/*
 * Heap arenas and the arena map (Go's heapArena, arenaHints and the
 * two-level arenas[L1][L2] index in malloc.go/mheap.go).
 *
 * The heap's address space is reserved in 64 MiB heap arenas, each aligned
 * to its size, at hint addresses that grow upwards from 0xc000000000 so the
 * heap stays one contiguous block wherever the OS allows (a run of free pages
 * may then cross arena boundaries). Each arena has a struct heap_arena of
 * metadata kept outside the heap: the page-to-span reverse map and the page
 * allocator's bitmaps for its 8192 pages.
 *
 * The arena map finds that metadata for any address in O(1), in Go's two
 * levels: the arena number (address >> 26) splits into an L1 index (high
 * bits) and an L2 index (low bits); L1 is a static array of pointers to L2
 * arrays, each allocated when the first arena in its range is made. As in
 * Go on amd64, L1 gets 0 bits here: 47-bit user addresses leave 21 bits of
 * arena number, so one L2 array of 2^21 entries (16 MiB of address space,
 * of which only the pages holding live entries are ever touched) covers all,
 * and a lookup is one dependent load shorter (measured:
 * docs/heap.md#heap-arenas-and-the-arena-map). With no L1 the array is a static one in .bss, which saves the load
 * of its address too. MH_ARENA_L2_BITS set lower gives a real L1 for wider
 * address spaces.
 * Entries are published with release stores and read with acquire loads and
 * never removed, so lookups take no lock, and a lookup of any pointer - heap
 * or not - is safe and tells whether it is in the heap.
 */
#ifndef MHEAP_ARENAMAP_H
#define MHEAP_ARENAMAP_H

#include "internal.h"

#define MH_ARENA_L2_BITS	21
#define MH_ARENA_L1_BITS	(MH_ADDR_BITS - MH_ARENA_SHIFT - MH_ARENA_L2_BITS)

/* The page allocator summarises each 512-page chunk of an arena. */
#define PA_CHUNK_PAGES		512
#define PA_CHUNKS		(MH_PAGES_PER_ARENA / PA_CHUNK_PAGES)
#define PA_WORDS		(MH_PAGES_PER_ARENA / 64)

/* Free-run summary of a bitmap range, in pages (Go's pallocSum). */
struct pa_sum {
	uint16_t start;		/* free pages at the low end */
	uint16_t max;		/* longest free run */
	uint16_t end;		/* free pages at the high end */
};

struct mspan;

/* Page-aligned: a growth's structs are one array (arenamap_grow), and each
 * starts a page as when each had a mapping of its own, so the page
 * allocator's state of one (written under the heap lock) shares no cache
 * line with the span pointers of the next (read by every free). */
struct __attribute__((aligned(4096))) heap_arena {
	/* spans[i] is the span holding page i while it is in use, else NULL. */
	struct mspan *spans[MH_PAGES_PER_ARENA];

	uintptr_t base;
	struct heap_arena *next, *prev;	/* all arenas, in address order */

	/* Page allocator state (pagealloc.c), under the heap lock. */
	uint64_t alloc[PA_WORDS];	/* 1: page in use */
	uint64_t scav[PA_WORDS];	/* 1: free page released to the OS */
	struct pa_sum chunk_sum[PA_CHUNKS];
	struct pa_sum sum;		/* of the whole arena */
	/* mh_nanotime() of the last allocation or free in each chunk: the
	 * scavenger leaves recently used chunks alone (scavenge.c). */
	uint64_t chunk_used[PA_CHUNKS];
	/* When the scavenger last released pages of each chunk, or 0. */
	uint64_t chunk_released[PA_CHUNKS];
	/* Bit c: chunk c holds pages of small spans (set when one is made
	 * there or a page cache takes pages of it, cleared when the chunk is
	 * all free again); large objects keep out of such chunks while they
	 * can (pagealloc_search.c, find_dirty). */
	uint16_t small_chunks;
};

#if MH_ARENA_L1_BITS == 0
/* One level: the L2 array itself is static, in .bss, so a lookup loads no
 * pointer to it first. */
MH_HIDDEN extern struct heap_arena *mh_arena_l2[1u << MH_ARENA_L2_BITS];

/* The arena holding p, or NULL when p is not in the heap. */
static inline struct heap_arena *arena_of(uintptr_t p)
{
	uintptr_t n = p >> MH_ARENA_SHIFT;

	if (n >> MH_ARENA_L2_BITS)
		return NULL;
	return LOAD_ACQUIRE(&mh_arena_l2[n]);
}
#else
MH_HIDDEN extern struct heap_arena **mh_arena_l1[1u << MH_ARENA_L1_BITS];

/* The arena holding p, or NULL when p is not in the heap. */
static inline struct heap_arena *arena_of(uintptr_t p)
{
	if (p >> MH_ADDR_BITS)
		return NULL;
	uintptr_t n = p >> MH_ARENA_SHIFT;
	struct heap_arena **l2 = LOAD_ACQUIRE(&mh_arena_l1[n >> MH_ARENA_L2_BITS]);

	if (!l2)
		return NULL;
	return LOAD_ACQUIRE(&l2[n & ((1u << MH_ARENA_L2_BITS) - 1)]);
}
#endif

/* Page number of p within its arena (arenas are aligned to their size, so
 * this needs no load of the arena's base: one less dependent load on the
 * free path). */
static inline uintptr_t arena_page(const struct heap_arena *ha, uintptr_t p)
{
	(void)ha;
	return (p >> MH_PAGE_SHIFT) & (MH_PAGES_PER_ARENA - 1);
}

/* The span holding p, or NULL (not in the heap, or a free page). A dead
 * span (MSPAN_DEAD) for the first and last pages of a freed large span the
 * page heap keeps for reuse (spancache.c). */
static inline struct mspan *span_of(uintptr_t p)
{
	struct heap_arena *ha = arena_of(p);

	return ha ? LOAD_RELAXED(&ha->spans[arena_page(ha, p)]) : NULL;
}

/*
 * Reserve n contiguous new heap arenas (heap lock held), register them in the
 * map and hand their pages to the page allocator as free, in time linear in
 * n. Returns the first (the n structs are an array), or NULL with errno =
 * ENOMEM and the heap as it was.
 */
MH_HIDDEN struct heap_arena *arenamap_grow(size_t n);
/* Point pages [p, p + npages) at s (NULL to clear). Heap lock held. */
MH_HIDDEN void arenamap_set_spans(uintptr_t p, uintptr_t npages, struct mspan *s);
/* Point the page at p, a page of the heap, at s. Heap lock held. */
static inline void arenamap_set_span(uintptr_t p, struct mspan *s)
{
	struct heap_arena *ha = arena_of(p);

	STORE_RELAXED(&ha->spans[arena_page(ha, p)], s);
}
/* First and last arenas in address order. */
MH_HIDDEN struct heap_arena *arenamap_first(void);
MH_HIDDEN struct heap_arena *arenamap_last(void);
/* Arenas reserved so far. */
MH_HIDDEN uint64_t arenamap_count(void);

#endif
