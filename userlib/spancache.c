// SPDX-License-Identifier: MIT
/*
 * The span cache (mheap.c's page heap keeps it under the heap lock).
 *
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
 * span can hold, while they hold as many pages (or any, for a block longer
 * than they keep), if its place would fault in again: merged, their
 * resident pages serve it instead (else each such miss took released
 * pages, and the scavenger paid for that growth by releasing as many
 * elsewhere; a doubled bucket array found the place of the last one taken
 * by the smaller arrays cached since). The small lists are not flushed: programs
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
#include "mheap_impl.h"
#include "pagealloc.h"
#include "pagecache.h"

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
 * arena map points at a dead struct there only for those (span_cache_edges).
 * A neighbour a thread keeps changes its state without the heap lock
 * (largecache.c), never to or from dead. */
static struct mspan *span_cache_large_at(uintptr_t p)
{
	struct mspan *n = span_of(p);

	return n && LOAD_RELAXED(&n->state) == MSPAN_DEAD ? n : NULL;
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

void span_cache_put(struct mspan *s, enum span_cache_kind kind)
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
struct mspan *span_cache_take(uintptr_t npages, unsigned words,
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

void flush_span_cache(enum span_cache_kind kind)
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

void flush_span_caches(void)
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
