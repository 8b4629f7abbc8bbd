// SPDX-License-Identifier: MIT
/*
 * The page allocator (Go's mpagealloc.go, scaled to this heap).
 *
 * Go keeps one bit per page and a radix tree of summaries over the whole
 * address space: each summary says how many free pages a block starts with,
 * ends with, and holds in its longest run (start, max, end), so a search
 * descends only into blocks that can satisfy it and finds the lowest-
 * addressed fit. We keep exactly that state - one bit per page plus
 * (start, max, end) summaries - but in three levels that follow our own
 * structure instead of a five-level tree sized for 48-bit address spaces:
 *
 *   arena list (address order) -> 16 chunks of 512 pages -> 8 bitmap words
 *
 * Summaries exist for every chunk and every arena; a search walks the
 * arenas, skipping any whose summary cannot help, descends into 16 chunk
 * summaries, then scans at most 8 words. Runs that cross chunk or arena
 * boundaries are found by carrying the free pages at the end of one block
 * into the next (arenas only when adjacent). The cost is 2 bits of metadata
 * per 8 KiB page (allocation and scavenged bits) plus 100 bytes per 64 MiB
 * arena, and a search touches O(arenas + 16 + 8) words: as frugal as Go's
 * tree and as fast for the heap sizes a C process has (a thousand arenas is
 * 64 GiB). Address-ordered first fit keeps the heap dense at low addresses;
 * large objects come from the best-fitting free run, in it the place with
 * the fewest released pages, and of equals the highest (find_dirty; mheap.c
 * says why), so the two do not interleave, and the scavenger releases from
 * the top. find_high, the mirror of the search, serves what only a run
 * across arenas can hold.
 *
 * Scavenged bits: a free page with its bit set holds no memory (never
 * touched, or released with MADV_DONTNEED) and reads as zero; allocation
 * clears the bits and reports whether any page of the run may be dirty, so
 * calloc of fresh or released memory does not clear it again. Each chunk
 * also records when it was last allocated from or freed into, and when the
 * scavenger last released pages of it: the scavenger leaves recently used
 * chunks alone and learns from allocations that take back what it
 * released (scavenge.c).
 */
#include "pagealloc.h"
#include "sysmem.h"

uint64_t pa_total_pages;
uint64_t pa_free_pages;
uint64_t pa_released_pages;
uint64_t pa_refault_pages;
uint64_t pa_refault_horizon_ns;

/* No free, resident page lies at or above this address: the scavenger
 * starts its downward walk here instead of at the top of the heap. */
static uintptr_t scav_top;

/* ------------------------------------------------------------ bit helpers */

static unsigned next_set(const uint64_t *w, unsigned i, unsigned lim)
{
	while (i < lim) {
		uint64_t v = w[i / 64] >> (i % 64);

		if (v) {
			i += (unsigned)__builtin_ctzll(v);
			return i < lim ? i : lim;
		}
		i = (i / 64 + 1) * 64;
	}
	return lim;
}

static unsigned next_clear(const uint64_t *w, unsigned i, unsigned lim)
{
	while (i < lim) {
		uint64_t v = ~w[i / 64] >> (i % 64);

		if (v) {
			i += (unsigned)__builtin_ctzll(v);
			return i < lim ? i : lim;
		}
		i = (i / 64 + 1) * 64;
	}
	return lim;
}

static uint64_t range_mask(unsigned lo, unsigned hi)	/* bits [lo, hi) of a word */
{
	uint64_t m = hi >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);

	return m & ~(((uint64_t)1 << lo) - 1);
}

/* Walking down from i (exclusive) to lo: one past the highest page whose
 * bit is set (flip 0) or clear (flip ~0), or lo if there is none. */
static unsigned prev_bit(const uint64_t *w, unsigned i, unsigned lo, uint64_t flip)
{
	while (i > lo) {
		unsigned k = (i - 1) / 64;
		uint64_t v = (w[k] ^ flip) & range_mask(0, i - k * 64);

		if (v) {
			i = k * 64 + 64 - (unsigned)__builtin_clzll(v);
			return i > lo ? i : lo;
		}
		i = k * 64;
	}
	return lo;
}

struct pa_sum pa_summarize(const uint64_t *bits, unsigned from, unsigned len)
{
	/* Word by word (from and len are multiples of 64): free words extend
	 * the current run, full words end it, mixed words are walked run by
	 * run with ctz. `cur` is the free run reaching the current position. */
	unsigned cur = 0, max = 0, start = 0;
	bool seen_used = false;

	for (unsigned w = from / 64; w < (from + len) / 64; w++) {
		uint64_t v = bits[w];

		if (v == 0) {
			cur += 64;
			continue;
		}
		unsigned lead = (unsigned)__builtin_ctzll(v);
		cur += lead;
		if (!seen_used) {
			start = cur;
			seen_used = true;
		}
		if (cur > max)
			max = cur;
		/* Runs strictly inside the word: between used bits. */
		unsigned pos = lead;
		for (;;) {
			uint64_t rest = ~v >> pos;	/* free bits from pos on */
			unsigned used = rest ? (unsigned)__builtin_ctzll(rest) : 64 - pos;

			pos += used;
			if (pos >= 64) {
				cur = 0;
				break;
			}
			uint64_t more = v >> pos;	/* used bits from pos on */
			if (!more) {			/* free to the top */
				cur = 64 - pos;
				break;
			}
			unsigned run = (unsigned)__builtin_ctzll(more);

			if (run > max)
				max = run;
			pos += run;
		}
	}
	if (!seen_used)
		start = cur;
	if (cur > max)
		max = cur;
	return (struct pa_sum){ .start = (uint16_t)start, .max = (uint16_t)max,
				.end = (uint16_t)cur };
}

/* Summary of a left block of lsize pages followed by a right one. */
static struct pa_sum merge(struct pa_sum l, unsigned lsize, struct pa_sum r, unsigned rsize)
{
	struct pa_sum s;
	unsigned max = l.max > r.max ? l.max : r.max;

	if ((unsigned)l.end + r.start > max)
		max = (unsigned)l.end + r.start;
	s.start = (uint16_t)(l.start == lsize ? lsize + r.start : l.start);
	s.end = (uint16_t)(r.end == rsize ? rsize + l.end : r.end);
	s.max = (uint16_t)max;
	return s;
}

static void update_sums(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk)
{
	for (unsigned c = first_chunk; c <= last_chunk; c++)
		ha->chunk_sum[c] = pa_summarize(ha->alloc, c * PA_CHUNK_PAGES, PA_CHUNK_PAGES);
	struct pa_sum s = ha->chunk_sum[0];
	for (unsigned c = 1; c < PA_CHUNKS; c++)
		s = merge(s, c * PA_CHUNK_PAGES, ha->chunk_sum[c], PA_CHUNK_PAGES);
	ha->sum = s;
}

void pa_arena_init(struct heap_arena *ha)
{
	for (unsigned w = 0; w < PA_WORDS; w++) {
		ha->alloc[w] = 0;
		ha->scav[w] = ~(uint64_t)0;
	}
	update_sums(ha, 0, PA_CHUNKS - 1);
	pa_total_pages += MH_PAGES_PER_ARENA;
	pa_free_pages += MH_PAGES_PER_ARENA;
	pa_released_pages += MH_PAGES_PER_ARENA;
}

/* ------------------------------------------------------------ search */

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

/* Lowest-addressed run of n free pages, as an address; 0 if none. */
static uintptr_t find(uintptr_t n)
{
	uintptr_t carry = 0, prev_limit = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		if (ha->base != prev_limit)
			carry = 0;
		prev_limit = ha->base + MH_ARENA_SIZE;
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
	struct heap_arena *ha = arenamap_first();
	uintptr_t carry = 0, prev_base = 0;

	while (ha && ha->next)
		ha = ha->next;
	for (; ha; ha = ha->prev) {
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
};

/* Consider n pages at page p of ha, moved into free run [start, end). */
static void dirty_consider(struct dirty_fit *f, const struct heap_arena *ha, unsigned start,
			   unsigned end, long at, unsigned n, unsigned align)
{
	unsigned p = at < start ? start : (unsigned)at;
	uintptr_t rel;

	if (p + n > end)
		p = end - n;
	p = (unsigned)ALIGN_DOWN(p, align);
	if (p < start)
		p = (unsigned)ALIGN_UP(start, align);
	if (p + n > end)
		return;
	rel = count_released(ha, p, n);
	if (end - start < f->run_len || (end - start == f->run_len && rel < f->released)) {
		f->base = ha->base + ((uintptr_t)p << MH_PAGE_SHIFT);
		f->released = rel;
		f->run_len = end - start;
	}
}

/*
 * Best fit, dirty first: where n pages aligned to align pages go, as an
 * address; 0 if no free run inside one arena can hold them. The shortest
 * free run that can hold them (best fit: long runs stay whole for long
 * blocks; measured against fewest-released-pages-first, which grew the heap
 * by an arena in some runs: docs/heap.md#placement), and in it the place
 * with the fewest released pages (each faults in again, about 3 us per
 * 4 KiB): its top, or against either end of a resident stretch (a freed
 * block's pages, with released ones around them); of equals, the highest.
 * A walk over the free runs of the arenas, for large objects only: one
 * such block costs a thousand times more to fault in than the walk.
 */
static uintptr_t find_dirty(uintptr_t n, uintptr_t align)
{
	struct heap_arena *ha = arenamap_first();
	struct dirty_fit f = { 0, UINTPTR_MAX, UINTPTR_MAX };
	uintptr_t want = n + align - 1;

	while (ha && ha->next)
		ha = ha->next;
	for (; ha; ha = ha->prev) {
		unsigned i = MH_PAGES_PER_ARENA;

		if (ha->sum.max < want)
			continue;
		while (i > 0) {
			unsigned end = prev_bit(ha->alloc, i, 0, ~(uint64_t)0), start;

			if (end == 0)
				break;
			start = prev_bit(ha->alloc, end, 0, 0);
			i = start;
			if (end - start < want || end - start > f.run_len)
				continue;
			dirty_consider(&f, ha, start, end, end, (unsigned)n, (unsigned)align);
			for (unsigned r = start; (r = next_clear(ha->scav, r, end)) < end;) {
				unsigned r_end = next_set(ha->scav, r, end);

				dirty_consider(&f, ha, start, end, (long)r_end - (long)n, (unsigned)n,
					       (unsigned)align);
				dirty_consider(&f, ha, start, end, r, (unsigned)n, (unsigned)align);
				r = r_end;
			}
			if (f.released == 0 && f.run_len == want)
				return f.base;
		}
	}
	return f.base;
}

/*
 * Mark pages [p, p + n) in use (alloc) or free (!alloc), arena by arena.
 * Allocation also collects and clears the scavenged bits of the run.
 */
static void mark(uintptr_t p, uintptr_t n, bool alloc, struct pa_result *res)
{
	uint64_t now = mh_nanotime();

	while (n) {
		struct heap_arena *ha = arena_of(p);
		unsigned first = (unsigned)arena_page(ha, p);
		unsigned k = (unsigned)(n < MH_PAGES_PER_ARENA - first ? n : MH_PAGES_PER_ARENA - first);
		unsigned last = first + k;	/* exclusive */

		for (unsigned w = first / 64; w * 64 < last; w++) {
			unsigned lo = w * 64 < first ? first - w * 64 : 0;
			unsigned hi = (w + 1) * 64 > last ? last - w * 64 : 64;
			uint64_t m = range_mask(lo, hi);

			if (alloc) {
				uint64_t scav = ha->scav[w] & m;
				uint64_t rel = ha->chunk_released[w * 64 / PA_CHUNK_PAGES];

				if (scav && rel && now - rel < pa_refault_horizon_ns)
					pa_refault_pages += (uintptr_t)mh_popcount(scav);
				res->released += (uintptr_t)mh_popcount(scav);
				if (scav != m)
					res->needzero = true;
				ha->scav[w] &= ~m;
				ha->alloc[w] |= m;
			} else {
				ha->alloc[w] &= ~m;
			}
		}
		update_sums(ha, first / PA_CHUNK_PAGES, (last - 1) / PA_CHUNK_PAGES);
		for (unsigned c = first / PA_CHUNK_PAGES; c <= (last - 1) / PA_CHUNK_PAGES; c++)
			ha->chunk_used[c] = now;
		n -= k;
		p += (uintptr_t)k << MH_PAGE_SHIFT;
	}
}

/* Mark free pages [first, first + n) of ha as released. */
static void set_scavenged(struct heap_arena *ha, unsigned first, unsigned n)
{
	for (unsigned w = first / 64; w * 64 < first + n; w++) {
		unsigned lo = w * 64 < first ? first - w * 64 : 0;
		unsigned hi = (w + 1) * 64 > first + n ? first + n - w * 64 : 64;

		ha->scav[w] |= range_mask(lo, hi);
	}
	pa_released_pages += n;
}

/* Whether every page of [base, base + npages) lies in a heap arena with
 * its allocation bit (scav: its scavenged bit) clear. */
static bool run_clear(uintptr_t base, uintptr_t npages, bool scav)
{
	for (uintptr_t p = base, n = npages; n;) {
		struct heap_arena *ha = arena_of(p);

		if (!ha)
			return false;
		const uint64_t *bits = scav ? ha->scav : ha->alloc;
		unsigned first = (unsigned)arena_page(ha, p);
		unsigned k = (unsigned)(n < MH_PAGES_PER_ARENA - first ? n : MH_PAGES_PER_ARENA - first);

		for (unsigned w = first / 64; w * 64 < first + k; w++) {
			unsigned lo = w * 64 < first ? first - w * 64 : 0;
			unsigned hi = (w + 1) * 64 > first + k ? first + k - w * 64 : 64;

			if (bits[w] & range_mask(lo, hi))
				return false;
		}
		n -= k;
		p += (uintptr_t)k << MH_PAGE_SHIFT;
	}
	return true;
}

uintptr_t pa_find(uintptr_t npages, uintptr_t align_pages, enum pa_where where)
{
	uintptr_t want = npages + align_pages - 1;
	uintptr_t align = align_pages << MH_PAGE_SHIFT;
	uintptr_t p;

	if (where == PA_DIRTY) {
		p = find_dirty(npages, align_pages);
		if (p)
			return p;
		/* Only runs across arenas can hold it: the highest. */
	}
	if (where != PA_LOW) {
		p = find_high(want);
		return p ? ALIGN_DOWN(p - (npages << MH_PAGE_SHIFT), align) : 0;
	}
	p = find(want);
	return p ? ALIGN_UP(p, align) : 0;
}

bool pa_resident(uintptr_t base, uintptr_t npages)
{
	return run_clear(base, npages, true);
}

struct pa_result pa_alloc(uintptr_t npages, uintptr_t align_pages, enum pa_where where)
{
	struct pa_result res = { 0 };
	uintptr_t p = pa_find(npages, align_pages, where);

	if (!p)
		return res;
	mark(p, npages, true, &res);
	res.base = p;
	pa_free_pages -= npages;
	pa_released_pages -= res.released;
	return res;
}

bool pa_alloc_at(uintptr_t base, uintptr_t npages, struct pa_result *res)
{
	if (!run_clear(base, npages, false))
		return false;
	*res = (struct pa_result){ .base = base };
	mark(base, npages, true, res);
	pa_free_pages -= npages;
	pa_released_pages -= res->released;
	return true;
}

void pa_free(uintptr_t base, uintptr_t npages, bool released)
{
	mark(base, npages, false, NULL);
	pa_free_pages += npages;
	if (!released && base + (npages << MH_PAGE_SHIFT) > scav_top)
		scav_top = base + (npages << MH_PAGE_SHIFT);
	if (released) {
		for (uintptr_t p = base, n = npages; n;) {
			struct heap_arena *ha = arena_of(p);
			unsigned first = (unsigned)arena_page(ha, p);
			unsigned k = (unsigned)(n < MH_PAGES_PER_ARENA - first ? n : MH_PAGES_PER_ARENA - first);

			set_scavenged(ha, first, k);
			n -= k;
			p += (uintptr_t)k << MH_PAGE_SHIFT;
		}
	}
}

/* The bits of a chunk's pages in their bitmap word. */
static uint64_t chunk_mask(unsigned page)
{
	uint64_t m = PA_CHUNK_TAKE_PAGES == 64 ? ~(uint64_t)0
					       : ((uint64_t)1 << PA_CHUNK_TAKE_PAGES) - 1;

	return m << (page % 64);
}

uintptr_t pa_chunk_take(uint64_t *free)
{
	uintptr_t p = find(1);

	if (!p)
		return 0;
	struct heap_arena *ha = arena_of(p);
	unsigned page = (unsigned)ALIGN_DOWN(arena_page(ha, p), PA_CHUNK_TAKE_PAGES);
	uint64_t *word = &ha->alloc[page / 64], m = chunk_mask(page);

	*free = (~*word & m) >> (page % 64);
	*word |= m;
	update_sums(ha, page / PA_CHUNK_PAGES, page / PA_CHUNK_PAGES);
	ha->chunk_used[page / PA_CHUNK_PAGES] = mh_nanotime();
	return ha->base + ((uintptr_t)page << MH_PAGE_SHIFT);
}

struct pa_result pa_chunk_alloc(uintptr_t base, uintptr_t npages)
{
	struct pa_result res = { .base = base };

	mark(base, npages, true, &res);	/* in use already: takes the scavenged bits */
	pa_free_pages -= npages;
	pa_released_pages -= res.released;
	return res;
}

void pa_chunk_return(uintptr_t base, uint64_t free)
{
	if (!free)	/* nothing taken, perhaps no chunk either */
		return;

	struct heap_arena *ha = arena_of(base);
	unsigned page = (unsigned)arena_page(ha, base), w = page / 64;
	uint64_t m = free << (page % 64), resident = m & ~ha->scav[w];

	ha->alloc[w] &= ~m;
	update_sums(ha, page / PA_CHUNK_PAGES, page / PA_CHUNK_PAGES);
	ha->chunk_used[page / PA_CHUNK_PAGES] = mh_nanotime();
	/* Resident pages among them are the scavenger's to find again. */
	if (resident) {
		uintptr_t top = ha->base +
				((uintptr_t)(w * 64 + 64 - (unsigned)__builtin_clzll(resident)) << MH_PAGE_SHIFT);

		if (top > scav_top)
			scav_top = top;
	}
}

static inline bool resident_free(const struct heap_arena *ha, unsigned page)
{
	return !((ha->alloc[page / 64] | ha->scav[page / 64]) >> (page % 64) & 1);
}

/* Highest free, resident page below hi, or -1. */
static long prev_resident_free(const struct heap_arena *ha, unsigned hi)
{
	while (hi > 0) {
		unsigned w = (hi - 1) / 64;
		uint64_t v = ~(ha->alloc[w] | ha->scav[w]) & range_mask(0, hi - w * 64);

		if (v)
			return (long)(w * 64 + 63 - (unsigned)__builtin_clzll(v));
		hi = w * 64;
	}
	return -1;
}

/* Set (take) or clear (give back) the allocation bits of pages
 * [first, first + n) of ha, whose scavenged bits are clear. */
static void mark_taken(struct heap_arena *ha, unsigned first, unsigned n, bool take)
{
	for (unsigned w = first / 64; w * 64 < first + n; w++) {
		unsigned lo = w * 64 < first ? first - w * 64 : 0;
		unsigned hi = (w + 1) * 64 > first + n ? first + n - w * 64 : 64;

		if (take)
			ha->alloc[w] |= range_mask(lo, hi);
		else
			ha->alloc[w] &= ~range_mask(lo, hi);
	}
	update_sums(ha, first / PA_CHUNK_PAGES, (first + n - 1) / PA_CHUNK_PAGES);
}

uint64_t pa_scavenging_pages;

uintptr_t pa_scavenge_take(uintptr_t npages, uint64_t idle_ns, struct pa_scav_batch *b)
{
	struct heap_arena *ha = NULL;
	uintptr_t kept_top = 0;	/* end of the highest resident run left alone */
	uint64_t now = idle_ns ? mh_nanotime() : 0;
	unsigned hi;

	b->n = 0;
	b->pages = 0;
	b->retry_at = 0;
	/* The highest arena starting below scav_top (arenas need not be
	 * adjacent: scav_top may sit at the base of one, above a gap). */
	for (struct heap_arena *a = arenamap_first(); a && a->base < scav_top; a = a->next)
		ha = a;
	if (!ha)
		return 0;
	hi = scav_top - ha->base >= MH_ARENA_SIZE ? MH_PAGES_PER_ARENA
						  : (unsigned)((scav_top - ha->base) >> MH_PAGE_SHIFT);
	for (; ha; ha = ha->prev, hi = MH_PAGES_PER_ARENA) {
		while (b->pages < npages && b->n < PA_SCAV_BATCH) {
			long top = prev_resident_free(ha, hi);

			if (top < 0) {
				hi = 0;
				break;
			}
			unsigned c = (unsigned)top / PA_CHUNK_PAGES;
			unsigned floor = c * PA_CHUNK_PAGES;

			if (now - ha->chunk_used[c] < idle_ns) {
				/* Used within idle_ns: likely to be used again
				 * soon, so its pages stay (scavenge.c). */
				uint64_t cold_at = ha->chunk_used[c] + idle_ns;

				if (!b->retry_at || cold_at < b->retry_at)
					b->retry_at = cold_at;
				if (!kept_top)
					kept_top = ha->base + ((uintptr_t)(top + 1) << MH_PAGE_SHIFT);
				hi = floor;
				continue;
			}
			unsigned lo = (unsigned)top;
			while (lo > floor && (uintptr_t)(top - lo) + 1 < npages - b->pages &&
			       resident_free(ha, lo - 1))
				lo--;
			unsigned n = (unsigned)top + 1 - lo;

			mark_taken(ha, lo, n, true);
			b->base[b->n] = ha->base + ((uintptr_t)lo << MH_PAGE_SHIFT);
			b->npages[b->n++] = n;
			b->pages += n;
			hi = lo;
		}
		if (b->pages >= npages || b->n == PA_SCAV_BATCH)
			break;
	}
	/* Everything from here up is now in use, released, being released
	 * or left alone below kept_top. */
	scav_top = ha ? ha->base + ((uintptr_t)hi << MH_PAGE_SHIFT) : 0;
	if (kept_top > scav_top)
		scav_top = kept_top;
	pa_scavenging_pages += b->pages;
	return b->pages;
}

void pa_scavenge_release(const struct pa_scav_batch *b)
{
	for (unsigned i = 0; i < b->n; i++)
		sys_release((void *)b->base[i], (size_t)b->npages[i] << MH_PAGE_SHIFT);
}

void pa_scavenge_return(const struct pa_scav_batch *b)
{
	for (unsigned i = 0; i < b->n; i++) {
		struct heap_arena *ha = arena_of(b->base[i]);
		unsigned first = (unsigned)arena_page(ha, b->base[i]);

		mark_taken(ha, first, (unsigned)b->npages[i], false);
		set_scavenged(ha, first, (unsigned)b->npages[i]);
		ha->chunk_released[first / PA_CHUNK_PAGES] = mh_nanotime();
	}
	pa_scavenging_pages -= b->pages;
}
