// SPDX-License-Identifier: MIT
/* Per-thread caches: see mcache.h. */
#include <errno.h>
#include <string.h>

#include "mcache.h"
#include "mheap_impl.h"
#include "pagecache.h"
#include "scan.h"
#include "secure.h"
#include "sizeclass.h"

__thread struct mcache *mh_tls_cache;
__thread struct mcache *mh_tls_fast_cache = &mh_no_cache;
__thread bool mh_tls_exited;
struct mspan mh_empty_span = {
	.full = ~(uint64_t)0,
	.window = MSPAN_WINDOW_CLOSED,
};
/* Never written: zero-filled, it costs no memory until a stray pointer in
 * the top arena of the address space makes a free read it. */
struct mspan *mh_no_spans[MH_PAGES_PER_ARENA] MH_LARGE_ZERO(mh_no_spans);
/* Heap pointers lie below 1 << MH_ADDR_BITS: none is in the top arena of
 * the address space, where a cache's arena starts (mcache_borrow). */
#define NO_ARENA_BASE	((uintptr_t)0 - MH_ARENA_SIZE)
struct mcache mh_no_cache = {
	.alloc = { [0 ... MH_NUM_CLASSES - 1] = &mh_empty_span },
	.alloc_small = { [0 ... MH_DIRECT_MAX / MH_SMALL_SIZE_DIV] = &mh_empty_span },
	.free_arena_base = NO_ARENA_BASE,
	.free_arena_spans = mh_no_spans,
};
uint64_t mh_dead_nmalloc[MH_NUM_CLASSES];
uint64_t mh_dead_nfree[MH_NUM_CLASSES];
mh_lock_t mh_caches_lock = MH_LOCK_INIT;
struct list mh_caches;

static pthread_key_t cache_key;
static int cache_key_ready;

/* ------------------------------------------------------------ current spans */

/* Set to[0, pairs * 2) to the pair two (a constant count: unrolled). */
static inline void put_pairs(struct mspan **to, unsigned pairs, struct mspan *const two[2])
{
#pragma GCC unroll 4
	for (unsigned i = 0; i < pairs; i++)
		memcpy(&to[2 * i], two, 2 * sizeof(two[0]));
}

/* Set to[0, n) to s, n >= 1: up to two entries one at a time, more two
 * a store, in runs of 2, 4 or 8 entries from the start, the last run
 * ending at n (overlapping the one before). A class has 1, 2, 4, 8 or 16
 * size steps; a store an entry, with the loop's test, took 66
 * instructions a span change in one-thread `larson`
 * (docs/heap-objects-log.md#the-span-changes-own-work-2026-12-07-issue-24). */
static inline void fill_spans(struct mspan **to, unsigned n, struct mspan *s)
{
	struct mspan *const two[2] = { s, s };

	if (n <= 2) {
		to[0] = s;
		to[n - 1] = s;
	} else if (n < 4) {
		put_pairs(to, 1, two);
		put_pairs(&to[n - 2], 1, two);
	} else if (n < 8) {
		put_pairs(to, 2, two);
		put_pairs(&to[n - 4], 2, two);
	} else {
		for (unsigned i = 0; i + 8 < n; i += 8)
			put_pairs(&to[i], 4, two);
		put_pairs(&to[n - 8], 4, two);
	}
}

/* Make s the span class cls allocates from, under both of its names. s is
 * fresh or has just been swept, which left no free notification armed: the
 * current span's frees need no bookkeeping. */
static void set_current(struct mcache *c, unsigned cls, struct mspan *s)
{
	uint32_t size = mh_class[cls].size;

	STORE_RELEASE(&c->alloc[cls], s);	/* stats read its window */
	if (size <= MH_DIRECT_MAX) {
		/* Requests of (previous class's size, size] bytes, and
		 * malloc(0) with the smallest class. */
		unsigned k = cls == 1 ? 0 : mh_class[cls - 1].size / MH_SMALL_SIZE_DIV + 1;

		fill_spans(&c->alloc_small[k], size / MH_SMALL_SIZE_DIV + 1 - k, s);
	}
}

/* ------------------------------------------------------------ owned lists */

/* Local frees that put a used-up span back on the partial list. */
static uint32_t reuse_frees(const struct mspan *s)
{
	uint32_t n = s->nelems / MH_CACHE_REUSE_SHARE;

	return n > 1 ? n : 1;
}

static struct list *list_of(struct mcache *c, const struct mspan *s, enum mspan_list which)
{
	switch (which) {
	case MSPAN_LIST_CACHE_PARTIAL:
		return &c->partial[s->sizeclass];
	case MSPAN_LIST_CACHE_EMPTY:
		return &c->empty[s->sizeclass];
	default:
		return &c->full[s->sizeclass];
	}
}

/* Append s to the cache's list `which` of its class, newest last, and arm
 * the free that moves it on: on the full list the reuse_frees()-th moves
 * it to the partial list; there, the one that may leave it entirely free
 * is looked at (mcache_local_free_slow); on the empty list none can come.
 * This and cache_list_unlink are inline: the free's slow path moves a span
 * with the two, and calls to them cost it more than their bodies. */
static inline void cache_list_append(struct mcache *c, struct mspan *s, enum mspan_list which)
{
	size_t bytes = s->npages << MH_PAGE_SHIFT;

	if (which == MSPAN_LIST_CACHE_FULL) {
		c->full_bytes += bytes;
		mspan_notify_at(s, reuse_frees(s));
	} else if (which == MSPAN_LIST_CACHE_EMPTY) {
		STORE_RELAXED(&c->empty_bytes, c->empty_bytes + bytes);
		mspan_notify_at(s, UINT32_MAX);
	} else {
		mspan_notify_at(s, s->nalloc);
	}
	list_push_tail(list_of(c, s, which), &s->link);
	s->list = (uint8_t)which;
}

static inline void cache_list_unlink(struct mcache *c, struct mspan *s)
{
	size_t bytes = s->npages << MH_PAGE_SHIFT;

	list_remove(list_of(c, s, s->list), &s->link);
	if (s->list == MSPAN_LIST_CACHE_FULL)
		c->full_bytes -= bytes;
	else if (s->list == MSPAN_LIST_CACHE_EMPTY)
		STORE_RELAXED(&c->empty_bytes, c->empty_bytes - bytes);
	s->list = MSPAN_LIST_NONE;
}

/* An owned span that is not current goes back to its mcentral. */
static void give_back(struct mcache *c, struct mspan *s)
{
	cache_list_unlink(c, s);
	mcentral_uncache_span(s);
}

/* Take owned, entirely free span s off the empty list for the page heap,
 * onto *chain (c->empty_lock held). No freer can still come (each object
 * has been freed once), so there is nothing for the mcentral to settle.
 * `remote` keeps its owned flag until the span is reborn: a late
 * mcentral_remote_event of an earlier trip through the mcentral must not
 * take it for unowned. */
static void unlink_empty(struct mcache *c, struct mspan *s, struct mspan **chain)
{
	cache_list_unlink(c, s);
	STORE_RELAXED(&s->owner, NULL);
	s->chain = *chain;
	*chain = s;
}

/*
 * Over the cap: give back the oldest empty spans, of class cls first, then
 * of the classes after it, until the cache is a batch's worth
 * (MH_BATCH_BYTES) under the cap - all in one hold of the heap lock. One
 * span at a time, every span a thread empties beyond the cap would take
 * the lock, and so would the span its next refill makes. The caller holds
 * c->empty_lock.
 */
static void trim_empty(struct mcache *c, unsigned cls)
{
	struct mspan *chain = NULL;

	for (unsigned n = 1; n < MH_NUM_CLASSES; n++) {
		struct list *l = &c->empty[cls];

		while (l->head && c->empty_bytes > MH_CACHE_EMPTY_MAX - MH_BATCH_BYTES)
			unlink_empty(c, mspan_of_link(l->head), &chain);
		if (c->empty_bytes <= MH_CACHE_EMPTY_MAX - MH_BATCH_BYTES)
			break;
		cls = cls + 1 < MH_NUM_CLASSES ? cls + 1 : 1;
	}
	mheap_free_spans(chain);
}

/* Spans that came with the one a refill asked for (mcentral.c, "batches"),
 * chained through next: owned and entirely free until a refill adopts
 * them. Over the cap, other classes' empty spans go back first. */
static void keep_spares(struct mcache *c, struct mspan *spare)
{
	unsigned cls;

	if (!spare)
		return;
	cls = spare->sizeclass;
	mh_lock(&c->empty_lock);
	while (spare) {
		struct mspan *next = spare->chain;

		spare->nalloc = 0;
		cache_list_append(c, spare, MSPAN_LIST_CACHE_EMPTY);
		spare = next;
	}
	if (c->empty_bytes > MH_CACHE_EMPTY_MAX)
		trim_empty(c, cls % (MH_NUM_CLASSES - 1) + 1);
	mh_unlock(&c->empty_lock);
}

/* Stop allocating from c's current span of class cls and return it. */
static struct mspan *drop_current(struct mcache *c, unsigned cls)
{
	struct mspan *s = c->alloc[cls];

	/* The window's objects were counted but never handed out; the
	 * window closes (a span is current while it has one). */
	owner_add(&c->nmalloc[cls], -(uint64_t)mspan_window_free(s));
	if (s != &mh_empty_span)
		mspan_close_window(s);
	set_current(c, cls, &mh_empty_span);
	return s;
}

static void release_idle(struct mcache *c);

static void release_spans(struct mcache *c)
{
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		struct mspan *s = drop_current(c, cls);

		if (s != &mh_empty_span)
			mcentral_uncache_span(s);
		while (c->partial[cls].head)
			give_back(c, mspan_of_link(c->partial[cls].head));
		while (c->full[cls].head)
			give_back(c, mspan_of_link(c->full[cls].head));
	}
	release_idle(c);
}

/* Unlink c, fold its counters into the global ones and free it. Called
 * with caches_lock held, after release_spans. */
static void retire(struct mcache *c)
{
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		mh_dead_nmalloc[cls] += c->nmalloc[cls];
		mh_dead_nfree[cls] += c->nfree[cls];
	}
	list_remove(&mh_caches, &c->link);
	mh_lock(&mh_heap.lock);
	page_cache_unregister(&c->pages);
	fixalloc_free(&mh_heap.cachealloc, c);
	mh_unlock(&mh_heap.lock);
}

void mcache_give_back(struct mcache *c)
{
	release_spans(c);
	mh_lock(&mh_caches_lock);
	retire(c);
	mh_unlock(&mh_caches_lock);
}

static void thread_exit(void *arg)
{
	if (unlikely(mh_secure))
		secure_thread_exit();
	mh_tls_cache = NULL;
	mh_tls_fast_cache = &mh_no_cache;
	mh_tls_exited = true;
	mcache_give_back(arg);
}

void mcache_key_init(void)
{
	/* Outside every allocator lock: pthread_key_create may allocate. */
	if (!cache_key_ready && pthread_key_create(&cache_key, thread_exit) == 0) {
		STORE_RELEASE(&cache_key_ready, 1);
		if (mh_tls_cache)
			pthread_setspecific(cache_key, mh_tls_cache);
	}
}

struct mcache *mcache_borrow(void)
{
	struct fixalloc_run run = { NULL, 0 };
	struct mcache *c;

	mheap_init();
	mh_lock(&mh_heap.lock);
	if (!mh_heap.cachealloc.size) {
		/* Keep remote_hint, and meta_run from its start on. */
		fixalloc_init(&mh_heap.cachealloc, sizeof(struct mcache),
			      sizeof(c->remote_hint), offsetof(struct mcache, meta_run));
		/* From the span structs' slab (mheap.c, fixalloc.h). */
		fixalloc_share(&mh_heap.cachealloc, &mh_heap.spanalloc[0]);
	}
	/* A new cache starts a run of its own, on pages no other thread's
	 * metadata shares (fixalloc.h): each thread writes its own cache at
	 * every free. Its structs follow it there. A reused cache keeps
	 * the run it had. */
	c = fixalloc_alloc_run(&mh_heap.cachealloc, &run);
	if (c) {
		if (run.next)
			c->meta_run = run;
		page_cache_register(&c->pages);
	}
	mh_unlock(&mh_heap.lock);
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	STORE_RELAXED(&c->alloc[0], &mh_empty_span);
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++)
		set_current(c, cls, &mh_empty_span);
	mh_lock_reinit(&c->empty_lock);
	c->free_arena_base = NO_ARENA_BASE;
	c->free_arena_spans = mh_no_spans;
	mh_lock(&mh_caches_lock);
	list_push_head(&mh_caches, &c->link);
	mh_unlock(&mh_caches_lock);
	return c;
}

struct mcache *mcache_create(void)
{
	struct mcache *c;

	/* Given back for good: see mcache.h, "thread exit". */
	if (mh_tls_exited)
		return NULL;
	c = mcache_borrow();
	if (!c)
		return NULL;
	mh_tls_cache = c;
	mh_tls_fast_cache = c;
	/* Registers the exit hook. Before the key exists (the very first
	 * allocation) mcache_key_init registers this cache later. */
	if (LOAD_ACQUIRE(&cache_key_ready))
		pthread_setspecific(cache_key, c);
	/* The thread's stack bounds, for the quarantine scan (no lock held);
	 * not in the process's malloc, which pthread_getattr_np calls
	 * (scan_stacks.c). */
	if (!mh_process_malloc)
		scan_stack_record();
	return c;
}

void mcache_count_uncached(uint64_t *dead, unsigned cls)
{
	mh_lock(&mh_caches_lock);
	dead[cls]++;
	mh_unlock(&mh_caches_lock);
}

/* Make owned span s current: sweep it and take its first free object. */
static uintptr_t adopt(struct mcache *c, unsigned cls, struct mspan *s)
{
	uintptr_t p;

	if (s->list != MSPAN_LIST_NONE)	/* empty spans come unlinked */
		cache_list_unlink(c, s);
	mspan_sweep(s);
	/* The sweep left free_words: the first free object below
	 * `touched` is found without a look at each word (mspan.h); with
	 * none there, a span of fresh pages goes a page further. */
	p = mspan_refill_window(s);
	if (!p && s->touched != s->nelems)
		p = mspan_next_free(s);
	if (p)
		set_current(c, cls, s);
	else	/* frees still in flight: nothing to take yet */
		cache_list_append(c, s, MSPAN_LIST_CACHE_FULL);
	return p;
}

/* The newest entirely free span of class cls, off its list; NULL if none. */
static struct mspan *empty_take_newest(struct mcache *c, unsigned cls)
{
	struct mspan *s = NULL;

	if (!LOAD_RELAXED(&c->empty_bytes))
		return NULL;
	mh_lock(&c->empty_lock);
	if (c->empty[cls].tail) {
		s = mspan_of_link(c->empty[cls].tail);
		cache_list_unlink(c, s);
	}
	mh_unlock(&c->empty_lock);
	return s;
}

uintptr_t mcache_alloc_slow(struct mcache *c, unsigned cls)
{
	struct mspan *s = c->alloc[cls];
	uintptr_t p;

	STORE_RELAXED(&c->refills, c->refills + 1);	/* "trimming" */

	if (s != &mh_empty_span) {
		/* The window ran out, the span may not (a span of fresh
		 * pages goes a page further). With every object touched and
		 * no word left with a free one, mspan_next_free would only
		 * look at free_words again (malloc's refill lane, which comes
		 * here, has just found it empty) and close the window. */
		if (s->touched != s->nelems || s->free_words) {
			p = mspan_next_free(s);
			if (p)
				return p;
		} else {
			mspan_close_window(s);
		}
		/* Used up. With enough freed since its sweep, sweeping in
		 * place keeps the thread on memory warm in its CPU cache. */
		if (mspan_pending_frees(s) > s->nelems / 4) {
			mspan_sweep(s);
			p = mspan_next_free(s);
			if (p)
				return p;
		}
		s->nalloc = s->nelems;	/* every object was handed out */
		/* Under its class name only: the size names, read by this
		 * thread's fast path alone, are set once on the way out. */
		STORE_RELAXED(&c->alloc[cls], &mh_empty_span);
		if (mspan_local_frees(s) >= reuse_frees(s)) {
			cache_list_append(c, s, MSPAN_LIST_CACHE_PARTIAL);
		} else {
			cache_list_append(c, s, MSPAN_LIST_CACHE_FULL);
			/* Over the cap: the oldest used-up span of this class
			 * goes back to the mcentral. */
			if (c->full_bytes > MH_CACHE_FULL_MAX)
				give_back(c, mspan_of_link(c->full[cls].head));
		}
	}
	/* Owned spans this thread has freed into, oldest first; then the
	 * entirely free ones, newest (warmest) first. */
	while (c->partial[cls].head) {
		p = adopt(c, cls, mspan_of_link(c->partial[cls].head));
		if (p)
			return p;
	}
	while ((s = empty_take_newest(c, cls))) {
		p = adopt(c, cls, s);
		if (p)
			return p;
	}
	/* The oldest used-up spans, for frees made by other threads: only
	 * when there have been such frees into this class since the last
	 * look (each adds to the hint once per span and sweep); a look that
	 * finds none takes back what it saw of the hint, the next remote
	 * free raises it again. */
	int64_t hint = LOAD_RELAXED(&c->remote_hint[cls]);

	if (hint > 0) {
		bool found = false;

		for (int i = 0; i < MH_CACHE_SCAN && c->full[cls].head; i++) {
			s = mspan_of_link(c->full[cls].head);
			if (LOAD_RELAXED(&s->remote) >= REMOTE_ONE) {
				found = true;
				__atomic_fetch_sub(&c->remote_hint[cls], 1, __ATOMIC_RELAXED);
				p = adopt(c, cls, s);
				if (p)
					return p;
			} else {
				cache_list_unlink(c, s);
				cache_list_append(c, s, MSPAN_LIST_CACHE_FULL);
			}
		}
		if (!found)
			__atomic_fetch_sub(&c->remote_hint[cls], hint, __ATOMIC_RELAXED);
	}
	for (;;) {
		struct mspan *spare;

		s = mcentral_cache_span(cls, c, &spare);
		keep_spares(c, spare);
		if (!s) {
			set_current(c, cls, &mh_empty_span);
			return 0;
		}
		p = mspan_next_free(s);
		if (p) {
			set_current(c, cls, s);
			return p;
		}
		/* Nothing free after all (frees still in flight): next one. */
		mcentral_uncache_span(s);
	}
}

void mcache_local_free_slow(struct mcache *c, struct mspan *s)
{
	/* Acquire: the bits of the frees counted are in place. Not clamped
	 * at zero: below zero, a sweep has folded a remote free whose count
	 * is still to come, and until it comes the span is not entirely free
	 * (that freer still writes to it; were the span given back, its count
	 * would land on the struct's next life). */
	int64_t remote = LOAD_ACQUIRE(&s->remote) >> REMOTE_SHIFT;

	if (s->list == MSPAN_LIST_CACHE_FULL) {
		cache_list_unlink(c, s);
		cache_list_append(c, s, MSPAN_LIST_CACHE_PARTIAL);
	}
	if (s->list == MSPAN_LIST_CACHE_PARTIAL &&
	    (int64_t)mspan_local_frees(s) + remote >= (int64_t)s->nalloc) {
		/* Entirely free, unless a racing double free counted one
		 * object twice; then kept for reuse up to the cap. */
		mspan_check_frees(s);
		cache_list_unlink(c, s);
		mh_lock(&c->empty_lock);
		cache_list_append(c, s, MSPAN_LIST_CACHE_EMPTY);
		if (c->empty_bytes > MH_CACHE_EMPTY_MAX)
			trim_empty(c, s->sizeclass);
		mh_unlock(&c->empty_lock);
	}
}

/* Every empty span of c onto *chain; c->empty_lock held. */
static void unlink_all_empty(struct mcache *c, struct mspan **chain)
{
	for (unsigned cls = 1; cls < MH_NUM_CLASSES && c->empty_bytes; cls++)
		while (c->empty[cls].head)
			unlink_empty(c, mspan_of_link(c->empty[cls].head), chain);
}

void mcache_release_empty(struct mcache *c)
{
	struct mspan *chain = NULL;

	mh_lock(&c->empty_lock);
	unlink_all_empty(c, &chain);
	mh_unlock(&c->empty_lock);
	mheap_free_spans(chain);
}

/* c's empty spans and its freed large objects back to the page heap. */
static void release_idle(struct mcache *c)
{
	struct mspan *chain = NULL;

	mh_lock(&c->empty_lock);
	unlink_all_empty(c, &chain);
	mcache_large_drain(c, &chain);
	mh_unlock(&c->empty_lock);
	mheap_free_spans(chain);
}

void mcache_trim(bool idle_only)
{
	struct mspan *chain = NULL;
	struct mcache *c;

	if (!idle_only)
		mh_lock(&mh_caches_lock);
	else if (pthread_mutex_trylock(&mh_caches_lock))
		return;
	list_for_each(c, &mh_caches, link) {
		uint32_t refills = LOAD_RELAXED(&c->refills);

		if (idle_only && refills != c->refills_seen) {
			c->refills_seen = refills;	/* busy since the last pass */
			continue;
		}
		if ((!LOAD_RELAXED(&c->empty_bytes) && !LOAD_RELAXED(&c->nlarge)) ||
		    pthread_mutex_trylock(&c->empty_lock))
			continue;	/* nothing, or its owner is at it */
		unlink_all_empty(c, &chain);
		mcache_large_drain(c, &chain);
		mh_unlock(&c->empty_lock);
	}
	mh_unlock(&mh_caches_lock);
	mheap_free_spans(chain);
}

/*
 * Fork. The child has only the thread that called fork; the others' caches
 * must give their spans back, or those spans stay owned by no one who can
 * free into them locally or hand their objects out. But the owners changed
 * those caches without a lock, and a thread forked in the middle of a step
 * (a list move, a window refill, a sweep, a free) leaves its cache as no
 * consistent snapshot: a span linked into a list before its tag says so,
 * a count not yet added. So the child trusts nothing of a dead cache but
 * its counters. It finds the spans it owned through the heap itself - the
 * arena map names every span in use, and a small span names its owner -
 * and gives each back from its bitmaps alone: a sweep folds every free
 * recorded in them, the remote count is set to the bits it folded (no
 * freer is left to be in flight; for the same reason every small span's
 * pins are dropped, mspan.h, "Dying spans"), and the mcentral takes the
 * span as from any owner (mcentral_uncache_span), overwriting its list
 * links unread.
 * A step cut short can only have recorded less than it meant to - a free
 * not yet in a bitmap, a handed-out object not yet marked - so an
 * object is never taken for free while the child may still hold it; at
 * worst a free object stays marked allocated for good (a leak in the
 * child). Spans on their way between the page heap and a cache, owned by
 * no one yet or any more, leak the same way. The cost is one look at each
 * page of the heap per fork: 8,192 loads per 64 MiB arena.
 */
static void reclaim_dead_spans(struct mcache *mine)
{
	struct mspan *cached = NULL;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		for (uintptr_t i = 0; i < MH_PAGES_PER_ARENA; i++) {
			struct mspan *s = ha->spans[i];

			/* A span's first page names it once (it may run on
			 * into the next arena). */
			if (!s || s->base != ha->base + (i << MH_PAGE_SHIFT))
				continue;
			if (s->state == MSPAN_CACHED) {
				/* Freed large objects, of any cache or none
				 * (on their way out of one); this thread's
				 * list forgets its own below. */
				s->chain = cached;
				cached = s;
				continue;
			}
			if (s->state != MSPAN_SMALL)
				continue;
			/* A remote freer cut short between its pin and its
			 * count left its pin: it will never take it off, and
			 * the span would die held, its struct kept out of
			 * reuse for good (mspan.h, "Dying spans"). Every
			 * small span's, owned or not: no freer is in flight. */
			__atomic_fetch_and(&s->remote, ~REMOTE_PINS, __ATOMIC_RELAXED);
			if (!s->owner || s->owner == mine)
				continue;
			mspan_sweep(s);
			STORE_RELEASE(&s->remote, REMOTE_OWNED);
			mcentral_uncache_span(s);
		}
	}
	if (mine) {
		mine->nlarge = 0;
		mine->large_bytes = 0;
		mine->large_lengths = 0;
		memset(mine->large_count, 0, sizeof(mine->large_count));
	}
	mheap_free_spans(cached);
}

void mcache_after_fork_child(void)
{
	struct mcache *c, *next;

	list_for_each(c, &mh_caches, link)
		if (c != mh_tls_cache)
			for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++)
				drop_current(c, cls);
	reclaim_dead_spans(mh_tls_cache);
	for (c = list_entry(mh_caches.head, struct mcache, link); c; c = next) {
		next = list_entry(c->link.next, struct mcache, link);
		if (c != mh_tls_cache)
			retire(c);
	}
}
