// SPDX-License-Identifier: GPL-2.0
/*
 * Quarantine that ends only when no pointer into a chunk is found
 * (MHEAP_QUARANTINE_SCAN=1, userlib/arena_scan.c), per fault backend and
 * per kind of root (roots.h): a stale pointer into a freed arena keeps its
 * chunk quarantined through any amount of budget pressure, an access
 * through it is still reported, and the next scan after it is overwritten
 * releases the chunk. Then the hard cap, the statistics, the FIFO with the
 * scan off, and that a released chunk never goes to malloc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "heapcheck.h"
#include "roots.h"
#include "testhooks.h"

/*
 * Tests that need a chunk released: ThreadSanitizer's event traces (its
 * own memory, indistinguishable from the program's) keep the addresses the
 * program accessed, so its chunks stay referenced there.
 */
#ifdef __SANITIZE_THREAD__
#define SKIP_IF_TRACED() \
	SKIP(return, "ThreadSanitizer's traces hold the addresses accessed: they keep chunks")
#else
#define SKIP_IF_TRACED() do { } while (0)
#endif

/* Freed arenas that push the quarantine over its budget of one chunk. */
#define PRESSURE 24

/* The state of the chunk holding enc ^ KEY (enum chunk_state), 0 if none. */
static int __attribute__((noinline)) chunk_state(uintptr_t enc)
{
	struct mspan *s = span_of(enc ^ KEY);
	const struct arena_chunk *c;

	if (!s || s->state != MSPAN_CHUNK || !(c = s->chunk_data))
		return 0;
	return c->state;
}

/* When the chunk holding enc ^ KEY was last quarantined; 0 if none. */
static uint64_t __attribute__((noinline)) chunk_freed_ns(uintptr_t enc)
{
	struct mspan *s = span_of(enc ^ KEY);
	const struct arena_chunk *c;

	if (!s || s->state != MSPAN_CHUNK || !(c = s->chunk_data))
		return 0;
	return c->freed_ns;
}

/* An arena with one object, freed after a pointer to the object went into
 * root kind; returns the pointer XORed. */
static uintptr_t __attribute__((noinline)) freed_with_pointer(struct roots *r, enum root_kind kind,
							      bool *ok)
{
	mh_arena *a = mh_arena_new();
	char *p = mh_arena_alloc(a, 100, 0);
	uintptr_t enc = (uintptr_t)(p + 40) ^ KEY;

	p[40] = 7;
	*ok = root_set(r, kind, enc);
	mh_arena_free(a);
	return enc;
}

/* Budget pressure: arenas freed, nothing pointing into them. */
static void __attribute__((noinline)) pressure(int n)
{
	for (int i = 0; i < n; i++) {
		mh_arena *a = mh_arena_new();

		*(volatile char *)mh_arena_alloc(a, 64, 0) = 1;
		mh_arena_free(a);
	}
}

static void touch(void *arg)
{
	*(volatile char *)((uintptr_t)arg ^ KEY) = 1;
}

/* Writing through the stale pointer kills the child with the report. */
static void expect_report(struct __test_metadata *_metadata, uintptr_t enc)
{
	struct child_result res;
	char want[96];

	run_child(touch, (void *)enc, &res);
	EXPECT_TRUE(died_of(&res, SIGSEGV)) TH_LOG("status %#x: %s", res.status, res.err);
	snprintf(want, sizeof(want), "mheap: use-after-free: write to %#lx in freed arena",
		 (unsigned long)(enc ^ KEY));
	EXPECT_NE(NULL, strstr(res.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, res.err);
}

FIXTURE(held)
{
	struct arena_config cfg;
	struct roots roots;
};

FIXTURE_VARIANT(held)
{
	enum root_kind kind;
	const char *backend;
};

ROOT_VARIANTS(held, .backend = "mprotect");
/* The same roots with the other backends, named apart. */
FIXTURE_VARIANT_ADD(held, guard_global) { .kind = ROOT_GLOBAL, .backend = "guard" };
FIXTURE_VARIANT_ADD(held, guard_other_thread_stack) { .kind = ROOT_THREAD_STACK, .backend = "guard" };
FIXTURE_VARIANT_ADD(held, guard_heap_object) { .kind = ROOT_HEAP_OBJECT, .backend = "guard" };
FIXTURE_VARIANT_ADD(held, guard_another_live_arena) { .kind = ROOT_ARENA, .backend = "guard" };
FIXTURE_VARIANT_ADD(held, kmod_global) { .kind = ROOT_GLOBAL, .backend = "kmod" };
FIXTURE_VARIANT_ADD(held, kmod_another_live_arena) { .kind = ROOT_ARENA, .backend = "kmod" };

FIXTURE_SETUP(held)
{
	const char *why = root_unsupported(variant->kind);

	if (why)
		SKIP(return, "%s", why);
	if (!fault_backend_select(variant->backend))
		SKIP(return, "%s backend does not work here", variant->backend);
	arena_config_get(&self->cfg);
	self->cfg.scan = true;
	self->cfg.reuse = false;	/* every chunk of a freed arena faults */
	self->cfg.quarantine_max = self->cfg.chunk_bytes;
	self->cfg.scan_share = 100;	/* every crossing of the budget scans */
	arena_configure(&self->cfg);
	ASSERT_TRUE(roots_init(&self->roots));
}

FIXTURE_TEARDOWN(held)
{
	roots_fini(&self->roots);
}

TEST_F(held, keeps_its_chunk_quarantined_through_budget_pressure)
{
	struct mh_stats st = MH_STATS_INIT;
	uintptr_t enc;
	bool ok = false;
	RETURN_IF_SETUP_SKIPPED();

	enc = freed_with_pointer(&self->roots, variant->kind, &ok);
	ASSERT_TRUE(ok);
	pressure(PRESSURE);
	EXPECT_EQ(CHUNK_QUARANTINED, chunk_state(enc));
	mh_stats_read(&st);
	/* The others left: nothing pointed into them. */
	EXPECT_GE(st.arena_releases_scan, PRESSURE - 2);
	EXPECT_GE(st.arena_chunks_kept, 1);
	EXPECT_EQ(0, st.arena_releases_budget);
	EXPECT_EQ(0, st.arena_releases_referenced);
}

TEST_F(held, an_access_through_the_pointer_is_still_reported)
{
	uintptr_t enc;
	bool ok = false;
	RETURN_IF_SETUP_SKIPPED();

	enc = freed_with_pointer(&self->roots, variant->kind, &ok);
	ASSERT_TRUE(ok);
	pressure(PRESSURE);
	mh_quarantine_release();
	expect_report(_metadata, enc);
}

TEST_F(held, once_overwritten_the_next_scan_releases_the_chunk)
{
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	uintptr_t enc;
	bool ok = false;
	RETURN_IF_SETUP_SKIPPED();

	SKIP_IF_TRACED();
	enc = freed_with_pointer(&self->roots, variant->kind, &ok);
	ASSERT_TRUE(ok);
	mh_quarantine_release();
	ASSERT_EQ(CHUNK_QUARANTINED, chunk_state(enc));
	ASSERT_TRUE(root_clear(&self->roots, variant->kind));
	mh_stats_read(&before);
	mh_quarantine_release();
	mh_stats_read(&after);
	EXPECT_EQ(CHUNK_READY, chunk_state(enc));
	EXPECT_EQ(before.arena_releases_scan + 1, after.arena_releases_scan);
	EXPECT_EQ(before.quarantine_scans + 1, after.quarantine_scans);
}

/* ------------------------------------------------------------ the rest */

FIXTURE(policy)
{
	struct arena_config cfg;
};

FIXTURE_VARIANT(policy)
{
	const char *backend;
};

FIXTURE_VARIANT_ADD(policy, mprotect) { .backend = "mprotect" };
FIXTURE_VARIANT_ADD(policy, guard) { .backend = "guard" };
FIXTURE_VARIANT_ADD(policy, kmod) { .backend = "kmod" };

FIXTURE_SETUP(policy)
{
	if (!fault_backend_select(variant->backend))
		SKIP(return, "%s backend does not work here", variant->backend);
	arena_config_get(&self->cfg);
	self->cfg.scan = true;
	self->cfg.reuse = false;
	self->cfg.quarantine_max = self->cfg.chunk_bytes;
	self->cfg.scan_share = 100;	/* every crossing of the budget scans */
	arena_configure(&self->cfg);
}

FIXTURE_TEARDOWN(policy)
{
}

static void *volatile held_ptrs[8];

static void __attribute__((noinline)) hold_freed(int n)
{
	for (int i = 0; i < n; i++) {
		mh_arena *a = mh_arena_new();

		held_ptrs[i] = mh_arena_alloc(a, 64, 0);
		mh_arena_free(a);
	}
}

static void cap_child(void *arg)
{
	struct arena_config *cfg = arg;
	struct mh_stats st = MH_STATS_INIT;

	cfg->quarantine_cap = 3 * cfg->chunk_bytes;
	arena_configure(cfg);
	hold_freed(8);
	mh_stats_read(&st);
	_exit(st.arena_releases_referenced == 5 && st.arena_chunks_quarantined == 3 ? 0 : 1);
}

TEST_F(policy, past_the_cap_the_oldest_referenced_chunks_go_counted_and_warned)
{
	struct child_result r;
	RETURN_IF_SETUP_SKIPPED();

	run_child(cap_child, &self->cfg, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: quarantine over its cap of 24 MiB: released 1 chunk "
				     "that may still be pointed into (MHEAP_QUARANTINE_CAP)"))
		TH_LOG("%s", r.err);
}

/* Budget pressure with scans limited to share percent of the time; the
 * statistics after it. */
static void pressure_with_share(struct arena_config *cfg, unsigned share, struct mh_stats *st)
{
	cfg->scan_share = share;
	arena_configure(cfg);
	pressure(PRESSURE);
	mh_stats_read(st);
}

/*
 * Out of address space (RLIMIT_AS), an arena that needs a chunk gets one
 * from quarantine: the chunks a scan finds nobody points into, not the
 * oldest whatever points into it. Here the oldest is held by a global, the
 * budget too large to scan, and arenas are freed until the system refuses
 * a chunk: the held chunk must still be quarantined.
 */
static void out_of_address_space_child(void *arg)
{
	struct arena_config *cfg = arg;
	struct mh_stats st = MH_STATS_INIT;
	struct rlimit rl;
	uint64_t freed;
	int i;

	cfg->quarantine_max = (size_t)1 << 40;
	cfg->quarantine_cap = (size_t)1 << 41;
	arena_configure(cfg);
	mh_free(mh_malloc(100));
	hold_freed(1);
	freed = chunk_freed_ns((uintptr_t)held_ptrs[0] ^ KEY);
	rl.rlim_cur = rl.rlim_max = vm_bytes() + ((size_t)200 << 20);
	if (setrlimit(RLIMIT_AS, &rl))
		_exit(2);
	for (i = 0; i < 1000; i++) {
		pressure(1);
		mh_stats_read(&st);
		if (st.arena_releases_enomem || st.arena_releases_scan)
			break;
	}
	if (i == 1000)
		_exit(3);
	/* Some more, each arena taking what the scans give back. */
	pressure(50);
	/* Still the same quarantined chunk: never handed to an arena since
	 * (one freed again would be quarantined again, a new life). */
	_exit(chunk_state((uintptr_t)held_ptrs[0] ^ KEY) == CHUNK_QUARANTINED &&
	      chunk_freed_ns((uintptr_t)held_ptrs[0] ^ KEY) == freed ? 0 : 4);
}

TEST_F(policy, out_of_address_space_an_arena_never_takes_a_chunk_pointed_into)
{
	struct child_result r;
	RETURN_IF_SETUP_SKIPPED();

	SKIP_IF_TRACED();
	if (UNDER_SANITIZER)
		SKIP(return, "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot apply");
	run_child(out_of_address_space_child, &self->cfg, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
}

/*
 * A chunk found unreferenced leaves quarantine (RELEASING) and is opened a
 * moment later; an access in between, through a pointer the scan could not
 * see, still faults, and must be reported as the use-after-free it is. The
 * test hook runs in that moment (testhooks.h), in the releasing thread.
 */
static uintptr_t release_enc;

static void touch_while_released(uintptr_t base)
{
	(void)base;
	*(volatile char *)(release_enc ^ KEY) = 1;
}

/* An arena freed, the address of its object kept XORed only. */
static uintptr_t __attribute__((noinline)) freed_unreferenced(void)
{
	mh_arena *a = mh_arena_new();
	uintptr_t enc = (uintptr_t)mh_arena_alloc(a, 100, 0) ^ KEY;

	mh_arena_free(a);
	return enc;
}

static void release_window_child(void *arg)
{
	(void)arg;
	/* Not the heap's first chunk: start-up code's stack leftovers hold
	 * its base, the heap's first address. */
	if (!mh_arena_alloc(mh_arena_new(), 64, 0))
		_exit(2);
	release_enc = freed_unreferenced() + 40;
	__atomic_store_n(&mh_test_release_window, touch_while_released, __ATOMIC_RELEASE);
	mh_quarantine_release();
	_exit(1);	/* not released, or the write went through */
}

TEST_F(policy, an_access_while_a_chunk_leaves_quarantine_is_reported)
{
	struct child_result r;
	RETURN_IF_SETUP_SKIPPED();

	SKIP_IF_TRACED();
	run_child(release_window_child, NULL, &r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: use-after-free: write to 0x")) TH_LOG("%s", r.err);
}

/*
 * When the system refuses to fault a chunk (out of VMAs), the quarantine
 * makes room: a scan releases what nobody points into, then the oldest go,
 * a batch at a time, and the fault is tried again. What one scan found
 * referenced is still referenced at the next try: one scan is enough for a
 * free, not one per batch of the oldest. Here mprotect refuses every
 * PROT_NONE of a chunk, and 20 quarantined chunks are pointed into.
 */
static _Atomic size_t refuse_protect_from;	/* 0: mprotect as the kernel's */

int mprotect(void *addr, size_t len, int prot)
{
	size_t min = atomic_load(&refuse_protect_from);

	if (min && prot == PROT_NONE && len >= min) {
		errno = ENOMEM;
		return -1;
	}
	return (int)syscall(SYS_mprotect, addr, len, prot);
}

#define REFUSED_HELD 20
static void *volatile refused_held[REFUSED_HELD];

static void refused_fault_child(void *arg)
{
	struct arena_config *cfg = arg;
	struct mh_stats before = MH_STATS_INIT, after = MH_STATS_INIT;
	mh_arena *a;

	cfg->quarantine_max = (size_t)1 << 40;	/* no budget scan */
	cfg->quarantine_cap = (size_t)1 << 41;
	arena_configure(cfg);
	for (int i = 0; i < REFUSED_HELD; i++) {
		a = mh_arena_new();
		refused_held[i] = mh_arena_alloc(a, 64, 0);
		mh_arena_free(a);
	}
	a = mh_arena_new();
	if (!mh_arena_alloc(a, 64, 0))
		_exit(2);
	mh_stats_read(&before);
	if (before.arena_chunks_quarantined != REFUSED_HELD)
		_exit(2);
	atomic_store(&refuse_protect_from, cfg->chunk_bytes);
	mh_arena_free(a);
	atomic_store(&refuse_protect_from, 0);
	mh_stats_read(&after);
	/* The oldest went (the refusal lasts); one scan looked first. */
	if (after.arena_chunks_quarantined != 0)
		_exit(3);
	_exit(after.quarantine_scans - before.quarantine_scans == 1 ? 0 : 4);
}

TEST_F(policy, a_refused_fault_scans_once_not_once_a_batch)
{
	struct child_result r;
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect") && strcmp(variant->backend, "guard"))
		SKIP(return, "only mprotect and guard protect whole chunks with mprotect");
	run_child(refused_fault_child, &self->cfg, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
}

/* Scans limited to no share of the time (MHEAP_QUARANTINE_SCAN_SHARE=0):
 * past the budget the quarantine grows, nothing released, up to the cap. */
TEST_F(policy, without_a_share_of_time_no_scan_runs_below_the_cap)
{
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();

	pressure_with_share(&self->cfg, 0, &st);
	EXPECT_EQ(0, st.quarantine_scans);
	EXPECT_EQ(PRESSURE, st.arena_chunks_quarantined);
	EXPECT_EQ(0, st.arena_releases_scan + st.arena_releases_budget + st.arena_releases_referenced);
}

/* Over the cap a scan runs whatever the time rule says, so the cap
 * releases only what a scan could not. */
TEST_F(policy, over_the_cap_a_scan_runs_before_the_cap_releases)
{
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();
	SKIP_IF_TRACED();

	self->cfg.quarantine_cap = 4 * self->cfg.chunk_bytes;
	pressure_with_share(&self->cfg, 0, &st);
	EXPECT_GE(st.quarantine_scans, 1);
	EXPECT_GE(st.arena_releases_scan, PRESSURE - 4);
	EXPECT_EQ(0, st.arena_releases_referenced);
	EXPECT_LE(st.arena_chunks_quarantined, 4);
}

/* MHEAP_QUARANTINE_SCAN_SHARE=1: after a scan of d the next waits 99 d,
 * far longer than the frees that follow take (a scan reads the whole
 * process; a free faults one chunk), so the budget's first crossing scans
 * and the rest wait, quarantined. */
TEST_F(policy, past_the_budget_a_scan_waits_while_scans_would_exceed_their_share)
{
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();

	pressure_with_share(&self->cfg, 1, &st);
	EXPECT_EQ(1, st.quarantine_scans);
	EXPECT_EQ(0, st.arena_releases_referenced);
	EXPECT_GE(st.arena_chunks_quarantined, PRESSURE - 2);
}

TEST_F(policy, with_the_scan_off_quarantine_is_the_fifo)
{
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();

	self->cfg.scan = false;
	arena_configure(&self->cfg);
	hold_freed(8);
	mh_stats_read(&st);
	EXPECT_EQ(7, st.arena_releases_budget);
	EXPECT_EQ(0, st.quarantine_scans);
	EXPECT_EQ(1, st.arena_chunks_quarantined);
	memset((void *)held_ptrs, 0, sizeof(held_ptrs));
}

/* A freed arena's chunk, its base XORed. */
static uintptr_t __attribute__((noinline)) freed_chunk(size_t chunk_bytes)
{
	mh_arena *a = mh_arena_new();
	uintptr_t p = (uintptr_t)mh_arena_alloc(a, 64, 0);

	mh_arena_free(a);
	return ALIGN_DOWN(p, chunk_bytes) ^ KEY;
}

/* A chunk out of quarantine stays with arenas: malloc never gets it, even
 * when the heap must grow, and the next arena does. */
TEST_F(policy, a_released_chunk_is_never_reused_by_malloc)
{
	enum { N = 4096 };
	static void *objs[N];
	uintptr_t enc, lo, hi;
	size_t inside = 0;
	mh_arena *first;
	RETURN_IF_SETUP_SKIPPED();
	SKIP_IF_TRACED();

	/* Not the heap's first chunk: its base is the heap's first address,
	 * which start-up code leaves in stack slots a scan finds (a word that
	 * looks like a pointer keeps its chunk). */
	first = mh_arena_new();
	ASSERT_NE(NULL, mh_arena_alloc(first, 64, 0));
	enc = freed_chunk(self->cfg.chunk_bytes);
	mh_quarantine_release();
	lo = enc ^ KEY;
	hi = lo + self->cfg.chunk_bytes;
	ASSERT_EQ(CHUNK_READY, chunk_state(enc));
	for (int i = 0; i < N; i++) {
		uintptr_t p = (uintptr_t)(objs[i] = mh_malloc(i % 2 ? 64 : 40000));

		ASSERT_NE(0, p);
		inside += p >= lo && p < hi;
	}
	EXPECT_EQ(0, inside);
	EXPECT_EQ(CHUNK_READY, chunk_state(enc));
	for (int i = 0; i < N; i++)
		mh_free(objs[i]);
	mh_arena_free(first);
}

TEST_F(policy, statistics_count_scans_bytes_and_time)
{
	struct mh_stats st = MH_STATS_INIT;
	RETURN_IF_SETUP_SKIPPED();
	SKIP_IF_TRACED();

	pressure(4);
	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_GE(st.quarantine_scans, 2);
	EXPECT_EQ(0, st.quarantine_scans_incomplete);
	EXPECT_GT(st.quarantine_scan_bytes, 0);
	EXPECT_GT(st.quarantine_scan_ns, 0);
	EXPECT_GT(st.quarantine_scan_max_pause_ns, 0);
	EXPECT_LE(st.quarantine_scan_max_pause_ns, st.quarantine_scan_ns);
	EXPECT_GT(st.arena_releases_scan, 0);
	/* A stale word left on a stack may keep a chunk (the scan is
	 * conservative): whatever is still quarantined was kept by one. */
	EXPECT_LE(st.arena_chunks_quarantined, st.arena_chunks_kept);
}

/* Threads that free arenas (each free over the budget scans), malloc and
 * free, and fork, all at once: every scan completes, every child can use
 * arenas and scan, and the heap is consistent afterwards. */
struct storm {
	int forks;
	_Atomic int failed_children;
};

static void *storm_thread(void *arg)
{
	struct storm *st = arg;

	for (int i = 0; i < 60; i++) {
		mh_arena *a = mh_arena_new();
		void *m = mh_malloc(100 + i);

		*(volatile char *)mh_arena_alloc(a, 64 + i, 0) = 1;
		mh_arena_free(a);
		mh_free(m);
		if (st->forks && i % 15 == 0) {
			pid_t pid = fork();

			if (pid == 0) {
				pressure(3);
				mh_quarantine_release();
				_exit(0);
			}
			if (pid < 0 || wait_child_ms(pid, 20000) != 0)
				atomic_fetch_add(&st->failed_children, 1);
		}
	}
	return NULL;
}

TEST_F_TIMEOUT(policy, threads_freeing_arenas_scan_and_fork_concurrently, 180)
{
	struct storm plain = { 0 }, forking = { .forks = 1 };
	struct mh_stats st = MH_STATS_INIT;
	pthread_t th[3];
	char msg[256];
	RETURN_IF_SETUP_SKIPPED();

	ASSERT_EQ(0, pthread_create(&th[0], NULL, storm_thread, &plain));
	ASSERT_EQ(0, pthread_create(&th[1], NULL, storm_thread, &plain));
	ASSERT_EQ(0, pthread_create(&th[2], NULL, storm_thread, &forking));
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	EXPECT_EQ(0, atomic_load(&forking.failed_children));
	mh_stats_read(&st);
	EXPECT_GE(st.quarantine_scans, 10);
	EXPECT_EQ(0, st.quarantine_scans_incomplete);
	EXPECT_EQ(0, mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) TH_LOG("%s", msg);
}

TEST_HARNESS_MAIN
