// SPDX-License-Identifier: MIT
/*
 * Guarded blocks of the secure heap (secure.c): large blocks, from
 * MHEAP_SECURE_LARGE on, and the sampled small ones. Each gets pages of its
 * own, an arena chunk (arena.c) that holds nothing else: the block ends
 * where its last page ends (at a 16-byte boundary, or the alignment asked
 * for), and the next page is a guard, faulted through the fault backend
 * (kmod, guard or mprotect) for as long as the block lives. On free the
 * whole chunk is faulted and quarantined as an arena's chunks are, under
 * the same budget (MHEAP_QUARANTINE_MAX) and the same release rule, so a
 * stale access or one past the end faults, and the SIGSEGV handler (uaf.c)
 * reports it (secure_report.c) with the stacks that allocated and freed the
 * block, captured here with backtrace() for these blocks only. The up to
 * 15 bytes between the block's end and the guard hold the canary byte,
 * checked at free.
 *
 * Why pages before the block are not a guard too: first fit puts a chunk
 * after others, so what precedes a block is usually the previous block's
 * guard or a free run; an underflow is rarer than an overflow, and a
 * second guard would cost a second system call per block.
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
#include "mcache.h"
#include "secure.h"

#define GUARD	MH_PAGE_SIZE
#define CANARY_BYTE 0xa5	/* in the slack before the guard */

/* Set while this thread captures a stack: backtrace() may allocate the
 * first time, and that allocation must not want a stack in turn. */
static __thread bool in_backtrace;

/* Count a guarded block's malloc or free with the large objects (class
 * 0), as the statistics expect. */
static void count(bool is_free)
{
	struct mcache *c = mcache_get();

	if (c)
		owner_add(is_free ? &c->nfree[0] : &c->nmalloc[0], 1);
	else
		mcache_count_uncached(is_free ? mh_dead_nfree : mh_dead_nmalloc, 0);
}

static uint8_t capture(void **frames)
{
	int n = 0;

	if (!in_backtrace) {
		in_backtrace = true;
		n = backtrace(frames, HEAP_BLOCK_FRAMES);
		in_backtrace = false;
	}
	return (uint8_t)(n > 0 ? n : 0);
}

void *guarded_alloc(size_t size, size_t align)
{
	const struct fault_backend *b = fault_backend();
	size_t a = align > 16 ? align : 16;
	struct arena_chunk *c;
	struct fault_range guard;
	uintptr_t p;
	int err = 0;

	if (size > PTRDIFF_MAX - MH_ARENA_SIZE - a) {
		errno = ENOMEM;
		return NULL;
	}
	/* Room for the block at its place: below the guard, which is page-
	 * aligned, rounded down to a. */
	c = arena_block_chunk_new(ALIGN_UP(a <= MH_PAGE_SIZE ? ALIGN_UP(size, a) : size + a,
					   MH_PAGE_SIZE) + GUARD);
	if (!c)
		return NULL;
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
	p = ALIGN_DOWN(c->limit - GUARD - size, a);
	memset((void *)(p + size), CANARY_BYTE, c->limit - GUARD - p - size);
	c->block.size = size;
	c->block.freed = 0;
	c->block.nfree = 0;
	c->block.nalloc = capture(c->block.alloc_stack);
	STORE_RELEASE(&c->block.addr, p);
	count(false);
	return (void *)p;
}

struct arena_chunk *guarded_chunk_of(uintptr_t p)
{
	struct mspan *s = span_of(p);
	struct arena_chunk *c;

	if (!s || LOAD_RELAXED(&s->state) != MSPAN_CHUNK)
		return NULL;
	c = LOAD_ACQUIRE(&s->chunk_data);
	return c && LOAD_ACQUIRE(&c->block.addr) ? c : NULL;
}

void guarded_free(struct arena_chunk *c, uintptr_t p)
{
	uintptr_t end = c->block.addr + c->block.size;

	if (p != c->block.addr)
		mh_fatal("invalid free of %#lx (inside an object)", (unsigned long)p);
	/* Of two frees racing, one frees; a free after it finds the flag,
	 * or the chunk quarantined. */
	if (LOAD_RELAXED(&c->state) != CHUNK_LIVE ||
	    __atomic_exchange_n(&c->block.freed, 1, __ATOMIC_ACQ_REL))
		mh_fatal("double free of %#lx", (unsigned long)p);
	for (uintptr_t q = end; q < c->limit - GUARD; q++)
		if (*(const uint8_t *)q != CANARY_BYTE)
			mh_fatal("heap overflow: canary after %zu-byte block %#lx overwritten at offset %zu, detected at free",
				 c->block.size, (unsigned long)p, (size_t)(q - p));
	c->block.nfree = capture(c->block.free_stack);
	arena_block_chunk_free(c);
	count(true);
}
