// SPDX-License-Identifier: GPL-2.0
/*
 * The quarantine scan and the program's own threads (scan_range.h):
 * scans complete while threads allocate, free, start and exit, and across
 * fork; a running thread is stopped and its stack read; a blocked read is
 * restarted, not interrupted; a thread frozen in the stop handler
 * (PTRACE_INTERRUPT) still resumes; a thread blocking the stop signal, or
 * the program's own SIGURG handler, makes scans incomplete with a warning;
 * a SIGURG not the scan's reaches the handler installed before.
 */
#define _GNU_SOURCE
#include "scan_range.h"

#include <ucontext.h>

/* ------------------------------------------------------------ threads */

/* Threads that allocate, free, hold the pointer, come and go while the
 * main thread scans: every scan completes and finds the pointer a live
 * thread holds. */
struct churn {
	_Atomic bool stop;
	uintptr_t enc;
};

static void *short_lived(void *arg)
{
	void *p = mh_malloc(100);

	mh_free(p);
	return arg;
}

static void *churner(void *arg)
{
	struct churn *ch = arg;
	void *keep[64] = { 0 };
	unsigned i = 0;

	while (!atomic_load(&ch->stop)) {
		pthread_t t;

		mh_free(keep[i % 64]);
		keep[i % 64] = mh_malloc(16 + i % 2000);
		if (i % 16 == 0 && !pthread_create(&t, NULL, short_lived, NULL))
			pthread_join(t, NULL);
		i++;
	}
	for (i = 0; i < 64; i++)
		mh_free(keep[i]);
	return NULL;
}

TEST(scans_complete_while_threads_allocate_free_start_and_exit)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th[3];
	int found = 0, scans = 0;

	ASSERT_NE(0, ch.enc);
	set_global(ch.enc, 77);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, churner, &ch));
	for (; scans < CONCURRENT_SCANS; scans++)
		found += scan_one(ch.enc) == 1;
	atomic_store(&ch.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	EXPECT_EQ(scans, found);
	global_root = NULL;
	range_free(ch.enc);
}

static void *forker(void *arg)
{
	struct churn *ch = arg;

	while (!atomic_load(&ch->stop)) {
		pid_t pid = fork();

		if (pid == 0) {
			/* The child can scan too: the lock came over free. */
			_exit(scan_one(ch->enc) == 1 ? 0 : 1);
		}
		if (pid < 0 || wait_child_ms(pid, 10000) != 0) {
			atomic_store(&ch->stop, true);
			return (void *)1;
		}
	}
	return NULL;
}

TEST(fork_during_scans_leaves_parent_and_child_scanning)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th;
	void *failed = NULL;
	int found = 0, scans = 0;

	ASSERT_NE(0, ch.enc);
	set_global(ch.enc, 77);
	ASSERT_EQ(0, pthread_create(&th, NULL, forker, &ch));
	for (; scans < CONCURRENT_SCANS && !atomic_load(&ch.stop); scans++)
		found += scan_one(ch.enc) == 1;
	atomic_store(&ch.stop, true);
	pthread_join(th, &failed);
	EXPECT_EQ(NULL, failed);
	EXPECT_EQ(scans, found);
	global_root = NULL;
	range_free(ch.enc);
}

static void *spin_with_pointer(void *arg)
{
	struct churn *ch = arg;
	volatile uintptr_t local = ch->enc ^ KEY;

	while (!atomic_load(&ch->stop))
		;
	local = 0;
	(void)local;
	return NULL;
}

/* A thread in a busy loop, never in a system call, is stopped too. */
TEST(a_running_thread_is_stopped_and_its_stack_read)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th;

	ASSERT_NE(0, ch.enc);
	ASSERT_EQ(0, pthread_create(&th, NULL, spin_with_pointer, &ch));
	usleep(20000);
	EXPECT_EQ(1, scan_one(ch.enc));
	atomic_store(&ch.stop, true);
	pthread_join(th, NULL);
	EXPECT_EQ(0, scan_one(ch.enc));
	range_free(ch.enc);
}

/* The stop signal is SA_RESTART: a read blocked through scans goes on. */
TEST(a_blocked_read_is_restarted_not_interrupted)
{
	uintptr_t enc = range_new();
	struct reader rd = { .tid = 0 };
	pthread_t th;
	void *err = (void *)-1;

#ifdef __SANITIZE_THREAD__
	SKIP(return, "ThreadSanitizer holds the stop signal back until a system call returns");
#endif
	ASSERT_NE(0, enc);
	ASSERT_EQ(0, pipe(rd.fds));
	ASSERT_EQ(0, pthread_create(&th, NULL, read_a_byte, &rd));
	while (!atomic_load(&rd.tid))
		usleep(100);
	ASSERT_TRUE(wait_in_syscall(atomic_load(&rd.tid), SYS_read));
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(0, scan_one(enc));
	ASSERT_EQ(1, write(rd.fds[1], "x", 1));
	pthread_join(th, &err);
	EXPECT_EQ(NULL, err);
	close(rd.fds[0]);
	close(rd.fds[1]);
	range_free(enc);
}

/* ------------------------------------------------------------ the stop */

/*
 * The tracer of missed_the_end...: seizes tid, lets the first stop signal
 * in, freezes the thread (PTRACE_INTERRUPT) on the first byte from cmd and
 * lets it go on the second, answering each step on ack.
 */
static int freeze_in_the_stop(pid_t tid, int cmd, int ack)
{
	int st;
	char c;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0))
		return 10;
	if (write(ack, "s", 1) != 1 || waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st) ||
	    WSTOPSIG(st) != SIGURG || ptrace(PTRACE_CONT, tid, 0, SIGURG))
		return 11;
	if (read(cmd, &c, 1) != 1 || ptrace(PTRACE_INTERRUPT, tid, 0, 0) ||
	    waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st) || write(ack, "f", 1) != 1)
		return 12;
	if (read(cmd, &c, 1) != 1 || ptrace(PTRACE_DETACH, tid, 0, 0) || write(ack, "d", 1) != 1)
		return 13;
	return 0;
}

/*
 * A stopped thread may not run again before the next scan has begun and
 * ended (a loaded machine; under ThreadSanitizer a thread still in the
 * handler is left running after 10 ms): it must still leave the handler
 * once it runs. Here a tracer freezes it in the handler of one stop, past
 * that stop's end and through the whole of the next.
 */
TEST(a_thread_that_misses_the_end_of_its_stop_still_resumes)
{
	struct reader rd = { .tid = 0 };
	int cmd[2], ack[2], st;
	int32_t no_helpers[1] = { 0 };
	struct timespec until;
	pthread_t th;
	pid_t pid;
	char c;

#ifdef __SANITIZE_THREAD__
	SKIP(return, "ThreadSanitizer holds the stop signal back until a system call returns");
#endif
	ASSERT_EQ(0, pipe(rd.fds));
	ASSERT_EQ(0, pipe(cmd));
	ASSERT_EQ(0, pipe(ack));
	ASSERT_EQ(0, pthread_create(&th, NULL, read_a_byte, &rd));
	while (!atomic_load(&rd.tid))
		usleep(100);
	ASSERT_TRUE(wait_in_syscall(atomic_load(&rd.tid), SYS_read));
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(freeze_in_the_stop(atomic_load(&rd.tid), cmd[0], ack[1]));
	if (read(ack[0], &c, 1) != 1) {
		waitpid(pid, &st, 0);
		ASSERT_EQ(1, write(rd.fds[1], "x", 1));
		pthread_join(th, NULL);
		SKIP(return, "the thread cannot be traced here");
	}
	ASSERT_TRUE(world_prepare(no_helpers, 0));
	ASSERT_TRUE(world_stop());
	ASSERT_EQ(1, write(cmd[1], "f", 1));
	ASSERT_EQ(1, read(ack[0], &c, 1));
	world_start();
	/* Frozen: it cannot stop again, and this stop ends too. */
	EXPECT_FALSE(world_stop());
	world_start();
	ASSERT_EQ(1, write(cmd[1], "d", 1));
	ASSERT_EQ(1, read(ack[0], &c, 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(1, write(rd.fds[1], "x", 1));
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	/* Still in the first stop's handler, it would never read the byte. */
	EXPECT_EQ(0, pthread_timedjoin_np(th, NULL, &until));
	for (int i = 0; i < 2; i++) {
		close(rd.fds[i]);
		close(cmd[i]);
		close(ack[i]);
	}
}

static void *block_stop_signal(void *arg)
{
	struct churn *ch = arg;
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGURG);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	while (!atomic_load(&ch->stop))
		usleep(1000);
	return NULL;
}

static void blocked_thread_child(void *arg)
{
	struct churn ch = { .enc = (uintptr_t)arg };
	pthread_t th;

	if (pthread_create(&th, NULL, block_stop_signal, &ch))
		_exit(2);
	usleep(20000);
	int r = scan_one(ch.enc);

	atomic_store(&ch.stop, true);
	pthread_join(th, NULL);
	_exit(r == -1 ? 0 : 3);
}

/* A thread that blocks the stop signal cannot be stopped: the scan says it
 * is incomplete (nothing may be released by it), with one warning. */
TEST(a_thread_that_blocks_the_signal_makes_the_scan_incomplete)
{
	struct child_result r;
	uintptr_t enc = range_new();

#ifdef __SANITIZE_THREAD__
	SKIP(return, "under ThreadSanitizer such threads are left running (scan_stop.c)");
#endif
	ASSERT_NE(0, enc);
	run_child(blocked_thread_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: a quarantine scan could not stop every thread"));
	range_free(enc);
}

static void own_sigurg(int sig)
{
	(void)sig;
}

static void foreign_handler_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;

	if (scan_one(enc) != 0)	/* installs mheap's handler */
		_exit(2);
	signal(SIGURG, own_sigurg);
	_exit(scan_one(enc) == -1 ? 0 : 3);
}

TEST(a_program_handler_for_sigurg_makes_scans_incomplete_with_a_warning)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(foreign_handler_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: SIGURG has a handler not mheap's"));
	range_free(enc);
}

static _Atomic int urg_seen;

static void count_sigurg(int sig)
{
	(void)sig;
	atomic_fetch_add(&urg_seen, 1);
}

static void chained_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;

	signal(SIGURG, count_sigurg);
	if (scan_one(enc) != 0)	/* mheap's handler goes on top */
		_exit(2);
	raise(SIGURG);
	_exit(atomic_load(&urg_seen) == 1 ? 0 : 3);
}

/* A SIGURG that is not the scan's reaches the handler installed before. */
TEST(a_sigurg_not_the_scans_goes_to_the_handler_before_mheaps)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(chained_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	range_free(enc);
}

/*
 * The handler installed before mheap's gets a SIGURG that is not the
 * scan's as the kernel would have given it: with its own sa_mask and the
 * signal blocked (not every signal, as mheap's handler runs), and once
 * only with SA_RESETHAND, SIGURG's default action (ignore) after that.
 */
static _Atomic int urg_mask_seen;

static void record_mask(int sig)
{
	sigset_t cur;

	(void)sig;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	atomic_store(&urg_mask_seen, 1 | sigismember(&cur, SIGUSR2) << 1 |
				    sigismember(&cur, SIGURG) << 2 | sigismember(&cur, SIGUSR1) << 3);
	atomic_fetch_add(&urg_seen, 1);
}

static void masked_chained_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = record_mask;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGURG, &sa, NULL);
	if (scan_one(enc) != 0)	/* mheap's handler goes on top */
		_exit(2);
	raise(SIGURG);
	/* SIGUSR2 (its sa_mask) and SIGURG blocked, SIGUSR1 not. */
	if (atomic_load(&urg_mask_seen) != (1 | 2 | 4))
		_exit(3);
	raise(SIGURG);	/* spent: ignored */
	if (atomic_load(&urg_seen) != 1)
		_exit(4);
	/* And scans still stop threads. */
	_exit(scan_one(enc) == 0 ? 0 : 5);
}

TEST(a_sigurg_not_the_scans_reaches_the_handler_before_with_its_mask_and_flags)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(masked_chained_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	range_free(enc);
}

/*
 * Without SA_RESTART, the program's SIGURG interrupts a blocked system
 * call (EINTR), as it would without mheap: the flag mheap's handler is
 * installed with decides, so it is the handler's before it.
 */
struct interrupted {
	struct reader rd;
	_Atomic int done;
	_Atomic long ret;
};

static void *read_a_byte_once(void *arg)
{
	struct interrupted *in = arg;

	atomic_store(&in->ret, (long)(intptr_t)read_a_byte(&in->rd));
	atomic_store(&in->done, 1);
	return NULL;
}

static void no_restart_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;
	struct interrupted in = { .done = 0 };
	struct sigaction sa;
	pthread_t th;
	int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = count_sigurg;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART */
	sigaction(SIGURG, &sa, NULL);
	if (scan_one(enc) != 0)	/* mheap's handler goes on top */
		_exit(2);
	if (pipe(in.rd.fds) || pthread_create(&th, NULL, read_a_byte_once, &in))
		_exit(2);
	while (!atomic_load(&in.rd.tid))
		usleep(100);
	if (!wait_in_syscall(atomic_load(&in.rd.tid), SYS_read))
		_exit(2);
	pthread_kill(th, SIGURG);
	for (i = 0; i < 2000 && !atomic_load(&in.done); i++)
		usleep(1000);
	if (!atomic_load(&in.done)) {
		/* Restarted: still blocked. */
		if (write(in.rd.fds[1], "x", 1) != 1)
			_exit(2);
		pthread_join(th, NULL);
		_exit(3);
	}
	pthread_join(th, NULL);
	if (atomic_load(&in.ret) != EINTR || atomic_load(&urg_seen) != 1)
		_exit(4);
	/* And scans still stop threads. */
	_exit(scan_one(enc) == 0 ? 0 : 5);
}

TEST(a_sigurg_to_a_handler_without_sa_restart_interrupts_a_blocked_call)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(no_restart_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	range_free(enc);
}

TEST_HARNESS_MAIN
