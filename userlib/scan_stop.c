// SPDX-License-Identifier: MIT
/*
 * Stopping the world for the quarantine scan (scan.c): every other thread
 * of the process is held in a signal handler while the scan reads the
 * roots (scan_roots.c), its registers spilled where the stack read sees
 * them.
 *
 * Stop-the-world protocol. Threads are stopped so that none can copy a
 * stale pointer from a place not yet read to one already read, or move it
 * between registers and memory, while the scan runs (reading the heap and
 * the mappings with threads running would need the kernel's dirty bits to
 * catch such copies: docs/arenas.md says why that is not done):
 *
 *  1. The scanner takes the scan lock, then the heap lock and the
 *     metadata registry's lock: no stopped thread can hold them halfway
 *     through an update of what the scan walks (the span map, the
 *     registry). Nothing the scan does afterwards takes a lock or
 *     allocates (no stdio, no opendir: raw system calls into mapped
 *     buffers), so a thread stopped inside malloc, inside glibc or inside
 *     the loader cannot block it.
 *  2. It lists /proc/self/task with getdents64, publishes one slot per
 *     thread (tid) and sends each SCAN_SIGNAL with tgkill; the scan's own
 *     helper threads (scan_helpers.c) are left running.
 *  3. The handler (every signal blocked while it runs, so no other handler
 *     can run on a stopped thread) checks that the signal is the scan's
 *     (SI_TKILL from our own pid while a scan is in progress; anything else
 *     goes to the handler installed before ours), spills its callee-saved
 *     registers into its frame, stores its stack pointer and its stack's
 *     recorded bounds (scan_stacks.c) in its slot and the epoch with a
 *     release store, wakes the scanner (futex) and waits
 *     on a futex until the scanner publishes the end of that epoch or of
 *     a later one (epochs only grow; a thread that runs again only after
 *     the next stop has ended too must not wait for its own forever).
 *  4. The scanner lists the tasks again: threads created meanwhile (by a
 *     thread not yet stopped) get a signal too, until a listing finds none
 *     new. A thread that no longer exists (tgkill: ESRCH) is forgotten.
 *  5. With every thread stopped it reads the roots, then ends the epoch
 *     (release store, FUTEX_WAKE) and drops its locks.
 * The release store of each ack and the acquire load of it (and the other
 * way round at the end) order the stopped thread's writes before the
 * scanner's reads, which is also what ThreadSanitizer sees.
 *
 * Which signal: SIGURG, for the reasons Go chose it for preemption: its
 * default action is to ignore it (a stray one, or one arriving after the
 * handler is gone, harms nothing), debuggers pass it on silently by
 * default, it can be sent to one thread, and programs practically never use
 * it (it reports out-of-band socket data without saying which socket). A
 * real-time signal would be queued, stop debuggers by default and collide
 * with the many programs that number their own from SIGRTMIN. A SIGURG
 * that is not the scan's goes to the handler installed before ours, if
 * any, as the kernel would have run it (chain_signal). If the program installs its own handler after ours, scans no longer
 * stop threads: each one is then incomplete (nothing is released by it) and
 * a warning says so once.
 *
 * Effects on the program: the handler is installed with SA_RESTART (or
 * with the SA_RESTART and SA_ONSTACK of the handler installed before, if
 * any: handler_ready), so a
 * system call a stopped thread was blocked in is restarted where the kernel
 * allows it (read, write, wait, futex-based locks and condition variables,
 * ...). Calls that the kernel never restarts after a handler fail with
 * EINTR, as they do for any signal: poll, select, epoll_wait, nanosleep and
 * clock_nanosleep (usleep, sleep returns early), sigtimedwait, semop and
 * the other interfaces signal(7) lists. Programs must already handle EINTR
 * there (any signal does it), and scans are rare: only when the quarantine
 * is full or on mh_quarantine_release().
 *
 * When a thread does not stop within a second (it blocks SIGURG, is
 * stopped by SIGSTOP or a debugger, or is stuck in an uninterruptible
 * wait), the scan is abandoned as incomplete: its caller keeps every
 * chunk. glibc blocks every signal in a thread that is exiting; such a
 * thread is gone a moment later, and is waited for. Under
 * ThreadSanitizer (only there) a thread that has not stopped after 10 ms
 * and blocks the signal or sits in a system call is left running, its
 * stack read whole: the sanitizer holds an asynchronous signal back until
 * the call returns, and its own background thread never takes it. A
 * pointer held only in the registers of such a thread is not seen there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "scan_impl.h"
#include "sigchain.h"

#define SCAN_SIGNAL	SIGURG
/* A thread that has not stopped after this long fails the scan. */
#define STOP_TIMEOUT_NS	((uint64_t)1000000000)
/* Rounds of listing the tasks before giving up on a process that keeps
 * making threads faster than they can be stopped. */
#define LIST_ROUNDS	64
#if defined(__SANITIZE_THREAD__)
#define SKIP_SANITIZER_THREADS 1
#endif

/* ------------------------------------------------------------ state */

enum slot_state {
	SLOT_PENDING,	/* signalled, not stopped yet */
	SLOT_STOPPED,	/* in the handler, waiting */
	SLOT_GONE,	/* exited */
	SLOT_IGNORED,	/* blocks the signal; a sanitizer's thread (above) */
};

/* One other thread of a scan. The handler finds its slot by tid. */
struct slot {
	int32_t tid;
	uint32_t acked;		/* the epoch it stopped for (release store) */
	uintptr_t sp;		/* the lowest live address of its stack */
	uintptr_t sp_alt;	/* the interrupted one, red zone included */
	uintptr_t lo, hi;	/* its stack's recorded bounds (struct stack_mark) */
	uint32_t main;		/* the main thread */
	uint32_t state;		/* enum slot_state, the scanner's own */
};

/* Read by the handler without a lock. A scan is in progress while epoch
 * != resumed. Slot arrays are never unmapped: a late handler may still
 * look at an old one. */
static uint32_t epoch, resumed, acks;
static struct slot *slots;
static uint32_t nslots, slots_cap;
static pid_t self_pid;
/* The scan's helper threads (scan_helpers.c): read the roots, not stopped. */
static int32_t exempt[SCAN_THREADS_MAX];
static unsigned nexempt;

static bool handler_installed;
static struct sigaction prev_action;
static bool warned_handler;

/* ------------------------------------------------------------ syscalls */

static int signal_thread(pid_t tid, int sig)
{
	return (int)syscall(SYS_tgkill, self_pid, tid, sig);
}

/* ------------------------------------------------------------ the stop */

/*
 * A SIGURG that is not the scan's, to the handler installed before ours
 * (sigchain.h). SIG_DFL and SIG_IGN of SIGURG both ignore it (checked
 * before SA_SIGINFO: sa_handler and sa_sigaction share their storage).
 */
static int prev_spent;

static void chain_signal(int sig, siginfo_t *si, void *ucv)
{
	if (prev_action.sa_handler == SIG_DFL || prev_action.sa_handler == SIG_IGN)
		return;
	if (sigchain_spent(&prev_action, &prev_spent))
		return;
	sigchain_call(&prev_action, sig, si, ucv);
}

static void stop_handler(int sig, siginfo_t *si, void *ucv)
{
	int saved_errno = errno;
	uint32_t e = LOAD_ACQUIRE(&epoch);
	uintptr_t regs[SAVED_REGS];
	struct slot *sl = NULL;

	if (si->si_code != SI_TKILL || si->si_pid != LOAD_RELAXED(&self_pid) ||
	    e == LOAD_ACQUIRE(&resumed)) {
		chain_signal(sig, si, ucv);
		errno = saved_errno;
		return;
	}
	pid_t tid = (pid_t)syscall(SYS_gettid);
	struct slot *s = LOAD_ACQUIRE(&slots);
	uint32_t n = LOAD_ACQUIRE(&nslots);

	for (uint32_t i = 0; s && i < n; i++)
		if (LOAD_RELAXED(&s[i].tid) == tid)
			sl = &s[i];
	if (!sl) {
		/* Not listed yet: the next listing signals it again. */
		errno = saved_errno;
		return;
	}
	spill_registers(regs);
	STORE_RELAXED(&sl->sp, (uintptr_t)regs);
	/* Thread-local loads (initial-exec), async-signal-safe. */
	{
		uintptr_t lo = 0, hi = 0;

		if (!scan_stack_own(&lo, &hi))
			lo = hi = 0;
		STORE_RELAXED(&sl->lo, lo);
		STORE_RELAXED(&sl->hi, hi);
		STORE_RELAXED(&sl->main, tid == si->si_pid);
	}
#if defined(__x86_64__)
	{
		const ucontext_t *uc = ucv;

		STORE_RELAXED(&sl->sp_alt, (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128);
	}
#endif
	STORE_RELEASE(&sl->acked, e);
	__atomic_add_fetch(&acks, 1, __ATOMIC_RELEASE);
	futex_wake(&acks);
	/* Until its epoch has ended, or a later one: this thread may not run
	 * again before the next stop has begun and ended (a loaded machine;
	 * under ThreadSanitizer a thread still in here is left running after
	 * 10 ms), and waiting for resumed == e then would never end. */
	for (uint32_t r; (int32_t)((r = LOAD_ACQUIRE(&resumed)) - e) < 0;)
		futex_wait(&resumed, r, 0);
	/* regs stays in this frame until the scan has read it. */
	__asm__ volatile("" : : "r"(regs) : "memory");
	errno = saved_errno;
}

/* Install the handler once; false (and a warning once) when the program has
 * replaced it since. */
static bool handler_ready(void)
{
	struct sigaction sa, cur;

	if (!handler_installed) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = stop_handler;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigfillset(&sa.sa_mask);
		if (sigaction(SCAN_SIGNAL, &sa, &prev_action))
			return false;
		/* Two of the flags act on the interrupted context, not in the
		 * handler, so chain_signal cannot apply them: whether a
		 * blocked system call is restarted or fails with EINTR, and
		 * the stack the handler runs on. A handler installed before
		 * ours has them as it chose (one without SA_RESTART expects
		 * EINTR; Go's runtime dies of a signal off its signal stack),
		 * and the scan's stops then share them. */
		if (prev_action.sa_handler != SIG_DFL && prev_action.sa_handler != SIG_IGN) {
			sa.sa_flags = SA_SIGINFO | (prev_action.sa_flags & (SA_RESTART | SA_ONSTACK));
			/* Ours either way: installed above, valid flags. */
			if (sa.sa_flags != (SA_SIGINFO | SA_RESTART))
				sigaction(SCAN_SIGNAL, &sa, NULL);
		}
		handler_installed = true;
		return true;
	}
	if (sigaction(SCAN_SIGNAL, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_sigaction == stop_handler)
		return true;
	if (!warned_handler) {
		warned_handler = true;
		mh_print(STDERR_FILENO, "mheap: SIGURG has a handler not mheap's: quarantine scans "
			 "cannot stop threads, quarantined chunks leave only by the cap");
	}
	return false;
}

/* Room for n slots, keeping those there; old arrays are never unmapped. */
static bool slots_reserve(uint32_t n)
{
	struct slot *s;
	uint32_t cap;

	if (n <= slots_cap)
		return true;
	cap = slots_cap ? slots_cap : 256;
	while (cap < n)
		cap *= 2;
	s = map_scratch(cap * sizeof(*s));
	if (!s)
		return false;
	/* Nothing is copied: every scan lists its threads anew. */
	STORE_RELEASE(&slots, s);
	slots_cap = cap;
	return true;
}

#ifdef SKIP_SANITIZER_THREADS
/* Append a number to a path: "/proc/self/task/" + tid + suffix. */
static void task_path(char *buf, size_t len, pid_t tid, const char *suffix)
{
	char digits[16];
	size_t n = 0, i = 0;
	const char *pre = "/proc/self/task/";

	do {
		digits[n++] = (char)('0' + tid % 10);
		tid /= 10;
	} while (tid && n < sizeof(digits));
	for (; *pre && i + 1 < len; pre++)
		buf[i++] = *pre;
	while (n && i + 1 < len)
		buf[i++] = digits[--n];
	for (; *suffix && i + 1 < len; suffix++)
		buf[i++] = *suffix;
	buf[i] = '\0';
}

/* The first bytes of a file under /proc/self/task/<tid>/, terminated. */
static bool task_read(pid_t tid, const char *file, char *buf, size_t len)
{
	char path[64];

	task_path(path, sizeof(path), tid, file);
	return sys_read_file(path, buf, len);
}

/*
 * Whether thread tid, which has not stopped after a while, is one that
 * ThreadSanitizer will not let stop: it blocks the scan's signal (the
 * sanitizer's background thread) or is blocked in a system call (the
 * sanitizer queues an asynchronous signal until the call returns, and its
 * own thread sleeps in a raw nanosleep).
 */
static bool sanitizer_thread(pid_t tid)
{
	char buf[2048];
	const char *p;
	uint64_t mask = 0;

	if (task_read(tid, "/syscall", buf, sizeof(buf)) && buf[0] >= '0' && buf[0] <= '9')
		return true;
	if (!task_read(tid, "/status", buf, sizeof(buf)) || !(p = strstr(buf, "SigBlk:")))
		return false;
	for (p += 7; *p == ' ' || *p == '\t'; p++)
		;
	for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
		mask = mask << 4 | (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
	return mask >> (SCAN_SIGNAL - 1) & 1;
}
#endif

/* Call fn(tid, arg) for every task of the process; -1 if unreadable. */
static int for_each_task(void (*fn)(pid_t tid, void *arg), void *arg)
{
	char buf[4096];
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	for (;;) {
		long len = syscall(SYS_getdents64, fd, buf, sizeof(buf));

		if (len <= 0) {
			close(fd);
			return len < 0 ? -1 : 0;
		}
		for (long off = 0; off < len;) {
			const struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (const void *)(buf + off);
			pid_t tid = 0;

			off += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9')
				continue;
			for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
				tid = tid * 10 + (*c - '0');
			fn(tid, arg);
		}
	}
}

static void count_task(pid_t tid, void *arg)
{
	(void)tid;
	(*(uint32_t *)arg)++;
}

/* What signal_task does: the scanner's tid, and the count of new tasks
 * (-1 when out of slots). */
struct signalling {
	pid_t self;
	int added;
};

/* Signal a task not listed yet, in a new slot. */
static void signal_task(pid_t tid, void *arg)
{
	struct signalling *sg = arg;

	if (tid == sg->self || sg->added < 0)
		return;
	for (unsigned i = 0; i < nexempt; i++)
		if (exempt[i] == tid)
			return;
	for (uint32_t i = 0; i < nslots; i++)
		if (slots[i].tid == tid)
			return;
	if (nslots == slots_cap) {
		/* The array was sized before the stop: growing it now could
		 * lose the ack of a handler still looking at the old one. */
		sg->added = -1;
		return;
	}
	/* Atomic stores: a handler a sanitizer delayed past its own scan
	 * may still be reading the slots (it finds its epoch over). */
	STORE_RELAXED(&slots[nslots].tid, tid);
	STORE_RELAXED(&slots[nslots].acked, 0);
	slots[nslots].state = SLOT_PENDING;
	STORE_RELEASE(&nslots, nslots + 1);
	if (signal_thread(tid, SCAN_SIGNAL) && errno == ESRCH)
		slots[nslots - 1].state = SLOT_GONE;
	sg->added++;
}

/* Wait until every listed thread has stopped or gone; false on timeout or
 * on a thread that cannot stop. */
static bool wait_stopped(uint32_t e, uint64_t deadline)
{
	for (unsigned round = 0;; round++) {
		uint32_t seen = LOAD_ACQUIRE(&acks);
		bool all = true;

		for (uint32_t i = 0; i < nslots; i++) {
			struct slot *sl = &slots[i];

			if (sl->state != SLOT_PENDING)
				continue;
			if (LOAD_ACQUIRE(&sl->acked) == e) {
				sl->state = SLOT_STOPPED;
				continue;
			}
			if (round && signal_thread(sl->tid, 0) && errno == ESRCH) {
				sl->state = SLOT_GONE;
				continue;
			}
#ifdef SKIP_SANITIZER_THREADS
			if (round >= 10 && sanitizer_thread(sl->tid)) {
				sl->state = SLOT_IGNORED;
				continue;
			}
#endif
			all = false;
		}
		if (all)
			return true;
		if (mh_nanotime() > deadline)
			return false;
		futex_wait(&acks, seen, 1000000);
	}
}

/* Stop every other thread (the protocol at the top). */
static bool stop_world(pid_t self, uint32_t e)
{
	uint64_t deadline = mh_nanotime() + STOP_TIMEOUT_NS;

	for (unsigned round = 0; round < LIST_ROUNDS; round++) {
		struct signalling sg = { .self = self };

		if (for_each_task(signal_task, &sg) || sg.added < 0)
			return false;
		if (!wait_stopped(e, deadline))
			return false;
		if (!sg.added)
			return true;
	}
	return false;
}

static void start_world(uint32_t e)
{
	STORE_RELEASE(&resumed, e);
	futex_wake(&resumed);
}

/* ------------------------------------------------------------ interface */

bool world_prepare(const int32_t *tids, unsigned n)
{
	uint32_t ntasks = 0;

	nexempt = n < SCAN_THREADS_MAX ? n : SCAN_THREADS_MAX;
	memcpy(exempt, tids, nexempt * sizeof(*tids));
	STORE_RELAXED(&self_pid, getpid());
	for_each_task(count_task, &ntasks);
	/* Room for the threads there are and as many more made meanwhile. */
	return handler_ready() && slots_reserve(2 * ntasks + 64);
}

bool world_stop(void)
{
	/* A new epoch: from here the handler stops the threads signalled. */
	uint32_t e = LOAD_RELAXED(&epoch) + 1;

	STORE_RELAXED(&nslots, 0);
	STORE_RELEASE(&epoch, e);
	return stop_world((pid_t)syscall(SYS_gettid), e);
}

void world_start(void)
{
	start_world(LOAD_RELAXED(&epoch));
}

uint32_t world_threads(void)
{
	return nslots;
}

unsigned world_stacks(struct stack_mark *marks, size_t *nmarks)
{
	unsigned stopped = 0;

	for (uint32_t i = 0; i < nslots; i++) {
		if (slots[i].state != SLOT_STOPPED)
			continue;
		stopped++;
		marks[(*nmarks)++] = (struct stack_mark){
			slots[i].sp, slots[i].sp_alt, slots[i].lo, slots[i].hi, slots[i].main,
		};
	}
	return stopped;
}

void world_fork_child(void)
{
	STORE_RELAXED(&self_pid, getpid());
}
