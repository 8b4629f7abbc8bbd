// SPDX-License-Identifier: GPL-2.0
/*
 * Bad frees abort with one line naming the address, in a child process:
 * double frees (by the owning thread, by another thread, of large objects,
 * through realloc) and invalid frees (foreign, interior and stack pointers).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "internal.h"

static char expected[128];

/* The child's whole stderr must be exactly the one expected line. */
static void expect_abort(struct __test_metadata *_metadata, void (*fn)(void *),
			 const char *what)
{
	struct child_result r;

	run_child(fn, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("%s: child status %#x, stderr: %s",
						 what, r.status, r.err);
	ASSERT_NE(NULL, strstr(r.err, expected)) TH_LOG("%s: want \"%s\", got \"%s\"",
							 what, expected, r.err);
	EXPECT_EQ(strlen(r.err), strlen(expected) + 1) TH_LOG("%s: got \"%s\"", what, r.err);
}

#define WANT(fmt, p) snprintf(expected, sizeof(expected), fmt, (unsigned long)(uintptr_t)(p))

static void *victim;

static void free_twice(void *arg)
{
	(void)arg;
	mh_free(victim);
	mh_free(victim);
}

TEST(double_free_of_a_small_object)
{
	victim = mh_malloc(64);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "small");
}

TEST(double_free_of_a_large_object)
{
	victim = mh_malloc(1 << 20);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "large");
}

static void *free_it(void *p)
{
	mh_free(p);
	return NULL;
}

static void free_twice_remote(void *arg)
{
	pthread_t t;

	(void)arg;
	/* This thread's cache owns the span; the other thread frees first. */
	pthread_create(&t, NULL, free_it, victim);
	pthread_join(t, NULL);
	mh_free(victim);
}

static void free_here_then_remote(void *arg)
{
	pthread_t t;

	(void)arg;
	mh_free(victim);
	pthread_create(&t, NULL, free_it, victim);
	pthread_join(t, NULL);
}

TEST(double_free_across_threads)
{
	victim = mh_malloc(128);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice_remote, "remote then local");
	expect_abort(_metadata, free_here_then_remote, "local then remote");
}

static void free_after_span_died(void *arg)
{
	(void)arg;
	/* The only object of its span: freeing it returns the span... */
	mh_free(victim);
	/* ...and its pages; the second free finds free pages. */
	mh_free(victim);
}

TEST(double_free_after_the_pages_went_back)
{
	victim = mh_malloc(20000);
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_after_span_died, "span died");
}

TEST(double_free_of_a_large_object_in_the_span_cache)
{
	victim = mh_malloc(5 * MH_PAGE_SIZE);	/* freed whole into the cache */
	WANT("mheap: double free of %#lx", victim);
	expect_abort(_metadata, free_twice, "cached span");
}

static void realloc_freed(void *arg)
{
	(void)arg;
	mh_free(victim);
	/* Keep the span alive so the slot is still a valid object start. */
	(void)mh_realloc(victim, 200);
}

TEST(realloc_of_a_freed_pointer)
{
	void *keep = mh_malloc(64);

	victim = mh_malloc(64);
	(void)keep;
	WANT("mheap: double free of %#lx in realloc (pointer already freed)", victim);
	expect_abort(_metadata, realloc_freed, "realloc");
}

static void free_victim(void *arg)
{
	(void)arg;
	mh_free(victim);
}

TEST(invalid_free_of_a_foreign_pointer)
{
	victim = malloc(32);	/* libc's, not ours */
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "libc pointer");
}

TEST(invalid_free_of_a_stack_pointer)
{
	int local;

	victim = &local;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "stack pointer");
}

TEST(invalid_free_inside_an_object)
{
	char *p = mh_malloc(100);

	victim = p + 8;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "small interior");
	p = mh_malloc(100000);
	victim = p + 4096;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "large interior");
}

TEST_HARNESS_MAIN
