// SPDX-License-Identifier: MIT
/*
 * The quarantine scan: which of a set of address ranges (quarantined arena
 * chunks) does some word of the program still point into?
 *
 * Go releases a quarantined chunk once a GC cycle has found no pointer into
 * it. C has no GC, so this does what conservative collectors (Boehm) and
 * MarkUs/MineSweeper do: read every word of every root and take any word
 * whose value lies in [base, limit) of a target as a pointer to it,
 * interior pointers included. A word that only looks like a pointer keeps
 * its chunk: the error is always on the side of keeping. A pointer one past
 * the end is not counted: it is the address of whatever follows (the next
 * span, or a mapping that points to its own start, as sanitizer allocators
 * do), and counting it kept chunks for every pointer to their neighbours;
 * a stale pointer is dereferenced inside its chunk or not at all.
 *
 * Roots, and how each is read:
 *  - threads: every task of /proc/self/task, those that never called the
 *    allocator too, is stopped (below); its registers are then in the
 *    signal frame on its stack (general registers and the FP/SIMD state the
 *    kernel saves), and its stack is read from the stop handler's frame (or
 *    the interrupted stack pointer minus the 128-byte red zone, when the
 *    handler ran on an alternate stack) to the end of its mapping, which
 *    takes in glibc's static TLS and struct pthread at the top of a thread
 *    stack. The scanning thread reads its own callee-saved registers,
 *    spilled, and its stack from the frame of scan_for_pointers' caller:
 *    the scan's own frames hold the targets and are left out.
 *  - loaded objects and every other writable mapping: /proc/self/maps, read
 *    with read(2) into mapped memory. Every private or shared mapping that
 *    is readable and writable is a root (.data and .bss of every object,
 *    glibc's heap, mmaped buffers, shared memory, dead thread stacks glibc
 *    keeps), except: the heap's own address space (read below), the
 *    allocator's metadata (sysmem.h's registry: span and chunk structs hold
 *    target addresses by design), the scan's scratch and its targets, and
 *    mappings that are not plain memory: [vvar], [vsyscall], [uprobes],
 *    anon_inode: mappings (io_uring rings, perf buffers, DMA buffers) and
 *    device files under /dev/ (reading some has side effects; /dev/zero and
 *    /dev/shm/ are memory and are read). dl_iterate_phdr is not used: it
 *    takes the loader's lock, which a stopped thread may hold (in dlopen,
 *    in the unwinder), and /proc/self/maps names the same segments.
 *  - the heap: every in-use span through the arena map, with the heap lock
 *    held. Small spans: the allocated objects only (what mspan.h defines as
 *    allocated, exact with the world stopped). Free slots are not roots:
 *    their data is dead, a freed object is not a place the program may
 *    keep a pointer, and reading them would keep chunks for as long as
 *    stale data sits in recycled memory. Large spans: the whole span.
 *    Arena chunks: what chunk_roots says (arena_scan.c: live chunks whole;
 *    freed, reused, warm and ready chunks hold dead data or zeros).
 *
 * Never faulting. Memory the program mapped may hold guard pages
 * (MADV_GUARD_INSTALL, invisible in /proc/self/maps), be a truncated file
 * (SIGBUS) or be PROT_NONE (left out by its permissions), and a live chunk
 * may be faulting already (a free faults it before it changes state). So
 * such memory is read with process_vm_readv(2) on our own pid, one iovec
 * per page: a page that cannot be read ends the transfer there, the scan
 * skips it and goes on. Only the heap's small and large spans, which are
 * the allocator's own and always readable, are read in place. Pages that
 * are not resident (mincore) are not read: a page never touched holds
 * nothing, and reading it would map it (or, for sanitizer shadows and
 * sparse reservations, take hours). Swapped-out pages are not resident
 * either, so when the process has swap in use (VmSwap) the filter is off
 * for anonymous memory and everything is read.
 *
 * The target lookup: a word is first compared with [lowest base, highest
 * limit), then looked up in a bitmap with one bit per granule of that span
 * (at least 64 KiB, more when the span is wide, so the bitmap stays within
 * 128 KiB), set where a target overlaps; only words that pass both are
 * binary-searched. Random data and pointers to the rest of the heap
 * mostly stop at the first or second test. Once every target is found the
 * scan stops reading.
 *
 * Stop-the-world protocol. Threads are stopped so that none can copy a
 * stale pointer from a place not yet read to one already read, or move it
 * between registers and memory, while the scan runs:
 *
 *  1. The scanner takes the scan lock, then the heap lock and the
 *     metadata registry's lock: no stopped thread can hold them halfway
 *     through an update of what the scan walks (the span map, the
 *     registry). Nothing the scan does afterwards takes a lock or
 *     allocates (no stdio, no opendir: raw system calls into mapped
 *     buffers), so a thread stopped inside malloc, inside glibc or inside
 *     the loader cannot block it.
 *  2. It lists /proc/self/task with getdents64, publishes one slot per
 *     thread (tid) and sends each SCAN_SIGNAL with tgkill.
 *  3. The handler (every signal blocked while it runs, so no other handler
 *     can run on a stopped thread) checks that the signal is the scan's
 *     (SI_TKILL from our own pid while a scan is in progress; anything else
 *     goes to the handler installed before ours), spills its callee-saved
 *     registers into its frame, stores its stack pointer in its slot and
 *     the epoch with a release store, wakes the scanner (futex) and waits
 *     on a futex until the scanner publishes the end of that epoch.
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
 * any. If the program installs its own handler after ours, scans no longer
 * stop threads: each one is then incomplete (nothing is released by it) and
 * a warning says so once.
 *
 * Effects on the program: the handler is installed with SA_RESTART, so a
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
 *
 * What no scan sees: pointers held only by the kernel (epoll_event.data,
 * io_uring user_data, sigevent values, a pending write's buffer), pointers
 * hidden by the program (XOR-linked, tagged in high bits, stored
 * misaligned, compressed), and other processes' copies. Those chunks
 * leave quarantine as if nobody pointed into them.
 * With kmod, live chunks are device memory read through process_vm_readv
 * too: a page the kernel will not pin is skipped like a guard page.
 *
 * fork(): fork.c's prepare handler takes the scan lock first, so a fork
 * waits for a scan to end; the child starts with no scan in progress.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "arenamap.h"
#include "mheap_impl.h"
#include "mspan.h"
#include "scan.h"
#include "sysmem.h"

#define SCAN_SIGNAL	SIGURG
#define OS_PAGE		((uintptr_t)4096)
/* Pages per process_vm_readv call, and the buffer they go to. */
#define READ_PAGES	256
#define READ_BYTES	(READ_PAGES * OS_PAGE)
/* mincore is asked about this much at a time. */
#define MINCORE_WINDOW	((uintptr_t)64 << 20)
/* The lookup bitmap's granule, at least, and its size, at most. */
#define GRANULE_SHIFT_MIN 16
#define FILTER_BITS_MAX	((uintptr_t)1 << 20)
/* A thread that has not stopped after this long fails the scan. */
#define STOP_TIMEOUT_NS	((uint64_t)1000000000)
/* Rounds of listing the tasks before giving up on a process that keeps
 * making threads faster than they can be stopped. */
#define LIST_ROUNDS	64

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZER_SHADOW_MIN ((uintptr_t)1 << 40)
#endif
/*
 * ThreadSanitizer's shadow and meta shadow on x86-64 (GCC's libtsan layout:
 * shadow from 1 TiB, meta shadow 0x3000'0000'0000 to 0x4000'0000'0000; the
 * program's memory is below 512 GiB or above 0x5500'0000'0000). The
 * runtime splits these reservations into pieces (mprotect, madvise), some
 * of them hundreds of GiB yet under SANITIZER_SHADOW_MIN: asking mincore
 * about every page of them took most of a minute per scan.
 */
#if defined(__SANITIZE_THREAD__) && defined(__x86_64__)
#define TSAN_SHADOW_BASE ((uintptr_t)1 << 40)
#define TSAN_SHADOW_LIMIT ((uintptr_t)0x400000000000)
#endif
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
	uint32_t state;		/* enum slot_state, the scanner's own */
};

static mh_lock_t scan_lock = MH_LOCK_INIT;
static struct scan_totals totals;	/* under scan_lock */

/* Read by the handler without a lock. A scan is in progress while epoch
 * != resumed. Slot arrays are never unmapped: a late handler may still
 * look at an old one. */
static uint32_t epoch, resumed, acks;
static struct slot *slots;
static uint32_t nslots, slots_cap;
static pid_t self_pid;

static bool handler_installed;
static struct sigaction prev_action;
static bool warned_handler, warned_incomplete;

/* ------------------------------------------------------------ syscalls */

static void futex_wait(uint32_t *w, uint32_t val, long ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, ns ? &ts : NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static int signal_thread(pid_t tid, int sig)
{
	return (int)syscall(SYS_tgkill, self_pid, tid, sig);
}

static void *map_scratch(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------ registers */

/*
 * Spill the callee-saved registers into regs. The caller-saved ones are
 * dead across the call this runs in (the handler's interrupted context has
 * all of them in the signal frame already).
 */
#define SAVED_REGS 6
static inline __attribute__((always_inline)) void spill_registers(uintptr_t regs[SAVED_REGS])
{
#if defined(__x86_64__)
	__asm__ volatile("movq %%rbx, 0(%0)\n\t"
			 "movq %%rbp, 8(%0)\n\t"
			 "movq %%r12, 16(%0)\n\t"
			 "movq %%r13, 24(%0)\n\t"
			 "movq %%r14, 32(%0)\n\t"
			 "movq %%r15, 40(%0)"
			 : : "r"(regs) : "memory");
#else
	/* Elsewhere: make the compiler save every callee-saved register in
	 * this frame, which the stack read covers. */
	__builtin_unwind_init();
	memset(regs, 0, SAVED_REGS * sizeof(*regs));
#endif
}

/* ------------------------------------------------------------ the stop */

static void chain_signal(int sig, siginfo_t *si, void *uc)
{
	if (prev_action.sa_flags & SA_SIGINFO) {
		if (prev_action.sa_sigaction)
			prev_action.sa_sigaction(sig, si, uc);
	} else if (prev_action.sa_handler != SIG_DFL && prev_action.sa_handler != SIG_IGN) {
		prev_action.sa_handler(sig);
	}
	/* SIG_DFL and SIG_IGN of SIGURG both ignore it. */
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
#if defined(__x86_64__)
	{
		const ucontext_t *uc = ucv;

		STORE_RELAXED(&sl->sp_alt, (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128);
	}
#endif
	STORE_RELEASE(&sl->acked, e);
	__atomic_add_fetch(&acks, 1, __ATOMIC_RELEASE);
	futex_wake(&acks);
	for (uint32_t r; (r = LOAD_ACQUIRE(&resumed)) != e;)
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

/* ------------------------------------------------------------ scratch */

/* One scan's working memory, all of it mapped (never from the heap), and
 * its lookup structures. */
struct scan {
	const struct sys_range *t;
	size_t n;
	uint8_t *ref;
	size_t left;		/* targets not found yet */
	/* The filter: [lo, lo + span) and a bit per granule. */
	uintptr_t lo, span;
	unsigned shift;
	uint64_t *bitmap;
	/* Ranges no root is read from, sorted and merged. */
	struct sys_range *excl;
	size_t nexcl;
	/* Stack pointers: a mapping holding one is read from the lowest up. */
	uintptr_t *marks;
	size_t nmarks;
	/* Reading. */
	unsigned char *buf;	/* READ_BYTES */
	unsigned char *vec;	/* mincore, one byte per OS page of a window */
	struct iovec *iov;	/* READ_PAGES */
	bool resident_only;	/* no swap in use: non-resident pages hold nothing */
	bool read_failed;	/* process_vm_readv is not allowed */
	uint64_t bytes;
	scan_chunk_roots_fn chunk_roots;
	/* /proc/self/maps, read whole. */
	char *maps;
	size_t maps_len, maps_cap;
};

/* ------------------------------------------------------------ lookup */

static void mark(struct scan *sc, size_t i)
{
	if (!sc->ref[i]) {
		sc->ref[i] = 1;
		sc->left--;
	}
}

/* w passed the filter: find the target holding it, [base, limit). */
static void hit(struct scan *sc, uintptr_t w)
{
	size_t lo = 0, hi = sc->n;

	/* The last target whose base is <= w. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (sc->t[mid].base <= w)
			lo = mid;
		else
			hi = mid;
	}
	if (sc->t[lo].base > w)
		return;

	if (w < sc->t[lo].limit)
		mark(sc, lo);
}

/*
 * The inner loop: every aligned word of [p, end). Not instrumented by the
 * sanitizers: it reads memory other threads wrote (stopped, but the tools
 * cannot know) and stacks with AddressSanitizer's redzones in them.
 */
__attribute__((no_sanitize_address, no_sanitize_thread))
static void scan_words(struct scan *sc, uintptr_t a, uintptr_t b)
{
	const uintptr_t *p = (const uintptr_t *)ALIGN_UP(a, sizeof(uintptr_t));
	const uintptr_t *end = (const uintptr_t *)ALIGN_DOWN(b, sizeof(uintptr_t));
	const uintptr_t lo = sc->lo, span = sc->span;
	const unsigned shift = sc->shift;
	const uint64_t *bm = sc->bitmap;

	if (p >= end)
		return;
	sc->bytes += (uintptr_t)end - (uintptr_t)p;
	for (; p < end; p++) {
		uintptr_t d = *p - lo;

		if (likely(d >= span))
			continue;
		d >>= shift;
		if (bm[d >> 6] >> (d & 63) & 1)
			hit(sc, *p);
	}
}

/* The filter over the targets. */
static void filter_build(struct scan *sc)
{
	uintptr_t lo = sc->t[0].base, hi = sc->t[sc->n - 1].limit;
	unsigned shift = GRANULE_SHIFT_MIN;

	while (((hi - lo) >> shift) + 1 > FILTER_BITS_MAX)
		shift++;
	sc->lo = lo;
	sc->span = hi - lo;
	sc->shift = shift;
	for (size_t i = 0; i < sc->n; i++) {
		uintptr_t g0 = (sc->t[i].base - lo) >> shift, g1 = (sc->t[i].limit - 1 - lo) >> shift;

		for (uintptr_t g = g0; g <= g1; g++)
			sc->bitmap[g >> 6] |= (uint64_t)1 << (g & 63);
	}
}

/* ------------------------------------------------------------ exclusions */

static void range_sort(struct sys_range *r, size_t n)
{
	/* Shell sort: a few thousand ranges, mostly sorted already. */
	for (size_t gap = n / 2; gap; gap /= 2)
		for (size_t i = gap; i < n; i++) {
			struct sys_range x = r[i];
			size_t j = i;

			for (; j >= gap && r[j - gap].base > x.base; j -= gap)
				r[j] = r[j - gap];
			r[j] = x;
		}
}

static void excl_add(struct scan *sc, uintptr_t base, uintptr_t limit)
{
	if (limit > base)
		sc->excl[sc->nexcl++] = (struct sys_range){ base, limit };
}

static void excl_finish(struct scan *sc)
{
	size_t out = 0;

	range_sort(sc->excl, sc->nexcl);
	for (size_t i = 0; i < sc->nexcl; i++) {
		if (out && sc->excl[i].base <= sc->excl[out - 1].limit) {
			if (sc->excl[i].limit > sc->excl[out - 1].limit)
				sc->excl[out - 1].limit = sc->excl[i].limit;
			continue;
		}
		sc->excl[out++] = sc->excl[i];
	}
	sc->nexcl = out;
}

/* ------------------------------------------------------------ reading */

/* Whether the page at p may be read: resident, or anything with swap. */
static size_t resident_window(struct scan *sc, uintptr_t a, uintptr_t b)
{
	size_t pages = (b - a) / OS_PAGE;

	if (!sc->resident_only || mincore((void *)a, b - a, sc->vec))
		memset(sc->vec, 1, pages);
	return pages;
}

/*
 * Read [a, b) of memory that may not be readable, through process_vm_readv
 * one page per iovec (a page that fails ends a transfer: it is skipped and
 * the next transfer starts after it), resident pages only, and scan it.
 */
static void read_safe(struct scan *sc, uintptr_t a, uintptr_t b)
{
	uintptr_t pa = ALIGN_DOWN(a, OS_PAGE), pb = ALIGN_UP(b, OS_PAGE);

	for (uintptr_t w = pa; w < pb && sc->left && !sc->read_failed;) {
		uintptr_t we = pb - w > MINCORE_WINDOW ? w + MINCORE_WINDOW : pb;
		size_t pages = resident_window(sc, w, we);

		for (size_t i = 0; i < pages && sc->left;) {
			size_t k = 0;

			if (!(sc->vec[i] & 1)) {
				i++;
				continue;
			}
			for (; i + k < pages && k < READ_PAGES && (sc->vec[i + k] & 1); k++) {
				sc->iov[k].iov_base = (void *)(w + (i + k) * OS_PAGE);
				sc->iov[k].iov_len = OS_PAGE;
			}
			struct iovec local = { sc->buf, k * OS_PAGE };
			ssize_t got = process_vm_readv(self_pid, &local, 1, sc->iov, k, 0);

			if (got < 0 && (errno == ENOSYS || errno == EPERM)) {
				sc->read_failed = true;
				return;
			}
			size_t ok = got > 0 ? (size_t)got / OS_PAGE : 0;

			for (size_t m = 0; m < ok; m++) {
				uintptr_t s = w + (i + m) * OS_PAGE, e = s + OS_PAGE;
				uintptr_t from = s < a ? a : s, to = e > b ? b : e;
				uintptr_t copy = (uintptr_t)sc->buf + m * OS_PAGE;

				scan_words(sc, copy + (from - s), copy + (to - s));
			}
			i += ok < k ? ok + 1 : k;
		}
		w = we;
	}
}

/* Read [a, b), memory of the heap's own that is always readable, in place:
 * resident pages only. */
static void read_direct(struct scan *sc, uintptr_t a, uintptr_t b)
{
	uintptr_t pa = ALIGN_DOWN(a, OS_PAGE), pb = ALIGN_UP(b, OS_PAGE);

	for (uintptr_t w = pa; w < pb && sc->left;) {
		uintptr_t we = pb - w > MINCORE_WINDOW ? w + MINCORE_WINDOW : pb;
		size_t pages = resident_window(sc, w, we);

		for (size_t i = 0; i < pages; i++) {
			uintptr_t s = w + i * OS_PAGE, e = s + OS_PAGE;

			if (sc->vec[i] & 1)
				scan_words(sc, s < a ? a : s, e > b ? b : e);
		}
		w = we;
	}
}

/* ------------------------------------------------------------ roots */

/* The allocated objects of a small span (mspan.h's definition). */
static void scan_small_span(struct scan *sc, const struct mspan *s)
{
	uint32_t n = s->nelems, size = s->elemsize;
	uint32_t fi = LOAD_RELAXED(&s->freeindex);

	/* A span being set up by a stopped thread may not be complete. */
	if (!size || !n || n > MH_MAX_OBJS_PER_SPAN ||
	    (uint64_t)n * size > (uint64_t)s->npages << MH_PAGE_SHIFT || fi > n)
		return;
	for (uint32_t w = 0; w < mspan_bitmap_words(n) && sc->left; w++) {
		uint64_t live = LOAD_RELAXED(&s->bits[w].alloc);

		if (fi > w * 64)
			live |= fi >= (w + 1) * 64 ? ~(uint64_t)0 : ((uint64_t)1 << (fi - w * 64)) - 1;
		live &= ~(LOAD_RELAXED(&s->bits[w].local) | LOAD_RELAXED(&s->bits[w].remote));
		if (n < (w + 1) * 64)
			live &= ((uint64_t)1 << (n - w * 64)) - 1;
		for (; live; live &= live - 1) {
			uintptr_t o = s->base + (uintptr_t)(w * 64 + __builtin_ctzll(live)) * size;

			scan_words(sc, o, o + size);
		}
	}
}

/* Every in-use span of the heap (heap lock held), in address order. */
static void scan_heap(struct scan *sc)
{
	for (struct heap_arena *ha = arenamap_first(); ha && sc->left; ha = ha->next) {
		for (uintptr_t i = 0; i < MH_PAGES_PER_ARENA && sc->left;) {
			const struct mspan *s = LOAD_RELAXED(&ha->spans[i]);
			uintptr_t p = ha->base + (i << MH_PAGE_SHIFT);
			struct sys_range r;

			if (!s || s->base != p || !s->npages) {
				i++;
				continue;
			}
			switch (LOAD_RELAXED(&s->state)) {
			case MSPAN_SMALL:
				scan_small_span(sc, s);
				break;
			case MSPAN_LARGE:
				read_direct(sc, s->base, mspan_limit(s));
				break;
			case MSPAN_CHUNK:
				if (sc->chunk_roots && sc->chunk_roots(s, &r) && r.base >= s->base &&
				    r.limit <= mspan_limit(s) && r.base < r.limit)
					read_safe(sc, r.base, r.limit);
				break;
			default:
				break;
			}
			/* A span may run into the next arena: its pages there are
			 * not its first, and are passed over one by one. */
			i += s->npages;
		}
	}
}

/* Read /proc/self/maps whole into sc->maps (mapped, grown by mremap). */
static bool maps_read(struct scan *sc)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	sc->maps_len = 0;
	for (;;) {
		if (sc->maps_cap - sc->maps_len < 4096) {
			void *p = mremap(sc->maps, sc->maps_cap, sc->maps_cap * 2, MREMAP_MAYMOVE);

			if (p == MAP_FAILED) {
				close(fd);
				return false;
			}
			sc->maps = p;
			sc->maps_cap *= 2;
		}
		ssize_t n = read(fd, sc->maps + sc->maps_len, sc->maps_cap - sc->maps_len - 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		sc->maps_len += (size_t)n;
	}
	close(fd);
	sc->maps[sc->maps_len] = '\0';
	return true;
}

static uintptr_t parse_hex(const char **c)
{
	uintptr_t v = 0;

	for (;; (*c)++) {
		char ch = **c;

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uintptr_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uintptr_t)(ch - 'a' + 10);
		else
			return v;
	}
}

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* Whether a mapping named path is plain memory (see the top). */
static bool memory_mapping(const char *path)
{
	if (path[0] == '[')
		return starts(path, "[stack") || starts(path, "[heap") || starts(path, "[anon");
	if (starts(path, "anon_inode:"))
		return false;
	if (starts(path, "/dev/"))
		return starts(path, "/dev/zero") || starts(path, "/dev/shm/");
	return true;
}

/* [a, b) minus the exclusions, each piece read safely. */
static void read_mapping_part(struct scan *sc, uintptr_t a, uintptr_t b)
{
	size_t lo = 0, hi = sc->nexcl;

	/* The first exclusion ending after a. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sc->excl[mid].limit <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; a < b && sc->left; i++) {
		uintptr_t e = i < sc->nexcl && sc->excl[i].base < b ? sc->excl[i].base : b;

		if (e > a)
			read_safe(sc, a, e);
		if (i >= sc->nexcl)
			break;
		a = sc->excl[i].limit;
	}
}

/* Every readable, writable mapping that is memory: from the lowest stack
 * pointer in it when it holds one (a thread's stack), else whole. */
static void scan_mappings(struct scan *sc)
{
	for (const char *c = sc->maps; *c && sc->left;) {
		uintptr_t a = parse_hex(&c), b, from;
		const char *perm, *path;

		c++;	/* '-' */
		b = parse_hex(&c);
		perm = ++c;
		/* offset, device, inode, then the path (maybe none). */
		for (int field = 0; field < 4 && *c && *c != '\n'; field++) {
			while (*c && *c != ' ' && *c != '\n')
				c++;
			while (*c == ' ')
				c++;
		}
		path = c;
		while (*c && *c != '\n')
			c++;
		if (*c)
			c++;
		if (perm[0] != 'r' || perm[1] != 'w' || !memory_mapping(path))
			continue;
#ifdef SANITIZER_SHADOW_MIN
		/* A sanitizer's shadow: no program data (see the top). */
		if (b - a >= SANITIZER_SHADOW_MIN)
			continue;
#endif
#ifdef TSAN_SHADOW_BASE
		if (a >= TSAN_SHADOW_BASE && b <= TSAN_SHADOW_LIMIT)
			continue;
#endif
		from = a;
		for (size_t i = 0; i < sc->nmarks; i++)
			if (sc->marks[i] >= a && sc->marks[i] < b && (from == a || sc->marks[i] < from))
				from = sc->marks[i];
		read_mapping_part(sc, from, b);
	}
}

/* Swap in use (VmSwap of /proc/self/status above 0 kB). */
static bool swap_in_use(void)
{
	char buf[4096];
	const char *p;

	if (!sys_read_file("/proc/self/status", buf, sizeof(buf)))
		return true;
	p = strstr(buf, "VmSwap:");
	if (!p)
		return false;	/* no swap accounting: no swap */
	for (p += 7; *p == ' ' || *p == '\t'; p++)
		;
	return *p != '0';
}

/* ------------------------------------------------------------ the scan */

/* Scratch for n targets, m metadata ranges: one mapping. */
static size_t scratch_len(size_t nexcl)
{
	return ALIGN_UP(FILTER_BITS_MAX / 8 + READ_BYTES + MINCORE_WINDOW / OS_PAGE +
			READ_PAGES * sizeof(struct iovec) + nexcl * sizeof(struct sys_range) +
			(size_t)4 * OS_PAGE, OS_PAGE);
}

static void scan_with_world_stopped(struct scan *sc, pid_t self, uint32_t e, uintptr_t own_sp,
				    const uintptr_t *own_regs, struct scan_result *res)
{
	uint64_t t0 = mh_nanotime();

	size_t marks_len = 0;

	res->complete = stop_world(self, e) && maps_read(sc);
	if (res->complete) {
		/* This thread, and two per other thread. */
		marks_len = ALIGN_UP((2 * (size_t)nslots + 1) * sizeof(uintptr_t), OS_PAGE);
		sc->marks = map_scratch(marks_len);
		res->complete = sc->marks != NULL;
	}
	if (res->complete) {
		sc->marks[sc->nmarks++] = own_sp;
		for (uint32_t i = 0; i < nslots; i++) {
			if (slots[i].state != SLOT_STOPPED)
				continue;
			res->threads++;
			sc->marks[sc->nmarks++] = slots[i].sp;
			if (slots[i].sp_alt)
				sc->marks[sc->nmarks++] = slots[i].sp_alt;
		}
		scan_words(sc, (uintptr_t)own_regs, (uintptr_t)(own_regs + SAVED_REGS));
		scan_heap(sc);
		scan_mappings(sc);
		if (sc->read_failed)
			res->complete = false;
	}
	start_world(e);
	res->pause_ns = mh_nanotime() - t0;
	if (sc->marks)
		munmap(sc->marks, marks_len);
}

__attribute__((noinline))
void scan_for_pointers(const struct sys_range *targets, size_t n, uint8_t *referenced,
		       scan_chunk_roots_fn chunk_roots, struct scan_result *res)
{
	uintptr_t own_sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t regs_here[SAVED_REGS];
	uint64_t t0 = mh_nanotime();
	struct scan sc = {
		.t = targets, .n = n, .ref = referenced, .left = n,
		.chunk_roots = chunk_roots,
	};
	const struct sys_range *meta;
	size_t nmeta, len = 0;
	uint32_t ntasks = 0;
	unsigned char *scratch = NULL;
	uint32_t e;

	spill_registers(regs_here);
	memset(res, 0, sizeof(*res));
	memset(referenced, 0, n);
	if (!n) {
		res->complete = true;
		return;
	}
	mheap_init();
	mh_lock(&scan_lock);
	sc.resident_only = !swap_in_use();
	mh_lock(&mh_heap.lock);
	nmeta = sys_metadata_lock(&meta);

	size_t nha = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		nha++;
	len = scratch_len(nmeta + nha + 8);
	scratch = map_scratch(len);
	sc.maps_cap = 1 << 20;
	sc.maps = map_scratch(sc.maps_cap);
	STORE_RELAXED(&self_pid, getpid());
	for_each_task(count_task, &ntasks);
	/* Room for the threads there are and as many more made meanwhile. */
	if (!scratch || !sc.maps || !handler_ready() || !slots_reserve(2 * ntasks + 64)) {
		/* Incomplete: every target stays referenced. */
		memset(referenced, 1, n);
		goto out;
	}
	sc.bitmap = (uint64_t *)scratch;
	sc.buf = scratch + FILTER_BITS_MAX / 8;
	sc.vec = sc.buf + READ_BYTES;
	sc.iov = (struct iovec *)(sc.vec + MINCORE_WINDOW / OS_PAGE);
	sc.excl = (struct sys_range *)(sc.iov + READ_PAGES);
	filter_build(&sc);

	for (size_t i = 0; i < nmeta; i++)
		excl_add(&sc, meta[i].base, meta[i].limit);
	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		excl_add(&sc, ha->base, ha->base + MH_ARENA_SIZE);
	excl_add(&sc, (uintptr_t)scratch, (uintptr_t)scratch + len);
	excl_add(&sc, (uintptr_t)targets, (uintptr_t)(targets + n));
	excl_add(&sc, ALIGN_DOWN((uintptr_t)referenced, 8), ALIGN_UP((uintptr_t)(referenced + n), 8));
	excl_finish(&sc);

	/* A new epoch: from here the handler stops the threads signalled. */
	e = LOAD_RELAXED(&epoch) + 1;
	STORE_RELAXED(&nslots, 0);
	STORE_RELEASE(&epoch, e);
	scan_with_world_stopped(&sc, (pid_t)syscall(SYS_gettid), e, own_sp, regs_here, res);
	if (!res->complete)
		memset(referenced, 1, n);
out:
	sys_metadata_unlock();
	mh_unlock(&mh_heap.lock);
	if (scratch)
		munmap(scratch, len);
	if (sc.maps)
		munmap(sc.maps, sc.maps_cap);
	res->bytes = sc.bytes;
	res->ns = mh_nanotime() - t0;
	totals.scans++;
	totals.incomplete += !res->complete;
	totals.bytes += res->bytes;
	totals.ns += res->ns;
	if (res->pause_ns > totals.max_pause_ns)
		totals.max_pause_ns = res->pause_ns;
	if (!res->complete && !warned_incomplete) {
		warned_incomplete = true;
		mh_print(STDERR_FILENO, "mheap: a quarantine scan could not stop every thread or "
			 "read every root: its chunks stay quarantined");
	}
	mh_unlock(&scan_lock);
}

/* How much dead stack scan_scrub_stack zeroes. */
#define SCRUB_BYTES 8192

__attribute__((noinline)) void scan_scrub_stack(void)
{
	char dead[SCRUB_BYTES];

	explicit_bzero(dead, sizeof(dead));
	__asm__ volatile("" : : "r"(dead) : "memory");
}

void scan_totals(struct scan_totals *t)
{
	mh_lock(&scan_lock);
	*t = totals;
	mh_unlock(&scan_lock);
}

void scan_fork_prepare(void)
{
	mh_lock(&scan_lock);
}

void scan_fork_parent(void)
{
	mh_unlock(&scan_lock);
}

void scan_fork_child(void)
{
	STORE_RELAXED(&self_pid, getpid());
	mh_unlock(&scan_lock);
}
