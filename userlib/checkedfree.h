/* SPDX-License-Identifier: MIT */
/*
 * The checked free's pieces that inline into more than one entry point:
 * mh_free and the sized frees (free.c, malloc_sized.c) take the owner's
 * fast path through owned_span and local_free, and check everything else
 * through checked_span; the secure mode's free (secure.c) takes the
 * owner's check and record apart (local_free_allowed, local_free_at), to
 * check and zero the block between them. What the check promises - an
 * invalid or double free aborts with one "mheap: ..." line naming the
 * address - and how the owner's and the remote frees record an object are
 * in free.c and mspan.h; the measurements behind the fast path's shape
 * are in docs/heap.md#explicit-free and docs/heap.md#fast-paths.
 */
#ifndef MHEAP_CHECKEDFREE_H
#define MHEAP_CHECKEDFREE_H

#include "arenamap.h"
#include "mcache.h"
#include "mspan.h"

/* Abort: p is no object of the heap - freed already if it lies in free
 * pages (and is aligned), else invalid; what names the call (" in realloc"
 * or ""). */
MH_HIDDEN MH_NORETURN void heap_bad_pointer(uintptr_t p, const char *what);

/*
 * Whether p is the start of an object of s, a small span; *idx is the
 * index of the object p lies in either way. offset * divmul = idx << 32 |
 * rest; offset is a multiple of the object size exactly when rest <
 * divmul (spans are small enough for the error term never to reach it).
 */
static inline bool object_start(const struct mspan *s, uintptr_t p, uint32_t *idx)
{
	uint64_t q = (uint64_t)(p - s->base) * s->divmul;

	*idx = (uint32_t)(q >> 32);
	return (uint32_t)q < s->divmul;
}

/* Abort: the span found for p has been freed, by another thread since
 * the lookup, or is a freed large span kept for reuse (checked_span_at):
 * as in free pages (heap_bad_pointer), an aligned p was most likely
 * freed. */
static inline MH_NORETURN void abort_freed_span(uintptr_t p, const char *what)
{
	if (p & 7)
		mh_invalid_pointer(p, what, "");
	mh_freed_pointer(p, what);
}

/* s, the span of p (span_of), checked: p must be the start of an
 * allocated object. */
static inline __attribute__((always_inline)) struct mspan *checked_span_at(struct mspan *s, uintptr_t p,
									  uint32_t *idx_out, const char *what)
{
	bool start;
	uint8_t state;

	if (unlikely(!s))
		heap_bad_pointer(p, what);
	/* Read once, and atomically: a racing free of p may kill the span.
	 * An acquire: a small span's state is set last (mspan_init_small),
	 * so that what is read below is of the life that says small, or of
	 * one a remote free finds ended (free.c, remote_free). */
	state = LOAD_ACQUIRE(&s->state);
	if (likely(state == MSPAN_SMALL)) {
		/* Its struct may have started a new life over other pages
		 * since the lookup (a free racing the free of the span's last
		 * object; base and npages are kept across reuse, mspan.h):
		 * p's span died meanwhile. Else the index of a p outside
		 * would name a bitmap bit past the span's objects. */
		uintptr_t bytes = s->npages << MH_PAGE_SHIFT;

		if (unlikely(p - s->base >= bytes))
			abort_freed_span(p, what);
		start = object_start(s, p, idx_out);
		/* An index whose object would not fit: the span's unused
		 * tail, where no object ever was (the bitmap would call a
		 * multiple of the object size there freed). Only the last
		 * object's size from the end is looked at twice: an address
		 * there may lie inside the last object. */
		if (unlikely(p - s->base > bytes - s->elemsize) &&
		    ((uintptr_t)*idx_out + 1) * s->elemsize > bytes)
			mh_invalid_pointer(p, what, " (past the last object of its span)");
	} else if (state == MSPAN_LARGE) {
		start = p == s->base;
		*idx_out = 0;
	} else if (state == MSPAN_DEAD || state == MSPAN_CACHED) {
		/* Freed since we found it, by another thread; or the first or
		 * last page of a freed large span the page heap keeps (mheap.c,
		 * span cache), or any page of one a thread's cache keeps
		 * (largecache.c), where p may be anything. */
		abort_freed_span(p, what);
	} else {
		mh_invalid_pointer(p, what, " (user-arena memory)");
	}
	if (unlikely(!start))
		mh_invalid_pointer(p, what, " (inside an object)");
	return s;
}

/*
 * checked_span_at for a free that may go on to free p remotely (free.c,
 * remote_free), with *gen, s's life, read before the checks: the remote
 * free holds the span in that life or aborts, so that what the checks
 * read of it is of the life it frees into (mspan.h, "Dying spans"). Every
 * path to remote_free takes its span from here, or from the secure mode's
 * check (heap_checked_room), which reads gen the same way and hands it to
 * heap_free_small.
 */
static inline __attribute__((always_inline)) struct mspan *checked_span_life(struct mspan *s, uintptr_t p,
									    uint32_t *idx_out, uint64_t *gen,
									    const char *what)
{
	*gen = s ? LOAD_ACQUIRE(&s->gen) : 0;
	return checked_span_at(s, p, idx_out, what);
}

/* The span of p, checked as checked_span_at does. */
static inline __attribute__((always_inline)) struct mspan *checked_span(uintptr_t p, uint32_t *idx_out, const char *what)
{
	return checked_span_at(span_of(p), p, idx_out, what);
}

/* Bit n % 64 of w, and w with it set: x86's bt and bts, which take the
 * bit's number as it is (the hardware takes it modulo 64), where C's
 * shift of a one made gcc spend four instructions on the mask. */
static inline bool bit_test(uint64_t w, uint64_t n)
{
#if defined(__x86_64__)
	bool set;

	__asm__("btq %2, %1" : "=@ccc"(set) : "r"(w), "r"(n));
	return set;
#else
	return w >> (n & 63) & 1;
#endif
}
static inline uint64_t bit_set(uint64_t w, uint64_t n)
{
#if defined(__x86_64__)
	__asm__("btsq %1, %0" : "+r"(w) : "r"(n) : "cc");
	return w;
#else
	return w | (uint64_t)1 << (n & 63);
#endif
}

/* object_start for the owner's free: *q is offset * divmul, whose high
 * half is the index (the bitmap word's offset comes from it with two
 * shifts). On x86-64 in asm, with `divmul` loaded once and the start
 * test's flag branched on: gcc copied `divmul` to a second register for
 * the compare. */
static inline __attribute__((always_inline)) bool owner_object_q(const struct mspan *s, uintptr_t p,
								uint64_t *q)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	uint64_t d;
	bool start;

	__asm__("movq %[p], %[q]\n\t"
		"subq %c[bo](%[s]), %[q]\n\t"
		"movl %c[dm](%[s]), %k[d]\n\t"
		"imulq %[d], %[q]\n\t"
		"cmpl %k[d], %k[q]"
		: [q] "=&r"(*q), [d] "=&r"(d), "=@ccb"(start)
		: [s] "r"(s), [p] "r"(p), "m"(*s),
		  [bo] "i"(offsetof(struct mspan, base)), [dm] "i"(offsetof(struct mspan, divmul)));
	return start;
#else
	*q = (uint64_t)(p - s->base) * s->divmul;
	return (uint32_t)*q < s->divmul;
#endif
}

/* owner_object_q with the object's index (*idx). */
static inline __attribute__((always_inline)) bool owner_object(const struct mspan *s, uintptr_t p,
							      uint64_t *idx)
{
	uint64_t q;
	bool start = owner_object_q(s, p, &q);

	*idx = q >> 32;
	return start;
}

/*
 * Whether the owner may free p, an address in s, a small span it owns:
 * whether p is the start of an object of s (*idx) allocated now, that is
 * handed out (its alloc_bits bit, set by malloc: mspan.h) and not freed
 * since the last sweep. The check reads the three bitmap words of p's
 * object, which share a cache line, and takes one branch on them: no
 * mask from an index of objects handed out, no test of its own (a coin
 * toss where a class's current span holds much of its live objects)
 * (docs/heap-objects-log.md#the-window-in-the-bitmap-2026-12-07-issue-24).
 * Measured: docs/heap.md#explicit-free.
 */
static inline __attribute__((always_inline)) bool local_free_allowed(const struct mspan *s, uintptr_t p,
								    uint32_t *idx)
{
	uint64_t i;
	bool start = owner_object(s, p, &i);

	*idx = (uint32_t)i;
	if (unlikely(!start))
		return false;

	const struct span_bits *b = &s->bits[i / 64];

	return bit_test(b->alloc & ~(b->local | LOAD_RELAXED(&b->remote)), i);
}

/* The owner's count of a free of an object of s, recorded. */
static inline __attribute__((always_inline)) void local_free_count(struct mcache *c, struct mspan *s)
{
	owner_add(&c->nfree[s->sizeclass], 1);
	/* A span that is not current may go back on the partial list or be
	 * entirely free: notify_in counts down to the free that may do it
	 * (mspan_notify_at, set by mcache.c as the span changes list). */
	if (unlikely(--s->notify_in == 0))
		mcache_local_free_slow(c, s);
}

/* The owner's free of object idx of s, which local_free_allowed allowed:
 * plain loads and stores. */
static inline __attribute__((always_inline)) void local_free_at(struct mcache *c, struct mspan *s,
								uint32_t idx)
{
	struct span_bits *b = &s->bits[idx / 64];

	STORE_RELAXED(&b->local, bit_set(b->local, idx));
	local_free_count(c, s);
}

/* The owner's free of p, an address in s, a small span c owns. Returns
 * false, recording nothing, when p is not the start of an allocated
 * object of s. Its own check and record, not local_free_allowed's and
 * local_free_at's: freed_local is read once for both (gcc reads it again
 * after the atomic load of freed_remote). On x86-64 the check and the
 * record are one asm block: each bitmap word addressed as the span plus
 * the word's offset in the instruction itself, where gcc kept the word's
 * address in a register of its own and copied freed_local before the
 * bts, two instructions of the owner's path (measured:
 * docs/heap-objects-log.md#the-fast-paths-addressing-and-the-refill-lane-2026-12-07-issue-24).
 * The memory operand tells gcc that the asm reads and writes the span. */
static inline bool local_free(struct mcache *c, struct mspan *s, uintptr_t p)
{
	uint64_t q;

	if (unlikely(!owner_object_q(s, p, &q)))
		return false;

	uint64_t idx = q >> 32;
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	/* The C below, in asm. */
	uint64_t off = q >> 38 << 5, local, t;

	_Static_assert(sizeof(struct span_bits) == 32, "the word's offset is its index << 5");

	__asm__ goto("movq %c[lo](%[s],%[o]), %[l]\n\t"
		     "movq %c[ro](%[s],%[o]), %[t]\n\t"
		     "orq %[l], %[t]\n\t"
		     "notq %[t]\n\t"
		     "andq %c[ao](%[s],%[o]), %[t]\n\t"
		     "btq %[i], %[t]\n\t"
		     "jnc %l[bad]\n\t"
		     "btsq %[i], %[l]\n\t"
		     "movq %[l], %c[lo](%[s],%[o])"
		     : [l] "=&r"(local), [t] "=&r"(t), "+m"(*mspan_whole(s))
		     : [s] "r"(s), [o] "r"(off), [i] "r"(idx),
		       [ao] "i"(offsetof(struct mspan, bits[0].alloc)),
		       [lo] "i"(offsetof(struct mspan, bits[0].local)),
		       [ro] "i"(offsetof(struct mspan, bits[0].remote))
		     : "cc"
		     : bad);
	(void)local;
	(void)t;
#else
	struct span_bits *b = &s->bits[idx / 64];
	uint64_t local = b->local;

	if (unlikely(!bit_test(b->alloc & ~(local | LOAD_RELAXED(&b->remote)), idx)))
		return false;
	STORE_RELAXED(&b->local, bit_set(local, idx));
#endif
	local_free_count(c, s);
	return true;
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
bad:
	return false;
#endif
}

/* Whether c owns s: one compare with the field in memory. A relaxed
 * atomic load is a load of its own and a compare (gcc folds no atomic
 * access into another instruction); the aligned 8-byte read in the asm
 * is as atomic. ThreadSanitizer cannot see into asm: its build keeps the
 * atomic load (as owner_add, internal.h). */
static inline bool owned_by(const struct mspan *s, const struct mcache *c)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	bool same;

	__asm__("cmpq %2, %1" : "=@cce"(same) : "m"(s->owner), "r"(c));
	return same;
#else
	return LOAD_RELAXED(&s->owner) == c;
#endif
}

/* The span of p if c owns it, else NULL (NULL and foreign pointers find
 * no span; only small spans have owners). Every free looks its span up
 * through the cache's heap arena (mcache_span_of): a shortcut for runs of
 * frees into one span (the span of the last free, compared first) saved
 * one load in LIFO order but was a coin toss wherever consecutive frees
 * go to objects of different sizes, and its mispredictions cost more than
 * the load. Measured: docs/heap.md#explicit-free. */
static inline __attribute__((always_inline)) struct mspan *owned_span(struct mcache *c, uintptr_t p)
{
	struct mspan *s = mcache_span_of(c, p);

	if (unlikely(!s || !owned_by(s, c)))
		return NULL;
	return s;
}

#endif
