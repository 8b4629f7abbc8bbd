// SPDX-License-Identifier: MIT
/*
 * Where in a chunk an arena allocates: windows, and transparent huge pages
 * (arena_impl.h has the map of the arena files).
 *
 * A faulted chunk's memory is gone, so every chunk an arena gets from the
 * ready list or the page heap is first-touch memory, and an arena's cost is
 * mostly its page faults: 2,048 for 8 MiB in 4 KiB pages. Populating in
 * advance saves the traps but not the work per page, and would make small
 * arenas resident: not used. Huge pages make the first touch and the fault
 * many times cheaper, so chunks are aligned to the huge page size and use
 * transparent huge pages where an arena is big, but not where it is small:
 * a huge page per small arena would make a thousand live 1 KiB arenas cost
 * gigabytes. Measured: docs/arenas.md#huge-pages-for-big-arenas.
 *
 * The rule (chunk_start, chunk_next_window): an arena's first chunk starts
 * with a window of MHEAP_ARENA_THP_AFTER bytes at its base, in small pages
 * (MADV_NOHUGEPAGE where the system default is huge); both ends bump inside
 * it. When it is used up, the rest of the chunk is advised MADV_HUGEPAGE
 * and allocation moves on one huge page at a time, so an arena holds at
 * most one partly used huge page beyond its data. A chunk an arena takes
 * after filling one is huge from the start, and so is a warm chunk
 * (arena_warm.c), resident already. The rest of a window is left
 * unused (address space only; it faults with the chunk). A chunk that goes
 * back to the page heap is advised MADV_NOHUGEPAGE (chunk_destroy), so that
 * small spans there never sit in huge pages. The advice is a VMA flag: with
 * the guard backend the heap is no longer one VMA but at most a few per
 * chunk (the runs of equal advice), and mprotect splits there anyway. A
 * kmod chunk is one device mapping, which cannot be split: it is advised
 * as a whole, and the module's rule that a 2 MiB block holding a page stays
 * in small pages keeps the head small (mapping_thp_set; fault_backend.thp
 * says which kind a backend is). Everything is probed at run time
 * (sysmem.c); without THP, or with MHEAP_ARENA_THP=0, chunks are one
 * small-page window.
 */
#include "arena_impl.h"
#include "fault.h"
#include "sysmem.h"

/* The huge page size when chunks of an arena take huge pages, else 0. */
size_t thp_size(void)
{
	return arena_cfg.thp && fault_backend()->thp != FAULT_THP_NONE ? sys_thp_size() : 0;
}

/* The huge page size if c can be split into a small-page head and a huge
 * tail (aligned, at least two huge pages long), else 0. */
size_t chunk_thp_size(const struct arena_chunk *c)
{
	size_t h = thp_size();

	if (!h || c->large || (c->base & (h - 1)) || chunk_bytes(c) < 2 * h)
		return 0;
	return h;
}

/* Advise [from, to) of a chunk, whose part's advice is *st, for huge pages
 * or against them; nothing when it is that way already. A refusal leaves
 * things as they were: slower or larger, never wrong. */
static void range_thp_set(uint8_t *st, uintptr_t from, uintptr_t to, bool huge)
{
	bool now = *st == CHUNK_THP_ON || (*st == CHUNK_THP_DEFAULT && sys_thp_default());

	if (now == huge || from >= to)
		return;
	if (sys_thp_advise((void *)from, to - from, huge))
		*st = huge ? CHUNK_THP_ON : CHUNK_THP_OFF;
}

/*
 * The same for a chunk that is one mapping which cannot be split (kmod):
 * the advice goes to the whole chunk, and the per-block rule of the module
 * does the rest, since a block that holds a page already keeps small pages.
 * So the head is advised against huge pages by advising the whole chunk
 * (the tail is untouched then), and the tail alone for them by advising
 * the whole chunk once the head block holds a page: the read of the
 * chunk's first byte gives it one where the arena's window has not been
 * written yet. Both parts' advice is the mapping's; an unadvised mapping
 * is small (CHUNK_THP_DEFAULT), whatever the system's THP mode.
 */
static void mapping_thp_set(struct arena_chunk *c, bool head, bool huge)
{
	bool now = c->thp_tail == CHUNK_THP_ON;

	if (now == huge)
		return;
	if (huge && !head)
		(void)*(volatile const char *)c->base;
	if (sys_thp_advise((void *)c->base, chunk_bytes(c), huge))
		c->thp_head = c->thp_tail = huge ? CHUNK_THP_ON : CHUNK_THP_OFF;
}

/* Advise the head (the first huge page) and/or the tail (the rest) of a
 * chunk whose huge page size is h, for huge pages or against them. */
static void chunk_thp_set(struct arena_chunk *c, size_t h, bool head, bool tail, bool huge)
{
	if (fault_backend()->thp == FAULT_THP_MAPPING) {
		mapping_thp_set(c, head, huge);
		return;
	}
	if (head)
		range_thp_set(&c->thp_head, c->base, c->base + h, huge);
	if (tail)
		range_thp_set(&c->thp_tail, c->base + h, c->limit, huge);
}

/*
 * Set up the windows of a chunk an arena takes from the ready list or the
 * page heap (not a reused one, which goes on where it stopped). An arena
 * that has already filled a chunk is big: the whole chunk is one window in
 * huge pages. Any other gets a first window of thp_after bytes at the base,
 * in small pages, so an arena that stays small stays small in memory too;
 * once that window runs out, chunk_next_window() moves on to the next huge
 * page boundary and the rest of the chunk goes huge.
 */
void chunk_start(struct arena_chunk *c, bool big)
{
	size_t h = chunk_thp_size(c);
	uintptr_t head = c->base + h;

	c->lo = c->base;
	c->hi = c->limit;
	c->next_window = 0;
	if (!h)
		return;
	if (big || !arena_cfg.thp_after) {
		chunk_thp_set(c, h, true, true, true);
		/* A warm chunk whose head holds no pages starts after it. */
		if (c->head_empty)
			c->lo = c->base + h;
		return;
	}
	chunk_thp_set(c, h, true, false, false);
	c->hi = c->base + (arena_cfg.thp_after < h ? arena_cfg.thp_after : h);
	c->next_window = head;
}

/*
 * The window is used up: the next one is the next huge page (the last one
 * runs to the end of the chunk), and the first move advises the rest of
 * the chunk for huge pages. One huge page at a time, so that an arena of a
 * few hundred KiB holds one partly used huge page, not two (pointer-free
 * data would otherwise start at the top of the chunk). What was left of
 * the window is never touched: it costs address space, not memory, and it
 * faults with the chunk.
 */
void chunk_next_window(struct arena_chunk *c)
{
	size_t h = sys_thp_size();

	chunk_thp_set(c, h, false, true, true);
	c->lo = c->next_window;
	c->hi = h && c->limit - c->lo > h ? c->lo + h : c->limit;
	c->next_window = c->hi < c->limit ? c->hi : 0;
}

/* The alignment of a normal chunk: the huge page size h when it can hold
 * two huge pages, so that its tail can be huge (chunk_thp_size). */
size_t chunk_align(size_t h)
{
	return h && arena_cfg.chunk_bytes >= 2 * h ? h : MH_PAGE_SIZE;
}

