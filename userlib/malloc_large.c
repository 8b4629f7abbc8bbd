// SPDX-License-Identifier: MIT
/*
 * Large blocks (above 32 KiB, a span of their own): how many pages a request
 * gets, where they come from, what calloc writes of them, the room realloc
 * gives a block it moves, and which sizes a block could have come from (the
 * sized frees' check). malloc.c's entry points call in here for every
 * request above the small classes; the free side is there too (large_free,
 * the thread's cache in largecache.c).
 */
#include <errno.h>
#include <string.h>

#include "mcache.h"
#include "mheap_impl.h"
#include "secure.h"
#include "sizeclass.h"

/*
 * calloc writes a large block of known-zero pages (fresh or released) up to
 * this size, rather than leave them to the kernel's zero page. A program
 * that reads such memory before writing it - a hash table's new bucket
 * array, rehashed into - takes two faults per page: the first maps the
 * shared zero page, the second copies it, and the copy has to flush the
 * stale entry from the TLB of every CPU running another of the process's
 * threads. Blocks above the limit still get the zero page, so that a big,
 * sparsely used calloc stays cheap in time and memory; up to the limit a
 * sparse user loses at most 1,024 page faults and 4 MiB of RSS per block.
 * Measured: docs/heap.md#calloc-of-a-large-block.
 */
#define CALLOC_WRITE_MAX	((size_t)4 << 20)

/*
 * The pages of a large block of size bytes. Blocks of 64 KiB to 512 KiB
 * (LARGE_GRAIN_PAGES up to the longest the thread's large cache keeps)
 * span a whole number of 64 KiB, as mimalloc's large pages span whole
 * 64 KiB slices. A program's blocks of such sizes then lie on a 64 KiB
 * lattice wherever they churn: a block freed and one of another size
 * made in its place begin at the same few places, so the pages a program
 * touches near the start of its blocks (a header, a first record) are
 * touched again rather than one more page of every 8 KiB in turn; with
 * page-sized steps, a thread that wrote the first word of each of its
 * 64-512 KiB blocks ended with about half the pages of the area its
 * blocks had moved over resident (`peakfree`: 6.5 MiB). And the cache's
 * lengths repeat (8 instead of 57), so more requests find one. The tail
 * a block gets beyond its request is usable (malloc_usable_size) and
 * costs no memory until written: fresh or released pages stay untouched.
 * Shorter blocks keep page steps (a 40 KiB block would take 64). In the
 * secure mode a middle block's trailer sits at the end of its pages
 * (secure_middle.c), on a page of its own past the request in a tail;
 * its malloc'd middle blocks take the lattice all the same (in page steps
 * the thread's cache matched fewer requests, and the rest took the heap
 * lock), but realloc's (PLACE_LOW) keep page steps (on the lattice the
 * room realloc leaves to grow held too much as peak RSS).
 * Measured: docs/heap-pages-log.md#large-blocks-on-a-64-kib-lattice-2026-12-07-issue-24,
 * docs/secure-log.md#row-by-row-on-the-new-host-and-the-windows-refill-2026-12-07-issue-26,
 * docs/secure-log.md#what-each-check-costs-and-the-middle-blocks-way-back-2026-12-07-issue-26.
 */
#define LARGE_GRAIN_PAGES	((uintptr_t)8)

/* The pages of a block of size bytes on the lattice (above). */
static uintptr_t lattice_npages(size_t size)
{
	uintptr_t npages = (size + MH_PAGE_SIZE - 1) >> MH_PAGE_SHIFT;

	if (npages >= LARGE_GRAIN_PAGES && npages <= MH_LARGE_CACHE_PAGES_MAX)
		npages = ALIGN_UP(npages, LARGE_GRAIN_PAGES);
	return npages;
}

uintptr_t large_npages(size_t size)
{
	if (mh_secure)
		return (size + MH_PAGE_SIZE - 1) >> MH_PAGE_SHIFT;
	return lattice_npages(size);
}

void *large_alloc(size_t size, size_t align, bool zero, enum span_place place)
{
	struct mcache *c = mcache_get();
	uintptr_t npages, align_pages = 1;
	struct mspan *s;

	if (size > PTRDIFF_MAX - MH_ARENA_SIZE) {
		errno = ENOMEM;
		return NULL;
	}
	/* The secure mode's middle blocks from malloc (PLACE_LARGE) on the
	 * lattice too, realloc's (PLACE_LOW) in page steps (above). */
	npages = mh_secure && place == PLACE_LARGE ? lattice_npages(size) : large_npages(size);
	if (align > MH_PAGE_SIZE)
		align_pages = align >> MH_PAGE_SHIFT;
	mheap_init();
	/* The thread's own freed blocks first (largecache.c): in the secure
	 * mode its middle blocks after their delay (secure_middle.c). */
	s = c && place == PLACE_LARGE && align_pages == 1 ? mcache_large_take(c, npages) : NULL;
	if (s) {
		owner_add(&c->nmalloc[0], 1);
		if (zero)	/* the pages asked for (below) */
			memset((void *)s->base, 0, ALIGN_UP(size, MH_PAGE_SIZE));
		return (void *)s->base;
	}
	if (c && LOAD_RELAXED(&c->empty_bytes) >= npages << MH_PAGE_SHIFT &&
	    !mheap_fits_resident(npages, align_pages, place)) {
		/* Only fresh pages have room, while this thread keeps empty
		 * spans scattered over resident ones (and freed large
		 * blocks none of which fits): give those back first,
		 * so that the page heap can merge them into runs. A hash map
		 * rebuilt after it was destroyed took 1 MiB of fresh pages
		 * per round for its middle-sized bucket arrays without.
		 * Fewer empty pages than the block needs are not worth the
		 * look (it takes the heap lock once more). */
		mcache_release_empty(c);
		mcache_large_release(c);
		mheap_flush_caches_locking();
	}
	s = mheap_alloc_span(npages, align_pages, 0, MSPAN_LARGE, place, NULL);
	if (!s)
		return NULL;
	/* The pages asked for, not a lattice block's tail (large_npages),
	 * which calloc leaves as malloc does: untouched, or old data. */
	if (zero) {
		size_t len = ALIGN_UP(size, MH_PAGE_SIZE);

		if (s->needzero || len <= CALLOC_WRITE_MAX)
			memset((void *)s->base, 0, len);
	}
	if (c)
		owner_add(&c->nmalloc[0], 1);
	else
		mcache_count_uncached(mh_dead_nmalloc, 0);
	return (void *)s->base;
}

/*
 * A large block that realloc has to move. It goes low, where first fit
 * leaves it the free pages above that growth in place needs; and a block
 * that moves because it grows gets half as much again in room
 * (REALLOC_ROOM_MAX at most): a buffer built up piece by piece grows
 * again, and the pages after it are often taken (by another such buffer,
 * placed low just the same), so without room it moved at nearly every
 * step at which another block stood in its way, copying all of itself
 * each time. With room the sizes at which it moves grow geometrically,
 * and what it copies in all stays within a few times its final size.
 * The room costs no resident memory until it is written (fresh or
 * released pages), and realloc keeps the block in place as long as it
 * needs more than half its pages, which the room leaves it. Measured:
 * docs/heap.md#realloc-growth-room.
 */
#define REALLOC_ROOM_MAX	MH_ARENA_SIZE

static size_t realloc_room(size_t size)
{
	return size / 2 < REALLOC_ROOM_MAX ? size / 2 : REALLOC_ROOM_MAX;
}

void *realloc_moved_large(size_t size, bool grows)
{
	size_t room = realloc_room(size);
	int saved = errno;
	void *q;

	if (grows && size <= PTRDIFF_MAX - MH_ARENA_SIZE - room) {
		q = large_alloc(size + room, 0, false, PLACE_LOW);
		if (q)
			return q;
		errno = saved;	/* without the room, then */
	}
	return large_alloc(size, 0, false, PLACE_LOW);
}

/*
 * Whether a large block of npages pages could have come from a request of
 * size bytes: the pages large_alloc gives size, those realloc keeps for
 * size (down to just over half the block; a kept block large_alloc takes,
 * at most 1/MH_LARGE_CACHE_SLACK longer, is among them), or those a block
 * realloc moves to for size gets with its room. On the 64 KiB lattice the last may be more than
 * twice size: realloc to 60,000 bytes moves to 90,000, a 128 KiB block.
 */
bool large_block_fits(uintptr_t npages, size_t size)
{
	size_t bytes = npages << MH_PAGE_SHIFT;

	if (!size)
		size = 1;	/* aligned_alloc(a, 0) */
	return size <= bytes && (size > bytes / 2 || large_npages(size) == npages ||
				 (size <= PTRDIFF_MAX - MH_ARENA_SIZE - realloc_room(size) &&
				  large_npages(size + realloc_room(size)) == npages));
}

bool heap_grow_plain(void *ptr, size_t size, size_t *room)
{
	struct mspan *s = span_of((uintptr_t)ptr);
	uintptr_t npages = large_npages(size);

	if (!s || s->state != MSPAN_LARGE || s->base != (uintptr_t)ptr || npages <= s->npages ||
	    !mheap_grow_span(s, npages))
		return false;
	*room = npages << MH_PAGE_SHIFT;
	return true;
}
