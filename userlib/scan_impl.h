/* SPDX-License-Identifier: MIT */
/*
 * What the quarantine scan's files share: scan.c (the targets, the lookup,
 * one scan from start to end), scan_stop.c (stopping the other threads)
 * and scan_roots.c (the roots, read without faulting). scan.h is the
 * interface to the rest of the library.
 */
#ifndef MHEAP_SCAN_IMPL_H
#define MHEAP_SCAN_IMPL_H

#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>

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
 * per thread; false when threads cannot be stopped. */
MH_HIDDEN bool world_prepare(void);
/* Stop every other thread (a new epoch); false if one did not stop.
 * world_start() must follow in any case. */
MH_HIDDEN bool world_stop(void);
MH_HIDDEN void world_start(void);
/* Threads listed by the last world_stop(), stopped or not. */
MH_HIDDEN uint32_t world_threads(void);
/* Append the lowest stack addresses of every stopped thread to marks (one
 * or two each); returns how many threads were stopped. */
MH_HIDDEN unsigned world_stacks(uintptr_t *marks, size_t *nmarks);
MH_HIDDEN void world_fork_child(void);

/* ------------------------------------------------------------ one scan */

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
	pid_t pid;		/* ours, for process_vm_readv */
	uint64_t bytes;
	scan_chunk_roots_fn chunk_roots;
	/* /proc/self/maps, read whole. */
	char *maps;
	size_t maps_len, maps_cap;
};

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
/* The heap's in-use spans (heap lock held). */
MH_HIDDEN void scan_heap(struct scan *sc);
/* /proc/self/maps, read whole into sc->maps. */
MH_HIDDEN bool maps_read(struct scan *sc);
/* Every readable, writable mapping that is memory, less the exclusions. */
MH_HIDDEN void scan_mappings(struct scan *sc);
/* Swap in use: non-resident pages may hold data. */
MH_HIDDEN bool swap_in_use(void);

#endif
