// SPDX-License-Identifier: GPL-2.0
/*
 * A process that dies of a bad free writes one report, however many of its
 * threads find one at the same time: two racing frees of one object can
 * each be caught (by both freers' checks, or by one and the owner's sweep,
 * userlib/mspan.h "Double frees"), and each thread wrote its line before
 * the first abort took the process down (util.c, mh_fatal).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"

static char expected[128];
static void *first_victim, *second_victim;
static atomic_int aborting;
/* Shared with the child: the address its report must name. */
static uintptr_t *named;

/* The first abort is held up here, as a slow abort would be: long enough
 * for the other thread to find its bad free. Then the abort goes on (the
 * handler returns, abort() takes the default action). */
static void slow_abort(int sig)
{
	struct timespec t = { 0, 300 * 1000 * 1000 };

	(void)sig;
	atomic_store(&aborting, 1);
	nanosleep(&t, NULL);
}

static void *free_twice_once_aborting(void *arg)
{
	(void)arg;
	while (!atomic_load(&aborting))
		;
	mh_free(second_victim);
	mh_free(second_victim);
	return NULL;
}

static void two_threads_find_double_frees(void *arg)
{
	pthread_t t;

	(void)arg;
	signal(SIGABRT, slow_abort);
	first_victim = mh_malloc(64);
	second_victim = mh_malloc(64);
	*named = (uintptr_t)first_victim;
	pthread_create(&t, NULL, free_twice_once_aborting, NULL);
	mh_free(first_victim);
	mh_free(first_victim);
}

TEST(a_second_thread_that_finds_a_bad_free_while_the_first_aborts_writes_nothing)
{
	struct child_result r;

	named = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, named);
	run_child(two_threads_find_double_frees, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("child status %#x, stderr: %s", r.status, r.err);
	snprintf(expected, sizeof(expected), "mheap: double free of %#lx\n", (unsigned long)*named);
	EXPECT_STREQ(expected, r.err);
	munmap(named, 4096);
}

TEST_HARNESS_MAIN
