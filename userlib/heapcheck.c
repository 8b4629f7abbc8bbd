// SPDX-License-Identifier: MIT
/*
 * The heap checker (heapcheck.h): a standing guard for tests against
 * bookkeeping that drifts under concurrency (frees racing thread exits,
 * fork, arena frees). It recomputes from the heap's own structures what
 * their counters and lists claim, and reports the first disagreement.
 *
 * What holds at rest, and why (the files named say more):
 *
 *  - Pages (pagealloc.c, spancache.c, pagecache.c). A page of a
 *    heap arena is free in the page allocator (its allocation bit clear) or
 *    held by exactly one of: an in-use span, a span in the span cache, a
 *    thread's page cache. The held ones have their bit set; the arena map
 *    points at the span for the first kind, and at a cached large span's
 *    dead struct for its first and last pages. Pages in a span (in use
 *    or cached) were allocated, which cleared their scavenged bits; a page
 *    cache keeps them. pa_free_pages counts the free and the cached pages,
 *    pa_released_pages the scavenged bits, and the chunk and arena
 *    summaries are those of the bitmap. The chunks of small spans are
 *    marked as such (small_chunks).
 *  - Small spans (mspan.h). Objects freed since the last sweep are set in
 *    freed_local or freed_remote, never both, and were allocated; the
 *    remote count equals the bits set (a freer sets its bit, then counts
 *    it; the sweep clears bits and subtracts), and the owner's countdown
 *    equals the bits of freed_local. No object at or past `touched` has
 *    ever been handed out, nor does the window offer one; the window's
 *    objects are free ones of the word `window` names. free_words names
 *    exactly the alloc_bits words with a free object below `touched`
 *    outside the window. A span is owned by one cache (its
 *    current span or on one of its lists, and REMOTE_OWNED set) or on its
 *    mcentral's partial or full list. An unowned span was folded when let
 *    go: no local frees, window closed, `outstanding` the allocation bits;
 *    it cannot have every object freed (that free returns it to the page
 *    heap), and a full-list span has had no remote free (the first one
 *    moves it). An owned span on a cache list has handed out `nalloc`
 *    objects, freed or not; on the empty list none is allocated.
 *  - Caches (mcache.h). The size-indexed names agree with the class
 *    names, and the byte counters are the sums of their lists. A freed
 *    large object a thread keeps (largecache.c, state MSPAN_CACHED) is
 *    on exactly one cache's list, its pages still mapping to it, its gen
 *    even (claimed), and counts as live to large_live_bytes.
 *  - Arena chunks: the arena layer checks its own (arena_check.c), given
 *    each chunk span the walk finds and then what it found (hooks.h).
 *  - Counters: objects allocated per class (nmalloc - nfree, over live
 *    and dead caches) equal those the bitmaps show; large objects are the
 *    large spans; the span and cache structs in use are the ones found.
 *
 * The heap part runs with every allocator lock held, taken as fork takes
 * them; the arena lists' part after, under the arenas' lock alone, which
 * is never held with another allocator lock. Scratch memory is mapped, not
 * allocated.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "heapcheck.h"
#include "heapcheck_impl.h"
#include "hooks.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "pagecache.h"
#include "sizeclass.h"

int heapcheck_fail(struct heapcheck_found *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (f->len)
		vsnprintf(f->msg, f->len, fmt, ap);
	va_end(ap);
	return -1;
}

/* ------------------------------------------------------------ helpers */

static long arena_index(const struct check *ck, uintptr_t p)
{
	uintptr_t base = ALIGN_DOWN(p, MH_ARENA_SIZE);
	size_t lo = 0, hi = ck->narenas;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ck->arenas[mid]->base < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ck->narenas && ck->arenas[lo]->base == base ? (long)lo : -1;
}

static bool page_bit(const uint64_t *bits, uintptr_t i)
{
	return bits[i / 64] >> (i % 64) & 1;
}

int heapcheck_claim(struct check *ck, uintptr_t p, uintptr_t npages, const struct mspan *s,
		    bool scav_ok, const char *what)
{
	for (uintptr_t n = 0; n < npages; n++, p += MH_PAGE_SIZE) {
		long a = arena_index(ck, p);

		CHECK(ck, a >= 0, "%s: page %#lx is outside the heap", what, (unsigned long)p);
		struct heap_arena *ha = ck->arenas[a];
		uintptr_t i = arena_page(ha, p);
		uint64_t *claimed = ck->claimed + (size_t)a * PA_WORDS;

		CHECK(ck, !page_bit(claimed, i), "%s: page %#lx is held twice", what,
		      (unsigned long)p);
		claimed[i / 64] |= (uint64_t)1 << (i % 64);
		CHECK(ck, page_bit(ha->alloc, i), "%s: page %#lx is free in the page allocator",
		      what, (unsigned long)p);
		CHECK(ck, scav_ok || !page_bit(ha->scav, i), "%s: page %#lx is marked released",
		      what, (unsigned long)p);
		CHECK(ck, LOAD_RELAXED(&ha->spans[i]) == s,
		      "%s: page %#lx maps to span %p, not %p", what, (unsigned long)p,
		      (void *)ha->spans[i], (const void *)s);
	}
	return 0;
}

bool heapcheck_span_live(const struct mspan *s)
{
	/* A cached large span's first page maps to its dead struct. */
	return s && s->npages && span_of(s->base) == s && s->state != MSPAN_DEAD;
}

static struct cache_info *cache_find(struct check *ck, const struct mcache *c)
{
	for (size_t i = 0; i < ck->ncaches; i++)
		if (ck->caches[i].c == c)
			return &ck->caches[i];
	return NULL;
}

/* ------------------------------------------------------------ scratch */

static int scratch_map(struct check *ck)
{
	size_t na = 0, nc = 0;
	struct mcache *c;

	for (struct heap_arena *ha = arenamap_first(); ha && na <= arenamap_count(); ha = ha->next)
		na++;
	CHECK(ck, na == arenamap_count(), "arena list holds %zu arenas, the map counted %llu",
	      na, (unsigned long long)arenamap_count());
	/* Caches are bounded by the struct pool (a cycle would run on). */
	uint64_t cache_max = mh_heap.cachealloc.size ?
			     mh_heap.cachealloc.inuse / mh_heap.cachealloc.size : 0;
	for (struct list_node *n = mh_caches.head; n && nc <= cache_max; n = n->next)
		nc++;
	CHECK(ck, nc <= cache_max, "cache list longer than the %llu caches allocated",
	      (unsigned long long)cache_max);

	ck->scratch_len = ALIGN_UP(na * (sizeof(struct heap_arena *) + PA_WORDS * sizeof(uint64_t)) +
				   nc * sizeof(struct cache_info) + 1, 4096);
	ck->scratch = mmap(NULL, ck->scratch_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ck, ck->scratch != MAP_FAILED, "no memory for the check");
	ck->claimed = ck->scratch;
	ck->arenas = (struct heap_arena **)(ck->claimed + na * PA_WORDS);
	ck->caches = (struct cache_info *)(ck->arenas + na);
	ck->narenas = na;
	ck->ncaches = nc;
	na = 0;
	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		ck->arenas[na++] = ha;
	nc = 0;
	list_for_each(c, &mh_caches, link)
		ck->caches[nc++].c = c;
	return 0;
}

/* ------------------------------------------------------------ arenas */

static int check_arena_list(struct check *ck)
{
	for (size_t a = 0; a < ck->narenas; a++) {
		struct heap_arena *ha = ck->arenas[a];
		struct heap_arena *prev = a ? ck->arenas[a - 1] : NULL;

		CHECK(ck, ha->base % MH_ARENA_SIZE == 0, "heap arena %#lx is not aligned",
		      (unsigned long)ha->base);
		CHECK(ck, arena_of(ha->base) == ha, "heap arena %#lx is not in the arena map",
		      (unsigned long)ha->base);
		CHECK(ck, ha->prev == prev && (!prev || prev->base < ha->base),
		      "heap arena list out of order at %#lx", (unsigned long)ha->base);
		for (unsigned c = 0; c < PA_CHUNKS; c++) {
			struct pa_sum s = pa_summarize(ha->alloc, c * PA_CHUNK_PAGES, PA_CHUNK_PAGES);

			CHECK(ck, !memcmp(&s, &ha->chunk_sum[c], sizeof(s)),
			      "heap arena %#lx: summary of chunk %u out of date",
			      (unsigned long)ha->base, c);
		}
		struct pa_sum s = pa_summarize(ha->alloc, 0, MH_PAGES_PER_ARENA);

		CHECK(ck, !memcmp(&s, &ha->sum, sizeof(s)), "heap arena %#lx: summary out of date",
		      (unsigned long)ha->base);
	}
	CHECK(ck, arenamap_last() == (ck->narenas ? ck->arenas[ck->narenas - 1] : NULL),
	      "the arena list's tail is not its last arena");
	uintptr_t run = pa_hint_broken();

	CHECK(ck, !run, "page allocator: a free run of %lu pages begins below its search hint",
	      (unsigned long)run);
	return 0;
}

/* ------------------------------------------------------------ spans */

/* Bits of bitmap word w for objects below limit. */
static uint64_t below(unsigned w, uint32_t limit)
{
	if (limit <= w * 64)
		return 0;
	return limit >= (w + 1) * 64 ? ~(uint64_t)0 : ((uint64_t)1 << (limit - w * 64)) - 1;
}

static int check_small(struct check *ck, const struct mspan *s)
{
	unsigned cls = s->sizeclass;
	unsigned long base = (unsigned long)s->base;

	CHECK(ck, cls >= 1 && cls < MH_NUM_CLASSES, "span %#lx: class %u", base, cls);
	const struct size_class *sc = &mh_class[cls];
	unsigned nw = mspan_bitmap_words(s->nelems);

	CHECK(ck, s->npages == sc->npages && s->elemsize == sc->size &&
	      s->nelems == sc->nelems && s->divmul == sc->divmul,
	      "span %#lx: geometry is not that of class %u", base, cls);
	CHECK(ck, mh_heap.spanalloc[s->bucket].size >= mspan_struct_bytes(nw),
	      "span %#lx: struct of bucket %u too small for its bitmaps", base, s->bucket);
	CHECK(ck, s->touched <= s->nelems, "span %#lx: touched %u of %u", base, s->touched,
	      s->nelems);
	/* The window: closed, or on a word with an object below `touched`. */
	bool open = s->window != MSPAN_WINDOW_CLOSED;
	unsigned ww = open ? mspan_window_index(s->window) : nw;

	CHECK(ck, !open || (s->window >= mspan_window_at(0) &&
			    s->window == mspan_window_at(ww) && ww * 64 < s->touched),
	      "span %#lx: window at %u, touched %u", base, s->window, s->touched);
	CHECK(ck, s->full == ~(uint64_t)0, "span %#lx: `full` is %#llx", base,
	      (unsigned long long)s->full);

	uint32_t nalloc_bits = 0, nlocal = 0, nremote = 0, allocated = 0;

	for (unsigned w = 0; w < nw; w++) {
		uint64_t a = s->bits[w].alloc, l = s->bits[w].local;
		uint64_t r = LOAD_RELAXED(&s->bits[w].remote);
		/* The window's word has its objects past `touched` set in
		 * alloc_bits and freed_local (mspan_open_window). */
		uint64_t res = w == ww ? mspan_past_touched(s, w) : 0;

		CHECK(ck, (a & l & res) == res, "span %#lx: window word %u not reserved past %u",
		      base, w, s->touched);
		a &= ~res;
		l &= ~res;

		uint64_t live = a;

		CHECK(ck, !((a | l | r) & ~below(w, s->touched)),
		      "span %#lx: bits set past the objects it has handed out", base);
		CHECK(ck, !(l & r), "span %#lx: object %u freed both locally and remotely", base,
		      w * 64 + (unsigned)__builtin_ctzll(l & r));
		CHECK(ck, !((l | r) & ~live), "span %#lx: object %u freed but not allocated", base,
		      w * 64 + (unsigned)__builtin_ctzll((l | r) & ~live));
		/* The window's free objects are its word's: not in free_words. */
		CHECK(ck, (w != ww && (~a & below(w, s->touched))) == !!(s->free_words >> w & 1),
		      "span %#lx: free_words says word %u %s", base, w,
		      s->free_words >> w & 1 ? "has a free object" : "is full");
		nalloc_bits += mh_popcount(a);
		nlocal += mh_popcount(l);
		nremote += mh_popcount(r);
		allocated += mh_popcount(live & ~(l | r));
	}

	int64_t remote = LOAD_RELAXED(&s->remote);
	struct mcache *owner = LOAD_RELAXED(&s->owner);

	CHECK(ck, !(remote & (REMOTE_ONE - 1) & ~REMOTE_OWNED), "span %#lx: remote flags %#llx",
	      base, (unsigned long long)remote);
	CHECK(ck, remote >> REMOTE_SHIFT == nremote,
	      "span %#lx: remote count %lld, %u remote bits set", base,
	      (long long)(remote >> REMOTE_SHIFT), nremote);
	CHECK(ck, mspan_local_frees(s) == nlocal, "span %#lx: %u local frees counted, %u bits set",
	      base, mspan_local_frees(s), nlocal);
	CHECK(ck, !(remote & REMOTE_OWNED) == !owner, "span %#lx: owner %p, owned flag %d", base,
	      (void *)owner, (int)(remote & REMOTE_OWNED));
	ck->allocated[cls] += allocated;

	if (!owner) {
		CHECK(ck, s->list == MSPAN_LIST_PARTIAL || s->list == MSPAN_LIST_FULL,
		      "span %#lx: no owner and on no mcentral list (list %u)", base, s->list);
		CHECK(ck, !nlocal && !open,
		      "span %#lx: unowned but not folded", base);
		CHECK(ck, s->outstanding == nalloc_bits,
		      "span %#lx: outstanding %u, %u allocation bits", base, s->outstanding,
		      nalloc_bits);
		CHECK(ck, nremote < s->outstanding,
		      "span %#lx: unowned with every object freed (%u of %u)", base, nremote,
		      s->outstanding);
		if (s->list == MSPAN_LIST_FULL)
			CHECK(ck, s->outstanding == s->nelems && !nremote,
			      "span %#lx: on the full list with %u of %u objects, %u freed", base,
			      s->outstanding, s->nelems, nremote);
		else
			CHECK(ck, s->outstanding < s->nelems || nremote,
			      "span %#lx: on the partial list with nothing free", base);
		ck->unowned[cls]++;
		return 0;
	}
	struct cache_info *ci = cache_find(ck, owner);

	CHECK(ck, ci, "span %#lx: owner %p is no live cache", base, (void *)owner);
	ci->owned++;
	if (s->list == MSPAN_LIST_NONE) {
		CHECK(ck, owner->alloc[cls] == s, "span %#lx: owned, not current, on no list", base);
		return 0;
	}
	CHECK(ck, s->list >= MSPAN_LIST_CACHE_PARTIAL && s->list <= MSPAN_LIST_CACHE_EMPTY,
	      "span %#lx: owned but on an mcentral list (%u)", base, s->list);
	CHECK(ck, s->window == MSPAN_WINDOW_CLOSED, "span %#lx: not current but has a window",
	      base);
	CHECK(ck, allocated + nlocal + nremote == s->nalloc,
	      "span %#lx: %u allocated + %u + %u freed, nalloc %u", base, allocated, nlocal,
	      nremote, s->nalloc);
	CHECK(ck, s->list != MSPAN_LIST_CACHE_EMPTY || !allocated,
	      "span %#lx: on the empty list with %u objects allocated", base, allocated);
	return 0;
}

/* The chunks of a small span's first and last pages are marked as
 * holding small spans (arenamap.h), which large objects keep out of. */
static int check_small_chunks(struct check *ck, const struct mspan *s)
{
	const uintptr_t ends[2] = { s->base, mspan_limit(s) - MH_PAGE_SIZE };

	for (unsigned i = 0; i < 2; i++) {
		const struct heap_arena *ha = arena_of(ends[i]);
		unsigned c = (unsigned)arena_page(ha, ends[i]) / PA_CHUNK_PAGES;

		CHECK(ck, ha->small_chunks >> c & 1,
		      "small span %#lx: its chunk %u is not marked as holding small spans",
		      (unsigned long)s->base, c);
	}
	return 0;
}

static int check_span(struct check *ck, const struct mspan *s)
{
	unsigned long base = (unsigned long)s->base;

	CHECK(ck, s->npages, "span %#lx has no pages", base);
	CHECK(ck, s->bucket < SPAN_BUCKETS, "span %#lx: bucket %u", base, s->bucket);
	ck->structs[s->bucket]++;
	ck->f.spans++;
	ck->span_pages += s->npages;
	/* A thread's cache changes a large span's state without a lock of
	 * the allocator's (largecache.c). */
	switch (LOAD_RELAXED(&s->state)) {
	case MSPAN_SMALL:
		TRY(check_small_chunks(ck, s));
		return ck->f.all ? check_small(ck, s) : 0;
	case MSPAN_LARGE:
		CHECK(ck, !s->sizeclass && !s->owner, "large span %#lx: class %u, owner %p", base,
		      s->sizeclass, (void *)s->owner);
		ck->large_spans++;
		ck->large_pages += s->npages;
		if (s->npages <= SPAN_CACHE_PAGES)
			ck->large_cacheable_pages += s->npages;
		return 0;
	case MSPAN_CACHED:
		/* Live to the page heap's counts until it comes back
		 * (largecache.c); on one cache's list (check_cache). */
		CHECK(ck, !s->sizeclass && !s->owner &&
		      s->npages << MH_PAGE_SHIFT <= MH_LARGE_CACHE_SPAN_MAX &&
		      (!ck->f.all || !(s->gen & 1)),
		      "thread-cached large span %#lx: class %u, owner %p, %lu pages, gen %llu",
		      base, s->sizeclass, (void *)s->owner, (unsigned long)s->npages,
		      (unsigned long long)s->gen);
		ck->thread_cached_spans++;
		ck->large_pages += s->npages;
		if (s->npages <= SPAN_CACHE_PAGES)
			ck->large_cacheable_pages += s->npages;
		return 0;
	case MSPAN_CHUNK:
		return ck->f.all ? heap_hooks()->check_chunk(&ck->f, s) : 0;
	default:
		return heapcheck_fail(&ck->f, "page %#lx maps to span %p in state %u", base, (const void *)s,
			    s->state);
	}
}

/* Every in-use span, found through the arena map in address order: each
 * page maps to the span it lies in, a span's first page is its base. */
static int check_spans(struct check *ck)
{
	const struct mspan *cur = NULL;
	uintptr_t cur_end = 0;

	/* A span may run on into the next arena if adjacent (claim checks). */
	for (size_t a = 0; a < ck->narenas; a++) {
		struct heap_arena *ha = ck->arenas[a];

		for (uintptr_t i = 0; i < MH_PAGES_PER_ARENA; i++) {
			uintptr_t p = ha->base + (i << MH_PAGE_SHIFT);
			const struct mspan *s = LOAD_RELAXED(&ha->spans[i]);

			if (cur && p < cur_end)
				continue;	/* claimed with its span */
			cur = NULL;
			if (!s)
				continue;
			CHECK(ck, s->base == p, "page %#lx maps to span %#lx+%lu",
			      (unsigned long)p, (unsigned long)s->base, (unsigned long)s->npages);
			cur = s;
			cur_end = mspan_limit(s);
			if (LOAD_RELAXED(&s->state) == MSPAN_DEAD)
				continue;	/* a cached large span: check_span_cache */
			TRY(check_span(ck, s));
			TRY(heapcheck_claim(ck, p, s->npages, s, false, "span"));
		}
	}
	return 0;
}

/* ------------------------------------------------------------ span cache */

/* The pages of s, a span of the large lists: its first and last page map
 * to s (its neighbours find it there to merge), the others to nothing. */
static int claim_cached_large(struct check *ck, const struct mspan *s)
{
	TRY(heapcheck_claim(ck, s->base, 1, s, false, "span cache (large)"));
	if (s->npages > 1) {
		TRY(heapcheck_claim(ck, s->base + MH_PAGE_SIZE, s->npages - 2, NULL, false,
			  "span cache (large)"));
		TRY(heapcheck_claim(ck, mspan_limit(s) - MH_PAGE_SIZE, 1, s, false, "span cache (large)"));
	}
	return 0;
}

static int check_span_cache(struct check *ck)
{
	uint64_t pages = 0, large = 0;

	for (unsigned kind = CACHE_SMALL; kind <= CACHE_LARGE; kind++) {
		for (uintptr_t n = 1; n <= SPAN_CACHE_PAGES; n++) {
			uint64_t left = pa_total_pages / n + 1;

			if (kind == CACHE_LARGE)
				CHECK(ck, !mh_heap.span_cache[kind][n] ==
				      !(mh_heap.span_cache_large_held & ((uint64_t)1 << (n - 1))),
				      "large span cache list of %lu pages %s, its bit says otherwise",
				      (unsigned long)n, mh_heap.span_cache[kind][n] ? "holds one" : "is empty");

			const struct mspan *prev = NULL;

			for (struct mspan *s = mh_heap.span_cache[kind][n]; s; prev = s, s = s->chain) {
				CHECK(ck, left--, "span cache list of %lu pages loops", (unsigned long)n);
				CHECK(ck, s->link.prev == (prev ? &prev->link : NULL),
				      "cached span %#lx: its back link is not the span before it",
				      (unsigned long)s->base);
				CHECK(ck, s->state == MSPAN_DEAD && s->npages == n &&
				      s->bucket < SPAN_BUCKETS,
				      "cached span %#lx: state %u, %lu pages on the list of %lu",
				      (unsigned long)s->base, s->state, (unsigned long)s->npages,
				      (unsigned long)n);
				CHECK(ck, kind != CACHE_LARGE || s->base >= mh_heap.span_cache_large_low,
				      "cached large span %#lx below span_cache_large_low",
				      (unsigned long)s->base);
				if (kind == CACHE_LARGE)
					TRY(claim_cached_large(ck, s));
				else
					TRY(heapcheck_claim(ck, s->base, n, NULL, false, "span cache"));
				ck->structs[s->bucket]++;
				pages += n;
				if (kind == CACHE_LARGE)
					large += n;
			}
		}
	}
	CHECK(ck, pages == mh_heap.span_cache_pages && large == mh_heap.span_cache_large_pages,
	      "span cache holds %llu pages (%llu large), counted %llu (%llu)",
	      (unsigned long long)pages, (unsigned long long)large,
	      (unsigned long long)mh_heap.span_cache_pages,
	      (unsigned long long)mh_heap.span_cache_large_pages);
	ck->cached_pages = pages;
	return 0;
}

/* ------------------------------------------------------------ totals */

static int check_pages(struct check *ck)
{
	uint64_t free = 0, released = 0;

	for (size_t a = 0; a < ck->narenas; a++) {
		const struct heap_arena *ha = ck->arenas[a];
		const uint64_t *claimed = ck->claimed + a * PA_WORDS;

		for (unsigned w = 0; w < PA_WORDS; w++) {
			/* (A page held but free failed its claim.) */
			uint64_t lost = ha->alloc[w] & ~claimed[w];

			CHECK(ck, !lost, "page %#lx is in use, but held by no span or cache",
			      (unsigned long)(ha->base + ((uintptr_t)(w * 64 +
			      (unsigned)__builtin_ctzll(lost)) << MH_PAGE_SHIFT)));
			free += mh_popcount(~ha->alloc[w]);
			released += mh_popcount(ha->scav[w]);
		}
	}
	CHECK(ck, pa_total_pages == (uint64_t)ck->narenas * MH_PAGES_PER_ARENA,
	      "%llu pages counted in %zu heap arenas", (unsigned long long)pa_total_pages,
	      ck->narenas);
	free += ck->cached_pages + ck->pc_pages;
	CHECK(ck, free == pa_free_pages, "%llu free pages (%llu in caches), counted %llu",
	      (unsigned long long)free, (unsigned long long)(ck->cached_pages + ck->pc_pages),
	      (unsigned long long)pa_free_pages);
	CHECK(ck, released == pa_released_pages, "%llu released pages, counted %llu",
	      (unsigned long long)released, (unsigned long long)pa_released_pages);
	CHECK(ck, ck->span_pages + free == pa_total_pages,
	      "%llu pages in spans and %llu free of %llu", (unsigned long long)ck->span_pages,
	      (unsigned long long)free, (unsigned long long)pa_total_pages);
	CHECK(ck, ck->large_pages << MH_PAGE_SHIFT == mh_heap.large_live_bytes,
	      "large spans hold %llu bytes, counted %llu",
	      (unsigned long long)(ck->large_pages << MH_PAGE_SHIFT),
	      (unsigned long long)mh_heap.large_live_bytes);
	CHECK(ck, ck->large_cacheable_pages == mh_heap.large_cacheable_pages,
	      "large spans of span cache lengths hold %llu pages, counted %llu",
	      (unsigned long long)ck->large_cacheable_pages,
	      (unsigned long long)mh_heap.large_cacheable_pages);
	for (unsigned b = 0; b < SPAN_BUCKETS; b++)
		CHECK(ck, mh_heap.spanalloc[b].inuse == ck->structs[b] * mh_heap.spanalloc[b].size,
		      "span structs of bucket %u: %llu bytes in use, %llu found", b,
		      (unsigned long long)mh_heap.spanalloc[b].inuse,
		      (unsigned long long)(ck->structs[b] * mh_heap.spanalloc[b].size));
	/* A thread being born holds a struct before the list has it. */
	CHECK(ck, ck->f.all ? mh_heap.cachealloc.inuse == ck->ncaches * mh_heap.cachealloc.size
			  : mh_heap.cachealloc.inuse >= ck->ncaches * mh_heap.cachealloc.size,
	      "cache structs: %llu bytes in use, %zu caches listed",
	      (unsigned long long)mh_heap.cachealloc.inuse, ck->ncaches);
	return 0;
}

/* Objects allocated per class, by the counters (caches_lock held). */
static int check_counters(struct check *ck)
{
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		uint64_t nmalloc = mh_dead_nmalloc[cls], nfree = mh_dead_nfree[cls];
		uint64_t found = cls ? ck->allocated[cls] : ck->large_spans;

		for (size_t i = 0; i < ck->ncaches; i++) {
			nmalloc += mcache_nmalloc(ck->caches[i].c, cls);
			nfree += ck->caches[i].c->nfree[cls];
		}
		CHECK(ck, nmalloc - nfree == found,
		      "class %u: %llu allocated by the counters (%llu - %llu), %llu in spans", cls,
		      (unsigned long long)(nmalloc - nfree), (unsigned long long)nmalloc,
		      (unsigned long long)nfree, (unsigned long long)found);
	}
	return 0;
}

/* ------------------------------------------------------------ entry */

static int check_heap(struct check *ck)
{
	TRY(scratch_map(ck));
	TRY(check_arena_list(ck));
	TRY(check_spans(ck));
	TRY(check_span_cache(ck));
	TRY(heapcheck_mcentrals(ck));
	TRY(heapcheck_caches(ck));
	TRY(check_pages(ck));
	return ck->f.all ? check_counters(ck) : 0;
}

int mheap_check(enum heapcheck_scope scope, char *msg, size_t len)
{
	struct check ck = { .f = { .msg = msg, .len = len, .all = scope == HEAPCHECK_ALL } };
	int ret;

	if (len)
		msg[0] = '\0';
	mheap_init();
	mh_lock(&mh_caches_lock);
	mheap_lock_all();
	ret = check_heap(&ck);
	mheap_unlock_all();
	mh_unlock(&mh_caches_lock);

	/* The chunks found above against the arenas' lists (hooks.h): the
	 * world is quiet, so nothing moved in between. */
	if (!ret)
		ret = heap_hooks()->check_lists(&ck.f);
	if (ck.scratch && ck.scratch != MAP_FAILED)
		munmap(ck.scratch, ck.scratch_len);
	return ret;
}
