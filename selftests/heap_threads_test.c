// SPDX-License-Identifier: GPL-2.0
/*
 * The heap under threads: producer/consumer with every object freed by
 * another thread and every byte checked, remote frees found again, threads
 * that come and go (and allocate after their cache is gone), fork while
 * other threads hold caches, a thread whose first call frees, and the
 * scavenger releasing pages outside the heap lock while other threads
 * allocate.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "mcache.h"
#include "heapcheck.h"
#include "mheap_impl.h"
#include "sizeclass.h"

/* ------------------------------------------------------------ producer/consumer */

#define RING 1024

struct ring {
	_Atomic(uint8_t *) slot[RING];
	atomic_ulong head, tail;	/* produced, consumed */
	unsigned long total;
	atomic_ulong bad;
};

static size_t obj_size(unsigned long seq)
{
	/* Mostly small, sometimes medium, now and then large. */
	unsigned long h = seq * 2654435761u;

	if (h % 97 == 0)
		return 33000 + h % 100000;
	return 1 + h % (h % 7 == 0 ? 16384 : 512);
}

static uint8_t pattern(unsigned long seq, size_t i)
{
	return (uint8_t)(seq * 31 + i);
}

static void *producer(void *arg)
{
	struct ring *r = arg;

	for (unsigned long seq = 0; seq < r->total; seq++) {
		size_t n = obj_size(seq);
		uint8_t *p = mh_malloc(n + sizeof(seq));

		if (!p)
			abort();
		memcpy(p, &seq, sizeof(seq));
		for (size_t i = 0; i < n; i++)
			p[sizeof(seq) + i] = pattern(seq, i);
		while (atomic_load(&r->head) - atomic_load(&r->tail) >= RING)
			sched_yield();
		atomic_store(&r->slot[seq % RING], p);
		atomic_store(&r->head, seq + 1);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct ring *r = arg;

	for (unsigned long seq = 0; seq < r->total; seq++) {
		while (atomic_load(&r->head) <= seq)
			sched_yield();
		uint8_t *p = atomic_load(&r->slot[seq % RING]);
		unsigned long got;
		size_t n = obj_size(seq);

		memcpy(&got, p, sizeof(got));
		if (got != seq)
			atomic_fetch_add(&r->bad, 1);
		for (size_t i = 0; i < n; i++)
			if (p[sizeof(seq) + i] != pattern(seq, i)) {
				atomic_fetch_add(&r->bad, 1);
				break;
			}
		mh_free(p);
		atomic_store(&r->tail, seq + 1);
	}
	return NULL;
}

TEST(producer_consumer_cross_thread_frees_keep_every_byte)
{
	enum { PAIRS = 2 };
	static struct ring rings[PAIRS];
	pthread_t t[2 * PAIRS];
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;

	mh_stats_read(&before);
	for (int i = 0; i < PAIRS; i++) {
		rings[i].total = UNDER_SANITIZER ? 50000 : 400000;
		pthread_create(&t[2 * i], NULL, producer, &rings[i]);
		pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]);
	}
	/* Consumers free into spans their producer owns: the producer must
	 * find that memory again rather than grow. About 2 * 1024 objects
	 * are live at a time; the stream totals gigabytes. */
	uint64_t peak = 0;
	for (bool done = false; !done;) {
		struct mh_stats st = MH_STATS_INIT;

		usleep(20 * 1000);
		mh_stats_read(&st);
		if (st.heap_inuse > peak)
			peak = st.heap_inuse;
		done = true;
		for (int i = 0; i < PAIRS; i++)
			done &= atomic_load(&rings[i].tail) == rings[i].total;
	}
	for (int i = 0; i < 2 * PAIRS; i++)
		pthread_join(t[i], NULL);
	TH_LOG("peak heap in use %.1f MiB", peak / 1048576.0);
	EXPECT_LT(peak, 64 << 20);
	for (int i = 0; i < PAIRS; i++)
		EXPECT_EQ(0, atomic_load(&rings[i].bad));
	mh_stats_read(&after);
	/* Every object came back; spans went home with their threads. */
	EXPECT_EQ(after.mallocs - before.mallocs, after.frees - before.frees);
	EXPECT_EQ(before.heap_alloc, after.heap_alloc);
	EXPECT_LE(after.heap_inuse, before.heap_inuse + (1 << 20));
}

/* ------------------------------------------------------------ remote frees found again */

#define REUSE_N 640

static void *free_batch(void *arg)
{
	void **p = arg;

	for (int i = 0; i < REUSE_N; i++)
		mh_free(p[i]);
	return NULL;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* On a thread of its own (a fresh cache): REUSE_N objects of 256 B, freed
 * by another thread; one malloc of 3000 B; then twice as many objects of
 * 256 B again, counting in *arg how many of the first batch come back. */
static void *reuse_after_remote_frees(void *arg)
{
	static void *first[REUSE_N], *again[2 * REUSE_N];
	unsigned *reused = arg;
	pthread_t t;
	void *other;

	for (int i = 0; i < REUSE_N; i++)
		first[i] = mh_malloc(256);
	pthread_create(&t, NULL, free_batch, first);
	pthread_join(t, NULL);
	other = mh_malloc(3000);
	for (int i = 0; i < 2 * REUSE_N; i++)
		again[i] = mh_malloc(256);
	qsort(first, REUSE_N, sizeof(first[0]), cmp_ptr);
	*reused = 0;
	for (int i = 0; i < 2 * REUSE_N; i++)
		*reused += bsearch(&again[i], first, REUSE_N, sizeof(first[0]), cmp_ptr) != NULL;
	for (int i = 0; i < 2 * REUSE_N; i++)
		mh_free(again[i]);
	mh_free(other);
	return NULL;
}

TEST(remote_frees_are_reused_after_a_refill_of_another_class)
{
	unsigned reused;
	pthread_t t;

	/* The 3000-byte class has no remote frees to find: its refill must
	 * not make the 256-byte class forget its own. */
	pthread_create(&t, NULL, reuse_after_remote_frees, &reused);
	pthread_join(t, NULL);
	EXPECT_EQ(REUSE_N, reused);
}

/* ------------------------------------------------------------ a remote free in flight */

/*
 * A remote free sets its object's bit, checks, and only then counts it
 * (mspan.h). A thread preempted in between may find the owner has swept the
 * span meanwhile - the bit folded, the count one below zero - handed the
 * object out again and had every object freed. Until that count comes, the
 * span is not entirely free: once the owner called it so, it could give
 * the span back, and the late count would land on the struct's next life,
 * one object short of live there. The freer in flight is played by hand
 * (its bit, later its count), on a thread of its own (a fresh cache).
 */
#define FLIGHT_OBJ	1024
#define FLIGHT_N	(4 * 64)

struct in_flight {
	int found;		/* a used-up span all of whose objects we hold */
	int got_back;		/* each of its objects allocated again */
	int list_before_count;	/* its list once all were freed, before the count */
};

static struct mspan *flight_span_used_up(void **objs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct mspan *s = span_of((uintptr_t)objs[i]);
		unsigned in = 0;

		for (unsigned j = 0; j < n; j++)
			in += span_of((uintptr_t)objs[j]) == s;
		if (in == s->nelems && span_of((uintptr_t)objs[n - 1]) != s)
			return s;
	}
	return NULL;
}

static void *remote_free_in_flight(void *arg)
{
	static void *objs[FLIGHT_N], *again[MH_MAX_OBJS_PER_SPAN];
	struct in_flight *r = arg;
	unsigned ngot = 0, victim = FLIGHT_N;
	struct mspan *s;

	for (unsigned i = 0; i < FLIGHT_N; i++)
		objs[i] = mh_malloc(FLIGHT_OBJ);
	s = flight_span_used_up(objs, FLIGHT_N);
	r->found = s != NULL;
	if (!s)
		return NULL;
	/* The freer in flight: its bit, not yet its count. */
	for (unsigned i = 0; i < FLIGHT_N && victim == FLIGHT_N; i++)
		if (span_of((uintptr_t)objs[i]) == s)
			victim = i;
	uint32_t idx = mspan_obj_index(s, (uintptr_t)objs[victim]);

	__atomic_fetch_or(&s->bits[idx / 64].remote, (uint64_t)1 << (idx % 64), __ATOMIC_SEQ_CST);
	/* The owner frees the others, and its refill sweeps the span and hands
	 * every object out again, the freer's one too; then it moves on. */
	for (unsigned i = 0; i < FLIGHT_N; i++)
		if (i != victim && span_of((uintptr_t)objs[i]) == s)
			mh_free(objs[i]);
	for (unsigned k = 0; k < 4 * FLIGHT_N; k++) {
		void *p = mh_malloc(FLIGHT_OBJ);

		if (span_of((uintptr_t)p) != s) {
			mh_free(p);
			if (ngot == s->nelems)
				break;
			continue;
		}
		again[ngot++] = p;
	}
	r->got_back = ngot == s->nelems;
	for (unsigned i = 0; i < ngot; i++)
		mh_free(again[i]);
	r->list_before_count = s->list;
	/* The freer's count at last, and its free in the counters (as a
	 * thread without a cache counts it). */
	unsigned cls = s->sizeclass;

	__atomic_fetch_add(&s->remote, REMOTE_ONE, __ATOMIC_SEQ_CST);
	mcache_count_uncached(mh_dead_nfree, cls);
	for (unsigned i = 0; i < FLIGHT_N; i++)
		if (span_of((uintptr_t)objs[i]) != s)
			mh_free(objs[i]);
	return NULL;
}

TEST(a_span_is_not_entirely_free_while_a_remote_free_is_uncounted)
{
	struct in_flight r = { 0 };
	pthread_t t;

	pthread_create(&t, NULL, remote_free_in_flight, &r);
	pthread_join(t, NULL);
	ASSERT_TRUE(r.found);
	ASSERT_TRUE(r.got_back);
	EXPECT_EQ(MSPAN_LIST_CACHE_PARTIAL, r.list_before_count);
	/* Counted at last, nothing is amiss. */
	char msg[256];

	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

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

/* ------------------------------------------------------------ fork */

static atomic_int stop;

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *p = mh_malloc(100);

		mh_free(p);
	}
	return NULL;
}

TEST(fork_while_other_threads_allocate)
{
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (pid == 0) {
			struct mh_stats st = MH_STATS_INIT;
			void *p[1000];

			for (int j = 0; j < 1000; j++)
				p[j] = mh_malloc((size_t)j * 13 + 1);
			for (int j = 0; j < 1000; j++)
				mh_free(p[j]);
			mh_stats_read(&st);
			/* The other threads' caches were taken back. */
			_exit(st.threads_cached == 1 ? 0 : 3);
		}
		int status;

		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status));
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
}

/* ------------------------------------------------------------ large blocks kept */

/* A thread that frees a large block its cache keeps (largecache.c), then
 * waits until told to go on. */
struct keeping_thread {
	pthread_barrier_t freed, checked;
	struct mcache *cache;
	void *block;
};

static void *free_a_large_block_and_wait(void *arg)
{
	struct keeping_thread *k = arg;

	k->block = mh_malloc(100 << 10);
	mh_free(k->block);
	k->cache = mh_tls_cache;
	pthread_barrier_wait(&k->freed);
	pthread_barrier_wait(&k->checked);
	return NULL;
}

static void *free_a_large_block(void *arg)
{
	void **block = arg;

	*block = mh_malloc(100 << 10);
	mh_free(*block);
	return NULL;
}

/* The state of the span at p (MSPAN_DEAD when no span maps it). */
static unsigned state_at(void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s ? s->state : MSPAN_DEAD;
}

/* k's thread started and its block freed and kept; false if not. */
static bool start_keeping_thread(struct keeping_thread *k, pthread_t *th)
{
	pthread_barrier_init(&k->freed, NULL, 2);
	pthread_barrier_init(&k->checked, NULL, 2);
	if (pthread_create(th, NULL, free_a_large_block_and_wait, k))
		return false;
	pthread_barrier_wait(&k->freed);
	return state_at(k->block) == MSPAN_CACHED;
}

TEST(a_threads_kept_large_blocks_go_back_when_it_exits)
{
	void *block = NULL;
	pthread_t th;
	char msg[256];

	ASSERT_EQ(0, pthread_create(&th, NULL, free_a_large_block, &block));
	pthread_join(th, NULL);
	EXPECT_EQ(MSPAN_DEAD, state_at(block));
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(mh_scavenge_takes_back_the_large_blocks_an_idle_thread_keeps)
{
	static struct keeping_thread k;
	unsigned state, kept;
	pthread_t th;

	ASSERT_TRUE(start_keeping_thread(&k, &th));
	mh_scavenge();
	state = state_at(k.block);
	kept = LOAD_RELAXED(&k.cache->nlarge);
	pthread_barrier_wait(&k.checked);
	pthread_join(th, NULL);
	EXPECT_EQ(MSPAN_DEAD, state);
	EXPECT_EQ(0, kept);
}

/* Large blocks of five lengths allocated, written and freed again and
 * again (its cache keeps and reuses them) until *arg is set. */
static void *churn_large_blocks(void *arg)
{
	const bool *stop = arg;
	unsigned long rounds = 0;

	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE) || rounds < 1000) {
		size_t len = (64 << 10) + (rounds % 5) * (48 << 10);
		unsigned char *p = mh_malloc(len);

		if (!p)
			return (void *)1;
		p[0] = p[len - 1] = (unsigned char)rounds;
		if (p[0] != (unsigned char)rounds || p[len - 1] != p[0])
			return (void *)1;
		mh_free(p);
		rounds++;
	}
	return NULL;
}

TEST(mh_scavenge_and_a_thread_reusing_its_kept_large_blocks_lose_none)
{
	static bool stop;
	void *failed = (void *)1;
	pthread_t th;
	char msg[256];

	ASSERT_EQ(0, pthread_create(&th, NULL, churn_large_blocks, &stop));
	for (int i = 0; i < 2000; i++)
		mh_scavenge();
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	pthread_join(th, &failed);
	EXPECT_EQ(NULL, failed);
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST(a_fork_child_takes_back_the_large_blocks_other_threads_keep)
{
	static struct keeping_thread k;
	pthread_t th;
	pid_t pid;
	int status;

	ASSERT_TRUE(start_keeping_thread(&k, &th));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char msg[256];

		if (state_at(k.block) != MSPAN_DEAD)
			_exit(3);
		_exit(mheap_check(HEAPCHECK_ALL, msg, sizeof(msg)) ? 4 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	pthread_barrier_wait(&k.checked);
	pthread_join(th, NULL);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* ------------------------------------------------------------ scavenger */

/*
 * madvise as the library (linked in statically) calls it: with
 * watch_heap_lock set, each MADV_DONTNEED notes whether the heap lock was
 * held at the time (trylock fails for its owner too); the advice itself
 * goes straight to the kernel.
 */
static atomic_int watch_heap_lock, releases_seen, releases_locked;

int madvise(void *addr, size_t len, int advice)
{
	if (atomic_load(&watch_heap_lock) && advice == MADV_DONTNEED) {
		atomic_fetch_add(&releases_seen, 1);
		if (pthread_mutex_trylock(&mh_heap.lock) == 0)
			pthread_mutex_unlock(&mh_heap.lock);
		else
			atomic_fetch_add(&releases_locked, 1);
	}
	return (int)syscall(SYS_madvise, addr, len, advice);
}

TEST(mh_scavenge_releases_pages_without_holding_the_heap_lock)
{
	size_t len = 32 << 20;
	char *p = mh_malloc(len);

	ASSERT_NE(NULL, p);
	memset(p, 1, len);
	mh_free(p);
	atomic_store(&watch_heap_lock, 1);
	mh_scavenge();
	atomic_store(&watch_heap_lock, 0);
	EXPECT_GT(atomic_load(&releases_seen), 0);
	EXPECT_EQ(0, atomic_load(&releases_locked));
}

TEST(a_free_releases_the_idle_pages_without_holding_the_heap_lock)
{
	enum { N = 16 };
	size_t len = 4 << 20;
	char *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i, len);
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	/* 64 MiB idle: released once the recent peak has decayed and the
	 * chunks have gone unused for a while, by the next free. */
	usleep(1500 * 1000);
	atomic_store(&watch_heap_lock, 1);
	mh_free(mh_malloc(1 << 20));
	atomic_store(&watch_heap_lock, 0);
	EXPECT_GT(atomic_load(&releases_seen), 0);
	EXPECT_EQ(0, atomic_load(&releases_locked));
}

/* While one thread releases free pages (the heap lock dropped around each
 * madvise), another allocates large blocks and checks every page it wrote:
 * a page handed out while being released would read zero. */
struct scav_race {
	atomic_int stop;
	atomic_ulong bad, blocks;
};

static void *release_again_and_again(void *arg)
{
	struct scav_race *r = arg;

	while (!atomic_load(&r->stop)) {
		void *p = mh_malloc(3 << 20);

		memset(p, 7, 3 << 20);
		mh_free(p);
		mh_scavenge();
	}
	return NULL;
}

TEST(pages_being_released_are_not_handed_out)
{
	static struct scav_race r;
	enum { N = 8 };
	uint8_t *blk[N] = { 0 };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, release_again_and_again, &r));
	for (unsigned long it = 0; it < 3000; it++) {
		unsigned k = it % N;
		size_t len = (size_t)(1 + it % 5) << 20;

		if (blk[k]) {
			size_t old = (size_t)(1 + (it - N) % 5) << 20;

			for (size_t i = 0; i < old; i += 4096)
				if (blk[k][i] != (uint8_t)(it - N))
					atomic_fetch_add(&r.bad, 1);
			mh_free(blk[k]);
		}
		blk[k] = mh_malloc(len);
		ASSERT_NE(NULL, blk[k]);
		for (size_t i = 0; i < len; i += 4096)
			blk[k][i] = (uint8_t)it;
		atomic_fetch_add(&r.blocks, 1);
	}
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	for (unsigned k = 0; k < N; k++)
		mh_free(blk[k]);
	EXPECT_EQ(0, atomic_load(&r.bad));
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
