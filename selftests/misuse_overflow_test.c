// SPDX-License-Identifier: GPL-2.0
/*
 * Heap overflow, in the misuse tests (misuse_fixture.h): writes past the
 * end of a small, middle and large block, also after realloc moved its end
 * in place. The secure mode finds a small or middle block's at free (or
 * realloc), by its canary and trailer; a guarded block (large, or any
 * sampled one) faults at the write.
 */
#define _GNU_SOURCE
#include "misuse_fixture.h"

/* Overflow by n bytes past a 32-byte block, then free it. */
static void small_overflow(size_t n)
{
	char *p = small_block(32);

	memset(p + 32, 'x', n);
	mh_free(p);
}

static void small_overflow_1(void)
{
	small_overflow(1);
}
MISUSE_TEST(small_overflow_1, NOT_CAUGHT, CANARY, PAST_END("32"))

static void small_overflow_32(void)
{
	small_overflow(32);
}
/* 32 bytes reach the trailer that holds the block's size: the
 * report names the slot. */
MISUSE_TEST(small_overflow_32, NOT_CAUGHT,
	{ ABORTS, "mheap: heap overflow: canary at the end of 48-byte slot $1 overwritten, "
		  "detected at free" },
	PAST_END("32"))

/* A write at offset at past the end of a block of from bytes, every byte
 * written, that realloc grew or shrank to to bytes in place. The canary
 * must have moved to the block's new end: where it has not, the report
 * names a lower offset (a stale byte of the old block or of the slot).
 * $1 the block, $2 its end, $3 the byte written. */
static void realloc_overflow(size_t from, size_t to, size_t at)
{
	char *p = mh_malloc(from);

	memset(p, 'a', from);
	p = mh_realloc(p, to);
	say(p);
	say(p + to);
	say(p + at);
	p[at] = 'x';
	mh_free(p);
}

static void small_overflow_after_realloc_grow(void)
{
	realloc_overflow(260, 270, 278);
}
/* By default nothing is caught; in the secure mode the canary has
 * moved with the block's end (grown in its 288-byte slot, shrunk in
 * its 112-byte one). Sampled, the grown block moves to a guarded
 * block of its own, against the guard page; the shrunk one stays. */
MISUSE_TEST(small_overflow_after_realloc_grow, NOT_CAUGHT, CANARY_AT("270", "278"),
	{ FAULTS, "mheap: heap overflow: write to $3, 8 bytes past the end of "
		  "270-byte block [$1, $2) (@ backend)" })

static void small_overflow_after_realloc_shrink(void)
{
	realloc_overflow(100, 60, 68);
}
MISUSE_TEST(small_overflow_after_realloc_shrink, NOT_CAUGHT, CANARY_AT("60", "68"),
					   CANARY_AT("60", "68"))

/* A byte past a 20-byte block written, then realloc to 28 bytes: in
 * place (its slot, or its guarded block's room before the guard), over the
 * written byte, which realloc must check first as free would. */
static void small_overflow_then_realloc(void)
{
	char *p = small_block(20);

	p[20] = 'x';
	p = mh_realloc(p, 28);
	mh_free(p);
}
/* Sampled, the block is guarded, with 12 canary bytes before its
 * guard: realloc grows it in place over them. */
MISUSE_TEST(small_overflow_then_realloc, NOT_CAUGHT, CANARY_IN_REALLOC, CANARY_IN_REALLOC)

static void middle_overflow_1(void)
{
	char *p = small_block(MIDDLE);

	p[MIDDLE] = 'x';
	mh_free(p);
}
MISUSE_TEST(middle_overflow_1, NOT_CAUGHT, CANARY_AT("65536", "65536"), PAST_END("65536"))

/* A block whose canary and trailer end its pages (65,512 + 16 + 8 bytes:
 * 8 pages), overflowed by 24 bytes up to its pages' end, a byte at a time:
 * the trailer that holds its size is hit, and the report names the pages.
 * Guarded, the block ends 8 bytes (of canary) short of the guard page: $3
 * is where the ninth byte faults. */
static void middle_overflow_trailer(void)
{
	size_t n = (64 << 10) - 24;
	volatile char *p = small_block(n);

	say((char *)p + n + 8);
	for (size_t i = 0; i < 24; i++)
		p[n + i] = 'x';
	mh_free((char *)p);
}
MISUSE_TEST(middle_overflow_trailer, NOT_CAUGHT,
	{ ABORTS, "mheap: heap overflow: canary at the end of 65536-byte slot $1 "
		  "overwritten, detected at free" },
	{ FAULTS, "mheap: heap overflow: write to $3, 8 bytes past the end of "
		  "65512-byte block [$1, $2) (@ backend)" })

static void large_overflow(void)
{
	char *p = small_block(LARGE);

	memset(p + LARGE, 'x', LARGE);
	mh_free(p);
}
/* By default a large block sits at the top of the heap: running
 * as far again past it leaves the heap's mapping, with no report. */
MISUSE_TEST(large_overflow, { CRASHES, NULL }, PAST_END("2097152"), PAST_END("2097152"))

TEST_HARNESS_MAIN
