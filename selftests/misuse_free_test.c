// SPDX-License-Identifier: GPL-2.0
/*
 * Bad pointers given to free and to the calls that check a block as free
 * does, in the misuse tests (misuse_fixture.h): double frees of a small,
 * middle and large block, a pointer inside a block, realloc,
 * malloc_usable_size and free_sized of a freed block, free_sized of memory
 * malloc never gave. Every mode aborts on a double or invalid free,
 * naming the call.
 */
#define _GNU_SOURCE
#include "misuse_fixture.h"

/* A block of size bytes freed twice. */
static void double_free_of(size_t size)
{
	void *p = small_block(size);

	mh_free(p);
	mh_free(p);
}

static void double_free(void)
{
	double_free_of(32);
}
MISUSE_TEST(double_free, ALL_MODES({ ABORTS, "mheap: double free of $1" }))

static void double_free_middle(void)
{
	double_free_of(MIDDLE);
}
MISUSE_TEST(double_free_middle, ALL_MODES({ ABORTS, "mheap: double free of $1" }))

static void double_free_large(void)
{
	double_free_of(LARGE);
}
MISUSE_TEST(double_free_large, ALL_MODES({ ABORTS, "mheap: double free of $1" }))

static void invalid_free(void)
{
	char *p = small_block(32);

	say(p + 8);
	mh_free(p + 8);
}
MISUSE_TEST(invalid_free, ALL_MODES({ ABORTS, "mheap: invalid free of $3 (inside an object)" }))

/* realloc of a block already freed: a double free, named as realloc's. */
static void realloc_after_free_of(size_t size)
{
	void *p = small_block(size);

	mh_free(p);
	(void)mh_realloc(p, size + 100);
}

static void realloc_after_free(void)
{
	realloc_after_free_of(32);
}
/* realloc names itself, in every mode alike. */
MISUSE_TEST(realloc_after_free, { ABORTS, "mheap: double free of $1 in realloc" },
	{ ABORTS, "mheap: double free of $1 in realloc" },
	{ ABORTS, "mheap: double free of $1 in realloc" })

static void realloc_after_free_middle(void)
{
	realloc_after_free_of(MIDDLE);
}
MISUSE_TEST(realloc_after_free_middle, ALL_MODES({ ABORTS, "mheap: double free of $1 in realloc" }))

static void realloc_after_free_large(void)
{
	realloc_after_free_of(LARGE);
}
MISUSE_TEST(realloc_after_free_large, ALL_MODES({ ABORTS, "mheap: double free of $1 in realloc" }))

/* malloc(0)'s block: by default a small one, in the secure modes an
 * address of the zero-size range (secure_zero.c). */
static void realloc_after_free_zero_size(void)
{
	realloc_after_free_of(0);
}
MISUSE_TEST(realloc_after_free_zero_size, { ABORTS, "mheap: double free of $1 in realloc" },
	{ ABORTS, "mheap: double free of $1 in realloc" },
	{ ABORTS, "mheap: double free of $1 in realloc" })

/* malloc_usable_size of a block already freed: named as that call's,
 * which frees nothing. */
static void usable_size_after_free_of(size_t size)
{
	void *p = small_block(size);

	mh_free(p);
	(void)mh_usable_size(p);
}

static void usable_size_after_free(void)
{
	usable_size_after_free_of(32);
}
/* By default malloc_usable_size checks nothing; in the secure modes it
 * checks a block as free does, and names itself. */
MISUSE_TEST(usable_size_after_free, NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE)

static void usable_size_after_free_middle(void)
{
	usable_size_after_free_of(MIDDLE);
}
MISUSE_TEST(usable_size_after_free_middle, NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE)

static void usable_size_after_free_large(void)
{
	usable_size_after_free_of(LARGE);
}
MISUSE_TEST(usable_size_after_free_large, NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE)

/* free_sized of a block already freed, with its size. */
static void free_sized_after_free(void)
{
	void *p = small_block(32);

	mh_free(p);
	mh_free_sized_checked(p, SIZED_FREE, false, 1, 32);
}
/* A small block's double free names the call in every mode. */
MISUSE_TEST(free_sized_after_free, ALL_MODES({ ABORTS, "mheap: double free of $1 in free_sized" }))

/* free_sized of memory malloc never gave (a static buffer). */
static void free_sized_not_from_malloc(void)
{
	static char buf[64];

	say(buf);
	mh_free_sized_checked(buf, SIZED_FREE, false, 1, 64);
}
MISUSE_TEST(free_sized_not_from_malloc, ALL_MODES({ ABORTS, "mheap: invalid free of $1 in free_sized" }))

TEST_HARNESS_MAIN
