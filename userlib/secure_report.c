// SPDX-License-Identifier: MIT
/*
 * Reports of the secure heap's faults (secure.c), called by the SIGSEGV
 * handler (uaf.c) and so async-signal-safe: lock-free loads, lines built by
 * hand (report.h), backtrace_symbols_fd for the stacks (it writes to the
 * descriptor and allocates nothing).
 *
 * The first line says what happened, as every "mheap: ..." line does: the
 * kind, the access and its address, where it falls in the block (offset
 * into it, or bytes past its end), the block's size and range, and for a
 * freed block how long ago it was freed, with the block's fault backend
 * (fault_block_backend: with kmod, guard or mprotect). Then, as
 * KFENCE and GWP-ASan do, the stacks that allocated and freed the block:
 *
 *   mheap: use-after-free: read of 0x... at offset 0 of freed 32-byte block [0x..., 0x...), freed 0.012 ms ago (guard backend)
 *   mheap: allocated by:
 *   ./prog(main+0x1d)[0x...]
 *   mheap: freed by:
 *   ...
 *
 * Stacks exist for guarded blocks only (large and sampled); a small
 * block's misuse is found at free or at reuse, by secure.c and
 * secure_slot.h, with its address and size on its line.
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <unistd.h>

#include "arena.h"
#include "fault.h"
#include "report.h"
#include "secure.h"

static void put_access(struct line *l, uintptr_t addr, bool write)
{
	put_str(l, write ? "write to " : "read of ");
	put_num(l, addr, 16);
}

/* "N-byte block [a, b)". */
static void put_block(struct line *l, const struct heap_block *b)
{
	put_num(l, b->size, 10);
	put_str(l, "-byte block [");
	put_num(l, b->addr, 16);
	put_str(l, ", ");
	put_num(l, b->addr + b->size, 16);
	put_str(l, ")");
}

/* "at offset K of " or "K bytes before ". */
static void put_offset(struct line *l, uintptr_t addr, const struct heap_block *b)
{
	if (addr >= b->addr) {
		put_str(l, "at offset ");
		put_num(l, addr - b->addr, 10);
		put_str(l, " of ");
	} else {
		put_num(l, b->addr - addr, 10);
		put_str(l, " bytes before ");
	}
}

static void write_line(struct line *l)
{
	mh_write_all(STDERR_FILENO, l->buf, l->n);
	l->n = 0;
}

static void put_stack(struct line *l, const char *what, void *const *frames, unsigned n)
{
	if (!n)
		return;
	put_str(l, "mheap: ");
	put_str(l, what);
	put_str(l, " by:\n");
	write_line(l);
	backtrace_symbols_fd(frames, (int)n, STDERR_FILENO);
}

bool secure_fault_report(uintptr_t addr, const struct arena_chunk *c, bool write,
			 struct line *l)
{
	const struct heap_block *b = c ? &c->block : NULL;
	uint8_t state = c ? LOAD_ACQUIRE(&c->state) : 0;

	if (zero_size_owns(addr)) {
		put_str(l, "mheap: zero-size access: ");
		put_access(l, addr, write);
		put_str(l, " through malloc(0)'s pointer ");
		put_num(l, ALIGN_DOWN(addr, 16), 16);
		put_str(l, "\n");
		write_line(l);
		return true;
	}
	if (!b || !LOAD_ACQUIRE(&b->addr))
		return false;
	if (state == CHUNK_QUARANTINED || state == CHUNK_RELEASING) {
		put_str(l, "mheap: use-after-free: ");
		put_access(l, addr, write);
		put_str(l, " ");
		put_offset(l, addr, b);
		put_str(l, "freed ");
		put_block(l, b);
		put_str(l, ", freed ");
		put_ms(l, mh_nanotime() - c->freed_ns);
		put_str(l, " ms ago");
	} else if (state == CHUNK_LIVE && addr >= b->addr + b->size) {
		put_str(l, "mheap: heap overflow: ");
		put_access(l, addr, write);
		put_str(l, ", ");
		put_num(l, addr - (b->addr + b->size), 10);
		put_str(l, " bytes past the end of ");
		put_block(l, b);
	} else {
		return false;
	}
	put_backend(l, c->backend->name);
	write_line(l);
	put_stack(l, "allocated", b->alloc_stack, b->nalloc);
	if (state != CHUNK_LIVE)
		put_stack(l, "freed", b->free_stack, b->nfree);
	return true;
}
