// SPDX-License-Identifier: MIT
/*
 * The thread's cache of freed large objects (tcmalloc's per-thread cache,
 * Go's mcache, for what they keep of blocks above the size classes).
 *
 * A thread that frees and allocates large blocks again and again paid two
 * holds of the heap lock per pair - contended wherever another thread
 * frees or allocates in the page heap meanwhile - and wrote the arena map
 * for every page of the block twice, once to NULL and once back. So a
 * thread keeps the large objects it frees, up to MH_LARGE_CACHE_SPAN_MAX
 * bytes each, MH_LARGE_CACHE_SPANS of them and MH_LARGE_CACHE_BYTES in
 * all (mcache.h), and its next large request of at most that length takes
 * the shortest one that holds it, if that is not more than
 * 1/MH_LARGE_CACHE_SLACK longer: no heap lock, no arena-map write. The
 * cache is the span struct itself: its pages keep mapping to it, in state
 * MSPAN_CACHED, so a free of any of its pages finds a freed block and
 * reports it as a free of free pages is reported (checkedfree.h): a
 * double free, or an invalid one for an unaligned pointer.
 *
 * Exactness: every free of a large object claims it first
 * (span_large_claim: a compare-and-swap of gen, mheap_impl.h), and only
 * the claimer puts it here, so of two frees of one block, at once or not,
 * the second finds it claimed or cached and aborts. Taking it out is the
 * object's rebirth (span_large_birth), made by the owner alone before it
 * hands the block out.
 *
 * Small spans: a thread that needs a new small span from the page heap
 * gives its kept blocks back first (mcentral.c): it is not churning large
 * blocks just then, and in the page heap their pages can serve small
 * spans, which took fresh pages while the blocks sat here (a hash map
 * built up: +0.9 MiB peak RSS).
 *
 * The old block realloc moves away from goes to the page heap too
 * (free.c, large_free): growth in place needs free runs there.
 *
 * Bounds: beyond the caps the oldest goes to the page heap.
 *
 * The list: the lengths kept are a bitmap with a count per length, so a
 * take finds the shortest that fits with one look and a miss takes nothing
 * else. The list is under a flag of its own (large_busy), which the
 * owner's put and take set with one atomic exchange and clear with a
 * store: the empty_lock, a pthread mutex, cost a call into libc and a
 * locked instruction each way on every put and take. The others that take
 * the list - mh_scavenge and the scavenger's trim of idle caches (mcache.h,
 * "trimming"), which take every kept span back as they take empty spans -
 * set the flag only under the empty_lock, so the owner under that lock
 * always gets it, and whoever finds it set gives up rather than wait: a
 * put sends its block to the page heap, a take misses, a trim leaves the
 * list for its next pass. Thread exit gives them back with the rest of the
 * cache, and a fork's child takes every other thread's from the arena map
 * (mcache.c, "Fork"). The secure mode's middle blocks come here after
 * their delay (secure_middle.c). To the page heap the cached spans are in
 * use, live large bytes (large_live_bytes) until they go back; the stats
 * count them as idle, freed memory (stats.c). Measured:
 * docs/heap.md#the-threads-large-span-cache.
 */
#include <string.h>

#include "mcache.h"
#include "mheap_impl.h"

/* Bit n-1 of large_lengths for every length n in [lo, hi] pages. */
static uint64_t lengths_between(uintptr_t lo, uintptr_t hi)
{
	uint64_t upto = hi >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;

	return upto & ~(((uint64_t)1 << (lo - 1)) - 1);
}

/*
 * The list's flag: the owner's put and take set it without the empty_lock,
 * anyone else only with the empty_lock held - so the owner holding that
 * lock always gets it. False: another holds it (a put or take gives up).
 */
static bool large_list_try(struct mcache *c)
{
	return !__atomic_exchange_n(&c->large_busy, 1, __ATOMIC_ACQUIRE);
}

static void large_list_done(struct mcache *c)
{
	STORE_RELEASE(&c->large_busy, 0);
}

/* Entry i off c's list, the rest moved up (the list's flag held). */
static struct mspan *large_remove(struct mcache *c, unsigned i)
{
	struct mspan *s = c->large[i];
	unsigned n = c->nlarge - 1, len = c->large_npages[i];

	memmove(&c->large[i], &c->large[i + 1], (n - i) * sizeof(c->large[0]));
	memmove(&c->large_npages[i], &c->large_npages[i + 1], n - i);
	if (!--c->large_count[len - 1])
		STORE_RELAXED(&c->large_lengths, c->large_lengths & ~((uint64_t)1 << (len - 1)));
	STORE_RELAXED(&c->nlarge, n);
	STORE_RELAXED(&c->large_bytes, c->large_bytes - (s->npages << MH_PAGE_SHIFT));
	return s;
}

bool mcache_large_put(struct mcache *c, struct mspan *s)
{
	size_t bytes = s->npages << MH_PAGE_SHIFT;
	struct mspan *out = NULL, *old;

	if (bytes > MH_LARGE_CACHE_SPAN_MAX || !large_list_try(c))
		return false;	/* too long, or a trim is taking the list */
	/* Claimed: no other free can reach it, but they may read the state. */
	STORE_RELEASE(&s->state, (uint8_t)MSPAN_CACHED);
	while (c->nlarge == MH_LARGE_CACHE_SPANS || c->large_bytes + bytes > MH_LARGE_CACHE_BYTES) {
		old = large_remove(c, 0);
		old->chain = out;
		out = old;
	}
	c->large[c->nlarge] = s;
	c->large_npages[c->nlarge] = (uint8_t)s->npages;
	c->large_count[s->npages - 1]++;
	STORE_RELAXED(&c->large_lengths, c->large_lengths | (uint64_t)1 << (s->npages - 1));
	STORE_RELAXED(&c->nlarge, c->nlarge + 1);
	STORE_RELAXED(&c->large_bytes, c->large_bytes + bytes);
	large_list_done(c);
	mheap_free_spans(out);
	return true;
}

struct mspan *mcache_large_take(struct mcache *c, uintptr_t npages)
{
	struct mspan *s = NULL;
	uint64_t fits;

	if (npages > MH_LARGE_CACHE_PAGES_MAX)
		return NULL;
	/* Only the owner adds: a length not kept now will not be under the
	 * flag either, so a miss does not set it. */
	fits = lengths_between(npages, npages + npages / MH_LARGE_CACHE_SLACK);
	if (!(LOAD_RELAXED(&c->large_lengths) & fits) || !large_list_try(c))
		return NULL;
	fits &= c->large_lengths;	/* a trim may have taken them meanwhile */
	if (fits) {
		unsigned len = (unsigned)__builtin_ctzll(fits) + 1, i = c->nlarge;

		/* The shortest that holds it; of equals, the newest (warmest). */
		while (c->large_npages[--i] != len)
			;
		s = large_remove(c, i);
	}
	large_list_done(c);
	if (!s)
		return NULL;
	span_large_birth(s);
	s->needzero = 1;	/* it held a block */
	STORE_RELEASE(&s->state, (uint8_t)MSPAN_LARGE);
	return s;
}

void mcache_large_drain(struct mcache *c, struct mspan **chain)
{
	if (!large_list_try(c))
		return;	/* its owner is in a put or take */
	while (c->nlarge) {
		struct mspan *s = large_remove(c, c->nlarge - 1);

		s->chain = *chain;
		*chain = s;
	}
	large_list_done(c);
}

void mcache_large_release(struct mcache *c)
{
	struct mspan *chain = NULL;

	if (!LOAD_RELAXED(&c->nlarge))
		return;
	mh_lock(&c->empty_lock);
	mcache_large_drain(c, &chain);
	mh_unlock(&c->empty_lock);
	mheap_free_spans(chain);
}
