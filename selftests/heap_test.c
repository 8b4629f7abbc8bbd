// SPDX-License-Identifier: GPL-2.0
/*
 * The general heap, layer by layer: size classes, the arena map, the page
 * allocator, span bitmaps, the scavenger, and the malloc-compatible API.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arenamap.h"
#include "heapcheck.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "pagecache.h"
#include "sizeclass.h"

/* ------------------------------------------------------------ size classes */

TEST(sizeclass_table_invariants)
{
	mh_free(mh_malloc(1));	/* initialises the heap and its tables */

	ASSERT_EQ(0, mh_class[0].size);
	for (unsigned c = 1; c < MH_NUM_CLASSES; c++) {
		const struct size_class *sc = &mh_class[c];
		uint32_t span = sc->npages * (uint32_t)MH_PAGE_SIZE;

		/* Sizes grow strictly and are 8-aligned; a class that serves
		 * a multiple of 16 is 16-aligned (an object whose size is not
		 * a multiple of 16 cannot need 16-byte alignment, so 24, 40
		 * and 56 may step by 8). */
		if (c > 1)
			ASSERT_LT(mh_class[c - 1].size, sc->size);
		ASSERT_EQ(0, sc->size % 8);
		if (sc->size / 16 > mh_class[c - 1].size / 16)
			ASSERT_EQ(0, sc->size % 16) TH_LOG("class %u: %u bytes", c, sc->size);
		/* A span holds nelems objects and wastes at most 1/8. */
		ASSERT_EQ(span / sc->size, sc->nelems);
		ASSERT_LE(span - sc->nelems * sc->size, span / 8);
		ASSERT_LE(sc->nelems, MH_MAX_OBJS_PER_SPAN);
		/* Spans hold 64 objects unless that would take more than
		 * 32 KiB, and 8 in any case (sizeclass.c). */
		ASSERT_GE(sc->nelems, 8);
		if (sc->nelems < 64)
			ASSERT_GT(span, 16u << 10) TH_LOG("class %u: %u objects in %u bytes",
							  c, sc->nelems, span);
		if (span > (32u << 10))
			ASSERT_LT(sc->nelems, 16) TH_LOG("class %u: %u objects in %u bytes",
							 c, sc->nelems, span);
		/* For every offset in the span, offset * divmul carries the
		 * object index in its high half, and its low half is below
		 * divmul exactly at object starts (free relies on both). */
		for (uint32_t off = 0; off < span; off++) {
			uint64_t q = (uint64_t)off * sc->divmul;

			ASSERT_EQ(off / sc->size, (uint32_t)(q >> 32));
			ASSERT_EQ(off % sc->size == 0, (uint32_t)q < sc->divmul);
		}
	}
	ASSERT_EQ(8, mh_class[1].size);
	ASSERT_EQ(MH_MAX_SMALL_SIZE, mh_class[MH_NUM_CLASSES - 1].size);
}

/* sizeclass.c: classes of more than 64 objects a page (up to 112 B) have
 * spans of 32 KiB, or of as many pages as hold at most
 * MH_MAX_OBJS_PER_SPAN objects (8 B: one page of 1,024); 128 B (64 a
 * page) one page. Until 2026-12-07 those of 73-128 objects a page (64-112
 * B) had one page too. */
TEST(the_dense_classes_have_spans_of_32_kib_within_the_object_limit)
{
	mh_free(mh_malloc(1));
	for (unsigned c = 1; c < MH_NUM_CLASSES; c++) {
		const struct size_class *sc = &mh_class[c];
		uint32_t per_page = (uint32_t)MH_PAGE_SIZE / sc->size;
		uint32_t want = per_page ? MH_MAX_OBJS_PER_SPAN / per_page : 0;

		if (want > (32u << 10) / MH_PAGE_SIZE)
			want = (32u << 10) / MH_PAGE_SIZE;
		if (per_page > 64) {
			EXPECT_EQ(want, sc->npages) TH_LOG("class %u (%u B)", c, sc->size);
		} else if (per_page == 64) {
			EXPECT_EQ(1, sc->npages) TH_LOG("class %u (%u B)", c, sc->size);
		}
	}
}

/* sizeclass.c: requests of 33-40 and 49-56 bytes take slots of 40 and 56
 * bytes, not Go's 48 and 64, and 16-byte alignment stays where a request
 * may need it. */
TEST(requests_of_33_to_40_and_49_to_56_bytes_take_slots_of_40_and_56)
{
	for (size_t n = 33; n <= 56; n++) {
		void *p = mh_malloc(n);
		size_t want = n <= 40 ? 40 : n <= 48 ? 48 : 56;

		ASSERT_NE(NULL, p);
		EXPECT_EQ(want, mh_usable_size(p)) TH_LOG("malloc(%zu)", n);
		if (n % 16 == 0)
			EXPECT_EQ(0, (uintptr_t)p % 16) TH_LOG("malloc(%zu)", n);
		mh_free(p);
	}
}

TEST(popcount_matches_a_bit_by_bit_count)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	EXPECT_EQ(0, mh_popcount(0));
	EXPECT_EQ(64, mh_popcount(~(uint64_t)0));
	for (int i = 0; i < 1000; i++) {
		unsigned n = 0;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		for (int b = 0; b < 64; b++)
			n += (x >> b) & 1;
		ASSERT_EQ(n, mh_popcount(x));
	}
}

TEST(size_to_class_picks_the_smallest_fitting_class)
{
	mh_free(mh_malloc(1));
	for (size_t size = 1; size <= MH_MAX_SMALL_SIZE; size++) {
		unsigned c = size_to_class(size);

		ASSERT_GE(mh_class[c].size, size);
		ASSERT_LT(mh_class[c - 1].size, size);
	}
}

/* malloc's fast path finds the span by request size (mcache.h): for every
 * size up to MH_DIRECT_MAX that must be the current span of the size's
 * class, when the classes first get spans and again after each has used
 * up one and moved to the next. */
static void expect_spans_by_size_match(struct __test_metadata *_metadata)
{
	struct mcache *c = mh_tls_cache;

	for (size_t size = 0; size <= MH_DIRECT_MAX; size++) {
		unsigned cls = size_to_class(size);

		ASSERT_NE(&mh_empty_span, c->alloc[cls]);
		ASSERT_EQ(c->alloc[cls], c->alloc_small[(size + 7) / 8]);
	}
}

TEST(spans_by_request_size_are_the_current_spans_of_their_classes)
{
	void **p = malloc(sizeof(*p) * 200000);
	size_t n = 0;

	ASSERT_NE(NULL, p);
	for (size_t size = 0; size <= MH_DIRECT_MAX; size++)
		p[n++] = mh_malloc(size);
	expect_spans_by_size_match(_metadata);
	/* A span's worth more of each class: every class moves on. */
	for (unsigned cls = size_to_class(1); mh_class[cls].size <= MH_DIRECT_MAX; cls++) {
		struct mspan *first = mh_tls_cache->alloc[cls];

		while (mh_tls_cache->alloc[cls] == first) {
			ASSERT_LT(n, 200000);
			p[n++] = mh_malloc(mh_class[cls].size);
		}
	}
	expect_spans_by_size_match(_metadata);
	while (n)
		mh_free(p[--n]);
	free(p);
}

/* ------------------------------------------------------------ arena map */

static int a_static;

TEST(arena_map_finds_heap_pointers_and_only_them)
{
	void *small = mh_malloc(100), *large = mh_malloc(1 << 20);
	void *libc = malloc(100);
	int on_stack;
	struct mspan *s;

	ASSERT_NE(NULL, arena_of((uintptr_t)small));
	s = span_of((uintptr_t)small);
	ASSERT_NE(NULL, s);
	EXPECT_EQ(MSPAN_SMALL, s->state);
	EXPECT_LE(s->base, (uintptr_t)small);
	EXPECT_GT(mspan_limit(s), (uintptr_t)small);

	s = span_of((uintptr_t)large + 12345);	/* interior pointer */
	ASSERT_NE(NULL, s);
	EXPECT_EQ(MSPAN_LARGE, s->state);
	EXPECT_EQ((uintptr_t)large, s->base);

	/* Arenas are 64 MiB aligned, metadata knows its base. */
	EXPECT_EQ(0, arena_of((uintptr_t)small)->base % MH_ARENA_SIZE);

	/* Anything else is not in the heap, whatever its value. */
	EXPECT_EQ(NULL, arena_of((uintptr_t)&on_stack));
	EXPECT_EQ(NULL, arena_of((uintptr_t)&a_static));
	EXPECT_EQ(NULL, arena_of((uintptr_t)libc));
	EXPECT_EQ(NULL, arena_of(0));
	EXPECT_EQ(NULL, arena_of((uintptr_t)1 << 50));
	EXPECT_EQ(NULL, arena_of(UINTPTR_MAX));
	free(libc);
	mh_free(small);
	mh_free(large);
}

TEST(heap_starts_at_the_arena_hint_and_grows_contiguously)
{
	/* Two allocations larger than an arena force two growths. */
	char *a = mh_malloc(80 << 20), *b = mh_malloc(80 << 20);
	struct heap_arena *first = arenamap_first();

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	/* 0xc000000000 is free in a fresh process. Sanitizers own that part
	 * of the address space; there the OS chooses and we only check that
	 * the objects work. */
	if (!UNDER_SANITIZER) {
		EXPECT_EQ((uintptr_t)0xc000000000, first->base);
		for (struct heap_arena *ha = first; ha->next; ha = ha->next)
			EXPECT_EQ(ha->base + MH_ARENA_SIZE, ha->next->base);
	}
	/* Large objects crossing arena boundaries are usable throughout. */
	memset(a, 1, 80 << 20);
	memset(b, 2, 80 << 20);
	EXPECT_EQ(1, a[(80 << 20) - 1]);
	mh_free(a);
	mh_free(b);
}

/* ------------------------------------------------------------ page allocator */

TEST(page_summaries)
{
	uint64_t bits[8] = { 0 };
	struct pa_sum s = pa_summarize(bits, 0, 512);

	EXPECT_EQ(512, s.start);
	EXPECT_EQ(512, s.max);
	EXPECT_EQ(512, s.end);

	bits[0] = 0xf0;		/* pages 4..7 used */
	bits[3] = ~(uint64_t)0;	/* pages 192..255 used */
	bits[7] = (uint64_t)1 << 63;	/* page 511 used */
	s = pa_summarize(bits, 0, 512);
	EXPECT_EQ(4, s.start);
	EXPECT_EQ(0, s.end);
	EXPECT_EQ(511 - 256, s.max);
	s = pa_summarize(bits, 64, 128);
	EXPECT_EQ(128, s.start);
}

/* The obvious bit-by-bit summary, to check the word-wise one against. */
static struct pa_sum naive_summary(const uint64_t *bits, unsigned len)
{
	struct pa_sum s = { 0 };
	unsigned cur = 0;
	bool seen = false;

	for (unsigned i = 0; i < len; i++) {
		if (bits[i / 64] >> (i % 64) & 1) {
			if (!seen)
				s.start = (uint16_t)cur;
			seen = true;
			cur = 0;
		} else if (++cur > s.max) {
			s.max = (uint16_t)cur;
		}
	}
	if (!seen)
		s.start = (uint16_t)len;
	s.end = (uint16_t)cur;
	return s;
}

TEST(page_summaries_match_a_bit_by_bit_count)
{
	uint64_t bits[8];

	srand(7);
	for (int round = 0; round < 20000; round++) {
		for (int w = 0; w < 8; w++) {
			uint64_t r = ((uint64_t)rand() << 40) ^ ((uint64_t)rand() << 20) ^ (uint64_t)rand();

			/* Mix dense, sparse, empty and full words. */
			switch ((round + w) % 5) {
			case 0: bits[w] = 0; break;
			case 1: bits[w] = ~(uint64_t)0; break;
			case 2: bits[w] = r & (r >> 7) & (r >> 13); break;
			default: bits[w] = r; break;
			}
		}
		struct pa_sum want = naive_summary(bits, 512), got = pa_summarize(bits, 0, 512);

		ASSERT_EQ(want.start, got.start);
		ASSERT_EQ(want.max, got.max);
		ASSERT_EQ(want.end, got.end);
	}
}

#define PAGES(n) ((uintptr_t)(n) << MH_PAGE_SHIFT)

TEST(page_allocator_is_address_ordered_first_fit)
{
	uintptr_t a, b, c, d;

	mh_free(mh_malloc(1));	/* a heap arena to work in */
	mh_lock(&mh_heap.lock);
	a = pa_alloc(100, 1, PA_LOW).base;
	b = pa_alloc(100, 1, PA_LOW).base;
	pa_free(a, 100, false);
	c = pa_alloc(50, 1, PA_LOW).base;	/* fits in a's hole: goes there */
	d = pa_alloc(50, 1, PA_LOW).base;	/* the rest of the hole */
	pa_free(b, 100, false);
	pa_free(c, 50, false);
	pa_free(d, 50, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, a);
	EXPECT_EQ(a + PAGES(100), b);
	EXPECT_EQ(a, c);
	EXPECT_EQ(a + PAGES(50), d);
}

TEST(page_allocator_high_takes_the_top_of_the_highest_free_run)
{
	uintptr_t a, b, c, d;

	mh_free(mh_malloc(1));
	mh_lock(&mh_heap.lock);
	a = pa_alloc(100, 1, PA_HIGH).base;
	b = pa_alloc(100, 1, PA_HIGH).base;
	pa_free(a, 100, false);
	c = pa_alloc(30, 1, PA_HIGH).base;		/* the top of a's hole */
	d = pa_alloc(10, 16, PA_HIGH).base;	/* aligned, below c */
	pa_free(b, 100, false);
	pa_free(c, 30, false);
	pa_free(d, 10, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, a);
	EXPECT_EQ(a - PAGES(100), b);
	EXPECT_EQ(a + PAGES(70), c);
	EXPECT_EQ(ALIGN_DOWN(a + PAGES(60), PAGES(16)), d);
}

/* Large objects keep out of the chunks that hold small spans: a resident
 * place apart from them before a shorter resident run among them (small
 * spans carved into a freed block's place leave the next block of its
 * size no run to take, and it faults in fresh pages). */
TEST(a_large_block_takes_a_resident_place_apart_from_small_spans_before_a_better_fit_among_them)
{
	uintptr_t hole, edge, top, p;

	mh_free(mh_malloc(1));	/* a small span, in the lowest chunk */
	mh_lock(&mh_heap.lock);
	hole = pa_alloc(20, 1, PA_LOW).base;
	edge = pa_alloc(1, 1, PA_LOW).base;	/* bounds the hole */
	top = pa_alloc(100, 1, PA_HIGH).base;
	pa_mark_small(hole, 21);	/* as a small span there would */
	pa_free(hole, 20, false);	/* 20 resident pages among small spans */
	pa_free(top, 100, false);	/* 100 at the top of a long free run */
	p = pa_find(10, 1, PA_DIRTY);
	pa_free(edge, 1, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, hole);
	ASSERT_EQ(hole + PAGES(20), edge);
	ASSERT_GE(top - hole, PAGES(PA_CHUNK_PAGES));	/* another chunk */
	EXPECT_TRUE(p >= top && p + PAGES(10) <= top + PAGES(100));
}

/* Released pages among the n free pages at p. */
static uintptr_t released_pages_at(uintptr_t p, uintptr_t n)
{
	const struct heap_arena *ha = arena_of(p);
	uintptr_t first = (p - ha->base) >> MH_PAGE_SHIFT, cnt = 0;

	for (uintptr_t i = first; i < first + n; i++)
		cnt += ha->scav[i / 64] >> (i % 64) & 1;
	return cnt;
}

/* PA_RELEASED (the secure mode's guarded blocks, whose free drops their
 * pages) takes released pages over a lower run of resident ones that
 * first fit would take. */
TEST(released_first_placement_passes_resident_free_pages_by)
{
	uintptr_t hole, edge, first_fit, p, released;

	mh_free(mh_malloc(1));
	mh_lock(&mh_heap.lock);
	hole = pa_alloc(20, 1, PA_LOW).base;
	edge = pa_alloc(1, 1, PA_LOW).base;	/* bounds the hole */
	pa_free(hole, 20, false);		/* 20 resident free pages, lowest */
	first_fit = pa_find(10, 1, PA_LOW);
	p = pa_find(10, 1, PA_RELEASED);
	released = p ? released_pages_at(p, 10) : 0;
	pa_free(edge, 1, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, hole);
	ASSERT_EQ(hole, first_fit);
	EXPECT_NE(hole, p);
	EXPECT_EQ(10, released);
}

/* Where the lowest (!high) or highest run of n free pages starts, found
 * page by page over every arena (adjacent arenas join their runs). */
static uintptr_t naive_find(uintptr_t n, bool high)
{
	uintptr_t run_base = 0, run_len = 0, found = 0, prev_limit = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		if (ha->base != prev_limit)
			run_len = 0;
		prev_limit = ha->base + MH_ARENA_SIZE;
		for (unsigned i = 0; i < MH_PAGES_PER_ARENA; i++) {
			if (ha->alloc[i / 64] >> (i % 64) & 1) {
				run_len = 0;
				continue;
			}
			if (!run_len++)
				run_base = ha->base + PAGES(i);
			if (run_len < n)
				continue;
			if (!high)
				return run_base;
			found = run_base + PAGES(run_len - n);	/* the run's top n */
		}
	}
	return found;
}

TEST(page_allocator_searches_match_a_page_by_page_walk)
{
	enum { N = 3000 };
	static uintptr_t base[N], len[N];
	static const uintptr_t want[] = { 1, 2, 7, 63, 64, 65, 100, 511, 512, 513,
					  1000, 4096, 8191, 8192, 9000 };
	struct heap_arena *top;
	struct pa_result r;
	uintptr_t tail;

	mh_free(mh_malloc(1));
	srand(11);
	mh_lock(&mh_heap.lock);
	/* Three arenas of runs of all lengths, across chunk (512 pages) and
	 * arena (8192) boundaries, then every other one freed, and more. */
	for (int i = 0, arenas = 1; i < N; i++) {
		len[i] = (uintptr_t)(rand() % 4 ? 1 + rand() % 16 : 1 + rand() % 700);
		base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		if (!base[i] && arenas++ < 3 && arenamap_grow(1))
			base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		if (!base[i])
			break;
	}
	/* The free pages at the top of the last arena would answer every
	 * high search at once: take them, so that searches walk down. */
	for (top = arenamap_first(); top->next; top = top->next)
		;
	tail = top->sum.end;
	if (tail)
		ASSERT_TRUE(pa_alloc_at(top->base + PAGES(MH_PAGES_PER_ARENA - tail), tail, &r));
	for (int round = 0; round < 3; round++) {
		for (int i = round; i < N; i += 2 + round)
			if (base[i]) {
				pa_free(base[i], len[i], false);
				base[i] = 0;
			}
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
			uintptr_t lo = pa_find(want[k], 1, PA_LOW), hi = pa_find(want[k], 1, PA_HIGH);

			if (lo != naive_find(want[k], false) || hi != naive_find(want[k], true)) {
				mh_unlock(&mh_heap.lock);
				ASSERT_EQ(naive_find(want[k], false), lo) TH_LOG("n=%lu low", want[k]);
				ASSERT_EQ(naive_find(want[k], true), hi) TH_LOG("n=%lu high", want[k]);
			}
		}
	}
	for (int i = 0; i < N; i++)
		if (base[i])
			pa_free(base[i], len[i], false);
	if (tail)
		pa_free(top->base + PAGES(MH_PAGES_PER_ARENA - tail), tail, false);
	mh_unlock(&mh_heap.lock);
}

/*
 * First fit starts at a hint per power of two, moved up by searches and
 * down by frees (pagealloc_search.c). Allocations and frees in random order
 * over three arenas kept about two thirds full (so runs cross arena
 * boundaries), searches of every size in between: a search never
 * skips a run a walk from the bottom finds, and no hint ever lies above a
 * free run of its size (the heap checker's rule).
 */
TEST(first_fit_hints_never_skip_a_free_run)
{
	enum { N = 200, STEPS = 6000 };
	static uintptr_t base[N], len[N];
	static const uintptr_t want[] = { 1, 3, 64, 200, 512, 1279, 5000, 9000 };

	mh_free(mh_malloc(1));
	srand(7);
	mh_lock(&mh_heap.lock);
	while (!arenamap_first()->next || !arenamap_first()->next->next)
		ASSERT_NE(NULL, arenamap_grow(1));
	for (int step = 0; step < STEPS; step++) {
		int i = rand() % N;

		if (base[i]) {
			pa_free(base[i], len[i], false);
			base[i] = 0;
		} else {
			len[i] = (uintptr_t)(rand() % 4 ? 1 + rand() % 64 : 1 + rand() % 1200);
			base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		}
		if (step % 20)
			continue;
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
			uintptr_t lo = pa_find(want[k], 1, PA_LOW), broken = pa_hint_broken();

			if (lo != naive_find(want[k], false) || broken) {
				mh_unlock(&mh_heap.lock);
				ASSERT_EQ(naive_find(want[k], false), lo)
					TH_LOG("step %d, n=%lu", step, want[k]);
				ASSERT_EQ(0, broken) TH_LOG("step %d: a free run of %lu pages below its hint",
							 step, broken);
			}
		}
	}
	for (int i = 0; i < N; i++)
		if (base[i])
			pa_free(base[i], len[i], false);
	ASSERT_EQ(0, pa_hint_broken());
	mh_unlock(&mh_heap.lock);
}

TEST(large_objects_go_high_and_small_spans_stay_out_of_their_holes)
{
	enum { N = 20000 };
	static char *small[N];
	char *big = mh_malloc(1 << 20), *again, *highest = NULL;

	ASSERT_NE(NULL, big);
	mh_free(big);
	/* 20 MB of small objects after the big one is gone: first fit keeps
	 * them below, none in the hole it left... */
	for (int i = 0; i < N; i++) {
		small[i] = mh_malloc(1000);
		ASSERT_NE(NULL, small[i]);
		EXPECT_TRUE(small[i] + 1000 <= big || small[i] >= big + (1 << 20));
		if (small[i] > highest)
			highest = small[i];
	}
	EXPECT_LT(highest, big);
	/* ...so the next block of that size finds its place again, where
	 * first fit alone would have put it above all of them. */
	again = mh_malloc(1 << 20);
	EXPECT_EQ(big, again);
	mh_free(again);
	for (int i = 0; i < N; i++)
		mh_free(small[i]);
}

TEST(a_block_realloc_moves_goes_low_and_grows_in_place)
{
	char *p = mh_malloc(1 << 20), *q, *r, *top;
	char *marker = mh_malloc(64);

	ASSERT_NE(NULL, p);
	memset(p, 5, 1 << 20);
	/* At the top of the heap nothing is free above p: it must move... */
	q = mh_realloc(p, (1 << 20) + MH_PAGE_SIZE);
	ASSERT_NE(p, q);
	EXPECT_EQ(5, q[(1 << 20) - 1]);
	/* ...to the bottom, with room above it, so the next growth stays
	 * even when another large block takes the top again. */
	EXPECT_LT(q, p);
	EXPECT_GT(q, marker);
	top = mh_malloc(1 << 20);
	EXPECT_EQ(p, top);
	r = mh_realloc(q, (2 << 20));
	EXPECT_EQ(q, r);
	mh_free(r);
	mh_free(top);
	mh_free(marker);
}

/* The tests of the page heap's span cache look at what a freed large
 * block does there, past the thread's own cache of them (largecache.c),
 * which this empties. */
static void free_to_page_heap(void *p)
{
	mh_free(p);
	mcache_large_release(mh_tls_cache);
}

TEST(freed_spans_are_cached_whole_and_taken_back_first)
{
	size_t len = 5 * MH_PAGE_SIZE;	/* a large object under the cache's limit */
	char *a = mh_malloc(len), *b = mh_malloc(len), *c = mh_malloc(len), *d;
	struct mh_stats before = MH_STATS_INIT, cached = MH_STATS_INIT,
		released = MH_STATS_INIT;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, c);
	mh_stats_read(&before);
	free_to_page_heap(a);
	free_to_page_heap(c);
	/* Cached pages are idle memory to the stats (and the scavenger)... */
	mh_stats_read(&cached);
	EXPECT_EQ(before.heap_idle + 2 * len, cached.heap_idle);
	EXPECT_EQ(0, mh_usable_size(c));	/* no span maps them any more */
	/* ...and the last one freed comes back first; first fit would have
	 * picked a, the lower address. */
	d = mh_malloc(len);
	EXPECT_EQ(c, d);
	free_to_page_heap(d);
	/* mh_scavenge gives the cache back to the page allocator, which can
	 * then release it. */
	mh_scavenge();
	mh_stats_read(&released);
	EXPECT_EQ(released.heap_idle, released.heap_released);
	free_to_page_heap(b);
}

TEST(cached_spans_are_flushed_when_a_request_needs_their_pages)
{
	enum { N = 256 };		/* 256 x 512 KiB: two heap arenas */
	size_t len = 64 * MH_PAGE_SIZE;	/* the cache's longest span */
	static void *p[N];
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	void *big;

	if (UNDER_SANITIZER)
		SKIP(return, "arenas are not contiguous without the arena hints (sanitizer build)");
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
	}
	for (int i = 0; i < N; i++)
		free_to_page_heap(p[i]);
	mh_stats_read(&before);
	ASSERT_GE(before.heap_idle, (uint64_t)N * len);
	/* Only the cached pages can hold 100 MiB without growing the heap:
	 * the failed search must flush the cache and look again. */
	big = mh_malloc(100 << 20);
	ASSERT_NE(NULL, big);
	mh_stats_read(&after);
	EXPECT_EQ(before.heap_sys, after.heap_sys);
	free_to_page_heap(big);
}

TEST(cached_large_objects_are_flushed_when_first_fit_goes_above_them)
{
	size_t len = 5 * MH_PAGE_SIZE;
	char *a = mh_malloc(len), *b = mh_malloc(len), *p = NULL, *obj[9];
	struct mspan *small;
	int i;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	/* A span of 8 KiB objects (8 pages) in the cache as well: made
	 * empty, then given back by its thread. */
	for (i = 0; i < 9; i++)
		obj[i] = mh_malloc(8192);
	small = span_of((uintptr_t)obj[0]);
	ASSERT_NE(small, span_of((uintptr_t)obj[8]));
	ASSERT_EQ(8 * MH_PAGE_SIZE, small->npages << MH_PAGE_SHIFT);
	for (i = 0; i < 8; i++)
		free_to_page_heap(obj[i]);
	mcache_release_empty(mh_tls_cache);
	free_to_page_heap(a);	/* cached whole, kept for the next 5-page request */
	/* Spans of one page: the first one made above a's pages gives them
	 * back to the page allocator, and the next ones fill them. */
	for (i = 0; i < 100 * 512; i++) {
		p = mh_malloc(16);
		ASSERT_NE(NULL, p);
		if (p >= a && p < a + len)
			break;
	}
	EXPECT_LT(i, 100 * 512) TH_LOG("no small object ever landed in the cached pages");
	/* The small objects' span stays cached for its length (with the
	 * spare spans its refill made, mcentral.c "batches"). */
	mh_lock(&mh_heap.lock);
	struct mspan *t = mh_heap.span_cache[CACHE_SMALL][8];

	while (t && t != small)
		t = t->chain;
	EXPECT_EQ(small, t);
	mh_unlock(&mh_heap.lock);
	free_to_page_heap(obj[8]);
	free_to_page_heap(b);
}

/* Whether the span cache keeps a large span of npages pages at p. */
static bool cached_large_at(void *p, uintptr_t npages)
{
	struct mspan *s;

	mh_lock(&mh_heap.lock);
	s = mh_heap.span_cache[CACHE_LARGE][npages];
	while (s && s->base != (uintptr_t)p)
		s = s->chain;
	mh_unlock(&mh_heap.lock);
	return s;
}

/* Nothing cached, released or kept by this thread: what follows sees only
 * its own blocks in the span cache, and frees that release nothing. */
static void span_cache_start_empty(void)
{
	if (mh_tls_cache)
		mcache_release_empty(mh_tls_cache);
	mh_scavenge();
}

/* A large block of npages pages, freed: its span in the span cache. */
static char *cache_a_block(uintptr_t npages)
{
	char *p = mh_malloc(PAGES(npages));

	free_to_page_heap(p);
	return p;
}

TEST(a_large_block_takes_the_front_of_the_shortest_longer_cached_span)
{
	char *a40, *a48, *p;

	span_cache_start_empty();
	a40 = mh_malloc(PAGES(40));
	a48 = mh_malloc(PAGES(48));
	ASSERT_NE(NULL, a40);
	ASSERT_NE(NULL, a48);
	free_to_page_heap(a48);
	free_to_page_heap(a40);
	/* No cached span of 16 pages: the 40 pages go before the 48. */
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(a40, p);
	free_to_page_heap(p);
}

TEST(the_rest_of_a_cached_span_a_large_block_took_stays_cached)
{
	char *a, *p;

	span_cache_start_empty();
	a = cache_a_block(40);
	ASSERT_NE(NULL, a);
	p = mh_malloc(PAGES(16));
	ASSERT_EQ(a, p);
	EXPECT_TRUE(cached_large_at(a + PAGES(16), 24));
	free_to_page_heap(p);
}

TEST(cached_large_spans_stay_while_first_fit_goes_above_them_for_no_more_live_ones)
{
	char *live, *a, *p;

	span_cache_start_empty();
	live = mh_malloc(PAGES(32));
	ASSERT_NE(NULL, live);
	a = cache_a_block(8);
	ASSERT_NE(NULL, a);
	/* 8 cached pages against 32 live in blocks of cached lengths: the
	 * 16-page block that first fit puts above a leaves a cached. */
	p = mh_malloc(PAGES(16));
	ASSERT_GT(p, a);
	EXPECT_TRUE(cached_large_at(a, 8));
	free_to_page_heap(p);
	free_to_page_heap(live);
}

TEST(cached_large_spans_go_back_when_first_fit_goes_above_more_than_the_live_ones)
{
	char *a, *p;

	span_cache_start_empty();
	a = cache_a_block(8);
	ASSERT_NE(NULL, a);
	/* 8 cached pages, none live: a's pages go back to the bitmap. */
	p = mh_malloc(PAGES(16));
	ASSERT_GT(p, a);
	EXPECT_FALSE(cached_large_at(a, 8));
	free_to_page_heap(p);
}

TEST(a_large_block_that_would_take_released_pages_takes_the_cached_ones_merged)
{
	char *a1, *a2, *p;

	span_cache_start_empty();	/* every free page released */
	a1 = mh_malloc(PAGES(8));
	a2 = mh_malloc(PAGES(8));
	ASSERT_NE(NULL, a1);
	ASSERT_EQ(a1 + PAGES(8), a2);
	free_to_page_heap(a1);
	free_to_page_heap(a2);
	/* Neither cached span holds 16 pages, and first fit's place for them
	 * is released: the two go back to the bitmap first, merged. */
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(a1, p);
	free_to_page_heap(p);
}

/* A block of 256 pages (longer than the span cache keeps) written and
 * freed after every free page was released: its pages the only resident
 * free ones. */
static char *free_a_resident_block(void)
{
	char *p;

	span_cache_start_empty();
	p = mh_malloc(PAGES(256));
	if (p) {
		memset(p, 1, PAGES(256));
		mh_free(p);
	}
	return p;
}

/* A block of up to 64 pages that finds no cached span, and whose first-fit
 * place would fault in again, takes the lowest resident place apart from
 * small spans: the bottom of a freed longer block's pages, whose top the
 * next longer block can take back (a bucket array doubled up to 64 pages
 * in the place of a freed pair of 128 and 256). */
TEST(a_large_block_whose_first_fit_is_released_takes_the_lowest_resident_place_apart)
{
	char *big = free_a_resident_block(), *p;

	ASSERT_NE(NULL, big);
	p = mh_malloc(PAGES(16));
	EXPECT_EQ(big, p);
	free_to_page_heap(p);
}

/* A block longer than the span cache keeps, whose place would fault in
 * again, takes the cached large spans back first, merged with the free
 * pages around them: a bucket array doubled to 256 pages gets back the
 * place of the last one, where the smaller arrays made since lie cached. */
TEST(a_block_longer_than_the_cache_keeps_takes_its_cached_spans_merged_before_released_pages)
{
	char *big = free_a_resident_block(), *a, *again;

	ASSERT_NE(NULL, big);
	a = mh_malloc(PAGES(16));
	ASSERT_EQ(big, a);		/* the rule above */
	free_to_page_heap(a);
	ASSERT_TRUE(cached_large_at(a, 16));
	again = mh_malloc(PAGES(256));
	EXPECT_EQ(big, again);
	EXPECT_EQ(PAGES(256) / 4096, resident_pages_in(again, PAGES(256)));
	mh_free(again);
}

/* Two neighbouring large blocks of npages pages each, at *a1 and *a2, and
 * a block above them that stays live (*above), the two freed into an
 * empty span cache lower first; false if they were not neighbours. */
static bool free_two_neighbours(uintptr_t npages, char **a1, char **a2, char **above)
{
	span_cache_start_empty();
	*a1 = mh_malloc(PAGES(npages));
	*a2 = mh_malloc(PAGES(npages));
	*above = mh_malloc(PAGES(8));
	if (!*a1 || *a2 != *a1 + PAGES(npages) || !*above)
		return false;
	free_to_page_heap(*a1);
	free_to_page_heap(*a2);
	return true;
}

TEST(freed_neighbouring_large_blocks_are_cached_as_one_span)
{
	char *a1, *a2, *above;

	ASSERT_TRUE(free_two_neighbours(8, &a1, &a2, &above));
	EXPECT_TRUE(cached_large_at(a1, 16));
	EXPECT_FALSE(cached_large_at(a2, 8));
	free_to_page_heap(above);
}

TEST(a_freed_large_block_joins_the_cached_spans_on_both_sides)
{
	char *a1, *a2, *a3, *a4;

	span_cache_start_empty();
	a1 = mh_malloc(PAGES(8));
	a2 = mh_malloc(PAGES(16));
	a3 = mh_malloc(PAGES(8));
	a4 = mh_malloc(PAGES(8));	/* a3's neighbour above stays live */
	ASSERT_NE(NULL, a4);
	ASSERT_EQ(a1 + PAGES(8), a2);
	ASSERT_EQ(a2 + PAGES(16), a3);
	free_to_page_heap(a1);
	free_to_page_heap(a3);
	free_to_page_heap(a2);
	EXPECT_TRUE(cached_large_at(a1, 32));
	/* One request of their combined length takes them, no search. */
	EXPECT_EQ(a1, mh_malloc(PAGES(32)));
	free_to_page_heap(a1);
	free_to_page_heap(a4);
}

TEST(cached_large_spans_join_only_up_to_the_longest_cached_length)
{
	char *a1, *a2, *above;

	/* 80 pages would be longer than SPAN_CACHE_PAGES: two spans. */
	ASSERT_TRUE(free_two_neighbours(40, &a1, &a2, &above));
	EXPECT_TRUE(cached_large_at(a1, 40));
	EXPECT_TRUE(cached_large_at(a2, 40));
	free_to_page_heap(above);
}

/* What the thread below saw. */
struct empty_spans_seen {
	struct mh_stats kept;	/* after freeing all its objects */
	struct mh_stats after;	/* after the large allocation */
	bool among;		/* the block landed below its highest object */
};

static void *keep_empty_spans_then_allocate_large(void *arg)
{
	enum { N = 3 << 14 };	/* 3 MiB of 64 B objects, under the cache's cap */
	char **p = calloc(N, sizeof(*p)), *highest = NULL, *big;
	struct empty_spans_seen *seen = arg;

	if (!p)
		return NULL;
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(64);
		if (p[i] > highest)
			highest = p[i];
	}
	for (int i = 0; i < N; i++)
		free_to_page_heap(p[i]);
	mh_stats_read(&seen->kept);	/* the empty spans stay with this thread */
	/* No resident run of 32 pages but the kept spans: they go back to
	 * the page heap first, and the block lands among them. */
	big = mh_malloc(32 * MH_PAGE_SIZE);
	mh_stats_read(&seen->after);
	seen->among = big < highest;
	free_to_page_heap(big);
	free(p);
	return NULL;
}

/* ------------------------------------------------------------ the thread's large blocks */

/* The state of the span at p (MSPAN_DEAD when no span maps it). */
static unsigned state_at(void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s ? s->state : MSPAN_DEAD;
}

TEST(a_freed_large_block_is_kept_by_the_freeing_thread)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	EXPECT_EQ(span_of((uintptr_t)p)->npages << MH_PAGE_SHIFT, mh_tls_cache->large_bytes);
}

TEST(a_kept_large_block_is_reused_by_the_thread_for_its_next_request)
{
	void *p = mh_malloc(100 << 10), *q;

	ASSERT_NE(NULL, p);
	mh_free(p);
	q = mh_malloc(100 << 10);
	EXPECT_EQ(p, q);
	EXPECT_EQ(MSPAN_LARGE, state_at(q));
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mh_tls_cache->large_bytes);
	mh_free(q);
}

TEST(a_kept_large_block_keeps_its_pages_mapped_to_its_span)
{
	size_t len = 100 << 10;
	char *p = mh_malloc(len);
	struct mspan *s = span_of((uintptr_t)p);

	ASSERT_NE(NULL, p);
	mh_free(p);
	for (size_t off = 0; off < len; off += MH_PAGE_SIZE)
		ASSERT_EQ(s, span_of((uintptr_t)p + off));
	EXPECT_EQ(0, mh_usable_size(p));	/* not an object */
}

TEST(a_large_request_takes_the_shortest_kept_block_that_holds_it)
{
	/* Lengths on the 64 KiB lattice (large_npages): the request's 31
	 * pages and a byte are 32. */
	enum { N = 32 };
	void *quarter = mh_malloc(PAGES(N + N / 4)), *one = mh_malloc(PAGES(N));
	void *q;

	ASSERT_NE(NULL, quarter);
	ASSERT_NE(NULL, one);
	mh_free(one);
	mh_free(quarter);	/* the newer */
	q = mh_malloc(PAGES(N - 1) + 1);
	EXPECT_EQ(one, q);
	/* The block is the whole span. */
	EXPECT_EQ(PAGES(N), mh_usable_size(q));
	EXPECT_EQ(quarter, mh_malloc(PAGES(N)));	/* a quarter longer still fits */
}

/* n blocks of len bytes into p[], then freed oldest first; false if one
 * could not be made. */
static bool allocate_then_free(void **p, int n, size_t len)
{
	for (int i = 0; i < n; i++)
		if (!(p[i] = mh_malloc(len)))
			return false;
	for (int i = 0; i < n; i++)
		mh_free(p[i]);
	return true;
}

TEST(kept_blocks_of_one_length_serve_one_request_each_newest_first)
{
	void *p[2];	/* the older, then the newer */

	ASSERT_TRUE(allocate_then_free(p, 2, 100 << 10));
	EXPECT_EQ(p[1], mh_malloc(100 << 10));
	EXPECT_EQ(p[0], mh_malloc(100 << 10));	/* its length is still kept */
	EXPECT_EQ(0, mh_tls_cache->large_lengths);
}

TEST(a_large_request_leaves_a_kept_block_more_than_a_quarter_longer)
{
	enum { N = 32 };
	void *p = mh_malloc(PAGES(N + N / 4 + 1));

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_NE(p, mh_malloc(PAGES(N)));
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
}

TEST(calloc_zeroes_a_kept_large_block_it_reuses)
{
	size_t len = 100 << 10;
	unsigned char *p = mh_malloc(len), *q;

	ASSERT_NE(NULL, p);
	memset(p, 0xff, len);
	mh_free(p);
	q = mh_calloc(1, len);
	ASSERT_EQ(p, q);
	for (size_t i = 0; i < len; i++)
		ASSERT_EQ(0, q[i]);
}

TEST(a_thread_making_a_small_span_gives_its_kept_large_blocks_back)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	ASSERT_EQ(MSPAN_CACHED, state_at(p));
	/* The first object of a class this process never used: a new span
	 * from the page heap. */
	ASSERT_NE(NULL, mh_malloc(MH_MAX_SMALL_SIZE));
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(realloc_gives_the_large_block_it_moves_from_to_the_page_heap)
{
	void *p = mh_malloc(100 << 10), *q;

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, 40 << 10);	/* under half: it moves */
	ASSERT_NE(NULL, q);
	ASSERT_NE(p, q);
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(the_threads_large_cache_keeps_at_most_its_count_of_blocks)
{
	enum { N = MH_LARGE_CACHE_SPANS + 4 };
	size_t len = 64 << 10;	/* N of them are well within the bytes */
	void *p[N];

	ASSERT_TRUE(allocate_then_free(p, N, len));
	EXPECT_EQ(MH_LARGE_CACHE_SPANS, mh_tls_cache->nlarge);
	/* The oldest went to the page heap. */
	for (int i = 0; i < N; i++)
		EXPECT_EQ(i < N - MH_LARGE_CACHE_SPANS ? MSPAN_DEAD : MSPAN_CACHED, state_at(p[i]));
}

TEST(the_threads_large_cache_keeps_at_most_its_bytes)
{
	enum { N = 10 };
	size_t len = MH_LARGE_CACHE_SPAN_MAX;
	void *p[N];

	ASSERT_TRUE(allocate_then_free(p, N, len));
	EXPECT_EQ(MH_LARGE_CACHE_BYTES, mh_tls_cache->large_bytes);
	EXPECT_EQ(MH_LARGE_CACHE_BYTES / len, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p[N - 1 - MH_LARGE_CACHE_BYTES / len]));
}

TEST(a_freed_block_longer_than_the_threads_large_cache_takes_goes_to_the_page_heap)
{
	void *p = mh_malloc(MH_LARGE_CACHE_SPAN_MAX + MH_PAGE_SIZE);

	ASSERT_NE(NULL, p);
	mh_free(p);
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

/* A trim of another thread holds the list's flag: the owner's put and take
 * give up rather than wait. */
TEST(a_freed_large_block_goes_to_the_page_heap_while_a_trim_holds_the_list)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_tls_cache->large_busy = 1;
	mh_free(p);
	mh_tls_cache->large_busy = 0;
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(a_large_request_passes_its_kept_block_by_while_a_trim_holds_the_list)
{
	void *p, *q;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	mh_tls_cache->large_busy = 1;
	q = mh_malloc(100 << 10);
	mh_tls_cache->large_busy = 0;
	EXPECT_NE(p, q);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	mh_free(q);
}

TEST(mh_scavenge_leaves_the_large_cache_of_a_thread_in_a_put_or_take)
{
	void *p;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	mh_tls_cache->large_busy = 1;
	mh_scavenge();
	mh_tls_cache->large_busy = 0;
	EXPECT_EQ(1, mh_tls_cache->nlarge);
	EXPECT_EQ(MSPAN_CACHED, state_at(p));
	mh_scavenge();
	EXPECT_EQ(0, mh_tls_cache->nlarge);
}

TEST(mh_scavenge_empties_the_threads_large_cache)
{
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	mh_scavenge();
	EXPECT_EQ(0, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mh_tls_cache->large_bytes);
	EXPECT_EQ(MSPAN_DEAD, state_at(p));
}

TEST(the_stats_count_a_kept_large_block_as_freed_and_idle)
{
	size_t len = PAGES(16);
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	void *p = mh_malloc(len);

	ASSERT_NE(NULL, p);
	mh_stats_read(&before);
	mh_free(p);
	mh_stats_read(&after);
	ASSERT_EQ(MSPAN_CACHED, state_at(p));
	EXPECT_EQ(before.heap_alloc - len, after.heap_alloc);
	EXPECT_EQ(before.heap_idle + len, after.heap_idle);
	EXPECT_EQ(before.heap_sys, after.heap_sys);
}

TEST(the_heap_checker_accepts_the_large_blocks_a_thread_keeps)
{
	char msg[256];
	void *p = mh_malloc(100 << 10), *q = mh_malloc(200 << 10);

	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, q);
	mh_free(p);
	mh_free(q);
	ASSERT_EQ(2, mh_tls_cache->nlarge);
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(the_heap_checker_finds_a_kept_large_block_no_cache_lists)
{
	char msg[256];
	void *p = mh_malloc(100 << 10);

	ASSERT_NE(NULL, p);
	mh_free(p);
	ASSERT_EQ(1, mh_tls_cache->nlarge);
	mh_tls_cache->nlarge = 0;	/* lost from the list */
	mh_tls_cache->large_bytes = 0;
	mh_tls_cache->large_lengths = 0;
	memset(mh_tls_cache->large_count, 0, sizeof(mh_tls_cache->large_count));
	EXPECT_NE(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)));
	EXPECT_NE(NULL, strstr(msg, "freed large spans")) TH_LOG("%s", msg);
}

TEST(the_heap_checker_finds_a_kept_length_no_kept_block_has)
{
	char msg[256];
	void *p;

	ASSERT_TRUE(allocate_then_free(&p, 1, 100 << 10));
	ASSERT_EQ(1, mh_tls_cache->nlarge);
	mh_tls_cache->large_lengths |= 1;	/* a block of one page, not kept */
	EXPECT_NE(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)));
	EXPECT_NE(NULL, strstr(msg, "keeps large spans of lengths")) TH_LOG("%s", msg);
	mh_tls_cache->large_lengths &= ~(uint64_t)1;
}

TEST(a_large_block_takes_back_a_threads_empty_spans_before_fresh_pages)
{
	struct empty_spans_seen seen = { .kept = MH_STATS_INIT, .after = MH_STATS_INIT };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, keep_empty_spans_then_allocate_large, &seen));
	pthread_join(t, NULL);
	EXPECT_GE(seen.kept.heap_inuse, 3u << 20);
	EXPECT_LE(seen.after.heap_inuse, (1u << 20));
	EXPECT_TRUE(seen.among) TH_LOG("the block went to fresh pages above the spans");
}

#define CHUNK_BYTES PAGES(PA_CHUNK_TAKE_PAGES)

TEST(a_page_cache_takes_a_chunk_and_serves_runs_from_it)
{
	struct page_cache pc;
	struct pa_result one, three, too_long;
	uint64_t free_before, free_taken, free_after, free_back;
	uintptr_t chunk;

	mh_free(mh_malloc(1));	/* a heap arena to work in */
	mh_lock(&mh_heap.lock);
	page_cache_register(&pc);
	free_before = pa_free_pages;
	one = page_cache_alloc(&pc, 1);
	chunk = pc.base;
	three = page_cache_alloc(&pc, 3);
	/* Longer than a cache serves: the shared allocator's business. */
	too_long = page_cache_alloc(&pc, PAGE_CACHE_SPAN_MAX + 1);
	free_taken = pa_free_pages;
	/* Nothing else may take the chunk's pages while the cache has them. */
	uintptr_t elsewhere = pa_alloc(1, 1, PA_LOW).base;
	page_cache_unregister(&pc);
	free_after = pa_free_pages;
	pa_free(one.base, 1, false);
	pa_free(three.base, 3, false);
	pa_free(elsewhere, 1, false);
	free_back = pa_free_pages;
	mh_unlock(&mh_heap.lock);

	ASSERT_NE(0, one.base);
	EXPECT_EQ(0, chunk % CHUNK_BYTES);
	EXPECT_TRUE(one.base >= chunk && one.base < chunk + CHUNK_BYTES);
	/* Runs come lowest first, one after the other. */
	EXPECT_EQ(one.base + PAGES(1), three.base);
	EXPECT_EQ(0, too_long.base);
	EXPECT_TRUE(elsewhere < chunk || elsewhere >= chunk + CHUNK_BYTES);
	/* Taken pages still count as free until a span is made of them. */
	EXPECT_EQ(free_before - 4, free_taken);
	/* Giving the cache back leaves the counts as they were. */
	EXPECT_EQ(free_taken - 1, free_after);
	EXPECT_EQ(free_before, free_back);
}

/* Two threads take turns making spans of 8 B objects (one page each: 8 B
 * and 128 B are the classes whose spans are one page, sizeclass.c). */
struct span_turns {
	pthread_mutex_t lock;
	pthread_cond_t turn_done;
	int turn;			/* whose turn: 0 or 1 */
	uintptr_t span[2][8];		/* the span each turn of each thread made */
};

static struct span_turns turns = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.turn_done = PTHREAD_COND_INITIALIZER,
};

static void *make_spans_in_turn(void *arg)
{
	int me = (int)(intptr_t)arg;
	unsigned cls = size_to_class(8);

	for (int k = 0; k < 8; k++) {
		pthread_mutex_lock(&turns.lock);
		while (turns.turn != me)
			pthread_cond_wait(&turns.turn_done, &turns.lock);
		/* A span's worth of objects: a fresh span each turn. */
		for (unsigned i = 0; i < mh_class[cls].nelems; i++) {
			void *p = mh_malloc(8);

			if (i == 0)
				turns.span[me][k] = span_of((uintptr_t)p)->base;
		}
		turns.turn = !me;
		pthread_cond_broadcast(&turns.turn_done);
		pthread_mutex_unlock(&turns.lock);
	}
	return NULL;
}

TEST(threads_making_spans_at_once_get_pages_of_chunks_of_their_own)
{
	pthread_t t[2];

	/* Shared first fit would hand the turns consecutive pages. */
	for (intptr_t i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, make_spans_in_turn, (void *)i));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int me = 0; me < 2; me++) {
		for (int k = 0; k < 8; k++) {
			ASSERT_NE(0, turns.span[me][k]);
			/* Eight one-page spans fit one chunk... */
			EXPECT_EQ(turns.span[me][0] / CHUNK_BYTES, turns.span[me][k] / CHUNK_BYTES);
		}
	}
	/* ...and the two threads' chunks differ. */
	EXPECT_NE(turns.span[0][0] / CHUNK_BYTES, turns.span[1][0] / CHUNK_BYTES);
}

struct one_object {
	pthread_barrier_t made, go;
	uintptr_t chunk;
};

static void *make_one_object_and_wait(void *arg)
{
	struct one_object *o = arg;
	void *p = mh_malloc(8);	/* a span of one page */

	o->chunk = ALIGN_DOWN((uintptr_t)p, CHUNK_BYTES);
	mh_free(p);
	pthread_barrier_wait(&o->made);
	pthread_barrier_wait(&o->go);
	return NULL;
}

#define CHUNK_ALL ((((uint64_t)1 << (PA_CHUNK_TAKE_PAGES - 1)) << 1) - 1)

/* The chunk's bits of the allocation bitmap: which of its pages are in
 * use (or held by a cache). */
static uint64_t chunk_in_use(uintptr_t chunk)
{
	struct heap_arena *ha = arena_of(chunk);
	unsigned page = (unsigned)arena_page(ha, chunk);
	uint64_t word;

	mh_lock(&mh_heap.lock);
	word = ha->alloc[page / 64];
	mh_unlock(&mh_heap.lock);
	return word >> (page % 64) & CHUNK_ALL;
}

TEST(a_threads_page_cache_goes_back_when_the_thread_exits)
{
	static struct one_object o;
	uint64_t alive, gone;
	pthread_t t;

	pthread_barrier_init(&o.made, NULL, 2);
	pthread_barrier_init(&o.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, make_one_object_and_wait, &o));
	pthread_barrier_wait(&o.made);
	ASSERT_NE(0, o.chunk);
	alive = chunk_in_use(o.chunk);
	pthread_barrier_wait(&o.go);
	pthread_join(t, NULL);
	gone = chunk_in_use(o.chunk);
	/* While the thread lives its cache holds the whole chunk; once it
	 * has gone, its one span waits in the span cache and the chunk's
	 * other pages are free for anyone again. */
	EXPECT_EQ(CHUNK_ALL, alive);
	EXPECT_EQ(1, mh_popcount(gone));
}

TEST(the_scavenger_takes_back_the_pages_a_live_threads_cache_holds)
{
	static struct one_object o;
	size_t len = PAGES(2 * PA_CHUNK_TAKE_PAGES);
	struct mh_stats st = MH_STATS_INIT;
	char *run;
	pthread_t t;

	/* Resident free pages at the bottom of the free memory: a block
	 * written, freed, and taken out of the span cache. */
	run = mh_malloc(len);
	ASSERT_NE(NULL, run);
	memset(run, 1, len);
	free_to_page_heap(run);
	mheap_flush_caches_locking();
	/* A new thread's cache takes its chunk among them. */
	pthread_barrier_init(&o.made, NULL, 2);
	pthread_barrier_init(&o.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, make_one_object_and_wait, &o));
	pthread_barrier_wait(&o.made);
	ASSERT_TRUE(o.chunk >= (uintptr_t)run && o.chunk < (uintptr_t)run + len);
	/* The cache's other pages are idle: released with every other idle
	 * page, though the thread still runs. */
	mh_scavenge();
	mh_stats_read(&st);
	pthread_barrier_wait(&o.go);
	pthread_join(t, NULL);
	EXPECT_EQ(st.heap_idle, st.heap_released);
}

TEST(span_structs_and_caches_each_start_a_sharing_block)
{
	unsigned cls = size_to_class(64);	/* a 384-byte span struct */
	struct mspan *s[3];

	for (int k = 0; k < 3; k++) {
		void *p = NULL;

		for (unsigned i = 0; i < mh_class[cls].nelems; i++)
			p = mh_malloc(64);
		s[k] = span_of((uintptr_t)p);
	}
	EXPECT_EQ(0, (uintptr_t)mh_tls_cache % MH_SHARING_BLOCK);
	for (int k = 0; k < 3; k++) {
		if (k)
			EXPECT_NE(s[k - 1], s[k]);
		EXPECT_EQ(0, (uintptr_t)s[k] % MH_SHARING_BLOCK);
	}
}

/*
 * A span struct takes its header and its bitmap words but the last word's
 * spare field (mspan.h, bits): a span of 64 objects or fewer fits in one
 * sharing block, and every word's alloc, local and remote bits, which a
 * free reads together, lie in one cache line.
 */
TEST(a_span_of_one_bitmap_word_takes_one_sharing_block)
{
	const size_t sizes[] = { 1024, 256, 128, 64, 32, 8 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mh_malloc(sizes[i]);
		struct mspan *s = span_of((uintptr_t)p);
		unsigned words = mspan_bitmap_words(s->nelems);
		size_t bytes = mh_heap.spanalloc[s->bucket].size;

		ASSERT_EQ(MSPAN_SMALL, s->state);
		if (words == 1) {
			EXPECT_EQ(MH_SHARING_BLOCK, bytes) TH_LOG("%zu-byte objects", sizes[i]);
		}
		EXPECT_LE((uintptr_t)&s->bits[words - 1].remote + sizeof(uint64_t),
			  (uintptr_t)s + bytes);
		for (unsigned w = 0; w < words; w++) {
			EXPECT_EQ((uintptr_t)&s->bits[w].alloc / 64,
				  (uintptr_t)&s->bits[w].remote / 64) TH_LOG("word %u", w);
		}
		mh_free(p);
	}
}

/*
 * The library's large zero arrays lie above every small variable it writes
 * (internal.h, MH_LARGE_ZERO): with an array between two of them, the
 * pages written at start-up are spread over the whole .bss (nine instead
 * of five in libmheap.so, 16 kB of every process's memory).
 */
TEST(the_large_zero_arrays_lie_above_the_small_variables)
{
	const struct { const void *p; size_t size; } small[] = {
		/* Not mh_empty_span: initialised data since 2026-12-07 (its
		 * closed window names its all-ones word, mspan.h), never
		 * written. */
		{ &mh_heap, sizeof(mh_heap) },
		{ mh_class, sizeof(mh_class) },
		{ mh_dead_nmalloc, sizeof(mh_dead_nmalloc) },
		{ mh_size_to_class8, sizeof(mh_size_to_class8) },
	}, large[] = {
		{ mh_arena_blocks_, sizeof(mh_arena_blocks_) },
		{ mh_no_spans, sizeof(mh_no_spans) },
#if MH_ARENA_L1_BITS == 0
		{ mh_arena_l2, sizeof(mh_arena_l2) },
#else
		{ mh_arena_l1, sizeof(mh_arena_l1) },
#endif
	};
	uintptr_t lo = UINTPTR_MAX, hi = 0;

	if (!MH_LARGE_ZERO_PLACED)
		SKIP(return, "arrays placed only by GCC on x86-64 without ASan, when the build asks (internal.h)");
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		uintptr_t p = (uintptr_t)small[i].p;

		lo = p < lo ? p : lo;
		hi = p + small[i].size > hi ? p + small[i].size : hi;
	}
	for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
		EXPECT_LE(hi, (uintptr_t)large[i].p) TH_LOG("large array %zu below a small variable", i);
	}
	/* Nothing large between them either: they share a few pages. */
	EXPECT_LT(hi - lo, (uintptr_t)64 << 10);
}

TEST(large_alignment_up_to_64MiB)
{
	for (size_t align = MH_PAGE_SIZE; align <= MH_ARENA_SIZE; align <<= 1) {
		void *p = mh_aligned_alloc(align, 3 * MH_PAGE_SIZE);

		ASSERT_NE(NULL, p);
		EXPECT_EQ(0, (uintptr_t)p % align);
		memset(p, 0xab, 3 * MH_PAGE_SIZE);
		mh_free(p);
	}
}

/* ------------------------------------------------------------ spans */

TEST(span_hands_out_consecutive_objects_then_reuses_freed_ones)
{
	unsigned cls = size_to_class(48);
	uint32_t n = mh_class[cls].nelems;
	char **p = calloc(2 * n, sizeof(*p));
	struct mspan *s;

	ASSERT_NE(NULL, p);
	for (uint32_t i = 0; i < n; i++)
		p[i] = mh_malloc(48);
	s = span_of((uintptr_t)p[n - 1]);
	/* The objects of one span follow each other. */
	for (uint32_t i = 1; i < n; i++)
		if (span_of((uintptr_t)p[i]) == s && span_of((uintptr_t)p[i - 1]) == s)
			ASSERT_EQ(p[i - 1] + 48, p[i]);
	EXPECT_EQ(48, mh_usable_size(p[0]));
	/* Free every other object of the full span; they come back. */
	unsigned freed = 0;
	for (uint32_t i = 0; i < n; i++)
		if (span_of((uintptr_t)p[i]) == s && (i & 1)) {
			mh_free(p[i]);
			p[i] = NULL;
			freed++;
		}
	ASSERT_GT(freed, n / 4);
	unsigned reused = 0;
	for (uint32_t i = 0; i < 2 * n; i++) {
		p[n + (i % n)] = NULL;
		char *q = mh_malloc(48);

		if (span_of((uintptr_t)q) == s)
			reused++;
		mh_free(q);
		if (reused == freed)
			break;
	}
	EXPECT_GT(reused, 0);
	for (uint32_t i = 0; i < n; i++)
		mh_free(p[i]);
	free(p);
}

/*
 * A class with one object live at a time, on a span of fresh pages: each
 * malloc after a free gets the freed slot back (the span is swept in place)
 * instead of the span's next one, so the span's other pages are never
 * touched. Before, the window handed out all 8 slots of the 128 KiB span in
 * turn (128 KiB faulted in for one live 16 KiB object).
 */
TEST(one_live_object_of_a_class_reuses_its_slot_on_fresh_pages)
{
	const size_t size = 16384;	/* a class no other test here uses */
	struct mh_stats st = MH_STATS_INIT;
	char *first, *q;

	ASSERT_LT(1, mh_class[size_to_class(size)].nelems);
	first = mh_malloc(size);
	ASSERT_NE(NULL, first);
	/* The span is made of fresh pages: they were released (never used). */
	mh_stats_read(&st);
	ASSERT_LT(0, st.heap_released);
	memset(first, 1, size);
	mh_free(first);
	for (int i = 0; i < 32; i++) {
		q = mh_malloc(size);
		ASSERT_EQ(first, q);
		memset(q, 2, size);
		mh_free(q);
	}
}

/*
 * A span of fresh pages hands out a page of objects at a time (`touched`)
 * and reuses freed ones before it goes a page further; malloc's refill
 * lane takes such a span's windows too, below `touched` only, and the
 * sweep in place folds only the words below it (mspan.h, mspan.c). So:
 * the first page's objects in address order, then the one freed (swept
 * in place at `touched`), then the next page's in address order - not an
 * object past `touched` from the word that holds it (its untouched
 * objects make the sweep's summary call it free), and not a skip of the
 * words past it (the summary must call them free). 48-byte objects: 170
 * a page, so `touched` falls inside a bitmap word.
 */
TEST(a_span_of_fresh_pages_hands_out_the_freed_object_then_the_next_page_in_order)
{
	const size_t size = 48;	/* a class no other test here uses */
	uint32_t step, i;
	char **p;
	struct mspan *s;

	p = calloc(MH_MAX_OBJS_PER_SPAN, sizeof(*p));
	ASSERT_NE(NULL, p);
	p[0] = mh_malloc(size);
	ASSERT_NE(NULL, p[0]);
	s = span_of((uintptr_t)p[0]);
	step = (uint32_t)MH_PAGE_SIZE / s->elemsize;
	/* The test's setting: the class's first span, of fresh pages, its
	 * first page's objects touched; `touched` inside a word. */
	ASSERT_EQ(s->base, (uintptr_t)p[0]);
	ASSERT_EQ(step, s->touched);
	ASSERT_NE(0, step % 64);
	ASSERT_LT(2 * step, s->nelems);
	for (i = 1; i < step; i++) {
		p[i] = mh_malloc(size);
		ASSERT_EQ(s->base + (uintptr_t)i * s->elemsize, (uintptr_t)p[i]) TH_LOG("object %u", i);
	}
	mh_free(p[10]);
	p[10] = mh_malloc(size);
	EXPECT_EQ(s->base + 10 * (uintptr_t)s->elemsize, (uintptr_t)p[10]);
	for (i = step; i < 2 * step; i++) {
		p[i] = mh_malloc(size);
		ASSERT_EQ(s->base + (uintptr_t)i * s->elemsize, (uintptr_t)p[i]) TH_LOG("object %u", i);
	}
	EXPECT_EQ(2 * step, s->touched);
	for (i = 0; i < 2 * step; i++)
		mh_free(p[i]);
	free(p);
}

/* A used-up span is taken back once 1/MH_CACHE_REUSE_SHARE of its objects
 * has been freed, not at its first free: with fewer, the
 * thread's next spans come from elsewhere; one more free and they come
 * from it. */
TEST(a_used_up_span_is_taken_back_once_its_reuse_share_is_free)
{
	const size_t size = 176;	/* a class no other test here uses */
	uint32_t n = mh_class[size_to_class(size)].nelems, want, m = 0, reused;
	char **p = calloc(6 * n, sizeof(*p)), **mine = calloc(n, sizeof(*mine));
	struct mspan *s;

	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, mine);
	want = n / MH_CACHE_REUSE_SHARE;
	ASSERT_GT(want, 1);
	/* Three spans' worth: the one holding p[1.5n] was filled by this
	 * run alone and used up before its end. */
	for (uint32_t i = 0; i < 3 * n; i++)
		p[i] = mh_malloc(size);
	s = span_of((uintptr_t)p[n + n / 2]);
	for (uint32_t i = 0; i < 3 * n; i++)
		if (span_of((uintptr_t)p[i]) == s)
			mine[m++] = p[i];
	ASSERT_EQ(n, m);
	ASSERT_NE(s, span_of((uintptr_t)p[3 * n - 1]));
	/* One free short of the share: a span's worth of allocations, so at
	 * least one refill, takes none of them. */
	for (uint32_t i = 0; i < want - 1; i++)
		mh_free(mine[i]);
	reused = 0;
	for (uint32_t i = 0; i < n; i++) {
		p[3 * n + i] = mh_malloc(size);
		reused += span_of((uintptr_t)p[3 * n + i]) == s;
	}
	EXPECT_EQ(0, reused);
	/* The share reached: the span is taken back. */
	mh_free(mine[want - 1]);
	reused = 0;
	for (uint32_t i = 0; i < 2 * n && reused < want; i++) {
		p[4 * n + i] = mh_malloc(size);
		reused += span_of((uintptr_t)p[4 * n + i]) == s;
	}
	EXPECT_EQ(want, reused);
	for (uint32_t i = 0; i < 6 * n; i++)
		if (p[i] && (i >= 3 * n || span_of((uintptr_t)p[i]) != s))
			mh_free(p[i]);
	for (uint32_t i = want; i < n; i++)
		mh_free(mine[i]);
	free(mine);
	free(p);
}

enum { CHURN_N = 100000 };

static void *alloc_then_free_all(void *arg)
{
	void **p = malloc(CHURN_N * sizeof(*p));
	struct mh_stats *during = arg;

	for (int i = 0; i < CHURN_N; i++)
		p[i] = mh_malloc(256);
	for (int i = 0; i < CHURN_N; i++)
		mh_free(p[i]);
	mh_stats_read(during);
	free(p);
	return NULL;
}

TEST(empty_spans_return_to_the_page_heap)
{
	struct mh_stats before = MH_STATS_INIT, during = MH_STATS_INIT,
		after = MH_STATS_INIT;
	pthread_t t;

	mh_stats_read(&before);
	ASSERT_EQ(0, pthread_create(&t, NULL, alloc_then_free_all, &during));
	pthread_join(t, NULL);
	mh_stats_read(&after);
	/* 25 MB were in use. Freed by their own thread, the spans stay with
	 * it only up to the cache's cap of empty spans (plus current ones)... */
	EXPECT_LE(during.heap_inuse, before.heap_inuse + MH_CACHE_EMPTY_MAX + (256 << 10));
	/* ...and at thread exit everything goes back to the page heap. */
	EXPECT_EQ(before.heap_inuse, after.heap_inuse);
}

/* Spans a cache holds on its empty list for class cls. */
static unsigned empty_spans(struct mcache *c, unsigned cls)
{
	unsigned n = 0;

	for (struct list_node *l = c->empty[cls].head; l; l = l->next)
		n++;
	return n;
}

/* What a thread that emptied spans beyond its cap saw. */
struct trim_seen {
	size_t most;		/* the most empty bytes it held */
	size_t lowest_after_drop; /* the fewest after a give-back */
	unsigned drops;		/* give-backs */
	bool oldest_gone;	/* the first span it emptied is back in the heap */
};

static void *empty_spans_beyond_the_cap(void *arg)
{
	enum { N = 768 };	/* 6 MiB of 8 KiB objects, 96 spans */
	struct trim_seen *seen = arg;
	char **p = calloc(N, sizeof(*p));
	struct mcache *c;
	size_t last = 0;

	if (!p)
		return NULL;
	for (int i = 0; i < N; i++)
		p[i] = mh_malloc(8192);
	c = mh_tls_cache;
	seen->lowest_after_drop = SIZE_MAX;
	for (int i = 0; i < N; i++) {	/* the oldest spans empty first */
		mh_free(p[i]);
		if (c->empty_bytes > seen->most)
			seen->most = c->empty_bytes;
		if (c->empty_bytes < last) {
			seen->drops++;
			if (c->empty_bytes < seen->lowest_after_drop)
				seen->lowest_after_drop = c->empty_bytes;
		}
		last = c->empty_bytes;
	}
	seen->oldest_gone = span_of((uintptr_t)p[0]) == NULL;
	free(p);
	return NULL;
}

TEST(a_cache_over_its_cap_gives_back_its_oldest_empty_spans_a_batch_at_a_time)
{
	size_t span = (size_t)mh_class[size_to_class(8192)].npages << MH_PAGE_SHIFT;
	struct trim_seen seen = { 0 };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, empty_spans_beyond_the_cap, &seen));
	pthread_join(t, NULL);
	EXPECT_LE(seen.most, MH_CACHE_EMPTY_MAX);
	EXPECT_GE(seen.drops, 1u);
	/* Each give-back takes the lock once for a batch's worth... */
	EXPECT_LE(seen.lowest_after_drop, MH_CACHE_EMPTY_MAX - MH_BATCH_BYTES);
	/* ...so the 2 MiB beyond the cap took a few of them, not one per span. */
	EXPECT_LE(seen.drops, (6u << 20) / MH_BATCH_BYTES);
	EXPECT_LT(seen.drops, ((6u << 20) - MH_CACHE_EMPTY_MAX) / span);
	EXPECT_TRUE(seen.oldest_gone);
}

/* What a thread's first refill of the 8 KiB class brought along. */
struct refill_seen {
	unsigned spares;	/* empty spans kept besides the current one */
	unsigned cached_before, cached_after; /* span cache, 8 KiB class's length */
};

static unsigned cached_small_spans(uintptr_t npages)
{
	unsigned n = 0;

	mh_lock(&mh_heap.lock);
	for (struct mspan *s = mh_heap.span_cache[CACHE_SMALL][npages]; s; s = s->chain)
		n++;
	mh_unlock(&mh_heap.lock);
	return n;
}

static void *first_refill(void *arg)
{
	unsigned cls = size_to_class(8192);
	struct refill_seen *seen = arg;
	void *p;

	seen->cached_before = cached_small_spans(mh_class[cls].npages);
	p = mh_malloc(8192);
	seen->cached_after = cached_small_spans(mh_class[cls].npages);
	seen->spares = empty_spans(mh_tls_cache, cls);
	mh_free(p);
	return NULL;
}

/* Allocates and frees (intptr_t)arg objects of 8 KiB, 8 to a span. */
static void *make_spans_and_exit(void *arg)
{
	int n = (int)(intptr_t)arg;
	void **p = calloc(n, sizeof(*p));

	for (int i = 0; i < n && p; i++)
		p[i] = mh_malloc(8192);
	for (int i = 0; i < n && p; i++)
		mh_free(p[i]);
	free(p);
	return NULL;	/* its empty spans go to the span cache */
}

TEST(a_refill_takes_spans_cached_for_its_length_in_a_batch_only_when_many_are)
{
	const struct size_class *sc = &mh_class[size_to_class(8192)];
	unsigned by_objects = (MH_BATCH_OBJECTS + sc->nelems - 1) / sc->nelems;
	unsigned by_bytes = MH_BATCH_BYTES / (sc->npages << MH_PAGE_SHIFT);
	unsigned batch = by_objects < by_bytes ? by_objects : by_bytes;
	struct refill_seen fresh = { 0 }, few = { 0 }, cached = { 0 };
	pthread_t t;

	ASSERT_GT(batch, 1u);
	/* Nothing cached: one span of fresh pages, no spares that would hold
	 * pages the thread may never use. */
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &fresh));
	pthread_join(t, NULL);
	ASSERT_EQ(0u, fresh.cached_before);
	EXPECT_EQ(0u, fresh.spares);
	/* A few cached: those are left to requests of their length from
	 * any class and thread. */
	ASSERT_EQ(0, pthread_create(&t, NULL, make_spans_and_exit, (void *)(intptr_t)32));
	pthread_join(t, NULL);
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &few));
	pthread_join(t, NULL);
	ASSERT_GE(few.cached_before, batch);
	ASSERT_LT(few.cached_before, SPARES_CACHED_MIN * batch);
	EXPECT_EQ(0u, few.spares);
	/* Many spans of its length cached: a batch of them in one trip. */
	ASSERT_EQ(0, pthread_create(&t, NULL, make_spans_and_exit, (void *)(intptr_t)1024));
	pthread_join(t, NULL);
	ASSERT_EQ(0, pthread_create(&t, NULL, first_refill, &cached));
	pthread_join(t, NULL);
	ASSERT_GE(cached.cached_before, SPARES_CACHED_MIN * batch);
	EXPECT_EQ(batch - 1, cached.spares);
	EXPECT_EQ(cached.cached_before - batch, cached.cached_after);
}

/* ------------------------------------------------------------ scavenger */

TEST(scavenger_returns_a_freed_peak_to_the_os)
{
	enum { N = 256 };
	void *p[N];
	size_t rss_peak, rss_after = 0;
	struct mh_stats st = MH_STATS_INIT;

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(1 << 20);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], 1, 1 << 20);
	}
	rss_peak = rss_bytes();
	ASSERT_GT(rss_peak, (size_t)N << 20);
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	/* The recent peak is kept for a while (no refaults if it comes
	 * back), then decays: keep the heap busy and watch RSS fall. */
	for (int round = 0; round < 100; round++) {
		usleep(50 * 1000);
		mh_free(mh_malloc(2 << 20));
		rss_after = rss_bytes();
		if (rss_after < rss_peak - ((size_t)(N - 64) << 20))
			break;
	}
	TH_LOG("RSS at peak %zu MiB, after free %zu MiB", rss_peak >> 20, rss_after >> 20);
	EXPECT_LT(rss_after, rss_peak - ((size_t)(N - 64) << 20));
	mh_stats_read(&st);
	EXPECT_GE(st.heap_released, (uint64_t)(N - 64) << 20);
	EXPECT_GT(st.scavenged_bytes, 0);
}

TEST(scavenger_keeps_a_working_set_that_is_rebuilt_again_and_again)
{
	enum { N = 64 };
	void *p[N];
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;

	mh_stats_read(&before);
	/* 64 MiB freed and built again every 30 ms for 0.6 s, six times the
	 * recent peak's half-life: each rebuild renews the peak, so nothing
	 * is released and faulted in again. */
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < N; i++) {
			p[i] = mh_malloc(1 << 20);
			ASSERT_NE(NULL, p[i]);
			memset(p[i], round, 1 << 20);
		}
		for (int i = 0; i < N; i++)
			mh_free(p[i]);
		usleep(30 * 1000);
	}
	mh_stats_read(&after);
	EXPECT_EQ(before.scavenged_bytes, after.scavenged_bytes);
}

TEST(mh_scavenge_releases_every_free_page)
{
	struct mh_stats st = MH_STATS_INIT;
	void *p = mh_malloc(8 << 20);

	memset(p, 1, 8 << 20);
	mh_free(p);
	mh_scavenge();
	mh_stats_read(&st);
	EXPECT_EQ(st.heap_idle, st.heap_released);
	EXPECT_EQ(st.heap_sys, st.heap_idle + st.heap_inuse);
}

TEST(released_pages_read_as_zero_and_calloc_relies_on_it)
{
	/* Above the size calloc writes anyway (8 MiB > 4 MiB). */
	char *p = mh_malloc(8 << 20);

	memset(p, 0x5a, 8 << 20);
	mh_free(p);
	mh_scavenge();
	char *q = mh_calloc(1, 8 << 20);
	ASSERT_NE(NULL, q);
	for (size_t i = 0; i < (8 << 20); i += 4096)
		ASSERT_EQ(0, q[i]);
	mh_free(q);
	/* Dirty pages are cleared by calloc. */
	p = mh_malloc(64 << 10);
	memset(p, 0x5a, 64 << 10);
	mh_free(p);
	q = mh_calloc(64, 1 << 10);
	for (size_t i = 0; i < (64 << 10); i++)
		ASSERT_EQ(0, q[i]);
	mh_free(q);
}

/* A large block goes where a freed one left resident pages, rather than
 * onto released ones that would fault in again (3 us per 4 KiB page). */
TEST(a_large_block_takes_resident_free_pages_before_released_ones)
{
	size_t len = 8 << 20;
	char *top = mh_malloc(len), *below = mh_malloc(len), *again;

	ASSERT_NE(NULL, top);
	ASSERT_NE(NULL, below);
	ASSERT_EQ(top - len, below);	/* placed high, one under the other */
	memset(top, 1, len);
	memset(below, 2, len);
	mh_free(top);
	mh_scavenge();		/* top's pages released */
	mh_free(below);		/* resident, under them in one free run */
	again = mh_malloc(len);
	EXPECT_EQ(below, again);
	EXPECT_EQ(len / 4096, resident_pages_in(again, len));
	mh_free(again);
}

/* A large block takes a resident place in a longer free run before a
 * released run that fits it exactly: best fit among runs that would all
 * fault in again, but no fault at all first. Else a freed peak built again
 * took the unused top of the heap's last arena, and the growth rule
 * released a resident block's worth of the old peak for each new block. */
TEST(a_large_block_takes_a_resident_run_before_a_released_one_that_fits_exactly)
{
	enum { N = 5 };
	size_t len = 8 << 20, lens[N] = { len, len, len, 2 * len, len };
	char *p[N], *again;

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(lens[i]);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i, lens[i]);
		if (i)	/* placed high, each under the one before */
			ASSERT_EQ(p[i - 1] - lens[i], p[i]);
	}
	mh_free(p[1]);
	mh_scavenge();		/* p[1]'s hole released: 8 MiB */
	mh_free(p[3]);		/* p[3]'s resident: 16 MiB */
	again = mh_malloc(len);
	ASSERT_NE(NULL, again);
	EXPECT_TRUE(again >= p[3] && again + len <= p[3] + lens[3]);
	EXPECT_EQ(len / 4096, resident_pages_in(again, len));
	mh_free(again);
	for (int i = 0; i < N; i += 2)
		mh_free(p[i]);
}

/* Pages just freed are not released while the heap holds more idle pages
 * than the scavenger keeps: it takes those of chunks nobody used lately,
 * and the block freed now is likely to be replaced at once. */
TEST(the_scavenger_releases_idle_holes_before_a_block_freed_just_now)
{
	enum { N = 6 };
	size_t len = 8 << 20;
	char *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i, len);
	}
	ASSERT_EQ(p[0] - (N - 1) * len, p[N - 1]);	/* p[0] on top */
	/* Holes of 24 MiB among 24 MiB in use, then time for the recent
	 * peak to decay (100 ms half-life): from now on the scavenger's
	 * reserve is its 16 MiB, and 8 MiB more idle pages are too many. */
	for (int i = 1; i < N; i += 2)
		mh_free(p[i]);
	usleep(1500 * 1000);
	/* The top block goes: its pages are the highest idle ones, but the
	 * only ones used just now. */
	mh_free(p[0]);
	EXPECT_EQ(len / 4096, resident_pages_in(p[0], len));
	EXPECT_EQ(0, resident_pages_in(p[1], len));
	EXPECT_EQ(0, resident_pages_in(p[3], len));
	for (int i = 2; i < N; i += 2)
		mh_free(p[i]);
}

/* A large block that has to take fresh pages, because the free resident
 * ones are holes too short for it, releases as many of those holes while
 * the reserve (16 MiB here, more than 25% of in-use) stays: the resident
 * set does not grow by the block. The holes were used just now, so the
 * window of reuse alone would keep them all. */
TEST(a_large_block_on_fresh_pages_releases_as_many_free_resident_ones)
{
	enum { N = 8 };
	size_t len = 8 << 20, big = 24 << 20, holes = 0;
	struct mh_stats st = MH_STATS_INIT;
	char *p[N], *b;

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i, len);
	}
	for (int i = 0; i < N; i += 2)
		mh_free(p[i]);		/* 32 MiB of holes of 8 MiB */
	mh_stats_read(&st);
	ASSERT_GE(st.heap_idle - st.heap_released, (uint64_t)32 << 20);
	b = mh_malloc(big);
	ASSERT_NE(NULL, b);
	memset(b, 1, big);
	for (int i = 0; i < N; i += 2)
		holes += resident_pages_in(p[i], len);
	mh_stats_read(&st);
	TH_LOG("holes resident %zu MiB, free resident %llu MiB", holes * 4096 >> 20,
	       (unsigned long long)(st.heap_idle - st.heap_released) >> 20);
	EXPECT_LE(holes * 4096, (size_t)16 << 20);
	EXPECT_GE(st.heap_idle - st.heap_released, (uint64_t)16 << 20);
	mh_free(b);
	for (int i = 1; i < N; i += 2)
		mh_free(p[i]);
}

/*
 * The window of reuse (scavenge.c), driven with a clock the test holds:
 * scavenge_adapt_window(now) is the scavenger's own look at it. The counts
 * it reads are the heap's: pages the scavenger released
 * (mh_heap.scavenged_pages) and those of them allocated again soon after
 * (pa_refault_pages). Each test runs in a fresh child in which nothing was
 * released yet.
 */
#define MIB_PAGES(n) ((uint64_t)(n) << (20 - MH_PAGE_SHIFT))

/* The window at the start: nothing released, nothing refaulted. */
static uint64_t window_at_start(struct __test_metadata *_metadata, uint64_t now)
{
	uint64_t w;

	mh_free(mh_malloc(1));	/* initialises the heap */
	mh_lock(&mh_heap.lock);
	EXPECT_EQ(0, mh_heap.scavenged_pages);
	EXPECT_EQ(0, pa_refault_pages);
	w = scavenge_adapt_window(now);
	mh_unlock(&mh_heap.lock);
	EXPECT_GT(w, 0);
	return w;
}

/* Released and refaulted pages, then the window's answer at now. */
static uint64_t window_after(uint64_t released, uint64_t refaulted, uint64_t now)
{
	uint64_t w;

	mh_lock(&mh_heap.lock);
	mh_heap.scavenged_pages += released;
	pa_refault_pages += refaulted;
	w = scavenge_adapt_window(now);
	mh_unlock(&mh_heap.lock);
	return w;
}

TEST(the_window_of_reuse_doubles_when_a_quarter_of_what_was_released_comes_back_soon)
{
	uint64_t now = mh_nanotime(), w = window_at_start(_metadata, now);

	/* An eighth taken back: no reason to keep more. */
	EXPECT_EQ(w, window_after(MIB_PAGES(8), MIB_PAGES(1), now));
	/* A quarter: the window doubles, and again on the next quarter. */
	EXPECT_EQ(2 * w, window_after(0, MIB_PAGES(1), now));
	EXPECT_EQ(2 * w, window_after(MIB_PAGES(8), MIB_PAGES(1) + MIB_PAGES(1) / 2, now));
	EXPECT_EQ(4 * w, window_after(0, MIB_PAGES(1) / 2, now));
}

TEST(the_window_of_reuse_ignores_refaults_below_a_mebibyte)
{
	uint64_t now = mh_nanotime(), w = window_at_start(_metadata, now);

	/* All of a small release taken back is not a pattern. */
	EXPECT_EQ(w, window_after(MIB_PAGES(1) / 2, MIB_PAGES(1) / 2, now));
	EXPECT_EQ(2 * w, window_after(MIB_PAGES(1) / 2, MIB_PAGES(1) / 2, now));
}

TEST(the_window_of_reuse_halves_after_sixteen_quiet_windows_down_to_its_start)
{
	uint64_t now = mh_nanotime(), w = window_at_start(_metadata, now);

	ASSERT_EQ(2 * w, window_after(MIB_PAGES(4), MIB_PAGES(1), now));
	ASSERT_EQ(4 * w, window_after(MIB_PAGES(4), MIB_PAGES(1), now));
	/* Quiet (nothing taken back) for 16 windows of 4w: halved, then
	 * 16 windows of 2w later halved again, never below the start. */
	EXPECT_EQ(4 * w, window_after(MIB_PAGES(8), 0, now + 64 * w - 1));
	EXPECT_EQ(2 * w, window_after(0, 0, now + 64 * w));
	EXPECT_EQ(2 * w, window_after(0, 0, now + 96 * w - 1));
	EXPECT_EQ(w, window_after(0, 0, now + 96 * w));
	EXPECT_EQ(w, window_after(0, 0, now + 1000 * w));
}

/*
 * The recent peak is held for a window of reuse before it decays: a peak
 * freed and built again a period and a half later (peakfree's 150 ms) keeps
 * its pages, where before half of it was released at one period and
 * faulted in again. The policy's verdict, scavenge_excess(now), with a
 * clock the test holds, from the end of a 64 MiB peak.
 */
TEST(a_freed_peak_is_held_for_the_window_of_reuse_then_halves_each_decay_period)
{
	enum { N = 64 };
	void *p[N];
	uint64_t now, inuse_peak, inuse, idle;
	uint64_t w = window_at_start(_metadata, mh_nanotime());	/* = the decay period */

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(1 << 20);
		ASSERT_NE(NULL, p[i]);
	}
	mh_lock(&mh_heap.lock);
	now = mh_nanotime();	/* the peak's time, give or take the lock */
	inuse_peak = pa_total_pages - pa_free_pages;
	mh_unlock(&mh_heap.lock);
	for (int i = 0; i < N; i++)
		free_to_page_heap(p[i]);
	mh_lock(&mh_heap.lock);
	inuse = pa_total_pages - pa_free_pages;
	idle = pa_free_pages - pa_released_pages - pa_scavenging_pages;
	ASSERT_GE(inuse_peak - inuse, MIB_PAGES(N));
	/* A decay period and a half after the peak: all of it kept. */
	EXPECT_EQ(0, scavenge_excess(now + w + w / 2));
	/* The window and a period later, halved once: half of it (more
	 * than the reserve's 16 MiB) stays. */
	EXPECT_EQ(idle - (inuse_peak - inuse) / 2, scavenge_excess(now + 2 * w + w / 2));
	mh_unlock(&mh_heap.lock);
}

TEST(calloc_writes_fresh_pages_up_to_4MiB_and_leaves_bigger_blocks_to_the_zero_page)
{
	/* A program reading before writing would fault twice per page of a
	 * block the kernel maps to its zero page; up to 4 MiB calloc writes
	 * the block itself. Fresh pages: nothing was freed at these sizes. */
	char *small = mh_calloc(1, 4 << 20);
	char *big = mh_calloc(1, 64 << 20);

	ASSERT_NE(NULL, small);
	ASSERT_NE(NULL, big);
	EXPECT_EQ((size_t)(4 << 20) / 4096, resident_pages_in(small, 4 << 20));
	EXPECT_LT(resident_pages_in(big, 64 << 20), (size_t)(1 << 20) / 4096);
	for (size_t i = 0; i < (64 << 20); i += 4096)
		ASSERT_EQ(0, big[i]);
	EXPECT_EQ(0, small[(4 << 20) - 1]);
	mh_free(small);
	mh_free(big);
}

TEST(calloc_writes_the_pages_asked_for_not_a_lattice_blocks_tail)
{
	/* 72 KiB and a byte: ten 8 KiB pages asked for, a block of 128 KiB
	 * on the 64 KiB lattice. Filled and freed, the block stays with the
	 * thread (largecache.c), and calloc of the same size takes it back:
	 * it zeroes the pages asked for and leaves the tail as malloc leaves
	 * it, old data and all (writing it would make a fresh block's tail
	 * resident for nothing). By content, not residency: a kernel that
	 * backs the heap with huge pages makes the tail resident anyway. */
	size_t asked = (72 << 10) + 1, tail = 80 << 10, len = 128 << 10;
	char *p = mh_malloc(asked), *q;

	ASSERT_NE(NULL, p);
	ASSERT_EQ(len, mh_usable_size(p));
	memset(p, 0xaa, len);
	mh_free(p);
	q = mh_calloc(1, asked);
	ASSERT_EQ(p, q);
	for (size_t i = 0; i < tail; i += 512)
		ASSERT_EQ(0, q[i]);
	EXPECT_EQ(0, q[asked - 1]);
	EXPECT_EQ(0, q[tail - 1]);
	EXPECT_EQ((char)0xaa, q[tail]);
	EXPECT_EQ((char)0xaa, q[len - 1]);
	mh_free(q);
}

/* ------------------------------------------------------------ API semantics */

TEST(malloc_zero_returns_unique_pointers)
{
	void *a = mh_malloc(0), *b = mh_malloc(0);

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	EXPECT_NE(a, b);
	mh_free(a);
	mh_free(b);
	mh_free(NULL);
}

TEST(calloc_zeroes_and_checks_overflow)
{
	size_t big = (size_t)1 << 33;
	char *p;

	for (size_t n = 1; n <= 100000; n *= 7) {
		p = mh_calloc(n, 3);
		ASSERT_NE(NULL, p);
		for (size_t i = 0; i < n * 3; i++)
			ASSERT_EQ(0, p[i]);
		memset(p, 0xff, n * 3);
		mh_free(p);
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_calloc(big, big));
	EXPECT_EQ(ENOMEM, errno);
	errno = 0;
	EXPECT_EQ(NULL, mh_calloc(SIZE_MAX / 2, 3));
	EXPECT_EQ(ENOMEM, errno);
}

TEST(aligned_alloc_every_power_of_two_up_to_4MiB)
{
	for (size_t align = 1; align <= (4u << 20); align <<= 1) {
		size_t sizes[] = { 1, 8, align, align + 1, 3 * align, 40000 };

		for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			char *p = mh_aligned_alloc(align, sizes[i]);

			ASSERT_NE(NULL, p);
			ASSERT_EQ(0, (uintptr_t)p % align)
				TH_LOG("align %zu size %zu gave %p", align, sizes[i], p);
			ASSERT_GE(mh_usable_size(p), sizes[i]);
			memset(p, 0x11, sizes[i]);
			mh_free(p);
		}
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_aligned_alloc(24, 10));
	EXPECT_EQ(EINVAL, errno);
}

TEST(realloc_stays_in_place_within_a_class_and_moves_otherwise)
{
	char *p = mh_malloc(100), *q;

	ASSERT_EQ(112, mh_usable_size(p));	/* the 112-byte class */
	memset(p, 7, 100);
	q = mh_realloc(p, 112);
	EXPECT_EQ(p, q);
	q = mh_realloc(p, 105);
	EXPECT_EQ(p, q);
	q = mh_realloc(p, 5000);
	ASSERT_NE(NULL, q);
	EXPECT_NE(p, q);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(7, q[i]);
	/* Growth through every class and into large objects keeps data. */
	for (size_t size = 5000; size < (4u << 20); size = size * 3 / 2) {
		q = mh_realloc(q, size);
		ASSERT_NE(NULL, q);
		ASSERT_EQ(7, q[99]);
		q[size - 1] = 1;
	}
	EXPECT_EQ(NULL, mh_realloc(q, 0));	/* frees, as glibc */
	q = mh_realloc(NULL, 10);		/* malloc */
	ASSERT_NE(NULL, q);
	mh_free(q);
}

TEST(realloc_grows_a_large_object_in_place_when_the_pages_after_it_are_free)
{
	char *p = mh_malloc(64 << 10), *q;

	memset(p, 9, 64 << 10);
	q = mh_realloc(p, 192 << 10);	/* a fresh heap: nothing after it */
	ASSERT_EQ(p, q);
	EXPECT_GE(mh_usable_size(q), 192 << 10);
	for (size_t i = 0; i < (64 << 10); i++)
		ASSERT_EQ(9, q[i]);
	memset(q, 7, 192 << 10);
	/* Something right after it: the next growth has to move. */
	char *blocker = mh_malloc(64 << 10);
	ASSERT_EQ(q + (192 << 10), blocker);
	char *r = mh_realloc(q, 400 << 10);
	EXPECT_NE(q, r);
	EXPECT_EQ(7, r[(192 << 10) - 1]);
	mh_free(r);
	mh_free(blocker);
}

TEST(a_large_block_realloc_moves_to_grow_gets_room_for_half_as_much_again)
{
	char *p = mh_malloc(64 << 10), *q, *r;
	char *blocker = mh_malloc(64 << 10);

	ASSERT_EQ(p + (64 << 10), blocker);
	memset(p, 3, 64 << 10);
	/* The block cannot grow where it is: it moves, with room. */
	q = mh_realloc(p, 128 << 10);	/* 16 pages */
	ASSERT_NE(p, q);
	EXPECT_EQ(192 << 10, mh_usable_size(q));	/* 24 pages */
	EXPECT_EQ(3, q[(64 << 10) - 1]);
	/* Whatever comes after the room, the block grows into it in place. */
	char *after = mh_malloc(64 << 10);
	ASSERT_NE(NULL, after);
	EXPECT_TRUE(after >= q + (192 << 10) || after + (64 << 10) <= q);
	r = mh_realloc(q, 192 << 10);
	EXPECT_EQ(q, r);
	mh_free(r);
	mh_free(after);
	mh_free(blocker);
}

TEST(a_large_block_realloc_moves_to_shrink_gets_no_room)
{
	char *p = mh_malloc(400 << 10), *q;

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, 128 << 10);	/* under half its pages: it moves */
	ASSERT_NE(p, q);
	EXPECT_EQ(128 << 10, mh_usable_size(q));
	mh_free(q);
}

/* large_npages: from 64 KiB up to the longest block a thread's cache
 * keeps, whole 64 KiB; page steps below and above. */
TEST(a_large_block_of_64_to_512_kib_spans_a_whole_number_of_64_kib)
{
	static const struct { size_t ask, pages; } cases[] = {
		{ (32 << 10) + 1, 5 }, { (56 << 10) + 1, 8 }, { 64 << 10, 8 },
		{ (64 << 10) + 1, 16 }, { 200 << 10, 32 }, { (448 << 10) + 1, 64 },
		{ 512 << 10, 64 }, { (512 << 10) + 1, 65 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *p = mh_malloc(cases[i].ask);

		ASSERT_NE(NULL, p);
		EXPECT_EQ(PAGES(cases[i].pages), mh_usable_size(p)) {
			TH_LOG("a block of %zu bytes", cases[i].ask);
		}
		EXPECT_EQ(cases[i].pages, span_of((uintptr_t)p)->npages);
		mh_free(p);
	}
}

TEST(usable_size_covers_the_request)
{
	for (size_t size = 1; size < (1u << 20); size = size * 5 / 4 + 1) {
		void *p = mh_malloc(size);

		ASSERT_GE(mh_usable_size(p), size);
		memset(p, 0, mh_usable_size(p));
		mh_free(p);
	}
	EXPECT_EQ(0, mh_usable_size(NULL));
}

static void exhaust_address_space(void *arg)
{
	struct rlimit rl = { 512 << 20, 512 << 20 };
	size_t n = 0;
	void *p;

	(void)arg;
	if (setrlimit(RLIMIT_AS, &rl))
		_exit(10);
	errno = 0;
	if (mh_malloc((size_t)1 << 30) != NULL || errno != ENOMEM)
		_exit(11);
	/* Small objects until the heap cannot grow: NULL and ENOMEM. */
	while ((p = mh_malloc(4000)) != NULL)
		n++;
	if (errno != ENOMEM || n < 1000)
		_exit(12);
	/* And the heap still works for what fits. */
	errno = 0;
	if (mh_calloc(SIZE_MAX, 2) != NULL || errno != ENOMEM)
		_exit(13);
	_exit(0);
}

TEST(out_of_memory_returns_null_with_enomem)
{
	struct child_result r;

	if (UNDER_SANITIZER)
		SKIP(return, "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot apply");
	run_child(exhaust_address_space, NULL, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("child died: %s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
}

TEST(stats_account_for_objects)
{
	struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT;
	void *p[1000];

	mh_stats_read(&a);
	for (int i = 0; i < 1000; i++)
		p[i] = mh_malloc(64);
	mh_stats_read(&b);
	EXPECT_EQ(a.mallocs + 1000, b.mallocs);
	EXPECT_EQ(a.by_class[size_to_class(64)].mallocs + 1000,
		  b.by_class[size_to_class(64)].mallocs);
	EXPECT_EQ(a.heap_alloc + 64000, b.heap_alloc);
	EXPECT_EQ(b.heap_sys, b.heap_inuse + b.heap_idle);
	EXPECT_LE(b.heap_released, b.heap_idle);
	for (int i = 0; i < 1000; i++)
		mh_free(p[i]);
	mh_stats_read(&b);
	EXPECT_EQ(a.frees + 1000, b.frees);
	EXPECT_EQ(a.heap_alloc, b.heap_alloc);
}

/* A thread that allocates `n` objects of 48 bytes, then waits to be told
 * to free them and exit. */
struct idle_allocator {
	int n;
	void *p[333];
	pthread_barrier_t allocated, go;
};

static void *allocate_then_idle(void *arg)
{
	struct idle_allocator *ia = arg;

	for (int i = 0; i < ia->n; i++)
		ia->p[i] = mh_malloc(48);
	pthread_barrier_wait(&ia->allocated);
	pthread_barrier_wait(&ia->go);
	for (int i = 0; i < ia->n; i++)
		mh_free(ia->p[i]);
	return NULL;
}

TEST(stats_count_another_threads_objects_exactly_while_it_is_idle)
{
	static struct idle_allocator ia = { .n = 333 };	/* not a multiple of 64 */
	unsigned cls = size_to_class(48);
	struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT,
		c = MH_STATS_INIT;
	pthread_t t;

	pthread_barrier_init(&ia.allocated, NULL, 2);
	pthread_barrier_init(&ia.go, NULL, 2);
	mh_stats_read(&a);
	ASSERT_EQ(0, pthread_create(&t, NULL, allocate_then_idle, &ia));
	pthread_barrier_wait(&ia.allocated);
	/* The thread's cache counted its current window as allocated when
	 * it filled it; the objects still in the window are not. */
	mh_stats_read(&b);
	EXPECT_EQ(a.by_class[cls].mallocs + 333, b.by_class[cls].mallocs);
	EXPECT_EQ(a.heap_alloc + 333 * mh_class[cls].size, b.heap_alloc);
	pthread_barrier_wait(&ia.go);
	pthread_join(t, NULL);
	/* At exit the unused window leaves the count too. */
	mh_stats_read(&c);
	EXPECT_EQ(a.by_class[cls].mallocs + 333, c.by_class[cls].mallocs);
	EXPECT_EQ(a.by_class[cls].frees + 333, c.by_class[cls].frees);
	EXPECT_EQ(a.heap_alloc, c.heap_alloc);
}

/* ------------------------------------------------------------ remote frees */

/* Frees p from another thread, says so, and stays until told to go: its
 * exit would take the heap lock and so order everything it did before the
 * test's next steps. The flags are relaxed atomics for the same reason:
 * under TSan nothing but the allocator's own synchronisation orders this
 * free against the span's death and the reuse of its struct. */
struct late_freer {
	void *p;
	int freed, may_exit;
};

static void *free_then_wait(void *arg)
{
	struct late_freer *lf = arg;

	mh_free(lf->p);
	__atomic_store_n(&lf->freed, 1, __ATOMIC_RELAXED);
	while (!__atomic_load_n(&lf->may_exit, __ATOMIC_RELAXED))
		usleep(100);
	return NULL;
}

/* Allocates objects of size until the span of the first is used up (and
 * still current), into objs; returns that span, *n the count. All of the
 * span's objects when it was fresh. */
static struct mspan *use_up_a_span(uint32_t size, void **objs, unsigned *n)
{
	struct mspan *s;

	*n = 0;
	objs[(*n)++] = mh_malloc(size);
	s = span_of((uintptr_t)objs[0]);
	while (mspan_window_free(s) || s->free_words || s->touched < s->nelems)
		objs[(*n)++] = mh_malloc(size);
	return s;
}

/* Fills a fresh span of class cls, frees all of its objects but the
 * first, and waits; at the test's word it exits, and its cache gives the
 * span back: the remote free of the first object has left none
 * allocated, so the span dies. */
struct span_owner {
	unsigned cls;
	struct mspan *span;
	void *first;
	pthread_barrier_t filled, go;
};

static void *fill_free_all_but_one(void *arg)
{
	struct span_owner *so = arg;
	uint32_t size = mh_class[so->cls].size;
	void *objs[MH_MAX_OBJS_PER_SPAN], *extra;
	struct mspan *s;
	unsigned n;

	mh_scavenge();	/* flushes the page heap's caches: fresh pages */
	s = use_up_a_span(size, objs, &n);
	extra = mh_malloc(size);	/* s is used up: on a cache list */
	so->span = n == s->nelems && s->list == MSPAN_LIST_CACHE_FULL ? s : NULL;
	for (unsigned i = 1; i < n; i++)
		mh_free(objs[i]);
	mh_free(extra);
	so->first = objs[0];
	pthread_barrier_wait(&so->filled);
	pthread_barrier_wait(&so->go);
	return NULL;
}

/* The remote free whose count lets the span die must read nothing of it
 * afterwards but what survives the reuse of its struct: here the owner
 * gives the span back right after the count, the span dies, and its struct
 * is zeroed for a new span while the remote freer may still be in
 * remote_free. A late read shows as a data race under TSan; elsewhere the
 * test checks only that the span died and its struct was reused. */
TEST(a_remote_free_reads_nothing_of_its_span_after_its_count)
{
	static struct span_owner so;
	static struct late_freer lf;
	struct mspan *s, *t[64];
	unsigned nt = 0;
	bool reused = false;
	uint64_t gen;
	pthread_t o, b;

	so.cls = size_to_class(64);
	pthread_barrier_init(&so.filled, NULL, 2);
	pthread_barrier_init(&so.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&o, NULL, fill_free_all_but_one, &so));
	pthread_barrier_wait(&so.filled);
	s = so.span;
	ASSERT_NE(NULL, s);
	gen = s->gen;

	lf.p = so.first;
	ASSERT_EQ(0, pthread_create(&b, NULL, free_then_wait, &lf));
	while (!__atomic_load_n(&lf.freed, __ATOMIC_RELAXED))
		usleep(100);
	pthread_barrier_wait(&so.go);
	pthread_join(o, NULL);
	/* Dead, in the span cache; out of it, the struct goes back to its
	 * allocator, which zeroes it for the next span. */
	EXPECT_NE(gen, s->gen);
	mheap_flush_caches_locking();
	while (nt < 64 && !reused) {
		t[nt] = mheap_alloc_span(mh_class[so.cls].npages, 1, so.cls, MSPAN_SMALL,
					 PLACE_LOW, NULL);
		ASSERT_NE(NULL, t[nt]);
		reused = t[nt++] == s;
	}
	EXPECT_TRUE(reused);
	while (nt)
		mheap_free_span(t[--nt]);
	__atomic_store_n(&lf.may_exit, 1, __ATOMIC_RELAXED);
	pthread_join(b, NULL);
}

/* ------------------------------------------------------------ fork */

/* A thread that fills its current span of class cls, frees an eighth of
 * its objects (enough to put the span on the partial list when it is used
 * up) and parks: its cache is then changed under it, as if it had been cut
 * short, and the process forks. */
struct parked_owner {
	unsigned cls;
	struct mcache *cache;
	struct mspan *span;
	void *live[MH_MAX_OBJS_PER_SPAN];
	unsigned nlive;
	pthread_barrier_t parked, go;
};

static void *fill_span_then_park(void *arg)
{
	struct parked_owner *po = arg;
	uint32_t size = mh_class[po->cls].size;
	void *mine[MH_MAX_OBJS_PER_SPAN];
	unsigned n;
	struct mspan *s = use_up_a_span(size, mine, &n);

	for (unsigned i = 0; i < n; i++) {
		if (i % 8 == 0) {
			mh_free(mine[i]);
		} else {
			memset(mine[i], 0xa5, size);
			po->live[po->nlive++] = mine[i];
		}
	}
	po->cache = mh_tls_cache;
	po->span = s;
	pthread_barrier_wait(&po->parked);
	pthread_barrier_wait(&po->go);
	for (unsigned i = 0; i < po->nlive; i++)
		mh_free(po->live[i]);
	return NULL;
}

/* In the child: allocate the class over and over; not one object may be
 * one the parked thread still holds, and its bytes stay as it left them. */
static int child_uses_the_class(struct parked_owner *po)
{
	uint32_t size = mh_class[po->cls].size;
	char msg[256];

	for (unsigned i = 0; i < 4 * MH_MAX_OBJS_PER_SPAN; i++) {
		void *p = mh_malloc(size);

		for (unsigned j = 0; j < po->nlive; j++)
			if (p == po->live[j])
				return 3;
		memset(p, 0x5a, size);
	}
	for (unsigned j = 0; j < po->nlive; j++)
		for (uint32_t b = 0; b < size; b++)
			if (((unsigned char *)po->live[j])[b] != 0xa5)
				return 4;
	return mheap_check(HEAPCHECK_LOCKED, msg, sizeof(msg)) ? 5 : 0;
}


TEST(fork_takes_back_the_spans_of_a_thread_cut_short_in_a_list_move)
{
	static struct parked_owner po;
	pthread_t t;

	po.cls = size_to_class(64);
	pthread_barrier_init(&po.parked, NULL, 2);
	pthread_barrier_init(&po.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, fill_span_then_park, &po));
	pthread_barrier_wait(&po.parked);

	struct mcache *c = po.cache;
	struct mspan *s = po.span;
	struct list *l = &c->partial[po.cls];

	ASSERT_EQ(s, c->alloc[po.cls]);
	ASSERT_EQ(0, mspan_window_free(s));	/* used up */
	ASSERT_EQ(0, s->free_words);
	ASSERT_EQ(s->nelems, s->touched);
	ASSERT_GE(mspan_local_frees(s), s->nelems / MH_CACHE_REUSE_SHARE);
	/* The thread's next malloc of the class, cut short in cache_list_append:
	 * the used-up span is off its class name and linked at the tail of
	 * the partial list, but not yet tagged as on it. */
	s->nalloc = s->nelems;
	c->alloc[po.cls] = &mh_empty_span;
	mspan_notify_at(s, s->nalloc);
	list_push_tail(l, &s->link);
	ASSERT_EQ(MSPAN_LIST_NONE, s->list);

	pid_t pid = fork();

	if (pid == 0)
		_exit(child_uses_the_class(&po));
	int rc = wait_child_ms(pid, 10000);

	/* The step, finished: the thread can go on. */
	s->list = MSPAN_LIST_CACHE_PARTIAL;
	pthread_barrier_wait(&po.go);
	pthread_join(t, NULL);
	EXPECT_EQ(0, rc) TH_LOG("child: %s", rc < 0 ? "hung in the fork handler" :
				rc == 3 ? "handed out a live object" :
				rc == 4 ? "a live object was overwritten" : "heap check failed");
}

TEST_HARNESS_MAIN
