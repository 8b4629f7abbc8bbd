// SPDX-License-Identifier: GPL-2.0
/*
 * Bad frees abort with one line naming the address, in a child process:
 * double frees (by the owning thread, by another thread, of large objects,
 * through realloc, after frees into another heap arena, by two threads at
 * once) and invalid frees (foreign, interior, stack, span-tail and
 * top-of-address-space pointers).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "internal.h"
#include "arenamap.h"
#include "checkedfree.h"
#include "mcache.h"
#include "mspan.h"

static char expected[128];

/* The child's whole stderr must be exactly the one expected line. */
static void expect_abort(struct __test_metadata *_metadata, void (*fn)(void *),
			 const char *what)
{
	struct child_result r;

	run_child(fn, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("%s: child status %#x, stderr: %s",
						 what, r.status, r.err);
	ASSERT_NE(NULL, strstr(r.err, expected)) TH_LOG("%s: want \"%s\", got \"%s\"",
							 what, expected, r.err);
	EXPECT_EQ(strlen(r.err), strlen(expected) + 1) TH_LOG("%s: got \"%s\"", what, r.err);
}

#define WANT(fmt, p) snprintf(expected, sizeof(expected), fmt, (unsigned long)(uintptr_t)(p))

static void *victim;

static void free_twice(void *arg)
{
	(void)arg;
	mh_free(victim);
	mh_free(victim);
}

TEST(double_free_of_a_small_object)
{
	victim = mh_malloc(64);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "small");
}

TEST(double_free_of_a_large_object)
{
	victim = mh_malloc(1 << 20);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "large");
}

/* Run fn(arg) on a thread of its own and wait for it. Runs in the child:
 * a thread that cannot start ends it with a status and a line that
 * expect_abort reports, never with a join of an unset handle. */
static void on_a_new_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, fn, arg);

	if (err) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		_exit(2);
	}
	pthread_join(t, NULL);
}

static void *free_it(void *p)
{
	mh_free(p);
	return NULL;
}

static void free_twice_remote(void *arg)
{
	(void)arg;
	/* This thread's cache owns the span; the other thread frees first. */
	on_a_new_thread(free_it, victim);
	mh_free(victim);
}

static void free_here_then_remote(void *arg)
{
	(void)arg;
	mh_free(victim);
	on_a_new_thread(free_it, victim);
}

TEST(double_free_across_threads)
{
	victim = mh_malloc(128);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice_remote, "remote then local");
	expect_abort(_metadata, free_here_then_remote, "local then remote");
}

static void *free_it_twice(void *p)
{
	mh_free(p);
	mh_free(p);
	return NULL;
}

static void free_remotely_twice(void *arg)
{
	(void)arg;
	on_a_new_thread(free_it_twice, victim);
}

static void free_remotely_by_two_threads(void *arg)
{
	(void)arg;
	on_a_new_thread(free_it, victim);
	on_a_new_thread(free_it, victim);
}

/* Neither free is the owner's: the second finds the first's remote bit
 * (the span is owned by this thread, which is alive and does not sweep in
 * between). */
TEST(double_free_where_both_frees_are_remote)
{
	victim = mh_malloc(128);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_remotely_twice, "one other thread twice");
	expect_abort(_metadata, free_remotely_by_two_threads, "two other threads");
}

static void free_after_span_died(void *arg)
{
	(void)arg;
	/* The only object of its span: freeing it returns the span... */
	mh_free(victim);
	/* ...and its pages; the second free finds free pages. */
	mh_free(victim);
}

TEST(double_free_after_the_pages_went_back)
{
	victim = mh_malloc(20000);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_after_span_died, "span died");
}

/* The page heap's span cache, past the thread's own cache of freed large
 * blocks (largecache.c), which this empties after the first free. */
static void free_into_the_span_cache_then_twice(void *arg)
{
	(void)arg;
	mh_free(victim);
	mcache_large_release(mh_tls_cache);
	mh_free(victim);
}

TEST(double_free_of_a_large_object_in_the_span_cache)
{
	victim = mh_malloc(5 * MH_PAGE_SIZE);	/* freed whole into the cache */
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_into_the_span_cache_then_twice, "cached span");
}

TEST(double_free_of_a_large_object_the_freeing_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "kept by the thread");
}

static void free_kept_then_on_a_new_thread(void *arg)
{
	(void)arg;
	mh_free(victim);
	on_a_new_thread(free_it, victim);
}

TEST(double_free_by_another_thread_of_a_large_object_one_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_kept_then_on_a_new_thread, "kept, then remote");
}

static void realloc_kept(void *arg)
{
	(void)arg;
	mh_free(victim);
	(void)mh_realloc(victim, 100 << 10);
}

TEST(realloc_of_a_large_object_the_freeing_thread_keeps)
{
	victim = mh_malloc(64 << 10);
	WANT("mheap: double free of %#lx in realloc", victim);
	expect_abort(_metadata, realloc_kept, "kept, realloc");
}

static void free_victim_base_then_victim(void *arg)
{
	(void)arg;
	mh_free((void *)((uintptr_t)victim & ~(uintptr_t)(MH_PAGE_SIZE - 1)));
	mcache_large_release(mh_tls_cache);
	mh_free(victim);
}

static void *victim_block;

static void free_block_then_victim(void *arg)
{
	(void)arg;
	mh_free(victim_block);
	mh_free(victim);
}

/* A block the freeing thread keeps maps all its pages to its struct: a
 * pointer into it that no allocation returned is an invalid free. */
TEST(invalid_free_of_an_unaligned_pointer_into_a_large_block_the_thread_keeps)
{
	victim_block = mh_malloc(64 << 10);
	victim = (char *)victim_block + MH_PAGE_SIZE + 3;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_block_then_victim, "kept, unaligned");
}

/* The first page of a cached large span maps to its dead struct (so that
 * its neighbours find it), but a pointer no allocation returned is still
 * an invalid free there, not a double one. */
TEST(invalid_free_of_an_unaligned_pointer_into_a_cached_large_block)
{
	victim = (char *)mh_malloc(5 * MH_PAGE_SIZE) + 3;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim_base_then_victim, "cached span, unaligned");
}

static void realloc_freed(void *arg)
{
	(void)arg;
	mh_free(victim);
	/* Keep the span alive so the slot is still a valid object start. */
	(void)mh_realloc(victim, 200);
}

TEST(realloc_of_a_freed_pointer)
{
	void *keep = mh_malloc(64);

	victim = mh_malloc(64);
	(void)keep;
	WANT("mheap: double free of %#lx in realloc (pointer already freed)", victim);
	expect_abort(_metadata, realloc_freed, "realloc");
}

static void free_victim(void *arg)
{
	(void)arg;
	mh_free(victim);
}

/* The object the window hands out next (the lowest clear bit of its
 * alloc_bits word, mspan.h) has not been handed out since the span was
 * made or swept: freeing it is a double free, however close it lies to
 * the objects that have been (the owner's check reads the bitmap words
 * alone, checkedfree.h). */
TEST(double_free_of_the_next_object_to_hand_out)
{
	/* A class nothing else here uses: a fresh span, all of it free. */
	void *p = mh_malloc(3000);
	struct mspan *s = span_of((uintptr_t)p);

	ASSERT_NE(NULL, s);
	ASSERT_NE(MSPAN_WINDOW_CLOSED, s->window);
	uint64_t a = *mspan_window_word(s, s->window);

	ASSERT_NE(~(uint64_t)0, a) TH_LOG("the window offers no object");
	victim = (void *)(s->base + (uintptr_t)(mspan_window_first(s->window) +
						(uint32_t)__builtin_ctzll(~a)) * s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim, "next to hand out");
	mh_free(p);
}

/* The first object of a span of fresh pages past `touched`, in the
 * window's word: set in alloc_bits and freed_local while the window is
 * there (mspan.h, "The window"), never handed out. Its free is a double
 * free, the owner's and another thread's. */
static void *first_reserved(struct __test_metadata *_metadata, void **keep)
{
	/* 2 KiB objects: 4 pages hold 16, a page of them is 4. */
	void *p = mh_malloc(2048);
	struct mspan *s = span_of((uintptr_t)p);

	*keep = p;
	if (!s || s->touched == s->nelems)
		return NULL;	/* resident pages: every object touched */
	EXPECT_EQ(mspan_window_at(s->touched / 64), s->window);
	return (void *)(s->base + (uintptr_t)s->touched * s->elemsize);
}

static void *free_victim_thread(void *arg)
{
	(void)arg;
	mh_free(victim);
	return NULL;
}

static void free_victim_remotely(void *arg)
{
	pthread_t t;

	(void)arg;
	pthread_create(&t, NULL, free_victim_thread, NULL);
	pthread_join(t, NULL);
}

TEST(double_free_of_an_object_past_touched_in_the_window)
{
	void *keep;

	victim = first_reserved(_metadata, &keep);
	if (!victim)
		SKIP(return, "the span's pages were resident: no object past `touched`");
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim, "reserved, by the owner");
	mh_free(keep);
}

TEST(remote_double_free_of_an_object_past_touched_in_the_window)
{
	void *keep;

	victim = first_reserved(_metadata, &keep);
	if (!victim)
		SKIP(return, "the span's pages were resident: no object past `touched`");
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_victim_remotely, "reserved, by another thread");
	mh_free(keep);
}

TEST(invalid_free_of_a_foreign_pointer)
{
	victim = malloc(32);	/* libc's, not ours */
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "libc pointer");
}

TEST(invalid_free_of_a_stack_pointer)
{
	int local;

	victim = &local;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "stack pointer");
}

/* A new thread's cache has freed into no heap arena yet: its lookup starts
 * from a map of nothing, which must send the pointer to the checks. */
static void *malloc_then_free_victim(void *arg)
{
	(void)arg;
	mh_free(mh_malloc(16));
	mh_free(victim);
	return NULL;
}

static void free_victim_on_a_new_thread(void *arg)
{
	(void)arg;
	on_a_new_thread(malloc_then_free_victim, NULL);
}

TEST(invalid_free_of_a_pointer_in_the_top_arena_of_the_address_space)
{
	victim = (void *)((uintptr_t)0 - 4096);
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "top arena");
	expect_abort(_metadata, free_victim_on_a_new_thread, "top arena, new thread");
}

/* Objects of two heap arenas, freed turn about: each free moves the
 * cache's arena (mcache_span_of), and must still find the right span. */
static void *arena_a[2], *arena_b;

static void free_across_arenas_then_twice(void *arg)
{
	(void)arg;
	mh_free(arena_a[0]);
	mh_free(arena_b);
	mh_free(arena_a[1]);
	mh_free(arena_b);
}

TEST(double_free_after_a_free_into_another_heap_arena)
{
	size_t cap = 4096, n = 0;
	void **objs = calloc(cap, sizeof(*objs));
	uintptr_t first;

	ASSERT_NE(NULL, objs);
	objs[n++] = mh_malloc(32768);
	ASSERT_NE(NULL, objs[0]);
	first = (uintptr_t)objs[0] >> MH_ARENA_SHIFT;
	/* 32 KiB objects until one lies in another arena (at most 64 MiB). */
	while (n < cap) {
		objs[n] = mh_malloc(32768);
		ASSERT_NE(NULL, objs[n]);
		if ((uintptr_t)objs[n++] >> MH_ARENA_SHIFT != first)
			break;
	}
	ASSERT_LT(n, cap);
	ASSERT_GT(n, 2);
	arena_a[0] = objs[0];
	arena_a[1] = objs[1];
	arena_b = objs[n - 1];
	WANT("mheap: double free of %#lx", arena_b);
	expect_abort(_metadata, free_across_arenas_then_twice, "two arenas");
	while (n)
		mh_free(objs[--n]);
	free(objs);
}

/* A span a free's lookup found, and the check of p against it: in the
 * test, a span that does not hold p, as when p's span died and its struct
 * started a new life over other pages between the lookup and the check (a
 * free racing the free of p's span's last object; free_checked's `found`). */
static struct mspan *victim_span;

static void check_victim_against_victim_span(void *arg)
{
	uint32_t idx;

	(void)arg;
	checked_span_at(victim_span, (uintptr_t)victim, &idx, "");
}

/* Whatever the offset: above the span at a multiple of its object size
 * (where the index alone would name an object past its last one), or
 * below it. */
TEST(a_free_whose_span_now_holds_other_pages_is_a_double_free)
{
	void *p = mh_malloc(48);
	struct mspan *s = span_of((uintptr_t)p);
	uintptr_t bytes = s->npages << MH_PAGE_SHIFT;

	victim_span = s;
	victim = (void *)(s->base + (bytes + s->elemsize - 1) / s->elemsize * s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, check_victim_against_victim_span, "above the span");
	victim = (void *)(s->base - 64 * (uintptr_t)s->elemsize);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, check_victim_against_victim_span, "below the span");
	mh_free(p);
}

/* A span's pages past its last object (the 48-byte class's 32 KiB hold
 * 682 objects and 32 bytes more; a 1152-byte span 28 objects and 512
 * bytes): no object was ever there, though the address is a multiple of
 * the object size. By the owner and by another thread. */
TEST(invalid_free_past_the_last_object_of_a_span)
{
	static const size_t sizes[] = { 48, 80, 144, 1152, 6912 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mh_malloc(sizes[i]);
		struct mspan *s = span_of((uintptr_t)p);
		uintptr_t end = s->nelems * (uintptr_t)s->elemsize;

		ASSERT_LT(end, s->npages << MH_PAGE_SHIFT) TH_LOG("%zu B: no tail", sizes[i]);
		victim = (void *)(s->base + end);
		WANT("mheap: invalid free of %#lx (past the last object of its span)", victim);
		expect_abort(_metadata, free_victim, "owner");
		expect_abort(_metadata, free_victim_on_a_new_thread, "another thread");
		mh_free(p);
	}
}

/* An address inside a span's last object, within an object's size of the
 * span's end (the 48-byte class's last object ends 32 bytes before it): an
 * interior pointer like any other, not one past the last object. */
TEST(invalid_free_inside_the_last_object_of_a_span)
{
	static const size_t sizes[] = { 40, 48, 56, 80, 144, 1152, 6912 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mh_malloc(sizes[i]);
		struct mspan *s = span_of((uintptr_t)p);
		uintptr_t end = s->nelems * (uintptr_t)s->elemsize;

		ASSERT_LT(end, s->npages << MH_PAGE_SHIFT) TH_LOG("%zu B: no tail", sizes[i]);
		victim = (void *)(s->base + end - 8);
		WANT("mheap: invalid free of %#lx (inside an object)", victim);
		expect_abort(_metadata, free_victim, "owner");
		expect_abort(_metadata, free_victim_on_a_new_thread, "another thread");
		mh_free(p);
	}
}

/* By the owner and by another thread, whose free checks the span its
 * lookup through its own heap arena found (free_checked's `found`). */
TEST(invalid_free_inside_an_object)
{
	char *p = mh_malloc(100);

	victim = p + 8;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "small interior");
	expect_abort(_metadata, free_victim_on_a_new_thread, "small interior, another thread");
	p = mh_malloc(100000);
	victim = p + 4096;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "large interior");
	expect_abort(_metadata, free_victim_on_a_new_thread, "large interior, another thread");
}

/* ------------------------------------------------------------ racing frees */

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

TEST_HARNESS_MAIN
