// SPDX-License-Identifier: GPL-2.0
/*
 * The heap's own invariants (mheap_check, userlib/heapcheck.c) after a
 * bounded run of everything that races: frees of small and large objects
 * by the thread that made them and by others, threads exiting with
 * objects still out and being replaced, realloc, arenas filled and freed
 * (their chunks quarantined, reused, moved warm), the scavenger, and fork
 * with all of it going on. Every so often the other threads are stopped
 * between two operations and the whole heap is checked with their
 * objects, caches and arenas live; each forked child allocates a little
 * and checks what the fork handlers' locks guard; at the end the parent
 * joins everything, frees what is left and checks again, and the object
 * counters must be back where they started. A last test corrupts the
 * heap on purpose, to show the check can fail.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "fault.h"
#include "heapcheck.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"

/* Bounds of the run: on the host, hundreds of thread exits and dozens of
 * forks; under sanitizers (10-50x slower) fewer of each. For a soak run
 * by hand, MHEAP_STRESS_MS sets another length and MHEAP_STRESS_FORK_MS
 * another pace of forks. */
#define RUN_MS		(UNDER_SANITIZER ? 1000 : 2000)
#define WORKERS		3
#define WORKER_OPS	(UNDER_SANITIZER ? 1000 : 20000)
#define FORK_EVERY_MS	(UNDER_SANITIZER ? 50 : 40)
#define CHECK_EVERY_MS	(UNDER_SANITIZER ? 200 : 100)
#define LIVE_MAX	256	/* objects a worker holds */
#define SLOTS		512	/* objects waiting for another thread's free */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ------------------------------------------------------------ objects */

/*
 * Every object starts with its size and ends with a byte derived from it,
 * so whoever frees it can tell that nothing else was handed the same
 * memory meanwhile. Failures in threads are counted, the first described.
 */
static atomic_int errors;
static char first_error[256];

static void report(const char *fmt, unsigned long a, unsigned long b)
{
	if (atomic_fetch_add(&errors, 1) == 0)
		snprintf(first_error, sizeof(first_error), fmt, a, b);
}

static uint8_t tag(size_t size)
{
	return (uint8_t)(size * 0x9e3779b1u >> 24) | 1;
}

static void obj_mark(void *p, size_t size)
{
	memcpy(p, &size, sizeof(size));
	((uint8_t *)p)[size - 1] = tag(size);
}

static size_t obj_size(void *p)
{
	size_t size;

	memcpy(&size, p, sizeof(size));
	if (((uint8_t *)p)[size - 1] != tag(size))
		report("object %#lx of %lu bytes overwritten", (unsigned long)p, size);
	return size;
}

/* Mostly small objects, some up to 32 KiB, a few large ones. */
static size_t random_size(uint64_t *r)
{
	unsigned k = rnd(r) % 100;

	if (k < 70)
		return 9 + rnd(r) % 512;	/* room for the size and the tag */
	if (k < 96)
		return 520 + rnd(r) % (32768 - 520);
	return 32769 + rnd(r) % (256 << 10);
}

/* Mostly malloc; some calloc, some aligned up to 16 KiB (beyond a page:
 * a large span with aligned pages). */
static void *obj_new(uint64_t *r)
{
	size_t size = random_size(r);
	unsigned k = rnd(r) % 16;
	void *p = k > 1 ? mh_malloc(size) : k ? mh_calloc(1, size)
		  : mh_aligned_alloc((size_t)64 << rnd(r) % 9, size);

	if (!p) {
		report("allocation of %lu bytes failed (%lu)", size, 0);
		return NULL;
	}
	obj_mark(p, size);
	return p;
}

static void obj_free(void *p)
{
	if (p) {
		obj_size(p);
		mh_free(p);
	}
}

static void *obj_realloc(void *p, uint64_t *r)
{
	size_t old = obj_size(p), size = random_size(r);
	void *q = mh_realloc(p, size);

	if (!q) {
		report("realloc to %lu bytes failed (%lu)", size, 0);
		return p;
	}
	/* The header moved with the data. */
	if (memcmp(q, &old, sizeof(old)))
		report("realloc of %lu bytes to %lu lost the data", old, size);
	obj_mark(q, size);
	return q;
}

/* Objects in flight between threads: one goes in, whatever was there
 * comes out and is freed by this thread, usually not its maker. */
static _Atomic(void *) slots[SLOTS];

static void hand_off(void *p, uint64_t *r)
{
	obj_free(atomic_exchange(&slots[rnd(r) % SLOTS], p));
}

static void drain_slots(void)
{
	for (unsigned i = 0; i < SLOTS; i++)
		obj_free(atomic_exchange(&slots[i], NULL));
}

/* ------------------------------------------------------------ threads */

static atomic_int stop;

/*
 * Quiet points: the main thread stops the others between two of their
 * operations and checks the whole heap while their objects, caches and
 * arenas are live, then lets them go on. A thread that has finished is
 * joined instead (its exit gives its cache back inside the allocator).
 */
static atomic_int pause_req, paused;

static void maybe_pause(void)
{
	if (!atomic_load(&pause_req))
		return;
	atomic_fetch_add(&paused, 1);
	while (atomic_load(&pause_req))
		usleep(100);
	atomic_fetch_sub(&paused, 1);
}

struct worker {
	pthread_t tid;
	atomic_int done;
	bool running;		/* started and not joined */
	uint64_t seed;
};

/* Random operations for a while, then exit with objects still out: half
 * freed here, half handed to other threads (the cache goes back with
 * their spans still owned: thread exit's release). */
static void *worker(void *arg)
{
	struct worker *w = arg;
	uint64_t r = w->seed;
	void *live[LIVE_MAX];
	unsigned n = 0;

	for (unsigned op = 0; op < WORKER_OPS && !atomic_load(&stop); op++) {
		maybe_pause();
		unsigned k = rnd(&r) % 16, i = n ? rnd(&r) % n : 0;

		if (k < 7 && n < LIVE_MAX) {
			live[n] = obj_new(&r);
			n += live[n] != NULL;
		} else if (k < 11 && n) {
			obj_free(live[i]);
			live[i] = live[--n];
		} else if (k < 14 && n) {
			hand_off(live[i], &r);
			live[i] = live[--n];
		} else if (k < 15 && n) {
			live[i] = obj_realloc(live[i], &r);
		} else {
			obj_free(atomic_exchange(&slots[rnd(&r) % SLOTS], NULL));
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (i % 2)
			hand_off(live[i], &r);
		else
			obj_free(live[i]);
	}
	atomic_store(&w->done, 1);
	return NULL;
}

static void worker_start(struct worker *w, uint64_t *r)
{
	atomic_store(&w->done, 0);
	w->seed = rnd(r) | 1;
	w->running = !pthread_create(&w->tid, NULL, worker, w);
	if (!w->running)
		report("pthread_create failed (%lu, %lu)", 0, 0);
}

/* Join w if it has finished; whether it has (or never ran). */
static bool worker_reap(struct worker *w)
{
	if (w->running && atomic_load(&w->done)) {
		pthread_join(w->tid, NULL);
		w->running = false;
	}
	return !w->running;
}

/* Arenas of random sizes, some over a chunk (big arenas: full chunks
 * moved warm, the active one reused), some with allocations large enough
 * for a dedicated chunk; now and then the quarantine is emptied. */
static void *arena_churn(void *arg)
{
	uint64_t r = (uintptr_t)arg | 1;

	while (!atomic_load(&stop)) {
		maybe_pause();
		mh_arena *a = mh_arena_new();
		size_t total = rnd(&r) % 4 ? rnd(&r) % (1 << 20) : (9u << 20) + rnd(&r) % (8u << 20);

		if (!a) {	/* reported; the thread stays, for quiet points */
			report("mh_arena_new failed (%lu, %lu)", 0, 0);
			usleep(1000);
			continue;
		}
		for (size_t got = 0; got < total;) {
			maybe_pause();
			size_t size = rnd(&r) % 64 ? 16 + rnd(&r) % 4096 : (3u << 20);
			char *p = rnd(&r) % 2 ? mh_arena_alloc(a, size, 0)
					      : mh_arena_alloc_noscan(a, size, 0);

			if (!p) {
				report("arena allocation of %lu bytes failed (%lu)", size, 0);
				break;
			}
			p[0] = p[size - 1] = 1;
			got += size;
		}
		mh_arena_free(a);
		if (rnd(&r) % 16 == 0)
			mh_quarantine_release();
	}
	return NULL;
}

/* ------------------------------------------------------------ fork */

/* In a child of a busy parent: only this thread survived, holding what
 * the fork handlers gave it. Use the heap a little and check it. */
static void child_check(uint64_t seed)
{
	char msg[512];
	void *p[64];
	mh_arena *a;

	for (unsigned i = 0; i < 64; i++)
		p[i] = obj_new(&seed);
	for (unsigned i = 0; i < 64; i++)
		obj_free(p[i]);
	a = mh_arena_new();
	if (a) {
		mh_arena_alloc(a, 100, 0);
		mh_arena_free(a);
	}
	if (mheap_check(HEAPCHECK_LOCKED, msg, sizeof(msg))) {
		mh_print(STDERR_FILENO, "child %d: %s", (int)getpid(), msg);
		_exit(1);
	}
	_exit(atomic_load(&errors) ? 2 : 0);
}

/* A child that has not finished by then is stuck (say, in a fork handler
 * walking a list its vanished owner was changing): killed, and reported
 * as such rather than left to the harness's timeout. */
#define CHILD_MAX_MS	(UNDER_SANITIZER ? 30000 : 5000)
#define CHILD_HUNG	124

/* How the child ended: 0 well, 1 the check failed (it said why on
 * stderr), 2 an object was overwritten, CHILD_HUNG, 128 + a signal. */
static int fork_and_check(uint64_t seed)
{
	uint64_t give_up = now_ms() + CHILD_MAX_MS;
	int status;
	pid_t pid = fork(), got;

	if (pid < 0)
		return -1;
	if (pid == 0)
		child_check(seed);
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < give_up)
		usleep(1000);
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return CHILD_HUNG;
	}
	if (got != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------ the run */

/* Objects allocated now, by the counters. */
static uint64_t objects_out(void)
{
	struct mh_stats st = MH_STATS_INIT;

	mh_stats_read(&st);
	return st.mallocs - st.frees;
}

/* Stop the other threads (the arena thread and the workers still
 * running; finished ones are joined) and check the heap. */
static int quiet_check(struct worker *w, char *msg, size_t len)
{
	int rc;

	atomic_store(&pause_req, 1);
	for (;;) {
		int want = 1;	/* the arena thread */

		for (unsigned i = 0; i < WORKERS; i++)
			want += !worker_reap(&w[i]);
		if (atomic_load(&paused) == want)
			break;
		usleep(100);
	}
	rc = mheap_check(HEAPCHECK_ALL, msg, len);
	atomic_store(&pause_req, 0);
	return rc;
}

static uint64_t env_or(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v ? strtoull(v, NULL, 0) : def;
}

static void stress(struct __test_metadata *_metadata)
{
	struct worker w[WORKERS];
	pthread_t arena_thread;
	uint64_t r = 0x2545f4914f6cdd1dull, deadline, next_fork, fork_every, next_check;
	unsigned exits = 0, forks = 0, children_failed = 0, checks = 0, checks_failed = 0;
	uint64_t base_objects;
	struct mh_stats base = MH_STATS_INIT, st = MH_STATS_INIT;
	char msg[512];

	mh_free(mh_malloc(1));
	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("before: %s", msg);
	base_objects = objects_out();
	mh_stats_read(&base);

	atomic_store(&stop, 0);
	for (unsigned i = 0; i < WORKERS; i++)
		worker_start(&w[i], &r);
	ASSERT_EQ(0, pthread_create(&arena_thread, NULL, arena_churn, (void *)(uintptr_t)rnd(&r)));
	deadline = now_ms() + env_or("MHEAP_STRESS_MS", RUN_MS);
	fork_every = env_or("MHEAP_STRESS_FORK_MS", FORK_EVERY_MS);
	next_fork = now_ms() + fork_every;
	next_check = now_ms() + CHECK_EVERY_MS;
	while (now_ms() < deadline) {
		if (now_ms() >= next_check) {
			checks++;
			if (quiet_check(w, msg, sizeof(msg)) && !checks_failed++)
				TH_LOG("quiet point %u: %s", checks, msg);
			next_check = now_ms() + CHECK_EVERY_MS;
		}
		for (unsigned i = 0; i < WORKERS; i++) {
			if (worker_reap(&w[i])) {
				worker_start(&w[i], &r);
				exits++;
			}
		}
		if (now_ms() >= next_fork) {
			int rc = fork_and_check(rnd(&r));

			forks++;
			if (rc)
				children_failed++;
			if (rc && children_failed == 1)
				TH_LOG("fork %u: child %s %d", forks,
				       rc == CHILD_HUNG ? "hung, killed after ms:" : "exited with",
				       rc == CHILD_HUNG ? CHILD_MAX_MS : rc);
			mh_scavenge();
			next_fork = now_ms() + fork_every;
		}
		usleep(1000);
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < WORKERS; i++)
		if (w[i].running)
			pthread_join(w[i].tid, NULL);
	pthread_join(arena_thread, NULL);
	drain_slots();
	TH_LOG("%u thread exits, %u forks, %u quiet points", exits, forks, checks);

	ASSERT_EQ(0, atomic_load(&errors)) TH_LOG("%s", first_error);
	EXPECT_EQ(0, children_failed);
	EXPECT_EQ(0, checks_failed);
	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("after: %s", msg);
	EXPECT_EQ(base_objects, objects_out());
	mh_stats_read(&st);
	EXPECT_EQ(base.heap_alloc, st.heap_alloc);
	EXPECT_EQ(base.arenas_live, st.arenas_live);
	EXPECT_EQ(base.arena_chunks_live, st.arena_chunks_live);
	/* Everything given back: still consistent, nothing left cached. */
	mh_quarantine_release();
	mh_scavenge();
	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("after release: %s", msg);
}

TEST(frees_forks_exits_and_arenas_keep_the_heap_consistent)
{
	stress(_metadata);
}

/* The same with the mprotect backend (chunks faulted by protection,
 * moved before), where the host has it. Each test runs in a process of
 * its own, so the choice stays here. */
TEST(the_same_with_the_mprotect_backend)
{
	if (!fault_backend_select("mprotect"))
		SKIP(return, "mprotect backend unavailable");
	stress(_metadata);
}

/* ------------------------------------------------------------ the checker fails */

/* The span holding p, which must be in the heap. */
static struct mspan *span_at(void *p)
{
	return span_of((uintptr_t)p);
}

static bool check_fails_with(struct __test_metadata *_metadata, const char *what)
{
	char msg[512];
	int rc = mheap_check(HEAPCHECK_ALL, msg, sizeof(msg));

	TH_LOG("%s: %s", what, rc ? msg : "not noticed");
	return rc != 0;
}

TEST(the_checker_notices_corruption)
{
	char msg[512];
	void *small = mh_malloc(100), *large = mh_malloc(1 << 20);
	struct mspan *s = span_at(small), *l = span_at(large);
	struct mcache *c = mh_tls_cache;
	struct heap_arena *ha;
	uintptr_t page;
	unsigned idx = mspan_obj_index(s, (uintptr_t)small);

	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);

	/* A remote free's bit without its count. */
	s->bits[idx / 64].remote ^= (uint64_t)1 << (idx % 64);
	EXPECT_TRUE(check_fails_with(_metadata, "remote bit"));
	s->bits[idx / 64].remote ^= (uint64_t)1 << (idx % 64);

	/* An object freed both ways. */
	s->bits[idx / 64].local ^= (uint64_t)1 << (idx % 64);
	s->bits[idx / 64].remote ^= (uint64_t)1 << (idx % 64);
	EXPECT_TRUE(check_fails_with(_metadata, "freed twice"));
	s->bits[idx / 64].local ^= (uint64_t)1 << (idx % 64);
	s->bits[idx / 64].remote ^= (uint64_t)1 << (idx % 64);

	/* A free the counters missed. */
	c->nfree[s->sizeclass]++;
	EXPECT_TRUE(check_fails_with(_metadata, "counter"));
	c->nfree[s->sizeclass]--;

	/* A byte counter off. */
	mh_heap.large_live_bytes += MH_PAGE_SIZE;
	EXPECT_TRUE(check_fails_with(_metadata, "large bytes"));
	mh_heap.large_live_bytes -= MH_PAGE_SIZE;

	/* A free page mapped to the large span too. */
	ha = arena_of(l->base);
	for (page = 0; page < MH_PAGES_PER_ARENA; page++)
		if (!(ha->alloc[page / 64] >> (page % 64) & 1))
			break;
	ASSERT_LT(page, MH_PAGES_PER_ARENA);
	ha->spans[page] = l;
	EXPECT_TRUE(check_fails_with(_metadata, "free page mapped"));
	ha->spans[page] = NULL;

	/* A free page counted as in use. */
	pa_free_pages--;
	EXPECT_TRUE(check_fails_with(_metadata, "free pages"));
	pa_free_pages++;

	/* The span cut loose from its owner. */
	s->owner = NULL;
	EXPECT_TRUE(check_fails_with(_metadata, "owner"));
	s->owner = c;

	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("restored: %s", msg);
	mh_free(small);
	mh_free(large);
	ASSERT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("freed: %s", msg);
}

TEST_HARNESS_MAIN
