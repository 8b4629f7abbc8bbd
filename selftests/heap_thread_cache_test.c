// SPDX-License-Identifier: GPL-2.0
/*
 * A thread's cache over its life: frees and mallocs after it is gone (in
 * late key destructors) leave nothing behind, a thread whose first call
 * frees leaves the stand-in cache alone, threads coming and going give
 * their caches back, and the spans an idle thread's cache keeps are taken
 * back by mh_scavenge and by the scavenger's policy.
 */
#define _GNU_SOURCE
#include "heap_lib.h"
#include <limits.h>

/* ------------------------------------------------------------ after the cache is gone */

/*
 * A key made after the allocator's has its destructor called after the
 * allocator's in each pass: it frees and allocates on a thread whose cache
 * has been given back, and sets itself again for every pass glibc makes
 * (PTHREAD_DESTRUCTOR_ITERATIONS), small and large objects alike. Under
 * ThreadSanitizer one pass less: its own destructor finishes the thread in
 * the last pass, after which no code it instruments may run.
 */
#ifdef __SANITIZE_THREAD__
#define LATE_PASSES (PTHREAD_DESTRUCTOR_ITERATIONS - 1)
#else
#define LATE_PASSES PTHREAD_DESTRUCTOR_ITERATIONS
#endif

static pthread_key_t late_key;

struct late {
	int pass;
	void *small, *large;
};

static void late_destructor(void *arg)
{
	struct late *l = arg;

	mh_free(l->small);
	mh_free(l->large);
	l->small = mh_malloc(100);
	l->large = mh_malloc(100000);
	if (++l->pass < LATE_PASSES) {
		pthread_setspecific(late_key, l);
		return;
	}
	mh_free(l->small);
	mh_free(l->large);
	mh_free(l);
}

static void *allocate_then_exit(void *arg)
{
	struct late *l = mh_malloc(sizeof(*l));

	(void)arg;
	l->pass = 0;
	l->small = mh_malloc(100);
	l->large = mh_malloc(100000);
	pthread_setspecific(late_key, l);
	return NULL;
}

TEST(frees_and_mallocs_after_a_threads_cache_is_gone_leave_nothing_behind)
{
	struct mh_stats st = MH_STATS_INIT, base = MH_STATS_INIT;

	ASSERT_EQ(0, pthread_key_create(&late_key, late_destructor));
	mh_free(mh_malloc(1));	/* this thread has its cache already */
	mh_stats_read(&base);
	for (int i = 0; i < 50; i++) {
		pthread_t t;

		pthread_create(&t, NULL, allocate_then_exit, NULL);
		pthread_join(t, NULL);
	}
	mh_stats_read(&st);
	EXPECT_EQ(base.threads_cached, st.threads_cached);
	EXPECT_EQ(st.mallocs - base.mallocs, st.frees - base.frees);
	EXPECT_EQ(base.heap_alloc, st.heap_alloc);
	/* Every pass allocated and freed a small and a large object. */
	EXPECT_EQ(50 * (3 + 2 * LATE_PASSES), st.mallocs - base.mallocs);
}

/* ------------------------------------------------------------ a first call that frees */

static void *free_first(void *arg)
{
	void **objs = arg;

	/* Nothing of this thread's before: its fast paths see mh_no_cache. */
	for (int i = 0; i < 64; i++)
		mh_free(objs[i]);
	return NULL;
}

/*
 * A thread whose first call into the heap frees another thread's objects
 * finds no span through mh_no_cache (the stand-in for a thread without a
 * cache, shared by all of them): the frees are remote ones, and the
 * stand-in stays in the top arena of the address space, where no heap
 * pointer lies. Were it moved to the objects' heap arena, every thread
 * without a cache would write it, a data race between threads that share
 * nothing else.
 */
TEST(a_threads_first_call_a_free_leaves_the_stand_in_cache_alone)
{
	struct mh_stats st = MH_STATS_INIT, base = MH_STATS_INIT;
	void *objs[4][64];
	pthread_t t[4];

	mh_free(mh_malloc(1));	/* this thread has its cache already */
	mh_stats_read(&base);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 64; j++)
			objs[i][j] = mh_malloc(16 + (size_t)j * 8);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, free_first, objs[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	EXPECT_EQ((uintptr_t)0 - MH_ARENA_SIZE, mh_no_cache.free_arena_base);
	EXPECT_EQ((struct mspan *const *)mh_no_spans, mh_no_cache.free_arena_spans);
	mh_stats_read(&st);
	EXPECT_EQ(base.heap_alloc, st.heap_alloc);
	EXPECT_EQ(st.mallocs - base.mallocs, st.frees - base.frees);
}

/* ------------------------------------------------------------ thread churn */

static void *short_lived(void *arg)
{
	void *p[200];

	(void)arg;
	for (int i = 0; i < 200; i++)
		p[i] = mh_malloc((size_t)(i * 37 % 3000) + 1);
	/* Half freed here, half left for the main thread to free remotely. */
	for (int i = 0; i < 200; i += 2)
		mh_free(p[i]);
	void **rest = mh_malloc(100 * sizeof(void *));
	for (int i = 1, j = 0; i < 200; i += 2)
		rest[j++] = p[i];
	return rest;
}

TEST(threads_coming_and_going_give_their_caches_back)
{
	struct mh_stats st = MH_STATS_INIT, base = MH_STATS_INIT;
	int rounds = UNDER_SANITIZER ? 50 : 500;

	mh_free(mh_malloc(1));	/* this thread has its cache already */
	mh_stats_read(&base);
	for (int round = 0; round < rounds; round++) {
		pthread_t t[4];
		void **rest[4];

		for (int i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, short_lived, NULL);
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], (void **)&rest[i]);
			for (int j = 0; j < 100; j++)
				mh_free(rest[i][j]);
			mh_free(rest[i]);
		}
	}
	mh_stats_read(&st);
	EXPECT_EQ(base.threads_cached, st.threads_cached);
	EXPECT_EQ(base.heap_alloc, st.heap_alloc);
	EXPECT_EQ(st.mallocs - base.mallocs, st.frees - base.frees);
}

/* ------------------------------------------------------------ idle caches */

struct idle_thread {
	pthread_barrier_t freed, checked;
	struct mcache *cache;
	char *obj[8192];
};

/* Allocates 8 MiB of 1 KiB objects, frees them all (its cache keeps up to
 * MH_CACHE_EMPTY_MAX of the emptied spans for reuse) and idles. */
static void *allocate_free_and_idle(void *arg)
{
	struct idle_thread *t = arg;

	for (int i = 0; i < 8192; i++) {
		t->obj[i] = mh_malloc(1024);
		memset(t->obj[i], 3, 1024);
	}
	for (int i = 0; i < 8192; i++)
		mh_free(t->obj[i]);
	t->cache = mh_tls_cache;
	pthread_barrier_wait(&t->freed);
	pthread_barrier_wait(&t->checked);
	return NULL;
}

/* Pages of the idle thread's objects still resident. */
static size_t idle_objects_resident(const struct idle_thread *t)
{
	size_t resident = 0;

	for (int i = 0; i < 8192; i++) {
		uintptr_t page = (uintptr_t)t->obj[i] & ~(uintptr_t)4095;

		if (i && page == ((uintptr_t)t->obj[i - 1] & ~(uintptr_t)4095))
			continue;
		resident += resident_pages_in((void *)page, 4096);
	}
	return resident;
}

TEST(mh_scavenge_returns_the_spans_an_idle_threads_cache_keeps)
{
	static struct idle_thread t;
	size_t resident = 0;
	pthread_t th;

	pthread_barrier_init(&t.freed, NULL, 2);
	pthread_barrier_init(&t.checked, NULL, 2);
	ASSERT_EQ(0, pthread_create(&th, NULL, allocate_free_and_idle, &t));
	pthread_barrier_wait(&t.freed);
	mh_scavenge();
	/* Every page that held its objects is released but those of the
	 * class's current span, which stays owned (mcache.h, "trimming").
	 * Before, the cache kept up to MH_CACHE_EMPTY_MAX of them. */
	resident = idle_objects_resident(&t);
	pthread_barrier_wait(&t.checked);
	pthread_join(th, NULL);
	EXPECT_LE(resident, mh_class[size_to_class(1024)].npages * MH_PAGE_SIZE / 4096);
}

TEST(the_scavengers_policy_takes_back_the_spans_an_idle_threads_cache_keeps)
{
	static struct idle_thread t;
	size_t kept = 0;
	pthread_t th;
	char *big[64];

	pthread_barrier_init(&t.freed, NULL, 2);
	pthread_barrier_init(&t.checked, NULL, 2);
	ASSERT_EQ(0, pthread_create(&th, NULL, allocate_free_and_idle, &t));
	pthread_barrier_wait(&t.freed);
	kept = LOAD_RELAXED(&t.cache->empty_bytes);
	ASSERT_GT(kept, 0);
	/* This thread frees a 64 MiB peak and goes on freeing now and then:
	 * the policy releases the peak bit by bit, and on the way takes the
	 * empty spans of caches that made no refill between two of its
	 * passes. Its passes are at least a decay period apart and come only
	 * while there is a peak to release, about a second here: on a slow
	 * machine (the VM, under TCG) one peak's decay may see a single
	 * pass, so the peak is built again, three times at most. */
	for (int peak = 0; peak < 3 && kept; peak++) {
		for (int i = 0; i < 64; i++) {
			big[i] = mh_malloc(1 << 20);
			ASSERT_NE(NULL, big[i]);
			memset(big[i], 1, 1 << 20);
		}
		for (int i = 0; i < 64; i++)
			mh_free(big[i]);
		for (int round = 0; round < 100 && kept; round++) {
			usleep(50 * 1000);
			mh_free(mh_malloc(2 << 20));
			kept = LOAD_RELAXED(&t.cache->empty_bytes);
		}
	}
	pthread_barrier_wait(&t.checked);
	pthread_join(th, NULL);
	EXPECT_EQ(0, kept);
}

TEST_HARNESS_MAIN
