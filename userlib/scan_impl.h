/* SPDX-License-Identifier: MIT */
/*
 * What the quarantine scan's files share: scan.c (the targets, the lookup,
 * one scan from start to end), scan_stop.c (stopping the other threads)
 * and scan_roots.c (the roots, read without faulting). scan.h is the
 * interface to the rest of the library.
 */
#ifndef MHEAP_SCAN_IMPL_H
#define MHEAP_SCAN_IMPL_H

#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "scan.h"

#define OS_PAGE		((uintptr_t)4096)
/* Pages per process_vm_readv call, and the buffer they go to. */
#define READ_PAGES	256
#define READ_BYTES	(READ_PAGES * OS_PAGE)
/* mincore is asked about this much at a time. */
#define MINCORE_WINDOW	((uintptr_t)64 << 20)
/* The lookup bitmap's granule, at least, and its size, at most. */
#define GRANULE_SHIFT_MIN 16
#define FILTER_BITS_MAX	((uintptr_t)1 << 20)

static inline void futex_wait(uint32_t *w, uint32_t val, long ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, ns ? &ts : NULL, NULL, 0);
}

static inline void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static inline void *map_scratch(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

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

/* ------------------------------------------------------------ scan_stop.c */

/* Before a scan (scan lock held): the handler installed, room for a slot
 * per thread; false when threads cannot be stopped. The threads of tids
 * (the scan's helpers) are not stopped. */
MH_HIDDEN bool world_prepare(const int32_t *tids, unsigned n);
/* Stop every other thread (a new epoch); false if one did not stop.
 * world_start() must follow in any case. */
MH_HIDDEN bool world_stop(void);
MH_HIDDEN void world_start(void);
/* Threads listed by the last world_stop(), stopped or not. */
MH_HIDDEN uint32_t world_threads(void);
/* A stopped thread (or the scanner) for the read of stacks: its lowest
 * live stack address (the stop handler's frame) and, where the handler ran
 * on an alternate stack, the interrupted one less the red zone (else 0);
 * its stack's bounds as recorded (scan_stacks.c), 0 and 0 when unknown;
 * whether it is the main thread (its stack the kernel's [stack]).
 * scan_roots.c leaves out [lo, lowest stack pointer in [lo, hi)) alone. */
struct stack_mark {
	uintptr_t sp, sp_alt;
	uintptr_t lo, hi;
	bool main;
};

/* How much dead stack scan_scrub_stack zeroes below its caller's frame;
 * scan_for_pointers scrubs its own, so the scanning thread's stack
 * reaches at least that far below its mark (marks[0]): those are the
 * scan's own frames, never roots (scan_roots.c). */
#define SCAN_SCRUB_BYTES 8192

/* Append a mark for every stopped thread to marks; returns how many
 * threads were stopped. */
MH_HIDDEN unsigned world_stacks(struct stack_mark *marks, size_t *nmarks);
MH_HIDDEN void world_fork_child(void);

/* ------------------------------------------------------------ one scan */

/* Pieces of work the readers of one scan take one at a time, at most this
 * long (scan_roots.c): a 64 MiB heap arena makes 16. */
#define UNIT_BYTES	((uintptr_t)4 << 20)

struct heap_arena;

/* A piece of the roots: [a, b) of a heap arena's pages (ha set) or of a
 * mapping, exclusions already taken out (ha NULL). */
struct scan_unit {
	uintptr_t a, b;
	const struct heap_arena *ha;
};

/* One reader's view of a scan: its working memory, all of it mapped (never
 * from the heap), and pointers to what the readers share: the lookup
 * structures, the found flags, the units and the cursor over them. */
struct scan {
	const struct sys_range *t;
	size_t n;
	uint8_t *ref;		/* shared: set with atomic exchange */
	size_t *left;		/* shared: targets not found yet (atomic) */
	/* The filter: [lo, lo + span) and a bit per granule. */
	uintptr_t lo, span;
	unsigned shift;
	uint64_t *bitmap;
	/* Ranges no root is read from, sorted and merged. */
	struct sys_range *excl;
	size_t nexcl;
	/* The threads' stacks (marks[0]: the scanner's), and the dead parts
	 * of them left out of the roots, sorted (scan_roots.c). */
	struct stack_mark *marks;
	size_t nmarks;
	struct sys_range *dead;
	size_t ndead;
	/* Reading. */
	unsigned char *buf;	/* READ_BYTES */
	unsigned char *vec;	/* mincore, one byte per OS page of a window */
	struct iovec *iov;	/* READ_PAGES */
	bool resident_only;	/* no swap in use: non-resident pages hold nothing */
	bool read_failed;	/* process_vm_readv is not allowed */
	pid_t pid;		/* ours, for process_vm_readv */
	uint64_t bytes;
	scan_chunk_roots_fn chunk_roots;
	/* /proc/self/maps, read whole. */
	char *maps;
	size_t maps_len, maps_cap;
	/* The work: units, and the next one to take (atomic, shared). */
	const struct scan_unit *units;
	size_t nunits;
	size_t *next_unit;
};

/* Whether every target has been found: then reading stops. */
static inline bool scan_all_found(const struct scan *sc)
{
	return !LOAD_RELAXED(sc->left);
}

/* scan.c: w passed the filter; mark the target holding it. */
MH_HIDDEN void scan_hit(struct scan *sc, uintptr_t w);

/* One word w, whatever it is: a hit if it points into a target (with
 * scan_words' attributes, so that it is inlined there). */
__attribute__((no_sanitize_address, no_sanitize_thread))
static inline void scan_word(struct scan *sc, uintptr_t w)
{
	uintptr_t d = w - sc->lo;

	if (likely(d >= sc->span))
		return;
	d >>= sc->shift;
	if (sc->bitmap[d >> 6] >> (d & 63) & 1)
		scan_hit(sc, w);
}

/*
 * The inner loop: every aligned word of [p, end). Not instrumented by the
 * sanitizers: it reads memory other threads wrote (stopped, but the tools
 * cannot know) and stacks with AddressSanitizer's redzones in them.
 */
__attribute__((no_sanitize_address, no_sanitize_thread))
static inline void scan_words(struct scan *sc, uintptr_t a, uintptr_t b)
{
	const uintptr_t *p = (const uintptr_t *)ALIGN_UP(a, sizeof(uintptr_t));
	const uintptr_t *end = (const uintptr_t *)ALIGN_DOWN(b, sizeof(uintptr_t));
	const uintptr_t lo = sc->lo, span = sc->span;

	if (p >= end)
		return;
	sc->bytes += (uintptr_t)end - (uintptr_t)p;
	/* Four words at a time, one branch for the common case that none of
	 * them passes the range check, and a prefetch 2 KiB ahead: the loop
	 * stalled on its loads at two thirds of what a plain sum reads here,
	 * the heap being read object run by object run (docs/arenas.md). */
	for (; end - p >= 4; p += 4) {
		__builtin_prefetch(p + 256);
		uintptr_t d0 = p[0] - lo, d1 = p[1] - lo, d2 = p[2] - lo, d3 = p[3] - lo;

		if (likely((d0 >= span) & (d1 >= span) & (d2 >= span) & (d3 >= span)))
			continue;
		for (unsigned i = 0; i < 4; i++)
			scan_word(sc, p[i]);
	}
	for (; p < end; p++)
		scan_word(sc, *p);
}

/* ------------------------------------------------------------ scan_roots.c */

MH_HIDDEN void excl_add(struct scan *sc, uintptr_t base, uintptr_t limit);
/* Sort and merge the exclusions. */
MH_HIDDEN void excl_finish(struct scan *sc);
/* /proc/self/maps, read whole into sc->maps. */
MH_HIDDEN bool maps_read(struct scan *sc);
/* Cut the roots into units (world stopped, heap lock held, maps read,
 * stack marks set): the heap's arenas, then every readable, writable
 * mapping that is memory, less the exclusions. The units are mapped
 * scratch; false if it cannot be mapped. */
MH_HIDDEN bool scan_units_build(struct scan *sc);
MH_HIDDEN void scan_units_free(struct scan *sc);
/* Take units and read them until none is left or every target is found. */
MH_HIDDEN void scan_units_read(struct scan *sc);
/* Swap in use: non-resident pages may hold data. */
MH_HIDDEN bool swap_in_use(void);

/* The dead parts of the stacks of sc->marks into sc->dead (room for one
 * a mark), maps read. */
MH_HIDDEN void dead_stacks_find(struct scan *sc);

/* ------------------------------------------------------------ scan_stacks.c */

/* The calling thread's recorded bounds; false when none. Async-signal-safe. */
MH_HIDDEN bool scan_stack_own(uintptr_t *lo, uintptr_t *hi);

/* ------------------------------------------------------------ scan_helpers.c */

/* Working memory of one reader besides struct scan's shared parts. */
#define READER_SCRATCH	(READ_BYTES + MINCORE_WINDOW / OS_PAGE + READ_PAGES * sizeof(struct iovec))
/* Point a reader's buffers into READER_SCRATCH bytes at p. */
static inline void reader_buffers(struct scan *sc, unsigned char *p)
{
	sc->buf = p;
	sc->vec = p + READ_BYTES;
	sc->iov = (struct iovec *)(sc->vec + MINCORE_WINDOW / OS_PAGE);
}

/* Start the helper threads of a scan read by threads threads in all (0:
 * one per CPU the process may run on, at most SCAN_THREADS_MAX), scan lock
 * held, no allocator lock (creating a thread allocates); how many started. */
MH_HIDDEN unsigned helpers_start(unsigned threads);
/* Their thread ids (world_prepare exempts them) and their mappings (left
 * out of the roots). */
MH_HIDDEN unsigned helpers_tids(int32_t *tids);
MH_HIDDEN void helpers_exclude(struct scan *sc);
/* Let them read units of sc (world stopped), and wait until all have
 * stopped reading: their bytes, failures and CPU time go to sc and *cpu_ns. */
MH_HIDDEN void helpers_run(struct scan *sc);
MH_HIDDEN void helpers_wait(struct scan *sc, uint64_t *cpu_ns);
/* Join them (no allocator lock held: a thread's end frees memory). */
MH_HIDDEN void helpers_finish(void);
/* In a child of fork (scan.c's fork handler). */
MH_HIDDEN void helpers_fork_child(void);
/* The CPU time of the calling thread. */
MH_HIDDEN uint64_t thread_cpu_ns(void);
#endif
