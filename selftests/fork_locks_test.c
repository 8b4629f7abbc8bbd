// SPDX-License-Identifier: GPL-2.0
/*
 * Fork while another thread holds one of the library's locks outside the
 * heap: the child must be able to take it. Each test stops a thread inside
 * the section a lock guards - in a system call this file interposes - and
 * forks from another. The stopped thread goes on by itself after a while,
 * so a fork handler that waits for the lock (as it should) only waits; a
 * lock nothing takes or resets around fork stays held in the child, whose
 * next use of it hangs for good. The secure mode's zero-size range needs
 * no interposed call: a malloc(0) of a range with one free slot behind
 * its cursor holds its lock while it searches the whole range, and a
 * thread does little else.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arenamap.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* How long the stopped thread stays in its system call. */
#define STOP_MS		300

static __thread bool stop_here;		/* set by the thread to be stopped */
static atomic_int stopped;		/* it is in the call now */

static void stop_a_while(void)
{
	if (!stop_here)
		return;
	stop_here = false;
	atomic_store(&stopped, 1);
	usleep(STOP_MS * 1000);
}

/* The guard backend's probe: the first arena picks a backend under
 * choice_lock (fault.c). */
int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_GUARD_INSTALL)
		stop_a_while();
	return (int)syscall(SYS_madvise, addr, len, advice);
}

/* The fault handler's installation, under uaf_install's lock (uaf.c). */
int __sigaction(int sig, const struct sigaction *sa, struct sigaction *old);

int sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	if (sig == SIGSEGV && sa)
		stop_a_while();
	return __sigaction(sig, sa, old);
}

static atomic_int forked;

/* Stays until the fork is done: a thread that has ended but is not yet
 * joined at the fork is one TSan reports as leaked when the child exits. */
static void *make_an_arena_stopping(void *arg)
{
	(void)arg;
	stop_here = true;
	mh_arena_free(mh_arena_new());
	while (!atomic_load(&forked))
		usleep(1000);
	return NULL;
}

/* Start a thread that makes an arena and is stopped on the way; fork while
 * it is. Returns how the child, which makes an arena of its own, ended: 0
 * well, -1 hung (killed after 10 s), -2 the thread was never stopped. */
static int fork_while_stopped(void)
{
	pthread_t t;
	pid_t pid;
	int rc;

	atomic_store(&stopped, 0);
	atomic_store(&forked, 0);
	if (pthread_create(&t, NULL, make_an_arena_stopping, NULL))
		return -3;
	for (int ms = 0; !atomic_load(&stopped) && ms < 5000; ms++)
		usleep(1000);
	if (!atomic_load(&stopped)) {
		atomic_store(&forked, 1);
		pthread_join(t, NULL);
		return -2;
	}
	pid = fork();
	if (pid == 0) {
		mh_arena *a = mh_arena_new();

		if (a)
			mh_arena_free(a);
		_exit(a ? 0 : 1);
	}
	atomic_store(&forked, 1);
	rc = wait_child_ms(pid, 10000);
	pthread_join(t, NULL);
	return rc;
}

TEST(fork_while_another_thread_picks_the_fault_backend)
{
	int rc;

	if (access("/dev/mheap", F_OK) == 0)
		SKIP(return, "the kmod backend is picked before the guard backend is probed");
	rc = fork_while_stopped();
	if (rc == -2)
		SKIP(return, "MHEAP_BACKEND names a backend: picked when the program started");
	EXPECT_EQ(0, rc) TH_LOG("child %s", rc == -1 ? "hung" : "failed");
}

TEST(fork_while_another_thread_installs_the_fault_handler)
{
	int rc;

	if (!mh_backend_name() || !strcmp(mh_backend_name(), "none"))
		SKIP(return, "no backend that faults: no handler to install");
	rc = fork_while_stopped();
	EXPECT_EQ(0, rc) TH_LOG("child %s", rc == -1 ? "hung" : rc == -2 ? "thread not stopped" :
				"failed");
}

/* ------------------------------------------------------------ the secure mode */

static atomic_int forks_done;

/* The zero-size range holds one free slot, the one behind its cursor:
 * each malloc(0) here takes it after a search of the whole range under
 * the range's lock (about 0.4 us: a word of the range's summary at a time,
 * secure_zero.c) and frees it, so this thread holds the lock much of the
 * time it runs. It yields between rounds: the lock is not fair, and a
 * thread that did not pause could take it back before the forking
 * thread's prepare handler could, for a long time when a search is slow
 * (tens of seconds under ASan with a bit-by-bit search). */
static void *malloc_0_while_full(void *arg)
{
	(void)arg;
	while (!atomic_load(&forks_done)) {
		for (int i = 0; i < 64; i++)
			mh_free(mh_malloc(0));
		sched_yield();
	}
	return NULL;
}

/* This program again with MHEAP_SECURE=1 (the mode is read at start-up):
 * the zero-size range filled but for one slot, a thread in malloc(0) all
 * the time, and forks whose children free a pointer of the range (its
 * lock taken). Exits with 3 when a child hung (killed after 5 s). */
static int fork_while_malloc_0_scans(void)
{
	void *first = mh_malloc(0), *last = first, *q;
	pthread_t t;
	int rc = 0;

	for (;;) {
		q = mh_malloc(0);
		if (!q || span_of((uintptr_t)q))
			break;	/* the range full: a block of the heap */
		last = q;
	}
	if (!q || last == first)
		return 2;
	mh_free(q);
	mh_free(last);	/* the slot behind the cursor */
	if (pthread_create(&t, NULL, malloc_0_while_full, NULL))
		return 2;
	for (int i = 0; i < 8 && !rc; i++) {
		pid_t pid;

		usleep(2000);
		pid = fork();
		if (pid == 0) {
			mh_free(first);
			_exit(0);
		}
		rc = wait_child_ms(pid, 5000);
	}
	atomic_store(&forks_done, 1);
	pthread_join(t, NULL);
	return rc ? 3 : 0;
}

static void exec_secure(void *arg)
{
	(void)arg;
	setenv("MHEAP_SECURE", "1", 1);
	setenv("MHEAP_SECURE_SAMPLE", "0", 1);
	setenv("FORK_LOCKS_CASE", "zero_size", 1);
	execl("/proc/self/exe", "fork_locks_test", (char *)NULL);
	_exit(127);
}

/* The secure mode's zero-size range (secure_zero.c) has a lock of its own,
 * taken around fork as every allocator lock: without that, a child forked
 * while another thread held it would hang at its first malloc(0) or free
 * of one. */
TEST(fork_while_another_thread_scans_the_zero_size_range)
{
	struct child_result res;

	run_child(exec_secure, NULL, &res);
	EXPECT_TRUE(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0)
		TH_LOG("status %#x (3: a child hung), %s", res.status, res.err);
}

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	const char *c = getenv("FORK_LOCKS_CASE");

	if (c && !strcmp(c, "zero_size"))
		return fork_while_malloc_0_scans();
	return harness_main(argc, argv);
}
