// SPDX-License-Identifier: GPL-2.0
/*
 * Span structs and thread caches of different threads lie apart:
 * fixalloc_alloc_apart leaves FIXALLOC_APART bytes between an object it
 * carves for one caller and the next one it carves for another, and the
 * page heap carves every span struct, and mcache_borrow every cache, that
 * way, the thread being the caller (fixalloc.h says why: the prefetchers
 * of the core that reads one struct in order pull in the lines after it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kselftest_harness.h"

#include "mheap.h"
#include "arenamap.h"
#include "fixalloc.h"
#include "mcache.h"
#include "mheap_impl.h"

#define OBJ 640		/* a span struct with 16 bitmap words */

TEST(objects_for_one_caller_are_dense_and_another_callers_start_apart)
{
	struct fixalloc f;
	int a, b;	/* two callers, told apart by address */
	char *p1, *p2, *p3, *p4, *p5;

	fixalloc_init(&f, OBJ, 0, 0);
	p1 = fixalloc_alloc_apart(&f, &a);
	p2 = fixalloc_alloc_apart(&f, &a);
	p3 = fixalloc_alloc_apart(&f, &b);
	p4 = fixalloc_alloc_apart(&f, &b);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, p4);
	EXPECT_EQ(p1 + OBJ, p2);
	EXPECT_EQ(p2 + OBJ + FIXALLOC_APART, p3);
	EXPECT_EQ(p3 + OBJ, p4);
	EXPECT_EQ(0, (uintptr_t)p3 % MH_SHARING_BLOCK);
	EXPECT_EQ(4 * (uint64_t)OBJ, f.inuse);

	/* A freed object is handed out again wherever it lies. */
	fixalloc_free(&f, p2);
	p5 = fixalloc_alloc_apart(&f, &b);
	EXPECT_EQ(p2, p5);
	/* Back to a: apart from b's last carved object. */
	p5 = fixalloc_alloc_apart(&f, &a);
	EXPECT_EQ(p4 + OBJ + FIXALLOC_APART, p5);
}

TEST(a_caller_change_with_no_room_for_the_gap_starts_a_new_slab)
{
	struct fixalloc f;
	int a, b;
	char *first, *last = NULL, *p;
	size_t n = 0;

	fixalloc_init(&f, OBJ, 0, 0);
	first = fixalloc_alloc_apart(&f, &a);
	ASSERT_NE(NULL, first);
	/* Fill the slab for a until less than an object and the gap is left. */
	while (f.nchunk >= OBJ + FIXALLOC_APART) {
		last = fixalloc_alloc_apart(&f, &a);
		ASSERT_NE(NULL, last);
		n++;
	}
	ASSERT_GT(n, 0);
	p = fixalloc_alloc_apart(&f, &b);
	ASSERT_NE(NULL, p);
	/* Not within the gap after a's last object. */
	EXPECT_TRUE(p < last || p >= last + OBJ + FIXALLOC_APART);
	EXPECT_EQ(0, (uintptr_t)p % 4096);	/* the start of a new slab */
}

struct first_span {
	void *obj;
	struct mspan *span;
	struct mcache *cache;	/* the thread's */
	_Atomic int done;	/* obj and span are set */
	_Atomic int *release;	/* the thread exits once this is set */
};

/* A thread's first 16-byte object and its span; the thread stays (and its
 * cache keeps the span) until told to go. */
static void *first_small_span(void *arg)
{
	struct first_span *f = arg;

	f->obj = mh_malloc(16);
	f->span = f->obj ? span_of((uintptr_t)f->obj) : NULL;
	f->cache = mh_tls_cache;
	atomic_store(&f->done, 1);
	while (!atomic_load(f->release))
		sched_yield();
	mh_free(f->obj);
	return NULL;
}

static int start_and_wait(pthread_t *t, struct first_span *f)
{
	if (pthread_create(t, NULL, first_small_span, f))
		return -1;
	while (!atomic_load(&f->done))
		sched_yield();
	return 0;
}

TEST(two_threads_first_spans_of_one_class_have_structs_apart)
{
	_Atomic int release = 0;
	struct first_span a = { .release = &release }, b = { .release = &release };
	pthread_t ta, tb;
	uintptr_t size, sa, sb;

	/* One after the other, both alive: b's struct is carved after a's. */
	ASSERT_EQ(0, start_and_wait(&ta, &a));
	ASSERT_EQ(0, start_and_wait(&tb, &b));
	atomic_store(&release, 1);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ASSERT_NE(NULL, a.span);
	ASSERT_NE(NULL, b.span);
	ASSERT_NE(a.span, b.span);
	ASSERT_EQ((unsigned)a.span->bucket, (unsigned)b.span->bucket);
	size = mh_heap.spanalloc[a.span->bucket].size;
	sa = (uintptr_t)a.span;
	sb = (uintptr_t)b.span;
	/* Not within FIXALLOC_APART bytes of each other (before the change,
	 * b's struct came right after a's). */
	if (sb > sa) {
		EXPECT_GE(sb - (sa + size), FIXALLOC_APART);
	} else {
		EXPECT_GE(sa - (sb + size), FIXALLOC_APART);
	}
}

TEST(two_threads_caches_are_apart)
{
	_Atomic int release = 0;
	struct first_span a = { .release = &release }, b = { .release = &release };
	pthread_t ta, tb;
	uintptr_t size, ca, cb;

	ASSERT_EQ(0, start_and_wait(&ta, &a));
	ASSERT_EQ(0, start_and_wait(&tb, &b));
	atomic_store(&release, 1);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ASSERT_NE(NULL, a.cache);
	ASSERT_NE(NULL, b.cache);
	size = mh_heap.cachealloc.size;
	ca = (uintptr_t)a.cache;
	cb = (uintptr_t)b.cache;
	/* Before the change, b's cache came right after a's. */
	if (cb > ca) {
		EXPECT_GE(cb - (ca + size), FIXALLOC_APART);
	} else {
		EXPECT_GE(ca - (cb + size), FIXALLOC_APART);
	}
}

TEST_HARNESS_MAIN
