// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas' warm chunks and reuse list, per fault backend
 * (arena_fixture.h): a freed full chunk's pages move to a warm chunk that
 * the next big arena reuses without faults while the old range faults; a
 * big arena's active chunk moves rather than being reused; the next arena
 * is given only resident pages; a warm chunk without pages in its head is
 * given out from its tail; used-up reused chunks move; a chunk the program
 * split moves or faults; the warm cap and release; a forked child uses
 * warm chunks as copies; many move cycles keep VMAs bounded; the reuse
 * list's bounded dead data and the scavenger returning it.
 */
#define _GNU_SOURCE
#include "arena_fixture.h"

/* ------------------------------------------------------------ warm chunks */

/* Page faults this process has taken so far. */
static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Whether this backend moves a freed full chunk's pages to a warm chunk. */
static bool recycles(const FIXTURE_VARIANT(arena) *variant)
{
	return !strcmp(variant->backend, "guard") || !strcmp(variant->backend, "mprotect");
}

TEST_F(arena, freed_full_chunks_move_warm_and_the_next_big_arena_reuses_them_without_faults)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	char *old[4], *p, *q;
	mh_arena *a, *b;
	long flt;

	if (!faults(variant))
		SKIP(return, "the none backend keeps freed chunks as they are");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	old[0] = mh_arena_alloc(a, 64, 0);
	/* Three full chunks, then a fourth hardly used. */
	for (size_t n = 0; n < 3 * cb; n += 4096)
		memset(mh_arena_alloc(a, 4096, 0), 0xa5, 4096);
	old[1] = old[0] + cb;
	old[2] = mh_arena_alloc(a, 64, 0);
	mh_arena_free(a);
	if (!recycles(variant)) {
		EXPECT_EQ(0, warm_chunks());
		expect_uaf(_metadata, old[0], false);
		return;
	}
	EXPECT_GE(warm_chunks(), 2);
	EXPECT_LE(warm_chunks(), 3);
	/* The old ranges fault, ends and middle, as without the move. */
	expect_uaf(_metadata, old[0], false);
	expect_uaf(_metadata, old[0] + cb / 2, true);
	expect_uaf(_metadata, old[0] + cb - 1, false);
	expect_uaf(_metadata, old[2], true);
	/* A big arena: its second chunk is the last one moved. */
	b = mh_arena_new();
	fill_arena(b, cb, 1);
	p = mh_arena_alloc(b, 65536, 0);
	/* The moved pages are there, stale: not zero-filled by the kernel. */
	EXPECT_EQ((char)0xa5, p[0]) TH_LOG("%p not from a warm chunk", p);
	/* Writing the rest of the chunk takes no page faults (the sanitizer
	 * runtimes fault in shadow memory of their own). */
	flt = minflt();
	fill_arena(b, cb / 2, 2);
	flt = minflt() - flt;
	TH_LOG("%ld page faults writing %zu KiB of a warm chunk", flt, cb / 2 >> 10);
	if (!UNDER_SANITIZER)
		EXPECT_LT(flt, 8);
	/* calloc there gives zeros over stale data. */
	q = mh_arena_alloc_noscan(b, 4096, 0);
	EXPECT_EQ((char)0xa5, q[100]);
	q = mh_arena_calloc(b, 1024, 4);
	for (int i = 0; i < 4096; i++)
		ASSERT_EQ(0, q[i]);
	EXPECT_EQ((char)0xa5, q[4096 + 100]) TH_LOG("calloc not served from the warm chunk");
	mh_arena_free(b);
	/* ... and that chunk faults in turn once freed. */
	expect_uaf(_metadata, p, true);
	expect_uaf(_metadata, q, false);
}

/* A big arena's active chunk, mostly used, moves warm with its full chunks
 * rather than going to the reuse list: the next big arena starts in a whole
 * warm chunk instead of in the unused tail of a chunk whose used part stays
 * resident, and the old data faults. */
TEST_F(arena, a_big_arenas_mostly_used_active_chunk_moves_warm_instead_of_being_reused)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *last;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(self->cfg.reuse);
	a = mh_arena_new();
	/* One full chunk, then three quarters of the next. */
	fill_arena(a, cb + cb / 2, 3);
	last = mh_arena_alloc(a, 65536, 0);
	memset(last, 3, 65536);
	fill_arena(a, cb / 4 - 4 * 65536, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_reuse);
	EXPECT_EQ(2, st.arena_chunks_warm);
	expect_uaf(_metadata, last, false);
	/* A small arena still continues in a reused chunk. */
	a = mh_arena_new();
	fill_arena(a, cb / 4, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(1, st.arena_chunks_reuse);
}

/* The next arena after such a free, big or not, starts in the warm chunk
 * that took the active chunk's place: no fresh memory to fault, and the
 * warm list does not grow round after round. One arena per moved active
 * chunk: the one made after it gets a chunk of its own as before. */
TEST_F(arena, the_next_arena_starts_in_the_warm_chunk_of_a_moved_active_chunk)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	mh_arena *a, *b;
	char *p, *q;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	a = mh_arena_new();
	/* One full chunk, then three quarters of the next. */
	fill_arena(a, cb + cb * 3 / 4, 4);
	mh_arena_free(a);
	ASSERT_EQ(2, warm_chunks());
	/* noscan data goes at the top of a chunk: in a warm chunk, among the
	 * moved pages, stale; in a new chunk's small-page window, zero. */
	a = mh_arena_new();
	p = mh_arena_alloc_noscan(a, 64, 0);
	EXPECT_EQ(4, p[0]) TH_LOG("%p not from a warm chunk", p);
	EXPECT_EQ(1, warm_chunks());
	b = mh_arena_new();
	q = mh_arena_alloc_noscan(b, 64, 0);
	EXPECT_EQ(0, q[0]) TH_LOG("%p from a warm chunk", q);
	EXPECT_EQ(1, warm_chunks());
	mh_arena_free(b);
	mh_arena_free(a);
}

/* A big arena's active chunk, however little used, moves warm as well (its
 * used part faulting) rather than going to the reuse list: reused, the next
 * arena went on into the part of it never touched, fresh memory for the
 * kernel to fault and zero, while the freed arena's resident pages waited
 * on the warm list. So the next arena of the same size finds every page it
 * is given resident before it writes one. (With thp_after 0 the first chunk
 * is huge whole and moves whole; an arena's small-page window does not.) */
TEST_F(arena, the_next_arena_of_the_same_size_is_given_only_resident_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes, cold = 0;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(cfg.reuse);
	cfg.thp_after = 0;
	arena_configure(&cfg);
	a = mh_arena_new();
	/* One full chunk, then an eighth of the next. */
	fill_arena(a, cb + cb / 8, 6);
	mh_arena_free(a);
	a = mh_arena_new();
	for (size_t n = 0; n < cb + cb / 8; n += 65536) {
		uintptr_t p = (uintptr_t)mh_arena_alloc(a, 65536, 0);
		uintptr_t lo = p & ~(uintptr_t)4095, hi = (p + 65536 + 4095) & ~(uintptr_t)4095;

		cold += (hi - lo) / 4096 - resident_pages(lo, hi);
	}
	EXPECT_EQ(0, cold) TH_LOG("%zu pages not resident of %zu KiB given", cold,
				  (cb + cb / 8) >> 10);
	mh_arena_free(a);
}

/* An arena's first chunk moves without its small-page head (a VMA of its
 * own): the warm chunk holds no pages in its first huge page, and is given
 * out from the huge page after it, among the moved pages, rather than from
 * its base, fresh memory for the kernel to fault and zero. */
TEST_F(arena, a_warm_chunk_without_pages_in_its_head_is_given_out_from_its_tail)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	uintptr_t p;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	if (!arena_thp(variant) || !self->cfg.thp || !self->cfg.thp_after)
		SKIP(return, "no small-page head: huge pages off for arenas");
	a = mh_arena_new();
	/* The first chunk, then a little of the next. */
	fill_arena(a, cb, 8);
	mh_arena_free(a);
	/* The next arena starts in the first chunk's pages (warm_first). */
	a = mh_arena_new();
	p = (uintptr_t)mh_arena_alloc(a, 65536, 4096);
	EXPECT_EQ(16, resident_pages(p, p + 65536));
	EXPECT_EQ(8, *(char *)p);
	mh_arena_free(a);
}

/* An arena that never filled a chunk and took another is not a big one:
 * without reuse its chunk, used up or not, drops its pages. */
TEST_F(arena, without_reuse_a_small_arenas_used_up_chunk_is_not_moved)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	mh_arena *a;
	char *p;

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	p = mh_arena_alloc(a, 64, 0);
	/* Most of the chunk, without moving on to another (with huge
	 * pages, the rest of the small-page window's huge page is skipped:
	 * 1.75 MiB of 8). */
	fill_arena(a, cfg.chunk_bytes / 10 * 7, 4);
	ASSERT_EQ(0, warm_chunks());
	mh_arena_free(a);
	EXPECT_EQ(0, warm_chunks());
	expect_uaf(_metadata, p, false);
}

/* Short arenas going on in a reused chunk fill it in turn, and the one that
 * uses it up is usually small: its chunk moves warm all the same, and the
 * next arena starts in it, among resident pages, instead of in fresh memory
 * (the pages of all of them were dropped before, every chunk's worth). */
TEST_F(arena, a_used_up_reused_chunk_moves_warm_for_the_next_arena)
{
	RETURN_IF_SETUP_SKIPPED();

	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *last = NULL;
	uintptr_t p;
	int n;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	ASSERT_TRUE(self->cfg.reuse);
	/* 256 KiB arenas, each going on where the last stopped, until one
	 * uses the chunk up (windows are 256 KiB and huge pages, so one
	 * ends exactly at the chunk's end) and it leaves the reuse list. */
	for (n = 0; n < 64; n++) {
		a = mh_arena_new();
		fill_arena(a, 192 << 10, 7);
		last = mh_arena_alloc(a, 65536, 0);
		memset(last, 7, 65536);
		mh_arena_free(a);
		mh_stats_read(&st);
		if (!st.arena_chunks_reuse)
			break;
	}
	ASSERT_LT(n, 64) TH_LOG("no chunk was used up");
	EXPECT_EQ(1, st.arena_chunks_warm);
	expect_uaf(_metadata, last, false);
	/* Pointer-free data goes at the top of a chunk: among the moved
	 * pages, resident before anything is written there. */
	a = mh_arena_new();
	p = (uintptr_t)mh_arena_alloc_noscan(a, 65536, 4096);
	EXPECT_EQ(16, resident_pages(p, p + 65536));
	EXPECT_EQ(7, *(char *)p);
	EXPECT_EQ(0, warm_chunks());
	mh_arena_free(a);
}

/* Write every page of a big arena of three chunks, then free it. */
static void fill_big_arena(void *arg)
{
	size_t cb = *(const size_t *)arg;
	mh_arena *a = mh_arena_new();

	fill_arena(a, 3 * cb, 6);
	mh_arena_free(a);
}

/*
 * A freed chunk whose range the program split into two VMAs (here
 * MADV_DONTDUMP on its first page) cannot move in one mremap: the kernel
 * refuses it (EFAULT), and the library moves the tail alone or not at all.
 * Kernels before 6.16 (6.1, 6.12) unmap the destination before refusing:
 * that range must be mapped again, or the warm chunk's head (or the range
 * back in the page heap) is a hole, and the next big arena writing there
 * dies of SIGSEGV with no report.
 */
TEST_F(arena, a_chunk_the_program_split_moves_or_faults_and_leaves_no_hole)
{
	RETURN_IF_SETUP_SKIPPED();

	size_t cb = self->cfg.chunk_bytes;
	char *first, *p;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	a = mh_arena_new();
	first = mh_arena_alloc(a, 64, 0);
	/* Fill on to the first allocation in a third chunk; the second
	 * chunk's first page is where the arena moved on from the first. */
	do {
		p = mh_arena_alloc(a, 65536, 0);
		memset(p, 5, 65536);
	} while (chunk_at(p) == chunk_at(first));
	ASSERT_EQ(chunk_at(p)->base, (uintptr_t)p) TH_LOG("a piece in the second chunk");
	ASSERT_EQ(0, madvise(p, 4096, MADV_DONTDUMP));
	fill_arena(a, cb, 5);
	mh_arena_free(a);
	EXPECT_GE(warm_chunks(), 1);
	expect_uaf(_metadata, p, false);
	/* The warm chunks and the page heap are whole: a big arena writes
	 * every page of them. */
	expect_child_ok(_metadata, fill_big_arena, &cb);
	fill_big_arena(&cb);
}

TEST_F(arena, warm_chunks_stay_under_their_cap_and_are_given_back)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	cfg.warm_max = 2 * cb;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 5 * cb, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(2, st.arena_chunks_warm);
	/* Quarantine is the same as without the move. */
	EXPECT_EQ(6, st.arena_chunks_quarantined);
	/* A lower cap gives the rest back. */
	cfg.warm_max = cb;
	arena_configure(&cfg);
	EXPECT_EQ(1, warm_chunks());
	/* mh_scavenge() gives them back, and their memory to the OS. */
	mh_scavenge();
	EXPECT_EQ(0, warm_chunks());
	mh_stats_read(&st);
	EXPECT_EQ(st.heap_idle, st.heap_released);
	/* mh_quarantine_release() gives warm chunks back too. */
	a = mh_arena_new();
	fill_arena(a, 3 * cb, 3);
	mh_arena_free(a);
	EXPECT_EQ(1, warm_chunks());
	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_warm);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	/* And memory from the page heap that was warm is zero where it must be. */
	char *z = mh_calloc(1, cb);
	ASSERT_NE(NULL, z);
	for (size_t i = 0; i < cb; i += 512)
		ASSERT_EQ(0, z[i]);
	mh_free(z);
}

TEST_F(arena, without_recycling_freed_chunks_drop_their_pages)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	char *p;

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	cfg.recycle = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	p = mh_arena_alloc(a, 64, 0);
	fill_arena(a, 3 * cb, 3);
	mh_arena_free(a);
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_warm);
	EXPECT_EQ(4, st.arena_chunks_quarantined);
	expect_uaf(_metadata, p, false);
	expect_uaf(_metadata, p + cb + 4096, true);
}

static void use_warm_chunk_in_child(void *arg)
{
	size_t cb = *(size_t *)arg;
	mh_arena *a = mh_arena_new();

	/* The second chunk is a warm one: a copy-on-write copy of the
	 * parent's, which must work like any memory. */
	for (size_t n = 0; n < 2 * cb; n += 65536) {
		char *p = mh_arena_alloc(a, 65536, 0);

		if (!p)
			_exit(2);
		memset(p, 9, 65536);
		if (p[65535] != 9)
			_exit(3);
	}
	mh_arena_free(a);
	_exit(warm_chunks() >= 1 ? 0 : 4);
}

TEST_F(arena, a_forked_child_uses_warm_chunks_as_copies)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	mh_arena *a;
	char *p;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 3 * cb, 5);
	mh_arena_free(a);
	ASSERT_GE(warm_chunks(), 1);
	expect_child_ok(_metadata, use_warm_chunk_in_child, &cb);
	/* The parent's warm chunks are untouched by the child's writes. */
	a = mh_arena_new();
	for (size_t n = 0; n < cb; n += 65536)
		(void)mh_arena_alloc(a, 65536, 0);
	p = mh_arena_alloc(a, 65536, 0);
	EXPECT_EQ(5, p[0]);
	mh_arena_free(a);
}

/* Arenas of two chunks, the first full, pages untouched: every free moves a
 * chunk. The heap's VMAs must stay few: a move that left even one VMA behind
 * would end with more VMAs than cycles. 5000 cycles fill the quarantine ten
 * times over; 20000 took about 300 s in the TCG VM on a loaded host. */
TEST_F_TIMEOUT(arena, moving_chunks_cycle_after_cycle_keeps_vmas_bounded, 300)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	int cycles = 5000;
	struct mh_stats st = MH_STATS_INIT;
	int before = count_vmas(), most = before;

	if (!recycles(variant))
		SKIP(return, "only guard and mprotect move chunks");
	cfg.reuse = false;
	arena_configure(&cfg);
	for (int i = 0; i < cycles; i++) {
		mh_arena *a = mh_arena_new();
		char *p = NULL;

		for (int k = 0; k < 5; k++)
			p = mh_arena_alloc(a, cfg.chunk_bytes / 4 - 4096, 0);
		ASSERT_NE(NULL, p);
		*p = 1;
		mh_arena_free(a);
		if (i % 1000 == 0) {
			int v = count_vmas();

			most = v > most ? v : most;
		}
	}
	mh_stats_read(&st);
	TH_LOG("%d cycles: %llu warm, %llu quarantined, VMAs %d before, %d at most, %d after",
	       cycles, (unsigned long long)st.arena_chunks_warm,
	       (unsigned long long)st.arena_chunks_quarantined, before, most, count_vmas());
	EXPECT_GE(st.arena_chunks_warm, 1);
	EXPECT_LE(st.arena_chunks_warm * cfg.chunk_bytes, cfg.warm_max);
	EXPECT_LT(count_vmas(), cycles);
}

/* ------------------------------------------------------------ reuse list */

/* Twenty arenas of 3 MiB each, live at once, then all freed: each one's
 * active chunk has room left, but the reuse list keeps only so much of their
 * used, dead data resident (counted in their chunks, by mincore: the RSS of
 * a sanitizer build counts shadow memory too). */
TEST_F(arena, the_reuse_list_holds_a_bounded_amount_of_dead_data)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 20 };
	size_t part = (size_t)3 << 20, held = 0;
	uintptr_t base[N], limit[N];
	mh_arena *a[N];

	if (!faults(variant))
		SKIP(return, "the none backend reuses nothing");
	ASSERT_TRUE(self->cfg.reuse);
	for (int i = 0; i < N; i++) {
		struct arena_chunk *c;

		a[i] = mh_arena_new();
		fill_arena(a[i], part, 1);
		c = chunk_at(mh_arena_alloc(a[i], 1, 0));
		base[i] = c->base;
		limit[i] = c->limit;
	}
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
	for (int i = 0; i < N; i++)
		held += resident_pages(base[i], limit[i]) * 4096;
	TH_LOG("%zu KiB resident after freeing %d arenas of %zu KiB", held >> 10, N, part >> 10);
	EXPECT_LE(held, self->cfg.reuse_max);
}

/* mh_scavenge() returns the used part of a reused chunk to the OS (whole
 * pages of it); the next arena still continues where the last one stopped. */
TEST_F(arena, the_scavenger_returns_the_dead_part_of_reused_chunks)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_chunk *c;
	uintptr_t used_end;
	mh_arena *a;
	char *last, *next;

	if (!faults(variant))
		SKIP(return, "the none backend reuses nothing");
	a = mh_arena_new();
	fill_arena(a, (size_t)3 << 20, 1);
	last = mh_arena_alloc(a, 64, 0);
	c = chunk_at(last);
	mh_arena_free(a);
	ASSERT_EQ(CHUNK_REUSE, c->state);
	used_end = ALIGN_DOWN(c->lo, 4096);
	ASSERT_GT(resident_pages(c->base, used_end), 700);
	mh_scavenge();
	EXPECT_EQ(0, resident_pages(c->base, used_end));
	a = mh_arena_new();
	next = mh_arena_alloc(a, 64, 0);
	EXPECT_EQ(last + 64, next);
	next[0] = 1;
	mh_arena_free(a);
}

TEST_HARNESS_MAIN
