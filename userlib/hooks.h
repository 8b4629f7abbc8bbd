/* SPDX-License-Identifier: MIT */
/*
 * How the heap reaches the user arenas built on it without calling into
 * them. The heap core (mheap.c, malloc.c, free.c, stats.c, heapcheck.c, fork.c)
 * knows nothing of arenas: the arena layer registers one struct of
 * function pointers at start-up (arena.c), and the heap calls them at the
 * points named below. Until then, and in a static link that never uses an
 * arena, the hooks are no-ops: there is nothing for them to do.
 *
 * Every hook is called with no allocator lock held, except the heap
 * check's check_chunk and the fork hooks, as they say.
 */
#ifndef MHEAP_HOOKS_H
#define MHEAP_HOOKS_H

#include "internal.h"

struct mh_stats;
struct mspan;
struct heapcheck_found;

struct heap_hooks {
	/* The page heap could not grow for a span that is not a chunk: give
	 * back one more part of what nobody uses, so that the request can be
	 * retried; false when there was nothing left (mheap.c). */
	bool (*give_back)(void);
	/* mh_scavenge and malloc_trim: memory held for reuse goes back to the
	 * page heap or the OS, before the heap scavenges (malloc.c). */
	void (*release_idle)(void);
	/* Fill in the client's fields of a statistics snapshot (stats.c). */
	void (*stats)(struct mh_stats *st);
	/* The heap check (heapcheck.c): check_chunk for each chunk span its
	 * walk finds, with every heap lock held; check_lists afterwards,
	 * with none held, against what the walk found. 0 or the result of
	 * heapcheck_fail. */
	int (*check_chunk)(struct heapcheck_found *f, const struct mspan *s);
	int (*check_lists)(struct heapcheck_found *f);
	/* fork() (fork.c): prepare runs before the heap takes its locks, and
	 * parent and child after it has dropped them. */
	void (*fork_prepare)(void);
	void (*fork_parent)(void);
	void (*fork_child)(void);
};

/* Register the hooks (once, from a constructor); h must stay valid. */
MH_HIDDEN void heap_hooks_register(const struct heap_hooks *h);
/* The hooks in force: the registered ones, else no-ops. */
MH_HIDDEN const struct heap_hooks *heap_hooks(void);

#endif
