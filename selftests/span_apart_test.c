// SPDX-License-Identifier: GPL-2.0
/*
 * Span structs and thread caches of different threads lie apart:
 * fixalloc_alloc_apart leaves FIXALLOC_APART bytes between an object it
 * carves for one caller and the next one it carves for another, and the
 * page heap carves every span struct, and mcache_borrow every cache, that
 * way, the thread being the caller (fixalloc.h says why: the prefetchers
 * of the core that reads one struct in order pull in the lines after it).
 * And objects of several sizes carved from one slab (fixalloc_share): the
 * span struct buckets and the caches fill the same pages, apart only where
 * the caller changes.
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
	while (f.slab->nchunk >= OBJ + FIXALLOC_APART) {
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

TEST(sizes_sharing_a_slab_are_carved_one_after_the_other)
{
	struct fixalloc small, big;
	int a, b;
	char *p1, *p2, *p3, *p4;

	fixalloc_init(&small, 128, 0, 0);
	fixalloc_init(&big, OBJ, 0, 0);
	fixalloc_share(&big, &small);
	p1 = fixalloc_alloc_apart(&small, &a);
	p2 = fixalloc_alloc_apart(&big, &a);
	p3 = fixalloc_alloc_apart(&small, &a);
	ASSERT_NE(NULL, p1);
	ASSERT_NE(NULL, p2);
	ASSERT_NE(NULL, p3);
	/* One caller: dense across the sizes (with a slab each, p2 began
	 * a slab of its own). */
	EXPECT_EQ(p1 + 128, p2);
	EXPECT_EQ(p2 + OBJ, p3);
	/* Another caller: apart from the slab's last object, whichever size. */
	p4 = fixalloc_alloc_apart(&big, &b);
	ASSERT_NE(NULL, p4);
	EXPECT_EQ(p3 + 128 + FIXALLOC_APART, p4);
	/* Each size keeps its own count and free list. */
	EXPECT_EQ(2 * (uint64_t)128, small.inuse);
	EXPECT_EQ(2 * (uint64_t)OBJ, big.inuse);
	fixalloc_free(&big, p2);
	EXPECT_EQ(p2, fixalloc_alloc_apart(&big, &a));
	EXPECT_EQ(NULL, small.free);
}

/* A thread's first objects of a dense and a sparse class: two span structs
 * of different buckets, carved for it one after the other. */
static void *two_buckets(void *arg)
{
	struct mspan **s = arg;
	void *p = mh_malloc(16), *q = mh_malloc(4096);

	s[0] = p ? span_of((uintptr_t)p) : NULL;
	s[1] = q ? span_of((uintptr_t)q) : NULL;
	mh_free(p);
	mh_free(q);
	return NULL;
}

TEST(the_heaps_span_structs_and_caches_share_one_slab)
{
	struct mspan *s[2] = { NULL, NULL };
	void *warm = mh_malloc(16);	/* the heap set up, this thread's cache */
	struct fixalloc *f;
	bool fresh;
	pthread_t t;

	ASSERT_NE(NULL, warm);
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		EXPECT_EQ(mh_heap.spanalloc[0].slab, mh_heap.spanalloc[b].slab);
	EXPECT_EQ(mh_heap.spanalloc[0].slab, mh_heap.cachealloc.slab);

	/* In use: a new thread's structs of two buckets lie side by side when
	 * both are carved (no freed struct of either bucket to reuse). */
	mh_lock(&mh_heap.lock);
	fresh = !mh_heap.cachealloc.free;
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		fresh = fresh && !mh_heap.spanalloc[b].free;
	mh_unlock(&mh_heap.lock);
	ASSERT_EQ(0, pthread_create(&t, NULL, two_buckets, s));
	pthread_join(t, NULL);
	mh_free(warm);
	ASSERT_NE(NULL, s[0]);
	ASSERT_NE(NULL, s[1]);
	if (!fresh)
		SKIP(return, "freed span structs or caches to reuse: no carving to see");
	ASSERT_NE((unsigned)s[0]->bucket, (unsigned)s[1]->bucket);
	f = &mh_heap.spanalloc[s[0]->bucket];
	/* Same thread: no gap, and the sparse span's struct right after the
	 * dense one's (each had a slab of its own before). */
	EXPECT_EQ((uintptr_t)s[0] + f->size, (uintptr_t)s[1]);
}

TEST_HARNESS_MAIN
