// SPDX-License-Identifier: MIT
/*
 * The explicit free Go does not have: free and its exact check, the
 * owner's and the remote free, and the secure mode's way back into them.
 *
 * Freeing finds the span in O(1) through the arena map (through the heap
 * arena of the thread's last free, which nearly always holds it). The
 * owner's free is a plain bit set in freed_local; anyone else's is an atomic
 * bit set plus an atomic add on the span (mspan.h): no global lock either
 * way. A thread whose cache has gone at its exit frees the remote way and
 * allocates through a borrowed cache (mcache.h, "thread exit"). Everything
 * a free is given is checked first - that the pointer is in the heap, at
 * the start of an object, and allocated now - and a violation aborts with
 * one "mheap: ..." line naming the address.
 *
 * The owner's fast path and the check are inline helpers shared with the
 * sized frees (checkedfree.h, malloc_sized.c).
 *
 * Every path that may free into a span another thread owns reads the
 * span's life (gen) before its checks and holds the span across its
 * writes (mspan.h, "Dying spans"), so a double free racing the span's
 * death aborts instead of freeing into the struct's next life.
 */
#include <stdio.h>
#include <string.h>

#include "arenamap.h"
#include "checkedfree.h"
#include "entry.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "secure.h"
#include "sizeclass.h"
#include "testhooks.h"

#ifdef MH_TEST_HOOKS
void (*mh_test_remote_free_window)(uintptr_t p, int pinned);
#endif

void heap_bad_pointer(uintptr_t p, const char *what)
{
	struct heap_arena *ha = arena_of(p);
	struct mspan *s = ha ? LOAD_RELAXED(&ha->spans[arena_page(ha, p)]) : NULL;

	/* A pointer into free pages of the heap was allocated once: the most
	 * likely story is that it has been freed already. Free pages include
	 * the edges of a cached large span, which map to its dead struct
	 * (spancache.c): a free racing another of the same block may
	 * find the page without a span, and then, here, with the dead one. */
	if (ha && (!s || LOAD_RELAXED(&s->state) == MSPAN_DEAD) && (p & 7) == 0)
		mh_freed_pointer(p, what);
	mh_invalid_pointer(p, what, "");
}

/* heap_checked_room for everything but an allocated object of a small
 * span (s, p's span or NULL): out of line, so that the common case saves
 * and restores no registers. */
static __attribute__((noinline)) size_t checked_room_slow(struct mspan *s, uintptr_t p,
							  struct mspan **small,
							  struct arena_chunk **guarded,
							  uint64_t *gen, const char *what)
{
	uint32_t idx;

	if (s && LOAD_RELAXED(&s->state) == MSPAN_CHUNK) {
		struct arena_chunk *c = LOAD_ACQUIRE(&s->chunk_data);

		if (c && guarded_holds_block(c)) {
			*guarded = c;
			return 0;
		}
	}
	*guarded = NULL;
	s = checked_span_life(s, p, &idx, gen, what);

	*small = s->state == MSPAN_SMALL ? s : NULL;
	if (!*small)
		return s->npages << MH_PAGE_SHIFT;
	if (!mspan_obj_allocated(s, idx))
		mh_freed_pointer(p, what);
	return s->elemsize;
}

size_t heap_checked_room(uintptr_t p, struct mspan **small, struct arena_chunk **guarded,
			 uint64_t *gen, const char *what)
{
	struct mcache *c = mh_tls_cache;
	/* Through the thread's heap arena, as free's fast path looks. */
	struct mspan *s = c ? mcache_span_of(c, p) : span_of(p);
	/* The life the checks below are of (checked_span_life): the free
	 * that follows (heap_free_small) frees into it or aborts. */
	uint64_t life = s ? LOAD_ACQUIRE(&s->gen) : 0;
	uint32_t idx;

	if (likely(s && LOAD_ACQUIRE(&s->state) == MSPAN_SMALL && object_start(s, p, &idx) &&
		   mspan_obj_allocated(s, idx))) {
		*guarded = NULL;
		*small = s;
		*gen = life;
		return s->elemsize;
	}
	return checked_room_slow(s, p, small, guarded, gen, what);
}

/*
 * A free into a span this thread does not own (mspan.h). gen is the
 * span's life as the caller read it before its checks of p
 * (checked_span_life, or heap_checked_room for heap_free_small): everything they
 * read of the span is of that life if gen has not moved on by the time
 * this free holds the span (mspan.h, "Dying spans"). The free holds it
 * with a pin in `remote`, before its first write to the span: a span
 * whose struct would die with a pin on keeps the struct out of reuse, and
 * a pin that finds the span dead or a later life is a stale double free,
 * which aborts. The count, which takes the pin off, is the step that may
 * let the span die: once it is added, the owner or another freer may find
 * every object free and give the span back, and its struct may start a
 * new life. So everything of the span's that is read after it is a field
 * kept across reuse and read as a snapshot judged by gen (mspan.h, the
 * struct): the owned flag comes with the count itself, and `outstanding`,
 * written before the owner's let-go that the count synchronises with.
 * What is checked is checked before the count, while the pin keeps the
 * span alive. The bit's set and the check's load of `window` are
 * sequentially consistent, which orders the check against the owner's
 * sweeps ("Double frees"): three locked instructions per remote free, the
 * pin, the bit and the count. A double free found here is reported
 * naming the call what (" in free_sized", ..., or "").
 */
static inline __attribute__((always_inline)) void remote_free(struct mspan *s, uint32_t idx,
						       uintptr_t p, uint64_t gen,
						       const char *what)
{
	unsigned cls = s->sizeclass;
	unsigned w = idx / 64;
	uint64_t bit = (uint64_t)1 << (idx % 64);

	test_hook_remote_free_window(p, 0);
	/* The pin, then the life: a death that came before the pin moved
	 * gen on before its OR, which the pin reads after (mspan.h, "Dying
	 * spans"). */
	(void)__atomic_fetch_add(&s->remote, REMOTE_PIN, __ATOMIC_SEQ_CST);
	if (unlikely(LOAD_ACQUIRE(&s->gen) != gen))
		mh_freed_pointer(p, what);
	test_hook_remote_free_window(p, 1);
	/* Set the bit first, count it last: whoever sees the count reach
	 * `outstanding` knows every bit is already in place. */
	if (__atomic_fetch_or(&s->bits[w].remote, bit, __ATOMIC_SEQ_CST) & bit)
		mh_freed_pointer(p, what);
	/* A sweep that took the bit meanwhile has judged it. */
	if (!mspan_obj_handed_out(s, idx) && (LOAD_ACQUIRE(&s->bits[w].remote) & bit))
		mh_freed_pointer(p, what);
	/* The hint goes to whoever owns the span now (it may change before
	 * the count: a hint to the wrong cache costs one look). */
	struct mcache *owner = LOAD_RELAXED(&s->owner);
	int64_t old = __atomic_fetch_add(&s->remote, REMOTE_ONE - REMOTE_PIN, __ATOMIC_ACQ_REL);

	/* The span died while pinned: every object of it was free, this one
	 * too (its struct is kept out of reuse, mheap.c). */
	if (unlikely(old & REMOTE_DEAD))
		mh_freed_pointer(p, what);
	if (old & REMOTE_OWNED) {
		/* The owner folds it in at its next sweep; the first pending
		 * free tells it to look. */
		if ((old >> REMOTE_SHIFT) <= 0 && owner)
			__atomic_fetch_add(&owner->remote_hint[cls], 1, __ATOMIC_RELAXED);
		return;
	}
	int64_t pending = (old >> REMOTE_SHIFT) + 1;
	if (pending == 1 || pending == (int64_t)LOAD_RELAXED(&s->outstanding))
		mcentral_remote_event(s, cls, gen);
}

/* A free outside the fast path: in the thread's cache, or, when it has
 * none (after its exit: mcache.h), with the dead caches' counters. */
static void count_free(struct mcache *c, unsigned cls)
{
	if (c)
		owner_add(&c->nfree[cls], 1);
	else
		mcache_count_uncached(mh_dead_nfree, cls);
}

/* A free of object idx (at p) of s, a small span c (the thread's cache or
 * NULL) does not own, checked in s's life gen (remote_free). */
static inline __attribute__((always_inline)) void small_free_remote(struct mcache *c, struct mspan *s,
							     uint32_t idx, uintptr_t p, uint64_t gen,
							     const char *what)
{
	/* The class is read first: the free may end the span's life. */
	unsigned cls = s->sizeclass;

	remote_free(s, idx, p, gen, what);
	count_free(c, cls);
}

/* The free of p, a large object of s, checked (checked_span), by the
 * thread of cache c (or none): into c's large blocks if keep
 * (largecache.c), else, or if it does not fit there, to the page heap.
 * what names the call in a report. Also realloc's (malloc.c). */
void large_free(struct mcache *c, struct mspan *s, uintptr_t p, bool keep,
		       const char *what)
{
	/* Another thread may be freeing p too: one of the two claims it. */
	if (!span_large_claim(s, p))
		mh_freed_pointer(p, what);
	if (!keep || !c || !mcache_large_put(c, s))
		mheap_free_span(s);
	count_free(c, 0);
}

/* The free of p, object idx of s, which checked_span_life found and
 * checked in s's life gen, as free_checked makes it, what naming the call
 * in a report (a free racing another of p, which both checks passed). */
static inline __attribute__((always_inline)) void free_span_in(struct mspan *s, uint32_t idx,
								uintptr_t p, uint64_t gen,
								const char *what)
{
	struct mcache *c = mcache_get();

	if (likely(LOAD_RELAXED(&s->state) == MSPAN_SMALL)) {
		if (likely(c && LOAD_RELAXED(&s->owner) == c)) {
			/* The thread's first free made the cache just now;
			 * else the fast path found p bad: checked_span
			 * vetted the offset, so it is freed already. Or a
			 * racing free of p ended s since the check, and its
			 * struct, now this thread's, is in a later life
			 * (gen moved on: every object of the old one was
			 * free, p too) and may serve other pages: p must
			 * also lie among its objects before local_free's
			 * divmul test, which alone takes a p outside for an
			 * object past the bitmap (heap_racing_frees_test).
			 * A span this
			 * thread owns cannot die under it, so the life
			 * read here stays. */
			if (unlikely(LOAD_ACQUIRE(&s->gen) != gen ||
				     p - s->base >= (uintptr_t)s->nelems * s->elemsize ||
				     !local_free(c, s, p)))
				mh_freed_pointer(p, what);
			return;
		}
		small_free_remote(c, s, idx, p, gen, what);
		return;
	}
	large_free(c, s, p, true, what);
}

/* Everything the fast path of mh_free does not take: NULL, a thread's
 * first free, remote and large frees, frees after the thread's exit, and
 * every bad pointer. found: p's span as the fast path found it through
 * the thread's heap arena (mcache_span_of), or NULL, and then the arena
 * map is walked here: a remote free does not walk it a second time
 * (docs/heap-objects-log.md#larson-and-the-two-thread-rows-again-2026-12-07-issue-24). */
static inline __attribute__((always_inline)) void free_checked_in(uintptr_t p, struct mspan *found,
								   bool forward)
{
	uint32_t idx;
	uint64_t gen;
	struct mspan *s;

	if (!p)
		return;
	/* heap_free_default's (forward) in the secure mode: the caller read
	 * the entry table's free before the heap was set up (entry.h), and p
	 * is the secure layer's. Such a thread has no cache (mh_no_cache:
	 * its lookup found no span), so only found NULL is tested. */
	if (forward && unlikely(!found && mh_secure)) {
		secure_free((void *)p);
		return;
	}
	s = checked_span_life(found ? found : span_of(p), p, &idx, &gen, "");
	free_span_in(s, idx, p, gen, "");
}

/* The checked free, for the secure layer's calls back (heap_free_plain):
 * never forwarded to it. */
static __attribute__((noinline)) void free_checked(uintptr_t p, struct mspan *found)
{
	free_checked_in(p, found, false);
}

/* heap_free_default's slow path: free_checked, but in the secure mode a
 * free that found no span goes to secure_free (free_checked_in). The test
 * is on the slow path only, past free(NULL): the owner's fast path and
 * the remote and large frees, which pass the span they found, do not
 * take it. */
static __attribute__((noinline)) void free_default_slow(uintptr_t p, struct mspan *found)
{
	free_checked_in(p, found, true);
}

/* The free of p through c, a cache or mh_no_cache (which owns nothing):
 * the owner's free here, anything else through slow (free_checked), given
 * the span the lookup found when it is not c's (a remote or large free,
 * or none: no second lookup) and NULL when p is no object the owner may
 * free (slow looks again and names the error). */
static inline __attribute__((always_inline)) void free_through(struct mcache *c, uintptr_t p,
							       void (*slow)(uintptr_t, struct mspan *))
{
	struct mspan *s = mcache_span_of(c, p);

	if (unlikely(!s)) {
		slow(p, NULL);
		return;
	}
	if (unlikely(!owned_by(s, c))) {
		slow(p, s);
		return;
	}
	if (likely(local_free(c, s, p)))
		return;
	slow(p, NULL);
}

/* free in the default mode (mh_free, free: entry.h). */
void heap_free_default(void *ptr)
{
	free_through(mh_tls_fast_cache, (uintptr_t)ptr, free_default_slow);
}

/* The default mode's free, for the secure mode's layer: the fast path
 * through the thread's cache, which the secure mode keeps. */
void heap_free_plain(void *ptr)
{
	struct mcache *c = mh_tls_cache;

	if (likely(c))
		free_through(c, (uintptr_t)ptr, free_checked);
	else
		free_checked((uintptr_t)ptr, NULL);
}

/* The default mode's free of a large block realloc moved away from (the
 * secure mode's middle blocks, after their delay): to the page heap, not
 * the thread's large cache, as mh_realloc frees one: growth in place needs
 * free runs there. */
void heap_free_moved(void *ptr)
{
	uint32_t idx;
	struct mspan *s = checked_span_at(span_of((uintptr_t)ptr), (uintptr_t)ptr, &idx, "");

	large_free(mcache_get(), s, (uintptr_t)ptr, false, "");
}

/* The default mode's free of p, an allocated object of s, a small span
 * (heap_checked_room found it), for the secure mode's layer: the owner's
 * free or the remote one, with no second lookup. What a racing free of p
 * may have changed since is checked again, as free_checked checks it: the
 * span's state, that p still lies in it and starts one of its objects
 * (else checked_span_life names the error), the object's bits (local_free,
 * remote_free); a report names the call what. The span may have died and
 * its struct serve other pages: the divmul test alone takes a p outside
 * them, a multiple of a power-of-two size away, for an object at an index
 * past the bitmap, where the owner's free would read and a remote free
 * set a bit. */
void heap_free_small(struct mspan *s, void *ptr, uint64_t gen, const char *what)
{
	struct mcache *c = mcache_get();
	uintptr_t p = (uintptr_t)ptr;
	uint32_t idx;

	/* Its struct may have started a new life over other pages since
	 * the lookup, as checked_span_at says. */
	if (unlikely(LOAD_ACQUIRE(&s->state) != MSPAN_SMALL ||
		     p - s->base >= s->npages << MH_PAGE_SHIFT || !object_start(s, p, &idx) ||
		     idx >= s->nelems)) {
		s = checked_span_life(span_of(p), p, &idx, &gen, what);
		free_span_in(s, idx, p, gen, what);
		return;
	}
	/* A span this thread owns cannot die under it: if it is still in
	 * the life heap_checked_room checked, p is one of its objects; if it
	 * died since (and is this thread's again), every object of that
	 * life was free, p too. */
	if (c && LOAD_RELAXED(&s->owner) == c) {
		if (unlikely(LOAD_ACQUIRE(&s->gen) != gen || !local_free(c, s, p)))
			mh_freed_pointer(p, what);
		return;
	}
	small_free_remote(c, s, idx, p, gen, what);
}

/* The sized frees' (malloc_sized.c): free_checked's free of the span it
 * checked in its life gen (checked_span_life), naming the call. */
void heap_free_span(struct mspan *s, uint32_t idx, void *ptr, uint64_t gen, const char *what)
{
	free_span_in(s, idx, (uintptr_t)ptr, gen, what);
}

