// SPDX-License-Identifier: GPL-2.0
/*
 * The size classes (sizeclass.c): the table's invariants (sizes, objects
 * a span, waste, the division by multiplication free relies on, a
 * span's tail within its bitmap words), the
 * densest classes' spans of 32 KiB within the object limit, the classes
 * up to 1 KiB at 56 objects a span or more, requests of
 * 33-40 and 49-56 bytes in slots of 40 and 56, the class of every size,
 * and malloc's table of current spans by request size.
 */
#define _GNU_SOURCE
#include "heap_lib.h"

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
		/* The owner's free (checkedfree.h, local_free) tests the bit
		 * of the index an address maps to, with no test of the span's
		 * tail: the tail's first byte, a multiple of the size, maps
		 * to index nelems, which must name a bit of the span's last
		 * bitmap word (clear, or reserved while the window is on it),
		 * not the word after it, which lies past the struct of a span
		 * of one word (mspan.h). So a span with a tail does not hold
		 * a multiple of 64 objects. */
		if (span % sc->size)
			ASSERT_NE(0, sc->nelems % 64) TH_LOG("class %u: %u objects and a tail",
							     c, sc->nelems);
		/* Spans hold 64 objects unless that would take more than
		 * 32 KiB, and 8 in any case; up to 1 KiB they grow on to
		 * 64 KiB within one bitmap word (sizeclass.c). */
		ASSERT_GE(sc->nelems, 8);
		if (sc->nelems < 64)
			ASSERT_GT(span, 16u << 10) TH_LOG("class %u: %u objects in %u bytes",
							  c, sc->nelems, span);
		if (span > (32u << 10) && sc->size <= 1024) {
			ASSERT_LE(span, 64u << 10) TH_LOG("class %u: %u bytes", c, span);
			ASSERT_LE(sc->nelems, 64) TH_LOG("class %u: %u objects", c, sc->nelems);
		} else if (span > (32u << 10)) {
			ASSERT_LT(sc->nelems, 16) TH_LOG("class %u: %u objects in %u bytes",
							 c, sc->nelems, span);
		}
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
 * page) one page (docs/heap.md#size-classes, "The densest classes"). */
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

/* sizeclass.c: the classes up to 1 KiB hold at least 56 objects a span
 * (576 B: 56 in 32 KiB; 704 B: 58 in 40 KiB), so that a used-up span
 * taken back at an eighth of its objects freed gains at least 7 objects
 * a span change; the spans past 32 KiB stay one bitmap word. Until
 * 2026-12-07 the classes of 640 B to 1 KiB stopped at 32 KiB (32-51
 * objects). */
TEST(classes_up_to_1_kib_hold_at_least_56_objects_a_span)
{
	mh_free(mh_malloc(1));
	for (unsigned c = 1; c < MH_NUM_CLASSES && mh_class[c].size <= 1024; c++) {
		const struct size_class *sc = &mh_class[c];
		uint32_t span = sc->npages * (uint32_t)MH_PAGE_SIZE;

		EXPECT_GE(sc->nelems, 56) TH_LOG("class %u (%u B): %u objects", c, sc->size,
						 sc->nelems);
		if (span > (32u << 10))
			EXPECT_EQ(1u, mspan_bitmap_words(sc->nelems))
				TH_LOG("class %u (%u B): %u objects", c, sc->size, sc->nelems);
	}
	EXPECT_EQ(64u, mh_class[size_to_class(1024)].nelems);
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

TEST_HARNESS_MAIN
