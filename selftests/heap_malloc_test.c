// SPDX-License-Identifier: GPL-2.0
/*
 * The malloc-compatible API's semantics: calloc's zeroes (fresh pages
 * written up to 4 MiB, bigger blocks left to the zero page; the pages
 * asked for written, not a lattice block's tail), malloc(0), calloc's
 * overflow check, aligned_alloc of every power of two, realloc in place
 * and moved (room to grow, none to shrink), large blocks on the 64 KiB
 * lattice, usable size, ENOMEM under RLIMIT_AS and for a block larger
 * than memory and swap, the stats, and the
 * count of a window's objects with and without popcnt.
 */
#define _GNU_SOURCE
#include <sys/sysinfo.h>

#include "heap_lib.h"

/* ------------------------------------------------------------ calloc */

TEST(calloc_writes_fresh_pages_up_to_4MiB_and_leaves_bigger_blocks_to_the_zero_page)
{
	/* A program reading before writing would fault twice per page of a
	 * block the kernel maps to its zero page; up to 4 MiB calloc writes
	 * the block itself. Fresh pages: nothing was freed at these sizes. */
	char *small = mh_calloc(1, 4 << 20);
	char *big = mh_calloc(1, 64 << 20);

	ASSERT_NE(NULL, small);
	ASSERT_NE(NULL, big);
	EXPECT_EQ((size_t)(4 << 20) / 4096, resident_pages_in(small, 4 << 20));
	EXPECT_LT(resident_pages_in(big, 64 << 20), (size_t)(1 << 20) / 4096);
	for (size_t i = 0; i < (64 << 20); i += 4096)
		ASSERT_EQ(0, big[i]);
	EXPECT_EQ(0, small[(4 << 20) - 1]);
	mh_free(small);
	mh_free(big);
}

TEST(calloc_writes_the_pages_asked_for_not_a_lattice_blocks_tail)
{
	/* 72 KiB and a byte: ten 8 KiB pages asked for, a block of 128 KiB
	 * on the 64 KiB lattice. Filled and freed, the block stays with the
	 * thread (largecache.c), and calloc of the same size takes it back:
	 * it zeroes the pages asked for and leaves the tail as malloc leaves
	 * it, old data and all (writing it would make a fresh block's tail
	 * resident for nothing). By content, not residency: a kernel that
	 * backs the heap with huge pages makes the tail resident anyway. */
	size_t asked = (72 << 10) + 1, tail = 80 << 10, len = 128 << 10;
	char *p = mh_malloc(asked), *q;

	ASSERT_NE(NULL, p);
	ASSERT_EQ(len, mh_usable_size(p));
	memset(p, 0xaa, len);
	mh_free(p);
	q = mh_calloc(1, asked);
	ASSERT_EQ(p, q);
	for (size_t i = 0; i < tail; i += 512)
		ASSERT_EQ(0, q[i]);
	EXPECT_EQ(0, q[asked - 1]);
	EXPECT_EQ(0, q[tail - 1]);
	EXPECT_EQ((char)0xaa, q[tail]);
	EXPECT_EQ((char)0xaa, q[len - 1]);
	mh_free(q);
}

/* ------------------------------------------------------------ API semantics */

TEST(malloc_zero_returns_unique_pointers)
{
	void *a = mh_malloc(0), *b = mh_malloc(0);

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	EXPECT_NE(a, b);
	mh_free(a);
	mh_free(b);
	mh_free(NULL);
}

TEST(calloc_zeroes_and_checks_overflow)
{
	size_t big = (size_t)1 << 33;
	char *p;

	for (size_t n = 1; n <= 100000; n *= 7) {
		p = mh_calloc(n, 3);
		ASSERT_NE(NULL, p);
		for (size_t i = 0; i < n * 3; i++)
			ASSERT_EQ(0, p[i]);
		memset(p, 0xff, n * 3);
		mh_free(p);
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_calloc(big, big));
	EXPECT_EQ(ENOMEM, errno);
	errno = 0;
	EXPECT_EQ(NULL, mh_calloc(SIZE_MAX / 2, 3));
	EXPECT_EQ(ENOMEM, errno);
}

TEST(aligned_alloc_every_power_of_two_up_to_4MiB)
{
	for (size_t align = 1; align <= (4u << 20); align <<= 1) {
		size_t sizes[] = { 1, 8, align, align + 1, 3 * align, 40000 };

		for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			char *p = mh_aligned_alloc(align, sizes[i]);

			ASSERT_NE(NULL, p);
			ASSERT_EQ(0, (uintptr_t)p % align)
				TH_LOG("align %zu size %zu gave %p", align, sizes[i], p);
			ASSERT_GE(mh_usable_size(p), sizes[i]);
			memset(p, 0x11, sizes[i]);
			mh_free(p);
		}
	}
	errno = 0;
	EXPECT_EQ(NULL, mh_aligned_alloc(24, 10));
	EXPECT_EQ(EINVAL, errno);
}

TEST(realloc_stays_in_place_within_a_class_and_moves_otherwise)
{
	char *p = mh_malloc(100), *q;

	ASSERT_EQ(112, mh_usable_size(p));	/* the 112-byte class */
	memset(p, 7, 100);
	q = mh_realloc(p, 112);
	EXPECT_EQ(p, q);
	q = mh_realloc(p, 105);
	EXPECT_EQ(p, q);
	q = mh_realloc(p, 5000);
	ASSERT_NE(NULL, q);
	EXPECT_NE(p, q);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(7, q[i]);
	/* Growth through every class and into large objects keeps data. */
	for (size_t size = 5000; size < (4u << 20); size = size * 3 / 2) {
		q = mh_realloc(q, size);
		ASSERT_NE(NULL, q);
		ASSERT_EQ(7, q[99]);
		q[size - 1] = 1;
	}
	EXPECT_EQ(NULL, mh_realloc(q, 0));	/* frees, as glibc */
	q = mh_realloc(NULL, 10);		/* malloc */
	ASSERT_NE(NULL, q);
	mh_free(q);
}

TEST(realloc_grows_a_large_object_in_place_when_the_pages_after_it_are_free)
{
	char *p = mh_malloc(64 << 10), *q;

	memset(p, 9, 64 << 10);
	q = mh_realloc(p, 192 << 10);	/* a fresh heap: nothing after it */
	ASSERT_EQ(p, q);
	EXPECT_GE(mh_usable_size(q), 192 << 10);
	for (size_t i = 0; i < (64 << 10); i++)
		ASSERT_EQ(9, q[i]);
	memset(q, 7, 192 << 10);
	/* Something right after it: the next growth has to move. */
	char *blocker = mh_malloc(64 << 10);
	ASSERT_EQ(q + (192 << 10), blocker);
	char *r = mh_realloc(q, 400 << 10);
	EXPECT_NE(q, r);
	EXPECT_EQ(7, r[(192 << 10) - 1]);
	mh_free(r);
	mh_free(blocker);
}

TEST(a_large_block_realloc_moves_to_grow_gets_room_for_half_as_much_again)
{
	char *p = mh_malloc(64 << 10), *q, *r;
	char *blocker = mh_malloc(64 << 10);

	ASSERT_EQ(p + (64 << 10), blocker);
	memset(p, 3, 64 << 10);
	/* The block cannot grow where it is: it moves, with room. */
	q = mh_realloc(p, 128 << 10);	/* 16 pages */
	ASSERT_NE(p, q);
	EXPECT_EQ(192 << 10, mh_usable_size(q));	/* 24 pages */
	EXPECT_EQ(3, q[(64 << 10) - 1]);
	/* Whatever comes after the room, the block grows into it in place. */
	char *after = mh_malloc(64 << 10);
	ASSERT_NE(NULL, after);
	EXPECT_TRUE(after >= q + (192 << 10) || after + (64 << 10) <= q);
	r = mh_realloc(q, 192 << 10);
	EXPECT_EQ(q, r);
	mh_free(r);
	mh_free(after);
	mh_free(blocker);
}

TEST(a_large_block_realloc_moves_to_shrink_gets_no_room)
{
	char *p = mh_malloc(400 << 10), *q;

	ASSERT_NE(NULL, p);
	q = mh_realloc(p, 128 << 10);	/* under half its pages: it moves */
	ASSERT_NE(p, q);
	EXPECT_EQ(128 << 10, mh_usable_size(q));
	mh_free(q);
}

/* large_npages: from 64 KiB up to the longest block a thread's cache
 * keeps, whole 64 KiB; page steps below and above. */
TEST(a_large_block_of_64_to_512_kib_spans_a_whole_number_of_64_kib)
{
	static const struct { size_t ask, pages; } cases[] = {
		{ (32 << 10) + 1, 5 }, { (56 << 10) + 1, 8 }, { 64 << 10, 8 },
		{ (64 << 10) + 1, 16 }, { 200 << 10, 32 }, { (448 << 10) + 1, 64 },
		{ 512 << 10, 64 }, { (512 << 10) + 1, 65 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *p = mh_malloc(cases[i].ask);

		ASSERT_NE(NULL, p);
		EXPECT_EQ(PAGES(cases[i].pages), mh_usable_size(p)) {
			TH_LOG("a block of %zu bytes", cases[i].ask);
		}
		EXPECT_EQ(cases[i].pages, span_of((uintptr_t)p)->npages);
		mh_free(p);
	}
}

TEST(usable_size_covers_the_request)
{
	for (size_t size = 1; size < (1u << 20); size = size * 5 / 4 + 1) {
		void *p = mh_malloc(size);

		ASSERT_GE(mh_usable_size(p), size);
		memset(p, 0, mh_usable_size(p));
		mh_free(p);
	}
	EXPECT_EQ(0, mh_usable_size(NULL));
}

static void exhaust_address_space(void *arg)
{
	struct rlimit rl = { 512 << 20, 512 << 20 };
	size_t n = 0;
	void *p;

	(void)arg;
	if (setrlimit(RLIMIT_AS, &rl))
		_exit(10);
	errno = 0;
	if (mh_malloc((size_t)1 << 30) != NULL || errno != ENOMEM)
		_exit(11);
	/* Small objects until the heap cannot grow: NULL and ENOMEM. */
	while ((p = mh_malloc(4000)) != NULL)
		n++;
	if (errno != ENOMEM || n < 1000)
		_exit(12);
	/* And the heap still works for what fits. */
	errno = 0;
	if (mh_calloc(SIZE_MAX, 2) != NULL || errno != ENOMEM)
		_exit(13);
	_exit(0);
}

TEST(out_of_memory_returns_null_with_enomem)
{
	struct child_result r;

	if (UNDER_SANITIZER)
		SKIP(return, "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot apply");
	run_child(exhaust_address_space, NULL, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("child died: %s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
}

/* Memory and swap, and whether the kernel grants any size
 * (vm.overcommit_memory=1); 0 when they cannot be read. */
static uint64_t memory_and_swap(bool *always)
{
	char mode = 0;
	int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY);
	struct sysinfo si;

	if (fd >= 0) {
		if (read(fd, &mode, 1) != 1)
			mode = 0;
		close(fd);
	}
	*always = mode == '1';
	if (sysinfo(&si))
		return 0;
	return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
}

static void malloc_more_than_memory(void *arg)
{
	size_t size = *(size_t *)arg;
	void *p;

	alarm(10);
	errno = 0;
	p = mh_malloc(size);
	if (p || errno != ENOMEM)
		_exit(p ? 11 : 12);
	errno = 0;
	p = mh_aligned_alloc((size_t)1 << 30, size);
	if (p || errno != ENOMEM)
		_exit(p ? 13 : 14);
	/* And the heap still serves what fits. */
	p = mh_malloc(100 << 20);
	if (!p)
		_exit(15);
	mh_free(p);
	_exit(0);
}

/* A block four times the size of memory and swap (at least 1 TiB): the
 * kernel would refuse glibc's malloc of it (the heuristic overcommit
 * policy, or the strict one), and mheap's is refused likewise, at once.
 * Before, the heap grew by a heap arena per 64 MiB of it, untouched
 * (MAP_NORESERVE: the policy never saw it), and did not return in 120 s. */
TEST(a_block_larger_than_memory_and_swap_gets_enomem_at_once)
{
	struct child_result r;
	bool always;
	uint64_t total = memory_and_swap(&always);
	size_t size = total * 4 > ((size_t)1 << 40) ? total * 4 : (size_t)1 << 40;

	if (always)
		SKIP(return, "vm.overcommit_memory=1: the kernel grants any size, glibc's malloc too");
	if (!total || size > ((size_t)1 << 45))
		SKIP(return, "memory and swap unknown or above 8 TiB");
	run_child(malloc_more_than_memory, &size, &r);
	ASSERT_TRUE(WIFEXITED(r.status))
		TH_LOG("child died of signal %d (14: SIGALRM, no answer in 10 s): %s",
		       WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%zu bytes: %s", size, r.err);
}

TEST(stats_account_for_objects)
{
	struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT;
	void *p[1000];

	mh_stats_read(&a);
	for (int i = 0; i < 1000; i++)
		p[i] = mh_malloc(64);
	mh_stats_read(&b);
	EXPECT_EQ(a.mallocs + 1000, b.mallocs);
	EXPECT_EQ(a.by_class[size_to_class(64)].mallocs + 1000,
		  b.by_class[size_to_class(64)].mallocs);
	EXPECT_EQ(a.heap_alloc + 64000, b.heap_alloc);
	EXPECT_EQ(b.heap_sys, b.heap_inuse + b.heap_idle);
	EXPECT_LE(b.heap_released, b.heap_idle);
	for (int i = 0; i < 1000; i++)
		mh_free(p[i]);
	mh_stats_read(&b);
	EXPECT_EQ(a.frees + 1000, b.frees);
	EXPECT_EQ(a.heap_alloc, b.heap_alloc);
}

/* A thread that allocates `n` objects of 48 bytes, then waits to be told
 * to free them and exit. */
struct idle_allocator {
	int n;
	void *p[333];
	pthread_barrier_t allocated, go;
};

static void *allocate_then_idle(void *arg)
{
	struct idle_allocator *ia = arg;

	for (int i = 0; i < ia->n; i++)
		ia->p[i] = mh_malloc(48);
	pthread_barrier_wait(&ia->allocated);
	pthread_barrier_wait(&ia->go);
	for (int i = 0; i < ia->n; i++)
		mh_free(ia->p[i]);
	return NULL;
}

TEST(stats_count_another_threads_objects_exactly_while_it_is_idle)
{
	static struct idle_allocator ia = { .n = 333 };	/* not a multiple of 64 */
	unsigned cls = size_to_class(48);
	struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT,
		c = MH_STATS_INIT;
	pthread_t t;

	pthread_barrier_init(&ia.allocated, NULL, 2);
	pthread_barrier_init(&ia.go, NULL, 2);
	mh_stats_read(&a);
	ASSERT_EQ(0, pthread_create(&t, NULL, allocate_then_idle, &ia));
	pthread_barrier_wait(&ia.allocated);
	/* The thread's cache counted its current window as allocated when
	 * it filled it; the objects still in the window are not. */
	mh_stats_read(&b);
	EXPECT_EQ(a.by_class[cls].mallocs + 333, b.by_class[cls].mallocs);
	EXPECT_EQ(a.heap_alloc + 333 * mh_class[cls].size, b.heap_alloc);
	pthread_barrier_wait(&ia.go);
	pthread_join(t, NULL);
	/* At exit the unused window leaves the count too. */
	mh_stats_read(&c);
	EXPECT_EQ(a.by_class[cls].mallocs + 333, c.by_class[cls].mallocs);
	EXPECT_EQ(a.by_class[cls].frees + 333, c.by_class[cls].frees);
	EXPECT_EQ(a.heap_alloc, c.heap_alloc);
}

/*
 * A window's objects are counted (nmalloc, and the stats' peek at a
 * current window) with the popcnt instruction where CPUID has it and with
 * a SWAR sum where not (mh_popcount, internal.h): both give a bit loop's
 * count, and the stats are exact with either.
 */
TEST(counts_of_a_windows_objects_agree_with_and_without_the_popcnt_instruction)
{
#if defined(__x86_64__) && !defined(__POPCNT__)
	unsigned cls = size_to_class(64);
	bool cpu;
	void *p[300];

	mh_free(mh_malloc(1));	/* the heap set up: mh_cpu_popcnt read */
	cpu = __atomic_load_n(&mh_cpu_popcnt, __ATOMIC_RELAXED);
	for (int with = cpu; with >= 0; with--) {
		struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT;
		uint64_t x = 0x9e3779b97f4a7c15ull;

		__atomic_store_n(&mh_cpu_popcnt, (bool)with, __ATOMIC_RELAXED);
		ASSERT_EQ(0, mh_popcount(0));
		ASSERT_EQ(64, mh_popcount(~(uint64_t)0));
		for (int i = 0; i < 10000; i++) {
			unsigned n = 0;

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			/* Sparse and dense words alike. */
			uint64_t w = i % 3 == 0 ? x & (x >> 1) & (x >> 2) :
				     i % 3 == 1 ? x : x | (x >> 3);

			for (int k = 0; k < 64; k++)
				n += (unsigned)(w >> k & 1);
			ASSERT_EQ(n, mh_popcount(w))
				TH_LOG("%#llx, popcnt %d", (unsigned long long)w, with);
		}
		/* Windows filled and left, counted by the slow paths. */
		mh_stats_read(&a);
		for (int i = 0; i < 300; i++)
			p[i] = mh_malloc(64);
		mh_stats_read(&b);
		EXPECT_EQ(a.by_class[cls].mallocs + 300, b.by_class[cls].mallocs)
			TH_LOG("popcnt %d", with);
		EXPECT_EQ(a.heap_alloc + 300 * 64, b.heap_alloc)
			TH_LOG("popcnt %d", with);
		for (int i = 0; i < 300; i++)
			mh_free(p[i]);
	}
	__atomic_store_n(&mh_cpu_popcnt, cpu, __ATOMIC_RELAXED);
	if (!cpu)
		SKIP(return, "this CPU has no popcnt: the SWAR sum alone was checked");
#else
	SKIP(return, "not x86-64, or built with -mpopcnt: mh_popcount has one way");
#endif
}

TEST_HARNESS_MAIN
