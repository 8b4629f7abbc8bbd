// SPDX-License-Identifier: GPL-2.0
/*
 * The public API's compatibility contract (userlib/include/mheap.h): the
 * version the library reports, and mh_stats_read filling no more of
 * struct mh_stats than the caller says it has.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kselftest_harness.h"
#include "mheap.h"

TEST(mh_version_is_the_headers_version)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", MH_VERSION_MAJOR,
		 MH_VERSION_MINOR, MH_VERSION_PATCH);
	EXPECT_STREQ(want, MH_VERSION);
	EXPECT_STREQ(MH_VERSION, mh_version());
	EXPECT_EQ(MH_VERSION_MAJOR * 10000 + MH_VERSION_MINOR * 100 + MH_VERSION_PATCH,
		  MH_VERSION_NUMBER);
}

/* A struct mh_stats in a larger buffer whose every byte is a marker. */
#define MARK 0xa5
#define SLACK 256
union stats_buf {
	struct mh_stats st;
	unsigned char b[sizeof(struct mh_stats) + SLACK];
};

static size_t first_unmarked_from(const union stats_buf *u, size_t from)
{
	for (size_t i = from; i < sizeof(u->b); i++)
		if (u->b[i] != MARK)
			return i;
	return sizeof(u->b);
}

/* Read with st.size = size; return what mh_stats_read returned. */
static int read_sized(union stats_buf *u, size_t size)
{
	void *p = mh_malloc(64);	/* at least one malloc to count */

	mh_free(p);
	memset(u, MARK, sizeof(*u));
	u->st.size = size;
	return mh_stats_read(&u->st);
}

TEST(a_callers_own_size_is_filled_whole)
{
	union stats_buf u;

	ASSERT_EQ(0, read_sized(&u, sizeof(struct mh_stats)));
	EXPECT_EQ(sizeof(struct mh_stats), u.st.size);
	EXPECT_LT(0, u.st.mallocs);
	EXPECT_EQ(sizeof(u), first_unmarked_from(&u, sizeof(struct mh_stats)));
}

/*
 * A program built against the first header with the size field: its prefix
 * is filled, nothing after it is written.
 */
TEST(an_older_shorter_struct_is_filled_up_to_its_size_and_no_further)
{
	union stats_buf u;

	ASSERT_EQ(0, read_sized(&u, MH_STATS_SIZE_V1));
	EXPECT_EQ(MH_STATS_SIZE_V1, u.st.size);
	EXPECT_LT(0, u.st.mallocs);
	EXPECT_LT(0, u.st.heap_sys);
	EXPECT_EQ(sizeof(u), first_unmarked_from(&u, MH_STATS_SIZE_V1));
}

/*
 * A program built against a newer header, with fields this library does not
 * know: they are not written, and size says where the library stopped.
 */
TEST(a_newer_longer_struct_gets_the_librarys_size_back)
{
	union stats_buf u;

	ASSERT_EQ(0, read_sized(&u, sizeof(u)));
	EXPECT_EQ(sizeof(struct mh_stats), u.st.size);
	EXPECT_LT(0, u.st.mallocs);
	EXPECT_EQ(sizeof(u), first_unmarked_from(&u, sizeof(struct mh_stats)));
}

/*
 * A program built against a header before 0.4.0, whose by_class had 68
 * classes (no 40 and 56 bytes): it gets that layout, the fields after
 * by_class where it has them, and 33-40 byte objects in the 48-byte entry
 * as they were then.
 */
struct stats_0_3 {
	size_t size;
	uint64_t heap_sys, heap_inuse, heap_idle, heap_released, heap_alloc;
	uint64_t mallocs, frees, metadata_sys, heap_arenas, scavenged_bytes;
	uint64_t threads_cached;
	struct mh_size_class_stats by_class[68];
	uint64_t arenas_live, arena_chunks_live, arena_chunks_reuse;
	uint64_t arena_chunks_quarantined, arena_chunks_ready;
	uint64_t arena_quarantined_bytes, arena_faults_caught;
	uint64_t arena_releases_budget, arena_releases_enomem, arena_chunks_warm;
	uint64_t quarantine_scans, quarantine_scans_incomplete;
	uint64_t quarantine_scan_bytes, quarantine_scan_ns;
	uint64_t quarantine_scan_max_pause_ns, arena_chunks_kept;
	uint64_t arena_releases_scan, arena_releases_referenced;
};

TEST(a_struct_from_before_the_40_and_56_byte_classes_gets_its_own_layout)
{
	struct mh_stats now = MH_STATS_INIT;
	struct stats_0_3 old = { .size = sizeof(old) };
	mh_arena *a = mh_arena_new();
	unsigned cls48 = 0, n = 0;
	uint64_t before;

	ASSERT_EQ(1872, sizeof(old));
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, mh_stats_read((struct mh_stats *)&old));
	EXPECT_EQ(sizeof(old), old.size);
	ASSERT_EQ(0, mh_stats_read(&now));
	/* The classes but 40 and 56 bytes, in order. */
	for (unsigned c = 0; c < MH_NUM_SIZE_CLASSES; c++) {
		uint64_t size = now.by_class[c].size;

		if (size > 32 && size % 16)
			continue;
		ASSERT_LT(n, 68);
		EXPECT_EQ(size, old.by_class[n].size) TH_LOG("entry %u", n);
		if (size == 48)
			cls48 = n;
		n++;
	}
	EXPECT_EQ(68, n);
	EXPECT_EQ(now.arenas_live, old.arenas_live);
	EXPECT_LT(0, old.arenas_live);
	EXPECT_EQ(now.arena_chunks_live, old.arena_chunks_live);
	/* A 40-byte object counts in the 48-byte entry. */
	before = old.by_class[cls48].mallocs;
	mh_free(mh_malloc(40));
	ASSERT_EQ(0, mh_stats_read((struct mh_stats *)&old));
	EXPECT_EQ(before + 1, old.by_class[cls48].mallocs);
	mh_arena_free(a);
}

/*
 * From 0.4.0 on the structure grows at its end again: a program built
 * against 0.4.0's header keeps that layout when later fields make the
 * library's struct longer than its own. Modelled by a caller that has all
 * of the present layout but its last field: it gets the present layout's
 * prefix (40 and 56 bytes with entries of their own), not a pre-0.4.0
 * layout, which only sizes up to 0.3.0's (1872 bytes) stand for.
 */
TEST(a_struct_shorter_than_the_librarys_from_0_4_0_on_keeps_the_present_layout)
{
	const size_t size = sizeof(struct mh_stats) - sizeof(uint64_t);
	struct mh_stats now = MH_STATS_INIT;
	union stats_buf u;
	mh_arena *a = mh_arena_new();

	ASSERT_NE(NULL, a);
	ASSERT_LT(1872, size);
	ASSERT_EQ(0, read_sized(&u, size));
	ASSERT_EQ(0, mh_stats_read(&now));
	EXPECT_EQ(size, u.st.size);
	for (unsigned c = 0; c < MH_NUM_SIZE_CLASSES; c++) {
		EXPECT_EQ(now.by_class[c].size, u.st.by_class[c].size) TH_LOG("class %u", c);
	}
	EXPECT_LT(0, u.st.arenas_live);
	EXPECT_EQ(now.arenas_live, u.st.arenas_live);
	EXPECT_EQ(now.arena_chunks_live, u.st.arena_chunks_live);
	EXPECT_EQ(sizeof(u), first_unmarked_from(&u, size));
	mh_arena_free(a);
}

TEST(a_size_below_the_first_layout_is_einval_and_writes_nothing)
{
	const size_t bad[] = { 0, 1, sizeof(size_t), MH_STATS_SIZE_V1 - 8,
			       MH_STATS_SIZE_V1 - 1 };
	union stats_buf u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		EXPECT_EQ(-1, read_sized(&u, bad[i])) TH_LOG("size %zu", bad[i]);
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(bad[i], u.st.size);
		EXPECT_EQ(sizeof(u), first_unmarked_from(&u, sizeof(size_t)));
	}
	errno = 0;
	EXPECT_EQ(-1, mh_stats_read(NULL));
	EXPECT_EQ(EINVAL, errno);
}

TEST_HARNESS_MAIN
