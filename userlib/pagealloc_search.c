// SPDX-License-Identifier: MIT
/*
 * The page allocator's search (Go's pageAlloc.find, mpagealloc.go): where
 * a run of pages goes, over the state pagealloc.c keeps.
 *
 * Summaries exist for every chunk and every arena; a search walks the
 * arenas, skipping any whose summary cannot help, descends into 16 chunk
 * summaries, then scans at most 8 words. Runs that cross chunk or arena
 * boundaries are found by carrying the free pages at the end of one block
 * into the next (arenas only when adjacent). Address-ordered first fit
 * keeps the heap dense at low addresses; large objects come from a place
 * outside the chunks that hold small spans if there is one, then from a
 * place with no released page, else from the best-fitting free run, in it
 * the place with the fewest released pages, and of equals the highest
 * (find_dirty; mheap.c says why), so the two do not interleave, and the
 * scavenger releases from the top. find_high, the mirror of the search,
 * serves what only a run across arenas can hold. find_released, for the
 * secure mode's guarded blocks, takes the lowest place of released pages.
 *
 * First fit starts at a hint (Go's searchAddr, one per power of two): no
 * free run of at least 1 << k pages begins below pa_hint[k] (a run begins
 * in the arena of its first page and may go on into the next ones). A
 * search for n pages starts at the hint for the largest power of two not
 * above n, 1 << k, and raises it to the arena where the first run of 1 << k
 * pages begins (it meets that run on its way), and the hints for the
 * powers of two not below n to where the run it found begins (past the
 * end: none). A free
 * that makes a run longer lowers them all to the arena where that run
 * begins (pa_hints_lower, from pa_update_sums). Without them a search
 * walked every arena from the bottom: with gigabytes of quarantined arena
 * chunks low in the heap, a chunk's search went through hundreds of full
 * arenas (docs/heap.md#placement).
 */
#include "pagealloc_impl.h"

/* 0: anywhere; UINTPTR_MAX: nowhere. Index PA_HINTS - 1 stands for every
 * larger power of two too. */
uintptr_t pa_hint[PA_HINTS];

static unsigned floor_log2(uintptr_t n)
{
	unsigned k = 63 - (unsigned)__builtin_clzll(n);

	return k < PA_HINTS - 1 ? k : PA_HINTS - 1;
}

/* No free run of n pages or more begins below arena address a. */
static void hints_raise(uintptr_t n, uintptr_t a)
{
	unsigned k = floor_log2(n);

	if (((uintptr_t)1 << k) < n) {
		if (k == PA_HINTS - 1)
			return;
		k++;
	}
	for (; k < PA_HINTS; k++)
		if (pa_hint[k] < a) {
			pa_hint[k] = a;
			pa_epoch++;
		}
}

void pa_hints_lower(const struct heap_arena *ha, bool start_grew)
{
	uintptr_t at = ha->base;

	/* Free pages at the bottom join a run that ends the arena below (and
	 * the one below it, while whole arenas are free). */
	for (const struct heap_arena *q; start_grew && (q = arena_of(at - 1)) && q->sum.end;) {
		at = q->base;
		if (q->sum.start != MH_PAGES_PER_ARENA)
			break;
	}
	for (unsigned k = 0; k < PA_HINTS; k++)
		if (pa_hint[k] > at)
			pa_hint[k] = at;
}

/* The arena first fit for n pages starts at (NULL: none can hold them). */
static struct heap_arena *hint_arena(uintptr_t n)
{
	uintptr_t h = pa_hint[floor_log2(n)];
	struct heap_arena *ha;

	if (h == UINTPTR_MAX)
		return NULL;
	/* An arena whose registration failed is in no list: from the bottom. */
	ha = h ? arena_of(h) : NULL;
	return ha ? ha : arenamap_first();
}

/* First run of at least n free pages inside chunk c, or -1. */
static long scan_chunk(const struct heap_arena *ha, unsigned c, unsigned n)
{
	unsigned lim = (c + 1) * PA_CHUNK_PAGES;
	unsigned i = c * PA_CHUNK_PAGES;

	while (i < lim) {
		unsigned z = next_clear(ha->alloc, i, lim);

		if (z == lim)
			break;
		i = next_set(ha->alloc, z, lim);
		if (i - z >= n)
			return z;
	}
	return -1;
}

/*
 * Lowest-addressed run of n free pages from arena ha on, as an address; 0
 * if none. *low: the arena where the first run of at least m pages (m <= n)
 * begins, UINTPTR_MAX if there is none (found on the way: that run is the
 * n-page one or comes before it).
 */
static uintptr_t find_from(struct heap_arena *ha, uintptr_t n, uintptr_t m, uintptr_t *low)
{
	uintptr_t carry = 0, prev_limit = 0;

	*low = UINTPTR_MAX;
	for (; ha; ha = ha->next) {
		if (ha->base != prev_limit)
			carry = 0;
		prev_limit = ha->base + MH_ARENA_SIZE;
		if (*low == UINTPTR_MAX && carry + ha->sum.start >= m)
			*low = ALIGN_DOWN(ha->base - (carry << MH_PAGE_SHIFT), MH_ARENA_SIZE);
		else if (*low == UINTPTR_MAX && ha->sum.max >= m)
			*low = ha->base;
		if (carry + ha->sum.start >= n)
			return ha->base - (carry << MH_PAGE_SHIFT);
		if (ha->sum.max >= n) {
			uintptr_t c_carry = carry;

			for (unsigned c = 0; c < PA_CHUNKS; c++) {
				struct pa_sum cs = ha->chunk_sum[c];
				uintptr_t cbase = ha->base + ((uintptr_t)c * PA_CHUNK_PAGES << MH_PAGE_SHIFT);

				if (c_carry + cs.start >= n)
					return cbase - (c_carry << MH_PAGE_SHIFT);
				if (cs.max >= n) {
					long at = scan_chunk(ha, c, (unsigned)n);

					if (at < 0)
						mh_fatal("page allocator summary out of date");
					return ha->base + ((uintptr_t)at << MH_PAGE_SHIFT);
				}
				c_carry = cs.start == PA_CHUNK_PAGES ? c_carry + PA_CHUNK_PAGES : cs.end;
			}
			mh_fatal("page allocator summary out of date");
		}
		carry = ha->sum.start == MH_PAGES_PER_ARENA ? carry + MH_PAGES_PER_ARENA : ha->sum.end;
	}
	return 0;
}

/* find_from at the hint for n, which it moves up: for the power of two it
 * started from, to where the first run that long begins; for those not
 * below n, to where the run it found begins. */
static uintptr_t find(uintptr_t n)
{
	unsigned k = floor_log2(n);
	uintptr_t low, p = find_from(hint_arena(n), n, (uintptr_t)1 << k, &low);

	if (pa_hint[k] < low) {
		pa_hint[k] = low;
		pa_epoch++;
	}
	hints_raise(n, p ? ALIGN_DOWN(p, MH_ARENA_SIZE) : UINTPTR_MAX);
	return p;
}

/* Highest run of at least n free pages inside chunk c, as the page number
 * just past its end, or -1. */
static long scan_chunk_high(const struct heap_arena *ha, unsigned c, unsigned n)
{
	unsigned lo = c * PA_CHUNK_PAGES;
	unsigned i = lo + PA_CHUNK_PAGES;

	while (i > lo) {
		unsigned end = prev_bit(ha->alloc, i, lo, ~(uint64_t)0);

		if (end == lo)
			break;
		i = prev_bit(ha->alloc, end, lo, 0);
		if (end - i >= n)
			return end;
	}
	return -1;
}

/*
 * End address of the highest-addressed run of n free pages; 0 if none.
 * The mirror of find(): arenas from the top down, chunks from the last,
 * carrying the free pages at the bottom of one block into the block below.
 */
static uintptr_t find_high(uintptr_t n)
{
	uintptr_t carry = 0, prev_base = 0;

	for (struct heap_arena *ha = arenamap_last(); ha; ha = ha->prev) {
		uintptr_t limit = ha->base + MH_ARENA_SIZE;

		if (limit != prev_base)
			carry = 0;
		prev_base = ha->base;
		if (ha->sum.end + carry >= n)
			return limit + (carry << MH_PAGE_SHIFT);
		if (ha->sum.max >= n) {
			uintptr_t c_carry = carry;

			for (unsigned c = PA_CHUNKS; c-- > 0;) {
				struct pa_sum cs = ha->chunk_sum[c];
				uintptr_t cend = ha->base +
					((uintptr_t)(c + 1) * PA_CHUNK_PAGES << MH_PAGE_SHIFT);

				if (cs.end + c_carry >= n)
					return cend + (c_carry << MH_PAGE_SHIFT);
				if (cs.max >= n) {
					long at = scan_chunk_high(ha, c, (unsigned)n);

					if (at < 0)
						mh_fatal("page allocator summary out of date");
					return ha->base + ((uintptr_t)at << MH_PAGE_SHIFT);
				}
				c_carry = cs.end == PA_CHUNK_PAGES ? c_carry + PA_CHUNK_PAGES
								   : cs.start;
			}
			mh_fatal("page allocator summary out of date");
		}
		carry = ha->sum.end == MH_PAGES_PER_ARENA ? carry + MH_PAGES_PER_ARENA
							  : ha->sum.start;
	}
	return 0;
}

/* Released pages among [first, first + n) of ha. */
static unsigned count_released(const struct heap_arena *ha, unsigned first, unsigned n)
{
	unsigned cnt = 0;

	for (unsigned w = first / 64; w * 64 < first + n; w++) {
		unsigned lo = w * 64 < first ? first - w * 64 : 0;
		unsigned hi = (w + 1) * 64 > first + n ? first + n - w * 64 : 64;

		cnt += (unsigned)mh_popcount(ha->scav[w] & range_mask(lo, hi));
	}
	return cnt;
}

/* The best place for n pages aligned to align pages so far (find_dirty). */
struct dirty_fit {
	uintptr_t base;
	uintptr_t released;
	uintptr_t run_len;
	bool among_small;	/* in a chunk that holds small spans */
	bool lowest;		/* of equal places the lowest, not the highest */
};

/* Whether the chunks of pages [p, p + n) of ha hold small spans. */
static bool among_small_spans(const struct heap_arena *ha, unsigned p, unsigned n)
{
	unsigned first = p / PA_CHUNK_PAGES, last = (p + n - 1) / PA_CHUNK_PAGES;

	return (ha->small_chunks >> first) & ((2u << (last - first)) - 1);
}

/* Whether a place at base needing rel released pages in a free run of
 * run_len pages is better than f: a place apart from small spans first,
 * then a fully resident place, then the shorter run, then fewer released
 * pages, then (f->lowest) the lower place. */
static bool better_fit(bool among_small, uintptr_t run_len, uintptr_t rel, uintptr_t base,
		       const struct dirty_fit *f)
{
	if (among_small != f->among_small)
		return !among_small;
	if ((rel == 0) != (f->released == 0))
		return rel == 0;
	if (run_len != f->run_len)
		return run_len < f->run_len;
	if (rel != f->released)
		return rel < f->released;
	return f->lowest && base < f->base;
}

/* Consider n pages at page p of ha, moved into free run [start, end). */
static void dirty_consider(struct dirty_fit *f, const struct heap_arena *ha, unsigned start,
			   unsigned end, long at, unsigned n, unsigned align)
{
	unsigned p = at < start ? start : (unsigned)at;
	uintptr_t rel, base;
	bool among_small;

	if (p + n > end)
		p = end - n;
	p = (unsigned)ALIGN_DOWN(p, align);
	if (p < start)
		p = (unsigned)ALIGN_UP(start, align);
	if (p + n > end)
		return;
	rel = count_released(ha, p, n);
	among_small = among_small_spans(ha, p, n);
	base = ha->base + ((uintptr_t)p << MH_PAGE_SHIFT);
	if (better_fit(among_small, end - start, rel, base, f)) {
		f->base = base;
		f->released = rel;
		f->run_len = end - start;
		f->among_small = among_small;
	}
}

/*
 * Best fit, dirty first: where n pages aligned to align pages go, as an
 * address; 0 if no free run inside one arena can hold them. Outside the
 * chunks that hold small spans if it can be (small spans carved into a
 * freed block's pages leave no run long enough for the next block of its
 * size, which then faults in fresh pages: docs/heap.md#placement); then a
 * place with no released page (each faults in again, about 3 us per 4 KiB)
 * in the shortest free run that has one; else the shortest free run that
 * can hold them (best fit: long runs stay whole for long blocks; measured
 * against fewest-released-pages-first, which grew the heap by an arena in
 * some runs: docs/heap.md#placement), and in it the place with the fewest
 * released pages. The places tried in a run: its top, and against either
 * end of each resident stretch (a freed block's pages, with released ones
 * around them); of equals, the highest. With apart (PA_APART) only a
 * resident place outside those chunks will do, the run's bottom is tried
 * too, and of equals the lowest wins: the blocks that go there stay below
 * the longer ones, which take the tops of the same runs (mheap.c says
 * why), else 0. Best fit alone took a shorter run
 * of released pages (the unused top of the last arena) over a resident
 * one, and the growth rule then released resident pages for each block it
 * faulted in (scavenge.c): a freed peak built again moved onto fresh pages
 * block by block, releasing itself as it went (docs/heap.md#scavenger).
 * A walk over the free runs of the arenas, for large objects only: one
 * such block costs a thousand times more to fault in than the walk.
 */
static uintptr_t find_dirty(uintptr_t n, uintptr_t align, bool apart)
{
	struct dirty_fit f = { 0, UINTPTR_MAX, UINTPTR_MAX, true, apart };
	uintptr_t want = n + align - 1;

	for (struct heap_arena *ha = arenamap_last(); ha; ha = ha->prev) {
		unsigned i = MH_PAGES_PER_ARENA;

		if (ha->sum.max < want)
			continue;
		while (i > 0) {
			unsigned end = prev_bit(ha->alloc, i, 0, ~(uint64_t)0), start;

			if (end == 0)
				break;
			start = prev_bit(ha->alloc, end, 0, 0);
			i = start;
			/* A longer run can only do better by a resident place
			 * or one apart from small spans. */
			if (end - start < want ||
			    (end - start > f.run_len && f.released == 0 && !f.among_small))
				continue;
			dirty_consider(&f, ha, start, end, end, (unsigned)n, (unsigned)align);
			if (apart)
				dirty_consider(&f, ha, start, end, start, (unsigned)n, (unsigned)align);
			for (unsigned r = start; (r = next_clear(ha->scav, r, end)) < end;) {
				unsigned r_end = next_set(ha->scav, r, end);

				dirty_consider(&f, ha, start, end, (long)r_end - (long)n, (unsigned)n,
					       (unsigned)align);
				dirty_consider(&f, ha, start, end, r, (unsigned)n, (unsigned)align);
				r = r_end;
			}
			if (f.released == 0 && f.run_len == want && !f.among_small)
				return f.base;
		}
	}
	if (apart && (f.released || f.among_small))
		return 0;
	return f.base;
}

/*
 * The lowest place of n pages aligned to align pages that are free and all
 * released; 0 if none. For the secure mode's guarded blocks, whose pages
 * their free drops (the guard backend's fault over the whole chunk,
 * secure_large.c): on resident free pages each took from the heap pages
 * the next blocks there faulted in again, about 3 us per 4 KiB
 * (docs/secure.md). A walk over the free runs as find_dirty's.
 */
static uintptr_t find_released(uintptr_t n, uintptr_t align)
{
	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		unsigned start = 0, end, r, r_end, p;

		if (ha->sum.max < n + align - 1)
			continue;
		while ((start = next_clear(ha->alloc, start, MH_PAGES_PER_ARENA)) <
		       MH_PAGES_PER_ARENA) {
			end = next_set(ha->alloc, start, MH_PAGES_PER_ARENA);
			for (r = start; (r = next_set(ha->scav, r, end)) < end; r = r_end) {
				r_end = next_clear(ha->scav, r, end);
				p = (unsigned)ALIGN_UP(r, align);
				if (p + n <= r_end)
					return ha->base + ((uintptr_t)p << MH_PAGE_SHIFT);
			}
			start = end;
		}
	}
	return 0;
}

uintptr_t pa_find(uintptr_t npages, uintptr_t align_pages, enum pa_where where)
{
	uintptr_t want = npages + align_pages - 1;
	uintptr_t align = align_pages << MH_PAGE_SHIFT;
	uintptr_t p;

	if (where == PA_RELEASED && (p = find_released(npages, align_pages)))
		return p;
	if (where == PA_APART)
		return find_dirty(npages, align_pages, true);
	if (where == PA_DIRTY) {
		p = find_dirty(npages, align_pages, false);
		if (p)
			return p;
		/* Only runs across arenas can hold it: the highest. */
	}
	if (where != PA_LOW && where != PA_RELEASED) {
		p = find_high(want);
		return p ? ALIGN_DOWN(p - (npages << MH_PAGE_SHIFT), align) : 0;
	}
	p = find(want);
	return p ? ALIGN_UP(p, align) : 0;
}

uintptr_t pa_hint_broken(void)
{
	/* The free run open at prev_limit (len 0: none) and where it began. */
	uintptr_t begin = 0, len = 0, prev_limit = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		unsigned i = 0, z;

		if (ha->base != prev_limit)
			len = 0;
		prev_limit = ha->base + MH_ARENA_SIZE;
		while ((z = next_clear(ha->alloc, i, MH_PAGES_PER_ARENA)) < MH_PAGES_PER_ARENA) {
			if (z > 0 || !len) {
				begin = ha->base + ((uintptr_t)z << MH_PAGE_SHIFT);
				len = 0;
			}
			i = next_set(ha->alloc, z, MH_PAGES_PER_ARENA);
			len += i - z;
			if (begin < pa_hint[floor_log2(len)])
				return len;
			if (i < MH_PAGES_PER_ARENA)
				len = 0;
		}
		if (ha->alloc[PA_WORDS - 1] >> 63)
			len = 0;
	}
	return 0;
}
