// SPDX-License-Identifier: MIT
/*
 * The quarantine scan's helper threads: while the world is stopped, the
 * scanning thread and up to SCAN_THREADS_MAX - 1 helpers read the roots
 * together, each taking the next unit of them (scan_roots.c cuts the roots
 * into units of at most 4 MiB) until none is left. A scan reads the whole
 * process at the memory bandwidth of the threads reading it, and one core
 * reads about half of what two do here (docs/arenas.md), so the pause, the
 * time every thread of the program waits, is shared out among the CPUs
 * that the stopped threads leave idle. Go's collector uses its idle Ps the
 * same way.
 *
 * Helpers are made for one scan and gone after it:
 *  - made before the scan takes the heap lock (pthread_create allocates),
 *    with every signal blocked, so no handler of the program ever runs on
 *    them, on a stack and reading buffers mapped here: one mapping each,
 *    left out of the roots (they hold nothing of the program's);
 *  - left running by the stop (scan_stop.c exempts their thread ids);
 *  - given a copy of the scanner's struct scan with buffers of their own;
 *    what the readers share is read-only (the targets, the filter, the
 *    exclusions, the units) or atomic (the cursor over the units, the found
 *    flags and the count of targets not found yet);
 *  - joined once the heap lock is dropped (a thread's end frees its TLS
 *    array through the heap).
 * A release store and an acquire load order each hand-over (the scanner's
 * setting up before a helper reads; a helper's results before the scanner
 * uses them), with futexes to wait on; ThreadSanitizer sees the atomics.
 * They take no lock and allocate nothing while they read.
 *
 * What this costs the program: a thread creation and join per helper per
 * scan (tens of microseconds against scans of milliseconds), and, from the
 * first scan with helpers on, a process that glibc counts as
 * multi-threaded (__libc_single_threaded stays false): a program that had
 * one thread takes every lock with atomic instructions from then on (3.5%
 * of the arena-heavy workload's samples, docs/arenas.md). The pause it
 * saves was worth more there. MHEAP_QUARANTINE_SCAN_THREADS=1 scans on the
 * freeing thread alone. A fork waits for a scan to end (the
 * scan lock), so a child never inherits helpers. If a thread cannot be
 * made, the scan reads with those that could. Helpers are made only for
 * scans the program asked for through mheap's own calls (an arena's free,
 * mh_quarantine_release): one started inside free(), by a guarded block of
 * the secure heap, reads alone, and is skipped while another scan is in
 * progress (scan.h says why).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "scan_impl.h"

/* A helper's mapping: its struct helper, a guard page, its stack, its
 * reading buffers. Its struct scan holds target addresses (the filter's
 * bounds), so it lives there, left out of the roots, not in .bss. */
#define HELPER_STACK	((size_t)2 << 20)
#define HELPER_HEAD	ALIGN_UP(sizeof(struct helper), OS_PAGE)
#define HELPER_GUARD	HELPER_HEAD
#define HELPER_STACK_AT	(HELPER_GUARD + OS_PAGE)
#define HELPER_BUFFERS	(HELPER_STACK_AT + HELPER_STACK)
#define HELPER_MAP	ALIGN_UP(HELPER_BUFFERS + READER_SCRATCH, OS_PAGE)

enum helper_go {
	HELPER_WAIT,	/* made, not told yet */
	HELPER_READ,	/* read units of sc */
	HELPER_QUIT,	/* end without reading (the scan stopped early) */
};

struct helper {
	pthread_t thread;
	int32_t tid;		/* published by the helper once it runs */
	uint32_t go;		/* enum helper_go, set by the scanner */
	uint32_t done;		/* set by the helper when it stops reading */
	uint64_t cpu_ns;	/* its CPU time reading */
	struct scan sc;		/* its reader */
};

/* Under the scan lock; each at the start of its mapping. */
static struct helper *helpers[SCAN_THREADS_MAX - 1];
static unsigned nhelpers;
/* ThreadSanitizer cannot start threads in the child of a process that had
 * several when it forked (it ends the process): a child scans alone. */
static bool no_helpers;

uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	uint32_t go;

	STORE_RELEASE(&h->tid, (int32_t)syscall(SYS_gettid));
	futex_wake((uint32_t *)&h->tid);
	while ((go = LOAD_ACQUIRE(&h->go)) == HELPER_WAIT)
		futex_wait(&h->go, go, 0);
	if (go == HELPER_READ) {
		uint64_t t0 = thread_cpu_ns();

		scan_units_read(&h->sc);
		h->cpu_ns = thread_cpu_ns() - t0;
	}
	STORE_RELEASE(&h->done, 1);
	futex_wake(&h->done);
	return NULL;
}

/* CPUs this process may run on, at most SCAN_THREADS_MAX. */
static unsigned cpus_allowed(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > SCAN_THREADS_MAX ? SCAN_THREADS_MAX : (unsigned)n;
}

unsigned helpers_start(unsigned threads)
{
	unsigned want = (threads ? threads : cpus_allowed()) - 1;
	pthread_attr_t attr;
	sigset_t all, old;

	nhelpers = 0;
	if (no_helpers)
		return 0;
	if (want > SCAN_THREADS_MAX - 1)
		want = SCAN_THREADS_MAX - 1;
	if (!want || pthread_attr_init(&attr))
		return 0;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (nhelpers < want) {
		unsigned char *m = map_scratch(HELPER_MAP);
		struct helper *h = (struct helper *)m;

		if (!m)
			break;
		if (mprotect(m + HELPER_GUARD, OS_PAGE, PROT_NONE) ||
		    pthread_attr_setstack(&attr, m + HELPER_STACK_AT, HELPER_STACK) ||
		    pthread_create(&h->thread, &attr, helper_main, h)) {
			munmap(m, HELPER_MAP);
			break;
		}
		helpers[nhelpers++] = h;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	/* Each must be running for its thread id to be exempted. */
	for (unsigned i = 0; i < nhelpers; i++)
		while (!LOAD_ACQUIRE(&helpers[i]->tid))
			futex_wait((uint32_t *)&helpers[i]->tid, 0, 0);
	return nhelpers;
}

unsigned helpers_tids(int32_t *tids)
{
	for (unsigned i = 0; i < nhelpers; i++)
		tids[i] = LOAD_RELAXED(&helpers[i]->tid);
	return nhelpers;
}

void helpers_exclude(struct scan *sc)
{
	for (unsigned i = 0; i < nhelpers; i++)
		excl_add(sc, (uintptr_t)helpers[i], (uintptr_t)helpers[i] + HELPER_MAP);
}

void helpers_run(struct scan *sc)
{
	for (unsigned i = 0; i < nhelpers; i++) {
		struct helper *h = helpers[i];

		h->sc = *sc;
		h->sc.bytes = 0;
		h->sc.read_failed = false;
		reader_buffers(&h->sc, (unsigned char *)h + HELPER_BUFFERS);
		STORE_RELEASE(&h->go, HELPER_READ);
		futex_wake(&h->go);
	}
}

void helpers_wait(struct scan *sc, uint64_t *cpu_ns)
{
	for (unsigned i = 0; i < nhelpers; i++) {
		struct helper *h = helpers[i];

		if (LOAD_RELAXED(&h->go) != HELPER_READ)
			continue;
		while (!LOAD_ACQUIRE(&h->done))
			futex_wait(&h->done, 0, 0);
		sc->bytes += h->sc.bytes;
		sc->read_failed |= h->sc.read_failed;
		*cpu_ns += h->cpu_ns;
	}
}

void helpers_finish(void)
{
	for (unsigned i = 0; i < nhelpers; i++) {
		struct helper *h = helpers[i];

		if (LOAD_RELAXED(&h->go) == HELPER_WAIT) {
			STORE_RELEASE(&h->go, HELPER_QUIT);
			futex_wake(&h->go);
		}
		pthread_join(h->thread, NULL);
		munmap(h, HELPER_MAP);
	}
	nhelpers = 0;
}

void helpers_fork_child(void)
{
#if defined(__SANITIZE_THREAD__)
	no_helpers = true;
#endif
}
