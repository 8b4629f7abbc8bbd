// SPDX-License-Identifier: MIT
/*
 * mcentral: the spans of one size class that no thread's cache owns (Go's
 * mcentral.go). Caches take spans with free objects from the partial list
 * and give back spans they have used up; a span whose last object is freed
 * returns to the page heap.
 *
 * Go finds reusable spans by sweeping after each GC. With explicit free the
 * span's `remote` word (mspan.h) tells instead: freeing into an unowned span
 * is lock-free, and only the free that makes a span's first pending free
 * (it may need to leave the full list) or its last (the span is empty)
 * comes here, once per span per trip through the list.
 *
 * Batches. When the mcentral has no partial span, the cache's refill asks
 * the page heap for a fresh one - and, for classes of few objects per span,
 * for more of the same length when the span cache holds many, all in one
 * hold of the heap lock (mheap_alloc_small_spans). The cache keeps the
 * spares as empty spans and gives empty spans back in batches too
 * (mcache.c). A thread churning 8 KiB objects (8 to a 64 KiB span) beyond
 * its cache's cap otherwise took the heap lock twice per span, and with two
 * threads doing it the lock handoffs doubled the run's time.
 */
#include "mcache.h"
#include "mheap_impl.h"
#include "sizeclass.h"

/* An mcentral's list of spans: partial (free objects) or full. */
static struct list *central_list(struct mcentral *mc, enum mspan_list which)
{
	return which == MSPAN_LIST_FULL ? &mc->full : &mc->partial;
}

static void central_push(struct mcentral *mc, struct mspan *s, enum mspan_list which)
{
	list_push_head(central_list(mc, which), &s->link);
	STORE_RELAXED(&s->list, (uint8_t)which);
}

static void central_remove(struct mcentral *mc, struct mspan *s)
{
	list_remove(central_list(mc, s->list), &s->link);
	STORE_RELAXED(&s->list, (uint8_t)MSPAN_LIST_NONE);
}

/* Spans of class cls a refill takes from the page heap at once, if it has
 * them cached: enough for MH_BATCH_OBJECTS objects, within MH_BATCH_BYTES
 * (mcache.h). */
static unsigned refill_batch(unsigned cls)
{
	const struct size_class *sc = &mh_class[cls];
	unsigned by_objects = (MH_BATCH_OBJECTS + sc->nelems - 1) / sc->nelems;
	unsigned by_bytes = (unsigned)(MH_BATCH_BYTES / ((size_t)sc->npages << MH_PAGE_SHIFT));

	by_bytes = by_bytes ? by_bytes : 1;
	return by_objects < by_bytes ? by_objects : by_bytes;
}

struct mspan *mcentral_cache_span(unsigned sizeclass, struct mcache *c, struct mspan **spare)
{
	struct mcentral *mc = &mh_heap.central[sizeclass];
	struct mspan *s;

	*spare = NULL;
	mh_lock(&mc->lock);
	s = mspan_of_link(mc->partial.head);
	if (s) {
		central_remove(mc, s);
		__atomic_fetch_or(&s->remote, REMOTE_OWNED, __ATOMIC_ACQ_REL);
		STORE_RELAXED(&s->owner, c);
		mh_unlock(&mc->lock);
		mspan_sweep(s);
		return s;
	}
	mh_unlock(&mc->lock);

	/* The large blocks the thread keeps go back first: a thread making
	 * small spans is not churning large blocks just now, and in the page
	 * heap their pages can serve small spans (largecache.c). */
	mcache_large_release(c);
	s = mheap_alloc_small_spans(sizeclass, refill_batch(sizeclass), &c->pages);
	for (struct mspan *t = s; t; t = t->chain) {
		STORE_RELEASE(&t->remote, REMOTE_OWNED);	/* mspan_init_small */
		STORE_RELAXED(&t->owner, c);
	}
	if (s) {
		*spare = s->chain;
		s->chain = NULL;
	}
	return s;
}

void mcentral_uncache_span(struct mspan *s)
{
	struct mcentral *mc = &mh_heap.central[s->sizeclass];
	uint32_t outstanding = 0;

	mspan_fold_local(s);
	for (unsigned w = 0; w < mspan_bitmap_words(s->nelems); w++)
		outstanding += (uint32_t)mh_popcount(s->bits[w].alloc);

	mh_lock(&mc->lock);
	STORE_RELAXED(&s->owner, NULL);
	STORE_RELAXED(&s->outstanding, outstanding);
	int64_t old = __atomic_fetch_and(&s->remote, ~REMOTE_OWNED, __ATOMIC_ACQ_REL);
	int64_t pending = old >> REMOTE_SHIFT;

	if (pending == (int64_t)outstanding) {
		mspan_check_frees(s);	/* not one object counted twice */
		mheap_free_span(s);
	} else if (outstanding < s->nelems || pending > 0)
		central_push(mc, s, MSPAN_LIST_PARTIAL);
	else
		central_push(mc, s, MSPAN_LIST_FULL);
	mh_unlock(&mc->lock);
}

void mcentral_remote_event(struct mspan *s, unsigned sizeclass, uint64_t gen)
{
	struct mcentral *mc = &mh_heap.central[sizeclass];

	mh_lock(&mc->lock);
	/* The span may have died (and been reborn) since our free: in the
	 * hands of an owner, which needs no lock of ours to let it die. So
	 * gen is read again after `remote` (a new life's stores to it are
	 * releases): unchanged, the span was unowned in our life, and then
	 * only holders of this lock can change it. */
	if (LOAD_ACQUIRE(&s->gen) == gen) {
		int64_t st = LOAD_ACQUIRE(&s->remote);
		int64_t pending = st >> REMOTE_SHIFT;

		if (!(st & REMOTE_OWNED) && LOAD_ACQUIRE(&s->gen) == gen &&
		    s->list != MSPAN_LIST_NONE) {
			if (pending == (int64_t)s->outstanding) {
				mspan_check_frees(s);
				central_remove(mc, s);
				mheap_free_span(s);
			} else if (pending > 0 && s->list == MSPAN_LIST_FULL) {
				central_remove(mc, s);
				central_push(mc, s, MSPAN_LIST_PARTIAL);
			}
		}
	}
	mh_unlock(&mc->lock);
}
