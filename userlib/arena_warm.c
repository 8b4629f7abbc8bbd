// SPDX-License-Identifier: MIT
/*
 * Warm chunks: moving a freed arena's pages instead of dropping them
 * (arena_impl.h has the map of the arena files).
 *
 * Faulting a chunk gives its memory back, so an arena freed and built again
 * would pay the kernel's page faults and zeroing for all of it every time.
 * So (guard and mprotect backends, recycle_chunks) a full chunk about to be
 * faulted first has its pages moved to a fresh chunk-sized range of the
 * page heap, with mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) (Linux 5.7+): the
 * old range stays mapped, empty, and is faulted exactly as before; the new
 * one is a "warm" chunk, resident, in huge pages when the old one was (both
 * are aligned to the huge page size, so the kernel moves whole PMDs),
 * holding stale data. An arena that has filled a chunk takes a warm chunk
 * before the ready list or a new chunk (chunk_get):
 *
 *   LIVE (full) --arena freed--> pages moved --> WARM ---big arena---> LIVE
 *     |                                           |  over the cap,
 *     +--> the old range: QUARANTINED as before   v  quarantine release
 *                                          page heap (dirty pages)
 *
 * Safety is unchanged: the move comes first because a fault drops the pages
 * (MADV_GUARD_INSTALL frees them, mprotect is followed by MADV_DONTNEED);
 * then the old range is faulted, both before mh_arena_free returns. Between
 * the two the old range is mapped and empty: a racing access through a stale
 * pointer reads zeros, never the old data nor the next arena's (they live at
 * the new address now), and a page it writes is dropped by the fault. That
 * access races with the free itself, which no order can catch. Quarantine
 * bookkeeping does not see the move at all: the same chunks, the same
 * budget, FIFO and ENOMEM fallbacks.
 *
 * Who gets warm chunks: an arena that has filled a chunk already (a "big"
 * one), and, in place of a freed big arena's active chunk that moved
 * (warm_takes_active), any new arena: one warm chunk for each such move,
 * counted in warm_first. Without that, the next arena, finding the reuse
 * list empty, took a chunk of fresh memory (a small-page window and fresh
 * huge pages to fault) while the warm list grew by a chunk, round after
 * round, to its cap (measured: docs/arenas.md#warm-chunks). Otherwise a warm
 * chunk is not for a small arena: it is 8 MiB resident, and handed to every
 * new arena a thousand live small arenas could pin gigabytes (small arenas
 * stay small, arena_hugepages.c); with warm_first they pin at most what the
 * big arenas' active chunks did on the reuse list before. A warm chunk
 * starts huge whoever takes it: its pages are resident already. Which chunks
 * move: the full chunks of a big arena, of the standard size and at least
 * half used. Only a big arena's: otherwise chunks nobody takes pile up to
 * the cap, resident (short request arenas that continue in a reused chunk
 * fill it in turn, and the one that fills it is usually small). At least
 * half used: a move costs a VMA and a system call, so moving an almost empty
 * chunk saves nothing. An arena's first chunk has a small-page head apart
 * from its huge tail (two VMAs, and mremap works on one): only the tail
 * moves.
 *
 * A big arena's active chunk, when at least half used and the warm list has
 * room for it, moves as well instead of going to the reuse list
 * (warm_takes_active). Reused, it would keep its used part resident but
 * unusable, and the next big arena, starting in its tail, would touch that
 * much fresh memory beyond its warm chunks every time. Its used part faults
 * too, rather than staying readable. Measured: docs/arenas.md#warm-chunks.
 *
 * Memory held: warm chunks are resident, so they are capped at
 * MHEAP_ARENA_WARM_MAX; the default holds one big arena's chunks, memory
 * the program had resident a moment before. Warm chunks go back to the page
 * heap as dirty pages, oldest first, when over the cap (a lower cap set by
 * arena_configure, or recycling turned off), on mh_quarantine_release()
 * and on mh_scavenge(). There is no ageing: a program that stops making big
 * arenas keeps its warm chunks until one of those. The page heap knows they
 * are dirty, so calloc and friends zero them; mh_arena_calloc always zeroes,
 * and chunks from the ready list are never warm, so they still read zero.
 * When the page heap runs out of room for a new chunk, warm chunks go back
 * before quarantine is cut.
 *
 * Fallbacks: any mremap failure (EINVAL before 5.7, ENOMEM out of VMAs, ...)
 * leaves the chunk to be faulted as before, its pages dropped, and the range
 * taken for the move goes back to the page heap: silent and correct. A
 * failed mremap(MREMAP_FIXED) may have unmapped its destination already:
 * 6.1 and 6.12 (mremap_to) unmap it before they check the source range,
 * and refuse one spanning two VMAs only then (EFAULT). So after any
 * failure the destination gets fresh heap memory mapped over it again
 * (sys_map_over); without that, the range went back to the page heap, or
 * became a warm chunk's head, as a hole, and the next use of it died of
 * SIGSEGV with no report. kmod
 * (device mappings refuse mremap) and none (nothing faults) do not move
 * (fault_backend.remap). MHEAP_ARENA_RECYCLE=0 turns moving off.
 *
 * VMAs: moved pages keep their own VMA (another anon_vma: it never merges
 * with its neighbours), and the moved-from range becomes one too. So ranges
 * of the heap that were ever moved to or from stay separate VMAs, at most
 * two per chunk-sized range of the heap: far below vm.max_map_count even
 * with a full quarantine, and running out falls back as above.
 *
 * fork(): warm chunks are ordinary private memory; a child inherits them
 * copy-on-write like the rest of the heap, so its first write to one copies
 * a page rather than zero-filling it. Nothing else changes.
 */
#define _GNU_SOURCE	/* mremap */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "arena_impl.h"
#include "fault.h"
#include "sysmem.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

struct list warm_list;
uint64_t warm_bytes;
uint64_t warm_first;

/* Whether a freed big arena's chunk is worth moving to the warm list: a
 * standard chunk at least half used (see "Who gets warm chunks"). */
static bool chunk_movable(const struct arena_chunk *c)
{
	size_t len = chunk_bytes(c);

	return !c->large && len == arena_cfg.chunk_bytes &&
	       chunk_free_bytes(c) <= len / 2;
}

/* Give warm chunks back to the page heap, oldest first, until they hold at
 * most limit bytes. Their pages are resident and hold stale data: they go
 * back dirty (not released), which the page heap zeroes before any use that
 * needs zeros, and its scavenger returns to the OS in time. */
static void warm_shrink(uint64_t limit)
{
	for (;;) {
		struct arena_chunk *c = NULL;

		mh_lock(&arena_lock);
		if (warm_bytes > limit && warm_list.head) {
			c = chunk_of(list_pop_head(&warm_list));
			warm_bytes -= chunk_bytes(c);
		}
		if (warm_first > warm_list.count)
			warm_first = warm_list.count;
		mh_unlock(&arena_lock);
		if (!c)
			return;
		chunk_destroy(c, false);
	}
}

void warm_trim(void)
{
	warm_shrink(arena_cfg.recycle ? arena_cfg.warm_max : 0);
}

void warm_release(void)
{
	warm_shrink(0);
}


/*
 * Move the pages of c, a chunk about to be faulted, to w, a chunk of the
 * same size just taken from the page heap. The old range stays mapped,
 * empty (MREMAP_DONTUNMAP), and is faulted by the caller as before. A move
 * works on one VMA: when the head of c was advised apart from its tail (an
 * arena's first chunk, small-page head, huge tail), only the tail moves; w's
 * head is then page heap memory as in any new chunk. False when the kernel
 * refuses (before 5.7, out of VMAs, ...): nothing has moved then, and w is
 * mapped as the page heap maps it whatever the kernel did to it.
 */
static bool chunk_move(struct arena_chunk *c, struct arena_chunk *w)
{
	size_t h = chunk_thp_size(c), len = chunk_bytes(c);
	size_t off = h && c->thp_head != c->thp_tail ? h : 0;

	for (;;) {
		void *p = mremap((void *)(c->base + off), len - off, len - off,
				 MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
				 (void *)(w->base + off));

		if (p != MAP_FAILED)
			break;
		/* The kernel may have unmapped the destination before it
		 * refused (see "Fallbacks"): heap memory there again. */
		if (!sys_map_over((void *)(w->base + off), len - off))
			mh_fatal("heap memory back over arena chunk %p: %s",
				 (void *)(w->base + off), strerror(errno));
		/* EFAULT: the range spans two VMAs after all (say, a head
		 * advised the same as the tail that did not merge with it):
		 * the tail alone is one. */
		if (errno != EFAULT || off || !h)
			return false;
		off = h;
	}
	/* The moved VMA keeps its advice, and the pages their size. */
	w->thp_tail = c->thp_tail;
	if (!off)
		w->thp_head = c->thp_head;
	return true;
}

/*
 * Before full chunks of a freed big arena are faulted, move their pages to
 * fresh chunks that go on the warm list (see the top of the file), up to the
 * cap.
 * Only chunks that are mostly used: for a little one the move would cost a
 * VMA and save a few faults. Failures of any kind leave the chunk to be
 * faulted as before, its pages dropped. errno is left alone.
 */
void recycle_chunks(struct arena_chunk **cs, unsigned n)
{
	const struct fault_backend *b = fault_backend();
	int saved = errno;

	if (!b->faults || !b->remap)
		return;
	for (unsigned i = 0; i < n; i++) {
		struct arena_chunk *c = cs[i], *w;
		size_t len = chunk_bytes(c);
		bool room;

		if (!chunk_movable(c))
			continue;
		mh_lock(&arena_lock);
		room = arena_cfg.recycle && warm_bytes + len <= arena_cfg.warm_max;
		if (room)
			warm_bytes += len;	/* held for this move */
		mh_unlock(&arena_lock);
		if (!room)
			break;
		w = chunk_new(len, chunk_align(thp_size()));
		if (w && chunk_move(c, w)) {
			c->moved = 1;
			w->arena_id = 0;	/* no arena's yet */
			STORE_RELAXED(&w->state, CHUNK_WARM);
			mh_lock(&arena_lock);
			list_push_tail(&warm_list, &w->link);
			mh_unlock(&arena_lock);
			continue;
		}
		if (w)
			chunk_destroy(w, false);
		mh_lock(&arena_lock);
		warm_bytes -= len;
		mh_unlock(&arena_lock);
		/* Out of memory or refused: the next will not do better. */
		break;
	}
	errno = saved;
}

/*
 * Whether a freed big arena's active chunk c moves to the warm list with its
 * full chunks instead of going to the reuse list (arena_lock held). The
 * next big arena then starts in a whole warm chunk: had it continued in the
 * reused one, the used part of that chunk would sit resident and unusable
 * while the arena touched as much fresh memory beyond its warm chunks, every
 * time (measured: see the top of the file). It also faults the used part
 * rather than leaving the old data readable. Only with room on the warm
 * list: without a move the chunk is worth more reused than faulted.
 */
bool warm_takes_active(const struct arena_chunk *c)
{
	return arena_cfg.recycle && fault_backend()->remap && chunk_movable(c) &&
	       warm_bytes + chunk_bytes(c) <= arena_cfg.warm_max;
}
