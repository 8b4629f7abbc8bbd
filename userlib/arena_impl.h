/* SPDX-License-Identifier: MIT */
/*
 * User arenas, private to their files: what they share. The design is told
 * file by file, each at its top:
 *
 *   arena.c            the API: handles and slots, bump allocation, freeing
 *                      an arena, settings, statistics
 *   arena_chunk.c      a chunk's life: made from and given back to the page
 *                      heap, the reuse and ready lists, the next chunk for
 *                      an arena, giving back what nobody uses
 *   arena_quarantine.c faulting freed chunks, the quarantine FIFO and its
 *                      budget, releasing chunks from it
 *   arena_hugepages.c  where in a chunk an arena allocates: windows, and
 *                      transparent huge pages
 *   arena_warm.c       warm chunks: a freed big arena's pages moved, not
 *                      dropped
 *   arena_scan.c       when quarantined chunks leave: once no pointer into
 *                      them is found (scan.c), or past the cap
 *   arena_check.c      the arenas' part of the heap check (heapcheck.c)
 *
 * The heap does not call into arenas: arena.c registers hooks (hooks.h)
 * that it calls when it cannot grow, at mh_scavenge, for statistics, for
 * the heap check and around fork.
 *
 * Locking: the chunk lists and the counters below are under arena_lock,
 * which is never held while another allocator lock is taken; system calls
 * are made outside it. A chunk on no list (live, or being released)
 * belongs to whoever took it off.
 */
#ifndef MHEAP_ARENA_IMPL_H
#define MHEAP_ARENA_IMPL_H

#include "arena.h"
#include "fault.h"
#include "mheap_impl.h"

/* At most this many chunks are faulted or released per system-call batch. */
#define ARENA_BATCH	64

MH_HIDDEN extern mh_lock_t arena_lock;
MH_HIDDEN extern struct arena_config arena_cfg;	/* arena_lock to change */

/* ------------------------------------------------------------ chunk sizes */

/* Chunks out of quarantine stay with arenas (the scan is on, chunks
 * fault, and not MHEAP_QUARANTINE_TO_HEAP): as in Go, where chunk address
 * space is for arenas only, a stale pointer never lands in a malloc
 * object. Their pages are gone already: only address space is kept. */
static inline bool arenas_keep_released(void)
{
	return arena_cfg.scan && !arena_cfg.to_heap && fault_backend()->faults;
}

static inline size_t chunk_bytes(const struct arena_chunk *c)
{
	return c->limit - c->base;
}

/* Room left: in the window, and in the next one. */
static inline size_t chunk_free_bytes(const struct arena_chunk *c)
{
	return c->hi - c->lo + (c->next_window ? c->limit - c->next_window : 0);
}

/* Room used: the rest of the chunk (the window skipped included). */
static inline size_t chunk_used_bytes(const struct arena_chunk *c)
{
	return chunk_bytes(c) - chunk_free_bytes(c);
}

/* ------------------------------------------------------------ arena_chunk.c */

MH_HIDDEN extern struct list reuse_list, ready_list;
MH_HIDDEN extern uint64_t reuse_used;		/* chunk_used_bytes of the reuse list */
MH_HIDDEN extern uint64_t chunks_live;

MH_HIDDEN void arena_chunk_init(void);
/* A chunk straight from the page heap, at least bytes long, prepared by the
 * backend in use (chunk_new: an arena's, first fit) or by b (chunk_new_on:
 * a guarded block's, whose pages its free or a move drops, on released
 * pages first: PLACE_RELEASED). */
MH_HIDDEN struct arena_chunk *chunk_new(size_t bytes, size_t align);
MH_HIDDEN struct arena_chunk *chunk_new_on(const struct fault_backend *b, size_t bytes,
					   size_t align, enum span_place place);
/* Give a chunk whose pages have been dropped (released) or not back to the
 * page heap. */
MH_HIDDEN void chunk_destroy(struct arena_chunk *c, bool released);
/* The next chunk for an arena; big: it has filled one already. */
MH_HIDDEN struct arena_chunk *chunk_get(uint64_t arena_id, bool big);
/* A chunk just made usable again, to the ready list (ready) or the page
 * heap. */
MH_HIDDEN void chunk_released(struct arena_chunk *c, bool ready);
/* The used, dead part of the reuse list's chunks to the OS. */
MH_HIDDEN void reuse_drop_used(void);
/* Hooks (hooks.h). give_back: the page heap could not grow: give back one
 * more part of what arenas hold and nobody uses (warm chunks, then reuse
 * and ready chunks, then the oldest quarantined ones); false when there was
 * nothing left. release_idle: every warm chunk back to the page heap (their
 * pages stay resident until the scavenger releases them), and the used,
 * dead part of reuse list chunks to the OS. */
MH_HIDDEN bool arena_give_back(void);
MH_HIDDEN void arena_release_idle(void);

/* ------------------------------------------------------------ arena_quarantine.c */

/* The quarantine: faulting chunks, oldest first, and their bytes. */
MH_HIDDEN extern struct list quarantine;
MH_HIDDEN extern uint64_t quarantined_bytes;
MH_HIDDEN extern uint64_t releases_budget, releases_enomem;

/* Fault the n chunks of a freed arena and put them in quarantine, then
 * hold it to its budget. */
MH_HIDDEN void quarantine_chunks(struct arena_chunk **cs, unsigned n, uint64_t arena_id);
/* Take quarantined chunk c out (arena_lock held): state CHUNK_RELEASING,
 * on no list, for release_chunks once the lock is dropped. */
MH_HIDDEN void quarantine_take(struct arena_chunk *c);
/* Take up to max of the oldest quarantined chunks out into cs (arena_lock
 * held), as quarantine_take. */
MH_HIDDEN unsigned quarantine_take_oldest(struct arena_chunk **cs, unsigned max);
/* Release n taken chunks (at most ARENA_BATCH; arena_lock not held) to the
 * ready list (ready) or the page heap; how many were. */
MH_HIDDEN unsigned release_chunks(struct arena_chunk **cs, unsigned n, bool ready);
/* Release up to max of the oldest because the system refused something. */
MH_HIDDEN unsigned release_oldest(unsigned max, bool ready);
/* Release the oldest chunks while quarantine is over its budget. in_free:
 * called from free() (a guarded block of the secure heap), where a scan
 * must neither make threads nor wait for another (scan.h). */
MH_HIDDEN void enforce_budget(bool in_free);

/* ------------------------------------------------------------ arena_scan.c */

MH_HIDDEN extern uint64_t chunks_kept, releases_scan, releases_referenced;

/* The quarantine is over its budget (arena_lock not held): with
 * MHEAP_QUARANTINE_SCAN, release the chunks no pointer points into, then
 * hold it to its cap; true when that policy is on (the FIFO is not).
 * in_free: as enforce_budget's. */
MH_HIDDEN bool quarantine_scan_budget(bool in_free);
/* mh_quarantine_release() with the scan on: release every chunk no
 * pointer points into. */
MH_HIDDEN void quarantine_scan_all(void);
/* The system refused a chunk or a fault (arena_lock not held): with the
 * scan on, release the quarantined chunks a scan finds nobody points into,
 * whatever the pacing; true when it released any. Only then may the caller
 * fall back to the oldest (release_oldest), pointed into or not. */
MH_HIDDEN bool quarantine_scan_for_room(bool in_free);
/* The scan's totals into a statistics snapshot. */
MH_HIDDEN void quarantine_scan_stats(struct mh_stats *st);

/* ------------------------------------------------------------ arena_hugepages.c */

/* The huge page size when chunks of an arena take huge pages, else 0. */
MH_HIDDEN size_t thp_size(void);
/* The huge page size if c can have a small-page head and a huge tail. */
MH_HIDDEN size_t chunk_thp_size(const struct arena_chunk *c);
/* The alignment of a normal chunk, given thp_size(). */
MH_HIDDEN size_t chunk_align(size_t h);
/* Set up the windows of a fresh chunk for an arena (big: has filled one). */
MH_HIDDEN void chunk_start(struct arena_chunk *c, bool big);
/* Move on to c's next window. */
MH_HIDDEN void chunk_next_window(struct arena_chunk *c);

/* ------------------------------------------------------------ arena_check.c */

struct heapcheck_found;
/* The heap check's hooks (hooks.h). */
MH_HIDDEN int arena_check_chunk(struct heapcheck_found *f, const struct mspan *s);
MH_HIDDEN int arena_check_lists(struct heapcheck_found *f);

/* ------------------------------------------------------------ arena_warm.c */

MH_HIDDEN extern struct list warm_list;
MH_HIDDEN extern struct list warm_blocks;	/* guarded blocks' pages, oldest first */
MH_HIDDEN extern uint64_t warm_bytes;		/* both lists' chunks, and moves under way */
MH_HIDDEN extern uint64_t warm_first;		/* warm chunks a new arena may take first */

/* Whether a freed arena's active chunk c (a big arena's, or a used-up one)
 * can go warm (arena_lock held). */
MH_HIDDEN bool warm_takes_active(const struct arena_chunk *c);
/* Move the pages of a freed big arena's full chunks, and of its active
 * chunk however little used, to warm chunks. */
MH_HIDDEN void recycle_chunks(struct arena_chunk **cs, unsigned n,
			      const struct arena_chunk *active);
/* Warm chunks back to the page heap: down to the cap, or all of them. */
MH_HIDDEN void warm_trim(void);
MH_HIDDEN void warm_release(void);
/* Secure mode: the pages of a freed guarded block's chunk c, about to be
 * faulted, to a warm block chunk; a warm block chunk for a guarded block
 * that needs bytes, or NULL, to be its chunk (*whole) or else to move its
 * pages into c, a new chunk for the block (transplant). */
MH_HIDDEN void warm_block_keep(struct arena_chunk *c);
MH_HIDDEN struct arena_chunk *warm_block_take(size_t bytes, bool *whole);
MH_HIDDEN void warm_block_transplant(struct arena_chunk *w, struct arena_chunk *c);

#endif
