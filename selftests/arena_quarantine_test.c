// SPDX-License-Identifier: GPL-2.0
/*
 * User arenas' quarantine (the FIFO), per fault backend
 * (arena_fixture.h): its budget releases the oldest chunks first; out of
 * VMAs, old quarantine is released (merged chunks too) and nothing aborts;
 * malloc out of address space (RLIMIT_AS) takes it back from quarantine;
 * the guard backend protects quarantined chunks with mprotect, moved or
 * not; quarantined chunks hold no page tables.
 */
#define _GNU_SOURCE
#include "arena_fixture.h"

/* ------------------------------------------------------------ quarantine */

TEST_F(arena, quarantine_budget_releases_oldest_first)
{
	RETURN_IF_SETUP_SKIPPED();

	enum { N = 10, KEEP = 3 };
	struct arena_config cfg = self->cfg;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a[N];
	char *p[N];

	if (!faults(variant))
		SKIP(return, "the none backend does not fault");
	cfg.reuse = false;
	cfg.quarantine_max = KEEP * cfg.chunk_bytes;
	arena_configure(&cfg);
	for (int i = 0; i < N; i++) {
		a[i] = mh_arena_new();
		p[i] = mh_arena_alloc(a[i], 100, 0);
		*p[i] = 1;
	}
	for (int i = 0; i < N; i++)
		mh_arena_free(a[i]);
	mh_stats_read(&st);
	EXPECT_EQ(KEEP, st.arena_chunks_quarantined);
	EXPECT_EQ(KEEP * cfg.chunk_bytes, st.arena_quarantined_bytes);
	EXPECT_EQ(N - KEEP, st.arena_releases_budget);
	/* The oldest left quarantine (their memory works again, zeroed);
	 * the newest still fault. */
	EXPECT_EQ(0, *(volatile char *)p[0]);
	expect_uaf(_metadata, p[N - 1], false);
	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	EXPECT_EQ(0, st.arena_quarantined_bytes);
	EXPECT_GE(st.arena_chunks_ready, 1);
	EXPECT_EQ(0, *(volatile char *)p[N - 1]);
}

TEST_F_TIMEOUT(arena, hundred_thousand_cycles_never_fail_on_the_vma_limit, 300)
{
	struct arena_config cfg = self->cfg;
	int cycles = UNDER_SANITIZER ? 20000 : 100000;
	struct mh_stats st = MH_STATS_INIT;
	void *sep[1000];
	int nsep = 0;
	RETURN_IF_SETUP_SKIPPED();

	cfg.reuse = false;	/* every free faults a chunk */
	arena_configure(&cfg);
	for (int i = 0; i < cycles; i++) {
		mh_arena *a = mh_arena_new();
		uint64_t *p = mh_arena_alloc(a, 64, 0);

		ASSERT_NE(NULL, p);
		*p = (uint64_t)i;
		/* Now and then a live heap object between two chunks, so
		 * that quarantined chunks cannot all merge into one VMA. */
		if (i % 7 == 0 && nsep < 1000)
			sep[nsep++] = mh_malloc(100000);
		mh_arena_free(a);
	}
	for (int i = 0; i < nsep; i++)
		mh_free(sep[i]);
	mh_stats_read(&st);
	TH_LOG("%d cycles: %llu quarantined, %llu released by budget, %d VMAs", cycles,
	       (unsigned long long)st.arena_chunks_quarantined,
	       (unsigned long long)st.arena_releases_budget, count_vmas());
	EXPECT_LE(st.arena_quarantined_bytes, cfg.quarantine_max);
	EXPECT_LT(count_vmas(), 20000);
}

/* Use up VMAs, then free arenas whose chunks each need new ones. */
static void vma_exhaustion(void *arg)
{
	struct arena_config cfg;
	size_t page = 4096;
	void **maps = malloc(70000 * sizeof(void *));
	int n = 0;
	struct mh_stats st = MH_STATS_INIT;

	(void)arg;
	arena_config_get(&cfg);
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;	/* only the kernel limits */
	arena_configure(&cfg);
	while (n < 70000) {
		/* Alternate protections so neighbours never merge. */
		void *p = mmap(NULL, page, n & 1 ? PROT_READ : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		maps[n++] = p;
	}
	for (int i = 0; i < 100 && n; i++)
		munmap(maps[--n], page);
	for (int i = 0; i < 200; i++) {
		mh_arena *a = mh_arena_new();

		if (!a || !mh_arena_alloc(a, 64, 0))
			_exit(2);
		/* A live object keeps chunks apart: larger than the gap
		 * below a chunk aligned for huge pages, which a smaller one
		 * would fill instead, and grown by realloc, which keeps it
		 * at the bottom with the chunks (large objects made by
		 * malloc go to the top of the heap). */
		(void)mh_realloc(mh_malloc(64), (size_t)3 << 20);
		mh_arena_free(a);
	}
	mh_stats_read(&st);
	_exit(st.arena_releases_enomem > 0 ? 0 : 3);
}

TEST_F(arena, out_of_vmas_releases_old_quarantine_and_carries_on)
{
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect"))
		SKIP(return, "only mprotect splits VMAs");
	if (UNDER_SANITIZER)
		SKIP(return, "a sanitizer runtime maps and unmaps memory of its own and dies when VMAs run out");
	expect_child_ok(_metadata, vma_exhaustion, NULL);
}

/*
 * Quarantined chunks next to each other merge into one VMA (mprotect, and
 * the guard backend's moved-from chunks): releasing one of them alone would
 * split it, which needs a VMA. With every VMA in use, an arena freed (whose
 * fault needs VMAs, so old quarantine is released) and then the whole
 * quarantine released must neither abort nor hand out memory that faults.
 */
static void release_merged_quarantine_out_of_vmas(void *arg)
{
	struct arena_config cfg;
	size_t page = 4096, cb;
	struct mh_stats st = MH_STATS_INIT;
	mh_arena *a;
	int n = 0;

	(void)arg;
	arena_config_get(&cfg);
	cb = cfg.chunk_bytes;
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;
	arena_configure(&cfg);
	/* Six chunks side by side, the full ones moved warm. */
	a = mh_arena_new();
	for (size_t k = 0; k < 6 * cb - cb / 2; k += 65536)
		if (!mh_arena_alloc(a, 65536, 0))
			_exit(2);
	mh_arena_free(a);
	/* Every VMA taken: alternate protections so neighbours never merge. */
	while (n < 70000 && mmap(NULL, page, n & 1 ? PROT_READ : PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED)
		n++;
	a = mh_arena_new();
	if (!a || !mh_arena_alloc(a, 64, 0))
		_exit(3);
	mh_arena_free(a);
	mh_quarantine_release();
	mh_stats_read(&st);
	if (st.arena_chunks_quarantined)
		_exit(4);
	/* Whatever a new arena gets is ordinary memory. */
	a = mh_arena_new();
	for (size_t k = 0; k < 3 * cb; k += 65536) {
		char *p = mh_arena_alloc(a, 65536, 0);

		if (!p)
			_exit(5);
		p[0] = p[65535] = 1;
	}
	_exit(0);
}

TEST_F(arena, out_of_vmas_releasing_merged_quarantine_never_aborts)
{
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect") && strcmp(variant->backend, "guard"))
		SKIP(return, "only mprotect and guard's moved-from chunks split VMAs");
	if (UNDER_SANITIZER)
		SKIP(return, "a sanitizer runtime maps and unmaps memory of its own and dies when VMAs run out");
	expect_child_ok(_metadata, release_merged_quarantine_out_of_vmas, NULL);
}

/*
 * Whether some page of [lo, hi) is mapped without read and write access,
 * by /proc/self/maps (read with raw calls into a static buffer: VMAs are
 * used up, so stdio's buffer could not be mapped). -1 if unreadable.
 */
static int protected_in(uintptr_t lo, uintptr_t hi)
{
	static char buf[8 << 20];
	size_t len = 0;
	ssize_t n;
	int fd = open("/proc/self/maps", O_RDONLY);

	if (fd < 0)
		return -1;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	for (char *c = buf; *c;) {
		unsigned long a = strtoul(c, &c, 16), b = strtoul(c + 1, &c, 16);

		if (a < hi && b > lo && (c[1] != 'r' || c[2] != 'w'))
			return 1;
		c = strchr(c, '\n');
		if (!c)
			break;
		c++;
	}
	return 0;
}

/*
 * An arena's chunks are protected one range at a time, and a range can
 * span several VMAs (huge-page advice splits a chunk; a neighbour with the
 * same advice merges into it): mprotect changes them in turn and can run
 * out of VMAs halfway. With nothing in quarantine to give back, such a
 * chunk goes back to the page heap unfaulted, and none of it may be left
 * inaccessible there: malloc hands that memory out next. arg: how many
 * VMAs are left free before the arena is freed.
 */
static void refused_fault_leaves_nothing_protected(void *arg)
{
	struct arena_config cfg;
	size_t page = 4096, cb;
	struct mh_stats st = MH_STATS_INIT;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	void *recent[8] = { NULL };
	mh_arena *a;
	int n = 0;

	arena_config_get(&cfg);
	cb = cfg.chunk_bytes;
	cfg.reuse = false;
	cfg.recycle = false;	/* no pages moved: the chunks keep their VMAs */
	cfg.quarantine_max = (size_t)1 << 40;
	arena_configure(&cfg);
	/* Two chunks and a half: huge-page advice, neighbours merged. */
	a = mh_arena_new();
	for (size_t k = 0; k < 2 * cb + cb / 2; k += 65536) {
		char *p = mh_arena_alloc(a, 65536, 0);

		if (!p)
			_exit(2);
		p[0] = 1;
		lo = (uintptr_t)p < lo ? (uintptr_t)p : lo;
		hi = (uintptr_t)p + 65536 > hi ? (uintptr_t)p + 65536 : hi;
	}
	/* Every VMA taken: alternate protections so neighbours never merge. */
	for (void *p; n < 70000; n++) {
		p = mmap(NULL, page, n & 1 ? PROT_READ : PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		recent[n % 8] = p;
	}
	/* Then give back as many as asked, each its own VMA. */
	for (intptr_t i = 0; i < (intptr_t)arg; i++)
		munmap(recent[i], page);
	mh_arena_free(a);
	mh_stats_read(&st);
	if (st.arena_chunks_quarantined)
		_exit(0);	/* faulted after all: nothing to check here */
	_exit(protected_in(lo, hi) == 0 ? 0 : 3);
}

TEST_F(arena, a_fault_refused_halfway_leaves_no_chunk_protected_in_the_heap)
{
	RETURN_IF_SETUP_SKIPPED();

	if (strcmp(variant->backend, "mprotect") && strcmp(variant->backend, "guard"))
		SKIP(return, "only mprotect and guard's whole chunks split VMAs");
	if (UNDER_SANITIZER)
		SKIP(return, "a sanitizer runtime maps and unmaps memory of its own and dies when VMAs run out");
	for (intptr_t free_vmas = 0; free_vmas < 4; free_vmas++)
		expect_child_ok(_metadata, refused_fault_leaves_nothing_protected, (void *)free_vmas);
}

/* ------------------------------------------------------------ out of memory */

/* Under RLIMIT_AS, fill the heap with quarantined chunks until a new chunk
 * needs old quarantine released (in a child: it exits on failure). */
static void fill_address_space_with_quarantine(void)
{
	struct arena_config cfg;
	struct rlimit rl;
	struct mh_stats st = MH_STATS_INIT;
	int i;

	arena_config_get(&cfg);
	cfg.reuse = false;
	cfg.quarantine_max = (size_t)1 << 40;
	arena_configure(&cfg);
	mh_free(mh_malloc(100));
	rl.rlim_cur = rl.rlim_max = vm_bytes() + ((size_t)200 << 20);
	if (setrlimit(RLIMIT_AS, &rl))
		_exit(2);
	for (i = 0; i < 1000; i++) {
		mh_arena *a = mh_arena_new();

		if (!a || !mh_arena_alloc(a, 64, 0))
			_exit(3);
		mh_arena_free(a);
		mh_stats_read(&st);
		if (st.arena_releases_enomem)
			break;
	}
	if (i == 1000)
		_exit(4);
}

/* Then a block larger than any free run must still be had, from
 * quarantine given back. */
static void large_malloc_with_quarantine_full(void *arg)
{
	size_t big = (size_t)48 << 20;
	char *p;

	(void)arg;
	fill_address_space_with_quarantine();
	p = mh_malloc(big);
	if (!p)
		_exit(5);
	p[0] = p[big - 1] = 1;
	_exit(0);
}

/* ... and so must small objects, whose spans need pages as well. */
static void small_mallocs_with_quarantine_full(void *arg)
{
	(void)arg;
	fill_address_space_with_quarantine();
	for (int i = 0; i < 20000; i++) {
		char *p = mh_malloc(4000);

		if (!p)
			_exit(5);
		p[0] = 1;
	}
	_exit(0);
}

/* Run fn, a child that starts with fill_address_space_with_quarantine. */
static void expect_ok_out_of_address_space(struct __test_metadata *_metadata,
					   const FIXTURE_VARIANT(arena) *variant,
					   void (*fn)(void *))
{
	if (!faults(variant))
		SKIP(return, "the none backend quarantines nothing");
	if (UNDER_SANITIZER)
		SKIP(return, "sanitizer runtimes reserve terabytes of shadow: RLIMIT_AS cannot apply");
	expect_child_ok(_metadata, fn, NULL);
}

TEST_F(arena, malloc_out_of_address_space_takes_it_back_from_quarantine)
{
	RETURN_IF_SETUP_SKIPPED();
	expect_ok_out_of_address_space(_metadata, variant, large_malloc_with_quarantine_full);
}

TEST_F(arena, small_mallocs_out_of_address_space_take_it_back_from_quarantine)
{
	RETURN_IF_SETUP_SKIPPED();
	expect_ok_out_of_address_space(_metadata, variant, small_mallocs_with_quarantine_full);
}

/* The state of the mapping holding p in /proc/self/maps: its "rwxp" field. */
static void mapping_perms(const void *p, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e;
	char line[512], pr[5];

	strcpy(perms, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %4s", &s, &e, pr) == 3 &&
		    s <= (uintptr_t)p && (uintptr_t)p < e)
			strcpy(perms, pr);
	fclose(f);
}

/* The guard backend protects a whole chunk with mprotect, moved-from (it is
 * empty and a VMA of its own already) or not (it owns its page tables,
 * which guard entries would keep); both fault, and both come back from
 * quarantine as ordinary memory. */
TEST_F(arena, guard_protects_quarantined_chunks_moved_or_not)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	char perms[5], *full, *active;
	mh_arena *a;

	if (strcmp(variant->backend, "guard"))
		SKIP(return, "the guard backend's own choice");
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	fill_arena(a, 2 * cb, 6);
	/* The active chunk, hardly used: not moved. */
	active = mh_arena_alloc(a, 65536, 0);
	memset(active, 6, 65536);
	full = active - cb;	/* in the second chunk, full, moved */
	ASSERT_TRUE(mh_in_arena(full));
	mh_arena_free(a);
	ASSERT_EQ(2, warm_chunks());
	mapping_perms(full, perms);
	EXPECT_STREQ("---p", perms);
	mapping_perms(active, perms);
	EXPECT_STREQ("---p", perms);
	expect_uaf(_metadata, full, true);
	expect_uaf(_metadata, active, false);
	mh_quarantine_release();
	mapping_perms(full, perms);
	EXPECT_STREQ("rw-p", perms);
	mapping_perms(active, perms);
	EXPECT_STREQ("rw-p", perms);
}

/* This process's page tables (VmPTE), in KiB. */
static long page_table_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPTE: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* Whether MADV_DONTNEED frees the page tables of a range it empties
 * (CONFIG_PT_RECLAIM, 6.14+): 64 MiB touched in small pages hold 128 KiB. */
static bool kernel_frees_empty_page_tables(void)
{
	size_t len = (size_t)64 << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long before, held, after;

	if (p == MAP_FAILED)
		return false;
	madvise(p, len, MADV_NOHUGEPAGE);
	before = page_table_kib();
	for (size_t o = 0; o < len; o += 4096)
		p[o] = 1;
	held = page_table_kib();
	madvise(p, len, MADV_DONTNEED);
	after = page_table_kib();
	munmap(p, len);
	return held - before >= 96 && after - before < 32;
}

/*
 * A quarantined chunk holds no page tables, whatever the backend that
 * faults it (kmod's are the module's): 64 chunks each written through
 * small pages would keep 16 KiB each (1 MiB) if their guard entries lived
 * in them.
 */
TEST_F(arena, quarantined_chunks_keep_no_page_tables)
{
	RETURN_IF_SETUP_SKIPPED();

	struct arena_config cfg = self->cfg;
	size_t cb = cfg.chunk_bytes;
	long before, held, after;
	mh_arena *a[64];

	if (!faults(variant) || !strcmp(variant->backend, "kmod"))
		SKIP(return, "only the anonymous memory of mprotect and guard");
	if (!kernel_frees_empty_page_tables())
		SKIP(return, "this kernel keeps empty page tables (no CONFIG_PT_RECLAIM)");
	cfg.reuse = false;
	cfg.thp = false;	/* small pages: a page table per 2 MiB written */
	arena_configure(&cfg);
	before = page_table_kib();
	for (int i = 0; i < 64; i++) {
		char *p;

		a[i] = mh_arena_new();
		p = mh_arena_alloc(a[i], cb / 2, 0);
		ASSERT_NE(NULL, p);
		for (size_t o = 0; o < cb / 2; o += 4096)
			p[o] = 1;
	}
	held = page_table_kib();
	for (int i = 0; i < 64; i++)
		mh_arena_free(a[i]);
	after = page_table_kib();
	TH_LOG("page tables: %ld KiB before, %ld written, %ld quarantined", before, held, after);
	ASSERT_GE(held - before, 64 * 8);
	EXPECT_LT(after - before, 64 * 2);
}

TEST_HARNESS_MAIN
