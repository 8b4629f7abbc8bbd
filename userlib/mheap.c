// SPDX-License-Identifier: MIT
/*
 * The page heap: spans are made here from runs of pages and come back here
 * when their last object is freed (see mheap.h). Growing the heap reserves
 * whole 64 MiB heap arenas through the arena map; the page allocator then
 * carves spans from them lowest address first.
 */
#include <errno.h>
#include <string.h>

#include "mheap_impl.h"
#include "pagealloc.h"
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
				      sizeof(uint64_t));	/* keep gen */
		for (unsigned c = 0; c < MH_NUM_CLASSES; c++)
			mh_lock_reinit(&mh_heap.central[c].lock);
		scavenge_init();
		STORE_RELEASE(&mh_heap.initialized, 1);
	}
	mh_unlock(&mh_heap.lock);
}

static struct mspan *span_struct_alloc(unsigned words)
{
	unsigned b = span_bucket(words);
	struct mspan *s = fixalloc_alloc(&mh_heap.spanalloc[b]);

	return s;
}

static void span_struct_free(struct mspan *s)
{
	unsigned words = s->state == MSPAN_SMALL ? mspan_bitmap_words(s->nelems) : 0;

	s->state = MSPAN_DEAD;
	/* A freer that still holds this pointer compares generations. */
	STORE_RELEASE(&s->gen, s->gen + 1);
	fixalloc_free(&mh_heap.spanalloc[span_bucket(words)], s);
}

struct mspan *mheap_alloc_span(uintptr_t npages, uintptr_t align_pages,
			       unsigned sizeclass, enum mspan_state state)
{
	struct pa_result r;
	struct mspan *s;

	mh_lock(&mh_heap.lock);
	r = pa_alloc(npages, align_pages);
	if (!r.base) {
		uintptr_t want = npages + align_pages - 1;

		if (want > (SIZE_MAX >> MH_PAGE_SHIFT) - MH_PAGES_PER_ARENA ||
		    !arenamap_grow((want + MH_PAGES_PER_ARENA - 1) / MH_PAGES_PER_ARENA))
			goto nomem;
		r = pa_alloc(npages, align_pages);
		if (!r.base)
			goto nomem;
	}
	s = span_struct_alloc(sizeclass ? mspan_bitmap_words(mh_class[sizeclass].nelems) : 0);
	if (!s) {
		pa_free(r.base, npages, false);
		goto nomem;
	}
	s->base = r.base;
	s->npages = npages;
	if (sizeclass) {
		mspan_init_small(s, sizeclass);
	} else {
		s->state = (uint8_t)state;
		s->needzero = r.needzero;
		s->nelems = 1;
		s->owner = NULL;	/* mh_free's fast path: not a small span */
	}
	if (state == MSPAN_LARGE)
		mh_heap.large_live_bytes += npages << MH_PAGE_SHIFT;
	arenamap_set_spans(r.base, npages, s);
	scavenge_note_alloc();
	mh_unlock(&mh_heap.lock);
	return s;
nomem:
	mh_unlock(&mh_heap.lock);
	errno = ENOMEM;
	return NULL;
}

bool mheap_grow_span(struct mspan *s, uintptr_t npages)
{
	struct pa_result r;
	uintptr_t extra = npages - s->npages;
	uintptr_t end = mspan_limit(s);
	bool ok;

	mh_lock(&mh_heap.lock);
	ok = pa_alloc_at(end, extra, &r);
	if (ok) {
		arenamap_set_spans(end, extra, s);
		s->npages = npages;
		s->needzero |= r.needzero;
		mh_heap.large_live_bytes += extra << MH_PAGE_SHIFT;
		scavenge_note_alloc();
	}
	mh_unlock(&mh_heap.lock);
	return ok;
}

void mheap_free_span(struct mspan *s)
{
	mheap_free_span_released(s, false);
}

void mheap_free_span_released(struct mspan *s, bool released)
{
	mh_lock(&mh_heap.lock);
	if (s->state == MSPAN_LARGE)
		mh_heap.large_live_bytes -= s->npages << MH_PAGE_SHIFT;
	arenamap_set_spans(s->base, s->npages, NULL);
	pa_free(s->base, s->npages, released);
	span_struct_free(s);
	scavenge_after_free();
	mh_unlock(&mh_heap.lock);
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
