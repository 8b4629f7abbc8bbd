// SPDX-License-Identifier: GPL-2.0
/*
 * Fork while another thread holds one of the library's locks outside the
 * heap: the child must be able to take it. Each test stops a thread inside
 * the section a lock guards - in a system call this file interposes - and
 * forks from another. The stopped thread goes on by itself after a while,
 * so a fork handler that waits for the lock (as it should) only waits; a
 * lock nothing takes or resets around fork stays held in the child, whose
 * next use of it hangs for good.
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

TEST_HARNESS_MAIN
