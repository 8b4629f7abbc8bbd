/* SPDX-License-Identifier: MIT */
/*
 * A small slot's zeroing on free and its zero check at reuse, in the
 * secure mode (MHEAP_SECURE=1, secure.c holds the layer's design): free
 * zeroes the whole slot (trailer included, so a second free finds no
 * trailer: "double free"); the next allocation of the slot checks that it
 * is still zero (its first and last cache lines and a random word between;
 * calloc all of it: zero_check), and a write after free is reported then
 * ("write after free: ... detected at its reuse"). Slots that were never
 * used are zero because the secure mode zeroes every small span made of
 * pages that may be dirty (mheap.c). So calloc of a small block needs no
 * memset. Pages never faulted in are written before the check reads them
 * (secure_span_reach). A span's pages taken again from the span cache, for
 * any class, have their bytes past the new class's last slot checked then
 * (secure_span_reused): every byte of them is checked at the first
 * allocation that covers it. Those two are secure_slot.c's, with the
 * per-class table of the offsets the check and the zeroing use.
 *
 * Also here, because zero_check draws its random word from it: the mode's
 * per-thread state and its random numbers (next_random).
 *
 * Inline here: the secure mode's malloc and free check and zero a slot on
 * their common paths, with no call.
 */
#ifndef MHEAP_SECURE_SLOT_H
#define MHEAP_SECURE_SLOT_H

#include <string.h>

#include "secure_canary.h"
#include "sizeclass.h"

/* Per thread: a slot held back per small class (secure.c's shuffle_take),
 * random bits, a random state and the sampling countdown. One variable, so
 * that a path using several of them finds the thread's block once. */
struct secure_thread {
	uintptr_t held[MH_NUM_CLASSES];
	uint64_t bits;		/* random bits not used yet, above a 1 */
	uint32_t sample_in;	/* allocations until the next sampled one */
	uint64_t rng;
};
MH_HIDDEN extern __thread struct secure_thread secure_self;

/* A random word: xorshift, seeded per thread from the secret. */
static inline uint64_t next_random(void)
{
	uint64_t x = secure_self.rng;

	if (unlikely(!x))
		x = secure_secret ^ (uintptr_t)&secure_self;	/* a thread's first draw */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	secure_self.rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Two words, loaded and or-ed at once (SSE2 on x86-64, NEON on arm64). */
typedef uint64_t u64x2 __attribute__((vector_size(16)));

static inline u64x2 load16(uintptr_t a)
{
	u64x2 v;

	memcpy(&v, (const void *)a, sizeof(v));
	return v;
}

static inline void store16(uintptr_t a, u64x2 v)
{
	memcpy((void *)a, &v, sizeof(v));
}

/* Bytes at each end of a slot that zero_check always reads: a cache line
 * (four 16-byte pieces, slot_piece in secure_slot.c). */
#define CHECKED_END	64
/* Slots of up to this size are read and zeroed whole by the pieces at
 * their two ends, with no call and no loop. */
#define SLOT_BY_PIECES	(2 * CHECKED_END)

/* Per small class, the offsets of its slots' eight 16-byte pieces: the
 * k-th (0 to 3) from the start at k, from the end at 4 + k; together they
 * cover the slot's first and last min(room, CHECKED_END) bytes
 * (secure_slot.c). Loaded, they take the place of computing them, about 8
 * instructions in each of zero_check and slot_zero. Filled at start-up
 * (slot_pieces_init). Measured:
 * docs/secure-log.md#one-jump-into-the-mode-and-the-checks-registers-2026-12-07-issue-26. */
struct slot_pieces {
	uint16_t at[8];
};
MH_HIDDEN extern struct slot_pieces class_pieces[MH_NUM_CLASSES];
_Static_assert(MH_MAX_SMALL_SIZE <= UINT16_MAX, "a piece's offset fits in 16 bits");

/* Fill class_pieces (start-up, after the size classes). */
MH_HIDDEN void slot_pieces_init(void);

/* The slot of room bytes at p was written at offset at (a word's start)
 * after its free: report its first written byte and abort. */
MH_HIDDEN MH_NORETURN void written_after_free(uintptr_t p, size_t room, size_t at);

/*
 * A slot about to be handed out must be as its free left it: all zero. The
 * check reads the slot's first and last cache lines (CHECKED_END bytes
 * each) and, in a slot larger than the two, one word drawn at random from
 * between them: reading all of a 1 KiB slot cost more than the rest of
 * malloc and free together (docs/secure.md). So a write after
 * free is always caught in a slot of up to SLOT_BY_PIECES bytes and in a
 * larger one's first and last 64 bytes (where headers, links and a
 * block's end are), elsewhere with a chance of one in the number of words
 * between. calloc (all) checks every word: it returns the slot as zeroed
 * memory without writing it. pc: the slot's class's pieces.
 */
static inline __attribute__((always_inline)) void zero_check(uintptr_t p, size_t room,
								const struct slot_pieces *pc, bool all)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t words = room / 8, i;
	u64x2 v = { 0, 0 };
	uint64_t any;

	/* Slots are multiples of 8 bytes, of 16 at least; no early exit: it
	 * is rare. 16-byte loads, or-ed two words at a time. */
#pragma GCC unroll 4
	for (i = 0; i < 4; i++)
		v |= load16(p + pc->at[i]) | load16(p + pc->at[4 + i]);
	if (unlikely(all) && room > SLOT_BY_PIECES) {
		/* The middle, two loads a step, the last step from the
		 * middle's end (overlapping the one before). */
		for (i = CHECKED_END; i + 16 < room - CHECKED_END - 16; i += 32)
			v |= load16(p + i) | load16(p + i + 16);
		v |= load16(p + i) | load16(p + room - CHECKED_END - 16);
	}
	any = v[0] | v[1];
	if (room > SLOT_BY_PIECES) {
		size_t between = words - 2 * CHECKED_END / 8;

		i = CHECKED_END / 8 + (size_t)((next_random() >> 32) * between >> 32);
		any |= w[i];
	}
	if (likely(!any))
		return;
	for (i = 0; !w[i]; i++)
		;
	written_after_free(p, room, i * 8);
}

/* Zero a freed slot of room bytes at p, all of it: by its end pieces up
 * to SLOT_BY_PIECES (pc: its class's), else memset. */
static inline __attribute__((always_inline)) void slot_zero(uintptr_t p, size_t room,
								const struct slot_pieces *pc)
{
	u64x2 z = { 0, 0 };

	if (room > SLOT_BY_PIECES) {
		memset((void *)p, 0, room);
		return;
	}
#pragma GCC unroll 4
	for (size_t k = 0; k < 4; k++) {
		store16(p + pc->at[k], z);
		store16(p + pc->at[4 + k], z);
	}
}

#endif /* MHEAP_SECURE_SLOT_H */
