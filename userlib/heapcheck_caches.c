// SPDX-License-Identifier: MIT
/*
 * The heap checker's look at the lists of spans that are not the page
 * heap's: each mcentral's partial and full lists of unowned spans, and each
 * thread's cache (its current spans, its size-indexed names for them, its
 * partial, full and empty lists with their byte counts, and its page
 * cache). Every span listed must be one the walk of the arena map found
 * live, listed once, under the owner and list it names (heapcheck.c says
 * what holds and why; mcache.h and mcentral.c say how the lists move).
 */
#include <string.h>

#include "heapcheck_impl.h"
#include "pagealloc.h"
#include "pagecache.h"
#include "sizeclass.h"

/* ------------------------------------------------------------ mcentrals */

int heapcheck_mcentrals(struct check *ck)
{
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		struct mcentral *mc = &mh_heap.central[cls];
		uint64_t n = 0, max = ck->f.all ? ck->unowned[cls] : ck->f.spans;

		for (int full = 0; full < 2; full++) {
			enum mspan_list tag = full ? MSPAN_LIST_FULL : MSPAN_LIST_PARTIAL;
			const struct list *l = full ? &mc->full : &mc->partial;
			const struct mspan *prev = NULL;

			const struct mspan *s;

			list_for_each(s, l, link) {
				CHECK(ck, n++ < max, "mcentral %u: more than %llu spans listed",
				      cls, (unsigned long long)max);
				CHECK(ck, heapcheck_span_live(s) && s->state == MSPAN_SMALL &&
				      s->sizeclass == cls && s->list == tag && !s->owner &&
				      mspan_of_link(s->link.prev) == prev,
				      "mcentral %u: span %#lx on its %s list (class %u, list %u, "
				      "owner %p)", cls, (unsigned long)s->base,
				      full ? "full" : "partial", s->sizeclass, s->list,
				      (void *)s->owner);
				prev = s;
			}
		}
		CHECK(ck, !ck->f.all || n == ck->unowned[cls], "mcentral %u lists %llu spans of %llu unowned",
		      cls, (unsigned long long)n, (unsigned long long)ck->unowned[cls]);
	}
	return 0;
}

/* ------------------------------------------------------------ caches */

static int check_cache_list(struct check *ck, struct cache_info *ci, unsigned cls,
			    const struct list *l, enum mspan_list tag, size_t *bytes)
{
	const struct mspan *s, *prev = NULL;

	list_for_each(s, l, link) {
		CHECK(ck, ci->held++ < ci->owned, "cache %p: more spans listed than owned",
		      (void *)ci->c);
		CHECK(ck, heapcheck_span_live(s) && s->state == MSPAN_SMALL && s->sizeclass == cls &&
		      s->list == tag && s->owner == ci->c && mspan_of_link(s->link.prev) == prev,
		      "cache %p: span %#lx on its list %u of class %u (class %u, list %u, "
		      "owner %p)", (void *)ci->c, (unsigned long)s->base, tag, cls,
		      s->sizeclass, s->list, (void *)s->owner);
		*bytes += s->npages << MH_PAGE_SHIFT;
		prev = s;
	}
	CHECK(ck, mspan_of_link(l->tail) == prev, "cache %p: list %u of class %u has a wrong tail",
	      (void *)ci->c, tag, cls);
	return 0;
}

static int check_page_cache(struct check *ck, const struct page_cache *pc)
{
	if (!pc->free)
		return 0;
	CHECK(ck, pc->base % (PA_CHUNK_TAKE_PAGES * MH_PAGE_SIZE) == 0 &&
	      !(pc->free >> (PA_CHUNK_TAKE_PAGES - 1) >> 1),
	      "page cache at %#lx: free %#llx", (unsigned long)pc->base,
	      (unsigned long long)pc->free);
	for (uint64_t f = pc->free; f; f &= f - 1) {
		uintptr_t p = pc->base + ((uintptr_t)__builtin_ctzll(f) << MH_PAGE_SHIFT);

		TRY(heapcheck_claim(ck, p, 1, NULL, true, "page cache"));
		ck->pc_pages++;
	}
	return 0;
}

static int check_cache(struct check *ck, struct cache_info *ci)
{
	struct mcache *c = ci->c;
	size_t full = 0, empty = 0, partial = 0;	/* bytes on the lists */

	CHECK(ck, c->alloc[0] == &mh_empty_span, "cache %p: a current span for class 0",
	      (void *)c);
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		struct mspan *s = c->alloc[cls];
		uint32_t size = mh_class[cls].size;

		if (s != &mh_empty_span) {
			CHECK(ck, heapcheck_span_live(s) && s->state == MSPAN_SMALL && s->sizeclass == cls &&
			      s->owner == c && s->list == MSPAN_LIST_NONE,
			      "cache %p: current span %p of class %u (class %u, list %u, "
			      "owner %p)", (void *)c, (void *)s, cls, s->sizeclass, s->list,
			      (void *)s->owner);
			ci->held++;
		}
		/* The size-indexed names (set_current in mcache.c). */
		if (size <= MH_DIRECT_MAX) {
			unsigned k = cls == 1 ? 0 : mh_class[cls - 1].size / MH_SMALL_SIZE_DIV + 1;

			for (; k <= size / MH_SMALL_SIZE_DIV; k++)
				CHECK(ck, c->alloc_small[k] == s,
				      "cache %p: requests of %u bytes go to span %p, class %u's "
				      "current is %p", (void *)c, k * MH_SMALL_SIZE_DIV,
				      (void *)c->alloc_small[k], cls, (void *)s);
		}
		TRY(check_cache_list(ck, ci, cls, &c->partial[cls], MSPAN_LIST_CACHE_PARTIAL, &partial));
		TRY(check_cache_list(ck, ci, cls, &c->full[cls], MSPAN_LIST_CACHE_FULL, &full));
		TRY(check_cache_list(ck, ci, cls, &c->empty[cls], MSPAN_LIST_CACHE_EMPTY, &empty));
	}
	size_t large = 0;
	uint8_t count[MH_LARGE_CACHE_PAGES_MAX] = { 0 };
	uint64_t lengths = 0;

	CHECK(ck, c->nlarge <= MH_LARGE_CACHE_SPANS, "cache %p keeps %u large spans", (void *)c,
	      c->nlarge);
	for (unsigned i = 0; i < c->nlarge; i++) {
		const struct mspan *s = c->large[i];

		CHECK(ck, span_of(s->base) == s && s->state == MSPAN_CACHED,
		      "cache %p: large span %p (%#lx) in state %u", (void *)c, (const void *)s,
		      (unsigned long)s->base, s->state);
		CHECK(ck, c->large_npages[i] == s->npages &&
			  s->npages - 1 < MH_LARGE_CACHE_PAGES_MAX,
		      "cache %p: large span %p of %lu pages listed as %u", (void *)c,
		      (const void *)s, (unsigned long)s->npages, c->large_npages[i]);
		lengths |= (uint64_t)1 << (s->npages - 1);
		count[s->npages - 1]++;
		large += s->npages << MH_PAGE_SHIFT;
		ck->thread_listed_spans++;
	}
	CHECK(ck, lengths == c->large_lengths,
	      "cache %p keeps large spans of lengths %#llx, listed as %#llx", (void *)c,
	      (unsigned long long)lengths, (unsigned long long)c->large_lengths);
	CHECK(ck, !memcmp(count, c->large_count, sizeof(count)),
	      "cache %p: its counts of large spans by length are not its list's", (void *)c);
	CHECK(ck, large == c->large_bytes && large <= MH_LARGE_CACHE_BYTES,
	      "cache %p keeps %zu bytes of large spans, counted %zu", (void *)c, large,
	      c->large_bytes);
	CHECK(ck, ci->held == ci->owned, "cache %p holds %llu spans, %llu name it their owner",
	      (void *)c, (unsigned long long)ci->held, (unsigned long long)ci->owned);
	CHECK(ck, full == c->full_bytes && empty == c->empty_bytes,
	      "cache %p: full lists %zu bytes (counted %zu), empty lists %zu (counted %zu)",
	      (void *)c, full, c->full_bytes, empty, c->empty_bytes);
	return check_page_cache(ck, &c->pages);
}

int heapcheck_caches(struct check *ck)
{
	CHECK(ck, !mh_empty_span.npages && mh_empty_span.window == MSPAN_WINDOW_CLOSED &&
	      mh_empty_span.full == ~(uint64_t)0 && !mh_empty_span.owner,
	      "the empty span is not empty");
	for (size_t i = 0; i < ck->ncaches; i++) {
		CHECK(ck, ck->caches[i].c->link.prev == (i ? &ck->caches[i - 1].c->link : NULL),
		      "cache list: wrong back link at %p", (void *)ck->caches[i].c);
		TRY(ck->f.all ? check_cache(ck, &ck->caches[i])
			    : check_page_cache(ck, &ck->caches[i].c->pages));
	}
	CHECK(ck, !ck->f.all || ck->thread_listed_spans == ck->thread_cached_spans,
	      "threads' caches list %llu freed large spans, %llu are in the heap",
	      (unsigned long long)ck->thread_listed_spans,
	      (unsigned long long)ck->thread_cached_spans);
	return 0;
}
