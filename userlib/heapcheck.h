/* SPDX-License-Identifier: MIT */
/*
 * The heap's own consistency check (heapcheck.c), for tests: every page of
 * every heap arena accounted exactly once, the arena map agreeing with the
 * spans, the lists of mcentrals, caches and arena chunks agreeing with the
 * states of their members, span bitmaps agreeing with their counters, and
 * the object counters agreeing with the bitmaps.
 *
 * For the full check the caller guarantees a quiet heap: no other thread
 * allocates, frees or is inside the allocator (a thread stopped between
 * two steps of a lock-free path leaves the heap in a state no check can
 * tell from a bug). The check takes every allocator lock, as fork does,
 * and allocates nothing from the heap.
 */
#ifndef MHEAP_HEAPCHECK_H
#define MHEAP_HEAPCHECK_H

#include "internal.h"

/* What the check covers. */
enum heapcheck_scope {
	/* Everything: the caller's heap is quiet. */
	HEAPCHECK_ALL,
	/* Only what the allocator's locks guard: page accounting, the span
	 * cache, page caches, mcentral, cache and chunk lists. What a child
	 * forked from a busy process can rely on: its other threads vanished
	 * between two steps of their lock-free paths (a counter not yet
	 * added, a span on its way from the page heap to its cache, a chunk
	 * between lists), which the full check reports though nothing is
	 * broken but leaked. */
	HEAPCHECK_LOCKED,
};

/* 0 when the heap is consistent; else -1, and msg (len bytes, always
 * terminated) holds a one-line description of the first violation. */
MH_HIDDEN int mheap_check(enum heapcheck_scope scope, char *msg, size_t len);

/* For the check hooks (hooks.h): where the report goes, and what the
 * heap's walk found. */
struct heapcheck_found {
	char *msg;
	size_t len;
	bool all;		/* HEAPCHECK_ALL */
	uint64_t spans;		/* spans in use */
	uint64_t chunks[8];	/* chunk spans by their chunk's state: the
				 * arena layer's check_chunk counts them */
};

/* Report the first violation: format it into f->msg; returns -1. */
MH_HIDDEN __attribute__((format(printf, 2, 3)))
int heapcheck_fail(struct heapcheck_found *f, const char *fmt, ...);
#define HEAPCHECK(f, cond, ...) \
	do { if (!(cond)) return heapcheck_fail((f), __VA_ARGS__); } while (0)

struct mspan;
/* Whether s is a span the arena map knows (safe for any struct pointer
 * fixalloc handed out: those are never unmapped). */
MH_HIDDEN bool heapcheck_span_live(const struct mspan *s);

#endif
