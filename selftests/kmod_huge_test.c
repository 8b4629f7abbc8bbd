// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap's huge pages, as a kselftest.
 *
 * A block of a mapping advised MADV_HUGEPAGE (the 2 MiB one PMD maps, at a
 * 2 MiB-aligned address) that is touched while it has no page and no
 * quarantine is served by one compound page mapped with one PMD, so that a
 * FAULT of a used-up chunk frees it a block at a time. Nothing else the ABI
 * promises may change:
 *  - a mapping of 2 MiB or more is 2 MiB-aligned;
 *  - one touch makes the whole block resident and one page fault maps all
 *    of it; a mapping without the advice, or with MADV_NOHUGEPAGE after
 *    it, an unaligned tail and a block with quarantine in it stay in small
 *    pages;
 *  - FAULT and RELEASE of part of a block act on exactly their pages: the
 *    neighbours keep their data and the counters count pages, a FAULT over
 *    the limit changes nothing, and the block is freed with its last page;
 *  - write protection (mprotect, clear_refs) and a write afterwards, every
 *    madvise() advice and a refused mremap() keep the block's data;
 *  - threads touching a fresh block at once all get the one compound page;
 *  - get_user_pages across blocks (process_vm_readv, vmsplice) sees the
 *    data, and a page pinned by vmsplice keeps its contents after a FAULT
 *    of its whole block;
 *  - a child of fork() after MADV_DOFORK gets nothing of a huge block.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"
#include "kmod_util.h"

#define BLOCK		(2u << 20)
#define NBLOCKS		2

/* Bytes the module holds for this descriptor. */
static long long resident(int fd)
{
	struct mheap_stats st;

	return kstats(fd, &st) ? -1 : (long long)st.self.resident_bytes;
}

/* Page faults this thread has taken so far. */
static long minor_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) ? -1 : ru.ru_minflt;
}

/* Byte i of a block filled by fill(). */
static char pattern(size_t i)
{
	return (char)(i / page * 3 + 1);
}

static void fill(char *p, size_t len)
{
	for (size_t i = 0; i < len; i += page)
		memset(p + i, pattern(i), page);
}

/* The first page in [off, len) that does not hold fill()'s pattern, or len. */
static size_t first_changed(const char *p, size_t off, size_t len)
{
	for (; off < len; off += page)
		for (size_t i = 0; i < page; i++)
			if (p[off + i] != pattern(off))
				return off;
	return len;
}

/* ------------------------------------------------------------ fixture */

/* A context and a mapping of NBLOCKS blocks advised MADV_HUGEPAGE. */
FIXTURE(block) {
	struct kdev d;
};

FIXTURE_SETUP(block)
{
	kdev_setup_len(_metadata, &self->d, NBLOCKS * BLOCK);
	ASSERT_EQ(0, madvise(self->d.mem, self->d.len, MADV_HUGEPAGE));
}

FIXTURE_TEARDOWN(block)
{
	kdev_teardown(_metadata, &self->d);
}

/* ------------------------------------------------------------ mapping */

TEST_F(block, a_mapping_of_2_mib_or_more_is_2_mib_aligned)
{
	char *more = dev_map(self->d.fd, BLOCK + page);

	EXPECT_EQ(0, (uintptr_t)self->d.mem % BLOCK);
	ASSERT_NE(NULL, more);
	EXPECT_EQ(0, (uintptr_t)more % BLOCK);
	munmap(more, BLOCK + page);
}

TEST_F(block, one_touch_makes_the_whole_block_resident)
{
	ASSERT_EQ(0, try_write(self->d.mem + 5 * page, 1));
	/* That block, and nothing of the other one until it is touched. */
	EXPECT_EQ(BLOCK, resident(self->d.fd));
	ASSERT_EQ(0, try_write(self->d.mem + BLOCK, 1));
	EXPECT_EQ(2 * BLOCK, resident(self->d.fd));
	EXPECT_EQ(1, self->d.mem[5 * page]);
	EXPECT_EQ(0, self->d.mem[6 * page]);
	EXPECT_EQ(0, self->d.mem[BLOCK - 1]);
}

TEST_F(block, one_page_fault_maps_the_whole_block)
{
	long before;

	/* Warm up everything the loop below touches but the block. */
	before = minor_faults();
	before = minor_faults();
	for (size_t i = 0; i < BLOCK; i += page)
		self->d.mem[i] = 1;
	EXPECT_EQ(1, minor_faults() - before);
}

TEST_F(block, a_mapping_without_madv_hugepage_has_small_pages)
{
	char *m = dev_map(self->d.fd, BLOCK);
	long before;

	ASSERT_NE(NULL, m);
	ASSERT_EQ(0, try_write(m, 1));
	EXPECT_EQ(page, resident(self->d.fd));
	before = minor_faults();
	before = minor_faults();
	for (size_t i = page; i < BLOCK; i += page)
		m[i] = 1;
	EXPECT_EQ(BLOCK / page - 1, minor_faults() - before);
	munmap(m, BLOCK);
}

TEST_F(block, madv_nohugepage_takes_the_advice_back)
{
	ASSERT_EQ(0, madvise(self->d.mem, self->d.len, MADV_NOHUGEPAGE));
	ASSERT_EQ(0, try_write(self->d.mem, 1));
	EXPECT_EQ(page, resident(self->d.fd));
}

TEST_F(block, a_block_the_mapping_ends_inside_of_has_small_pages)
{
	size_t len = BLOCK + 4 * page;
	char *m = dev_map(self->d.fd, len);

	ASSERT_NE(NULL, m);
	ASSERT_EQ(0, madvise(m, len, MADV_HUGEPAGE));
	ASSERT_EQ(0, try_write(m + BLOCK + page, 1));
	EXPECT_EQ(page, resident(self->d.fd));
	munmap(m, len);
}

TEST_F(block, a_block_with_quarantine_in_it_has_small_pages)
{
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem + 7 * page, page));
	ASSERT_EQ(0, try_write(self->d.mem, 1));
	EXPECT_EQ(page, resident(self->d.fd));
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem + 7 * page, NULL));
}

/* ------------------------------------------------------------ FAULT, RELEASE */

TEST_F(block, fault_of_part_of_a_block_faults_exactly_that_range)
{
	char *m = self->d.mem;

	fill(m, self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, m + 100 * page, 10 * page));
	EXPECT_EQ(self->d.len - 10 * page, resident(self->d.fd));
	EXPECT_EQ(SIGSEGV, try_read(m + 100 * page, NULL));
	EXPECT_EQ(SIGSEGV, try_read(m + 109 * page + page - 1, NULL));
	/* The neighbours and the rest of both blocks kept their data. */
	EXPECT_EQ(100 * page, first_changed(m, 0, 100 * page));
	EXPECT_EQ(self->d.len, first_changed(m, 110 * page, self->d.len));
	/* Released, the range is zero-fill; still nothing else changed. */
	ASSERT_EQ(0, krelease(self->d.fd, m + 100 * page, 10 * page));
	for (size_t i = 100 * page; i < 110 * page; i++) {
		ASSERT_EQ(0, m[i]) TH_LOG("byte %zu", i);
	}
	EXPECT_EQ(100 * page, first_changed(m, 0, self->d.len));
	EXPECT_EQ(self->d.len, first_changed(m, 110 * page, self->d.len));
	EXPECT_EQ(self->d.len, resident(self->d.fd));
}

TEST_F(block, release_of_part_of_a_block_zeroes_exactly_that_range)
{
	char *m = self->d.mem;

	fill(m, BLOCK);
	ASSERT_EQ(0, krelease(self->d.fd, m + BLOCK - 2 * page, page));
	EXPECT_EQ(BLOCK - page, resident(self->d.fd));
	EXPECT_EQ(BLOCK - 2 * page, first_changed(m, 0, BLOCK));
	for (size_t i = BLOCK - 2 * page; i < BLOCK - page; i++) {
		ASSERT_EQ(0, m[i]) TH_LOG("byte %zu", i);
	}
	EXPECT_EQ(BLOCK, first_changed(m, BLOCK - page, BLOCK));
}

TEST_F(block, a_range_across_two_blocks_cuts_both_exactly)
{
	char *m = self->d.mem;

	fill(m, self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, m + BLOCK - 3 * page, 5 * page));
	EXPECT_EQ(self->d.len - 5 * page, resident(self->d.fd));
	EXPECT_EQ(BLOCK - 3 * page, first_changed(m, 0, BLOCK - 3 * page));
	EXPECT_EQ(SIGSEGV, try_read(m + BLOCK - 3 * page, NULL));
	EXPECT_EQ(SIGSEGV, try_read(m + BLOCK + page, NULL));
	EXPECT_EQ(self->d.len, first_changed(m, BLOCK + 2 * page, self->d.len));
}

TEST_F(block, a_cut_block_goes_with_its_last_page)
{
	char *m = self->d.mem;

	fill(m, BLOCK);
	ASSERT_EQ(0, kfault(self->d.fd, m, page));
	ASSERT_EQ(0, kfault(self->d.fd, m + 2 * page, BLOCK - 2 * page));
	EXPECT_EQ(page, resident(self->d.fd));
	EXPECT_EQ(pattern(page), m[page]);
	ASSERT_EQ(0, kfault(self->d.fd, m + page, page));
	EXPECT_EQ(0, resident(self->d.fd));
	/* Released as a whole, the block is one compound page again. */
	ASSERT_EQ(0, krelease(self->d.fd, m, BLOCK));
	ASSERT_EQ(0, try_write(m + 9 * page, 1));
	EXPECT_EQ(BLOCK, resident(self->d.fd));
	EXPECT_EQ(0, m[0]);
}

/* The block is cut before the limit is checked; the cut alone changes nothing. */
TEST_F(block, a_fault_over_the_limit_leaves_a_cut_block_as_it_was)
{
	char *m = self->d.mem;

	fill(m, BLOCK);
	ASSERT_EQ(0, klimit(self->d.fd, page, 0));
	EXPECT_EQ(EDQUOT, kfault(self->d.fd, m + 7 * page, 2 * page));
	EXPECT_EQ(BLOCK, resident(self->d.fd));
	EXPECT_EQ(BLOCK, first_changed(m, 0, BLOCK));
	ASSERT_EQ(0, kfault(self->d.fd, m + 7 * page, page));
	EXPECT_EQ(SIGSEGV, try_read(m + 7 * page, NULL));
	EXPECT_EQ(7 * page, first_changed(m, 0, 7 * page));
	EXPECT_EQ(BLOCK, first_changed(m, 8 * page, BLOCK));
	EXPECT_EQ(BLOCK - page, resident(self->d.fd));
}

TEST_F(block, fault_of_whole_blocks_frees_them)
{
	fill(self->d.mem, self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, self->d.len));
	EXPECT_EQ(0, resident(self->d.fd));
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem + BLOCK + 3, NULL));
	ASSERT_EQ(0, krelease(self->d.fd, self->d.mem, self->d.len));
	EXPECT_EQ(0, self->d.mem[BLOCK + 3]);
	EXPECT_EQ(BLOCK, resident(self->d.fd));
}

/* ------------------------------------------------------------ write protection */

TEST_F(block, mprotect_read_only_and_back_keeps_a_huge_block)
{
	fill(self->d.mem, BLOCK);
	ASSERT_EQ(0, mprotect(self->d.mem, self->d.len, PROT_READ));
	EXPECT_EQ(SIGSEGV, try_write(self->d.mem + 3 * page, 1));
	EXPECT_EQ(BLOCK, first_changed(self->d.mem, 0, BLOCK));
	ASSERT_EQ(0, mprotect(self->d.mem, self->d.len, PROT_READ | PROT_WRITE));
	ASSERT_EQ(0, try_write(self->d.mem + 3 * page, 'W'));
	EXPECT_EQ('W', self->d.mem[3 * page]);
	EXPECT_EQ(BLOCK, resident(self->d.fd));
}

/* Clearing the soft-dirty bits write-protects every page-table entry. */
TEST_F(block, a_block_write_protected_by_clear_refs_is_written_again)
{
	int fd;

	fill(self->d.mem, BLOCK);
	fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		SKIP(return, "no /proc/self/clear_refs: %s", strerror(errno));
	ASSERT_EQ(1, write(fd, "4", 1));
	close(fd);
	ASSERT_EQ(0, try_write(self->d.mem + 3 * page, 'W'));
	EXPECT_EQ('W', self->d.mem[3 * page]);
	EXPECT_EQ(pattern(4 * page), self->d.mem[4 * page]);
	EXPECT_EQ(BLOCK, resident(self->d.fd));
}

/*
 * Every madvise() advice up to MADV_COLLAPSE (25; the unknown ones fail),
 * on a PMD-mapped block and on a cut one whose pages are mapped one by one:
 * MADV_PAGEOUT and MADV_COLD try to split the compound page, which the
 * kernel refuses for a page that is in no file's page cache.
 */
TEST_F(block, madvise_of_every_kind_leaves_whole_and_cut_blocks_working)
{
	char *m = self->d.mem, *q = m + BLOCK + 16 * page;

	fill(m, self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, q, 4 * page));
	ASSERT_EQ(16 * page, first_changed(m + BLOCK, 0, 16 * page));
	for (int advice = 0; advice <= 25; advice++) {
		int whole = madvise(m, self->d.len, advice) ? errno : 0;
		int part = madvise(m + BLOCK, 3 * page, advice) ? errno : 0;

		TH_LOG("madvise %d: whole %s, three pages %s", advice,
		       strerror(whole), strerror(part));
	}
	EXPECT_EQ(BLOCK + 16 * page, first_changed(m, 0, BLOCK + 16 * page));
	EXPECT_EQ(SIGSEGV, try_read(q, NULL));
	EXPECT_EQ(self->d.len, first_changed(m, BLOCK + 20 * page, self->d.len));
	EXPECT_EQ(self->d.len - 4 * page, resident(self->d.fd));
}

/*
 * mremap() moves the page tables, huge PMDs whole where source and target
 * are both aligned and split (cleared) where not, before the module refuses
 * the move and they are moved back.
 */
TEST_F(block, a_refused_mremap_leaves_the_blocks_and_their_data)
{
	size_t span = self->d.len + BLOCK;
	char *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *aligned;

	ASSERT_NE(MAP_FAILED, p);
	aligned = p + (-(uintptr_t)p & (BLOCK - 1));
	fill(self->d.mem, self->d.len);
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(self->d.mem, self->d.len, self->d.len,
				     MREMAP_MAYMOVE | MREMAP_FIXED, aligned));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(self->d.mem, self->d.len, self->d.len,
				     MREMAP_MAYMOVE | MREMAP_FIXED, aligned + page));
	EXPECT_EQ(EINVAL, errno);
	munmap(p, span);
	EXPECT_EQ(self->d.len, first_changed(self->d.mem, 0, self->d.len));
	EXPECT_EQ(self->d.len, resident(self->d.fd));
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, self->d.len));
	EXPECT_EQ(0, resident(self->d.fd));
}

/* ------------------------------------------------------------ threads */

#define TOUCHERS 4

static struct {
	char *mem;
	pthread_barrier_t go;
} touch_arg;

static void *toucher(void *arg)
{
	size_t i = (uintptr_t)arg;
	char *p = touch_arg.mem + i * (BLOCK / TOUCHERS) + i * page;

	pthread_barrier_wait(&touch_arg.go);
	*p = (char)(i + 1);
	return NULL;
}

TEST_F(block, threads_touching_a_fresh_block_share_one_compound_page)
{
	pthread_t t[TOUCHERS];

	touch_arg.mem = self->d.mem;
	ASSERT_EQ(0, pthread_barrier_init(&touch_arg.go, NULL, TOUCHERS));
	for (uintptr_t i = 0; i < TOUCHERS; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, toucher, (void *)i));
	for (int i = 0; i < TOUCHERS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&touch_arg.go);
	EXPECT_EQ(BLOCK, resident(self->d.fd));
	for (size_t i = 0; i < TOUCHERS; i++)
		EXPECT_EQ((char)(i + 1),
			  self->d.mem[i * (BLOCK / TOUCHERS) + i * page]);
}

/* ------------------------------------------------------------ get_user_pages */

TEST_F(block, process_vm_readv_reads_across_blocks)
{
	size_t off = BLOCK - 3 * page, len = 6 * page;
	char *buf = malloc(len);
	struct iovec local = { buf, len }, remote = { self->d.mem + off, len };

	ASSERT_NE(NULL, buf);
	fill(self->d.mem, self->d.len);
	EXPECT_EQ((ssize_t)len, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	for (size_t i = 0; i < len; i++) {
		ASSERT_EQ(pattern(off + i), buf[i]) TH_LOG("byte %zu", i);
	}
	/* And across a block that a FAULT cut. */
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem + BLOCK + 4 * page, page));
	memset(buf, 0, len);
	EXPECT_EQ((ssize_t)len, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	for (size_t i = 0; i < len; i++) {
		ASSERT_EQ(pattern(off + i), buf[i]) TH_LOG("byte %zu", i);
	}
	free(buf);
}

TEST_F(block, a_page_pinned_by_vmsplice_outlives_fault_of_its_block)
{
	struct iovec iov = { self->d.mem + 33 * page, page };
	char *buf = malloc(page);
	int pfds[2];

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, pipe(pfds));
	fill(self->d.mem, BLOCK);
	ASSERT_EQ((ssize_t)page, vmsplice(pfds[1], &iov, 1, 0));
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, BLOCK));
	EXPECT_EQ(0, resident(self->d.fd));
	/* New memory comes and gets written; the pipe's page is not in it. */
	ASSERT_EQ(0, krelease(self->d.fd, self->d.mem, BLOCK));
	memset(self->d.mem, 'B', BLOCK);
	ASSERT_EQ((ssize_t)page, read(pfds[0], buf, page));
	for (size_t i = 0; i < page; i++) {
		ASSERT_EQ(pattern(33 * page), buf[i]) TH_LOG("byte %zu", i);
	}
	close(pfds[0]);
	close(pfds[1]);
	free(buf);
}

/* ------------------------------------------------------------ fork */

static char *dofork_mem;

static void child_touches_dofork_block(void *arg)
{
	(void)arg;
	probes_install();
	/* Dead in the child: no page of the parent's block, no new one. */
	if (try_read(dofork_mem + 17 * page, NULL) != SIGBUS)
		_exit(11);
	if (try_write(dofork_mem + BLOCK, 1) != SIGBUS)
		_exit(12);
	_exit(0);
}

TEST_F(block, a_child_after_madv_dofork_gets_nothing_of_a_huge_block)
{
	struct child_result r;

	fill(self->d.mem, self->d.len);
	ASSERT_EQ(0, madvise(self->d.mem, self->d.len, MADV_DOFORK));
	dofork_mem = self->d.mem;
	run_child(child_touches_dofork_block, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x", r.status);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
	EXPECT_EQ(self->d.len, first_changed(self->d.mem, 0, self->d.len));
}

TEST_HARNESS_MAIN
