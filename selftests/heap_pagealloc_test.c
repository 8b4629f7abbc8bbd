// SPDX-License-Identifier: GPL-2.0
/*
 * The page allocator (pagealloc.c, pagealloc_search.c): the summaries of
 * the allocation bitmap against a bit-by-bit count, address-ordered first
 * fit and its high counterpart, both searches against a page-by-page walk,
 * first-fit hints under random allocations and frees; where blocks go:
 * large ones high and apart from small spans, released pages first for
 * the secure mode's guarded blocks, realloc-moved blocks low; a growth,
 * free and release of a terabyte in linear time.
 */
#define _GNU_SOURCE
#include <sys/sysinfo.h>

#include "heap_lib.h"
#include "testhooks.h"

TEST(page_summaries)
{
	uint64_t bits[8] = { 0 };
	struct pa_sum s = pa_summarize(bits, 0, 512);

	EXPECT_EQ(512, s.start);
	EXPECT_EQ(512, s.max);
	EXPECT_EQ(512, s.end);

	bits[0] = 0xf0;		/* pages 4..7 used */
	bits[3] = ~(uint64_t)0;	/* pages 192..255 used */
	bits[7] = (uint64_t)1 << 63;	/* page 511 used */
	s = pa_summarize(bits, 0, 512);
	EXPECT_EQ(4, s.start);
	EXPECT_EQ(0, s.end);
	EXPECT_EQ(511 - 256, s.max);
	s = pa_summarize(bits, 64, 128);
	EXPECT_EQ(128, s.start);
}

/* The obvious bit-by-bit summary, to check the word-wise one against. */
static struct pa_sum naive_summary(const uint64_t *bits, unsigned len)
{
	struct pa_sum s = { 0 };
	unsigned cur = 0;
	bool seen = false;

	for (unsigned i = 0; i < len; i++) {
		if (bits[i / 64] >> (i % 64) & 1) {
			if (!seen)
				s.start = (uint16_t)cur;
			seen = true;
			cur = 0;
		} else if (++cur > s.max) {
			s.max = (uint16_t)cur;
		}
	}
	if (!seen)
		s.start = (uint16_t)len;
	s.end = (uint16_t)cur;
	return s;
}

TEST(page_summaries_match_a_bit_by_bit_count)
{
	uint64_t bits[8];

	srand(7);
	for (int round = 0; round < 20000; round++) {
		for (int w = 0; w < 8; w++) {
			uint64_t r = ((uint64_t)rand() << 40) ^ ((uint64_t)rand() << 20) ^ (uint64_t)rand();

			/* Mix dense, sparse, empty and full words. */
			switch ((round + w) % 5) {
			case 0: bits[w] = 0; break;
			case 1: bits[w] = ~(uint64_t)0; break;
			case 2: bits[w] = r & (r >> 7) & (r >> 13); break;
			default: bits[w] = r; break;
			}
		}
		struct pa_sum want = naive_summary(bits, 512), got = pa_summarize(bits, 0, 512);

		ASSERT_EQ(want.start, got.start);
		ASSERT_EQ(want.max, got.max);
		ASSERT_EQ(want.end, got.end);
	}
}

TEST(page_allocator_is_address_ordered_first_fit)
{
	uintptr_t a, b, c, d;

	mh_free(mh_malloc(1));	/* a heap arena to work in */
	mh_lock(&mh_heap.lock);
	a = pa_alloc(100, 1, PA_LOW).base;
	b = pa_alloc(100, 1, PA_LOW).base;
	pa_free(a, 100, false);
	c = pa_alloc(50, 1, PA_LOW).base;	/* fits in a's hole: goes there */
	d = pa_alloc(50, 1, PA_LOW).base;	/* the rest of the hole */
	pa_free(b, 100, false);
	pa_free(c, 50, false);
	pa_free(d, 50, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, a);
	EXPECT_EQ(a + PAGES(100), b);
	EXPECT_EQ(a, c);
	EXPECT_EQ(a + PAGES(50), d);
}

TEST(page_allocator_high_takes_the_top_of_the_highest_free_run)
{
	uintptr_t a, b, c, d;

	mh_free(mh_malloc(1));
	mh_lock(&mh_heap.lock);
	a = pa_alloc(100, 1, PA_HIGH).base;
	b = pa_alloc(100, 1, PA_HIGH).base;
	pa_free(a, 100, false);
	c = pa_alloc(30, 1, PA_HIGH).base;		/* the top of a's hole */
	d = pa_alloc(10, 16, PA_HIGH).base;	/* aligned, below c */
	pa_free(b, 100, false);
	pa_free(c, 30, false);
	pa_free(d, 10, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, a);
	EXPECT_EQ(a - PAGES(100), b);
	EXPECT_EQ(a + PAGES(70), c);
	EXPECT_EQ(ALIGN_DOWN(a + PAGES(60), PAGES(16)), d);
}

/* Large objects keep out of the chunks that hold small spans: a resident
 * place apart from them before a shorter resident run among them (small
 * spans carved into a freed block's place leave the next block of its
 * size no run to take, and it faults in fresh pages). */
TEST(a_large_block_takes_a_resident_place_apart_from_small_spans_before_a_better_fit_among_them)
{
	uintptr_t hole, edge, top, p;

	mh_free(mh_malloc(1));	/* a small span, in the lowest chunk */
	mh_lock(&mh_heap.lock);
	hole = pa_alloc(20, 1, PA_LOW).base;
	edge = pa_alloc(1, 1, PA_LOW).base;	/* bounds the hole */
	top = pa_alloc(100, 1, PA_HIGH).base;
	pa_mark_small(hole, 21);	/* as a small span there would */
	pa_free(hole, 20, false);	/* 20 resident pages among small spans */
	pa_free(top, 100, false);	/* 100 at the top of a long free run */
	p = pa_find(10, 1, PA_DIRTY);
	pa_free(edge, 1, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, hole);
	ASSERT_EQ(hole + PAGES(20), edge);
	ASSERT_GE(top - hole, PAGES(PA_CHUNK_PAGES));	/* another chunk */
	EXPECT_TRUE(p >= top && p + PAGES(10) <= top + PAGES(100));
}

/* Released pages among the n free pages at p. */
static uintptr_t released_pages_at(uintptr_t p, uintptr_t n)
{
	const struct heap_arena *ha = arena_of(p);
	uintptr_t first = (p - ha->base) >> MH_PAGE_SHIFT, cnt = 0;

	for (uintptr_t i = first; i < first + n; i++)
		cnt += ha->scav[i / 64] >> (i % 64) & 1;
	return cnt;
}

/* PA_RELEASED (the secure mode's guarded blocks, whose free drops their
 * pages) takes released pages over a lower run of resident ones that
 * first fit would take. */
TEST(released_first_placement_passes_resident_free_pages_by)
{
	uintptr_t hole, edge, first_fit, p, released;

	mh_free(mh_malloc(1));
	mh_lock(&mh_heap.lock);
	hole = pa_alloc(20, 1, PA_LOW).base;
	edge = pa_alloc(1, 1, PA_LOW).base;	/* bounds the hole */
	pa_free(hole, 20, false);		/* 20 resident free pages, lowest */
	first_fit = pa_find(10, 1, PA_LOW);
	p = pa_find(10, 1, PA_RELEASED);
	released = p ? released_pages_at(p, 10) : 0;
	pa_free(edge, 1, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_NE(0, hole);
	ASSERT_EQ(hole, first_fit);
	EXPECT_NE(hole, p);
	EXPECT_EQ(10, released);
}

/* Where the lowest (!high) or highest run of n free pages starts, found
 * page by page over every arena (adjacent arenas join their runs). */
static uintptr_t naive_find(uintptr_t n, bool high)
{
	uintptr_t run_base = 0, run_len = 0, found = 0, prev_limit = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next) {
		if (ha->base != prev_limit)
			run_len = 0;
		prev_limit = ha->base + MH_ARENA_SIZE;
		for (unsigned i = 0; i < MH_PAGES_PER_ARENA; i++) {
			if (ha->alloc[i / 64] >> (i % 64) & 1) {
				run_len = 0;
				continue;
			}
			if (!run_len++)
				run_base = ha->base + PAGES(i);
			if (run_len < n)
				continue;
			if (!high)
				return run_base;
			found = run_base + PAGES(run_len - n);	/* the run's top n */
		}
	}
	return found;
}

TEST(page_allocator_searches_match_a_page_by_page_walk)
{
	enum { N = 3000 };
	static uintptr_t base[N], len[N];
	static const uintptr_t want[] = { 1, 2, 7, 63, 64, 65, 100, 511, 512, 513,
					  1000, 4096, 8191, 8192, 9000 };
	struct heap_arena *top;
	struct pa_result r;
	uintptr_t tail;

	mh_free(mh_malloc(1));
	srand(11);
	mh_lock(&mh_heap.lock);
	/* Three arenas of runs of all lengths, across chunk (512 pages) and
	 * arena (8192) boundaries, then every other one freed, and more. */
	for (int i = 0, arenas = 1; i < N; i++) {
		len[i] = (uintptr_t)(rand() % 4 ? 1 + rand() % 16 : 1 + rand() % 700);
		base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		if (!base[i] && arenas++ < 3 && arenamap_grow(1))
			base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		if (!base[i])
			break;
	}
	/* The free pages at the top of the last arena would answer every
	 * high search at once: take them, so that searches walk down. */
	for (top = arenamap_first(); top->next; top = top->next)
		;
	tail = top->sum.end;
	if (tail)
		ASSERT_TRUE(pa_alloc_at(top->base + PAGES(MH_PAGES_PER_ARENA - tail), tail, &r));
	for (int round = 0; round < 3; round++) {
		for (int i = round; i < N; i += 2 + round)
			if (base[i]) {
				pa_free(base[i], len[i], false);
				base[i] = 0;
			}
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
			uintptr_t lo = pa_find(want[k], 1, PA_LOW), hi = pa_find(want[k], 1, PA_HIGH);

			if (lo != naive_find(want[k], false) || hi != naive_find(want[k], true)) {
				mh_unlock(&mh_heap.lock);
				ASSERT_EQ(naive_find(want[k], false), lo) TH_LOG("n=%lu low", want[k]);
				ASSERT_EQ(naive_find(want[k], true), hi) TH_LOG("n=%lu high", want[k]);
			}
		}
	}
	for (int i = 0; i < N; i++)
		if (base[i])
			pa_free(base[i], len[i], false);
	if (tail)
		pa_free(top->base + PAGES(MH_PAGES_PER_ARENA - tail), tail, false);
	mh_unlock(&mh_heap.lock);
}

/*
 * First fit starts at a hint per power of two, moved up by searches and
 * down by frees (pagealloc_search.c). Allocations and frees in random order
 * over three arenas kept about two thirds full (so runs cross arena
 * boundaries), searches of every size in between: a search never
 * skips a run a walk from the bottom finds, and no hint ever lies above a
 * free run of its size (the heap checker's rule).
 */
TEST(first_fit_hints_never_skip_a_free_run)
{
	enum { N = 200, STEPS = 6000 };
	static uintptr_t base[N], len[N];
	static const uintptr_t want[] = { 1, 3, 64, 200, 512, 1279, 5000, 9000 };

	mh_free(mh_malloc(1));
	srand(7);
	mh_lock(&mh_heap.lock);
	while (!arenamap_first()->next || !arenamap_first()->next->next)
		ASSERT_NE(NULL, arenamap_grow(1));
	for (int step = 0; step < STEPS; step++) {
		int i = rand() % N;

		if (base[i]) {
			pa_free(base[i], len[i], false);
			base[i] = 0;
		} else {
			len[i] = (uintptr_t)(rand() % 4 ? 1 + rand() % 64 : 1 + rand() % 1200);
			base[i] = pa_alloc(len[i], 1, PA_LOW).base;
		}
		if (step % 20)
			continue;
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
			uintptr_t lo = pa_find(want[k], 1, PA_LOW), broken = pa_hint_broken();

			if (lo != naive_find(want[k], false) || broken) {
				mh_unlock(&mh_heap.lock);
				ASSERT_EQ(naive_find(want[k], false), lo)
					TH_LOG("step %d, n=%lu", step, want[k]);
				ASSERT_EQ(0, broken) TH_LOG("step %d: a free run of %lu pages below its hint",
							 step, broken);
			}
		}
	}
	for (int i = 0; i < N; i++)
		if (base[i])
			pa_free(base[i], len[i], false);
	ASSERT_EQ(0, pa_hint_broken());
	mh_unlock(&mh_heap.lock);
}

TEST(large_objects_go_high_and_small_spans_stay_out_of_their_holes)
{
	enum { N = 20000 };
	static char *small[N];
	char *big = mh_malloc(1 << 20), *again, *highest = NULL;

	ASSERT_NE(NULL, big);
	mh_free(big);
	/* 20 MB of small objects after the big one is gone: first fit keeps
	 * them below, none in the hole it left... */
	for (int i = 0; i < N; i++) {
		small[i] = mh_malloc(1000);
		ASSERT_NE(NULL, small[i]);
		EXPECT_TRUE(small[i] + 1000 <= big || small[i] >= big + (1 << 20));
		if (small[i] > highest)
			highest = small[i];
	}
	EXPECT_LT(highest, big);
	/* ...so the next block of that size finds its place again, where
	 * first fit alone would have put it above all of them. */
	again = mh_malloc(1 << 20);
	EXPECT_EQ(big, again);
	mh_free(again);
	for (int i = 0; i < N; i++)
		mh_free(small[i]);
}

TEST(a_block_realloc_moves_goes_low_and_grows_in_place)
{
	char *p = mh_malloc(1 << 20), *q, *r, *top;
	char *marker = mh_malloc(64);

	ASSERT_NE(NULL, p);
	memset(p, 5, 1 << 20);
	/* At the top of the heap nothing is free above p: it must move... */
	q = mh_realloc(p, (1 << 20) + MH_PAGE_SIZE);
	ASSERT_NE(p, q);
	EXPECT_EQ(5, q[(1 << 20) - 1]);
	/* ...to the bottom, with room above it, so the next growth stays
	 * even when another large block takes the top again. */
	EXPECT_LT(q, p);
	EXPECT_GT(q, marker);
	top = mh_malloc(1 << 20);
	EXPECT_EQ(p, top);
	r = mh_realloc(q, (2 << 20));
	EXPECT_EQ(q, r);
	mh_free(r);
	mh_free(top);
	mh_free(marker);
}

/*
 * The scavenger takes free pages out of the free set while it releases
 * them without the heap lock (pa_scavenge_take), and a search meanwhile
 * raises the hints past the run they were part of; given back, they make
 * that run whole again, and the hints come down to it. (With nothing
 * changed in between they stay: pagealloc_scavenge.c.) A run of exactly
 * 2^14 pages, two fresh arenas with the page below them in use; its top
 * chunk taken, a search for 2^14 pages finds none and moves that length's
 * hint to nowhere.
 */
TEST(pages_the_scavenger_gives_back_lower_the_hints_a_search_raised_meanwhile)
{
	uintptr_t npages = 2 * MH_PAGES_PER_ARENA, below = 0, found_taken, found, broken;
	struct heap_arena *first, *lower;
	struct pa_scav_batch b;
	struct pa_result r;

	mh_free(mh_malloc(1));
	mh_scavenge();		/* the only resident free pages: those freed below */
	mh_lock(&mh_heap.lock);
	first = arenamap_grow(2);
	ASSERT_NE(NULL, first) mh_unlock(&mh_heap.lock);
	lower = arena_of(first->base - 1);
	if (lower && lower->sum.end) {
		below = lower->sum.end;
		ASSERT_TRUE(pa_alloc_at(first->base - PAGES(below), below, &r));
	}
	ASSERT_TRUE(pa_alloc_at(first->base, npages, &r));
	pa_free(first->base, npages, false);	/* resident: the scavenger's */
	ASSERT_EQ(PA_CHUNK_PAGES, pa_scavenge_take(PA_CHUNK_PAGES, 0, &b));
	ASSERT_EQ(first->base + PAGES(npages - PA_CHUNK_PAGES), b.base[0]);
	found_taken = pa_find(npages, 1, PA_LOW);
	pa_scavenge_release(&b);
	pa_scavenge_return(&b);
	broken = pa_hint_broken();
	found = pa_find(npages, 1, PA_LOW);
	if (below)
		pa_free(first->base - PAGES(below), below, false);
	mh_unlock(&mh_heap.lock);
	ASSERT_EQ(0, found_taken);
	EXPECT_EQ(0, broken) TH_LOG("a free run of %lu pages below its hint", broken);
	EXPECT_EQ(first->base, found);
}

/*
 * A growth of the heap by a terabyte (16,384 heap arenas), its pages
 * allocated as one run and freed, released to the OS, and the run taken
 * again: each step linear in the arena count (arenamap.c, pagealloc.c).
 * Before, the growth's registration walked the arena list from its head and
 * lowered the first fit hints walking back through every whole free arena
 * below, per arena; the free and the release lowered them likewise, and
 * the release found its starting arena walking from the head per batch:
 * n * n steps each, about 25 s apiece for a terabyte (2 shared cores,
 * docs/heap-pages-log.md). Now the whole is a fraction of a second. In a
 * child with a 10 s alarm, the commit probe off (testhooks.h: the host's
 * heuristic overcommit mode would refuse the growth, as it refuses glibc a
 * terabyte; vm.overcommit_memory=1 grants it). The page allocator's own
 * calls, not malloc: a span pointer per page (1 GiB) would measure the
 * memory's speed. Then the structure, with no alarm: the arena list in
 * address order to its tail, the hints (pa_hint_broken), every free page
 * released after mh_scavenge.
 */
#ifdef __SANITIZE_THREAD__
/* TSan keeps the application's mappings in 1.5 TiB at the top of the
 * address space, where a terabyte does not always find room (ENOMEM in
 * about one run of three): a quarter of it, as many steps per arena. */
#define TERA_ARENAS 4096
#else
#define TERA_ARENAS 16384
#endif

/* The arenas' structs are one mapping the kernel's policy counts
 * (arenamap_grow), 1.1 GiB for a terabyte, which the heuristic mode refuses
 * at once in a guest of 1 GiB (the VM flavours): at most half of memory. */
static unsigned tera_arenas(void)
{
	struct sysinfo si;
	unsigned n = TERA_ARENAS;

	if (!sysinfo(&si))
		while (n > 1024 && (uint64_t)n * sizeof(struct heap_arena) >
					   (uint64_t)si.totalram * si.mem_unit / 2)
			n /= 2;
	return n;
}

static void grow_free_release_a_terabyte(void *arg)
{
	unsigned arenas = *(unsigned *)arg;
	uintptr_t npages = (uintptr_t)arenas * MH_PAGES_PER_ARENA, released, hint_run, n = 0;
	struct heap_arena *first;
	struct pa_result r, again;

	mh_free(mh_malloc(1));
	mh_test_no_commit_probe = true;
	alarm(10);
	mh_lock(&mh_heap.lock);
	first = arenamap_grow(arenas);
	if (!first) {
		fprintf(stderr, "growth by %u arenas: %s\n", arenas, strerror(errno));
		_exit(10);
	}
	if (!pa_alloc_at(first->base, npages, &r)) {
		fprintf(stderr, "the grown arenas' pages are not free\n");
		_exit(11);
	}
	pa_free(r.base, npages, false);
	mh_unlock(&mh_heap.lock);
	mh_scavenge();
	mh_lock(&mh_heap.lock);
	released = pa_free_pages - pa_released_pages;
	hint_run = pa_hint_broken();
	again = pa_alloc(npages, 1, PA_DIRTY);
	if (again.base)
		pa_free(again.base, npages, true);
	mh_unlock(&mh_heap.lock);
	alarm(0);
	if (r.released != npages) {
		fprintf(stderr, "%lu of the grown arenas' pages released\n",
			(unsigned long)r.released);
		_exit(11);
	}
	if (released || hint_run) {
		fprintf(stderr, "after mh_scavenge: %lu free pages resident, a run of %lu below its hint\n",
			(unsigned long)released, (unsigned long)hint_run);
		_exit(12);
	}
	if (!again.base || again.released != npages) {
		fprintf(stderr, "taken again at %#lx, %lu of its pages released\n",
			(unsigned long)again.base, (unsigned long)again.released);
		_exit(13);
	}
	/* The heap checker's part for the arenas, but their span pointers
	 * (a TSan build reads 1 GiB of them through its shadow). */
	for (struct heap_arena *ha = arenamap_first(), *prev = NULL;; prev = ha, ha = ha->next) {
		if (!ha) {
			if (prev != arenamap_last() || n != arenamap_count()) {
				fprintf(stderr, "%lu arenas listed, %lu counted, the tail %s\n",
					(unsigned long)n, (unsigned long)arenamap_count(),
					prev == arenamap_last() ? "right" : "wrong");
				_exit(14);
			}
			break;
		}
		if (ha->prev != prev || (prev && prev->base >= ha->base) || arena_of(ha->base) != ha) {
			fprintf(stderr, "arena list out of order at %#lx\n", (unsigned long)ha->base);
			_exit(15);
		}
		n++;
	}
	_exit(0);
}

TEST(a_growth_by_a_terabyte_its_free_and_release_take_linear_time)
{
	unsigned arenas = tera_arenas();
	struct child_result r;

	run_child(grow_free_release_a_terabyte, &arenas, &r);
	ASSERT_TRUE(WIFEXITED(r.status))
		TH_LOG("child died of signal %d (14: SIGALRM, not done in 10 s): %s",
		       WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%u arenas: %s", arenas, r.err);
}

TEST_HARNESS_MAIN
