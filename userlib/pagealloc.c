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
 * Summaries exist for every chunk and every arena, kept up to date by every
 * change of the bits, so that a search skips any block whose summary
 * cannot help and scans at most 8 words. The cost is 2 bits of metadata
 * per 8 KiB page (allocation and scavenged bits) plus 100 bytes per 64 MiB
 * arena, and a search touches O(arenas + 16 + 8) words: as frugal as Go's
 * tree and as fast for the heap sizes a C process has (a thousand arenas is
 * 64 GiB). The search itself, and where each kind of run is placed, is in
 * pagealloc_search.c; the scavenger's walk over the free pages in
 * pagealloc_scavenge.c; what the three files share in pagealloc_impl.h.
 * This file keeps the state: the bitmaps and summaries, allocation and free,
 * and the chunks handed to the per-thread page caches.
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
#include "pagealloc_impl.h"

uint64_t pa_total_pages;
uint64_t pa_free_pages;
uint64_t pa_released_pages;
uint64_t pa_refault_pages;
uint64_t pa_refault_horizon_ns;

uintptr_t pa_scav_top;
uint64_t pa_epoch;

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

/* Recompute the summaries of chunks [first_chunk, last_chunk] of ha, then
 * the arena's own; whether a run grew (its length or an end's longer), and
 * (*start_grew) the one at the bottom. */
static bool recompute_sums(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk,
			   bool *start_grew)
{
	struct pa_sum old = ha->sum;

	pa_epoch++;
	for (unsigned c = first_chunk; c <= last_chunk; c++) {
		ha->chunk_sum[c] = pa_summarize(ha->alloc, c * PA_CHUNK_PAGES, PA_CHUNK_PAGES);
		if (ha->chunk_sum[c].max == PA_CHUNK_PAGES)
			ha->small_chunks &= (uint16_t)~(1u << c);
	}
	struct pa_sum s = ha->chunk_sum[0];
	for (unsigned c = 1; c < PA_CHUNKS; c++)
		s = merge(s, c * PA_CHUNK_PAGES, ha->chunk_sum[c], PA_CHUNK_PAGES);
	ha->sum = s;
	*start_grew = s.start > old.start;
	return s.start > old.start || s.end > old.end || s.max > old.max;
}

void pa_update_sums(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk)
{
	bool start_grew;

	if (recompute_sums(ha, first_chunk, last_chunk, &start_grew))
		pa_hints_lower(ha, start_grew);
}

void pa_sums_only(struct heap_arena *ha, unsigned first_chunk, unsigned last_chunk)
{
	bool start_grew;

	recompute_sums(ha, first_chunk, last_chunk, &start_grew);
}

void pa_grow(struct heap_arena *ha, size_t n)
{
	const struct pa_sum chunk = { PA_CHUNK_PAGES, PA_CHUNK_PAGES, PA_CHUNK_PAGES };
	const struct pa_sum all = { MH_PAGES_PER_ARENA, MH_PAGES_PER_ARENA, MH_PAGES_PER_ARENA };

	for (size_t i = 0; i < n; i++) {
		for (unsigned w = 0; w < PA_WORDS; w++) {
			ha[i].alloc[w] = 0;
			ha[i].scav[w] = ~(uint64_t)0;
		}
		for (unsigned c = 0; c < PA_CHUNKS; c++)
			ha[i].chunk_sum[c] = chunk;
		ha[i].sum = all;
		ha[i].small_chunks = 0;
	}
	pa_epoch++;
	/* Free runs of every length may now begin in ha[0], or in the whole
	 * free arenas below it whose run it continues: the hints of every
	 * length come down to there, once (per arena, each one walked back
	 * through all the whole free ones below it: n * n steps). */
	pa_hints_lower(ha, true);
	pa_total_pages += (uint64_t)n * MH_PAGES_PER_ARENA;
	pa_free_pages += (uint64_t)n * MH_PAGES_PER_ARENA;
	pa_released_pages += (uint64_t)n * MH_PAGES_PER_ARENA;
}

/*
 * Frees of many runs at once (pa_free_batch) leave the summaries of the
 * chunks they touched to the end of the batch: the runs of a flushed span
 * cache mostly share an arena and its chunks, and a summary update costs
 * as much as the bits of a whole run (pa_summarize over the chunk, the
 * merge of all 16). The arena whose summaries wait, and which of its chunks.
 */
static struct heap_arena *stale_arena;
static uint16_t stale_chunks;

static void sums_catch_up(uint64_t now)
{
	struct heap_arena *ha = stale_arena;
	unsigned first, last;

	if (!ha)
		return;
	first = (unsigned)__builtin_ctz(stale_chunks);
	last = 31 - (unsigned)__builtin_clz(stale_chunks);
	pa_update_sums(ha, first, last);
	for (unsigned c = first; c <= last; c++)
		if (stale_chunks & (1u << c))
			ha->chunk_used[c] = now;
	stale_arena = NULL;
	stale_chunks = 0;
}

/*
 * Mark pages [p, p + n) in use (alloc) or free (!alloc), arena by arena.
 * Allocation also collects and clears the scavenged bits of the run. A
 * batch (now != 0: its time) leaves the summaries stale (above).
 */
static void mark(uintptr_t p, uintptr_t n, bool alloc, struct pa_result *res, uint64_t batch)
{
	uint64_t now = batch ? batch : mh_nanotime();
	uintptr_t start = p;

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
		if (batch) {
			if (ha != stale_arena)
				sums_catch_up(now);
			stale_arena = ha;
			stale_chunks |= (uint16_t)(((1u << ((last - 1) / PA_CHUNK_PAGES + 1)) - 1) &
						   ~((1u << (first / PA_CHUNK_PAGES)) - 1));
		} else {
			/* A run freed across arenas lowers the hints once, at its
			 * first arena: the run it joins begins there or below,
			 * and a lowering at each of the next ones, walked back
			 * through the whole free arenas before it, would cost
			 * n * n steps for n arenas. */
			if (p == start)
				pa_update_sums(ha, first / PA_CHUNK_PAGES, (last - 1) / PA_CHUNK_PAGES);
			else
				pa_sums_only(ha, first / PA_CHUNK_PAGES, (last - 1) / PA_CHUNK_PAGES);
			for (unsigned c = first / PA_CHUNK_PAGES; c <= (last - 1) / PA_CHUNK_PAGES; c++)
				ha->chunk_used[c] = now;
		}
		n -= k;
		p += (uintptr_t)k << MH_PAGE_SHIFT;
	}
}

void pa_set_scavenged(struct heap_arena *ha, unsigned first, unsigned n)
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
	mark(p, npages, true, &res, 0);
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
	mark(base, npages, true, res, 0);
	pa_free_pages -= npages;
	pa_released_pages -= res->released;
	return true;
}

/* What pa_free and pa_free_batch share: the run is free, n pages more. */
static void freed(uintptr_t base, uintptr_t npages, bool released)
{
	pa_free_pages += npages;
	if (!released && base + (npages << MH_PAGE_SHIFT) > pa_scav_top)
		pa_scav_top = base + (npages << MH_PAGE_SHIFT);
}

void pa_free(uintptr_t base, uintptr_t npages, bool released)
{
	mark(base, npages, false, NULL, 0);
	freed(base, npages, released);
	if (released) {
		for (uintptr_t p = base, n = npages; n;) {
			struct heap_arena *ha = arena_of(p);
			unsigned first = (unsigned)arena_page(ha, p);
			unsigned k = (unsigned)(n < MH_PAGES_PER_ARENA - first ? n : MH_PAGES_PER_ARENA - first);

			pa_set_scavenged(ha, first, k);
			n -= k;
			p += (uintptr_t)k << MH_PAGE_SHIFT;
		}
	}
}

void pa_free_batch(uintptr_t base, uintptr_t npages, uint64_t now)
{
	mark(base, npages, false, NULL, now);
	freed(base, npages, false);
}

void pa_free_batch_end(uint64_t now)
{
	sums_catch_up(now);
}

/* The bits of a chunk's pages in their bitmap word. */
static uint64_t chunk_mask(unsigned page)
{
	uint64_t m = PA_CHUNK_TAKE_PAGES == 64 ? ~(uint64_t)0
					       : ((uint64_t)1 << PA_CHUNK_TAKE_PAGES) - 1;

	return m << (page % 64);
}

void pa_mark_small(uintptr_t base, uintptr_t npages)
{
	uintptr_t end = base + (npages << MH_PAGE_SHIFT);

	/* First fit may have run it on into the next arena. */
	for (uintptr_t p = base; p < end; p = ALIGN_DOWN(p, MH_ARENA_SIZE) + MH_ARENA_SIZE) {
		struct heap_arena *ha = arena_of(p);
		uintptr_t last = end - ha->base > MH_ARENA_SIZE ? MH_PAGES_PER_ARENA - 1
							      : arena_page(ha, end - 1);

		for (uintptr_t c = arena_page(ha, p) / PA_CHUNK_PAGES; c <= last / PA_CHUNK_PAGES; c++)
			ha->small_chunks |= (uint16_t)(1u << c);
	}
}

uintptr_t pa_chunk_take(uint64_t *free)
{
	uintptr_t p = pa_find(1, 1, PA_LOW);

	if (!p)
		return 0;
	struct heap_arena *ha = arena_of(p);
	unsigned page = (unsigned)ALIGN_DOWN(arena_page(ha, p), PA_CHUNK_TAKE_PAGES);
	uint64_t *word = &ha->alloc[page / 64], m = chunk_mask(page);

	*free = (~*word & m) >> (page % 64);
	*word |= m;
	ha->small_chunks |= (uint16_t)(1u << (page / PA_CHUNK_PAGES));
	pa_update_sums(ha, page / PA_CHUNK_PAGES, page / PA_CHUNK_PAGES);
	ha->chunk_used[page / PA_CHUNK_PAGES] = mh_nanotime();
	return ha->base + ((uintptr_t)page << MH_PAGE_SHIFT);
}

struct pa_result pa_chunk_alloc(uintptr_t base, uintptr_t npages)
{
	struct pa_result res = { .base = base };

	mark(base, npages, true, &res, 0);	/* in use already: takes the scavenged bits */
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
	pa_update_sums(ha, page / PA_CHUNK_PAGES, page / PA_CHUNK_PAGES);
	ha->chunk_used[page / PA_CHUNK_PAGES] = mh_nanotime();
	/* Resident pages among them are the scavenger's to find again. */
	if (resident) {
		uintptr_t top = ha->base +
				((uintptr_t)(w * 64 + 64 - (unsigned)__builtin_clzll(resident)) << MH_PAGE_SHIFT);

		if (top > pa_scav_top)
			pa_scav_top = top;
	}
}

