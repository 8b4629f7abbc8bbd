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

#include "hooks.h"
#include "mheap_impl.h"
#include "pagecache.h"
#include "secure.h"
#include "sizeclass.h"

struct mheap mh_heap = { .lock = MH_LOCK_INIT };

/* Bitmap words behind a span struct, per bucket. */
static const unsigned bucket_words[SPAN_BUCKETS] = { 0, 1, 2, 4, 8, 16 };

static unsigned span_bucket(unsigned words)
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
		sizeclass_init();
		for (unsigned b = 0; b < SPAN_BUCKETS; b++)
			fixalloc_init(&mh_heap.spanalloc[b],
				      sizeof(struct mspan) + bucket_words[b] * sizeof(struct span_bits),
				      MSPAN_KEEP);	/* mspan.h */
		for (unsigned c = 0; c < MH_NUM_CLASSES; c++)
			mh_lock_reinit(&mh_heap.central[c].lock);
		scavenge_init();
		/* Before any block exists, and before the heap is seen. */
		mh_secure = mh_option(MH_OPT_SECURE);
		if (mh_secure)
			secure_init_locked();
		STORE_RELEASE(&mh_heap.initialized, 1);
		mh_unlock(&mh_heap.lock);
		if (mh_secure)
			secure_init();
		return;
	}
	mh_unlock(&mh_heap.lock);
}

static struct mspan *span_struct_alloc(unsigned words)
{
	unsigned b = span_bucket(words);
	struct mspan *s = fixalloc_alloc(&mh_heap.spanalloc[b]);

	if (s)
		s->bucket = (uint8_t)b;
	return s;
}

/* The struct dies: a freer that still holds this pointer compares gen, or
 * finds the state dead (free_checked in malloc.c reads it without a lock). */
static void span_struct_kill(struct mspan *s)
{
	STORE_RELAXED(&s->state, (uint8_t)MSPAN_DEAD);
	STORE_RELEASE(&s->gen, s->gen + 1);
}

/* ------------------------------------------------------------ span cache */

/*
 * Spans come and go in bursts of one length: a thread frees a batch of
 * objects, the spans that empties come back here, and moments later the
 * thread asks for as many again. A round trip through the page allocator
 * costs a bitmap update and a summary recomputation under the heap lock,
 * which threads churning objects of one size pay again and again. So a
 * freed span of up to SPAN_CACHE_PAGES pages keeps its pages
 * and its (dead) struct on a LIFO list per length, and the next request of
 * that length takes it in O(1).
 *
 * Spans of small objects and large objects are cached apart. Each list
 * serves any request of its length. Large objects come in any length, so
 * one that finds no span of its own length takes the front of the
 * shortest longer large span, and the rest stays cached as a span of its
 * own (a bit per length, span_cache_large_held, finds it in O(1)): a
 * program churning blocks of random sizes is served from what it freed.
 * A large span joins the cached large spans right below and above it on
 * the way in, as long as the whole stays within SPAN_CACHE_PAGES (as the
 * page allocator's bitmap would merge them, but in O(1): the first and
 * last pages of a cached large span map to its dead struct, where its
 * neighbours look): without that the splits' remainders piled up as short
 * pieces no request could use, and requests missed the cache while its
 * pages lay there side by side. When a first-fit search has to go above a cached large object, the
 * large lists go back to the bitmap, where their pages merge: for a small
 * span always (a freed bucket array would wait there for another of its
 * length while small spans took fresh pages above it), for a large object
 * only while they hold more pages than the live large objects of their
 * lengths (large_cacheable_pages: the churn's working set, about what a
 * cache of its frees needs; flushed at every miss, the lists were empty
 * whenever a request came), and before the search for one that no cached
 * span can hold, while they hold as many pages, if its place would fault
 * in again: merged, their resident pages serve it instead (else each such
 * miss took released pages, and the scavenger paid for that growth by
 * releasing as many elsewhere). The small lists are not flushed: programs
 * churning many sizes thrive on their exact fits. A flush frees its spans
 * into the bitmap as one batch (pa_free_batch). Measured:
 * docs/heap.md#span-cache.
 *
 * Cached pages count as free in pa_free_pages, so the stats and the
 * scavenger's policy see them as idle memory, but the page allocator's
 * bitmap still marks them in use: whatever reads the bitmap for free pages
 * (the scavenger, a search that failed, growth in place) first flushes the
 * cache into it. The struct dies on the way in (gen moves on; no page maps
 * to it but a large span's first and last, and a free that finds a dead
 * struct there reports a double free, or an invalid one for an unaligned
 * pointer), so late and double frees are caught as before.
 */
/* The list of kind and length npages: push s, pop its head. The lists
 * are linked both ways (chain is link.next; link.prev the span before, or
 * NULL at the head), so that a span can leave its list from anywhere
 * (span_cache_merge). */
static void span_list_push(struct mspan *s, enum span_cache_kind kind)
{
	struct mspan *next = mh_heap.span_cache[kind][s->npages];

	s->chain = next;
	s->link.prev = NULL;
	if (next)
		next->link.prev = &s->link;
	mh_heap.span_cache[kind][s->npages] = s;
	if (kind == CACHE_LARGE)
		mh_heap.span_cache_large_held |= (uint64_t)1 << (s->npages - 1);
}

static struct mspan *span_list_pop(uintptr_t npages, enum span_cache_kind kind)
{
	struct mspan *s = mh_heap.span_cache[kind][npages];

	mh_heap.span_cache[kind][npages] = s->chain;
	if (s->chain)
		s->chain->link.prev = NULL;
	if (kind == CACHE_LARGE && !s->chain)
		mh_heap.span_cache_large_held &= ~((uint64_t)1 << (npages - 1));
	return s;
}

/* s, a cached large span, off its list wherever it is on it. */
static void span_list_unlink(struct mspan *s)
{
	struct mspan *prev = list_entry(s->link.prev, struct mspan, link);

	if (prev)
		prev->chain = s->chain;
	else
		mh_heap.span_cache[CACHE_LARGE][s->npages] = s->chain;
	if (s->chain)
		s->chain->link.prev = s->link.prev;
	if (!mh_heap.span_cache[CACHE_LARGE][s->npages])
		mh_heap.span_cache_large_held &= ~((uint64_t)1 << (s->npages - 1));
}

/* The first and last pages of s, a span of the large lists, map to v: s
 * itself while it is cached (its neighbours find it), NULL when it leaves
 * the lists for the page allocator. Its other pages map to nothing. */
static void span_cache_edges(const struct mspan *s, struct mspan *v)
{
	arenamap_set_span(s->base, v);
	arenamap_set_span(mspan_limit(s) - MH_PAGE_SIZE, v);
}

/* The cached large span whose first or last page is at p, if any: the
 * arena map points at a dead struct there only for those (span_cache_edges). */
static struct mspan *span_cache_large_at(uintptr_t p)
{
	struct mspan *n = span_of(p);

	return n && n->state == MSPAN_DEAD ? n : NULL;
}

/* s, a large span on its way into the cache: merged with the cached large
 * spans right below and above it while the whole stays within
 * SPAN_CACHE_PAGES. Returns the span that holds it now: s, or the one
 * below, which takes s's pages in (the other struct goes; the counts of
 * cached pages do not change). s's base never moves: a racing double
 * free of it may still be reading it (checked_span_at), and must find it
 * the object it frees or no object at all. */
static struct mspan *span_cache_merge(struct mspan *s)
{
	struct mspan *n = span_cache_large_at(s->base - 1);

	if (n && n->npages + s->npages <= SPAN_CACHE_PAGES) {
		span_list_unlink(n);
		span_cache_edges(n, NULL);
		n->npages += s->npages;
		fixalloc_free(&mh_heap.spanalloc[s->bucket], s);
		s = n;
	}
	n = span_cache_large_at(mspan_limit(s));
	if (n && n->npages + s->npages <= SPAN_CACHE_PAGES) {
		span_list_unlink(n);
		span_cache_edges(n, NULL);
		s->npages += n->npages;
		fixalloc_free(&mh_heap.spanalloc[n->bucket], n);
	}
	span_cache_edges(s, s);
	return s;
}

static void span_cache_put(struct mspan *s, enum span_cache_kind kind)
{
	span_struct_kill(s);
	mh_heap.span_cache_pages += s->npages;
	pa_free_pages += s->npages;
	if (kind == CACHE_LARGE) {
		if (!mh_heap.span_cache_large_pages || s->base < mh_heap.span_cache_large_low)
			mh_heap.span_cache_large_low = s->base;
		mh_heap.span_cache_large_pages += s->npages;
		s = span_cache_merge(s);
	}
	span_list_push(s, kind);
}

/* Pages [s->base, s->base + npages) of a span of the large lists, just
 * taken off them: the rest, from its end on, goes back as a span of its own
 * (a new dead struct). False, s back on its list, without a struct. */
static bool span_cache_split(struct mspan *s, uintptr_t npages)
{
	struct mspan *rest = span_struct_alloc(0);

	if (!rest) {
		span_list_push(s, CACHE_LARGE);
		return false;
	}
	rest->base = s->base + (npages << MH_PAGE_SHIFT);
	rest->npages = s->npages - npages;
	span_struct_kill(rest);
	span_cache_edges(rest, rest);
	span_list_push(rest, CACHE_LARGE);
	s->npages = npages;
	return true;
}

/* A cached span of npages pages with room for `words` bitmap words, from
 * the list of the kind asked for if it has one; for a large object or a
 * chunk (no words), the front of the shortest longer large one else. */
static struct mspan *span_cache_take(uintptr_t npages, unsigned words,
				     enum span_cache_kind kind)
{
	struct mspan *s;

	if (!mh_heap.span_cache[kind][npages])
		kind = kind == CACHE_SMALL ? CACHE_LARGE : CACHE_SMALL;
	if (mh_heap.span_cache[kind][npages]) {
		s = span_list_pop(npages, kind);
	} else {
		uint64_t longer = npages < SPAN_CACHE_PAGES ? mh_heap.span_cache_large_held >> npages : 0;

		if (words || !longer)
			return NULL;
		kind = CACHE_LARGE;
		s = span_list_pop(npages + 1 + (uintptr_t)__builtin_ctzll(longer), kind);
		if (!span_cache_split(s, npages))
			return NULL;
	}
	if (s->bucket != span_bucket(words)) {
		/* Another class's struct: move the pages to one that fits. */
		struct mspan *n = span_struct_alloc(words);

		if (!n) {
			span_list_push(s, kind);
			return NULL;
		}
		n->base = s->base;
		fixalloc_free(&mh_heap.spanalloc[s->bucket], s);
		s = n;
	}
	if (kind == CACHE_LARGE)
		mh_heap.span_cache_large_pages -= npages;
	mh_heap.span_cache_pages -= npages;
	pa_free_pages -= npages;
	return s;
}

static void flush_span_cache(enum span_cache_kind kind)
{
	uint64_t now = mh_nanotime();

	for (unsigned n = 1; n <= SPAN_CACHE_PAGES; n++) {
		struct mspan *s;

		while (mh_heap.span_cache[kind][n]) {
			s = span_list_pop(n, kind);
			if (kind == CACHE_LARGE)
				mh_heap.span_cache_large_pages -= n;
			mh_heap.span_cache_pages -= n;
			pa_free_pages -= n;	/* pa_free_batch counts them again */
			if (kind == CACHE_LARGE)
				span_cache_edges(s, NULL);
			pa_free_batch(s->base, n, now);
			fixalloc_free(&mh_heap.spanalloc[s->bucket], s);
		}
	}
	pa_free_batch_end(now);
}

static void flush_span_caches(void)
{
	if (mh_heap.span_cache_large_pages)
		flush_span_cache(CACHE_LARGE);
	if (mh_heap.span_cache_pages)
		flush_span_cache(CACHE_SMALL);
}

void mheap_flush_caches(void)
{
	flush_span_caches();
	page_caches_flush();
}

void mheap_flush_caches_locking(void)
{
	mh_lock(&mh_heap.lock);
	mheap_flush_caches();
	mh_unlock(&mh_heap.lock);
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
 * Only objects longer than SPAN_HIGH_PAGES go high. Shorter ones are
 * recycled whole by the span cache, and once freed for good their pages
 * are welcome to small spans. A block that realloc had to move goes low
 * (PLACE_LOW): it is likely to grow again, and first fit leaves it the
 * free pages above it that growth in place needs; at the top of a run it
 * could never grow. Arena chunks go low as well, with the rest of what
 * first fit packs.
 *
 * Two more things keep the bottom dense (measured:
 * docs/heap.md#placement): cached large objects go back to the bitmap as soon as first
 * fit has to go above one of them (for a large object, once they outgrow
 * the live objects of their lengths: span cache), and a thread's empty spans
 * go back to the page heap when it asks for a large block that only fresh
 * pages could hold (large_alloc in malloc.c).
 */
static enum pa_where place_of(uintptr_t npages, enum span_place place)
{
	return place == PLACE_LARGE && npages > SPAN_HIGH_PAGES ? PA_DIRTY : PA_LOW;
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
		p = pa_find(npages, align_pages, place_of(npages, place));
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
	 * every slot zeroed by its free (secure.c); a take falls back on the
	 * other list. */
	bool zeroed = mh_secure && sizeclass && mh_heap.span_cache[CACHE_SMALL][npages];

	if (span_cache_serves(npages, align_pages))
		s = span_cache_take(npages, words, sizeclass ? CACHE_SMALL : CACHE_LARGE);
	if (s) {
		r.base = s->base;
		r.needzero = !zeroed;
		goto init;
	}
	/* Spans of small objects come from the thread's page cache when it
	 * can hold them (pagecache.c); nothing aligned does. */
	if (!sizeclass || align_pages != 1)
		pc = NULL;
	if (!sizeclass && mh_heap.span_cache_large_pages >= npages &&
	    span_cache_serves(npages, align_pages)) {
		/* A large object no cached span could hold, while the large
		 * lists hold as many pages: if its place would fault in
		 * again, their pages go back first, merged, for it to take
		 * (span cache). */
		uintptr_t p = pa_find(npages, align_pages, where);

		if (!p || !pa_resident(p, npages))
			flush_span_cache(CACHE_LARGE);
	}
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
		/* The secure mode checks at each allocation that a slot is
		 * still zero: its spans start so (secure.c). */
		if (unlikely(mh_secure) && r.needzero)
			memset((void *)r.base, 0, npages << MH_PAGE_SHIFT);
		mspan_init_small(s, sizeclass, r.released == 0);
	} else {
		s->state = (uint8_t)state;
		s->needzero = r.needzero;
		s->nelems = 1;
		/* mh_free's fast path: not a small span */
		STORE_RELAXED(&s->owner, NULL);
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

/* mheap_free_span_released with the heap lock held, but for the
 * scavenger's look, which the caller makes. */
static void free_span_locked(struct mspan *s, bool released)
{
	if (s->state == MSPAN_LARGE) {
		mh_heap.large_live_bytes -= s->npages << MH_PAGE_SHIFT;
		count_cacheable(s->npages, false);
	}
	arenamap_set_spans(s->base, s->npages, NULL);
	if (!released && s->npages <= SPAN_CACHE_PAGES) {
		/* The secure mode takes small spans from the small list
		 * unzeroed (alloc_span_locked): only theirs go there. */
		span_cache_put(s, s->state == MSPAN_LARGE || (mh_secure && s->state != MSPAN_SMALL) ?
				  CACHE_LARGE : CACHE_SMALL);
	} else {
		pa_free(s->base, s->npages, released);
		span_struct_kill(s);
		fixalloc_free(&mh_heap.spanalloc[s->bucket], s);
	}
}

bool mheap_free_large(struct mspan *s, uintptr_t p)
{
	uintptr_t scav = 0;
	bool ours;

	mh_lock(&mh_heap.lock);
	/* Two frees of p may have found s at once: the first here frees it,
	 * and as the struct dies (or is reborn as another span) under this
	 * lock, the second finds it no longer the large object at p. */
	ours = s->state == MSPAN_LARGE && s->base == p;
	if (ours) {
		free_span_locked(s, false);
		scav = scavenge_after_free();
	}
	mh_unlock(&mh_heap.lock);
	scavenge_after_unlock(scav);
	return ours;
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
