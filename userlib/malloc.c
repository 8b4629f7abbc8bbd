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
 * Freeing, with its exact check, is free.c.
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
#include "scan.h"
#include "secure.h"
#include "sizeclass.h"

/* ------------------------------------------------------------ allocation */

static void *small_alloc_uncached(unsigned cls);

/* An object of class cls from c's span change (mcache_alloc_slow), counted
 * with the new span's window (see nmalloc); NULL with errno ENOMEM when no
 * span could be had. */
static inline __attribute__((always_inline)) void *small_alloc_changed(struct mcache *c, unsigned cls)
{
	uintptr_t p = mcache_alloc_slow(c, cls);

	if (unlikely(!p)) {
		errno = ENOMEM;
		return NULL;
	}
	owner_add(&c->nmalloc[cls], 1 + (uint64_t)mspan_window_free(c->alloc[cls]));
	return (void *)p;
}

/* An object of class cls from c; from a borrowed cache when the thread has
 * none (after its exit: mcache.h), NULL when none could be made. */
static void *small_alloc(struct mcache *c, unsigned cls)
{
	if (unlikely(!c))
		return small_alloc_uncached(cls);

	struct mspan *s = c->alloc[cls];
	uint32_t window;
	uint64_t a;

	if (!window_open(s, &window, &a))
		return small_alloc_changed(c, cls);
	return (void *)window_take(s, window, a);
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

/* malloc_refill when s, c's current span for size, has no free word left
 * below `touched` (cls its class): the span change, or malloc_slow for
 * mh_empty_span (below). Out of line, so that the refill itself saves
 * one register (gcc 12: rbx, for the masks of the window's close and of
 * the objects past `touched`), not five. */
static __attribute__((noinline)) void *malloc_span_change(struct mcache *c, unsigned cls,
							  size_t size)
{
	if (unlikely(!cls))
		return malloc_slow(size);
	return small_alloc_changed(c, cls);
}

/* malloc with its current span's window empty: the window refilled from
 * the span's next words (mspan_refill_window), the common case of the slow
 * path, without the rest of it (the cache's creation, the mode, the
 * size's class; mcache_alloc_slow's sweeps and span changes, which
 * malloc_span_change calls: a call from here made gcc save five registers
 * on the refill's own way, 10 of its instructions). s is c's
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
	uint32_t words = s->free_words;
	uintptr_t p;

	if (unlikely(!words))
		return malloc_span_change(c, s->sizeclass, size);
	p = mspan_refill_from(s, words);
	/* The object and the new window: see nmalloc. */
	owner_add(&c->nmalloc[s->sizeclass], 1 + (uint64_t)mspan_window_free(s));
	owner_add32(&c->refills, 1);	/* mcache.h, "trimming" */
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
 * `touched` is free (Larson's spans, mostly): not mcache_alloc_slow, which
 * reaches the same refill three calls down
 * (docs/secure-log.md#row-by-row-on-the-new-host-and-the-windows-refill-2026-12-07-issue-26). */
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
			mh_fatal("double free of %#lx in realloc", (unsigned long)p);
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

/* Whether this heap is the process's malloc: in the shared object, whose
 * standard names the C library's own calls reach (scan_stacks.c). */
#ifdef MH_PRELOAD
const bool mh_process_malloc = true;
#else
const bool mh_process_malloc = false;
#endif

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
