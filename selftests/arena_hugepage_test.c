// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas' pages, per fault backend (arena_fixture.h): small
 * arenas stay in small pages, big ones take huge pages and give them back
 * to the heap, a growing arena keeps its window small, a big arena's next
 * chunk is in huge pages; chunks back from quarantine read zero and fault
 * again.
 */
#define _GNU_SOURCE
#include "arena_fixture.h"

/* ------------------------------------------------------------ huge pages */

/* Whether the kernel's THPeligible says what a chunk's advice is: for
 * anonymous chunks, not for kmod's device mappings (the module maps its
 * own 2 MiB pages, and the kernel never counts them eligible). */
static bool thp_by_vma(const FIXTURE_VARIANT(arena) *variant)
{
	return strcmp(variant->backend, "kmod") != 0;
}

/* The THPeligible field of the VMA holding p (/proc/self/smaps): 1 when the
 * kernel would map huge pages there, 0 when not, -1 when unknown. */
static int thp_eligible(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)p, lo, hi;
	char line[512];
	bool in = false;
	int v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && sscanf(line, "THPeligible: %d", &v) == 1)
			break;
	}
	fclose(f);
	return v;
}

TEST_F(arena, small_arenas_stay_in_small_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 32 };
	mh_arena *a[N];
	size_t before, grew;

	/* Warm up: the arena code paths and the first heap arena. */
	mh_arena_free(mh_arena_new());
	for (int i = 0; i < N; i++)
		a[i] = mh_arena_new();
	before = rss_bytes();
	for (int i = 0; i < N; i++) {
		char *p = mh_arena_alloc(a[i], 100, 0);
		char *q = mh_arena_alloc_noscan(a[i], 100, 0);

		ASSERT_NE(NULL, p);
		ASSERT_NE(NULL, q);
		memset(p, 1, 100);
		memset(q, 2, 100);
		/* With huge pages, both ends of a small arena share its
		 * small-page window, and that is not THP-eligible. */
		if (arena_thp(variant))
			EXPECT_LT(q - p, 1 << 20);
		if (i == 0 && arena_thp(variant) && thp_by_vma(variant))
			EXPECT_EQ(0, thp_eligible(p));
		/* The two pages written, not a huge page (which RSS does not
		 * show for kmod's chunks, but mincore does). */
		EXPECT_EQ(2, resident_pages(ALIGN_DOWN((uintptr_t)p, 4096),
					    ALIGN_DOWN((uintptr_t)q, 4096) + 4096));
	}
	grew = rss_bytes() - before;
	/* A few pages each; a huge page each would be 64 MiB and more. */
	EXPECT_LT(grew, (size_t)4 << 20) TH_LOG("RSS grew by %zu KiB", grew >> 10);
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
}

/* Why chunks of this backend cannot have a huge tail here, or NULL. */
static const char *no_huge_tail(const FIXTURE_VARIANT(arena) *variant,
				const struct arena_config *cfg)
{
	size_t h = arena_thp(variant);

	if (!h)
		return "no transparent huge pages here";
	if (cfg->chunk_bytes < 2 * h)
		return "smaller than two huge pages";
	return NULL;
}

/* A new arena's first allocation (*first, 64 bytes) and, after 4 KiB ones
 * that use up its small-page window, the first one past it. */
static char *alloc_past_window(mh_arena *a, const struct arena_config *cfg, char **first)
{
	char *next = NULL;

	*first = mh_arena_alloc(a, 64, 0);
	for (size_t n = 64; n <= cfg->thp_after; n += 4096)
		next = mh_arena_alloc(a, 4096, 0);
	return next;
}

TEST_F(arena, big_arenas_take_huge_pages_and_give_them_back_to_the_heap)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant);
	mh_arena *a;
	char *first, *second;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	cfg.reuse = false;
	cfg.ready_max = 0;	/* released chunks go back to the page heap */
	arena_configure(&cfg);
	a = mh_arena_new();
	second = alloc_past_window(a, &cfg, &first);
	ASSERT_EQ(0, (uintptr_t)first % h);
	/* Past the small-page window, the next huge page. */
	EXPECT_EQ(first + h, second);
	if (thp_by_vma(variant)) {
		EXPECT_EQ(0, thp_eligible(first));
		EXPECT_EQ(1, thp_eligible(second));
	}
	memset(second, 7, 4096);
	mh_arena_free(a);
	/* Faulted everywhere: the used window, its unused rest, the huge
	 * pages used and not. */
	if (faults(variant)) {
		expect_uaf(_metadata, first, false);
		expect_uaf(_metadata, first + cfg.thp_after + 4096, true);
		expect_uaf(_metadata, second, false);
		expect_uaf(_metadata, second + h, true);
		expect_uaf(_metadata, first + cfg.chunk_bytes - 1, false);
	}
	mh_quarantine_release();
	/* Back in the page heap, for small spans: no huge pages there unless
	 * the whole heap has them (THP "always"). */
	EXPECT_EQ(sys_thp_default() ? 1 : 0, thp_eligible(second));
}

/* A small arena that outgrows its window: its first huge page stays in
 * small pages, even where the window is written only after the move (kmod
 * advises the whole chunk then), and the next one is one huge page. */
TEST_F(arena, a_growing_arena_keeps_its_window_small_and_takes_the_next_huge_page)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant);
	mh_arena *a;
	char *first, *second;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	if (!cfg.thp_after)
		SKIP(return, "no small-page window in chunks here");
	a = mh_arena_new();
	second = alloc_past_window(a, &cfg, &first);
	ASSERT_EQ(first + h, second);
	memset(second, 7, 64);
	memset(first, 1, 64);
	EXPECT_EQ(1, resident_pages((uintptr_t)first, (uintptr_t)first + h));
	EXPECT_EQ(h / 4096, resident_pages((uintptr_t)second, (uintptr_t)second + h));
	mh_arena_free(a);
}

/* An arena that has filled a chunk is big: its next chunk is in huge
 * pages from the start, so one write per huge page makes all of it
 * resident. */
TEST_F(arena, a_big_arenas_next_chunk_is_in_huge_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t h = arena_thp(variant), cb = cfg.chunk_bytes;
	struct arena_chunk *first, *c;
	mh_arena *a;
	char *p;

	if (no_huge_tail(variant, &cfg))
		SKIP(return, "%s chunks: %s", variant->backend, no_huge_tail(variant, &cfg));
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	first = chunk_at(mh_arena_alloc(a, 64, 0));
	do
		p = mh_arena_alloc(a, 65536, 0);
	while (chunk_at(p) == first);
	c = chunk_at(p);
	ASSERT_EQ((char *)c->base, p);
	ASSERT_EQ(cb, c->limit - c->base);
	/* All of it, allocated, then one byte written per huge page. */
	for (char *q = p + 65536; q < (char *)c->limit; q += 4096)
		ASSERT_EQ(q, mh_arena_alloc(a, 4096, 0));
	for (size_t off = 0; off < cb; off += h)
		p[off] = 2;
	EXPECT_EQ(cb / 4096, resident_pages(c->base, c->limit));
	mh_arena_free(a);
}

TEST_F(arena, chunks_back_from_quarantine_read_zero_and_fault_again)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t bytes = cfg.chunk_bytes * 5 / 2, n = 0;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	mh_arena *a;
	char *volatile p = NULL;

	if (!faults(variant))
		SKIP(return, "the none backend keeps freed chunks as they are");
	cfg.reuse = false;
	arena_configure(&cfg);
	/* Three chunks, every byte written. */
	a = mh_arena_new();
	while (n < bytes) {
		p = mh_arena_alloc(a, 65536, 0);
		ASSERT_NE(NULL, p);
		memset(p, 0xa5, 65536);
		lo = (uintptr_t)p < lo ? (uintptr_t)p : lo;
		hi = (uintptr_t)p + 65536 > hi ? (uintptr_t)p + 65536 : hi;
		n += 65536;
	}
	mh_arena_free(a);
	mh_quarantine_release();
	/* The same chunks again, from the ready list: zero, in both windows. */
	a = mh_arena_new();
	size_t reused = 0;

	for (n = 0; n < bytes; n += 65536) {
		p = mh_arena_alloc(a, 65536, 0);
		ASSERT_NE(NULL, p);
		size_t nonzero = 0;

		for (size_t i = 0; i < 65536; i += 8)
			nonzero += *(uint64_t *)(p + i) != 0;
		ASSERT_EQ(0, nonzero) TH_LOG("%zu words of %p not zero", nonzero, p);
		reused += (uintptr_t)p >= lo && (uintptr_t)p < hi;
		memset(p, 0x5a, 65536);
	}
	EXPECT_GT(reused, 0);
	mh_arena_free(a);
	expect_uaf(_metadata, p, true);
	expect_uaf(_metadata, p + 65535, false);
}

TEST_HARNESS_MAIN
