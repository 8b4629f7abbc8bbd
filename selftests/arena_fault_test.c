// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas' use-after-free faults, per fault backend
 * (arena_fixture.h): touching freed memory is reported and kills, full
 * chunks fault while the active one is reused, a freed or stale arena
 * handle aborts (after any number of later arenas, and inside a loop of
 * allocations), two threads freeing one arena free it once, random probes
 * into freed chunks all fault.
 */
#define _GNU_SOURCE
#include "arena_fixture.h"

/* ------------------------------------------------------------ faulting */

TEST_F(arena, touching_freed_memory_is_reported_and_kills)
{
	struct arena_config cfg = self->cfg;
	mh_arena *a;
	char *p, *q;
	RETURN_IF_SETUP_SKIPPED();

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;	/* fault the active chunk too */
	arena_configure(&cfg);
	a = mh_arena_new();
	p = mh_arena_alloc(a, 64, 0);
	q = mh_arena_alloc_noscan(a, 64, 0);
	strcpy(p, "soon stale");
	mh_arena_free(a);
	expect_uaf(_metadata, p, false);
	expect_uaf(_metadata, q + 10, true);
}

/* Without moves (recycling off, or a backend that cannot move: kmod); with
 * them a big arena's active chunk moves warm instead (below). */
TEST_F(arena, with_reuse_full_chunks_fault_and_the_active_one_is_reused)
{
	mh_arena *a, *b;
	char *first, *last = NULL;
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	ASSERT_TRUE(self->cfg.reuse);
	self->cfg.recycle = false;
	arena_configure(&self->cfg);
	a = mh_arena_new();
	first = mh_arena_alloc(a, 1024, 0);
	/* Fill past the first chunk. */
	for (size_t n = 0; n < self->cfg.chunk_bytes; n += 1024)
		last = mh_arena_alloc(a, 1024, 0);
	ASSERT_TRUE(mh_in_arena(last));
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(1, st.arena_chunks_reuse);
	EXPECT_GE(st.arena_chunks_quarantined, 1);
	expect_uaf(_metadata, first, false);
	/* The next arena continues in the reused chunk, after `last`. */
	b = mh_arena_new();
	char *next = mh_arena_alloc(b, 1024, 0);
	EXPECT_EQ(last + 1024, next);
	mh_arena_free(b);
}

static void use_freed_arena(void *arg)
{
	mh_arena *a = mh_arena_new();

	(void)arg;
	mh_arena_free(a);
	(void)mh_arena_alloc(a, 8, 0);
}

static void free_arena_twice(void *arg)
{
	mh_arena *a = mh_arena_new();

	(void)arg;
	mh_arena_free(a);
	mh_arena_free(a);
}

TEST_F(arena, freed_arena_handles_abort)
{
	struct child_result r;
	RETURN_IF_SETUP_SKIPPED();

	run_child(use_freed_arena, NULL, &r);
	EXPECT_TRUE(died_of(&r, SIGABRT));
	EXPECT_NE(NULL, strstr(r.err, "mheap: use of freed arena 0x")) TH_LOG("%s", r.err);
	run_child(free_arena_twice, NULL, &r);
	EXPECT_TRUE(died_of(&r, SIGABRT));
	EXPECT_NE(NULL, strstr(r.err, "mheap: arena double free of 0x")) TH_LOG("%s", r.err);
}

/* A handle freed, then more arenas made and freed than any delay before an
 * arena's memory is used again (4096), some kept live: the stale handle is
 * reported. The child prints it first, so that the parent knows the line to
 * expect. */
static void free_and_outlive(mh_arena *a)
{
	enum { N = 5000 };
	mh_arena **more = malloc(N * sizeof(*more));

	mh_arena_free(a);
	for (int i = 0; i < N; i++)
		more[i] = mh_arena_new();
	for (int i = 0; i < N; i++)
		mh_arena_free(more[i]);
	for (int i = 0; i < 16; i++)
		(void)mh_arena_alloc(mh_arena_new(), 8, 0);
	fprintf(stderr, "stale %p\n", (void *)a);
	free(more);
}

static mh_arena *stale_handle(void)
{
	mh_arena *a = mh_arena_new();

	free_and_outlive(a);
	return a;
}

static void free_stale_handle(void *arg)
{
	(void)arg;
	mh_arena_free(stale_handle());
}

static void alloc_through_stale_handle(void *arg)
{
	(void)arg;
	(void)mh_arena_alloc(stale_handle(), 8, 0);
}

/* The child's stderr must be exactly "stale <handle>" and then the line
 * "mheap: <what> <handle>". */
static void expect_stale_report(struct __test_metadata *_metadata, void (*fn)(void *),
				const char *what)
{
	struct child_result r;
	char want[256];
	void *h = NULL;

	run_child(fn, NULL, &r);
	ASSERT_EQ(1, sscanf(r.err, "stale %p", &h)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want), "stale %p\nmheap: %s %p\n", h, what, h);
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x", r.status);
	EXPECT_STREQ(want, r.err);
}

TEST_F(arena, a_stale_handle_is_caught_after_any_number_of_later_arenas)
{
	RETURN_IF_SETUP_SKIPPED();

	expect_stale_report(_metadata, free_stale_handle, "arena double free of");
	expect_stale_report(_metadata, alloc_through_stale_handle, "use of freed arena");
}

/* A loop of allocations whose arena is freed, and its slot given to a new
 * arena, halfway through: the inline fast path may find the slot once for
 * the whole loop (mheap.h: the table of slot blocks is const to the
 * program), but it reads the slot's live handle at every allocation, so
 * the next one is reported. */
static void alloc_in_a_loop_across_its_free(void *arg)
{
	mh_arena *a = mh_arena_new();

	(void)arg;
	for (int i = 0; i < 64; i++) {
		*(volatile int *)mh_arena_alloc(a, 16, 8) = i;
		if (i == 31)
			free_and_outlive(a);
	}
}

TEST_F(arena, a_loop_of_allocations_catches_its_arena_freed_inside_it)
{
	RETURN_IF_SETUP_SKIPPED();

	expect_stale_report(_metadata, alloc_in_a_loop_across_its_free, "use of freed arena");
}

/* Two threads free one arena at once, after a spin barrier and a skew of
 * race_skew pause loops between them (across children, the frees overlap
 * at many offsets): exactly one frees it, the other aborts naming it. */
static atomic_int race_ready;
static int race_skew;
static mh_arena *race_victim;

static void *free_racing_victim(void *arg)
{
	int delay = (int)(intptr_t)arg;

	atomic_fetch_add(&race_ready, 1);
	while (atomic_load(&race_ready) < 2)
		;
	for (volatile int i = 0; i < delay; i++)
		;
	mh_arena_free(race_victim);
	return NULL;
}

static void free_arena_from_two_threads(void *arg)
{
	pthread_t t;

	(void)arg;
	if (pthread_create(&t, NULL, free_racing_victim,
			   (void *)(intptr_t)(race_skew > 0 ? race_skew : 0)))
		_exit(2);
	free_racing_victim((void *)(intptr_t)(race_skew < 0 ? -race_skew : 0));
	pthread_join(t, NULL);
}

TEST(an_arena_freed_by_two_threads_at_once_is_freed_once_and_the_other_aborts)
{
	struct timespec now, end;
	struct child_result r;
	char want[128];
	int i;

	race_victim = mh_arena_new();
	ASSERT_NE(NULL, mh_arena_alloc(race_victim, 64, 0));
	snprintf(want, sizeof(want), "mheap: arena double free of %p\n", (void *)race_victim);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += 2;
	for (i = 0; i < 200; i++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec ||
		    (now.tv_sec == end.tv_sec && now.tv_nsec > end.tv_nsec))
			break;
		race_skew = i % 49 - 24;
		run_child(free_arena_from_two_threads, NULL, &r);
		ASSERT_TRUE(died_of(&r, SIGABRT))
			TH_LOG("race %d: status %#x, stderr: %s", i + 1, r.status, r.err);
		ASSERT_STREQ(want, r.err) TH_LOG("race %d", i + 1);
	}
	TH_LOG("%d races", i);
	mh_arena_free(race_victim);
}

TEST_F(arena, random_probes_into_freed_chunks_all_fault)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { ARENAS = 6, PROBES = 24 };
	struct arena_config cfg = self->cfg;
	uintptr_t lo[ARENAS], hi[ARENAS];
	mh_arena *keep;
	char *live[64];

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	arena_configure(&cfg);
	keep = mh_arena_new();
	for (int i = 0; i < 64; i++) {
		live[i] = mh_arena_alloc(keep, 100, 0);
		memset(live[i], i, 100);
	}
	for (int i = 0; i < ARENAS; i++) {
		mh_arena *a = mh_arena_new();
		char *p = mh_arena_alloc(a, 1, 0);

		/* About 1.5 chunks each, ends of both ranges touched. */
		for (size_t n = 0; n < self->cfg.chunk_bytes * 3 / 2; n += 4096)
			*(char *)mh_arena_alloc(a, 4096, 0) = 1;
		lo[i] = (uintptr_t)p;
		hi[i] = (uintptr_t)mh_arena_alloc(a, 1, 0);
		mh_arena_free(a);
	}
	srand(42);
	for (int k = 0; k < PROBES; k++) {
		int i = rand() % ARENAS;
		uintptr_t span = hi[i] - lo[i];
		char *probe = (char *)(lo[i] + ((uintptr_t)rand() * 4099u) % span);

		/* Only addresses inside this arena's chunks: its chunks
		 * need not be next to each other (an arena that has filled
		 * a chunk takes a warm one, which lies anywhere), and other
		 * chunks between them may be live or warm. */
		if (!mh_in_arena(probe) ||
		    chunk_at(probe)->arena_id != chunk_at((void *)lo[i])->arena_id)
			continue;
		expect_uaf(_metadata, probe, k & 1);
	}
	/* Live arena memory never faults and kept its data. */
	for (int i = 0; i < 64; i++)
		for (int j = 0; j < 100; j++)
			ASSERT_EQ((char)i, live[i][j]);
	mh_arena_free(keep);
}

TEST_HARNESS_MAIN
