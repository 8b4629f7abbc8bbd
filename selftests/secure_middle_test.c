// SPDX-License-Identifier: GPL-2.0
/*
 * The secure heap's middle blocks (userlib/secure_middle.c: from the small
 * classes' end to MHEAP_SECURE_LARGE, 2 MiB) as a program sees them when
 * nothing goes wrong: calloc and realloc keep their contract, a freed block
 * waits in its thread's delay (at most 8 blocks and 1 MiB; the last freed always) before its pages
 * go back to the heap (the thread's large cache; the page heap for a block
 * realloc moved away from), the delay is given back at the thread's exit, and
 * the guarded share is sampled by size (MHEAP_SECURE_MIDDLE_SAMPLE: bytes,
 * not blocks). What each misuse gives is misuse_*_test's, but for two
 * threads freeing one block at once. The program runs in the secure mode
 * without sampling (secure_fixture.h); the sampling tests start it once
 * more with a rate of their own.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define SECURE_TEST_CASE	sample_case
#include "secure_fixture.h"
#include "arenamap.h"
#include "mspan.h"

#define MIDDLE	((size_t)64 << 10)

/* Whether p is a live middle block, a large span of the heap of its own
 * (rather than a guarded block's chunk, or pages given back). */
static bool heap_large_block(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s && s->state == MSPAN_LARGE && s->base == (uintptr_t)p;
}

/* Whether p is a guarded block (its span an arena chunk). */
static bool guarded_block(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s && s->state == MSPAN_CHUNK;
}

TEST(calloc_gives_zeroes_in_pages_a_freed_block_had)
{
	enum { N = 32 };
	unsigned char *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(MIDDLE);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], 0xff, MIDDLE);
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	for (int i = 0; i < N; i++) {
		size_t k = 0;

		p[i] = mh_calloc(1, MIDDLE);
		ASSERT_NE(NULL, p[i]);
		while (k < MIDDLE && !p[i][k])
			k++;
		EXPECT_EQ(MIDDLE, k) TH_LOG("block %d: byte %zu not zero", i, k);
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
}

/* Grown by 1000-byte steps from 40 KiB to 900 KiB (in place where the pages
 * after it are free, else moved), then shrunk: the contents stay. */
TEST(realloc_keeps_a_middle_blocks_contents)
{
	size_t n = 40 << 10, i;
	unsigned char *p = mh_malloc(n);

	ASSERT_NE(NULL, p);
	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7);
	while (n < (900 << 10)) {
		p = mh_realloc(p, n + 1000);
		ASSERT_NE(NULL, p);
		for (i = n; i < n + 1000; i++)
			p[i] = (unsigned char)(i * 7);
		n += 1000;
	}
	p = mh_realloc(p, 50 << 10);
	ASSERT_NE(NULL, p);
	for (i = 0; i < (50 << 10) && p[i] == (unsigned char)(i * 7); i++)
		;
	EXPECT_EQ(50 << 10, i);
	mh_free(p);
}

/* Freed blocks wait: none of the last 8 freed comes back from the
 * allocations that follow, and each stays the heap's block meanwhile. */
TEST(the_last_eight_freed_blocks_are_not_handed_out)
{
	enum { N = 8 };
	void *freed[N], *got[N];

	for (int i = 0; i < N; i++)
		freed[i] = mh_malloc(MIDDLE);
	for (int i = 0; i < N; i++)
		mh_free(freed[i]);
	for (int i = 0; i < N; i++) {
		got[i] = mh_malloc(MIDDLE);
		ASSERT_NE(NULL, got[i]);
		for (int j = 0; j < N; j++)
			EXPECT_NE(freed[j], got[i]);
	}
	for (int i = 0; i < N; i++)
		EXPECT_TRUE(heap_large_block(freed[i]));
	for (int i = 0; i < N; i++)
		mh_free(got[i]);
}

/* n middle blocks made, then freed in that order. */
static void make_and_free(void **p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = mh_malloc(MIDDLE);
	for (int i = 0; i < n; i++)
		mh_free(p[i]);
}

/* The ninth free gives the oldest delayed block's pages back, only it. */
TEST(the_delay_holds_eight_blocks)
{
	void *p[9];

	make_and_free(p, 9);
	EXPECT_FALSE(heap_large_block(p[0]));
	for (int i = 1; i < 9; i++)
		EXPECT_TRUE(heap_large_block(p[i]));
}

/* Whether p's pages are a freed block its thread's large cache keeps
 * (largecache.c). */
static bool kept_by_the_thread(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s && s->state == MSPAN_CACHED && s->base == (uintptr_t)p;
}

/* Out of the delay, a block goes to its thread's large cache, as the
 * default mode's frees do: its next take needs no heap lock. */
TEST(a_block_out_of_the_delay_goes_to_the_threads_large_cache)
{
	void *p[9];

	make_and_free(p, 9);
	EXPECT_TRUE(kept_by_the_thread(p[0]));
	for (int i = 1; i < 9; i++)
		EXPECT_FALSE(kept_by_the_thread(p[i]));
}

/* But a block realloc moved away from goes to the page heap after its
 * delay, as mh_realloc's old block does: growth in place needs free runs
 * there. A block shrunk below half its pages moves. */
TEST(a_block_realloc_moved_away_from_goes_to_the_page_heap)
{
	void *p = mh_malloc(2 * MIDDLE), *q, *r[8];

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, MIDDLE - 1000);
	ASSERT_NE(NULL, q);
	ASSERT_NE(p, q);
	make_and_free(r, 8);
	EXPECT_FALSE(heap_large_block(p));
	EXPECT_FALSE(kept_by_the_thread(p));
	mh_free(q);
}

/* A middle block from malloc takes its pages on the default mode's 64 KiB
 * lattice (malloc_large.c, large_npages): 100,000 bytes and the trailer
 * take 16 pages, not 13, so that the thread's large cache finds blocks of
 * the lengths a program asks for again. */
TEST(a_middle_block_takes_its_pages_on_the_lattice)
{
	void *p = mh_malloc(100000);

	ASSERT_TRUE(heap_large_block(p));
	EXPECT_EQ(16, span_of((uintptr_t)p)->npages);
	mh_free(p);
}

/* So a block freed and out of its delay serves the next malloc of a
 * length on the same 64 KiB step, from the thread's cache, where in page
 * steps (13 pages for 100,000 bytes, 15 for 120,000) it did not fit. */
TEST(the_cache_serves_a_middle_block_of_another_size_on_the_same_step)
{
	void *p = mh_malloc(100000), *r[8], *q;

	ASSERT_NE(NULL, p);
	mh_free(p);
	make_and_free(r, 8);
	ASSERT_TRUE(kept_by_the_thread(p));
	q = mh_malloc(120000);
	EXPECT_EQ(p, q);
	mh_free(q);
}

/* But realloc's blocks keep page steps: on the lattice, a buffer grown
 * by realloc took 1.28x default mheap's peak RSS. 10,000 bytes grown to
 * 100,000 move to room for half as much again, 150,000 bytes and the
 * trailer: 19 pages, not 24. */
TEST(a_block_realloc_moves_takes_its_pages_in_page_steps)
{
	void *p = mh_malloc(10000), *q;

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, 100000);
	ASSERT_NE(NULL, q);
	ASSERT_TRUE(heap_large_block(q));
	EXPECT_EQ(19, span_of((uintptr_t)q)->npages);
	mh_free(q);
}

/* Blocks of 448 KiB (512 KiB of pages on the lattice): two fit in 1 MiB,
 * the third pushes the oldest out. */
TEST(the_delay_holds_at_most_1_mib)
{
	void *p[3];

	for (int i = 0; i < 3; i++)
		p[i] = mh_malloc(448 << 10);
	for (int i = 0; i < 3; i++)
		mh_free(p[i]);
	EXPECT_FALSE(heap_large_block(p[0]));
	for (int i = 1; i < 3; i++)
		EXPECT_TRUE(heap_large_block(p[i]));
}

/* A block larger than the byte cap still waits, alone. */
TEST(a_block_over_the_cap_waits_alone)
{
	void *p = mh_malloc(64 << 10), *q = mh_malloc(1536 << 10);

	mh_free(p);
	mh_free(q);
	EXPECT_FALSE(heap_large_block(p));
	EXPECT_TRUE(heap_large_block(q));
	EXPECT_NE(q, mh_malloc(1536 << 10));
}

static void *free_one(void *p)
{
	mh_free(p);
	return NULL;
}

TEST(a_threads_delayed_blocks_go_back_at_its_exit)
{
	void *p = mh_malloc(MIDDLE);
	pthread_t t;

	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, pthread_create(&t, NULL, free_one, p));
	ASSERT_EQ(0, pthread_join(t, NULL));
	EXPECT_FALSE(heap_large_block(p));
}

/* A thread's last frees may come from a key's destructor, once the
 * thread's cache is given back or before it ever had one: a thread that
 * never allocated gets a cache at its first free and a further round of
 * destructors gives its delay back; one whose cache is given back already
 * gives each block back at once. Either way no block stays delayed, every
 * one is checked on its way out (a write after free aborts there) and
 * counted as freed. */
enum { IN_DESTRUCTOR = 8 };
static void *to_free_last[IN_DESTRUCTOR];

static void free_them_last(void *arg)
{
	(void)arg;
	for (int i = 0; i < IN_DESTRUCTOR; i++)
		mh_free(to_free_last[i]);
}

static pthread_key_t last_key;

static void *frees_at_exit(void *arg)
{
	(void)arg;
	pthread_setspecific(last_key, (void *)1);
	return NULL;
}

TEST(blocks_a_thread_frees_in_a_key_destructor_do_not_stay_delayed)
{
	struct mh_stats before = { .size = sizeof(before) }, after = { .size = sizeof(after) };
	pthread_t t;

	ASSERT_EQ(0, pthread_key_create(&last_key, free_them_last));
	for (int i = 0; i < IN_DESTRUCTOR; i++) {
		to_free_last[i] = mh_malloc(MIDDLE);
		ASSERT_NE(NULL, to_free_last[i]);
	}
	mh_stats_read(&before);
	ASSERT_EQ(0, pthread_create(&t, NULL, frees_at_exit, NULL));
	ASSERT_EQ(0, pthread_join(t, NULL));
	mh_stats_read(&after);
	for (int i = 0; i < IN_DESTRUCTOR; i++) {
		EXPECT_FALSE(heap_large_block(to_free_last[i])) {
			TH_LOG("block %d still delayed", i);
		}
	}
	EXPECT_EQ(before.frees + IN_DESTRUCTOR, after.frees);
	pthread_key_delete(last_key);
}

/* ------------------------------------------------------------ two frees at once */

/*
 * Two threads free one middle block at once. Its pages stay the heap's
 * through its delay, so both frees find it allocated there: one must win
 * it, the other abort. Made deterministic: the block's first page is
 * read-only, so the first free stops at its first write into the block
 * (after its checks); the SIGSEGV handler lets the page be written again
 * and has the other thread free the block meanwhile, waiting until that
 * free returns. Whichever free loses must abort naming the block.
 */
static char *race_block;
static atomic_int race_step;	/* 1: the first free stopped; 2: the second returned */

static void race_stop(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if ((char *)si->si_addr < race_block || (char *)si->si_addr >= race_block + 4096)
		abort();	/* not the block's first page */
	mprotect(race_block, 4096, PROT_READ | PROT_WRITE);
	atomic_store(&race_step, 1);
	while (atomic_load(&race_step) != 2)
		;
}

static void *free_at_the_stop(void *arg)
{
	(void)arg;
	while (atomic_load(&race_step) != 1)
		;
	mh_free(race_block);
	atomic_store(&race_step, 2);
	for (;;)	/* its exit would give back the block it delayed */
		pause();
	return NULL;
}

/* The child's part: race_block, allocated before the fork, freed by two
 * threads at once. */
static void free_by_two_threads_at_once(void *arg)
{
	struct sigaction sa = { .sa_sigaction = race_stop, .sa_flags = SA_SIGINFO };
	pthread_t t;

	(void)arg;
	if (sigaction(SIGSEGV, &sa, NULL) || pthread_create(&t, NULL, free_at_the_stop, NULL) ||
	    mprotect(race_block, 4096, PROT_READ))
		_exit(2);
	mh_free(race_block);
	fprintf(stderr, "both frees returned\n");
}

TEST(a_block_two_threads_free_at_once_aborts_as_a_double_free)
{
	struct child_result r;
	char want[64];

	race_block = mh_malloc(MIDDLE);
	ASSERT_TRUE(heap_large_block(race_block));
	memset(race_block, 1, MIDDLE);
	run_child(free_by_two_threads_at_once, NULL, &r);
	snprintf(want, sizeof(want), "mheap: double free of %#lx\n",
		 (unsigned long)(uintptr_t)race_block);
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_STREQ(want, r.err);
	mh_free(race_block);
}

/* ------------------------------------------------------------ sampling */

/* The child of a sampling test: MHEAP_SECURE_MIDDLE_SAMPLE=64K, n blocks of
 * size bytes, one line per block on stderr: 'g' guarded, '-' not. */
static void sample_child(void *arg)
{
	const size_t *a = arg;
	char line[256];

	for (size_t i = 0; i < a[1] && i < sizeof(line) - 2; i++) {
		void *p = mh_malloc(a[0]);

		line[i] = guarded_block(p) ? 'g' : heap_large_block(p) ? '-' : '?';
		line[i + 1] = '\0';
	}
	fprintf(stderr, "%s\n", line);
}

/* sampled's child, this program again: the case "sample", for the size
 * and count in SAMPLE_SIZE and SAMPLE_N. */
static void sample_case(const char *name)
{
	if (!strcmp(name, "sample")) {
		size_t a[2] = { strtoul(getenv("SAMPLE_SIZE"), NULL, 10),
				strtoul(getenv("SAMPLE_N"), NULL, 10) };

		sample_child(a);
	}
}

/* Start sampled's child for exec_arg's size and count, with the rate. */
static const size_t *exec_arg;

static void exec_sampling(void *rate)
{
	char v[2][24];

	snprintf(v[0], sizeof(v[0]), "%zu", exec_arg[0]);
	snprintf(v[1], sizeof(v[1]), "%zu", exec_arg[1]);
	setenv("MHEAP_SECURE_MIDDLE_SAMPLE", rate, 1);
	setenv("SAMPLE_SIZE", v[0], 1);
	setenv("SAMPLE_N", v[1], 1);
	secure_exec_case("sample");
}

/* sample_child's run for n blocks of size bytes at the rate, in r. */
static void sampled(const char *rate, size_t size, size_t n, struct child_result *r)
{
	const size_t arg[2] = { size, n };

	exec_arg = arg;
	run_child(exec_sampling, (void *)rate, r);
}

/* The countdown to the next guarded block is drawn in 1 .. 2N - 1 bytes:
 * a block of 2N bytes always reaches it. */
TEST(a_block_of_twice_the_rate_is_always_guarded)
{
	struct child_result r;

	sampled("64K", 128 << 10, 32, &r);
	ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) TH_LOG("%s", r.err);
	EXPECT_STREQ("gggggggggggggggggggggggggggggggg\n", r.err);
}

/* Bytes set the rate, not blocks: of 40 KiB blocks at one per 64 KiB
 * (the countdown at most 128 KiB), no four in a row go unguarded, and
 * every block is one or the other. */
TEST(no_four_40k_blocks_in_a_row_go_unguarded_at_64k)
{
	struct child_result r;

	sampled("64K", 40 << 10, 64, &r);
	ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) TH_LOG("%s", r.err);
	EXPECT_EQ(65, strspn(r.err, "g-\n")) TH_LOG("%s", r.err);
	EXPECT_EQ(NULL, strstr(r.err, "----")) TH_LOG("%s", r.err);
}

TEST(no_block_is_guarded_at_rate_0)
{
	struct child_result r;

	sampled("0", MIDDLE, 32, &r);
	ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) TH_LOG("%s", r.err);
	EXPECT_STREQ("--------------------------------\n", r.err);
}

TEST(a_bad_rate_stops_the_program_at_start_up)
{
	struct child_result r;

	sampled("lots", MIDDLE, 1, &r);
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_STREQ("mheap: MHEAP_SECURE_MIDDLE_SAMPLE=lots: not a decimal number with an "
		     "optional K, M or G suffix\n", r.err);
}

TEST_HARNESS_MAIN
