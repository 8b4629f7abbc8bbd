// SPDX-License-Identifier: MIT
/*
 * Guarded blocks of the secure heap (secure.c): large blocks, from
 * MHEAP_SECURE_LARGE on, and the sampled small and middle ones. Each gets pages of its
 * own, an arena chunk (arena.c) that holds nothing else: the block ends
 * where its last page ends (at a 16-byte boundary, or the alignment asked
 * for), and the next page is a guard, faulted through the chunk's fault
 * backend for as long as the block lives: guard or mprotect, even where
 * arenas use kmod (fault_block_backend), since a child of fork() does not
 * inherit the module's memory and malloc's blocks must be the child's too.
 * On free the whole chunk is faulted and quarantined as an arena's chunks
 * are, under the same budget (MHEAP_QUARANTINE_MAX) and the same release
 * rule, its resident pages moved first to a warm chunk that a later block
 * takes instead of faulting in fresh ones (arena_warm.c, "Guarded
 * blocks"), so a stale access or one past the end faults, and the SIGSEGV
 * handler (uaf.c) reports it (secure_report.c) with the stacks that
 * allocated and freed the block, captured here with backtrace() for these
 * blocks only (once a constructor has made backtrace() safe to call:
 * secure.c). The up to 15 bytes between the block's end and the guard hold
 * canary bytes (secure_canary.h), checked at free, and by realloc and
 * malloc_usable_size before they take the block (guarded_check).
 *
 * realloc: a guarded block grows or shrinks in place while it fits before
 * its guard and fills more than half the room; one that has to move for
 * growth gets room for half as much again, so that a buffer grown step by
 * step moves a logarithmic number of times, not at every step (a 1 MiB
 * buffer grown by 512 bytes took 50 s moving every time). The grown
 * block's end is then short of the guard: an overflow into the room is
 * found at free, by its canary; one beyond it faults.
 *
 * Why pages before the block are not a guard too: first fit puts a chunk
 * after others, so what precedes a block is usually the previous block's
 * guard or a free run; an underflow is rarer than an overflow, and a
 * second guard would cost a second system call per block.
 *
 * The statistics count guarded blocks with the arenas' chunks (their
 * chunks are live, then quarantined), not with the heap's objects, as the
 * heap checker counts spans.
 *
 * The guard is one page of the heap (8 KiB): a sampled block of up to a
 * page takes two pages of address space and one page of memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <string.h>

#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "secure.h"

#define GUARD	BLOCK_GUARD

/* Set while this thread captures a stack: backtrace() may allocate the
 * first time, and that allocation must not want a stack in turn. */
static __thread bool in_backtrace;

static uint8_t capture(void **frames)
{
	int n = 0;

	if (!in_backtrace && secure_stacks_ready()) {
		in_backtrace = true;
		n = backtrace(frames, HEAP_BLOCK_FRAMES);
		in_backtrace = false;
	}
	return (uint8_t)(n > 0 ? n : 0);
}

/* A guarded block of size bytes aligned to align, placed room bytes (at
 * least size) below the guard; the rest of the room holds the canary. A
 * sampled one (below MHEAP_SECURE_LARGE) is recycled as small ones are:
 * among the SECURE_SMALL_BLOCKS_QUARANTINED latest (docs/heap.md). */
static void *guarded_place(size_t size, size_t align, size_t room, bool sampled)
{
	const struct fault_backend *b;
	size_t a = align > 16 ? align : 16;
	struct arena_chunk *c;
	struct fault_range guard;
	uintptr_t p;
	int err = 0;

	if (room > PTRDIFF_MAX - MH_ARENA_SIZE - a) {
		errno = ENOMEM;
		return NULL;
	}
	/* Room for the block at its place: below the guard, which is page-
	 * aligned, rounded down to a. */
	c = arena_block_chunk_new(ALIGN_UP(a <= MH_PAGE_SIZE ? ALIGN_UP(room, a) : room + a,
					   MH_PAGE_SIZE) + GUARD);
	if (!c)
		return NULL;
	b = c->backend;
	guard = (struct fault_range){ .base = (void *)(c->limit - GUARD), .len = GUARD };
	if (b->faults && b->fault(&guard, 1, &err) != 1) {
		/* Out of VMAs or over the module's limit: no guard to be had.
		 * The chunk goes to quarantine as any freed one, and the
		 * caller takes an ordinary block. */
		c->block.freed = 1;
		arena_block_chunk_free(c);
		errno = EAGAIN;
		return NULL;
	}
	p = ALIGN_DOWN(c->limit - GUARD - room, a);
	canary_fill((uint8_t *)(p + size), c->limit - GUARD - p - size);
	c->block.size = size;
	c->block.small = size <= MH_PAGE_SIZE || sampled;
	c->block.freed = 0;
	c->block.nfree = 0;
	c->block.nalloc = capture(c->block.alloc_stack);
	STORE_RELEASE(&c->block.addr, p);
	return (void *)p;
}

void *guarded_alloc(size_t size, size_t align, bool sampled)
{
	return guarded_place(size, align, size, sampled);
}

void *guarded_alloc_growing(size_t size)
{
	return guarded_place(size, 16, size + size / 2, false);
}

bool guarded_resize(struct arena_chunk *c, size_t size)
{
	uintptr_t p = c->block.addr, guard = c->limit - GUARD;

	if (size > guard - p || size <= (guard - p) / 2)
		return false;
	/* Growing, the block takes canary bytes; shrinking, it leaves some. */
	if (size < c->block.size)
		canary_fill((uint8_t *)(p + size), c->block.size - size);
	c->block.size = size;
	return true;
}

bool guarded_holds_block(const struct arena_chunk *c)
{
	return LOAD_ACQUIRE(&c->block.addr) != 0;
}

/*
 * Abort unless p names c's block and the block is not freed, what naming
 * the call ("" for free); the call's own free (claim) takes the block's
 * freed flag: of two frees racing, one frees, and a free after it finds
 * the flag, or the chunk quarantined. Then the canary bytes between the
 * block's end and the guard are checked, as a slot's are at free, so
 * that realloc does not grow a block over an overflow, nor
 * malloc_usable_size pass one by. One check for free, realloc and
 * malloc_usable_size.
 */
static void guarded_check(struct arena_chunk *c, uintptr_t p, const char *what, bool claim)
{
	size_t size = c->block.size, slack, intact;

	if (p != c->block.addr)
		mh_invalid_pointer(p, what, " (inside an object)");
	if (LOAD_RELAXED(&c->state) != CHUNK_LIVE ||
	    (claim ? __atomic_exchange_n(&c->block.freed, 1, __ATOMIC_ACQ_REL) :
		     LOAD_ACQUIRE(&c->block.freed)))
		mh_freed_pointer(p, what);
	slack = c->limit - GUARD - (p + size);
	intact = canary_intact((const uint8_t *)(p + size), slack);
	if (intact < slack)
		mh_fatal("heap overflow: canary after %zu-byte block %#lx overwritten at offset %zu, detected %s",
			 size, (unsigned long)p, size + intact, *what ? what + 1 : "at free");
}

size_t guarded_checked_size(struct arena_chunk *c, uintptr_t p, const char *what)
{
	guarded_check(c, p, what, false);
	return c->block.size;
}

void guarded_free(struct arena_chunk *c, uintptr_t p, const char *what)
{
	guarded_check(c, p, what, true);
	c->block.nfree = capture(c->block.free_stack);
	arena_block_chunk_free(c);
}
