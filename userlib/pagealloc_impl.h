/* SPDX-License-Identifier: MIT */
/*
 * The page allocator's internals, shared by its three files: pagealloc.c
 * (the bitmaps and summaries, allocation and free), pagealloc_search.c
 * (where a run goes) and pagealloc_scavenge.c (which free pages the
 * scavenger releases). pagealloc.h is the interface; everything runs under
 * the heap lock. The bit helpers are inline: the searches call them in
 * their inner loops.
 */
#ifndef MHEAP_PAGEALLOC_IMPL_H
#define MHEAP_PAGEALLOC_IMPL_H

#include "pagealloc.h"

/* No free, resident page lies at or above this address: the scavenger
 * starts its downward walk here instead of at the top of the heap. */
MH_HIDDEN extern uintptr_t pa_scav_top;

/* Recompute the summaries of chunks [first_chunk, last_chunk] of ha, then
 * the arena's own, and lower the first fit hints if a run grew
 * (pa_hints_lower). pa_sums_only leaves the hints to the caller. */
MH_HIDDEN void pa_update_sums(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk);
MH_HIDDEN void pa_sums_only(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk);
/* Moves on at every change of the allocation bits or of the hints: the
 * scavenger gives pages back without lowering the hints when nothing
 * changed since it took them (pagealloc_scavenge.c). */
MH_HIDDEN extern uint64_t pa_epoch;
/* First fit's hints (pagealloc_search.c): no free run of at least 1 << k
 * pages begins below pa_hint[k]. pa_hints_lower: a free made a run of ha
 * longer (start_grew: the one at its bottom). */
#define PA_HINTS	32
MH_HIDDEN extern uintptr_t pa_hint[PA_HINTS];
MH_HIDDEN void pa_hints_lower(const struct heap_arena *ha, bool start_grew);
/* Mark free pages [first, first + n) of ha as released. */
MH_HIDDEN void pa_set_scavenged(struct heap_arena *ha, unsigned first, unsigned n);

/* ------------------------------------------------------------ bit helpers */

static inline unsigned next_set(const uint64_t *w, unsigned i, unsigned lim)
{
	while (i < lim) {
		uint64_t v = w[i / 64] >> (i % 64);

		if (v) {
			i += (unsigned)__builtin_ctzll(v);
			return i < lim ? i : lim;
		}
		i = (i / 64 + 1) * 64;
	}
	return lim;
}

static inline unsigned next_clear(const uint64_t *w, unsigned i, unsigned lim)
{
	while (i < lim) {
		uint64_t v = ~w[i / 64] >> (i % 64);

		if (v) {
			i += (unsigned)__builtin_ctzll(v);
			return i < lim ? i : lim;
		}
		i = (i / 64 + 1) * 64;
	}
	return lim;
}

static inline uint64_t range_mask(unsigned lo, unsigned hi)	/* bits [lo, hi) of a word */
{
	uint64_t m = hi >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);

	return m & ~(((uint64_t)1 << lo) - 1);
}

/* Walking down from i (exclusive) to lo: one past the highest page whose
 * bit is set (flip 0) or clear (flip ~0), or lo if there is none. */
static inline unsigned prev_bit(const uint64_t *w, unsigned i, unsigned lo, uint64_t flip)
{
	while (i > lo) {
		unsigned k = (i - 1) / 64;
		uint64_t v = (w[k] ^ flip) & range_mask(0, i - k * 64);

		if (v) {
			i = k * 64 + 64 - (unsigned)__builtin_clzll(v);
			return i > lo ? i : lo;
		}
		i = k * 64;
	}
	return lo;
}
#endif
