// SPDX-License-Identifier: GPL-2.0
/*
 * The use-after-free handler and the SIGSEGV disposition it stands in
 * front of. Once an arena exists, mheap's handler catches every SIGSEGV of
 * the process; whatever is not a fault on a freed arena must behave exactly
 * as the disposition installed before mheap's would have:
 *  - a SIGSEGV sent with raise(), kill() or sigqueue() is never taken for a
 *    fault: the default action kills, SIG_IGN ignores it, a handler gets it
 *    with its own sa_mask, SA_NODEFER, SA_RESETHAND and SA_RESTART;
 *  - a genuine fault outside any arena kills (even with SIG_IGN) or reaches
 *    the previous handler with its address;
 *  - none of that uninstalls mheap's handler: a use-after-free afterwards
 *    is still reported;
 *  - a handler the program installs after mheap's simply replaces it.
 * Every test runs in a child of its own, since dispositions are the
 * process's and most outcomes are deaths.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "fault.h"

#define UAF_LINE	"mheap: use-after-free: read of 0x"

/* Child exit statuses: which check failed (0 means the child got to the end). */
enum {
	SURVIVED = 1,		/* lived through what should have killed it */
	NOT_CALLED,		/* the previous handler was not called (once) */
	WRONG_INFO,		/* ... or saw the wrong siginfo */
	WRONG_MASK,		/* ... or ran with the wrong signal mask */
	MASK_LEFT,		/* the handler's mask outlived it */
	INTERRUPTED,		/* a blocking read failed with EINTR */
	NOT_INTERRUPTED,	/* ... or did not */
	SETUP,			/* the test's own set-up failed */
};

/* ------------------------------------------------------------ helpers */

/* Set the disposition mheap will find when it installs its handler. */
static void set_previous(void (*handler)(int), void (*action)(int, siginfo_t *, void *),
			 int flags, int masked)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (action)
		sa.sa_sigaction = action;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (masked)
		sigaddset(&sa.sa_mask, masked);
	if (sigaction(SIGSEGV, &sa, NULL))
		_exit(SETUP);
}

/*
 * Create the arenas, which installs mheap's handler: one stays live, one
 * is freed at once. Returns a pointer into the freed one.
 */
static char *arenas(void)
{
	struct arena_config cfg;
	mh_arena *live, *freed;
	char *p;

	arena_config_get(&cfg);
	cfg.reuse = false;	/* the freed arena's only chunk faults */
	arena_configure(&cfg);
	live = mh_arena_new();
	freed = mh_arena_new();
	if (!live || !mh_arena_alloc(live, 64, 0) || !freed)
		_exit(SETUP);
	p = mh_arena_alloc(freed, 64, 0);
	if (!p)
		_exit(SETUP);
	strcpy(p, "soon stale");
	mh_arena_free(freed);
	return p;
}

static void touch(const char *p)
{
	*(const volatile char *)p;
}

/* A page that faults and is in no arena. */
static char *no_access_page(void)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		_exit(SETUP);
	return p;
}

static bool blocked(int sig)
{
	sigset_t m;

	pthread_sigmask(SIG_BLOCK, NULL, &m);
	return sigismember(&m, sig) == 1;
}

/* What the previous handler saw. */
static volatile sig_atomic_t calls;
static volatile int seen_code, seen_pid, seen_value;
static volatile bool seen_usr1_blocked, seen_segv_blocked;
static void *volatile seen_addr;
static sigjmp_buf back;

static void counting_handler(int sig)
{
	(void)sig;
	calls++;
	seen_usr1_blocked = blocked(SIGUSR1);
	seen_segv_blocked = blocked(SIGSEGV);
}

static void siginfo_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	counting_handler(sig);
	seen_code = si->si_code;
	seen_pid = si->si_pid;
	seen_value = si->si_value.sival_int;
}

/* For faults: note the address and jump back to the test. */
static void escaping_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	counting_handler(sig);
	seen_code = si->si_code;
	seen_addr = si->si_addr;
	siglongjmp(back, 1);
}

/* How the child must end. */
enum outcome {
	EXITS,			/* exit status 0, no report */
	DIES_SILENTLY,		/* of SIGSEGV, no report */
	REPORTS_UAF,		/* of SIGSEGV, with the use-after-free line */
};

/* Run fn(arg) in a child and check how it ended. */
static void expect_child(struct __test_metadata *_metadata, void (*fn)(void *),
			 const void *arg, enum outcome want)
{
	struct child_result r;

	if (!fault_backend()->faults)
		SKIP(return, "backend %s does not fault: no handler", mh_backend_name());
	run_child(fn, (void *)arg, &r);
	if (want == EXITS) {
		EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("child status %#x, stderr: %s",
							r.status, r.err);
		EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("stderr: %s", r.err);
	} else {
		EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("child status %#x, stderr: %s",
							 r.status, r.err);
	}
	if (want == REPORTS_UAF) {
		EXPECT_NE(NULL, strstr(r.err, UAF_LINE)) TH_LOG("stderr: \"%s\"", r.err);
	} else {
		EXPECT_EQ(NULL, strstr(r.err, "mheap:")) TH_LOG("stderr: \"%s\"", r.err);
	}
}

/* ------------------------------------------------------------ user-sent */

/* The three ways a process sends itself SIGSEGV, and the si_code of each. */
FIXTURE(sent) {
};

FIXTURE_VARIANT(sent) {
	int how;
	int si_code;
};

enum { BY_RAISE, BY_KILL, BY_SIGQUEUE };

FIXTURE_VARIANT_ADD(sent, raise) { .how = BY_RAISE, .si_code = SI_TKILL };
FIXTURE_VARIANT_ADD(sent, kill) { .how = BY_KILL, .si_code = SI_USER };
FIXTURE_VARIANT_ADD(sent, sigqueue) { .how = BY_SIGQUEUE, .si_code = SI_QUEUE };

FIXTURE_SETUP(sent)
{
}

FIXTURE_TEARDOWN(sent)
{
}

static void send_segv(const FIXTURE_VARIANT(sent) *v)
{
	union sigval val = { .sival_int = 42 };

	switch (v->how) {
	case BY_RAISE:
		raise(SIGSEGV);
		break;
	case BY_KILL:
		kill(getpid(), SIGSEGV);
		break;
	default:
		sigqueue(getpid(), SIGSEGV, val);
		break;
	}
}

static void default_action(void *arg)
{
	set_previous(SIG_DFL, NULL, 0, 0);	/* a sanitizer may have its own */
	arenas();
	send_segv(arg);
	_exit(SURVIVED);
}

TEST_F(sent, sigsegv_with_the_default_action_kills_without_a_report)
{
	expect_child(_metadata, default_action, variant, DIES_SILENTLY);
}

/*
 * With this disposition before ours, send SIGSEGV, check that a previous
 * handler ran once, then touch freed arena memory: the child must die with
 * the report.
 */
static void sent_then_uaf(void *sent, void (*handler)(int),
			  void (*action)(int, siginfo_t *, void *), int flags)
{
	char *stale;

	set_previous(handler, action, flags, 0);
	stale = arenas();
	send_segv(sent);
	if (handler != SIG_IGN && calls != 1)
		_exit(NOT_CALLED);
	touch(stale);
	_exit(SURVIVED);
}

static void ignored_then_uaf(void *arg)
{
	sent_then_uaf(arg, SIG_IGN, NULL, 0);
}

TEST_F(sent, sigsegv_when_ignored_is_ignored_and_a_later_uaf_is_reported)
{
	expect_child(_metadata, ignored_then_uaf, variant, REPORTS_UAF);
}

static void ignored_with_siginfo_flag(void *arg)
{
	/* sa_sigaction shares its storage with SIG_IGN: never called. */
	set_previous(SIG_IGN, NULL, SA_SIGINFO, 0);
	arenas();
	send_segv(arg);
	_exit(0);
}

TEST_F(sent, sigsegv_ignored_with_sa_siginfo_set_is_ignored)
{
	expect_child(_metadata, ignored_with_siginfo_flag, variant, EXITS);
}

static void handled_then_uaf(void *arg)
{
	sent_then_uaf(arg, counting_handler, NULL, 0);
}

TEST_F(sent, sigsegv_reaches_the_previous_handler_and_a_later_uaf_is_reported)
{
	expect_child(_metadata, handled_then_uaf, variant, REPORTS_UAF);
}

static void siginfo_passed_on(void *arg)
{
	const FIXTURE_VARIANT(sent) *v = arg;

	set_previous(NULL, siginfo_handler, SA_SIGINFO, 0);
	arenas();
	send_segv(v);
	if (calls != 1)
		_exit(NOT_CALLED);
	if (seen_code != v->si_code || seen_pid != getpid() ||
	    (v->how == BY_SIGQUEUE && seen_value != 42))
		_exit(WRONG_INFO);
	_exit(0);
}

TEST_F(sent, sigsegv_reaches_a_siginfo_handler_with_the_senders_siginfo)
{
	expect_child(_metadata, siginfo_passed_on, variant, EXITS);
}

/* Send SIGSEGV with a handler of these flags and sa_mask before ours; check
 * what it found blocked, and that nothing stays blocked afterwards. */
static void mask_during_call(void *sent, int flags, int masked, bool usr1, bool segv)
{
	set_previous(counting_handler, NULL, flags, masked);
	arenas();
	send_segv(sent);
	if (calls != 1)
		_exit(NOT_CALLED);
	if (seen_usr1_blocked != usr1 || seen_segv_blocked != segv)
		_exit(WRONG_MASK);
	if (blocked(SIGUSR1) || blocked(SIGSEGV))
		_exit(MASK_LEFT);
	_exit(0);
}

static void mask_emulated(void *arg)
{
	mask_during_call(arg, 0, SIGUSR1, true, true);
}

TEST_F(sent, the_previous_handler_runs_with_its_sa_mask_and_the_signal_blocked)
{
	expect_child(_metadata, mask_emulated, variant, EXITS);
}

static void nodefer_emulated(void *arg)
{
	mask_during_call(arg, SA_NODEFER, 0, false, false);
}

TEST_F(sent, the_previous_handler_with_sa_nodefer_runs_with_the_signal_unblocked)
{
	expect_child(_metadata, nodefer_emulated, variant, EXITS);
}

static void resethand_twice(void *arg)
{
	set_previous(counting_handler, NULL, SA_RESETHAND, 0);
	arenas();
	send_segv(arg);
	if (calls != 1)
		_exit(NOT_CALLED);
	send_segv(arg);
	_exit(SURVIVED);
}

TEST_F(sent, the_previous_handler_with_sa_resethand_runs_once_then_sigsegv_kills)
{
	expect_child(_metadata, resethand_twice, variant, DIES_SILENTLY);
}

static void resethand_then_uaf(void *arg)
{
	sent_then_uaf(arg, NULL, siginfo_handler, SA_SIGINFO | SA_RESETHAND);
}

TEST_F(sent, after_an_sa_resethand_handler_ran_a_uaf_is_still_reported)
{
	expect_child(_metadata, resethand_then_uaf, variant, REPORTS_UAF);
}

/* ------------------------------------------------------------ SA_RESTART */

/*
 * A thread blocked in read() gets SIGSEGV from pthread_kill(): whether the
 * read restarts or fails with EINTR is the previous disposition's choice.
 */
static int restart_pipe[2];
static pid_t reader_tid;

static void *reader(void *arg)
{
	char c;
	ssize_t n;

	(void)arg;
	__atomic_store_n(&reader_tid, gettid(), __ATOMIC_RELEASE);
	n = read(restart_pipe[0], &c, 1);
	return (void *)(intptr_t)(n == 1 ? 0 : n < 0 && errno == EINTR ? INTERRUPTED : SETUP);
}

/* Whether thread tid is asleep (in the read, as nothing else blocks it). */
static bool sleeping(pid_t tid)
{
	char path[64], buf[256], *state;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	state = strrchr(buf, ')');
	return state && state[1] == ' ' && state[2] == 'S';
}

/* The previous disposition, and how the read must end: 0 (it restarted and
 * got its byte) or INTERRUPTED (EINTR). */
FIXTURE(restart) {
};

FIXTURE_VARIANT(restart) {
	void (*handler)(int);
	int flags;
	int read_ends;
};

FIXTURE_VARIANT_ADD(restart, sig_ign) { .handler = SIG_IGN, .read_ends = 0 };
FIXTURE_VARIANT_ADD(restart, sa_restart) {
	.handler = counting_handler, .flags = SA_RESTART, .read_ends = 0
};
FIXTURE_VARIANT_ADD(restart, no_sa_restart) {
	.handler = counting_handler, .read_ends = INTERRUPTED
};

FIXTURE_SETUP(restart)
{
}

FIXTURE_TEARDOWN(restart)
{
}

static void read_hit_by_sigsegv(void *arg)
{
	const FIXTURE_VARIANT(restart) *v = arg;
	pthread_t t;
	void *ret;

	set_previous(v->handler, NULL, v->flags, 0);
	arenas();
	if (pipe(restart_pipe) || pthread_create(&t, NULL, reader, NULL))
		_exit(SETUP);
	while (!__atomic_load_n(&reader_tid, __ATOMIC_ACQUIRE) || !sleeping(reader_tid))
		usleep(1000);
	pthread_kill(t, SIGSEGV);
	usleep(20000);
	if (write(restart_pipe[1], "x", 1) != 1)
		_exit(SETUP);
	pthread_join(t, &ret);
	if ((intptr_t)ret != v->read_ends)
		_exit(ret ? (int)(intptr_t)ret : NOT_INTERRUPTED);
	if (v->handler != SIG_IGN && calls != 1)
		_exit(NOT_CALLED);
	_exit(0);
}

TEST_F(restart, a_read_hit_by_sigsegv_restarts_or_fails_as_the_previous_disposition_says)
{
	expect_child(_metadata, read_hit_by_sigsegv, variant, EXITS);
}

/* ------------------------------------------------------------ real faults */

/* Dispositions under which a fault outside any arena kills. */
FIXTURE(fault) {
};

FIXTURE_VARIANT(fault) {
	void (*handler)(int);
};

FIXTURE_VARIANT_ADD(fault, sig_dfl) { .handler = SIG_DFL };
FIXTURE_VARIANT_ADD(fault, sig_ign) { .handler = SIG_IGN };

FIXTURE_SETUP(fault)
{
}

FIXTURE_TEARDOWN(fault)
{
}

static void fault_outside(void *arg)
{
	const FIXTURE_VARIANT(fault) *v = arg;

	set_previous(v->handler, NULL, 0, 0);	/* a sanitizer may have its own */
	arenas();
	touch(no_access_page());
	_exit(SURVIVED);
}

TEST_F(fault, outside_any_arena_kills_without_a_report)
{
	expect_child(_metadata, fault_outside, variant, DIES_SILENTLY);
}

static void fault_handled(void *arg)
{
	char *bad;

	(void)arg;
	set_previous(NULL, escaping_handler, SA_SIGINFO, 0);
	arenas();
	bad = no_access_page();
	if (!sigsetjmp(back, 1)) {
		touch(bad + 5);
		_exit(SURVIVED);
	}
	if (calls != 1)
		_exit(NOT_CALLED);
	if (seen_addr != bad + 5 || seen_code != SEGV_ACCERR)
		_exit(WRONG_INFO);
	_exit(0);
}

TEST(a_fault_outside_any_arena_reaches_the_previous_handler_with_its_address)
{
	expect_child(_metadata, fault_handled, NULL, EXITS);
}

static char *repaired;

static void repairing_handler(int sig)
{
	counting_handler(sig);
	mprotect(repaired, 4096, PROT_READ | PROT_WRITE);
}

static void fault_repaired(void *arg)
{
	(void)arg;
	set_previous(repairing_handler, NULL, 0, 0);
	arenas();
	repaired = no_access_page();
	repaired[7] = 1;
	_exit(calls == 1 && repaired[7] == 1 ? 0 : NOT_CALLED);
}

TEST(a_fault_that_a_plain_previous_handler_repairs_lets_the_program_go_on)
{
	expect_child(_metadata, fault_repaired, NULL, EXITS);
}

/* ------------------------------------------------------------ replaced */

static void replaced_after(void *arg)
{
	char *stale;

	(void)arg;
	stale = arenas();
	set_previous(NULL, escaping_handler, SA_SIGINFO, 0);
	if (!sigsetjmp(back, 1)) {
		touch(stale);
		_exit(SURVIVED);
	}
	if (calls != 1 || seen_addr != stale)
		_exit(WRONG_INFO);
	_exit(0);
}

TEST(a_handler_installed_after_mheaps_replaces_it)
{
	expect_child(_metadata, replaced_after, NULL, EXITS);
}

TEST_HARNESS_MAIN
