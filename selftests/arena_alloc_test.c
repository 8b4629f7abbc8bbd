// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas' allocation, per fault backend (arena_fixture.h): bump
 * allocation upwards and noscan objects downwards, the inline fast path and
 * the library's functions sharing one window, zero-sized allocations, the
 * fast path's bounds,
 * objects across chunks, calloc, large allocations in chunks of their own;
 * mh_in_arena and clones telling arena memory from the rest; threads
 * making and freeing arenas at once; a forced backend that is unknown or
 * missing stopping the program at start-up.
 */
#define _GNU_SOURCE
#include "arena_fixture.h"

/* ------------------------------------------------------------ allocation */

TEST_F(arena, bump_allocates_upwards_and_noscan_downwards)
{
	mh_arena *a = mh_arena_new();
	char *p1, *p2, *n1, *n2;
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_NE(NULL, a);
	EXPECT_STREQ(variant->backend, mh_backend_name());
	p1 = mh_arena_alloc(a, 24, 8);
	p2 = mh_arena_alloc(a, 24, 8);
	n1 = mh_arena_alloc_noscan(a, 100, 4);
	n2 = mh_arena_alloc_noscan(a, 100, 4);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, n2);
	EXPECT_EQ(p1 + 24, p2);
	EXPECT_LT(n2, n1);
	EXPECT_LT(p2, n2);
	EXPECT_TRUE(mh_in_arena(p1));
	EXPECT_TRUE(mh_in_arena(n2));
	for (size_t align = 1; align <= 4096; align <<= 1) {
		char *q = mh_arena_alloc(a, 3, align);
		char *r = mh_arena_alloc_noscan(a, 3, align);
		/* A multiple of the alignment, after an odd size. */
		char *s = mh_arena_alloc(a, 2 * align, align);

		ASSERT_EQ(0, (uintptr_t)q % align);
		ASSERT_EQ(0, (uintptr_t)r % align);
		ASSERT_EQ(0, (uintptr_t)s % align);
		ASSERT_LE(q + 3, s);
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_arena_alloc(a, 8, 12));
	EXPECT_EQ(EINVAL, errno);
	mh_arena_free(a);
}

/* mheap.h inlines the fast path; the library's out-of-line functions, as
 * a call through a pointer reaches them, bump the same window. */
TEST_F(arena, inline_and_out_of_line_allocations_share_one_window)
{
	void *(*alloc)(mh_arena *, size_t, size_t) = mh_arena_alloc;
	void *(*alloc_noscan)(mh_arena *, size_t, size_t) = mh_arena_alloc_noscan;
	mh_arena *a = mh_arena_new();
	char *p1, *p2, *p3, *n1, *n2, *n3;
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_NE(NULL, a);
	p1 = mh_arena_alloc(a, 24, 8);
	p2 = alloc(a, 24, 8);
	p3 = mh_arena_alloc(a, 24, 8);
	n1 = mh_arena_alloc_noscan(a, 32, 8);
	n2 = alloc_noscan(a, 32, 8);
	n3 = mh_arena_alloc_noscan(a, 32, 8);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, n1);
	EXPECT_EQ(p1 + 24, p2);
	EXPECT_EQ(p2 + 24, p3);
	EXPECT_EQ(n1 - 32, n2);
	EXPECT_EQ(n2 - 32, n3);
	mh_arena_free(a);
}

/* Size 0 gets a pointer of its own, as malloc(0) does, in both directions. */
TEST_F(arena, zero_sized_allocations_get_distinct_pointers)
{
	mh_arena *a = mh_arena_new();
	char *p1, *p2, *n1, *n2;
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_NE(NULL, a);
	p1 = mh_arena_alloc(a, 0, 0);
	p2 = mh_arena_alloc(a, 0, 0);
	n1 = mh_arena_alloc_noscan(a, 0, 1);
	n2 = mh_arena_alloc_noscan(a, 0, 1);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, n1);
	EXPECT_NE(p1, p2);
	EXPECT_NE(n1, n2);
	EXPECT_TRUE(mh_in_arena(p2));
	EXPECT_TRUE(mh_in_arena(n2));
	mh_arena_free(a);
}

/* The bump window of live arena a, as mheap.h's inline fast path finds it. */
static struct mh_arena_window_ *window_of(mh_arena *a)
{
	uintptr_t h = (uintptr_t)a, mask = (1u << MH_ARENA_BLOCK_BITS_) - 1;

	return (struct mh_arena_window_ *)((char *)mh_arena_blocks_[(h >> MH_ARENA_BLOCK_BITS_) & mask] +
					   (h & mask) * MH_ARENA_SLOT_BYTES_);
}

/* The fast path's bounds in both directions: sizes whose end would wrap
 * or pass the window, and a start rounded up past the window's end, all
 * take the library, and nothing handed out overlaps. */
TEST_F(arena, sizes_and_alignments_that_do_not_fit_the_window_take_the_library)
{
	static const size_t huge[] = {
		SIZE_MAX, SIZE_MAX - 6, SIZE_MAX / 2 + 1, (size_t)PTRDIFF_MAX,
	};
	mh_arena *a = mh_arena_new();
	struct mh_arena_window_ *w;
	char *p, *q, *n, *n0;
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_NE(NULL, a);
	p = mh_arena_alloc(a, 24, 8);
	n = n0 = mh_arena_alloc_noscan(a, 24, 8);
	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, n);
	memset(n0, 0x77, 24);
	w = window_of(a);
	ASSERT_EQ((uintptr_t)(p + 24), w->lo);
	ASSERT_EQ((uintptr_t)n, w->hi);
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		errno = 0;
		EXPECT_EQ(NULL, mh_arena_alloc(a, huge[i], 8));
		EXPECT_EQ(ENOMEM, errno);
		errno = 0;
		EXPECT_EQ(NULL, mh_arena_alloc_noscan(a, huge[i], 8));
		EXPECT_EQ(ENOMEM, errno);
		/* The window did not move. */
		ASSERT_EQ((uintptr_t)(p + 24), w->lo);
		ASSERT_EQ((uintptr_t)n, w->hi);
	}
	/* An odd end (a noscan byte below n0), then the start 2 bytes
	 * below it: a 1-byte object aligned to 8 rounds its start past the
	 * end, onto n0. */
	n = mh_arena_alloc_noscan(a, 1, 1);
	ASSERT_NE(NULL, n);
	*n = 0x5a;
	ASSERT_EQ((uintptr_t)n, w->hi);
	ASSERT_NE(NULL, mh_arena_alloc(a, w->hi - 2 - w->lo, 1));
	ASSERT_EQ((uintptr_t)n - 2, w->lo);
	q = mh_arena_alloc(a, 1, 8);
	ASSERT_NE(NULL, q);
	EXPECT_EQ(0, (uintptr_t)q % 8);
	EXPECT_TRUE(q + 1 <= n - 2 || q >= n0 + 24);
	*q = 0x33;
	EXPECT_EQ(0x5a, *n);
	for (int i = 0; i < 24; i++)
		ASSERT_EQ(0x77, (unsigned char)n0[i]);
	/* One byte more than the window's room: memory elsewhere (the size
	 * taken before the call, which may give the window a new chunk). */
	size_t over = w->hi - w->lo + 1;

	q = mh_arena_alloc_noscan(a, over, 1);
	ASSERT_NE(NULL, q);
	EXPECT_TRUE((uintptr_t)q + over <= (uintptr_t)p || q >= n0 + 24);
	mh_arena_free(a);
}

TEST_F(arena, many_objects_across_chunks_keep_their_contents)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 300000 };
	mh_arena *a = mh_arena_new();
	uint64_t **p = malloc(N * sizeof(*p));

	ASSERT_NE(NULL, p);
	for (int i = 0; i < N; i++) {
		size_t words = 1 + i % 13;

		p[i] = i % 3 ? mh_arena_alloc(a, words * 8, 8) : mh_arena_alloc_noscan(a, words * 8, 8);
		ASSERT_NE(NULL, p[i]);
		for (size_t w = 0; w < words; w++)
			p[i][w] = (uint64_t)i * 31 + w;
	}
	for (int i = 0; i < N; i++)
		for (size_t w = 0; w < 1 + (size_t)i % 13; w++)
			ASSERT_EQ((uint64_t)i * 31 + w, p[i][w]);
	struct mh_stats st = MH_STATS_INIT;
	mh_stats_read(&st);
	EXPECT_GE(st.arena_chunks_live, 2);	/* ~17 MB of objects */
	EXPECT_EQ(1, st.arenas_live);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arenas_live);
	EXPECT_EQ(0, st.arena_chunks_live);
	free(p);
}

TEST_F(arena, calloc_zeroes_and_checks_overflow)
{
	mh_arena *a = mh_arena_new();
	char *p;
	RETURN_IF_SETUP_SKIPPED();

	for (int round = 0; round < 2; round++) {
		p = mh_arena_calloc(a, 1000, 7);
		ASSERT_NE(NULL, p);
		for (int i = 0; i < 7000; i++)
			ASSERT_EQ(0, p[i]);
		memset(p, 0xff, 7000);
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_arena_calloc(a, SIZE_MAX / 2, 3));
	EXPECT_EQ(ENOMEM, errno);
	mh_arena_free(a);
}

TEST_F(arena, large_allocations_get_their_own_chunk_and_go_with_the_arena)
{
	mh_arena *a = mh_arena_new();
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	size_t big = self->cfg.chunk_bytes;	/* well over a quarter */
	char *p;
	RETURN_IF_SETUP_SKIPPED();

	mh_stats_read(&before);
	p = mh_arena_alloc(a, big, 1 << 16);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(0, (uintptr_t)p % (1 << 16));
	EXPECT_TRUE(mh_in_arena(p + big - 1));
	memset(p, 3, big);
	mh_stats_read(&after);
	EXPECT_EQ(before.arena_chunks_live + 1, after.arena_chunks_live);
	mh_arena_free(a);
	mh_stats_read(&after);
	if (faults(variant))
		EXPECT_GE(after.arena_quarantined_bytes, before.arena_quarantined_bytes + big);
	EXPECT_EQ(before.arena_chunks_live, after.arena_chunks_live);
}

/* ------------------------------------------------------------ queries */

TEST_F(arena, in_arena_and_clone_tell_arena_memory_from_the_rest)
{
	mh_arena *a = mh_arena_new();
	char *in = mh_arena_alloc(a, 32, 0);
	char *heap = mh_malloc(32);
	char *libc = malloc(32);
	int on_stack = 5;
	char *copy;
	RETURN_IF_SETUP_SKIPPED();

	strcpy(in, "arena data");
	EXPECT_TRUE(mh_in_arena(in));
	EXPECT_FALSE(mh_in_arena(heap));
	EXPECT_FALSE(mh_in_arena(libc));
	EXPECT_FALSE(mh_in_arena(&on_stack));
	EXPECT_FALSE(mh_in_arena(NULL));
	EXPECT_FALSE(mh_in_arena((void *)UINTPTR_MAX));

	copy = mh_arena_clone(in, 32);
	ASSERT_NE(in, copy);
	EXPECT_FALSE(mh_in_arena(copy));
	EXPECT_STREQ("arena data", copy);
	EXPECT_EQ(heap, mh_arena_clone(heap, 32));
	EXPECT_EQ(libc, mh_arena_clone(libc, 32));
	EXPECT_EQ((void *)&on_stack, mh_arena_clone(&on_stack, sizeof(on_stack)));
	mh_arena_free(a);
	/* The clone outlives the arena. */
	EXPECT_STREQ("arena data", copy);
	mh_free(copy);
	mh_free(heap);
	free(libc);
}

/* ------------------------------------------------------------ threads */

static void *arena_worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	int rounds = UNDER_SANITIZER ? 200 : 2000;

	for (int r = 0; r < rounds; r++) {
		mh_arena *a = mh_arena_new();
		uint32_t *p[64];
		int n = 1 + rand_r(&seed) % 64;

		for (int i = 0; i < n; i++) {
			size_t words = 2 + rand_r(&seed) % 512;

			p[i] = mh_arena_alloc(a, words * 4, 4);
			p[i][0] = (uint32_t)words;
			p[i][words - 1] = (uint32_t)(r * 64 + i);
		}
		for (int i = 0; i < n; i++)
			if (p[i][p[i][0] - 1] != (uint32_t)(r * 64 + i))
				return (void *)1;
		mh_arena_free(a);
	}
	return NULL;
}

TEST_F(arena, threads_create_and_free_arenas_concurrently)
{
	pthread_t t[4];
	struct mh_stats st = MH_STATS_INIT;
	void *bad;
	RETURN_IF_SETUP_SKIPPED();

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, arena_worker, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], &bad);
		EXPECT_EQ(NULL, bad);
	}
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arenas_live);
	EXPECT_EQ(0, st.arena_chunks_live);
}

/* ------------------------------------------------------------ start-up */

TEST(forcing_an_unknown_or_missing_backend_fails_at_start_up)
{
	struct {
		const char *value, *message;
	} cases[] = {
		{ "bogus", "mheap: MHEAP_BACKEND=bogus: unknown backend" },
		/* what to do about it, not only the errno */
		{ "kmod", "mheap: MHEAP_BACKEND=kmod: that backend does not work here "
			  "(it needs the module loaded, /dev/mheap: modprobe mheap): " },
		{ "guard", "mheap: MHEAP_BACKEND=guard: that backend does not work here "
			   "(it needs Linux 6.13 or later, MADV_GUARD_INSTALL): " },
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], out[512] = "";
		FILE *f;

		/* The module is here and kmod works, or the kernel has
		 * guard regions: nothing to fail. (The
		 * 6.1 harness has no -l, so the child would run every test,
		 * this one included, over and over.) */
		if ((!strcmp(cases[i].value, "kmod") && fault_backend_kmod.probe() == 0) ||
		    (!strcmp(cases[i].value, "guard") && fault_backend_guard.probe() == 0))
			continue;
		snprintf(cmd, sizeof(cmd), "MHEAP_BACKEND=%s /proc/%d/exe -l 2>&1",
			 cases[i].value, getpid());
		f = popen(cmd, "r");
		ASSERT_NE(NULL, f);
		size_t n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = 0;
		int status = pclose(f);

		EXPECT_NE(0, status);
		EXPECT_NE(NULL, strstr(out, cases[i].message)) TH_LOG("got: %s", out);
	}
}

TEST_HARNESS_MAIN
