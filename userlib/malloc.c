// SPDX-License-Identifier: MIT
/*
 * The malloc-compatible API (Go's malloc.go: mallocgc and its helpers, plus
 * the explicit free Go does not have).
 *
 * Allocating a small object climbs the hierarchy of malloc.go:
 *  1. round the size to its class and take the next free object from the
 *     thread's span through the 64-bit window: a count-trailing-zeros, a
 *     shift and a store; no lock, no atomic (up to 1 KiB the thread's
 *     cache maps the size to the span directly, mcache.h);
 *  2. when the window is empty, refill it from the span's bitmap, sweep the
 *     span in place, or swap the span at the class's mcentral;
 *  3. the mcentral hands out an unowned span or asks the page heap;
 *  4. the page heap grows by whole 64 MiB arenas.
 * Objects above 32 KiB get a span of their own straight from the page heap
 * (malloc_large.c).
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
 * The secure mode (MHEAP_SECURE=1, secure.c) is a layer on all of this:
 * malloc and free (and the sized frees) jump to it or to the default
 * paths through a table set when the heap is set up (entry.h), so the
 * default fast paths test no mode; the other entry points take one branch
 * on mh_secure into it; and it comes back through heap_alloc_small,
 * heap_alloc_plain, heap_free_plain, heap_free_small and
 * heap_checked_room.
 *
 * Tiny objects: Go packs several pointer-free objects under 16 bytes into
 * one 16-byte block, freed together by the GC once all are dead. With
 * explicit free that needs a per-block count and turns every free of a tiny
 * object into a read-modify-write that can no longer detect double frees
 * exactly. The 8- and 16-byte classes already hold requests of 1-16 bytes
 * with at most 7 bytes of padding, so the only saving would be for objects
 * under 8 bytes; we do not build a tiny allocator
 * (docs/heap.md#tiny-objects).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arenamap.h"
#include "checkedfree.h"
#include "entry.h"
#include "fork.h"
#include "hooks.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "secure.h"
#include "sizeclass.h"
#include "testhooks.h"

#ifdef MH_TEST_HOOKS
void (*mh_test_remote_free_window)(uintptr_t p, int pinned);
#endif

/* ------------------------------------------------------------ allocation */

static void *small_alloc_uncached(unsigned cls);

/* An object of class cls from c; from a borrowed cache when the thread has
 * none (after its exit: mcache.h), NULL when none could be made. */
static void *small_alloc(struct mcache *c, unsigned cls)
{
	if (unlikely(!c))
		return small_alloc_uncached(cls);

	struct mspan *s = c->alloc[cls];
	uint32_t window;
	uint64_t a;
	uintptr_t p;

	if (window_open(s, &window, &a)) {
		p = window_take(s, window, a);
	} else {
		p = mcache_alloc_slow(c, cls);
		if (unlikely(!p)) {
			errno = ENOMEM;
			return NULL;
		}
		/* The object and its span's new window: see nmalloc. */
		owner_add(&c->nmalloc[cls], 1 + (uint64_t)mspan_window_free(c->alloc[cls]));
	}
	return (void *)p;
}

static __attribute__((noinline)) void *small_alloc_uncached(unsigned cls)
{
	struct mcache *c;
	void *p;

	if (!mh_tls_exited)
		return NULL;	/* mcache_create ran out of memory */
	c = mcache_borrow();
	if (!c)
		return NULL;
	p = small_alloc(c, cls);
	mcache_give_back(c);
	return p;
}

/* Everything but a small object from a non-empty window: the thread's
 * first allocation, a refill, a large object. Kept out of line so that
 * mh_malloc's fast path needs no stack frame. */
static __attribute__((noinline)) void *malloc_slow(size_t size)
{
	/* First: the thread's first allocation sets the heap up, the
	 * size-class tables included. */
	struct mcache *c = mcache_get();

	/* The heap set up just now, in the secure mode: the entry table
	 * held the default paths when this thread read it (entry.h). */
	if (unlikely(mh_secure))
		return secure_alloc(size, 1, false);
	if (size <= MH_MAX_SMALL_SIZE)
		return small_alloc(c, size_to_class(size));
	return large_alloc(size, 0, false, PLACE_LARGE);
}

/* malloc with its current span's window empty: the window refilled from
 * the span's next words (mspan_refill_window), the common case of the slow
 * path, without the rest of it (the cache's creation, the mode, the
 * size's class; mcache_alloc_slow's sweeps and span changes). s is c's
 * current span for size: mh_empty_span (class 0, never written) when the
 * thread has no cache, or has given up a class for want of memory, and
 * then malloc_slow makes the cache or tries again. A span of a class
 * means c is the thread's own cache, made after the heap was set up and
 * its mode chosen (the entry table, entry.h, is set before), so a used-up
 * span goes straight to mcache_alloc_slow with the class it names, not
 * through malloc_slow and small_alloc, which looked the cache, the mode,
 * the size's class and the window up again: about 25 instructions a span
 * change, one every 13 mallocs in one-thread `larson`. Measured:
 * docs/heap-objects-log.md#the-windows-refill-and-the-span-changes-2026-12-06-issue-24,
 * docs/heap-objects-log.md#instructions-gcc-did-not-need-to-spend-2026-12-07-issue-24. */
static __attribute__((noinline)) void *malloc_refill(struct mcache *c, struct mspan *s,
						     size_t size)
{
	uintptr_t p = mspan_refill_window(s);
	unsigned cls = s->sizeclass;

	if (unlikely(!p)) {
		if (unlikely(!cls))
			return malloc_slow(size);
		p = mcache_alloc_slow(c, cls);
		if (unlikely(!p)) {
			errno = ENOMEM;
			return NULL;
		}
		/* The object and its span's new window: see nmalloc. */
		owner_add(&c->nmalloc[cls], 1 + (uint64_t)mspan_window_free(c->alloc[cls]));
		return (void *)p;
	}
	/* The object and the new window: see nmalloc. */
	owner_add(&c->nmalloc[cls], 1 + (uint64_t)mspan_window_free(s));
	STORE_RELAXED(&c->refills, c->refills + 1);	/* mcache.h, "trimming" */
	return (void *)p;
}

/* malloc in the default mode (mh_malloc, malloc: entry.h). */
void *heap_malloc_default(size_t size)
{
	/* Before the thread's first allocation this is mh_no_cache, whose
	 * spans have no window: the slow path makes the cache (and, in the
	 * very first allocation, the size-class tables, which read as class
	 * 0 before: no window either). */
	struct mcache *c = mh_tls_fast_cache;
	struct mspan *s;
	uint32_t window;
	uint64_t a;

	if (likely(size <= MH_DIRECT_MAX))
		s = c->alloc_small[(size + MH_SMALL_SIZE_DIV - 1) / MH_SMALL_SIZE_DIV];
	else if (size <= MH_MAX_SMALL_SIZE)
		s = c->alloc[size_to_class(size)];
	else
		return malloc_slow(size);
	if (likely(window_open(s, &window, &a)))
		return (void *)window_take(s, window, a);
	return malloc_refill(c, s, size);
}

void *mh_calloc(size_t n, size_t size)
{
	size_t total;
	void *p;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	mheap_init();
	if (unlikely(mh_secure))
		return secure_alloc(total, 1, true);
	if (total > MH_MAX_SMALL_SIZE)
		return large_alloc(total, 0, true, PLACE_LARGE);
	p = heap_malloc_default(total);
	if (p)
		memset(p, 0, total);
	return p;
}

void *mh_aligned_alloc(size_t align, size_t size)
{
	if (!IS_POW2(align)) {
		errno = EINVAL;
		return NULL;
	}
	mheap_init();
	if (unlikely(mh_secure))
		return secure_alloc(size, align, false);
	if (align <= 8)
		return heap_malloc_default(size);
	if (align <= MH_PAGE_SIZE && size <= MH_MAX_SMALL_SIZE) {
		/* First: the thread's first allocation sets the size-class
		 * tables up. */
		struct mcache *c = mcache_get();

		return small_alloc(c, aligned_class(align, size));
	}
	return large_alloc(size ? size : 1, align, false, PLACE_LARGE);
}

/* heap_alloc_small with s, c's current span of class cls, out of its
 * window but with free words below `touched`: the refill from them, as
 * malloc_refill does it, else the slow path. Out of line: heap_alloc_small's
 * take needs no frame. */
static __attribute__((noinline)) void *alloc_small_refill(struct mcache *c, struct mspan *s,
							 unsigned cls)
{
	uintptr_t p = mspan_refill_window(s);

	if (unlikely(!p))
		return small_alloc(c, cls);
	/* The object and the new window: see nmalloc. */
	owner_add(&c->nmalloc[cls], 1 + (uint64_t)mspan_window_free(s));
	STORE_RELAXED(&c->refills, c->refills + 1);	/* mcache.h, "trimming" */
	return (void *)p;
}

/* The secure mode's take of a slot (secure.c): the window, else its refill
 * (alloc_small_refill), else the slow path, at once when no word below
 * `touched` is free (Larson's spans, mostly). Until 2026-12-07 an empty
 * window went straight to mcache_alloc_slow, which reaches the same refill
 * three calls down: four times the default mode's slow-path calls on the
 * server shape (docs/secure-log.md). */
void *heap_alloc_small(unsigned cls)
{
	struct mcache *c = mh_tls_cache;

	if (likely(c)) {
		struct mspan *s = c->alloc[cls];
		uint32_t window;
		uint64_t a;

		if (likely(window_open(s, &window, &a)))
			return (void *)window_take(s, window, a);
		if (s->free_words)
			return alloc_small_refill(c, s, cls);
		return small_alloc(c, cls);
	}
	return small_alloc(mcache_get(), cls);
}

void *heap_alloc_plain(size_t size, size_t align, size_t *room)
{
	struct mcache *c = mcache_get();

	if (size <= MH_MAX_SMALL_SIZE && align <= MH_PAGE_SIZE) {
		unsigned cls = align <= 8 ? size_to_class(size) : aligned_class(align, size);

		*room = mh_class[cls].size;
		return small_alloc(c, cls);
	}
	void *p = large_alloc(size, align > MH_PAGE_SIZE ? align : 0, false, PLACE_LARGE);

	/* The span's pages: a block the thread's large cache kept may be
	 * longer than the request's (largecache.c). */
	if (p)
		*room = span_of((uintptr_t)p)->npages << MH_PAGE_SHIFT;
	return p;
}

void *heap_alloc_moved(size_t size, size_t *room)
{
	*room = large_npages(size) << MH_PAGE_SHIFT;
	return large_alloc(size, 0, false, PLACE_LOW);
}

/* ------------------------------------------------------------ free */

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
 * what names the call in a report. */
static void large_free(struct mcache *c, struct mspan *s, uintptr_t p, bool keep,
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
			 * object past the bitmap (until 2026-12-07 it read
			 * there: heap_racing_frees_test). A span this
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
 * past the bitmap (until 2026-12-07 the owner's free read there, and a
 * remote free would have set a bit there). */
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

size_t mh_usable_size(const void *ptr)
{
	struct mspan *s;

	if (unlikely(mh_secure))
		return secure_usable_size(ptr);
	s = span_of((uintptr_t)ptr);

	if (!s)
		return 0;
	if (s->state == MSPAN_SMALL)
		return s->elemsize;
	if (s->state == MSPAN_LARGE)
		return (s->npages << MH_PAGE_SHIFT) - ((uintptr_t)ptr - s->base);
	return 0;
}

void *mh_realloc(void *ptr, size_t size)
{
	uintptr_t p = (uintptr_t)ptr;
	uint32_t idx;
	struct mspan *s;
	size_t old;
	void *q;

	if (unlikely(mh_secure))
		return secure_realloc(ptr, size);
	if (!ptr)
		return heap_malloc_default(size);
	if (size == 0) {	/* as glibc: free and return NULL */
		heap_free_default(ptr);
		return NULL;
	}
	s = checked_span(p, &idx, " in realloc");
	if (s->state == MSPAN_SMALL) {
		if (!mspan_obj_allocated(s, idx))
			mh_fatal("double free of %#lx in realloc (pointer already freed)",
				 (unsigned long)p);
		old = s->elemsize;
		/* Same class: nothing to do, in either direction. */
		if (size <= MH_MAX_SMALL_SIZE && size_to_class(size) == s->sizeclass)
			return ptr;
	} else {
		old = s->npages << MH_PAGE_SHIFT;
		/* A large object stays while it needs at least half its pages,
		 * and grows in place when the pages after it are free. */
		if (size > MH_MAX_SMALL_SIZE && size <= old && size > old / 2)
			return ptr;
		if (size > old && size <= PTRDIFF_MAX - MH_ARENA_SIZE &&
		    mheap_grow_span(s, large_npages(size)))
			return ptr;
	}
	q = size > MH_MAX_SMALL_SIZE ? realloc_moved_large(size, size > old) : heap_malloc_default(size);
	if (!q)
		return NULL;	/* the old block is untouched, as C requires */
	memcpy(q, ptr, old < size ? old : size);
	if (s->state == MSPAN_SMALL)
		heap_free_default(ptr);
	else	/* the page heap's: growth in place needs free runs */
		large_free(mcache_get(), s, p, false, " in realloc");
	return q;
}

/*
 * Hooks that may allocate (pthread_key_create, pthread_atfork, the
 * secure mode's backtrace) are set up by a constructor, never from inside malloc: by the time it runs the heap
 * can serve the allocations they make.
 */
__attribute__((constructor)) static void malloc_hooks_init(void)
{
	mheap_init();
	mcache_key_init();
	fork_handlers_init();
	if (mh_secure)
		secure_stacks_init();	/* loads libgcc: dlopen */
}

/* ------------------------------------------------------------ standard names */

/* malloc and free: a jump to the mode's paths (entry.h), the default
 * fast paths above or secure.c's. */
MH_ENTRY(void *, mh_malloc, (size_t size), malloc, (size))
MH_ENTRY(void, mh_free, (void *ptr), free, (ptr))

#ifdef MH_PRELOAD
/*
 * In the shared object only (built a second time with MH_PRELOAD): the
 * standard functions whose contract is exactly that of an mh_* function are
 * aliases of it, so that a preloaded program's malloc and free enter the
 * mode's paths with one jump (entry.h); a wrapper costs a jump into
 * another cache line per call. Those whose contract differs are wrappers
 * in preload*.c.
 */
#define MH_STANDARD_NAME(name, impl) \
	extern __typeof(impl) name __attribute__((alias(#impl), visibility("default")))

MH_STANDARD_NAME(malloc, mh_malloc);
MH_STANDARD_NAME(free, mh_free);
MH_STANDARD_NAME(cfree, mh_free);
MH_STANDARD_NAME(calloc, mh_calloc);
MH_STANDARD_NAME(realloc, mh_realloc);
MH_STANDARD_NAME(aligned_alloc, mh_aligned_alloc);
/* C++'s operator delete(void *) and delete[](void *); the other forms of
 * new and delete are in preload_cxx.c. */
MH_STANDARD_NAME(_ZdlPv, mh_free);
MH_STANDARD_NAME(_ZdaPv, mh_free);
#endif
