// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas, once per fault backend that works on this machine: bump
 * allocation, bulk free, faulting and the use-after-free report, huge pages
 * for big arenas and small pages for small ones, quarantine and its budget,
 * the VMA limit, and arenas used from many threads. Quarantine here is the
 * FIFO (MHEAP_QUARANTINE_SCAN=0): these tests keep stale pointers on their
 * stacks on purpose; the scan's policy is quarantine_scan_test.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "sysmem.h"

FIXTURE(arena)
{
	struct arena_config cfg;
};

FIXTURE_VARIANT(arena)
{
	const char *backend;
};

FIXTURE_VARIANT_ADD(arena, mprotect) { .backend = "mprotect" };
FIXTURE_VARIANT_ADD(arena, guard) { .backend = "guard" };
FIXTURE_VARIANT_ADD(arena, kmod) { .backend = "kmod" };
FIXTURE_VARIANT_ADD(arena, none) { .backend = "none" };

FIXTURE_SETUP(arena)
{
	if (!fault_backend_select(variant->backend)) {
		if (!strcmp(variant->backend, "kmod"))
			SKIP(return, "kmod backend unavailable: needs /dev/mheap with fault commands");
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	}
	arena_config_get(&self->cfg);
	self->cfg.scan = false;
	arena_configure(&self->cfg);
}

FIXTURE_TEARDOWN(arena)
{
}

static bool faults(const FIXTURE_VARIANT(arena) *variant)
{
	return strcmp(variant->backend, "none") != 0;
}

/* Allocate `bytes` of arena a in 64 KiB pieces, each filled with `fill`. */
static void fill_arena(mh_arena *a, size_t bytes, int fill)
{
	for (size_t n = 0; n < bytes; n += 65536)
		memset(mh_arena_alloc(a, 65536, 0), fill, 65536);
}

/* Pages of [lo, hi) resident, by mincore (both page aligned). */
static size_t resident_pages(uintptr_t lo, uintptr_t hi)
{
	unsigned char vec[4096];
	size_t n = 0;

	for (; lo < hi; lo += sizeof(vec) * 4096) {
		size_t len = hi - lo < sizeof(vec) * 4096 ? hi - lo : sizeof(vec) * 4096;

		if (mincore((void *)lo, len, vec))
			return SIZE_MAX;
		for (size_t i = 0; i < len / 4096; i++)
			n += vec[i] & 1;
	}
	return n;
}

/* Page faults this process has taken so far. */
static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Run fn(arg) in a child, which must exit with status 0. */
static void expect_child_ok(struct __test_metadata *_metadata, void (*fn)(void *), void *arg)
{
	struct child_result r;

	run_child(fn, arg, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
}

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

/* ------------------------------------------------------------ faulting */

static char *stale;
static bool stale_write;

static void touch_stale(void *arg)
{
	(void)arg;
	if (stale_write)
		*stale = 1;
	else
		*(volatile char *)stale;
}

/* Touch stale in a child; it must die of SIGSEGV with the report. */
static void expect_uaf(struct __test_metadata *_metadata, char *p, bool write)
{
	struct child_result r;
	char want[64];

	stale = p;
	stale_write = write;
	run_child(touch_stale, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("child status %#x, stderr: %s", r.status, r.err);
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 write ? "write to" : "read of", (unsigned long)(uintptr_t)p);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	EXPECT_NE(NULL, strstr(r.err, " ms ago ("));
}

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

/* The chunk holding p, which must be arena memory. */
static struct arena_chunk *chunk_at(const void *p)
{
	return span_of((uintptr_t)p)->chunk_data;
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

/* ------------------------------------------------------------ huge pages */

/* Huge page size when this backend's chunks take huge pages, else 0. */
static size_t arena_thp(const FIXTURE_VARIANT(arena) *variant)
{
	(void)variant;
	return sys_thp_size();
}

/* Whether the kernel's THPeligible says what a chunk's advice is: for
 * anonymous chunks, not for kmod's device mappings (the module maps its
 * own 2 MiB pages, and the kernel never counts them eligible). */
static bool thp_by_vma(const FIXTURE_VARIANT(arena) *variant)
{
	return strcmp(variant->backend, "kmod") != 0;
}


/* The THPeligible field of the VMA holding p (/proc/self/smaps): 1 when the
 * kernel would map huge pages there, 0 when not, -1 when unknown. */
static int thp_eligible(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)p, lo, hi;
	char line[512];
	bool in = false;
	int v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && sscanf(line, "THPeligible: %d", &v) == 1)
			break;
	}
	fclose(f);
	return v;
}

TEST_F(arena, small_arenas_stay_in_small_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 32 };
	mh_arena *a[N];
	size_t before, grew;

	/* Warm up: the arena code paths and the first heap arena. */
	mh_arena_free(mh_arena_new());
	for (int i = 0; i < N; i++)
		a[i] = mh_arena_new();
	before = rss_bytes();
	for (int i = 0; i < N; i++) {
		char *p = mh_arena_alloc(a[i], 100, 0);
		char *q = mh_arena_alloc_noscan(a[i], 100, 0);

		ASSERT_NE(NULL, p);
		ASSERT_NE(NULL, q);
		memset(p, 1, 100);
		memset(q, 2, 100);
		/* With huge pages, both ends of a small arena share its
		 * small-page window, and that is not THP-eligible. */
		if (arena_thp(variant))
			EXPECT_LT(q - p, 1 << 20);
		if (i == 0 && arena_thp(variant) && thp_by_vma(variant))
			EXPECT_EQ(0, thp_eligible(p));
		/* The two pages written, not a huge page (which RSS does not
		 * show for kmod's chunks, but mincore does). */
		EXPECT_EQ(2, resident_pages(ALIGN_DOWN((uintptr_t)p, 4096),
					    ALIGN_DOWN((uintptr_t)q, 4096) + 4096));
	}
	grew = rss_bytes() - before;
	/* A few pages each; a huge page each would be 64 MiB and more. */
	EXPECT_LT(grew, (size_t)4 << 20) TH_LOG("RSS grew by %zu KiB", grew >> 10);
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
}

/* Why chunks of this backend cannot have a huge tail here, or NULL. */
static const char *no_huge_tail(const FIXTURE_VARIANT(arena) *variant,
				const struct arena_config *cfg)
{
	size_t h = arena_thp(variant);

	if (!h)
		return "no transparent huge pages here";
	if (cfg->chunk_bytes < 2 * h)
		return "smaller than two huge pages";
	return NULL;
}

/* A new arena's first allocation (*first, 64 bytes) and, after 4 KiB ones
 * that use up its small-page window, the first one past it. */
static char *alloc_past_window(mh_arena *a, const struct arena_config *cfg, char **first)
{
	char *next = NULL;

	*first = mh_arena_alloc(a, 64, 0);
	for (size_t n = 64; n <= cfg->thp_after; n += 4096)
		next = mh_arena_alloc(a, 4096, 0);
	return next;
}

TEST_F(arena, big_arenas_take_huge_pages_and_give_them_back_to_the_heap)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant);
	mh_arena *a;
	char *first, *second;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	cfg.reuse = false;
	cfg.ready_max = 0;	/* released chunks go back to the page heap */
	arena_configure(&cfg);
	a = mh_arena_new();
	second = alloc_past_window(a, &cfg, &first);
	ASSERT_EQ(0, (uintptr_t)first % h);
	/* Past the small-page window, the next huge page. */
	EXPECT_EQ(first + h, second);
	if (thp_by_vma(variant)) {
		EXPECT_EQ(0, thp_eligible(first));
		EXPECT_EQ(1, thp_eligible(second));
	}
	memset(second, 7, 4096);
	mh_arena_free(a);
	/* Faulted everywhere: the used window, its unused rest, the huge
	 * pages used and not. */
	if (faults(variant)) {
		expect_uaf(_metadata, first, false);
		expect_uaf(_metadata, first + cfg.thp_after + 4096, true);
		expect_uaf(_metadata, second, false);
		expect_uaf(_metadata, second + h, true);
		expect_uaf(_metadata, first + cfg.chunk_bytes - 1, false);
	}
	mh_quarantine_release();
	/* Back in the page heap, for small spans: no huge pages there unless
	 * the whole heap has them (THP "always"). */
	EXPECT_EQ(sys_thp_default() ? 1 : 0, thp_eligible(second));
}

/* A small arena that outgrows its window: its first huge page stays in
 * small pages, even where the window is written only after the move (kmod
 * advises the whole chunk then), and the next one is one huge page. */
TEST_F(arena, a_growing_arena_keeps_its_window_small_and_takes_the_next_huge_page)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant);
	mh_arena *a;
	char *first, *second;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	if (!cfg.thp_after)
		SKIP(return, "no small-page window in chunks here");
	a = mh_arena_new();
	second = alloc_past_window(a, &cfg, &first);
	ASSERT_EQ(first + h, second);
	memset(second, 7, 64);
	memset(first, 1, 64);
	EXPECT_EQ(1, resident_pages((uintptr_t)first, (uintptr_t)first + h));
	EXPECT_EQ(h / 4096, resident_pages((uintptr_t)second, (uintptr_t)second + h));
	mh_arena_free(a);
}

/* An arena that has filled a chunk is big: its next chunk is in huge
 * pages from the start, so one write per huge page makes all of it
 * resident. */
TEST_F(arena, a_big_arenas_next_chunk_is_in_huge_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant), cb = cfg.chunk_bytes;
	struct arena_chunk *first, *c;
	mh_arena *a;
	char *p;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	first = chunk_at(mh_arena_alloc(a, 64, 0));
	do
		p = mh_arena_alloc(a, 65536, 0);
	while (chunk_at(p) == first);
	c = chunk_at(p);
	ASSERT_EQ((char *)c->base, p);
	ASSERT_EQ(cb, c->limit - c->base);
	/* All of it, allocated, then one byte written per huge page. */
	for (char *q = p + 65536; q < (char *)c->limit; q += 4096)
		ASSERT_EQ(q, mh_arena_alloc(a, 4096, 0));
	for (size_t off = 0; off < cb; off += h)
		p[off] = 2;
	EXPECT_EQ(cb / 4096, resident_pages(c->base, c->limit));
	mh_arena_free(a);
}

TEST_F(arena, chunks_back_from_quarantine_read_zero_and_fault_again)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t bytes = cfg.chunk_bytes * 5 / 2, n = 0;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	mh_arena *a;
	char *volatile p = NULL;

	if (!faults(variant))
		SKIP(return, "the none backend keeps freed chunks as they are");
	cfg.reuse = false;
	arena_configure(&cfg);
	/* Three chunks, every byte written. */
	a = mh_arena_new();
	while (n < bytes) {
		p = mh_arena_alloc(a, 65536, 0);
		ASSERT_NE(NULL, p);
		memset(p, 0xa5, 65536);
		lo = (uintptr_t)p < lo ? (uintptr_t)p : lo;
		hi = (uintptr_t)p + 65536 > hi ? (uintptr_t)p + 65536 : hi;
		n += 65536;
	}
	mh_arena_free(a);
	mh_quarantine_release();
	/* The same chunks again, from the ready list: zero, in both windows. */
	a = mh_arena_new();
	size_t reused = 0;

	for (n = 0; n < bytes; n += 65536) {
		p = mh_arena_alloc(a, 65536, 0);
		ASSERT_NE(NULL, p);
		size_t nonzero = 0;

		for (size_t i = 0; i < 65536; i += 8)
			nonzero += *(uint64_t *)(p + i) != 0;
		ASSERT_EQ(0, nonzero) TH_LOG("%zu words of %p not zero", nonzero, p);
		reused += (uintptr_t)p >= lo && (uintptr_t)p < hi;
		memset(p, 0x5a, 65536);
	}
	EXPECT_GT(reused, 0);
	mh_arena_free(a);
	expect_uaf(_metadata, p, true);
	expect_uaf(_metadata, p + 65535, false);
}

/* ------------------------------------------------------------ quarantine */

TEST_F(arena, quarantine_budget_releases_oldest_first)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 10, KEEP = 3 };
	struct arena_config cfg = self->cfg;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a[N];
	char *p[N];

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	cfg.quarantine_max = KEEP * cfg.chunk_bytes;
	arena_configure(&cfg);
	for (int i = 0; i < N; i++) {
		a[i] = mh_arena_new();
		p[i] = mh_arena_alloc(a[i], 100, 0);
		*p[i] = 1;
	}
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
	mh_stats_read(&st);
	EXPECT_EQ(KEEP, st.arena_chunks_quarantined);
	EXPECT_EQ(KEEP * cfg.chunk_bytes, st.arena_quarantined_bytes);
	EXPECT_EQ(N - KEEP, st.arena_releases_budget);
	/* The oldest left quarantine (their memory works again, zeroed);
	 * the newest still fault. */
	EXPECT_EQ(0, *(volatile char *)p[0]);
	expect_uaf(_metadata, p[N - 1], false);
	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	EXPECT_EQ(0, st.arena_quarantined_bytes);
	EXPECT_GE(st.arena_chunks_ready, 1);
	EXPECT_EQ(0, *(volatile char *)p[N - 1]);
}

TEST_F_TIMEOUT(arena, hundred_thousand_cycles_never_fail_on_the_vma_limit, 300)
{
	struct arena_config cfg = self->cfg;
	int cycles = UNDER_SANITIZER ? 20000 : 100000;
	struct mh_stats st = MH_STATS_INIT;
	void *sep[1000];
	int nsep = 0;
	RETURN_IF_SETUP_SKIPPED();

	cfg.reuse = false;	/* every free faults a chunk */
	arena_configure(&cfg);
	for (int i = 0; i < cycles; i++) {
		mh_arena *a = mh_arena_new();
		uint64_t *p = mh_arena_alloc(a, 64, 0);

		ASSERT_NE(NULL, p);
		*p = (uint64_t)i;
		/* Now and then a live heap object between two chunks, so
		 * that quarantined chunks cannot all merge into one VMA. */
		if (i % 7 == 0 && nsep < 1000)
			sep[nsep++] = mh_malloc(100000);
		mh_arena_free(a);
	}
	for (int i = 0; i < nsep; i++)
		mh_free(sep[i]);
	mh_stats_read(&st);
	TH_LOG("%d cycles: %llu quarantined, %llu released by budget, %d VMAs", cycles,
	       (unsigned long long)st.arena_chunks_quarantined,
	       (unsigned long long)st.arena_releases_budget, count_vmas());
	EXPECT_LE(st.arena_quarantined_bytes, cfg.quarantine_max);
	EXPECT_LT(count_vmas(), 20000);
}

/* Use up VMAs, then free arenas whose chunks each need new ones. */
static void vma_exhaustion(void *arg)
{
	struct arena_config cfg;
	size_t page = 4096;
	void **maps = malloc(70000 * sizeof(void *));
	int n = 0;
	struct mh_stats st = MH_STATS_INIT;

	(void)arg;
	arena_config_get(&cfg);
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;	/* only the kernel limits */
	arena_configure(&cfg);
	while (n < 70000) {
		/* Alternate protections so neighbours never merge. */
		void *p = mmap(NULL, page, n & 1 ? PROT_READ : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		maps[n++] = p;
	}
	for (int i = 0; i < 100 && n; i++)
		munmap(maps[--n], page);
	for (int i = 0; i < 200; i++) {
		mh_arena *a = mh_arena_new();

		if (!a || !mh_arena_alloc(a, 64, 0))
			_exit(2);
		/* A live object keeps chunks apart: larger than the gap
		 * below a chunk aligned for huge pages, which a smaller one
		 * would fill instead, and grown by realloc, which keeps it
		 * at the bottom with the chunks (large objects made by
		 * malloc go to the top of the heap). */
		(void)mh_realloc(mh_malloc(64), (size_t)3 << 20);
		mh_arena_free(a);
	}
	mh_stats_read(&st);
	_exit(st.arena_releases_enomem > 0 ? 0 : 3);
}

TEST_F(arena, out_of_vmas_releases_old_quarantine_and_carries_on)
{
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect"))
		SKIP(return, "only mprotect splits VMAs");
	if (UNDER_SANITIZER)
		SKIP(return, "a sanitizer runtime maps and unmaps memory of its own and dies when VMAs run out");
	expect_child_ok(_metadata, vma_exhaustion, NULL);
}

/*
 * Quarantined chunks next to each other merge into one VMA (mprotect, and
 * the guard backend's moved-from chunks): releasing one of them alone would
 * split it, which needs a VMA. With every VMA in use, an arena freed (whose
 * fault needs VMAs, so old quarantine is released) and then the whole
 * quarantine released must neither abort nor hand out memory that faults.
 */
static void release_merged_quarantine_out_of_vmas(void *arg)
{
	struct arena_config cfg;
	size_t page = 4096, cb;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	int n = 0;

	(void)arg;
	arena_config_get(&cfg);
	cb = cfg.chunk_bytes;
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;
	arena_configure(&cfg);
	/* Six chunks side by side, the full ones moved warm. */
	a = mh_arena_new();
	for (size_t k = 0; k < 6 * cb - cb / 2; k += 65536)
		if (!mh_arena_alloc(a, 65536, 0))
			_exit(2);
	mh_arena_free(a);
	/* Every VMA taken: alternate protections so neighbours never merge. */
	while (n < 70000 && mmap(NULL, page, n & 1 ? PROT_READ : PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED)
		n++;
	a = mh_arena_new();
	if (!a || !mh_arena_alloc(a, 64, 0))
		_exit(3);
	mh_arena_free(a);
	mh_quarantine_release();
	mh_stats_read(&st);
	if (st.arena_chunks_quarantined)
		_exit(4);
	/* Whatever a new arena gets is ordinary memory. */
	a = mh_arena_new();
	for (size_t k = 0; k < 3 * cb; k += 65536) {
		char *p = mh_arena_alloc(a, 65536, 0);

		if (!p)
			_exit(5);
		p[0] = p[65535] = 1;
	}
	_exit(0);
}

TEST_F(arena, out_of_vmas_releasing_merged_quarantine_never_aborts)
{
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect") && strcmp(variant->backend, "guard"))
		SKIP(return, "only mprotect and guard's moved-from chunks split VMAs");
	if (UNDER_SANITIZER)
		SKIP(return, "a sanitizer runtime maps and unmaps memory of its own and dies when VMAs run out");
	expect_child_ok(_metadata, release_merged_quarantine_out_of_vmas, NULL);
}

/* ------------------------------------------------------------ out of memory */

/* VmSize of this process, in bytes. */
static size_t vm_bytes(void)
{
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pages) != 1)
		pages = 0;
	fclose(f);
	return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Under RLIMIT_AS, fill the heap with quarantined chunks until a new chunk
 * needs old quarantine released (in a child: it exits on failure). */
static void fill_address_space_with_quarantine(void)
{
	struct arena_config cfg;
	struct rlimit rl;
	struct mh_stats st = MH_STATS_INIT;
	int i;

	arena_config_get(&cfg);
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;
	arena_configure(&cfg);
	mh_free(mh_malloc(100));
	rl.rlim_cur = rl.rlim_max = vm_bytes() + ((size_t)200 << 20);
	if (setrlimit(RLIMIT_AS, &rl))
		_exit(2);
	for (i = 0; i < 1000; i++) {
		mh_arena *a = mh_arena_new();

		if (!a || !mh_arena_alloc(a, 64, 0))
			_exit(3);
		mh_arena_free(a);
		mh_stats_read(&st);
		if (st.arena_releases_enomem)
			break;
	}
	if (i == 1000)
		_exit(4);
}

/* Then a block larger than any free run must still be had, from
 * quarantine given back. */
static void large_malloc_with_quarantine_full(void *arg)
{
	size_t big = (size_t)48 << 20;
	char *p;

	(void)arg;
	fill_address_space_with_quarantine();
	p = mh_malloc(big);
	if (!p)
		_exit(5);
	p[0] = p[big - 1] = 1;
	_exit(0);
}

/* ... and so must small objects, whose spans need pages as well. */
static void small_mallocs_with_quarantine_full(void *arg)
{
	(void)arg;
	fill_address_space_with_quarantine();
	for (int i = 0; i < 20000; i++) {
		char *p = mh_malloc(4000);

		if (!p)
			_exit(5);
		p[0] = 1;
	}
	_exit(0);
}

/* Run fn, a child that starts with fill_address_space_with_quarantine. */
static void expect_ok_out_of_address_space(struct __test_metadata *_metadata,
					   const FIXTURE_VARIANT(arena) *variant,
					   void (*fn)(void *))
{
	if (!faults(variant))
		SKIP(return, "the none backend quarantines nothing");
	if (UNDER_SANITIZER)
		SKIP(return, "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot apply");
	expect_child_ok(_metadata, fn, NULL);
}

TEST_F(arena, malloc_out_of_address_space_takes_it_back_from_quarantine)
{
	RETURN_IF_SETUP_SKIPPED();
	expect_ok_out_of_address_space(_metadata, variant, large_malloc_with_quarantine_full);
}

TEST_F(arena, small_mallocs_out_of_address_space_take_it_back_from_quarantine)
{
	RETURN_IF_SETUP_SKIPPED();
	expect_ok_out_of_address_space(_metadata, variant, small_mallocs_with_quarantine_full);
}

/* ------------------------------------------------------------ warm chunks */

/* Whether this backend moves a freed full chunk's pages to a warm chunk. */
static bool recycles(const FIXTURE_VARIANT(arena) *variant)
{
	return !strcmp(variant->backend, "guard") || !strcmp(variant->backend, "mprotect");
}

static uint64_t warm_chunks(void)
{
	struct mh_stats st = MH_STATS_INIT;

	mh_stats_read(&st);
	return st.arena_chunks_warm;
}

TEST_F(arena, freed_full_chunks_move_warm_and_the_next_big_arena_reuses_them_without_faults)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	char *old[4], *p, *q;
	mh_arena *a, *b;
	long flt;

	if (!faults(variant))
		SKIP(return, "the none backend keeps freed chunks as they are");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	old[0] = mh_arena_alloc(a, 64, 0);
	/* Three full chunks, then a fourth hardly used. */
	for (size_t n = 0; n < 3 * cb; n += 4096)
		memset(mh_arena_alloc(a, 4096, 0), 0xa5, 4096);
	old[1] = old[0] + cb;
	old[2] = mh_arena_alloc(a, 64, 0);
	mh_arena_free(a);
	if (!recycles(variant)) {
		EXPECT_EQ(0, warm_chunks());
		expect_uaf(_metadata, old[0], false);
		return;
	}
	EXPECT_GE(warm_chunks(), 2);
	EXPECT_LE(warm_chunks(), 3);
	/* The old ranges fault, ends and middle, as without the move. */
	expect_uaf(_metadata, old[0], false);
	expect_uaf(_metadata, old[0] + cb / 2, true);
	expect_uaf(_metadata, old[0] + cb - 1, false);
	expect_uaf(_metadata, old[2], true);
	/* A big arena: its second chunk is the last one moved. */
	b = mh_arena_new();
	fill_arena(b, cb, 1);
	p = mh_arena_alloc(b, 65536, 0);
	/* The moved pages are there, stale: not zero-filled by the kernel. */
	EXPECT_EQ((char)0xa5, p[0]) TH_LOG("%p not from a warm chunk", p);
	/* Writing the rest of the chunk takes no page faults (the sanitizer
	 * runtimes fault in shadow memory of their own). */
	flt = minflt();
	fill_arena(b, cb / 2, 2);
	flt = minflt() - flt;
	TH_LOG("%ld page faults writing %zu KiB of a warm chunk", flt, cb / 2 >> 10);
	if (!UNDER_SANITIZER)
		EXPECT_LT(flt, 8);
	/* calloc there gives zeros over stale data. */
	q = mh_arena_alloc_noscan(b, 4096, 0);
	EXPECT_EQ((char)0xa5, q[100]);
	q = mh_arena_calloc(b, 1024, 4);
	for (int i = 0; i < 4096; i++)
		ASSERT_EQ(0, q[i]);
	EXPECT_EQ((char)0xa5, q[4096 + 100]) TH_LOG("calloc not served from the warm chunk");
	mh_arena_free(b);
	/* ... and that chunk faults in turn once freed. */
	expect_uaf(_metadata, p, true);
	expect_uaf(_metadata, q, false);
}

/* A big arena's active chunk, mostly used, moves warm with its full chunks
 * rather than going to the reuse list: the next big arena starts in a whole
 * warm chunk instead of in the unused tail of a chunk whose used part stays
 * resident, and the old data faults. */
TEST_F(arena, a_big_arenas_mostly_used_active_chunk_moves_warm_instead_of_being_reused)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *last;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(self->cfg.reuse);
	a = mh_arena_new();
	/* One full chunk, then three quarters of the next. */
	fill_arena(a, cb + cb / 2, 3);
	last = mh_arena_alloc(a, 65536, 0);
	memset(last, 3, 65536);
	fill_arena(a, cb / 4 - 4 * 65536, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_reuse);
	EXPECT_EQ(2, st.arena_chunks_warm);
	expect_uaf(_metadata, last, false);
	/* A small arena still continues in a reused chunk. */
	a = mh_arena_new();
	fill_arena(a, cb / 4, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(1, st.arena_chunks_reuse);
}

/* The next arena after such a free, big or not, starts in the warm chunk
 * that took the active chunk's place: no fresh memory to fault, and the
 * warm list does not grow round after round. One arena per moved active
 * chunk: the one made after it gets a chunk of its own as before. */
TEST_F(arena, the_next_arena_starts_in_the_warm_chunk_of_a_moved_active_chunk)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	mh_arena *a, *b;
	char *p, *q;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	a = mh_arena_new();
	/* One full chunk, then three quarters of the next. */
	fill_arena(a, cb + cb * 3 / 4, 4);
	mh_arena_free(a);
	ASSERT_EQ(2, warm_chunks());
	/* noscan data goes at the top of a chunk: in a warm chunk, among the
	 * moved pages, stale; in a new chunk's small-page window, zero. */
	a = mh_arena_new();
	p = mh_arena_alloc_noscan(a, 64, 0);
	EXPECT_EQ(4, p[0]) TH_LOG("%p not from a warm chunk", p);
	EXPECT_EQ(1, warm_chunks());
	b = mh_arena_new();
	q = mh_arena_alloc_noscan(b, 64, 0);
	EXPECT_EQ(0, q[0]) TH_LOG("%p from a warm chunk", q);
	EXPECT_EQ(1, warm_chunks());
	mh_arena_free(b);
	mh_arena_free(a);
}

/* A big arena's active chunk, however little used, moves warm as well (its
 * used part faulting) rather than going to the reuse list: reused, the next
 * arena went on into the part of it never touched, fresh memory for the
 * kernel to fault and zero, while the freed arena's resident pages waited
 * on the warm list. So the next arena of the same size finds every page it
 * is given resident before it writes one. (With thp_after 0 the first chunk
 * is huge whole and moves whole; an arena's small-page window does not.) */
TEST_F(arena, the_next_arena_of_the_same_size_is_given_only_resident_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes, cold = 0;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(cfg.reuse);
	cfg.thp_after = 0;
	arena_configure(&cfg);
	a = mh_arena_new();
	/* One full chunk, then an eighth of the next. */
	fill_arena(a, cb + cb / 8, 6);
	mh_arena_free(a);
	a = mh_arena_new();
	for (size_t n = 0; n < cb + cb / 8; n += 65536) {
		uintptr_t p = (uintptr_t)mh_arena_alloc(a, 65536, 0);
		uintptr_t lo = p & ~(uintptr_t)4095, hi = (p + 65536 + 4095) & ~(uintptr_t)4095;

		cold += (hi - lo) / 4096 - resident_pages(lo, hi);
	}
	EXPECT_EQ(0, cold) TH_LOG("%zu pages not resident of %zu KiB given", cold,
				  (cb + cb / 8) >> 10);
	mh_arena_free(a);
}

/* An arena's first chunk moves without its small-page head (a VMA of its
 * own): the warm chunk holds no pages in its first huge page, and is given
 * out from the huge page after it, among the moved pages, rather than from
 * its base, fresh memory for the kernel to fault and zero. */
TEST_F(arena, a_warm_chunk_without_pages_in_its_head_is_given_out_from_its_tail)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	uintptr_t p;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	if (!arena_thp(variant) || !self->cfg.thp || !self->cfg.thp_after)
		SKIP(return, "no small-page head: huge pages off for arenas");
	a = mh_arena_new();
	/* The first chunk, then a little of the next. */
	fill_arena(a, cb, 8);
	mh_arena_free(a);
	/* The next arena starts in the first chunk's pages (warm_first). */
	a = mh_arena_new();
	p = (uintptr_t)mh_arena_alloc(a, 65536, 4096);
	EXPECT_EQ(16, resident_pages(p, p + 65536));
	EXPECT_EQ(8, *(char *)p);
	mh_arena_free(a);
}

/* The state of the mapping holding p in /proc/self/maps: its "rwxp" field. */
static void mapping_perms(const void *p, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e;
	char line[512], pr[5];

	strcpy(perms, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %4s", &s, &e, pr) == 3 &&
		    s <= (uintptr_t)p && (uintptr_t)p < e)
			strcpy(perms, pr);
	fclose(f);
}

/* The guard backend protects a whole chunk with mprotect, moved-from (it is
 * empty and a VMA of its own already) or not (it owns its page tables,
 * which guard entries would keep); both fault, and both come back from
 * quarantine as ordinary memory. */
TEST_F(arena, guard_protects_quarantined_chunks_moved_or_not)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	char perms[5], *full, *active;
	mh_arena *a;

	if (strcmp(variant->backend, "guard"))
		SKIP(return, "the guard backend's own choice");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 2 * cb, 6);
	/* The active chunk, hardly used: not moved. */
	active = mh_arena_alloc(a, 65536, 0);
	memset(active, 6, 65536);
	full = active - cb;	/* in the second chunk, full, moved */
	ASSERT_TRUE(mh_in_arena(full));
	mh_arena_free(a);
	ASSERT_EQ(2, warm_chunks());
	mapping_perms(full, perms);
	EXPECT_STREQ("---p", perms);
	mapping_perms(active, perms);
	EXPECT_STREQ("---p", perms);
	expect_uaf(_metadata, full, true);
	expect_uaf(_metadata, active, false);
	mh_quarantine_release();
	mapping_perms(full, perms);
	EXPECT_STREQ("rw-p", perms);
	mapping_perms(active, perms);
	EXPECT_STREQ("rw-p", perms);
}

/* This process's page tables (VmPTE), in KiB. */
static long page_table_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPTE: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* Whether MADV_DONTNEED frees the page tables of a range it empties
 * (CONFIG_PT_RECLAIM, 6.14+): 64 MiB touched in small pages hold 128 KiB. */
static bool kernel_frees_empty_page_tables(void)
{
	size_t len = (size_t)64 << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long before, held, after;

	if (p == MAP_FAILED)
		return false;
	madvise(p, len, MADV_NOHUGEPAGE);
	before = page_table_kib();
	for (size_t o = 0; o < len; o += 4096)
		p[o] = 1;
	held = page_table_kib();
	madvise(p, len, MADV_DONTNEED);
	after = page_table_kib();
	munmap(p, len);
	return held - before >= 96 && after - before < 32;
}

/*
 * A quarantined chunk holds no page tables, whatever the backend that
 * faults it (kmod's are the module's): 64 chunks each written through
 * small pages would keep 16 KiB each (1 MiB) if their guard entries lived
 * in them.
 */
TEST_F(arena, quarantined_chunks_keep_no_page_tables)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	long before, held, after;
	mh_arena *a[64];

	if (!faults(variant) || !strcmp(variant->backend, "kmod"))
		SKIP(return, "only the anonymous memory of mprotect and guard");
	if (!kernel_frees_empty_page_tables())
		SKIP(return, "this kernel keeps empty page tables (no CONFIG_PT_RECLAIM)");
	cfg.reuse = false;
	cfg.thp = false;	/* small pages: a page table per 2 MiB written */
	arena_configure(&cfg);
	before = page_table_kib();
	for (int i = 0; i < 64; i++) {
		char *p;

		a[i] = mh_arena_new();
		p = mh_arena_alloc(a[i], cb / 2, 0);
		ASSERT_NE(NULL, p);
		for (size_t o = 0; o < cb / 2; o += 4096)
			p[o] = 1;
	}
	held = page_table_kib();
	for (int i = 0; i < 64; i++)
		mh_arena_free(a[i]);
	after = page_table_kib();
	TH_LOG("page tables: %ld KiB before, %ld written, %ld quarantined", before, held, after);
	ASSERT_GE(held - before, 64 * 8);
	EXPECT_LT(after - before, 64 * 2);
}

/* An arena that never filled a chunk and took another is not a big one:
 * without reuse its chunk, used up or not, drops its pages. */
TEST_F(arena, without_reuse_a_small_arenas_used_up_chunk_is_not_moved)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	mh_arena *a;
	char *p;

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	p = mh_arena_alloc(a, 64, 0);
	/* Most of the chunk, without moving on to another (with huge
	 * pages, the rest of the small-page window's huge page is skipped:
	 * 1.75 MiB of 8). */
	fill_arena(a, cfg.chunk_bytes / 10 * 7, 4);
	ASSERT_EQ(0, warm_chunks());
	mh_arena_free(a);
	EXPECT_EQ(0, warm_chunks());
	expect_uaf(_metadata, p, false);
}

/* Short arenas going on in a reused chunk fill it in turn, and the one that
 * uses it up is usually small: its chunk moves warm all the same, and the
 * next arena starts in it, among resident pages, instead of in fresh memory
 * (the pages of all of them were dropped before, every chunk's worth). */
TEST_F(arena, a_used_up_reused_chunk_moves_warm_for_the_next_arena)
{
	RETURN_IF_SETUP_SKIPPED();

	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *last = NULL;
	uintptr_t p;
	int n;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(self->cfg.reuse);
	/* 256 KiB arenas, each going on where the last stopped, until one
	 * uses the chunk up (windows are 256 KiB and huge pages, so one
	 * ends exactly at the chunk's end) and it leaves the reuse list. */
	for (n = 0; n < 64; n++) {
		a = mh_arena_new();
		fill_arena(a, 192 << 10, 7);
		last = mh_arena_alloc(a, 65536, 0);
		memset(last, 7, 65536);
		mh_arena_free(a);
		mh_stats_read(&st);
		if (!st.arena_chunks_reuse)
			break;
	}
	ASSERT_LT(n, 64) TH_LOG("no chunk was used up");
	EXPECT_EQ(1, st.arena_chunks_warm);
	expect_uaf(_metadata, last, false);
	/* Pointer-free data goes at the top of a chunk: among the moved
	 * pages, resident before anything is written there. */
	a = mh_arena_new();
	p = (uintptr_t)mh_arena_alloc_noscan(a, 65536, 4096);
	EXPECT_EQ(16, resident_pages(p, p + 65536));
	EXPECT_EQ(7, *(char *)p);
	EXPECT_EQ(0, warm_chunks());
	mh_arena_free(a);
}

/* Write every page of a big arena of three chunks, then free it. */
static void fill_big_arena(void *arg)
{
	size_t cb = *(const size_t *)arg;
	mh_arena *a = mh_arena_new();

	fill_arena(a, 3 * cb, 6);
	mh_arena_free(a);
}

/*
 * A freed chunk whose range the program split into two VMAs (here
 * MADV_DONTDUMP on its first page) cannot move in one mremap: the kernel
 * refuses it (EFAULT), and the library moves the tail alone or not at all.
 * Kernels before 6.16 (6.1, 6.12) unmap the destination before refusing:
 * that range must be mapped again, or the warm chunk's head (or the range
 * back in the page heap) is a hole, and the next big arena writing there
 * dies of SIGSEGV with no report.
 */
TEST_F(arena, a_chunk_the_program_split_moves_or_faults_and_leaves_no_hole)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	char *first, *p;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	a = mh_arena_new();
	first = mh_arena_alloc(a, 64, 0);
	/* Fill on to the first allocation in a third chunk; the second
	 * chunk's first page is where the arena moved on from the first. */
	do {
		p = mh_arena_alloc(a, 65536, 0);
		memset(p, 5, 65536);
	} while (chunk_at(p) == chunk_at(first));
	ASSERT_EQ(chunk_at(p)->base, (uintptr_t)p) TH_LOG("a piece in the second chunk");
	ASSERT_EQ(0, madvise(p, 4096, MADV_DONTDUMP));
	fill_arena(a, cb, 5);
	mh_arena_free(a);
	EXPECT_GE(warm_chunks(), 1);
	expect_uaf(_metadata, p, false);
	/* The warm chunks and the page heap are whole: a big arena writes
	 * every page of them. */
	expect_child_ok(_metadata, fill_big_arena, &cb);
	fill_big_arena(&cb);
}

TEST_F(arena, warm_chunks_stay_under_their_cap_and_are_given_back)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	cfg.warm_max = 2 * cb;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 5 * cb, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(2, st.arena_chunks_warm);
	/* Quarantine is the same as without the move. */
	EXPECT_EQ(6, st.arena_chunks_quarantined);
	/* A lower cap gives the rest back. */
	cfg.warm_max = cb;
	arena_configure(&cfg);
	EXPECT_EQ(1, warm_chunks());
	/* mh_scavenge() gives them back, and their memory to the OS. */
	mh_scavenge();
	EXPECT_EQ(0, warm_chunks());
	mh_stats_read(&st);
	EXPECT_EQ(st.heap_idle, st.heap_released);
	/* mh_quarantine_release() gives warm chunks back too. */
	a = mh_arena_new();
	fill_arena(a, 3 * cb, 3);
	mh_arena_free(a);
	EXPECT_EQ(1, warm_chunks());
	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_warm);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	/* And memory from the page heap that was warm is zero where it must be. */
	char *z = mh_calloc(1, cb);
	ASSERT_NE(NULL, z);
	for (size_t i = 0; i < cb; i += 512)
		ASSERT_EQ(0, z[i]);
	mh_free(z);
}

TEST_F(arena, without_recycling_freed_chunks_drop_their_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *p;

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	cfg.recycle = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	p = mh_arena_alloc(a, 64, 0);
	fill_arena(a, 3 * cb, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_warm);
	EXPECT_EQ(4, st.arena_chunks_quarantined);
	expect_uaf(_metadata, p, false);
	expect_uaf(_metadata, p + cb + 4096, true);
}

static void use_warm_chunk_in_child(void *arg)
{
	size_t cb = *(size_t *)arg;
	mh_arena *a = mh_arena_new();

	/* The second chunk is a warm one: a copy-on-write copy of the
	 * parent's, which must work like any memory. */
	for (size_t n = 0; n < 2 * cb; n += 65536) {
		char *p = mh_arena_alloc(a, 65536, 0);

		if (!p)
			_exit(2);
		memset(p, 9, 65536);
		if (p[65535] != 9)
			_exit(3);
	}
	mh_arena_free(a);
	_exit(warm_chunks() >= 1 ? 0 : 4);
}

TEST_F(arena, a_forked_child_uses_warm_chunks_as_copies)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	mh_arena *a;
	char *p;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 3 * cb, 5);
	mh_arena_free(a);
	ASSERT_GE(warm_chunks(), 1);
	expect_child_ok(_metadata, use_warm_chunk_in_child, &cb);
	/* The parent's warm chunks are untouched by the child's writes. */
	a = mh_arena_new();
	for (size_t n = 0; n < cb; n += 65536)
		(void)mh_arena_alloc(a, 65536, 0);
	p = mh_arena_alloc(a, 65536, 0);
	EXPECT_EQ(5, p[0]);
	mh_arena_free(a);
}

/* Arenas of two chunks, the first full, pages untouched: every free moves a
 * chunk. The heap's VMAs must stay few: a move that left even one VMA behind
 * would end with more VMAs than cycles. 5000 cycles fill the quarantine ten
 * times over; 20000 took about 300 s in the TCG VM on a loaded host. */
TEST_F_TIMEOUT(arena, moving_chunks_cycle_after_cycle_keeps_vmas_bounded, 300)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	int cycles = 5000;
	struct mh_stats st = MH_STATS_INIT;
	int before = count_vmas(), most = before;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	arena_configure(&cfg);
	for (int i = 0; i < cycles; i++) {
		mh_arena *a = mh_arena_new();
		char *p = NULL;

		for (int k = 0; k < 5; k++)
			p = mh_arena_alloc(a, cfg.chunk_bytes / 4 - 4096, 0);
		ASSERT_NE(NULL, p);
		*p = 1;
		mh_arena_free(a);
		if (i % 1000 == 0) {
			int v = count_vmas();

			most = v > most ? v : most;
		}
	}
	mh_stats_read(&st);
	TH_LOG("%d cycles: %llu warm, %llu quarantined, VMAs %d before, %d at most, %d after",
	       cycles, (unsigned long long)st.arena_chunks_warm,
	       (unsigned long long)st.arena_chunks_quarantined, before, most, count_vmas());
	EXPECT_GE(st.arena_chunks_warm, 1);
	EXPECT_LE(st.arena_chunks_warm * cfg.chunk_bytes, cfg.warm_max);
	EXPECT_LT(count_vmas(), cycles);
}

/* ------------------------------------------------------------ reuse list */

/* Twenty arenas of 3 MiB each, live at once, then all freed: each one's
 * active chunk has room left, but the reuse list keeps only so much of their
 * used, dead data resident (counted in their chunks, by mincore: the RSS of
 * a sanitizer build counts shadow memory too). */
TEST_F(arena, the_reuse_list_holds_a_bounded_amount_of_dead_data)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 20 };
	size_t part = (size_t)3 << 20, held = 0;
	uintptr_t base[N], limit[N];
	mh_arena *a[N];

	if (!faults(variant))
		SKIP(return, "the none backend reuses nothing");
	ASSERT_TRUE(self->cfg.reuse);
	for (int i = 0; i < N; i++) {
		struct arena_chunk *c;

		a[i] = mh_arena_new();
		fill_arena(a[i], part, 1);
		c = chunk_at(mh_arena_alloc(a[i], 1, 0));
		base[i] = c->base;
		limit[i] = c->limit;
	}
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
	for (int i = 0; i < N; i++)
		held += resident_pages(base[i], limit[i]) * 4096;
	TH_LOG("%zu KiB resident after freeing %d arenas of %zu KiB", held >> 10, N, part >> 10);
	EXPECT_LE(held, self->cfg.reuse_max);
}

/* mh_scavenge() returns the used part of a reused chunk to the OS (whole
 * pages of it); the next arena still continues where the last one stopped. */
TEST_F(arena, the_scavenger_returns_the_dead_part_of_reused_chunks)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_chunk *c;
	uintptr_t used_end;
	mh_arena *a;
	char *last, *next;

	if (!faults(variant))
		SKIP(return, "the none backend reuses nothing");
	a = mh_arena_new();
	fill_arena(a, (size_t)3 << 20, 1);
	last = mh_arena_alloc(a, 64, 0);
	c = chunk_at(last);
	mh_arena_free(a);
	ASSERT_EQ(CHUNK_REUSE, c->state);
	used_end = ALIGN_DOWN(c->lo, 4096);
	ASSERT_GT(resident_pages(c->base, used_end), 700);
	mh_scavenge();
	EXPECT_EQ(0, resident_pages(c->base, used_end));
	a = mh_arena_new();
	next = mh_arena_alloc(a, 64, 0);
	EXPECT_EQ(last + 64, next);
	next[0] = 1;
	mh_arena_free(a);
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
		{ "kmod", "mheap: MHEAP_BACKEND=kmod: that backend does not work here" },
	};

	for (unsigned i = 0; i < 2; i++) {
		char cmd[512], out[512] = "";
		FILE *f;

		/* The module is here and kmod works: nothing to fail. (The
		 * 6.1 harness has no -l, so the child would run every test,
		 * this one included, over and over.) */
		if (!strcmp(cases[i].value, "kmod") && fault_backend_kmod.probe() == 0)
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
