// SPDX-License-Identifier: MIT
/*
 * Object allocation inside a span and the folding of frees ("sweeping").
 * The design, the allocation invariant and the roles of the three bitmaps
 * are described in mspan.h.
 */
#include "mspan.h"
#include "secure.h"
#include "sizeclass.h"

/* Bits of word w below object index `limit`. Without branches (the
 * compiler's cmovs), for the word `touched` falls in. */
static inline uint64_t below_mask(unsigned w, uint32_t limit)
{
	uint32_t from = w * 64;
	uint32_t n = limit > from ? limit - from : 0;	/* objects of w below limit */
	uint64_t part = ((uint64_t)1 << (n & 63)) - 1;

	return n >= 64 ? ~(uint64_t)0 : part;
}

/* The bitmap words that hold objects below n: free_words' bits for them. */
static inline uint32_t words_below(uint32_t n)
{
	return ((uint32_t)1 << mspan_bitmap_words(n)) - 1;
}

uintptr_t mspan_next_free(struct mspan *s)
{
	uintptr_t p = mspan_refill_window(s);
	uint32_t step, from;

	if (p)
		return p;
	/* Ran out: closed, so that a used-up span has no window (heapcheck)
	 * and its reserved objects are not left to a sweep or the page's
	 * reach below. */
	mspan_close_window(s);
	if (s->touched == s->nelems)
		return 0;
	/* Below `touched` every object is handed out; past it only objects
	 * never handed out are left: freed ones first (mspan.h). */
	if (mspan_pending_frees(s)) {
		mspan_sweep(s);
		p = mspan_refill_window(s);
		if (p)
			return p;
	}
	/* A page of objects further, at least one; the words they are in
	 * have free objects now. */
	step = MH_PAGE_SIZE > s->elemsize ? MH_PAGE_SIZE / s->elemsize : 1;
	from = s->touched;
	/* A release: a remote freer that reads it sees the window closed
	 * (mspan_obj_handed_out). */
	STORE_RELEASE(&s->touched, s->nelems - from > step ? from + step : s->nelems);
	s->free_words |= (uint16_t)(words_below(s->touched) & ~(((uint32_t)1 << from / 64) - 1));
	if (unlikely(mh_secure))
		secure_span_reach(s, from, s->touched);
	return mspan_refill_window(s);
}

/* mspan_fold_local, inline in the sweep. The words it and the sweep look
 * at are those below `touched`: past it no object has been handed out, so
 * no bit is set in any of the three bitmaps (heapcheck checks it), and a
 * span of fresh pages that keeps being swept in place short of its end
 * (mspan_next_free) folds the words it uses, not all of them (spans of the
 * densest classes have 11-16 words). Measured:
 * docs/heap-objects-log.md#partly-touched-spans-and-the-refill-lane-2026-12-07-issue-24. */
static inline __attribute__((always_inline)) void fold_local(struct mspan *s)
{
	unsigned tw = mspan_bitmap_words(s->touched);
	/* The last such word's bits past `touched`, taken as allocated for
	 * free_words (alloc_bits has them clear). */
	uint64_t past_end = tw ? ~below_mask(tw - 1, s->touched) : 0;
	uint32_t words = 0;

	for (unsigned w = 0; w < tw; w++) {
		uint64_t bits = LOAD_RELAXED(&s->bits[w].alloc);

		bits &= ~LOAD_RELAXED(&s->bits[w].local);
		STORE_RELAXED(&s->bits[w].local, 0);
		STORE_RELAXED(&s->bits[w].alloc, bits);
		words |= (uint32_t)(bits != ~(uint64_t)0) << w;
	}
	if (tw && (LOAD_RELAXED(&s->bits[tw - 1].alloc) | past_end) == ~(uint64_t)0)
		words &= ~((uint32_t)1 << (tw - 1));
	s->free_words = (uint16_t)words;
	/* No local frees, and none to look at until the owner says so:
	 * a span becomes current only right after a sweep (or fresh), and
	 * the current span's frees need no bookkeeping. */
	s->free_notify = UINT32_MAX;
	s->notify_in = UINT32_MAX;
	/* Closed (its reserved objects folded as freed above, free_words
	 * made from the folded words); last, and sequentially consistent:
	 * a remote freer that reads an older window has its bit seen by a
	 * sweep's loads that follow (mspan.h, "Double frees"); an xchg on
	 * x86. */
	__atomic_store_n(&s->window, MSPAN_WINDOW_CLOSED, __ATOMIC_SEQ_CST);
}

void mspan_fold_local(struct mspan *s)
{
	fold_local(s);
}

void mspan_sweep(struct mspan *s)
{
	unsigned tw = mspan_bitmap_words(s->touched);	/* as fold_local's */
	int64_t folded = 0;

	/* Its `window` store and the loads below are sequentially consistent,
	 * as are a remote freer's bit and its load of `window`: each freer
	 * either sees the fold or has its bit seen here (mspan.h, "Double
	 * frees"). A bit set but not yet counted is folded too; the count then
	 * dips below zero until its add. */
	fold_local(s);
	for (unsigned w = 0; w < tw; w++) {
		uint64_t r = __atomic_load_n(&s->bits[w].remote, __ATOMIC_SEQ_CST), alloc;

		if (!r)
			continue;
		r = __atomic_exchange_n(&s->bits[w].remote, 0, __ATOMIC_SEQ_CST);
		alloc = LOAD_RELAXED(&s->bits[w].alloc);
		if (unlikely(r & ~alloc))
			mspan_double_free(s->base + (uintptr_t)(w * 64 + __builtin_ctzll(r & ~alloc)) *
					  s->elemsize);
		/* A release: the freer that reads this sees its bit taken. */
		STORE_RELEASE(&s->bits[w].alloc, alloc & ~r);
		folded += mh_popcount(r);
		s->free_words |= (uint16_t)(1u << w);	/* r's objects are free */
	}
	if (folded)
		__atomic_sub_fetch(&s->remote, folded * REMOTE_ONE, __ATOMIC_ACQ_REL);
}

void mspan_double_free(uintptr_t p)
{
	mh_fatal("double free of %#lx", (unsigned long)p);
}

void mspan_check_frees(const struct mspan *s)
{
	for (unsigned w = 0; w < mspan_bitmap_words(s->nelems); w++) {
		uint64_t live = LOAD_RELAXED(&s->bits[w].alloc);
		uint64_t bad = LOAD_RELAXED(&s->bits[w].remote) &
			       (LOAD_RELAXED(&s->bits[w].local) | ~live);

		if (unlikely(bad))
			mspan_double_free(s->base + (uintptr_t)(w * 64 + __builtin_ctzll(bad)) *
					  s->elemsize);
	}
}

void mspan_init_small(struct mspan *s, unsigned sizeclass, bool resident)
{
	const struct size_class *sc = &mh_class[sizeclass];
	unsigned nw = mspan_bitmap_words(sc->nelems);

	s->sizeclass = (uint8_t)sizeclass;
	s->elemsize = sc->size;
	s->nelems = sc->nelems;
	s->divmul = sc->divmul;
	s->needzero = 1;
	STORE_RELAXED(&s->window, MSPAN_WINDOW_CLOSED);
	STORE_RELAXED(&s->touched, resident ? sc->nelems : 0);
	STORE_RELAXED(&s->full, ~(uint64_t)0);
	s->free_notify = UINT32_MAX;
	s->notify_in = UINT32_MAX;
	/* A freer of the struct's last life may read `remote` and
	 * `outstanding` after its count let the span die (mspan.h, the
	 * struct): atomic stores, and a release first, so that one that
	 * reads a value of this life sees gen moved on (mcentral.c). The
	 * owner is read by mh_free's fast path for any pointer. */
	STORE_RELEASE(&s->remote, 0);
	STORE_RELAXED(&s->outstanding, 0);
	STORE_RELAXED(&s->owner, NULL);
	s->list = MSPAN_LIST_NONE;
	/* The stats peek at a current span's window word (mspan.h,
	 * mspan_window_free): atomic stores, and none to the last word's
	 * spare field, which lies past the struct. */
	for (unsigned w = 0; w < nw; w++) {
		STORE_RELAXED(&s->bits[w].alloc, 0);
		s->bits[w].local = 0;
		STORE_RELAXED(&s->bits[w].remote, 0);
	}
	s->free_words = (uint16_t)words_below(s->touched);
	/* Last, a release: a free whose lookup raced with this life's start
	 * reads the state first (checked_span_at), and what it reads after
	 * a small state is of this life ("Dying spans" in mspan.h). */
	STORE_RELEASE(&s->state, (uint8_t)MSPAN_SMALL);
}
