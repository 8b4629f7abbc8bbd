// SPDX-License-Identifier: GPL-2.0
/*
 * Programs with no misuse, in the misuse tests (misuse_fixture.h): nothing
 * may be reported in any mode, also for blocks a child of fork() uses.
 */
#define _GNU_SOURCE
#include "misuse_fixture.h"

/* No misuse at all: random sizes up to 256 KiB (small, middle and
 * guarded), through malloc, calloc, aligned_alloc and realloc, every byte
 * written, freed in random order (run with MHEAP_SECURE_LARGE=128K, so that
 * blocks from 128 KiB are guarded, those below middle blocks). Nothing may be reported: a slot that
 * comes back with data the program never wrote after its free (a span of
 * dirty pages taken as clean) would be a false "write after free". */
static void no_misuse(void)
{
	enum { SLOTS = 1024 };
	static char *slot[SLOTS];
	uint64_t x = 88172645463325252ull;

	/* Every allocation is guarded in the sampled mode: a few seconds. */
	for (int i = 0; i < 40000; i++) {
		unsigned j, k;
		size_t size;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (unsigned)(x % SLOTS);
		k = (unsigned)(x >> 20) % 100;
		size = k < 70 ? 1 + (x >> 32) % 512 : k < 96 ? (x >> 32) % 32768 : (x >> 32) % (256 << 10);
		if (slot[j] && k % 4 == 0) {
			slot[j] = mh_realloc(slot[j], size + 1);
		} else {
			mh_free(slot[j]);
			slot[j] = k % 8 == 1 ? mh_calloc(1, size + 1)
				: k % 8 == 2 ? mh_aligned_alloc((size_t)64 << (x >> 40) % 9, size + 1)
				: mh_malloc(size + 1);
		}
		if (!slot[j])
			_exit(2);
		memset(slot[j], 'x', size + 1);
	}
	for (unsigned j = 0; j < SLOTS; j++)
		mh_free(slot[j]);
}
/* Blocks between 32 KiB and 128 KiB middle ones: their pages come back
 * dirty, and must not be taken for clean slots. */
MISUSE_TEST_ENV(no_misuse, "MHEAP_SECURE_LARGE=128K", ALL_MODES(NOT_CAUGHT))

/* No misuse either: blocks allocated before fork() are the child's too,
 * whatever memory they live in (sampled, the small one is guarded; in the
 * secure modes the large one is): the child reads the parent's contents,
 * writes over them and frees them, and the parent's stay its own. */
static void blocks_across_fork(void)
{
	char *small = mh_malloc(32), *large = mh_malloc(LARGE);
	int status = 0;
	pid_t pid;

	if (!small || !large)
		_exit(2);
	memset(small, 's', 32);
	memset(large, 'l', LARGE);
	pid = fork();
	if (pid == 0) {
		if (small[0] != 's' || small[31] != 's' || large[0] != 'l' ||
		    large[LARGE - 1] != 'l')
			_exit(4);
		memset(small, 'c', 32);
		memset(large, 'c', LARGE);
		mh_free(small);
		mh_free(large);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		_exit(2);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "blocks_across_fork: child status %#x\n", status);
		_exit(4);
	}
	if (small[31] != 's' || large[LARGE - 1] != 'l')
		_exit(5);
	mh_free(small);
	mh_free(large);
}
MISUSE_TEST(blocks_across_fork, ALL_MODES(NOT_CAUGHT))

TEST_HARNESS_MAIN
