/* SPDX-License-Identifier: MIT */
/*
 * The canary and the trailer of the secure heap's blocks (secure.c): after
 * a small slot's or a middle block's bytes, up to CANARY_MAX bytes of a
 * secret byte, then at the slot's end an 8-byte trailer, the block's size
 * (low half) and a check word made from it and a secret (high half). Free
 * reads the size back from the trailer and checks both (canary_check); a
 * guarded block has canary bytes up to its guard page (secure_large.c).
 * The secrets are drawn at start-up (secure_canary_init). Inline here: the
 * secure mode's malloc and free set and check them on their common paths.
 */
#ifndef MHEAP_SECURE_CANARY_H
#define MHEAP_SECURE_CANARY_H

#include <string.h>

#include "secure.h"

MH_HIDDEN extern uint64_t secure_secret;	/* random, never 0 */
MH_HIDDEN extern uint8_t canary_byte;		/* never 0 */
/* canary_byte in every byte of a word: one load where the secure mode's
 * malloc and free set and check it (a multiply less each). */
MH_HIDDEN extern uint64_t canary_word_all;
/* The low n bytes of a word set, n from 0 to 8: the bytes of a canary of n
 * read as one word (a load, where a shift by n was a branch on n < 8). */
MH_HIDDEN extern const uint64_t canary_mask[9];

/* Draw the secrets (start-up, before any block). */
MH_HIDDEN void secure_canary_init(void);

/* Report a slot's overwritten trailer or canary (or a zeroed slot: a
 * second free) and abort, what ("" or " in realloc") naming the call:
 * canary_check's uncommon end, out of line, so that its common case saves
 * no registers. */
MH_HIDDEN MH_NORETURN void canary_broken(uintptr_t p, size_t room, const char *what);

/* The trailer's check half for a block of size bytes: never 0. */
static inline uint32_t trailer_check(size_t size)
{
	return (uint32_t)((secure_secret >> 32) ^ (size * 0x9e3779b1u)) | 1;
}

/* canary_byte in every byte of a word. */
static inline uint64_t canary_word(void)
{
	return canary_word_all;
}

/* The trailer of a block of size bytes at p in a slot of room. */
static inline void trailer_set(uintptr_t p, size_t size, size_t room)
{
	uint64_t trailer = (uint64_t)trailer_check(size) << 32 | size;

	memcpy((void *)(p + room - TRAILER), &trailer, TRAILER);
}

/* The canary after a block of size bytes in a slot of room: the gap up to
 * the trailer, at most CANARY_MAX bytes of it (the rest of a larger gap is
 * left as the slot's zeroing left it). A contiguous overflow crosses it
 * whatever its length; filling and checking gaps of up to 120 bytes whole
 * was a tenth of the instructions of a malloc and free of 16..1024 bytes
 * (docs/secure.md). */
#define CANARY_MAX	16
_Static_assert(CANARY_MAX <= 16, "canary_intact_in_slot reads at most two words");

static inline size_t canary_len(size_t size, size_t room)
{
	size_t gap = room - TRAILER - size;

	return gap < CANARY_MAX ? gap : CANARY_MAX;
}

/* Where the canary's second word starts, from the block's end: its last
 * 8 bytes (overlapping the first word) when it has 8 or more, else the
 * first word again. A select, not a branch: with blocks of random sizes
 * a branch on the canary's length mispredicted every other malloc and
 * free (docs/secure-log.md#small-blocks-branches-on-random-bits-and-slot-sizes-2026-12-07-issue-26). */
static inline size_t canary_second(size_t n)
{
	return n >= 8 ? n - 8 : 0;
}

/*
 * Put the canary after the block of size bytes at p in a slot of room, and
 * the trailer. A slot's canary is written and checked as two words from
 * the block's end (canary_second): a word may run into the trailer (never
 * past the slot: the block ends at least TRAILER bytes before it), which
 * is written after them.
 */
static inline void canary_set(uintptr_t p, size_t size, size_t room)
{
	uint64_t w = canary_word();
	size_t n = canary_len(size, room);

	memcpy((void *)(p + size), &w, 8);
	memcpy((void *)(p + size + canary_second(n)), &w, 8);
	trailer_set(p, size, room);
}

/* Whether the canary bytes after the block of size bytes at p, in a slot
 * of room, are intact: at most CANARY_MAX (two words), so two loads, the
 * second at canary_second, with the trailer's bytes past a canary under 8
 * bytes masked off. */
static inline bool canary_intact_in_slot(uintptr_t p, size_t size, size_t room)
{
	uint64_t w = canary_word(), v, last, mask;
	size_t n = canary_len(size, room);

	memcpy(&v, (const void *)(p + size), 8);
	memcpy(&last, (const void *)(p + size + canary_second(n)), 8);
	mask = canary_mask[n < 8 ? n : 8];
	return !(((v ^ w) | (last ^ w)) & mask);
}

/*
 * The size of the block at p, from its trailer, with the canary checked;
 * an abort if either was overwritten, or if the slot is all zero (a free
 * zeroed it and the slot is held back, allocated but not handed out: a
 * second free of a stale pointer).
 */
static inline size_t canary_check(uintptr_t p, size_t room, const char *what)
{
	uint64_t trailer;
	size_t size;

	memcpy(&trailer, (void *)(p + room - TRAILER), TRAILER);
	size = (uint32_t)trailer;
	if (likely(size <= room - TRAILER && (uint32_t)(trailer >> 32) == trailer_check(size) &&
		   canary_intact_in_slot(p, size, room)))
		return size;
	canary_broken(p, room, what);
}


#endif /* MHEAP_SECURE_CANARY_H */
