/* SPDX-License-Identifier: MIT */
/*
 * The quarantine scan (scan.c): stop every thread of the process and look
 * through every root a C program can hold a pointer in for words that point
 * into a set of address ranges (the quarantined arena chunks), interior
 * pointers included. scan.c, scan_stop.c and scan_roots.c explain the
 * protocol and its limits.
 */
#ifndef MHEAP_SCAN_H
#define MHEAP_SCAN_H

#include "internal.h"
#include "sysmem.h"	/* struct sys_range */

struct mspan;

/*
 * Given a chunk span of the page heap (state MSPAN_CHUNK), the part of it
 * to scan as roots: set *r and return true for a live chunk's pointer data,
 * false for anything else (a freed chunk's data is dead, a quarantined one
 * is a target). Called with the world stopped and the heap lock held: it
 * takes no lock and must not trust what it reads further than to describe
 * a range (the chunk may be faulting: the scan reads it through a reader
 * that cannot fault).
 */
typedef bool (*scan_chunk_roots_fn)(const struct mspan *s, struct sys_range *r);

/* What one scan did. */
struct scan_result {
	/* False when some root could not be looked at (a thread that does not
	 * stop, a handler for the stop signal not ours, no way to read
	 * memory safely): then nothing may be taken as unreferenced. */
	bool complete;
	bool skipped;		/* not run: another was in progress (in_free) */
	unsigned threads;	/* other threads stopped */
	uint64_t bytes;		/* root bytes read */
	uint64_t ns;		/* the whole scan */
	uint64_t cpu_ns;	/* CPU time of every thread that read */
	uint64_t pause_ns;	/* the other threads stopped */
};

/* The most threads one scan reads with (the caller and its helpers). */
#define SCAN_THREADS_MAX 8

/*
 * Set referenced[i] to 1 for every target i that some root word points
 * into, [base, limit) (one past the end does not count), else 0. targets
 * are sorted by base and disjoint; they and referenced may live in mapped
 * memory or on the caller's stack (the scan leaves them out of its roots),
 * not in a heap object: the heap is read object by object, with no
 * exclusions, and targets there would count. The roots are read by threads
 * threads (0: one per CPU the process may run on; 1: the caller alone; at
 * most SCAN_THREADS_MAX, fewer if they cannot be made: scan_helpers.c).
 * in_free: the caller is inside free(), where the C library may hold locks
 * of its own (glibc frees a dead thread's TLS array, a joined scan
 * helper's included, with its stack cache locked): the scan then makes no
 * threads (making one takes those locks), and is skipped (res->skipped,
 * every target referenced) rather than waiting when another is in
 * progress, which may be this thread's own, joining its helpers. Takes the
 * scan lock, then the heap lock and the metadata registry's (so: no
 * allocator lock held by the caller), and allocates nothing from the heap. The calling thread's roots
 * are its registers and its stack from the caller's frame up: the caller's
 * own frames should not hold target addresses (they would count).
 */
MH_HIDDEN void scan_for_pointers(const struct sys_range *targets, size_t n, uint8_t *referenced,
				 scan_chunk_roots_fn chunk_roots, unsigned threads, bool in_free,
				 struct scan_result *res);

/*
 * Zero the dead stack below the caller's frame (a few KiB): what the
 * allocator's own calls left there (chunk addresses in their frames) would
 * otherwise sit in the uninitialised slots of the program's later frames
 * and count as pointers in a scan. Conservative collectors clear their
 * stacks for the same reason. Called when leaving mh_arena_free and before
 * a scan.
 */
MH_HIDDEN void scan_scrub_stack(void);

/*
 * Record the calling thread's stack bounds from its thread library, once:
 * the scan leaves out the dead part of a stack only where they are known
 * (scan_stacks.c). Called outside every allocator lock, and never from
 * where pthread_getattr_np may be the caller: from mh_arena_new and
 * mh_arena_alloc_slow_, and from mcache_create unless the heap is the
 * process's malloc (scan_stacks.c says why).
 */
MH_HIDDEN void scan_stack_record(void);
/* Whether this heap is the process's malloc (malloc.c). */
MH_HIDDEN extern const bool mh_process_malloc;

/* Cumulative figures of every scan, for the statistics. */
struct scan_totals {
	uint64_t scans;		/* complete or not */
	uint64_t incomplete;	/* scans that could not look at every root */
	uint64_t bytes;		/* root bytes read */
	uint64_t ns;		/* time in scans */
	uint64_t max_pause_ns;	/* the longest the other threads were stopped */
};
MH_HIDDEN void scan_totals(struct scan_totals *t);

/* Called first by fork.c's handlers: a fork waits for a scan in
 * progress (the scan lock comes before the heap lock). */
MH_HIDDEN void scan_fork_prepare(void);
MH_HIDDEN void scan_fork_parent(void);
MH_HIDDEN void scan_fork_child(void);

#endif
