// SPDX-License-Identifier: GPL-2.0
/*
 * The scavenger (scavenge.c, pagealloc_scavenge.c): a freed peak
 * returned to the OS, a working set rebuilt again and again kept,
 * mh_scavenge releasing every free page, released pages reading as zero;
 * idle holes released before a block freed just now, a large block on
 * fresh pages releasing as many free resident ones, resident runs taken
 * before released ones; the window of reuse under a clock the test holds
 * (doubling on a quarter taken back, not below 1 MiB, halving after 16
 * quiet windows down to its start) and a freed peak held for it.
 */
#define _GNU_SOURCE
#include "heap_lib.h"

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

TEST_HARNESS_MAIN
