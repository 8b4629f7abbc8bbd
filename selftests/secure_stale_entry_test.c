// SPDX-License-Identifier: GPL-2.0
/*
 * A thread that read the entry table (userlib/entry.h) before the heap was
 * set up holds the default mode's free or free_sized; when it calls it,
 * the heap may have been set up in the secure mode meanwhile, and the
 * pointer may be one the secure layer gave out. Such a free must get the
 * secure mode's checks and work: the default slow paths pass it on
 * (docs/secure.md, "The layer"). The race cannot be staged here (the
 * library's constructor sets the heap up before main), so each case calls
 * the default paths themselves, heap_free_default and
 * heap_free_sized_default, from a thread that has never allocated - the
 * state such a thread is in (no cache: mh_no_cache). The program starts
 * itself again with MHEAP_SECURE=1 (no sampling) when it is not set.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "entry.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "secure.h"

/* What the stale thread frees, and how. */
struct stale_free {
	void *p;
	bool sized;
	size_t size;
	bool had_cache;		/* the thread had a cache (the case is wrong) */
};

static void *stale_thread(void *arg)
{
	struct stale_free *f = arg;

	f->had_cache = mh_tls_fast_cache != &mh_no_cache;
	if (f->sized)
		heap_free_sized_default(f->p, SIZED_FREE, false, 1, f->size);
	else
		heap_free_default(f->p);
	return NULL;
}

/* Free p through the default path from a new thread without a cache;
 * exits the child with 2 if the thread had one. */
static void stale_free(void *p, bool sized, size_t size)
{
	struct stale_free f = { .p = p, .sized = sized, .size = size };
	pthread_t t;

	if (pthread_create(&t, NULL, stale_thread, &f) || pthread_join(t, NULL))
		_exit(2);
	if (f.had_cache)
		_exit(2);
}

/* The mode is on and its paths are in the table: else every case below
 * tests nothing. */
TEST(the_secure_mode_is_on)
{
	ASSERT_TRUE(mh_secure);
	EXPECT_TRUE(mh_entries.free == secure_free);
}

/* A block overflowed into its canary: the stale free reports it as the
 * secure free does. */
static void overflow_then_stale_free(void *arg)
{
	char *p = mh_malloc(32);

	(void)arg;
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	p[32] = 'x';
	stale_free(p, false, 0);
	_exit(0);
}

/* Until 2026-12-07 the default free took the block back unchecked: the
 * child exited 0. */
TEST(a_stale_free_checks_the_canary)
{
	struct child_result r;
	char want[200];
	unsigned long p;

	run_child(overflow_then_stale_free, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want),
		 "%#lx\nmheap: heap overflow: canary after 32-byte block %#lx overwritten at offset 32, detected at free\n",
		 p, p);
	EXPECT_STREQ(want, r.err);
}

/* The secure free zeroes the slot (and a second free is a double free):
 * after a stale free, the block's bytes are zero. */
TEST(a_stale_free_zeroes_the_slot_as_the_secure_free_does)
{
	unsigned char *p = mh_malloc(100);
	size_t i = 0;

	ASSERT_NE(NULL, p);
	memset(p, 0xa5, 100);
	stale_free(p, false, 0);
	while (i < 100 && !p[i])	/* the slot stays the heap's: readable */
		i++;
	EXPECT_EQ(100, i);
}

/* malloc(0)'s pointer lies in the zero-size range, no span of the heap:
 * until 2026-12-07 the stale free called it an invalid free. */
static void zero_size_stale_free(void *arg)
{
	void *p = mh_malloc(0);

	(void)arg;
	stale_free(p, false, 0);
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	mh_free(p);	/* freed: a double free */
	_exit(0);
}

TEST(a_stale_free_of_malloc_0s_pointer_frees_it)
{
	struct child_result r;
	char want[200];
	unsigned long p;

	run_child(zero_size_stale_free, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want), "%#lx\nmheap: double free of %#lx\n", p, p);
	EXPECT_STREQ(want, r.err);
}

/* A 32-byte block takes a 48-byte slot in this mode (its trailer): the
 * default free_sized's check of the class called free_sized(p, 32) a size
 * mismatch until 2026-12-07. Now the secure layer checks it (the size
 * asked for) and frees it. */
static void sized_stale_free(void *arg)
{
	void *p = mh_malloc(32);

	(void)arg;
	stale_free(p, true, 32);
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	mh_free(p);	/* freed: a double free */
	_exit(0);
}

TEST(a_stale_free_sized_is_checked_by_the_secure_layer)
{
	struct child_result r;
	char want[200];
	unsigned long p;

	run_child(sized_stale_free, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want), "%#lx\nmheap: double free of %#lx\n", p, p);
	EXPECT_STREQ(want, r.err);
}

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	static const char *const env[] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=0",
					   "MHEAP_SECURE_MIDDLE_SAMPLE=0", NULL };

	if (!getenv("MHEAP_SECURE"))
		return exec_self_with(argv, env);
	return harness_main(argc, argv);
}
