// SPDX-License-Identifier: MIT
/*
 * The size-class table, computed at start-up by the rule Go's
 * mksizeclasses.go uses to generate its table:
 *
 *  - Candidate sizes step by an alignment that grows with the size: 8 bytes
 *    below 64 (Go: below 32), 16 below 128, size/8 up to 2 KiB, 256 above,
 *    so the rounding loss of any request stays near 1/8 of its size.
 *  - Each candidate gets the fewest pages whose leftover after packing whole
 *    objects is at most 1/8 of the span: tail waste is bounded by 12.5%.
 *  - A candidate that packs the same number of objects into the same pages
 *    as the previous class replaces it (the larger size serves both).
 *  - Finally each size grows to the largest multiple of 128 bytes that still
 *    packs the same object count, handing the tail to the objects.
 *
 * With 8 KiB pages and 32 KiB as the small-object limit this yields Go's 67
 * classes and two of our own, 40 and 56 bytes (plus class 0 for large
 * objects). The unit test checks the invariants rather than a copy of the
 * numbers.
 *
 * Departure: 40 and 56 bytes. Go's step of 16 from 32 on sends requests
 * of 33-40 bytes to 48 (up to 31% lost) and 49-56 to 64; mimalloc and
 * tcmalloc step by 8 there. A slot of 40 or 56 bytes is 16-aligned every
 * other time only, which no request it serves needs: an object of 33-40 or
 * 49-56 bytes is not a multiple of 16, so it cannot need 16-byte alignment
 * (the 24-byte class rests on the same rule; aligned_class and the secure
 * mode's slot choice skip such classes for what does). 33-40 byte strings
 * were most of what the hash-map benchmark held above mimalloc's peak:
 * docs/heap-pages-log.md#the-peak-rss-gaps-taken-apart-2026-12-07-issue-24.
 *
 * One departure: span sizes. Go gives most classes a span of one
 * page, and the large classes spans of one to four objects (8 KiB objects
 * get one page each). Go's GC sweeps in bulk; our explicit frees work span
 * by span: every span a thread uses up, frees into and takes back costs a
 * sweep and list moves, whatever the number of objects they gain it. So a
 * span is made a whole number of times larger (the tail waste stays the
 * same fraction) until it holds SPAN_OBJS_WANTED objects, as long as it
 * stays within SPAN_GROW_MAX, and in any case until it holds
 * MIN_OBJS_PER_SPAN. A larger limit would make a span wait longer for all
 * its remote frees (peak RSS), and without one the largest classes' spans
 * would reach megabytes. Measured: docs/heap.md#size-classes.
 *
 * The dense classes (more than DENSE_SPAN_OBJS objects in a page: up to
 * 112 bytes) grow further, to SPAN_GROW_MAX as long as the span holds at
 * most MH_MAX_OBJS_PER_SPAN objects. Up to 48 B their span struct is
 * mostly bitmap words, and a one-page span paid its 128-byte header and
 * the rounding to the sharing block (mspan.h) per 8 KiB - 3.1% of the
 * memory of 32 B objects, most of what mheap held above mimalloc's peak
 * with many small objects; four pages of 32 B objects take 640 bytes of
 * struct, not 1,024. At 64-112 B a class's live objects outnumbered a
 * one-page span (73-128 objects) in programs with a few hundred of them:
 * the thread changed spans every few dozen allocations, each change a
 * sweep and list moves, where a span of 32 KiB holds them all and is
 * swept in place. 128 B objects (64 a page, SPAN_OBJS_WANTED already)
 * keep spans of one page, as 8 B ones do (1,024, the object limit).
 * Measured:
 * docs/heap-pages-log.md#what-span-metadata-costs-the-small-objects-peak-2026-12-07-issue-24 and
 * docs/heap-objects-log.md#partly-touched-spans-and-the-refill-lane-2026-12-07-issue-24.
 *
 * The classes up to WORD_SPAN_SIZE_MAX (1 KiB) that 32 KiB leaves short
 * of SPAN_OBJS_WANTED (640 B-1 KiB: 32-51 objects) grow on, up to
 * WORD_SPAN_GROW_MAX, as long as the span stays within one bitmap word
 * (SPAN_OBJS_WANTED objects; 576 B, 56 objects, would pass it and stays).
 * A cache takes a used-up span back once an eighth of it has been freed
 * (mcache.h, MH_CACHE_REUSE_SHARE), so each span change gains an eighth
 * of the span's objects, and the free memory waiting in used-up spans is
 * the same share whatever their size: larger spans mean fewer changes
 * for the same memory, where a larger share would mean more memory. One
 * word keeps the struct at 128 bytes and the lines a free touches as
 * they were. The cost is memory in classes with fewer live objects than
 * a span holds; above 1 KiB, where programs keep fewer objects of a
 * class, 64 KiB raised the peak for nothing. Measured:
 * docs/heap.md#size-classes.
 */
#include "sizeclass.h"

/* See the last two paragraphs above. */
#define MIN_OBJS_PER_SPAN 8
#define SPAN_OBJS_WANTED 64
#define SPAN_GROW_MAX ((uint32_t)32 << 10)
#define DENSE_SPAN_OBJS 64
#define WORD_SPAN_SIZE_MAX 1024
#define WORD_SPAN_GROW_MAX ((uint32_t)64 << 10)
_Static_assert(SPAN_OBJS_WANTED == 64, "SPAN_OBJS_WANTED objects are one bitmap word");

struct size_class mh_class[MH_NUM_CLASSES];
uint8_t mh_size_to_class8[MH_SMALL_SIZE_MAX / MH_SMALL_SIZE_DIV + 1];
uint8_t mh_size_to_class128[(MH_MAX_SMALL_SIZE - MH_SMALL_SIZE_MAX) / MH_LARGE_SIZE_DIV + 1];

void sizeclass_init(void)
{
	unsigned n = 1;		/* class 0 is "large" */
	uint32_t align = 8;

	if (mh_class[1].size)
		return;
	for (uint32_t size = align; size <= MH_MAX_SMALL_SIZE; size += align) {
		if (IS_POW2(size)) {
			if (size >= 2048)
				align = 256;
			else if (size >= 128)
				align = size / 8;
			else if (size >= 64)
				align = 16;
		}
		uint32_t span = MH_PAGE_SIZE;
		while (span % size > span / 8)
			span += MH_PAGE_SIZE;
		uint32_t npages = span / MH_PAGE_SIZE;
		if (n > 1 && mh_class[n - 1].npages == npages &&
		    span / mh_class[n - 1].size == span / size) {
			mh_class[n - 1].size = size;
			continue;
		}
		if (n == MH_NUM_CLASSES)
			mh_fatal("size-class generator made more than %d classes", MH_NUM_CLASSES - 1);
		mh_class[n].size = size;
		mh_class[n].npages = npages;
		n++;
	}
	if (n != MH_NUM_CLASSES)
		mh_fatal("size-class generator made %u classes, want %d", n - 1, MH_NUM_CLASSES - 1);

	for (unsigned c = 1; c < n; c++) {
		struct size_class *sc = &mh_class[c];
		uint32_t span = sc->npages * (uint32_t)MH_PAGE_SIZE;
		uint32_t grown = (span / (span / sc->size)) & ~(uint32_t)(MH_LARGE_SIZE_DIV - 1);

		if (grown > sc->size)
			sc->size = grown;
		sc->nelems = span / sc->size;
		uint32_t k = (SPAN_OBJS_WANTED + sc->nelems - 1) / sc->nelems;

		while (k > 1 && k * span > SPAN_GROW_MAX)
			k--;
		/* Up to 1 KiB, short of SPAN_OBJS_WANTED: on within one
		 * bitmap word (the header's last paragraph). */
		if (sc->size <= WORD_SPAN_SIZE_MAX)
			while ((k + 1) * span <= WORD_SPAN_GROW_MAX &&
			       (k + 1) * span / sc->size <= SPAN_OBJS_WANTED)
				k++;
		if (k * sc->nelems < MIN_OBJS_PER_SPAN)
			k = (MIN_OBJS_PER_SPAN + sc->nelems - 1) / sc->nelems;
		if (sc->nelems > DENSE_SPAN_OBJS)
			while ((k + 1) * span <= SPAN_GROW_MAX &&
			       (k + 1) * sc->nelems <= MH_MAX_OBJS_PER_SPAN)
				k++;
		sc->npages *= k;
		sc->nelems = sc->npages * (uint32_t)MH_PAGE_SIZE / sc->size;
		sc->divmul = (uint32_t)(UINT32_MAX / sc->size + 1);
	}

	/* Lookup tables: the smallest class that holds each step. */
	unsigned c = 1;
	for (unsigned i = 0; i < sizeof(mh_size_to_class8); i++) {
		uint32_t size = i * MH_SMALL_SIZE_DIV;
		while (mh_class[c].size < size)
			c++;
		mh_size_to_class8[i] = (uint8_t)c;
	}
	for (unsigned i = 0; i < sizeof(mh_size_to_class128); i++) {
		uint32_t size = MH_SMALL_SIZE_MAX + i * MH_LARGE_SIZE_DIV;
		while (mh_class[c].size < size)
			c++;
		mh_size_to_class128[i] = (uint8_t)c;
	}
	/* Size 0 is served as the smallest class. */
	mh_size_to_class8[0] = 1;
}
