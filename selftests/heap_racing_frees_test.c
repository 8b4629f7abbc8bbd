// SPDX-License-Identifier: GPL-2.0
/*
 * Double frees by two threads at once abort with one line naming the
 * address, however the two frees overlap: large objects (cached or kept),
 * the owner against another thread, other threads either side of the
 * owner's sweep, and frees neither of which saw the other, before the span
 * counts as empty.
 */
#define _GNU_SOURCE
#include "bad_free.h"
#include "entry.h"
#include "secure.h"
#include <time.h>

/*
 * Two threads free victim at once: the child's main thread (whose cache
 * owns victim's span, if it is a small object) and a second one. They meet
 * at a spin barrier; then one of them waits race_skew pause loops, so that
 * across children the two frees overlap at many small offsets. Afterwards
 * the main thread frees race_rest, the other objects of victim's span, so
 * that whatever the two frees recorded comes due.
 */
#define RACE_SKEW	24

static atomic_int race_ready;
static int race_skew;
static void *race_rest[MH_MAX_OBJS_PER_SPAN];
static unsigned race_nrest;

static void race_start(int delay)
{
	atomic_fetch_add(&race_ready, 1);
	while (atomic_load(&race_ready) < 2)
		;
	for (volatile int i = 0; i < delay; i++)
		;
}

static void *race_other(void *arg)
{
	(void)arg;
	race_start(race_skew > 0 ? race_skew : 0);
	mh_free(victim);
	return NULL;
}

static void free_rest(void)
{
	for (unsigned i = 0; i < race_nrest; i++)
		mh_free(race_rest[i]);
}

static void free_racing(void *arg)
{
	pthread_t t;
	int err;

	(void)arg;
	err = pthread_create(&t, NULL, race_other, NULL);
	if (err) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		_exit(2);
	}
	race_start(race_skew < 0 ? -race_skew : 0);
	mh_free(victim);
	pthread_join(t, NULL);
	free_rest();
}

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Up to `races` children, for at most `limit` seconds: each must abort. */
static void expect_racing_frees_abort(struct __test_metadata *_metadata, const char *what,
				      int races, double limit)
{
	double end = seconds() + limit;
	char label[96];
	int i;

	for (i = 0; i < races && seconds() < end; i++) {
		race_skew = i % (2 * RACE_SKEW + 1) - RACE_SKEW;
		snprintf(label, sizeof(label), "%s, race %d", what, i + 1);
		expect_abort(_metadata, free_racing, label);
	}
	TH_LOG("%s: %d races", what, i);
}

TEST(double_free_of_a_large_object_by_two_threads_at_once)
{
	/* One above the span cache's lengths, and one it keeps. */
	victim = mh_malloc(1 << 20);
	WANT("mheap: double free of %#lx", victim);
	expect_racing_frees_abort(_metadata, "large, 1 MiB", 200, 2);
	victim = mh_malloc(5 * MH_PAGE_SIZE);
	WANT("mheap: double free of %#lx", victim);
	expect_racing_frees_abort(_metadata, "large, cached length", 200, 2);
}

/* Both racing frees may claim it for their thread's cache of freed large
 * blocks (largecache.c): one claim wins, the other free aborts. */
TEST(double_free_of_a_large_object_a_thread_would_keep_by_two_threads_at_once)
{
	victim = mh_malloc(512 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_racing_frees_abort(_metadata, "large, 512 KiB", 200, 2);
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_racing_frees_abort(_metadata, "large, 64 KiB", 200, 2);
}

/* victim: the first object of a span all of whose objects this thread
 * allocated, and which it has moved on from (owned, not current); the
 * others into race_rest. Returns the span, NULL if none was found. */
static struct mspan *victim_in_a_used_up_span(void)
{
	enum { N = 3 * 64 };
	struct mspan *span = NULL;
	void *objs[N];

	for (unsigned i = 0; i < N; i++)
		objs[i] = mh_malloc(1024);
	for (unsigned i = 0; i < N && !span; i++) {
		struct mspan *s = span_of((uintptr_t)objs[i]);
		unsigned in = 0;

		for (unsigned j = 0; j < N; j++)
			in += span_of((uintptr_t)objs[j]) == s;
		if (in == s->nelems && span_of((uintptr_t)objs[N - 1]) != s)
			span = s;
	}
	race_nrest = 0;
	victim = NULL;
	for (unsigned j = 0; span && j < N; j++) {
		if (span_of((uintptr_t)objs[j]) != span)
			continue;
		if (!victim)
			victim = objs[j];
		else
			race_rest[race_nrest++] = objs[j];
	}
	return span;
}

TEST(double_free_by_the_owner_and_another_thread_at_once)
{
	/* Most races are seen by one of the two frees at once; about one
	 * in a hundred only when the span's frees come due. */
	ASSERT_NE(NULL, victim_in_a_used_up_span());
	WANT("mheap: double free of %#lx", victim);
	expect_racing_frees_abort(_metadata, "owner and remote", 2000, 3);
	race_nrest = 0;
}

/* victim, the last object of its span, is freed by another thread; the
 * owner frees the rest, and its refill sweeps the span (folding the remote
 * free) and hands out the span's first free object, not victim; then
 * another thread frees victim again. Its bit is new, so only the check
 * after it, which must see the sweep's fold, can find the double free. */
static void free_remotely_again_after_a_sweep(void *arg)
{
	struct mspan *s = span_of((uintptr_t)victim);
	void *p = NULL;

	(void)arg;
	on_a_new_thread(free_it, victim);
	free_rest();
	for (unsigned k = 0; k < 4096 && span_of((uintptr_t)p) != s; k++)
		p = mh_malloc(1024);
	if (span_of((uintptr_t)p) != s || p == victim)
		_exit(3);	/* no sweep seen, or victim handed out: no abort */
	on_a_new_thread(free_it, victim);
}

TEST(double_free_by_other_threads_either_side_of_the_owners_sweep)
{
	ASSERT_NE(NULL, victim_in_a_used_up_span());
	/* The span's last object is the victim; its first goes with the
	 * rest. */
	void *first = victim;

	victim = race_rest[race_nrest - 1];
	race_rest[race_nrest - 1] = first;
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_remotely_again_after_a_sweep, "remote, sweep, remote");
	race_nrest = 0;
}

/* The owner frees victim, and so does a remote free that raced with it
 * unseen: its bit and its count are in place, as such a free leaves them. */
static void free_here_and_unseen_remotely(void *arg)
{
	struct mspan *s = span_of((uintptr_t)victim);
	uint32_t idx = mspan_obj_index(s, (uintptr_t)victim);

	(void)arg;
	mh_free(victim);
	__atomic_fetch_or(&s->bits[idx / 64].remote, (uint64_t)1 << (idx % 64), __ATOMIC_ACQ_REL);
	__atomic_fetch_add(&s->remote, REMOTE_ONE, __ATOMIC_ACQ_REL);
	free_rest();
}

TEST(double_free_neither_free_saw_aborts_before_the_span_counts_as_empty)
{
	ASSERT_NE(NULL, victim_in_a_used_up_span());
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_here_and_unseen_remotely, "unseen remote free");
	race_nrest = 0;
}

/*
 * The secure layer frees a small block through the span its check found
 * (heap_free_small, from secure_free's slow path and the sized frees), and
 * so does the default sized free (heap_free_span, after checked_span). A
 * free of the same block racing it may end that span's life in between,
 * and the span's struct start a new one over other pages, which this
 * thread may own. Here the block is freed, and the free is given another
 * span of its class that lies above it and this thread owns, as that
 * struct would be then: the block is a multiple of the 32-byte objects
 * below the span's base, an object's start by the divmul test alone, at
 * an index far past the span's bitmap. It must be reported as the double
 * free it is.
 */
static struct mspan *a_span_above_victims(void)
{
	struct mspan *s = span_of((uintptr_t)victim);

	for (unsigned k = 0; k < 65536; k++) {
		struct mspan *t = span_of((uintptr_t)mh_malloc(32));

		if (t && t != s && t->base > s->base)
			return t;
	}
	_exit(3);	/* no span above victim's: no abort */
}

static void free_small_through_a_span_above(void *arg)
{
	struct mspan *above = a_span_above_victims();

	(void)arg;
	mh_free(victim);
	/* The life the span above is in now: only the bounds stop it. */
	heap_free_small(above, victim, __atomic_load_n(&above->gen, __ATOMIC_ACQUIRE),
			" in free_sized");
}

static void free_span_through_a_span_above(void *arg)
{
	struct mspan *s = span_of((uintptr_t)victim), *above = a_span_above_victims();
	uint32_t idx = mspan_obj_index(s, (uintptr_t)victim);

	(void)arg;
	mh_free(victim);
	/* The life the span above is in now: only the bounds stop it. */
	heap_free_span(above, idx, victim, __atomic_load_n(&above->gen, __ATOMIC_ACQUIRE),
		       " in free_sized");
}

/* The defect it catches: a heap_free_small that tests the state and the
 * divmul only, whose owner's local_free reads a bitmap word gigabytes past
 * the span struct (SIGSEGV), and whose remote_free from another thread
 * would set a bit there. */
TEST(a_free_whose_span_struct_moved_above_the_block_is_a_double_free)
{
	victim = mh_malloc(32);
	ASSERT_NE(NULL, victim);
	WANT("mheap: double free of %#lx in free_sized", victim);
	expect_abort(_metadata, free_small_through_a_span_above, "span struct reused above");
}

/* The same for the default sized free's heap_free_span, whose owner's
 * free (local_free) must not take the block for an object of the span by
 * the divmul test alone (SIGSEGV). */
TEST(a_sized_free_whose_span_struct_moved_above_the_block_is_a_double_free)
{
	victim = mh_malloc(32);
	ASSERT_NE(NULL, victim);
	WANT("mheap: double free of %#lx in free_sized", victim);
	expect_abort(_metadata, free_span_through_a_span_above, "span struct reused above");
}

/* A sized free whose check read the span in an earlier life: the span
 * died since (every object of it free, victim too) and its struct is
 * this thread's again, over the same pages, where another object now
 * lies at victim's address. Here victim's own span stands for that new
 * life and the life the check read is the one before it. */
static void free_span_checked_in_an_earlier_life(void *arg)
{
	struct mspan *s = span_of((uintptr_t)victim);
	uint32_t idx = mspan_obj_index(s, (uintptr_t)victim);

	(void)arg;
	heap_free_span(s, idx, victim, __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) - 1,
		       " in free_sized");
	_exit(3);	/* freed an object of the new life: no abort */
}

/* The defect it catches: an owner's branch of the sized free that does
 * not look at the life, and frees the new life's object at victim's
 * address, which the program still holds, saying nothing. */
TEST(a_sized_free_checked_in_a_span_life_that_has_ended_is_a_double_free)
{
	victim = mh_malloc(32);
	ASSERT_NE(NULL, victim);
	WANT("mheap: double free of %#lx in free_sized", victim);
	expect_abort(_metadata, free_span_checked_in_an_earlier_life, "span's life ended");
}

/* The same in the secure mode's free of a small block (heap_free_small,
 * from secure_free's slow path and the sized frees), whose check
 * (heap_checked_room) read the span in a life that has ended since. */
static void free_small_checked_in_an_earlier_life(void *arg)
{
	struct mspan *s = span_of((uintptr_t)victim);

	(void)arg;
	heap_free_small(s, victim, __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) - 1,
			" in free_sized");
	_exit(3);	/* freed an object of the new life: no abort */
}

/* heap_free_small takes the life its caller's check read: reading it
 * again itself, it would pass a life that began in between. */
TEST(a_small_free_checked_in_a_span_life_that_has_ended_is_a_double_free)
{
	victim = mh_malloc(32);
	ASSERT_NE(NULL, victim);
	WANT("mheap: double free of %#lx in free_sized", victim);
	expect_abort(_metadata, free_small_checked_in_an_earlier_life, "span's life ended");
}

TEST_HARNESS_MAIN
