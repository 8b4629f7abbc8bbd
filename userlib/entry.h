/* SPDX-License-Identifier: MIT */
/*
 * The entry points the secure mode (MHEAP_SECURE=1, secure.c) changes on
 * every call - malloc and free under all their names, the sized frees -
 * jump to the mode's implementation through a table set when the heap is
 * set up (mh_entries): each is one indirect jump (MH_ENTRY), so the secure
 * mode's malloc and free reach secure.c in one step, not after the default
 * fast path's miss and its slow path, and the default fast paths test no
 * mode and take no cache made to miss. The table is read-only once set
 * (a page of its own, mprotect): a pointer every malloc jumps through is
 * not left writable for an overflow to redirect.
 *
 * Why not a binding at start-up (GNU indirect functions), which would cost
 * the default mode nothing: libc is relocated before a preloaded library,
 * and its own references to malloc and free would run the library's
 * resolver before the library is relocated, which glibc reports on every
 * run ("Relink `libc.so.6' with `libmheap.so' for IFUNC symbol `free'")
 * (docs/secure-log.md#one-jump-into-the-mode-and-the-checks-registers-2026-12-07-issue-26).
 *
 * Before the heap is set up the table holds the default paths; their slow
 * paths set the heap up, and with it the mode (malloc_slow).
 */
#ifndef MHEAP_ENTRY_H
#define MHEAP_ENTRY_H

#include "mheap_impl.h"

/* A page of its own (x86-64's: internal.h), so that mprotect makes the
 * table and nothing else read-only. */
#define MH_ENTRIES_PAGE	4096

struct mh_entries {
	union {
		struct {
			void *(*malloc)(size_t size);
			void (*free)(void *p);
			void (*free_sized)(void *p, enum sized_free_fn fn, bool aligned,
					   size_t align, size_t size);
		};
		char page[MH_ENTRIES_PAGE];
	};
} __attribute__((aligned(MH_ENTRIES_PAGE)));

/* Written by mh_entries_set only. */
MH_HIDDEN extern struct mh_entries mh_entries;

/* Point the table at the secure or the default paths and make it
 * read-only (the secure mode aborts if it cannot; entry.c): once, by
 * mheap_init_slow, before the heap is published. */
MH_HIDDEN void mh_entries_set(bool secure);

/* The default mode's paths (malloc.c, free.c, malloc_sized.c). */
MH_HIDDEN void *heap_malloc_default(size_t size);
MH_HIDDEN void heap_free_default(void *p);
MH_HIDDEN void heap_free_sized_default(void *p, enum sized_free_fn fn, bool aligned,
				       size_t align, size_t size);
MH_HIDDEN void heap_free_sized_secure(void *p, enum sized_free_fn fn, bool aligned,
				      size_t align, size_t size);
/* The default free of p, object idx of s, found and checked in s's life
 * gen by checked_span_life: a report (a free racing another of p) names
 * the call what (free.c, for malloc_sized.c). */
MH_HIDDEN void heap_free_span(struct mspan *s, uint32_t idx, void *p, uint64_t gen,
			      const char *what);

/* The entry point name(args), calling field(call) of the table: a jump
 * through it. */
#define MH_ENTRY(ret, name, params, field, args)					\
	ret name params									\
	{										\
		return LOAD_RELAXED(&mh_entries.field) args;				\
	}

#endif /* MHEAP_ENTRY_H */
