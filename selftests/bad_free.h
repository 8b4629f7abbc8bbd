/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests of bad frees (heap_double_free_test.c,
 * heap_invalid_free_test.c, heap_racing_frees_test.c) share: a bad free
 * aborts with one line naming the address; each test sets `victim` and
 * the line it expects (WANT), and expect_abort runs the free in a child
 * process and checks that the child died of SIGABRT with exactly that
 * line on stderr. And the frees more than one of those files makes.
 */
#ifndef MHEAP_BAD_FREE_H
#define MHEAP_BAD_FREE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "internal.h"
#include "arenamap.h"
#include "checkedfree.h"
#include "mcache.h"
#include "mspan.h"

static char expected[128];

/* The child's whole stderr must be exactly the one expected line. */
static inline void expect_abort(struct __test_metadata *_metadata, void (*fn)(void *),
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

/* Run fn(arg) on a thread of its own and wait for it. Runs in the child:
 * a thread that cannot start ends it with a status and a line that
 * expect_abort reports, never with a join of an unset handle. */
static inline void on_a_new_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, fn, arg);

	if (err) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		_exit(2);
	}
	pthread_join(t, NULL);
}

static inline void *free_it(void *p)
{
	mh_free(p);
	return NULL;
}

static inline void free_victim(void *arg)
{
	(void)arg;
	mh_free(victim);
}

#endif /* MHEAP_BAD_FREE_H */
