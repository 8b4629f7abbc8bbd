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
 * one), and, in place of a freed arena's active chunk that moved
 * (warm_takes_active: a big arena's, or any arena's used up), any new
 * arena: one warm chunk for each such move, counted in warm_first. Without
 * that, the next arena, finding the reuse list empty, took a chunk of fresh
 * memory (a small-page window and fresh huge pages to fault) while the warm
 * list grew by a chunk, round after round, to its cap (measured:
 * docs/arenas.md#warm-chunks). Otherwise a warm chunk is not for a small
 * arena: it is 8 MiB resident, and handed to every new arena a thousand
 * live small arenas could pin gigabytes (small arenas stay small,
 * arena_hugepages.c); with warm_first they pin at most what the moved
 * active chunks held resident a moment before. A warm chunk
 * starts huge whoever takes it: its pages are resident already. Which chunks
 * move: the full chunks of a big arena, of the standard size and at least
 * half used, and the active chunk of a freed arena when it moves (below).
 * Only a big arena's full chunks: a small arena's chunk is its active one.
 * At least half used: a move costs a VMA and a system call, so moving an
 * almost empty chunk saves nothing. An arena's first chunk has a small-page
 * head apart from its huge tail (two VMAs, and mremap works on one): only
 * the tail moves, and the warm chunk is given out from its tail
 * (head_empty, kept through later moves): an arena starting in the empty
 * head faulted in a fresh huge page there while the tail's resident pages
 * waited.
 *
 * A big arena's active chunk, however little used, moves as well when the
 * warm list has room for it, instead of going to the reuse list
 * (warm_takes_active). Reused, a mostly used one kept its used part
 * resident but unusable, and the next big arena, starting in its tail,
 * touched that much fresh memory beyond its warm chunks every time; a little
 * used one (taken fresh from the page heap) had a tail never touched, which
 * the next arena faulted in and the kernel zeroed, huge page by huge page,
 * while the freed arena's resident pages waited on the warm list. Its used
 * part faults too, rather than staying readable. A warm chunk made from a
 * chunk less than half used is resident only where that arena wrote (the
 * ends: pointer-carrying data at the bottom, pointer-free at the top, where
 * the next arena writes first too), so it goes to the head of the warm
 * list: arenas take whole warm chunks first, and the cap gives it back
 * first. Measured: docs/arenas.md#warm-chunks.
 *
 * Any arena's active chunk that is used up (too little left for the reuse
 * list) moves too, when the warm list has room, and the next arena takes
 * it in its place (warm_first). Short request arenas that go on in a
 * reused chunk fill it in turn, and the one that uses it up is usually
 * small: its chunk used to be faulted with its pages, and the next arena
 * started in fresh memory, a small-page window and fresh huge pages, every
 * chunk's worth of requests (arena_bench requests: 38,316 faults). Moved
 * pages nobody took piled up to the cap before warm_first existed (RSS
 * 109 MiB instead of 12); now one chunk goes round.
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
 *
 * Guarded blocks (secure mode, secure_large.c) move the same way: each is
 * a chunk of its own, faulted on free, so without this every large malloc
 * faulted in fresh pages (measured: docs/secure-log.md). Before the
 * chunk of a freed block is faulted, the block's pages (from the page it
 * starts in to its guard) move to a fresh chunk of that size and room for
 * a guard, on a list of their own, warm_blocks (warm_block_keep); a new
 * block takes one (warm_block_take): whole when it is at most half as
 * large again as the block needs (the pages of its head the block does not
 * reach go back to the OS), else the largest smaller one, whose pages move
 * on into the block's new chunk, grown over it (warm_block_transplant: one
 * mremap). Random sizes rarely fit a whole one; moved on, the pages still
 * save what they hold. A larger one is not cut down for a smaller block:
 * it would give a few pages and drop the rest.
 *
 *  - Which blocks: those with at least WARM_BLOCK_MIN (32 KiB, eight OS
 *    pages) resident, by mincore. A move costs two system calls and a VMA
 *    for a while, a fault about 3 us a page; a block of which the program
 *    touched a page or two (peakfree's 64-512 KiB ones) is not worth it,
 *    and a sampled small block is one page.
 *  - How much: at most WARM_BLOCKS_KEPT (8) block chunks, and under
 *    MHEAP_ARENA_WARM_MAX with the arenas' warm chunks (warm_bytes counts
 *    both). Blocks come and go all the time, so the oldest block chunks
 *    give their pages back (released, not dirty: they would sit in the
 *    page heap until the scavenger came) to make room for a new one; an
 *    arena's are never pushed out for a block's. The count keeps what no
 *    block takes from staying resident up to the byte cap: a buffer grown
 *    by realloc leaves a chunk behind at nearly every move, too small for
 *    its next one (a block takes one whole, or the largest smaller one).
 *    Measured: docs/secure-log.md.
 *  - Zeroing: none. calloc of a guarded block zeroes it anyway (secure.c),
 *    and malloc's contents are undefined: a guarded block's chunk from the
 *    page heap may hold another block's old data as well. What the secure
 *    mode promises is about the freed block's address, and that is as
 *    before: the old range is mapped over with fresh memory (so that it is
 *    one VMA with its neighbours again, not a moved-from fragment) and
 *    faulted and quarantined, and a stale access there faults with the
 *    full report, whoever holds the pages now.
 *  - VMAs: a warm chunk's pages are a VMA of their own until they move on
 *    again, and a block's grown transplant is one VMA (with one mremap the
 *    block's free can move it on; two would split it). Moved-from ranges
 *    are mapped over and merge back. So the extra VMAs are those of warm
 *    chunks and of live blocks on moved pages (a 5-25 MiB churn peaked at
 *    219 VMAs).
 *  - Backends: the chunks of blocks are the block backend's (guard or
 *    mprotect, even under kmod: fault_block_backend), which can move; none
 *    does not fault, so nothing moves.
 *  - A transplant's mremap grows the mapping, which MREMAP_DONTUNMAP does
 *    not allow, so the kernel unmaps the warm chunk's range; it is mapped
 *    over again by the next system call. In between, only a MAP_FIXED
 *    mapping at that address could be made there (mmap(NULL) places
 *    mappings top-down, far above the heap), and it would be replaced.
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

/* The least a guarded block's pages take to move (see "Guarded blocks"). */
#define WARM_BLOCK_MIN	(4 * MH_PAGE_SIZE)

struct list warm_list;
struct list warm_blocks;
uint64_t warm_bytes;
uint64_t warm_first;

/* Whether a chunk can become a warm chunk: one of the standard size. */
static bool chunk_standard(const struct arena_chunk *c)
{
	return !c->large && chunk_bytes(c) == arena_cfg.chunk_bytes;
}

/* Whether a freed big arena's chunk is mostly used: worth moving when full,
 * and a warm chunk others may take first (see "Who gets warm chunks"). */
static bool chunk_mostly_used(const struct arena_chunk *c)
{
	return chunk_free_bytes(c) <= chunk_bytes(c) / 2;
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
		if (warm_bytes > limit) {
			c = chunk_of(list_pop_head(&warm_blocks));
			if (!c)
				c = chunk_of(list_pop_head(&warm_list));
			if (c)
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
 * Move the resident pages of [from, from + len) to [to, to + len), a range
 * just taken from the page heap, leaving the old range mapped and empty
 * (MREMAP_DONTUNMAP). With to_len > len the moved mapping also grows over
 * [to + len, to + to_len), one VMA of it all; the kernel cannot leave the
 * old range mapped then, so it is mapped over again at once (see "Guarded
 * blocks"). False when the kernel refuses (before 5.7, out of VMAs, a
 * range spanning two VMAs: errno says why): nothing has moved then, and
 * the destination is mapped as the page heap maps it whatever the kernel
 * did to it (see "Fallbacks").
 */
static bool pages_move(uintptr_t from, size_t len, uintptr_t to, size_t to_len)
{
	int flags = MREMAP_MAYMOVE | MREMAP_FIXED | (to_len == len ? MREMAP_DONTUNMAP : 0);
	int err;

	if (mremap((void *)from, len, to_len, flags, (void *)to) != MAP_FAILED) {
		if (to_len != len && !sys_map_over((void *)from, len))
			mh_fatal("heap memory back over moved pages %p: %s", (void *)from,
				 strerror(errno));
		return true;
	}
	err = errno;
	if (!sys_map_over((void *)to, to_len))
		mh_fatal("heap memory back over chunk %p: %s", (void *)to, strerror(errno));
	errno = err;
	return false;
}

/*
 * Move the pages of c, a chunk about to be faulted, to w, a chunk of the
 * same size just taken from the page heap. A move works on one VMA: when
 * the head of c was advised apart from its tail (an arena's first chunk,
 * small-page head, huge tail), only the tail moves; w's head is then page
 * heap memory as in any new chunk. False when the kernel refuses.
 */
static bool chunk_move(struct arena_chunk *c, struct arena_chunk *w)
{
	size_t h = chunk_thp_size(c), len = chunk_bytes(c);
	size_t off = h && c->thp_head != c->thp_tail ? h : 0;

	while (!pages_move(c->base + off, len - off, w->base + off, len - off)) {
		/* EFAULT: the range spans two VMAs after all (say, a head
		 * advised the same as the tail that did not merge with it):
		 * the tail alone is one. */
		if (errno != EFAULT || off || !h)
			return false;
		off = h;
	}
	/* The moved VMA keeps its advice, and the pages their size. A head
	 * left behind, or moved without pages, holds none in w. */
	w->thp_tail = c->thp_tail;
	if (!off)
		w->thp_head = c->thp_head;
	w->head_empty = off || c->head_empty;
	return true;
}

/*
 * Before full chunks of a freed big arena are faulted, move their pages to
 * fresh chunks that go on the warm list (see the top of the file), up to the
 * cap.
 * Only chunks that are mostly used: for a little one the move would cost a
 * VMA and save a few faults. The arena's active chunk, when it moves
 * (warm_takes_active), moves however little used: the next arena would
 * otherwise go on in it; a partly resident warm chunk goes to the list's
 * head. Failures of any kind leave the chunk to be faulted as before, its
 * pages dropped. errno is left alone.
 */
void recycle_chunks(struct arena_chunk **cs, unsigned n, const struct arena_chunk *active)
{
	const struct fault_backend *b = fault_backend();
	int saved = errno;

	if (!b->faults || !b->remap)
		return;
	for (unsigned i = 0; i < n; i++) {
		struct arena_chunk *c = cs[i], *w;
		size_t len = chunk_bytes(c);
		bool room;

		bool mostly = chunk_mostly_used(c);

		if (!chunk_standard(c) || (!mostly && c != active))
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
			if (mostly)
				list_push_tail(&warm_list, &w->link);
			else
				list_push_head(&warm_list, &w->link);
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
 * full chunks instead of going to the reuse list (arena_lock held), however
 * much of it is used. The next big arena then starts in a whole warm chunk:
 * had it continued in the reused one, the used part of that chunk would sit
 * resident and unusable, and its unused part be fresh memory to fault,
 * while the arena's resident pages waited (measured: see the top of the
 * file). It also faults the used part rather than leaving the old data
 * readable. Only with room on the warm list: without a move the chunk is
 * worth more reused than faulted.
 */
bool warm_takes_active(const struct arena_chunk *c)
{
	return arena_cfg.recycle && fault_backend()->remap && chunk_standard(c) &&
	       warm_bytes + chunk_bytes(c) <= arena_cfg.warm_max;
}

/*
 * Secure mode: before the chunk of a freed guarded block is faulted, move
 * the block's pages, [the page the block starts in, the guard), to a fresh
 * chunk of the block backend with room for a guard after them, and put it
 * on warm_blocks (see "Guarded blocks" at the top of the file). Older
 * block chunks go back to make room under the cap; an arena's do not.
 */
void warm_block_keep(struct arena_chunk *c)
{
	uintptr_t from = ALIGN_DOWN(c->block.addr, MH_PAGE_SIZE);
	size_t len = c->limit - BLOCK_GUARD - from, bytes = len + BLOCK_GUARD;
	struct arena_chunk *w, *old;
	struct list gone = { 0 };
	int saved = errno;
	bool room;

	if (!c->backend->faults || !c->backend->remap || !c->block.addr || len < WARM_BLOCK_MIN ||
	    !sys_resident_at_least((void *)from, len, WARM_BLOCK_MIN))
		return;
	mh_lock(&arena_lock);
	while (arena_cfg.recycle && (warm_bytes + bytes > arena_cfg.warm_max ||
				     warm_blocks.count >= WARM_BLOCKS_KEPT) &&
	       (old = chunk_of(list_pop_head(&warm_blocks)))) {
		warm_bytes -= chunk_bytes(old);
		list_push_tail(&gone, &old->link);
	}
	room = arena_cfg.recycle && warm_bytes + bytes <= arena_cfg.warm_max;
	if (room)
		warm_bytes += bytes;	/* held for this move */
	mh_unlock(&arena_lock);
	while ((old = chunk_of(list_pop_head(&gone)))) {
		sys_release((void *)old->base, chunk_bytes(old));
		chunk_destroy(old, true);
	}
	if (!room)
		return;
	w = chunk_new_on(c->backend, bytes, MH_PAGE_SIZE, PLACE_RELEASED);
	if (w && pages_move(from, len, w->base, len)) {
		/* Fresh memory over the emptied range: a VMA that merges with
		 * its neighbours again (see "Guarded blocks"). Refused (out of
		 * VMAs), the range stays as the move left it. */
		(void)sys_map_over((void *)c->base, c->limit - BLOCK_GUARD - c->base);
		w->large = 1;
		w->arena_id = 0;
		STORE_RELAXED(&w->state, CHUNK_WARM);
		mh_lock(&arena_lock);
		list_push_tail(&warm_blocks, &w->link);
		mh_unlock(&arena_lock);
	} else {
		if (w)
			chunk_destroy(w, false);
		mh_lock(&arena_lock);
		warm_bytes -= bytes;
		mh_unlock(&arena_lock);
	}
	errno = saved;
}

/*
 * A warm block chunk for a guarded block that needs a chunk of bytes, or
 * NULL: the smallest of at least bytes and at most half as many again
 * (*whole: the block takes it as its chunk; those pages of its head that
 * the block does not need go back to the OS), else the largest smaller one
 * (its pages go to the end of a new chunk: warm_block_transplant). Larger
 * ones are left for larger blocks: a small block would take a few of their
 * pages and drop the rest.
 */
struct arena_chunk *warm_block_take(size_t bytes, bool *whole)
{
	struct arena_chunk *c, *fit = NULL, *part = NULL;

	if (bytes < WARM_BLOCK_MIN + BLOCK_GUARD)
		return NULL;
	mh_lock(&arena_lock);
	list_for_each(c, &warm_blocks, link) {
		size_t len = chunk_bytes(c);

		if (len >= bytes && len <= bytes + bytes / 2 && (!fit || len < chunk_bytes(fit)))
			fit = c;
		else if (len < bytes && (!part || len > chunk_bytes(part)))
			part = c;
	}
	c = fit ? fit : part;
	if (c) {
		list_remove(&warm_blocks, &c->link);
		warm_bytes -= chunk_bytes(c);
	}
	mh_unlock(&arena_lock);
	*whole = fit != NULL;
	if (fit && chunk_bytes(fit) > bytes)
		sys_release((void *)fit->base, chunk_bytes(fit) - bytes);
	return c;
}

/*
 * Move the pages of w, a warm block chunk smaller than c, to c, a new
 * chunk for a guarded block, growing them over all of c but its guard's
 * place (one VMA, which the block's free can move on in turn); the block
 * then faults in only the rest. w goes back to the page heap. c may be
 * NULL (no chunk to be had): w's pages are dropped.
 */
void warm_block_transplant(struct arena_chunk *w, struct arena_chunk *c)
{
	size_t len = chunk_bytes(w) - BLOCK_GUARD;
	int saved = errno;

	if (!c || !pages_move(w->base, len, c->base, chunk_bytes(c) - BLOCK_GUARD))
		sys_release((void *)w->base, len);
	/* The place of w's guard came from the page heap as it was, dirty
	 * perhaps: w goes back as released pages only once it is too. */
	sys_release((void *)(w->base + len), BLOCK_GUARD);
	chunk_destroy(w, true);
	errno = saved;
}
