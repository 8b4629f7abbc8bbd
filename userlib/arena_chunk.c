// SPDX-License-Identifier: MIT
/*
 * The life of an arena chunk (arena_impl.h has the map of the arena files).
 *
 * An arena bump-allocates from 8 MiB chunks. Chunks are spans of the same
 * page heap as everything else (state MSPAN_CHUNK, span->chunk_data points
 * at the struct arena_chunk), so the arena map finds them in O(1): that is
 * mh_in_arena, and how the SIGSEGV handler recognises a stale access.
 *
 * Lifecycle of a chunk, as in Go (lists under arena_lock):
 *
 *   new (page heap) ---> LIVE ---arena freed---> REUSE ---new arena---> LIVE
 *        ^                |  (the active chunk,      (continues where it
 *        |                |   when reuse is on)       stopped: old data is
 *        |                v                           never overwritten)
 *        |          QUARANTINED (faulting, address space held:
 *        |                |      arena_quarantine.c, arena_scan.c)
 *        |                |  no pointer found into it (scan), past the cap,
 *        |                |  kernel refused a fault; with the scan off:
 *        |                v  budget exceeded, mh_quarantine_release()
 *        +--(too many)-- READY ---new arena---> LIVE
 *       (FIFO only)
 *
 * and WARM, a freed big arena's pages moved rather than dropped
 * (arena_warm.c). A new arena takes a chunk from the reuse list, else (once
 * it has filled one) the warm list, else the ready list, else the page heap
 * (chunk_get). Freeing an arena faults every chunk but the active one,
 * which goes to the reuse list (MHEAP_ARENA_REUSE=0 faults it too, for
 * maximal detection: a stale pointer into a reused chunk reads the old data
 * rather than crashing; a big arena's active chunk, and any used-up one,
 * is faulted too, its pages moved warm, when the warm list has room).
 *
 * The reuse list holds the used part of its chunks resident, dead data
 * nobody will touch again, so it is capped: the used parts of its chunks
 * add up to at most MHEAP_ARENA_REUSE_MAX; over it, the active chunk faults
 * with the rest. mh_scavenge() and mh_quarantine_release() return those
 * used parts, whole pages, to the OS (reuse_drop_used): the chunk goes on
 * where it stopped, so they are never handed out again, and a stale read
 * there finds zeros. Twenty freed 3 MiB arenas used to keep 87 MiB
 * resident on the list.
 *
 * The rest of the heap comes first when memory or address space runs out
 * (RLIMIT_AS counts quarantine's): when the page heap cannot grow for a
 * span that is not a chunk, it asks the arena layer to give back
 * (arena_give_back): warm chunks, then reuse and ready chunks, then the
 * oldest quarantined chunks, a batch at a time, back to the page heap, and
 * retries after each, before it returns NULL.
 */
#include <errno.h>

#include "arena_impl.h"
#include "fault.h"
#include "fixalloc.h"
#include "sysmem.h"

struct list reuse_list, ready_list;
uint64_t reuse_used;
uint64_t chunks_live;
static struct fixalloc chunk_alloc;	/* arena_lock */

MH_DEFAULT_TEXT void arena_chunk_init(void)
{
	fixalloc_init(&chunk_alloc, sizeof(struct arena_chunk), 0, 0);
}

struct arena_chunk *chunk_new_on(const struct fault_backend *b, size_t bytes,
				  size_t align, enum span_place place)
{
	uintptr_t npages = ALIGN_UP(bytes, MH_PAGE_SIZE) >> MH_PAGE_SHIFT;
	struct mspan *s;
	struct arena_chunk *c;

	mheap_init();
	s = mheap_alloc_span(npages, align > MH_PAGE_SIZE ? align >> MH_PAGE_SHIFT : 1, 0,
			     MSPAN_CHUNK, place, NULL);
	if (!s)
		return NULL;
	if (b->prepare((void *)s->base, npages << MH_PAGE_SHIFT)) {
		mheap_free_span(s);
		errno = ENOMEM;
		return NULL;
	}
	mh_lock(&arena_lock);
	c = fixalloc_alloc(&chunk_alloc);
	mh_unlock(&arena_lock);
	if (!c) {
		b->unprepare((void *)s->base, npages << MH_PAGE_SHIFT);
		mheap_free_span(s);
		errno = ENOMEM;
		return NULL;
	}
	c->span = s;
	c->base = c->lo = s->base;
	c->limit = c->hi = mspan_limit(s);
	c->next_window = 0;
	c->large = 0;
	c->moved = 0;
	c->head_empty = 0;
	c->thp_head = c->thp_tail = CHUNK_THP_DEFAULT;
	c->block.addr = 0;
	c->block.small = 0;
	c->backend = b;
	STORE_RELEASE(&s->chunk_data, c);
	return c;
}

struct arena_chunk *chunk_new(size_t bytes, size_t align)
{
	return chunk_new_on(fault_backend(), bytes, align, PLACE_LOW);
}

/* A live chunk for one guarded heap block of the secure mode. */
struct arena_chunk *arena_block_chunk_new(size_t bytes)
{
	bool whole = false;
	struct arena_chunk *w = warm_block_take(ALIGN_UP(bytes, MH_PAGE_SIZE), &whole), *c = w;

	if (!whole) {
		c = chunk_new_on(fault_block_backend(), bytes, MH_PAGE_SIZE, PLACE_RELEASED);
		if (w)
			warm_block_transplant(w, c);
	}

	if (!c)
		return NULL;
	c->large = 1;
	c->arena_id = 0;
	c->lo = c->hi = c->limit;
	STORE_RELAXED(&c->state, CHUNK_LIVE);
	mh_lock(&arena_lock);
	chunks_live++;
	mh_unlock(&arena_lock);
	return c;
}

/* Its block was freed: its pages moved warm (arena_warm.c), the chunk
 * faulted and quarantined as an arena's chunks (the guard backend's
 * release removes the guard page's entry: fault_guard.c). */
void arena_block_chunk_free(struct arena_chunk *c)
{
	mh_lock(&arena_lock);
	chunks_live--;
	mh_unlock(&arena_lock);
	warm_block_keep(c);
	quarantine_chunks(&c, 1, 0);
}

/* Give a chunk whose pages have been dropped back to the page heap. */
void chunk_destroy(struct arena_chunk *c, bool released)
{
	struct mspan *s = c->span;

	/* Small spans will live here: no huge pages for them (one small
	 * span would keep a whole huge page resident). kmod's unprepare
	 * maps fresh memory over the chunk, and its advice goes with it. */
	if ((c->thp_head == CHUNK_THP_ON || c->thp_tail == CHUNK_THP_ON) &&
	    c->backend->thp == FAULT_THP_RANGES)
		sys_thp_advise((void *)c->base, chunk_bytes(c), false);
	c->backend->unprepare((void *)c->base, chunk_bytes(c));
	STORE_RELEASE(&s->chunk_data, NULL);
	mheap_free_span_released(s, released);
	mh_lock(&arena_lock);
	fixalloc_free(&chunk_alloc, c);
	mh_unlock(&arena_lock);
}

/*
 * Give back one more part of what arenas hold and nobody uses, for a caller
 * the system refused memory or address space (arena_lock not held): the warm
 * chunks (memory and address space); else, with to_heap, the reuse list's
 * and the ready list's chunks; else up to max of the oldest quarantined
 * chunks, released to the page heap (to_heap) or the ready list. False when
 * nothing was given back. With the scan (and not MHEAP_QUARANTINE_TO_HEAP)
 * chunks that were quarantined never go to the heap: not the ready list's,
 * not the quarantine's.
 */
static bool give_back(unsigned max, bool to_heap)
{
	struct arena_chunk *c;
	bool warm, idle, dirty;
	bool keep = to_heap && arenas_keep_released();

	mh_lock(&arena_lock);
	warm = warm_list.count || warm_blocks.count;
	idle = to_heap && (reuse_list.count || (!keep && ready_list.count));
	mh_unlock(&arena_lock);
	if (warm) {
		warm_release();
		return true;
	}
	while (idle) {
		mh_lock(&arena_lock);
		c = chunk_of(list_pop_head(&reuse_list));
		dirty = c != NULL;
		if (c)
			reuse_used -= chunk_used_bytes(c);
		else if (!keep)
			c = chunk_of(list_pop_head(&ready_list));
		mh_unlock(&arena_lock);
		if (!c)
			return true;
		chunk_destroy(c, !dirty && c->backend->faults);
	}
	if (keep)
		return false;
	/* For an arena, with the scan: what no pointer points into first.
	 * The oldest chunks may well be pointed into (malloc, to_heap, takes
	 * nothing from quarantine with the scan on: keep). */
	if (!to_heap && quarantine_scan_for_room(false))
		return true;
	return release_oldest(max, !to_heap) != 0;
}

bool arena_give_back(void)
{
	return give_back(ARENA_BATCH, true);
}

/*
 * The next chunk for an arena: reuse list, warm list (only for an arena
 * that has filled a chunk already), ready list, or a new one. When
 * the system refuses a new one (out of memory or of VMAs), quarantine is
 * cut, oldest first, until a chunk can be had: released chunks land on the
 * ready list and their VMAs merge back.
 */
struct arena_chunk *chunk_get(uint64_t arena_id, bool big)
{
	for (;;) {
		struct arena_chunk *c;
		bool reused = false, warm = false;

		mh_lock(&arena_lock);
		c = chunk_of(list_pop_tail(&reuse_list));	/* the most recent, as Go */
		if (c) {
			reuse_used -= chunk_used_bytes(c);
			reused = true;
		} else if ((big || warm_first) && (c = chunk_of(list_pop_tail(&warm_list)))) {
			/* The most recently moved: its pages are the likeliest
			 * to be in huge pages still and in cache. A new arena
			 * takes one in place of a freed big arena's active
			 * chunk (warm_first, arena_warm.c). */
			warm_bytes -= chunk_bytes(c);
			if (!big)
				warm_first--;
			warm = true;
		} else {
			warm_first = 0;	/* none left to take */
			c = chunk_of(list_pop_head(&ready_list));
		}
		if (c) {
			STORE_RELAXED(&c->state, CHUNK_LIVE);
			c->arena_id = arena_id;
			chunks_live++;
		}
		mh_unlock(&arena_lock);
		if (c) {
			/* A warm chunk is resident already: huge from the
			 * start, whoever takes it. */
			if (!reused)
				chunk_start(c, big || warm);
			return c;
		}
		/* Aligned to the huge page size, when huge pages are used. */
		c = chunk_new(arena_cfg.chunk_bytes, chunk_align(thp_size()));
		if (c) {
			c->arena_id = arena_id;
			STORE_RELAXED(&c->state, CHUNK_LIVE);
			mh_lock(&arena_lock);
			chunks_live++;
			mh_unlock(&arena_lock);
			chunk_start(c, big);
			return c;
		}
		if (!give_back(8, false)) {
			errno = ENOMEM;
			return NULL;
		}
	}
}

/* A chunk just made usable again (arena_lock not held): ordinary memory,
 * back to the ready list, or to the page heap when large, when the ready
 * list is full, when ready is false, or when it held a guarded heap block
 * (secure_large.c): that address space was malloc's, and nothing takes a
 * block's odd-sized chunk from the ready list, which kept it for ever.
 * A block's chunk whose guard could not be had holds no block, but it may
 * be of another backend than the arenas' (fault_block_backend): it goes
 * back to the page heap too. */
void chunk_released(struct arena_chunk *c, bool ready)
{
	bool ours = c->backend == fault_backend(), keep;

	c->moved = 0;
	c->head_empty = 0;
	mh_lock(&arena_lock);
	/* With the scan, an arena's chunk out of quarantine stays with arenas
	 * (as in Go, chunk address space is for arenas only): its pages are
	 * gone already, so the ready list holds only address space. */
	keep = ready && !c->block.addr && ours && (arenas_keep_released() ||
			 (!c->large && (ready_list.count + 1) * arena_cfg.chunk_bytes <=
				       arena_cfg.ready_max));
	if (keep) {
		c->large = 0;
		c->lo = c->base;
		c->hi = c->limit;
		c->next_window = 0;
		STORE_RELAXED(&c->state, CHUNK_READY);
		list_push_tail(&ready_list, &c->link);
	}
	mh_unlock(&arena_lock);
	if (!keep)
		chunk_destroy(c, c->backend->faults);
}

/*
 * Give the pages of [base, base + len), part of a live chunk, back to the
 * OS; the range reads as zero afterwards. Ordinary anonymous memory takes
 * MADV_DONTNEED; the device mappings of kmod refuse it, so there the range
 * is faulted and released again, which frees its pages in the module. A
 * refused release leaves the range faulting, which is safe: nothing will
 * be allocated there again.
 */
static void drop_pages(uintptr_t base, size_t len)
{
	const struct fault_backend *b = fault_backend();
	struct fault_range r = { .base = (void *)base, .len = len };
	int err = 0;

	if (b->remap) {
		sys_release(r.base, len);
		return;
	}
	if (b->fault(&r, 1, &err) == 1)
		(void)b->release(&r, 1, &err);
}

/*
 * Return the used part of the chunks on the reuse list to the OS: whole
 * pages of [base, lo) and of [hi, the end of the window). That data is
 * dead, and a reused chunk goes on from lo and hi, inwards: the part is
 * never handed out again, and reads as zero from now on. The list is
 * taken out while the pages go (arena_lock is not held over system calls),
 * so that no arena takes one of its chunks meanwhile; chunks pushed in the
 * meantime are younger and stay behind the older ones.
 */
void reuse_drop_used(void)
{
	struct list l;
	struct arena_chunk *c;

	if (!fault_backend()->faults)
		return;	/* none: nothing is ever given back early */
	mh_lock(&arena_lock);
	l = reuse_list;
	reuse_list = (struct list){ 0 };
	mh_unlock(&arena_lock);
	list_for_each(c, &l, link) {
		uintptr_t below = ALIGN_DOWN(c->lo, MH_PAGE_SIZE);
		uintptr_t above = ALIGN_UP(c->hi, MH_PAGE_SIZE);
		uintptr_t end = c->next_window ? c->next_window : c->limit;

		if (below > c->base)
			drop_pages(c->base, below - c->base);
		if (end > above)
			drop_pages(above, end - above);
	}
	mh_lock(&arena_lock);
	list_splice_head(&reuse_list, &l);
	mh_unlock(&arena_lock);
}

void arena_release_idle(void)
{
	warm_release();
	reuse_drop_used();
}

