// SPDX-License-Identifier: MIT
/*
 * The secure mode's small slots, the parts off malloc's and free's common
 * paths (secure_slot.h has the design and the inline check and zeroing):
 * the table of the offsets zero_check and slot_zero read and write, the
 * report of a write after free, a span's pages faulted in before their
 * slots are first checked (secure_span_reach) and the check of a reused
 * span's bytes past its last slot (secure_span_reused); and the thread's
 * state, whose random numbers the check and the layer draw.
 */
#define _GNU_SOURCE
#include <string.h>

#include "mspan.h"
#include "secure_slot.h"

__thread struct secure_thread secure_self;

uint64_t secure_random(void)
{
	return next_random();
}

/*
 * The offset of the k-th (0 to 3) 16-byte piece from the start of a slot of
 * room bytes (at least 16): 16 k, or the last piece of a smaller slot.
 * The k-th piece from the end is at room - 16 less it. The eight cover the
 * slot's first and last min(room, 64) bytes, so all of a slot of up to
 * SLOT_BY_PIECES, with no branch on its size: the loops over a slot of
 * the class's size, canary_set's and memset's size dispatch mispredicted
 * about 3 branches a malloc and free of random small sizes
 * (docs/secure-log.md#small-blocks-branches-on-random-bits-and-slot-sizes-2026-12-07-issue-26).
 */
static size_t slot_piece(size_t room, size_t k)
{
	size_t a = 16 * k, last = room - 16;

	return a < last ? a : last;
}

struct slot_pieces class_pieces[MH_NUM_CLASSES];

void slot_pieces_init(void)
{
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		size_t room = mh_class[cls].size;

		if (room < 16)
			continue;	/* never a secure slot: TRAILER and 8 bytes at least */
		for (size_t k = 0; k < 4; k++) {
			class_pieces[cls].at[k] = (uint16_t)slot_piece(room, k);
			class_pieces[cls].at[4 + k] = (uint16_t)(room - 16 - slot_piece(room, k));
		}
	}
}

void written_after_free(uintptr_t p, size_t room, size_t at)
{
	const uint8_t *b = (const uint8_t *)p;

	while (!b[at])	/* at is the word's start: name its first written byte */
		at++;
	mh_fatal("write after free: %zu-byte slot %#lx written at offset %zu after its free, detected at its reuse",
		 room, (unsigned long)p, at);
}

/*
 * A slot's first access in this mode is a read (zero_check), and a read of
 * a page never faulted in maps the kernel's shared zero page there, so the
 * write that follows faults a second time to replace it, and the
 * replacement flushes the TLB on every CPU the process runs on: with two
 * threads, an interrupt to the other one's core, under the page-table lock
 * its own faults wait for (docs/secure.md). So each OS page the
 * objects a span reaches lie on is written first, by an atomic or of zero
 * into one of their bytes: a write, which faults the page in as the
 * process's own, and one that leaves the byte as it was (an overflow into
 * a slot not handed out yet stays for the check at its reuse).
 */
#define OS_PAGE_MIN	4096	/* the smallest OS page (a larger one takes more writes) */

void secure_span_reach(const struct mspan *s, uint32_t from, uint32_t to)
{
	uintptr_t a = s->base + (uintptr_t)from * s->elemsize;
	uintptr_t end = s->base + (uintptr_t)to * s->elemsize;

	for (; a < end; a = ALIGN_DOWN(a, OS_PAGE_MIN) + OS_PAGE_MIN)
		__atomic_fetch_or((uint8_t *)a, 0, __ATOMIC_RELAXED);
}

/*
 * A span's bytes past its last slot (its tail: up to 1,536 bytes, sizeclass.c)
 * are no block's, but the slots of its pages' earlier lives were: a small
 * span freed whole keeps its pages zeroed (every slot zeroed at its free)
 * and goes to the span cache's small list, and the next small span of its
 * length takes them as they are, for any class. Its slots are checked as
 * they are handed out (zero_check); what falls past the new class's last
 * slot is checked here, when the pages are taken (nothing else reads it:
 * a write after free there would go unreported for as long as the pages
 * served classes that left it past their last slot). So every
 * byte of a reused small span is checked at the first allocation that
 * covers it, a slot's or the span's own. The span's take is a slow path
 * (under the heap lock); malloc's and free's common paths do nothing more.
 */
void secure_span_reused(uintptr_t base, uintptr_t npages, unsigned cls)
{
	uintptr_t end = base + (npages << MH_PAGE_SHIFT);
	uintptr_t tail = base + (uintptr_t)mh_class[cls].nelems * mh_class[cls].size, a;
	uint64_t any = 0, w;

	/* Slots are multiples of 8 bytes: the tail is whole words. */
	for (a = tail; a < end; a += 8) {
		memcpy(&w, (const void *)a, 8);
		any |= w;
	}
	if (likely(!any))
		return;
	for (a = tail; !*(const uint8_t *)a; a++)
		;
	mh_fatal("write after free: span [%#lx, %#lx) written at offset %zu, past its last %u-byte slot, after its free, detected at its reuse",
		 (unsigned long)base, (unsigned long)end, (size_t)(a - base),
		 (unsigned)mh_class[cls].size);
}
