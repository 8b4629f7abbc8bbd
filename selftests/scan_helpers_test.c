// SPDX-License-Identifier: GPL-2.0
/*
 * The quarantine scan's helper threads (scan_range.h): gone when the
 * scan returns; when they cannot be made (RLIMIT_NPROC) the scan reads
 * alone and leaves no mapping behind; a signal sent to a helper never runs
 * the program's handler.
 */
#define _GNU_SOURCE
#include "scan_range.h"

/* Count the threads of the process. */
static int task_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");

	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Helper threads are made for a scan and joined before it returns. The
 * kernel wakes a joiner when the thread has let go of its memory, a moment
 * before it takes the task out of /proc/self/task, so the count is waited
 * for (a second at most). (The first scan comes first: a sanitizer starts
 * a thread of its own at the process's first thread creation.) */
TEST(a_scans_helper_threads_are_gone_when_it_returns)
{
	uintptr_t enc = range_new();
	int before, after;

	ASSERT_NE(0, enc);
	ASSERT_EQ(0, scan_one(enc));
	/* A joined thread leaves /proc/self/task a moment after its join
	 * returns (long enough in a VM without KVM to be counted): the first
	 * scan's helpers are let go before the count. */
	usleep(100000);
	before = task_count();
	ASSERT_LT(0, before);
	EXPECT_EQ(0, scan_one(enc));
	for (int ms = 0; (after = task_count()) != before && ms < 1000; ms++)
		usleep(1000);
	EXPECT_EQ(before, after);
	range_free(enc);
}

static void *no_op(void *arg)
{
	return arg;
}

/* The lines of /proc/self/maps: the mappings of the process. */
static int mapping_count(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* In a child whose threads cannot be made (over RLIMIT_NPROC as an
 * unprivileged user): 0 when its scans find the pointer and map nothing
 * more than they unmap; 3 when the limit cannot be set, 4 when threads
 * can still be made. */
static int scan_without_helpers(uintptr_t enc)
{
	struct rlimit none = { 0, 0 };
	pthread_t t;
	int before;

	if ((!getuid() && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))) ||
	    prctl(PR_SET_DUMPABLE, 1) || setrlimit(RLIMIT_NPROC, &none))
		return 3;
	if (!pthread_create(&t, NULL, no_op, NULL)) {
		pthread_join(t, NULL);
		return 4;
	}
	set_global(enc, INTERIOR);
	if (scan_one(enc) != 1)
		return 1;
	before = mapping_count();
	for (int i = 0; i < 4; i++)
		if (scan_one(enc) != 1)
			return 1;
	return mapping_count() == before ? 0 : 2;
}

/* A scan whose helper threads cannot be made (pthread_create fails) reads
 * alone, completes, and leaves no helper's mapping behind. */
TEST(a_scan_whose_helpers_cannot_be_made_reads_alone_and_leaks_nothing)
{
	uintptr_t enc = range_new();
	pid_t pid;
	int rc;

	ASSERT_NE(0, enc);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(scan_without_helpers(enc));
	rc = wait_child_ms(pid, 60000);
	range_free(enc);
	if (rc == 3 || rc == 4)
		SKIP(return, "cannot keep threads from being made here (%d)", rc);
	EXPECT_EQ(0, rc);
}

/* The threads there were before the scans of the test (and the thread
 * that signals the others), then the SIGUSR1 counts. */
#define KNOWN_MAX 64
static pid_t known[KNOWN_MAX];
static int nknown;
static _Atomic int usr1_elsewhere, usr1_sent;
static _Atomic pid_t sender;

static bool is_known(pid_t tid)
{
	if (tid == atomic_load(&sender))
		return true;
	for (int i = 0; i < nknown; i++)
		if (known[i] == tid)
			return true;
	return false;
}

static void note_usr1(int sig)
{
	(void)sig;
	if (!is_known((pid_t)syscall(SYS_gettid)))
		atomic_fetch_add(&usr1_elsewhere, 1);
}

/* Send SIGUSR1 to every thread that was not there when it started: the
 * scans' helpers, while they exist. */
static void *signal_new_threads(void *arg)
{
	_Atomic bool *stop = arg;

	atomic_store(&sender, (pid_t)syscall(SYS_gettid));
	while (!atomic_load(stop)) {
		DIR *d = opendir("/proc/self/task");

		if (!d)
			break;
		for (struct dirent *e; (e = readdir(d));) {
			pid_t tid = (pid_t)atoi(e->d_name);

			if (tid > 0 && !is_known(tid) &&
			    !syscall(SYS_tgkill, getpid(), tid, SIGUSR1))
				atomic_fetch_add(&usr1_sent, 1);
		}
		closedir(d);
	}
	return NULL;
}

/* A scan's helper threads run with every signal blocked: a signal sent to
 * one never runs the program's handler there. */
TEST(a_signal_sent_to_a_scans_helper_never_runs_the_programs_handler)
{
	struct sigaction sa = { .sa_handler = note_usr1, .sa_flags = SA_RESTART }, old;
	uintptr_t enc = range_new();
	_Atomic bool stop = false;
	pthread_t th;
	DIR *d;

	ASSERT_NE(0, enc);
	ASSERT_EQ(0, scan_one(enc));	/* a sanitizer's own threads first */
	d = opendir("/proc/self/task");
	ASSERT_NE(NULL, d);
	for (struct dirent *e; (e = readdir(d)) && nknown < KNOWN_MAX - 1;)
		if (atoi(e->d_name) > 0)
			known[nknown++] = (pid_t)atoi(e->d_name);
	closedir(d);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, &old));
	ASSERT_EQ(0, pthread_create(&th, NULL, signal_new_threads, &stop));
	for (int i = 0; i < 100 * (UNDER_SANITIZER ? 1 : 5) && atomic_load(&usr1_sent) < 20; i++)
		EXPECT_EQ(0, scan_one(enc));
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	sigaction(SIGUSR1, &old, NULL);
	range_free(enc);
	if (!atomic_load(&usr1_sent))
		SKIP(return, "no signal reached a helper while it existed");
	EXPECT_EQ(0, atomic_load(&usr1_elsewhere));
}

TEST_HARNESS_MAIN
