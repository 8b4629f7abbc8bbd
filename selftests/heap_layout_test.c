// SPDX-License-Identifier: GPL-2.0
/*
 * Where the heap and its metadata lie: heap arenas from the arena hint up,
 * contiguous; the arena map, which finds heap pointers and only them; span
 * structs and caches each starting a sharing block, a span of one bitmap
 * word in one block with each word's bitmaps in one cache line; the
 * library's large zero arrays above its small variables; blocks aligned
 * up to a whole heap arena (64 MiB).
 */
#define _GNU_SOURCE
#include "heap_lib.h"

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

/* ------------------------------------------------------------ metadata */

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
		/* Not mh_empty_span: initialised data (its closed window
		 * names its all-ones word, mspan.h), never written. */
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

TEST_HARNESS_MAIN
