// SPDX-License-Identifier: GPL-2.0
/*
 * Use after free, in the misuse tests (misuse_fixture.h): reads and writes
 * of a freed small, middle and large block, and a freed block handed out
 * again at once. A small block faults only when sampled; in the secure
 * mode a write after free into it is found when its slot is handed out
 * again. A middle block faults only when sampled (guarded); a write after
 * free is found when its delay ends. A large block is guarded in the
 * secure modes and faults.
 */
#define _GNU_SOURCE
#include "misuse_fixture.h"

static void small_read_after_free(void)
{
	char *p = small_block(32);

	memset(p, 1, 32);
	mh_free(p);
	sink = p[0];
}
/* A small block faults only when sampled. */
MISUSE_TEST(small_read_after_free, NOT_CAUGHT, NOT_CAUGHT, UAF("read of", "32"))

/* In the secure mode the write is found when the slot is handed out
 * again: allocate (and free) blocks of its size until it is. */
static void small_write_after_free(void)
{
	char *p = small_block(32);

	mh_free(p);
	p[0] = 1;
	for (int i = 0; i < 100000; i++)
		mh_free(mh_malloc(32));
}
MISUSE_TEST(small_write_after_free, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 48-byte slot $1 written at offset 0 "
		  "after its free, detected at its reuse" },
	UAF("write to", "32"))

/* A write after free at offset at of a 1000-byte block (a 1024-byte slot
 * in the secure mode), then blocks of its size from malloc (or calloc)
 * until its slot is handed out again. $3 the byte written. */
static void write_after_free_at(size_t at, bool by_calloc)
{
	char *p = small_block(1000);

	say(p + at);
	mh_free(p);
	p[at] = 1;
	for (int i = 0; i < 100000; i++)
		mh_free(by_calloc ? mh_calloc(1, 1000) : mh_malloc(1000));
}

/* In the secure mode a slot's last 64 bytes are checked at every reuse. */
static void small_write_after_free_near_end(void)
{
	write_after_free_at(999, false);
}
MISUSE_TEST(small_write_after_free_near_end, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 1024-byte slot $1 written at offset 999 "
		  "after its free, detected at its reuse" },
	UAF_AT("write to", "999", "1000"))

/* A slot's middle is checked at reuse by calloc (and by malloc at random). */
static void small_write_after_free_middle_calloc(void)
{
	write_after_free_at(500, true);
}
MISUSE_TEST(small_write_after_free_middle_calloc, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 1024-byte slot $1 written at offset 500 "
		  "after its free, detected at its reuse" },
	UAF_AT("write to", "500", "1000"))

/* Middle blocks (secure mode: between the small classes and
 * MHEAP_SECURE_LARGE; sampled mode: every one guarded). */
static void middle_read_after_free(void)
{
	char *p = small_block(MIDDLE);

	memset(p, 1, MIDDLE);
	mh_free(p);
	sink = p[0];
}
/* A middle block faults only when sampled (guarded); a write after
 * free is found when its delay ends, an overflow at free. */
MISUSE_TEST(middle_read_after_free, NOT_CAUGHT, NOT_CAUGHT, UAF("read of", "65536"))

/* A write after free at offset at of a block of size bytes, then frees of
 * middle blocks until its delay is over (secure_middle.c: at most 8
 * blocks). $3 the byte. */
static void middle_write_after_free_at(size_t size, size_t at)
{
	char *p = small_block(size);

	say(p + at);
	mh_free(p);
	p[at] = 1;
	for (int i = 0; i < 16; i++)
		mh_free(mh_malloc(MIDDLE));
}

static void middle_write_after_free(void)
{
	middle_write_after_free_at(MIDDLE, 0);
}
MISUSE_TEST(middle_write_after_free, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 65536-byte block $1 written at offset 0 "
		  "after its free, detected at its release" },
	UAF("write to", "65536"))

/* The block's last 64 bytes are checked too. */
static void middle_write_after_free_near_end(void)
{
	middle_write_after_free_at(MIDDLE, MIDDLE - 1);
}
MISUSE_TEST(middle_write_after_free_near_end, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 65536-byte block $1 written at offset 65535 "
		  "after its free, detected at its release" },
	UAF_AT("write to", "65535", "65536"))

/* Up to its last byte, whatever its length: 65,541 bytes end 5 bytes into
 * a word. */
static void middle_write_after_free_at_an_odd_end(void)
{
	middle_write_after_free_at(MIDDLE + 5, MIDDLE + 4);
}
MISUSE_TEST(middle_write_after_free_at_an_odd_end, NOT_CAUGHT,
	{ ABORTS, "mheap: write after free: 65541-byte block $1 written at offset 65540 "
		  "after its free, detected at its release" },
	UAF_AT("write to", "65540", "65541"))

static void large_read_after_free(void)
{
	char *p = small_block(LARGE);

	memset(p, 1, LARGE);
	mh_free(p);
	sink = p[0];
}
MISUSE_TEST(large_read_after_free, NOT_CAUGHT, UAF("read of", "2097152"), UAF("read of", "2097152"))

static void large_write_after_free(void)
{
	char *p = small_block(LARGE);

	mh_free(p);
	p[0] = 1;
}
MISUSE_TEST(large_write_after_free, NOT_CAUGHT, UAF("write to", "2097152"), UAF("write to", "2097152"))

/* The freed block's pages serve the next block (arena_warm.c): the old
 * address faults all the same. */
static void large_read_after_free_pages_reused(void)
{
	char *p = small_block(LARGE), *q;

	memset(p, 1, LARGE);
	mh_free(p);
	q = mh_malloc(LARGE);
	if (!q)
		_exit(2);
	memset(q, 2, LARGE);
	sink = p[0];
}
/* By default the next block is the freed one, read back. */
MISUSE_TEST(large_read_after_free_pages_reused, NOT_CAUGHT, UAF("read of", "2097152"),
					  UAF("read of", "2097152"))

/* Ends with status 3 when the next malloc of the size returns the block
 * just freed, for a small, a middle and a large block. */
static void immediate_reuse(void)
{
	const size_t sizes[] = { 32, MIDDLE, LARGE };

	for (unsigned i = 0; i < 3; i++) {
		void *p = mh_malloc(sizes[i]);

		mh_free(p);
		if (mh_malloc(sizes[i]) == p)
			_exit(3);
	}
}
/* By default the middle block comes back; in the secure modes none. */
MISUSE_TEST(immediate_reuse, { REUSED, NULL }, NOT_CAUGHT, NOT_CAUGHT)

TEST_HARNESS_MAIN
