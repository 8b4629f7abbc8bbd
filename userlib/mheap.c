// SPDX-License-Identifier: MIT
/*
 * The page heap: spans are made here from runs of pages and come back here
 * when their last object is freed (see mheap.h). Growing the heap reserves
 * whole 64 MiB heap arenas through the arena map; the page allocator then
 * carves spans from them, small spans from the bottom and large objects
 * from the top ("placement" below; docs/heap.md#placement).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "entry.h"
#include "hooks.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagecache.h"
#include "secure.h"
#include "sizeclass.h"

struct mheap mh_heap = { .lock = MH_LOCK_INIT };

/* Bitmap words behind a span struct, per bucket. */
static const unsigned bucket_words[SPAN_BUCKETS] = { 0, 1, 2, 4, 8, 16 };

unsigned span_bucket(unsigned words)
{
	unsigned b = 0;

	while (bucket_words[b] < words)
		b++;
	return b;
}

void mheap_init_slow(void)
{
	mh_lock(&mh_heap.lock);
	if (!mh_heap.initialized) {
		mh_cpu_init();
		sizeclass_init();
		for (unsigned b = 0; b < SPAN_BUCKETS; b++)
			fixalloc_init(&mh_heap.spanalloc[b],
				      mspan_struct_bytes(bucket_words[b]),
				      MSPAN_KEEP,	/* mspan.h */
				      offsetof(struct mspan, bits));	/* mspan_init_small */
		/* One slab for every bucket, and the caches (mcache_borrow):
		 * a thread's metadata fills the same pages (fixalloc.h). */
		for (unsigned b = 1; b < SPAN_BUCKETS; b++)
			fixalloc_share(&mh_heap.spanalloc[b], &mh_heap.spanalloc[0]);
		for (unsigned c = 0; c < MH_NUM_CLASSES; c++)
			mh_lock_reinit(&mh_heap.central[c].lock);
		scavenge_init();
		/* Before any block exists, and before the heap is seen. */
		mh_secure = mh_option(MH_OPT_SECURE);
		if (mh_secure)
			secure_init_locked();
		mh_entries_set(mh_secure);
		STORE_RELEASE(&mh_heap.initialized, 1);
		mh_unlock(&mh_heap.lock);
		if (mh_secure)
			secure_init();
		return;
	}
	mh_unlock(&mh_heap.lock);
}

struct mspan *span_struct_alloc(unsigned words)
{
	unsigned b = span_bucket(words);
	/* From the thread's own run, apart from the structs other threads
	 * made: each thread writes its own at every malloc and free
	 * (fixalloc.h). A thread with no cache (not yet, or after its exit)
	 * carves from the heap's run. */
	struct mcache *c = mh_tls_cache;
	struct fixalloc_run *run = c ? &c->meta_run : &mh_heap.meta_run;
	struct mspan *s = fixalloc_alloc_run(&mh_heap.spanalloc[b], run);

	if (s)
		s->bucket = (uint8_t)b;
	return s;
}

void span_struct_kill(struct mspan *s)
{
	STORE_RELAXED(&s->state, (uint8_t)MSPAN_DEAD);
	STORE_RELEASE(&s->gen, s->gen + 1);
}

void span_large_birth(struct mspan *s)
{
	STORE_RELEASE(&s->gen, (s->gen + 1) | 1);
}

bool span_large_claim(struct mspan *s, uintptr_t p)
{
	uint64_t gen = LOAD_ACQUIRE(&s->gen);

	return (gen & 1) && LOAD_ACQUIRE(&s->state) == MSPAN_LARGE &&
	       LOAD_RELAXED(&s->base) == p &&
	       __atomic_compare_exchange_n(&s->gen, &gen, gen + 1, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ placement */

/*
 * Small spans and large objects are placed from opposite ends of the free
 * pages. First fit alone interleaves them: a freed large block is carved up
 * by the small spans made after it, so the next large block of that size
 * no longer fits there and takes fresh pages above everything, while the
 * carved hole stays resident and mostly idle: a program that grows a bucket
 * array by doubling, round after round, gains peak RSS every round. Taken
 * from the shortest free run that can hold it (best fit; the highest of
 * equals, from its top), a large block goes back where blocks of its size
 * were before, and the small spans stay dense at the bottom. Resident
 * pages come first, though (find_dirty, pagealloc_search.c): a place with
 * no released page, in the shortest run that has one, before any place
 * that would fault in again at about 3 us per 4 KiB; without one, the
 * place of the best-fitting run with the fewest released pages.
 * Measured: docs/heap.md#placement.
 *
 * Large objects keep out of the chunks of PA_CHUNK_PAGES pages where small
 * spans are, while they can: small spans carved again and again into the
 * places of freed blocks, with live objects scattered among them, left no
 * run long enough for the next block of the same size, which faulted in
 * fresh pages, round after round (mimalloc keeps them apart likewise, in
 * pages and segments of their own).
 *
 * Objects up to SPAN_HIGH_PAGES are recycled whole by the span cache;
 * when it has none for them they take a resident place apart from small
 * spans (PA_APART), the lowest of the best-fitting run, so that they stay
 * below the longer blocks, which take the tops of the same runs: a bucket
 * array doubled 8, 16, 32, 64 pages leaves the top of a freed pair of
 * 128 and 256 pages whole for the next 128, and the 256 its place back.
 * With no such place they go by first fit, low, among the small spans,
 * which take their pages once they are freed for good: a heap's first
 * round of growth leaves no resident place apart, and small spans would
 * otherwise take fresh pages where these blocks had been. Measured:
 * docs/heap-pages-log.md#large-blocks-apart-from-small-spans-2026-12-06-issue-24.
 * A block that realloc had to move goes low
 * (PLACE_LOW): it is likely to grow again, and first fit leaves it the
 * free pages above it that growth in place needs; at the top of a run it
 * could never grow. Arena chunks go low as well, with the rest of what
 * first fit packs. The chunks of the secure mode's guarded blocks take
 * released pages first (PLACE_RELEASED, never the span cache): their free
 * drops their pages, so on resident ones they took from the heap pages the
 * next blocks faulted in again (docs/secure.md).
 *
 * Two more things keep the bottom dense (measured:
 * docs/heap.md#placement): cached large objects go back to the bitmap as soon as first
 * fit has to go above one of them (for a large object, once they outgrow
 * the live objects of their lengths: span cache), and a thread's empty spans
 * go back to the page heap when it asks for a large block that only fresh
 * pages could hold (large_alloc in malloc_large.c).
 */
static enum pa_where place_of(uintptr_t npages, enum span_place place)
{
	if (place == PLACE_RELEASED)
		return PA_RELEASED;
	if (place != PLACE_LARGE)
		return PA_LOW;
	return npages > SPAN_HIGH_PAGES ? PA_DIRTY : PA_APART;
}

/* For PA_APART: a resident place apart from small spans, when first fit's
 * place would fault in again; 0 when first fit's will do or there is none. */
static uintptr_t apart_place(uintptr_t npages, uintptr_t align_pages)
{
	uintptr_t p = pa_find(npages, align_pages, PA_LOW);

	return p && pa_resident(p, npages) ? 0 : pa_find(npages, align_pages, PA_APART);
}

/* Where a run of npages aligned to align_pages goes; 0 if nowhere. */
static uintptr_t find_place(uintptr_t npages, uintptr_t align_pages, enum pa_where where)
{
	uintptr_t p = where == PA_APART ? apart_place(npages, align_pages) : 0;

	return p ? p : pa_find(npages, align_pages, where == PA_APART ? PA_LOW : where);
}

/* Whether a request of npages pages aligned to align_pages is one the span
 * cache keeps lists for. */
static bool span_cache_serves(uintptr_t npages, uintptr_t align_pages)
{
	return align_pages == 1 && npages <= SPAN_CACHE_PAGES;
}

bool mheap_fits_resident(uintptr_t npages, uintptr_t align_pages, enum span_place place)
{
	uintptr_t p;
	bool fits;

	mh_lock(&mh_heap.lock);
	if (span_cache_serves(npages, align_pages) &&
	    (mh_heap.span_cache[CACHE_SMALL][npages] ||
	     mh_heap.span_cache_large_held >> (npages - 1))) {
		fits = true;
	} else {
		p = find_place(npages, align_pages, place_of(npages, place));
		fits = p && pa_resident(p, npages);
	}
	mh_unlock(&mh_heap.lock);
	return fits;
}

/* ------------------------------------------------------------ spans */

/* A large object of npages pages starts or ends its life: counted in
 * large_cacheable_pages if the span cache keeps spans of its length. */
static void count_cacheable(uintptr_t npages, bool add)
{
	if (npages > SPAN_CACHE_PAGES)
		return;
	if (add)
		mh_heap.large_cacheable_pages += npages;
	else
		mh_heap.large_cacheable_pages -= npages;
}

/* A run of pages: from page cache pc (if any) when it has one that fits,
 * else from the page allocator. */
static struct pa_result take_pages(uintptr_t npages, uintptr_t align_pages,
				   enum pa_where where, struct page_cache *pc)
{
	struct pa_result r = { 0 };

	if (pc)
		r = page_cache_alloc(pc, npages);
	return r.base ? r : pa_alloc(npages, align_pages, where);
}

/* mheap_alloc_span with the heap lock held. */
static struct mspan *alloc_span_locked(uintptr_t npages, uintptr_t align_pages,
				       unsigned sizeclass, enum mspan_state state,
				       enum span_place place, struct page_cache *pc)
{
	unsigned words = sizeclass ? mspan_bitmap_words(mh_class[sizeclass].nelems) : 0;
	enum pa_where where = place_of(npages, place);
	struct pa_result r = { 0 };
	struct mspan *s = NULL;

	/* In the secure mode a small span comes back to the small list with
	 * every slot zeroed by its free (secure_slot.h); a take falls back on the
	 * other list. */
	bool zeroed = mh_secure && sizeclass && mh_heap.span_cache[CACHE_SMALL][npages];

	if (span_cache_serves(npages, align_pages) && place != PLACE_RELEASED)
		s = span_cache_take(npages, words, sizeclass ? CACHE_SMALL : CACHE_LARGE);
	if (s) {
		r.base = s->base;
		r.needzero = !zeroed;
		/* Its slots are checked as they are handed out (secure_slot.h),
		 * its bytes past the new class's last slot here. */
		if (zeroed)
			secure_span_reused(r.base, npages, sizeclass);
		goto init;
	}
	/* Spans of small objects come from the thread's page cache when it
	 * can hold them (pagecache.c); nothing aligned does. */
	if (!sizeclass || align_pages != 1)
		pc = NULL;
	if (!sizeclass && state == MSPAN_LARGE && mh_heap.span_cache_large_pages &&
	    (mh_heap.span_cache_large_pages >= npages || !span_cache_serves(npages, align_pages))) {
		/* A large object no cached span could hold, while the large
		 * lists hold as many pages (or any, for an object longer than
		 * they keep): if its place would fault in again, their pages
		 * go back first, merged, for it to take (span cache). So a
		 * bucket array doubled to 256 pages takes back the place of
		 * the last one, where the arrays of up to 64 pages made since
		 * lie cached. */
		uintptr_t p = find_place(npages, align_pages, where);

		if (!p || !pa_resident(p, npages))
			flush_span_cache(CACHE_LARGE);
	}
	if (where == PA_APART) {
		uintptr_t p = apart_place(npages, align_pages);

		if (!p || !pa_alloc_at(p, npages, &r))
			where = PA_LOW;
	}
	if (!r.base)
		r = take_pages(npages, align_pages, where, pc);
	if (!r.base) {
		mheap_flush_caches();
		r = take_pages(npages, align_pages, where, pc);
	} else if (where == PA_LOW && mh_heap.span_cache_large_pages &&
		   r.base > mh_heap.span_cache_large_low &&
		   (sizeclass || mh_heap.span_cache_large_pages > mh_heap.large_cacheable_pages)) {
		/* First fit had to go above a cached large object: its pages
		 * go back, for the next requests of any length (span cache);
		 * for a large object only once the large lists hold more
		 * than the live objects of their lengths. */
		flush_span_cache(CACHE_LARGE);
	}
	if (!r.base) {
		uintptr_t want = npages + align_pages - 1;

		if (want > (SIZE_MAX >> MH_PAGE_SHIFT) - MH_PAGES_PER_ARENA ||
		    !arenamap_grow((want + MH_PAGES_PER_ARENA - 1) / MH_PAGES_PER_ARENA))
			goto nomem;
		r = take_pages(npages, align_pages, where, pc);
		if (!r.base)
			goto nomem;
	}
	s = span_struct_alloc(words);
	if (!s) {
		pa_free(r.base, npages, false);
		goto nomem;
	}
init:
	s->base = r.base;
	s->npages = npages;
	if (sizeclass) {
		pa_mark_small(s->base, npages);
		/* The secure mode checks at each allocation that a slot is
		 * still zero: its spans start so (secure_slot.h). */
		if (unlikely(mh_secure) && r.needzero)
			memset((void *)r.base, 0, npages << MH_PAGE_SHIFT);
		mspan_init_small(s, sizeclass, r.released == 0);
	} else {
		if (state == MSPAN_LARGE)
			span_large_birth(s);
		s->needzero = r.needzero;
		s->nelems = 1;
		/* mh_free's fast path: not a small span */
		STORE_RELAXED(&s->owner, NULL);
		STORE_RELEASE(&s->state, (uint8_t)state);
	}
	if (state == MSPAN_LARGE) {
		mh_heap.large_live_bytes += npages << MH_PAGE_SHIFT;
		count_cacheable(npages, true);
		scavenge_note_growth(r.released);
	}
	arenamap_set_spans(r.base, npages, s);
	scavenge_note_alloc();
	return s;
nomem:
	errno = ENOMEM;
	return NULL;
}

/*
 * Whether a span of this state the heap could not make (heap lock not held)
 * is worth another try: arenas hold chunks nobody uses, warm, reused, ready
 * or quarantined, whose pages and address space (which RLIMIT_AS counts) can
 * serve it, and each call (hooks.h) gives back one more part of them. Not
 * for arena chunks: the arena layer takes its own back the way it wants
 * (arena_chunk.c, chunk_get). errno
 * is ENOMEM when not.
 */
static bool arenas_gave_back(enum mspan_state state)
{
	if (state != MSPAN_CHUNK && heap_hooks()->give_back())
		return true;
	errno = ENOMEM;
	return false;
}

struct mspan *mheap_alloc_span(uintptr_t npages, uintptr_t align_pages,
			       unsigned sizeclass, enum mspan_state state,
			       enum span_place place, struct page_cache *pc)
{
	struct mspan *s;
	uintptr_t grown;

	for (;;) {
		mh_lock(&mh_heap.lock);
		s = alloc_span_locked(npages, align_pages, sizeclass, state, place, pc);
		grown = scavenge_take_growth();
		mh_unlock(&mh_heap.lock);
		scavenge_grown(grown);
		if (s || !arenas_gave_back(state))
			return s;
	}
}

/* Whether the span cache holds at least k spans of small objects of
 * length npages. */
static bool span_cache_holds(uintptr_t npages, unsigned k)
{
	struct mspan *s = mh_heap.span_cache[CACHE_SMALL][npages];

	for (; s && k; s = s->chain)
		k--;
	return k == 0;
}

struct mspan *mheap_alloc_small_spans(unsigned sizeclass, unsigned n, struct page_cache *pc)
{
	uintptr_t npages = mh_class[sizeclass].npages;
	struct mspan *first, *s;

	mh_lock(&mh_heap.lock);
	while (!(first = alloc_span_locked(npages, 1, sizeclass, MSPAN_SMALL, PLACE_LOW, pc))) {
		mh_unlock(&mh_heap.lock);
		if (!arenas_gave_back(MSPAN_SMALL))
			return NULL;
		mh_lock(&mh_heap.lock);
	}
	/* The rest only from spans of small objects cached for this length
	 * (span cache): pages just freed, idle either way. Fresh pages held
	 * by a thread that may never use them would push other spans onto
	 * pages never touched before (random sizes up to 32 KiB: +8% peak
	 * RSS with one thread, +22% with two). */
	if (n > 1 && !span_cache_holds(npages, SPARES_CACHED_MIN * n))
		n = 1;
	for (s = first; s && --n && mh_heap.span_cache[CACHE_SMALL][npages]; s = s->chain)
		s->chain = alloc_span_locked(npages, 1, sizeclass, MSPAN_SMALL, PLACE_LOW, NULL);
	if (s)
		s->chain = NULL;
	mh_unlock(&mh_heap.lock);
	return first;
}

bool mheap_grow_span(struct mspan *s, uintptr_t npages)
{
	struct pa_result r;
	uintptr_t extra = npages - s->npages;
	uintptr_t end = mspan_limit(s);
	bool ok;

	mh_lock(&mh_heap.lock);
	ok = pa_alloc_at(end, extra, &r);
	if (!ok && mh_heap.span_cache_pages) {
		/* Not the page caches: a large span is seldom next to a
		 * chunk, and a realloc loop would empty them all again and
		 * again. */
		flush_span_caches();
		ok = pa_alloc_at(end, extra, &r);
	}
	if (ok) {
		arenamap_set_spans(end, extra, s);
		s->npages = npages;
		s->needzero |= r.needzero;
		mh_heap.large_live_bytes += extra << MH_PAGE_SHIFT;
		count_cacheable(s->npages - extra, false);
		count_cacheable(s->npages, true);
		scavenge_note_alloc();
	}
	mh_unlock(&mh_heap.lock);
	return ok;
}

void mheap_free_span(struct mspan *s)
{
	mheap_free_span_released(s, false);
}

/* Whether s, a small span whose every object is free, may die (its
 * struct be reused): no remote freer holds it. Either way it is dead from
 * here on to the freers to come: its state and then gen moved on, then
 * REMOTE_DEAD set by an OR that returns the pins; a freer whose pin comes
 * after the OR reads the new gen (mspan.h, "Dying spans"). The caller
 * kills the struct again on its way (gen moves on twice: harmless, only
 * a large span's gen has a meaning of its own, span_large_birth). */
static bool small_span_dies(struct mspan *s)
{
	span_struct_kill(s);
	return !(__atomic_fetch_or(&s->remote, REMOTE_DEAD, __ATOMIC_SEQ_CST) & REMOTE_PINS);
}

/* mheap_free_span_released with the heap lock held, but for the
 * scavenger's look, which the caller makes. */
static void free_span_locked(struct mspan *s, bool released)
{
	/* A large object, freed now or kept by a thread's cache until now. */
	bool large = s->state == MSPAN_LARGE || s->state == MSPAN_CACHED;
	bool small = s->state == MSPAN_SMALL;
	/* A small span a remote freer holds: that freer frees an object
	 * already free and aborts, and the struct it writes to must not
	 * start a new life meanwhile. It is never reused; its pages are
	 * (mspan.h, "Dying spans"). */
	bool held = small && unlikely(!small_span_dies(s));

	if (large) {
		mh_heap.large_live_bytes -= s->npages << MH_PAGE_SHIFT;
		count_cacheable(s->npages, false);
	}
	arenamap_set_spans(s->base, s->npages, NULL);
	if (unlikely(held)) {
		pa_free(s->base, s->npages, released);
	} else if (!released && s->npages <= SPAN_CACHE_PAGES) {
		/* The secure mode takes small spans from the small list
		 * unzeroed (alloc_span_locked): only theirs go there. */
		span_cache_put(s, large || (mh_secure && !small) ? CACHE_LARGE : CACHE_SMALL);
	} else {
		pa_free(s->base, s->npages, released);
		span_struct_kill(s);
		fixalloc_free(&mh_heap.spanalloc[s->bucket], s);
	}
}

void mheap_free_span_released(struct mspan *s, bool released)
{
	uintptr_t scav;

	mh_lock(&mh_heap.lock);
	free_span_locked(s, released);
	scav = scavenge_after_free();
	mh_unlock(&mh_heap.lock);
	scavenge_after_unlock(scav);
}

void mheap_free_spans(struct mspan *chain)
{
	struct mspan *next;
	uintptr_t scav;

	if (!chain)
		return;
	mh_lock(&mh_heap.lock);
	for (; chain; chain = next) {
		next = chain->chain;
		free_span_locked(chain, false);
	}
	scav = scavenge_after_free();
	mh_unlock(&mh_heap.lock);
	scavenge_after_unlock(scav);
}

void mheap_lock_all(void)
{
	for (unsigned c = 0; c < MH_NUM_CLASSES; c++)
		mh_lock(&mh_heap.central[c].lock);
	mh_lock(&mh_heap.lock);
}

void mheap_unlock_all(void)
{
	mh_unlock(&mh_heap.lock);
	for (unsigned c = MH_NUM_CLASSES; c-- > 0;)
		mh_unlock(&mh_heap.central[c].lock);
}
