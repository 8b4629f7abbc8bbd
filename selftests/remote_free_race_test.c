// SPDX-License-Identifier: GPL-2.0
/*
 * A remote double free whose first free lets the span die: the second
 * freer, held (userlib/testhooks.h) after its span lookup and checks and
 * before its first write to the span, resumes once the span has died and
 * its struct has started a new life as a span of the same class, all of
 * whose objects the program holds. The double free must abort with one
 * line naming the address, and no object of the new span may be handed
 * out twice (the defect it catches: the stale freer's bit and count
 * landing in the new span, whose owner then hands out an object the
 * program still holds: userlib/mspan.h, "Dying spans"). And held once it
 * holds the span, as the
 * span dies: the struct must not start a new life, and the free aborts.
 * Each case twice: the second free by free, and by free_sized, whose slow
 * path frees the span it checked (malloc_sized.c) and whose report names
 * the call.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "mheap_impl.h"
#include "internal.h"
#include "arenamap.h"
#include "mspan.h"
#include "testhooks.h"
#include "heapcheck.h"

/* 1 KiB objects: 8 to a one-page span, a class nothing else here uses. */
#define OBJ 1024

static void *victim;
/* The victim's address, for the parent: a shared page. */
static uintptr_t *shared_victim;
static atomic_int entered, go;
/* This thread's remote free of the victim waits at the hook: 1 before it
 * holds the span, 2 once it does (testhooks.h). */
static _Thread_local int held;
/* Whether the held freer frees by free_sized (set before the child). */
static bool sized;

/* Exits the child with a line the test shows, for a step that did not go
 * as the test needs (not the defect it looks for). */
static void setup_failed(const char *what)
{
	fprintf(stderr, "setup: %s\n", what);
	_exit(3);
}

static void wait_for(atomic_int *flag)
{
	struct timespec ms = { 0, 1000000 };

	for (int i = 0; i < 10000 && !atomic_load(flag); i++)
		nanosleep(&ms, NULL);
	if (!atomic_load(flag))
		setup_failed("timed out");
}

static void hold_here(uintptr_t p, int pinned)
{
	if (held != 1 + pinned || p != (uintptr_t)victim)
		return;
	atomic_store(&entered, 1);
	wait_for(&go);
}

static void *allocate_victim(void *arg)
{
	(void)arg;
	victim = mh_malloc(OBJ);	/* the thread's exit lets go of its span */
	return NULL;
}

static void *free_held(void *arg)
{
	held = (int)(intptr_t)arg;
	if (sized)
		mh_free_sized_checked(victim, SIZED_FREE, false, 0, OBJ);
	else
		mh_free(victim);
	return NULL;
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	if (pthread_create(t, NULL, fn, arg))
		setup_failed("pthread_create");
}

/*
 * The child: the victim, the only object of a span no thread owns; a
 * second freer held at the hook (arg: 1 before it holds the span, 2 once
 * it does); the first free, which lets the span die; then as many objects
 * of the class as it takes for the span's struct to start a new life (1)
 * or to show that it does not (2); then the held freer goes on.
 */
static void double_free_across_the_death(void *arg)
{
	int when = (int)(intptr_t)arg;
	void *mine[8 * 64];
	unsigned n = 0, in_s = 0;
	pthread_t owner, second;
	struct mspan *s;
	uint64_t gen;

	start(&owner, allocate_victim, NULL);
	pthread_join(owner, NULL);
	*shared_victim = (uintptr_t)victim;
	s = span_of((uintptr_t)victim);
	if (!s || LOAD_RELAXED(&s->owner) || s->outstanding != 1)
		setup_failed("the victim is not the only object of an unowned span");
	gen = LOAD_ACQUIRE(&s->gen);

	__atomic_store_n(&mh_test_remote_free_window, hold_here, __ATOMIC_RELEASE);
	start(&second, free_held, arg);
	wait_for(&entered);
	/* The first free: the span's last object, so the span dies. */
	mh_free(victim);
	if (LOAD_ACQUIRE(&s->gen) == gen)
		setup_failed("the span did not die");
	/* A span of the same class, every object of which this thread holds:
	 * the struct's next life, unless the held freer keeps it. */
	while (n < 8 * 64 && (when == 2 ? n < 4 * s->nelems : in_s < s->nelems)) {
		void *q = mh_malloc(OBJ);

		mine[n++] = q;
		in_s += span_of((uintptr_t)q) == s;
	}
	if (when == 1 && in_s < s->nelems)
		setup_failed("the span's struct did not start a new life");
	if (when == 2 && in_s) {
		fprintf(stderr, "the struct of a span that died held started a new life\n");
		_exit(1);
	}
	/* The held freer goes on; it must abort. */
	atomic_store(&go, 1);
	pthread_join(second, NULL);
	/* It did not: its free went into the new life. Refills then fold it,
	 * and an object this thread holds is handed out again. */
	for (unsigned k = 0; k < 4 * 64; k++) {
		void *q = mh_malloc(OBJ);

		for (unsigned i = 0; i < n; i++)
			if (mine[i] == q) {
				fprintf(stderr, "handed out twice: %p\n", q);
				_exit(1);
			}
	}
	fprintf(stderr, "no abort\n");
	_exit(2);
}

/* The child's whole stderr must be the one line naming the victim, and
 * free_sized if that was the held freer's call. */
static void expect_double_free_abort(struct __test_metadata *_metadata, int when,
				     bool by_free_sized)
{
	struct child_result r;
	char want[128];

	shared_victim = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared_victim);
	sized = by_free_sized;
	run_child(double_free_across_the_death, (void *)(intptr_t)when, &r);
	snprintf(want, sizeof(want), "mheap: double free of %#lx%s\n", (unsigned long)*shared_victim,
		 by_free_sized ? " in free_sized" : "");
	munmap(shared_victim, 4096);
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("child status %#x", r.status);
	EXPECT_STREQ(want, r.err);
}

/* The freer resumes into the struct's new life, before its first write:
 * it finds the life it checked ended, rather than putting its bit and
 * count into the new span, which would hand out an object held again. */
TEST(remote_double_free_held_while_the_span_dies_and_its_struct_is_reborn)
{
	expect_double_free_abort(_metadata, 1, false);
}

TEST(remote_double_free_sized_held_while_the_span_dies_and_its_struct_is_reborn)
{
	expect_double_free_abort(_metadata, 1, true);
}

/* The freer holds the span as it dies: the struct stays out of reuse (the
 * next span of its class gets another), and the freer finds it dead. */
TEST(remote_double_free_holding_the_span_as_it_dies)
{
	expect_double_free_abort(_metadata, 2, false);
}

TEST(remote_double_free_sized_holding_the_span_as_it_dies)
{
	expect_double_free_abort(_metadata, 2, true);
}

/*
 * fork while a correct remote free holds its span (held after its pin,
 * before its bit): the child has no such freer, so nothing may stay of
 * its pin. The child's full heap check must pass (the freer had written
 * nothing else), and the child's own free of the object (whose free never
 * happened in the child) lets the span die for good: its struct starts a
 * new life, not kept out of reuse as if a freer still held it. A pin left
 * in the child shows as the check's "remote flags 0x100", and without the
 * check as the struct kept out of reuse.
 */
static void fork_child_of_a_pinned_freer(void)
{
	struct mspan *s = span_of((uintptr_t)victim);
	unsigned n = 0, in_s = 0;
	char msg[256];

	if (mheap_check(HEAPCHECK_ALL, msg, sizeof(msg))) {
		fprintf(stderr, "heap check: %s\n", msg);
		_exit(1);
	}
	mh_free(victim);	/* the last object: the span dies */
	while (n < 8 * 64 && in_s < s->nelems) {
		void *q = mh_malloc(OBJ);	/* held: never freed */

		n++;
		in_s += span_of((uintptr_t)q) == s;
	}
	if (in_s < s->nelems) {
		fprintf(stderr, "the span's struct was kept out of reuse\n");
		_exit(1);
	}
	_exit(0);
}

static void fork_while_a_freer_holds_the_span(void *arg)
{
	pthread_t owner, second;
	int status;
	pid_t pid;

	(void)arg;
	start(&owner, allocate_victim, NULL);
	pthread_join(owner, NULL);
	struct mspan *s = span_of((uintptr_t)victim);

	if (!s || LOAD_RELAXED(&s->owner) || s->outstanding != 1)
		setup_failed("the victim is not the only object of an unowned span");
	__atomic_store_n(&mh_test_remote_free_window, hold_here, __ATOMIC_RELEASE);
	start(&second, free_held, (void *)(intptr_t)2);
	wait_for(&entered);
	if (!(LOAD_ACQUIRE(&s->remote) & REMOTE_PINS))
		setup_failed("the freer holds no pin");
	pid = fork();
	if (pid < 0)
		setup_failed("fork");
	if (pid == 0)
		fork_child_of_a_pinned_freer();
	if (waitpid(pid, &status, 0) != pid)
		setup_failed("waitpid");
	/* The parent's freer finishes its (correct) free. */
	atomic_store(&go, 1);
	pthread_join(second, NULL);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 4);
}

TEST(fork_while_a_remote_free_holds_its_span)
{
	struct child_result r;

	run_child(fork_while_a_freer_holds_the_span, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("child status %#x: %s", r.status, r.err);
}

TEST_HARNESS_MAIN
