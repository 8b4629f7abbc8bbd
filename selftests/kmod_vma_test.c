// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap mappings against what processes do to their address space,
 * as a kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down:
 *  - a fork() child inherits no mapping, and one that MADV_DOFORK made
 *    inheritable is dead in it: no page-table entry, none of the parent's
 *    data, SIGBUS, no commands (6.1 and 6.12 copy the VMA in a different
 *    order, the promise holds for both);
 *  - a mapping outlives close() of its descriptor, and munmap() and exit()
 *    give everything back;
 *  - the mapping cannot be split, moved or grown (munmap, mprotect,
 *    madvise of a part, mremap, MAP_FIXED over it) and is never
 *    executable; changes of the whole mapping and every madvise, msync
 *    and mlock leave it working;
 *  - mmap() checks its arguments.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

KDEV_FIXTURE(dev)

/* ------------------------------------------------------------ fork, close */

static struct {
	char *mem;
	int fd;
} child_arg;

static void child_has_no_mapping(void *arg)
{
	(void)arg;
	probes_install();
	if (device_mapped_at(child_arg.mem))
		_exit(10);
	if (try_read(child_arg.mem, NULL) != SIGSEGV)
		_exit(11);
	/* The inherited descriptor finds nothing of the child's there. */
	if (kfault(child_arg.fd, child_arg.mem, page) != EINVAL)
		_exit(12);
	/* The child may map the device for itself, from its own open. */
	int fd = dev_open();
	char *m = dev_map(fd, page);

	if (!m || try_write(m, 3) || kfault(fd, m, page) || try_read(m, NULL) != SIGSEGV)
		_exit(13);
	_exit(0);
}

TEST_F(dev, fork_children_do_not_inherit_mappings)
{
	struct child_result r;
	char v;

	memset(self->d.mem, 'P', self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem + page, page));
	child_arg.mem = self->d.mem;
	child_arg.fd = self->d.fd;
	run_child(child_has_no_mapping, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x", r.status);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
	/* The parent's mapping is as it was. */
	ASSERT_EQ(0, try_read(self->d.mem, &v));
	EXPECT_EQ('P', v);
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem + page, NULL));
}

static void child_with_dofork_mapping(void *arg)
{
	(void)arg;
	probes_install();
	if (!device_mapped_at(child_arg.mem))
		_exit(10);
	/* Dead in the child: no page of the parent's, no new page. */
	if (try_read(child_arg.mem, NULL) != SIGBUS)
		_exit(11);
	if (try_write(child_arg.mem + page, 1) != SIGBUS)
		_exit(12);
	if (kfault(child_arg.fd, child_arg.mem, page) != EINVAL)
		_exit(13);
	if (munmap(child_arg.mem, KDEV_PAGES * page))
		_exit(14);
	_exit(0);
}

TEST_F(dev, a_mapping_inherited_through_madv_dofork_is_dead_in_the_child)
{
	struct child_result r;

	memset(self->d.mem, 'P', self->d.len);
	ASSERT_EQ(0, madvise(self->d.mem, self->d.len, MADV_DOFORK));
	child_arg.mem = self->d.mem;
	child_arg.fd = self->d.fd;
	run_child(child_with_dofork_mapping, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x", r.status);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
	EXPECT_EQ('P', self->d.mem[0]);
	EXPECT_EQ('P', self->d.mem[self->d.len - 1]);
}

TEST_F(dev, a_mapping_outlives_close_and_everything_goes_at_munmap)
{
	struct gauges g;
	int fd = dev_open();
	char *m = dev_map(fd, 16 * page);

	ASSERT_NE(NULL, m);
	memset(m, 9, 16 * page);
	ASSERT_EQ(0, kfault(fd, m, 4 * page));
	ASSERT_EQ(0, close(fd));
	/* The context lives on with its mapping. */
	gauges_read(&g);
	EXPECT_EQ(self->d.before.contexts + 2, g.contexts);
	EXPECT_EQ(9, m[8 * page]);
	EXPECT_EQ(SIGSEGV, try_read(m, NULL));
	EXPECT_EQ(12 * page, (size_t)(g.resident - self->d.before.resident));
	EXPECT_EQ(4 * page, (size_t)(g.quarantined - self->d.before.quarantined));
	ASSERT_EQ(0, munmap(m, 16 * page));
	gauges_read(&g);
	EXPECT_EQ(self->d.before.contexts + 1, g.contexts);
	EXPECT_EQ(self->d.before.resident, g.resident);
	EXPECT_EQ(self->d.before.quarantined, g.quarantined);
}

static void map_fault_and_exit(void *arg)
{
	int fd = dev_open();
	char *m = dev_map(fd, 32 * page);

	(void)arg;
	if (!m)
		_exit(1);
	memset(m, 1, 32 * page);
	kfault(fd, m + 4 * page, 8 * page);
	_exit(0);	/* with the mapping, the fault and the descriptor */
}

TEST_F(dev, exit_gives_everything_back)
{
	struct child_result r;
	struct gauges g;

	for (int i = 0; i < 4; i++) {
		run_child(map_fault_and_exit, NULL, &r);
		ASSERT_TRUE(WIFEXITED(r.status));
		ASSERT_EQ(0, WEXITSTATUS(r.status));
	}
	/* Only the fixture's own mapping and context remain. */
	gauges_read(&g);
	EXPECT_EQ(self->d.before.mapped + (long long)self->d.len, g.mapped);
	EXPECT_EQ(self->d.before.resident, g.resident);
	EXPECT_EQ(self->d.before.quarantined, g.quarantined);
	EXPECT_EQ(self->d.before.ranges, g.ranges);
	EXPECT_EQ(self->d.before.mappings + 1, g.mappings);
	EXPECT_EQ(self->d.before.contexts + 1, g.contexts);
}

/* ------------------------------------------------------------ VMA changes */

/* Still one whole working VMA, its first byte 'k' (see the tests below). */
static void expect_whole_and_working(struct __test_metadata *_metadata, struct kdev *d)
{
	EXPECT_EQ(1, vmas_in((uintptr_t)d->mem, (uintptr_t)d->mem + d->len));
	EXPECT_EQ('k', d->mem[0]);
	EXPECT_EQ(0, kfault(d->fd, d->mem + page, page));
	EXPECT_EQ(SIGSEGV, try_read(d->mem + page, NULL));
}

TEST_F(dev, munmap_mprotect_and_madvise_of_a_part_are_einval)
{
	char *m = self->d.mem;

	m[0] = 'k';
	EXPECT_FAILS_WITH(EINVAL, munmap(m + page, page));
	EXPECT_FAILS_WITH(EINVAL, munmap(m, page));
	EXPECT_FAILS_WITH(EINVAL, mprotect(m + 2 * page, page, PROT_READ));
	/* A flag change on part of it (MADV_DONTFORK would be none: it is set). */
	EXPECT_FAILS_WITH(EINVAL, madvise(m, page, MADV_DOFORK));
	expect_whole_and_working(_metadata, &self->d);
}

TEST_F(dev, mremap_cannot_grow_shrink_or_move_it)
{
	char *m = self->d.mem;
	size_t len = self->d.len;
	void *p;

	m[0] = 'k';
	EXPECT_EQ(MAP_FAILED, mremap(m, len, len + page, 0));
	EXPECT_EQ(MAP_FAILED, mremap(m, len, len + page, MREMAP_MAYMOVE));
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(m, len, len / 2, 0));
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(m, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p));
	EXPECT_EQ(EINVAL, errno);
	munmap(p, len);
	expect_whole_and_working(_metadata, &self->d);
}

TEST_F(dev, a_map_fixed_mapping_over_a_part_fails)
{
	char *m = self->d.mem;

	m[0] = 'k';
	EXPECT_EQ(MAP_FAILED, mmap(m + page, page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
	expect_whole_and_working(_metadata, &self->d);
}

TEST_F(dev, mprotect_of_the_whole_works_but_never_makes_it_executable)
{
	char *m = self->d.mem;

	m[0] = 'k';
	ASSERT_EQ(0, mprotect(m, self->d.len, PROT_READ));
	EXPECT_EQ(SIGSEGV, try_write(m, 1));
	ASSERT_EQ(0, mprotect(m, self->d.len, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, try_write(m, 'k'));
	EXPECT_FAILS_WITH(EACCES, mprotect(m, self->d.len, PROT_READ | PROT_EXEC));
	expect_whole_and_working(_metadata, &self->d);
}

TEST_F(dev, madvise_msync_and_mlock_of_every_kind_leave_it_working)
{
	/* Everything but MADV_HWPOISON and MADV_SOFT_OFFLINE, which act on
	 * the pages themselves (and need CAP_SYS_ADMIN). */
	static const int advice[] = {
		MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED,
		MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE,
		MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP,
		MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ,
		MADV_POPULATE_WRITE, 24 /* DONTNEED_LOCKED */, 25 /* COLLAPSE */,
	};
	char *m = self->d.mem, *q = m + 16 * page;

	memset(m, 'M', self->d.len);
	ASSERT_EQ(0, kfault(self->d.fd, q, 4 * page));
	for (size_t i = 0; i < sizeof(advice) / sizeof(advice[0]); i++) {
		int whole = madvise(m, self->d.len, advice[i]) ? errno : 0;
		int part = madvise(m, page, advice[i]) ? errno : 0;

		TH_LOG("madvise %d: whole %s, first page %s", advice[i], strerror(whole),
		       strerror(part));
	}
	ASSERT_EQ(0, madvise(m, self->d.len, MADV_DONTFORK));
	/* Population stops at quarantine. */
	errno = 0;
	EXPECT_EQ(-1, madvise(q, page, MADV_POPULATE_WRITE));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, msync(m, self->d.len, MS_SYNC));
	EXPECT_EQ(0, msync(m, self->d.len, MS_ASYNC | MS_INVALIDATE));
	/* mlock() locks nothing here (a VM_MIXEDMAP mapping) but populates
	 * the range, which fails on quarantine. */
	EXPECT_EQ(0, mlock(m, 16 * page));
	EXPECT_EQ(0, munlock(m, 16 * page));
	errno = 0;
	EXPECT_EQ(-1, mlock(m, self->d.len));
	EXPECT_EQ(ENOMEM, errno);

	/* Contents, quarantine and the single VMA all as they were. */
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + self->d.len));
	for (size_t i = 0; i < self->d.len; i += 512) {
		if (i >= 16 * page && i < 20 * page) {
			ASSERT_EQ(SIGSEGV, try_read(m + i, NULL));
		} else {
			char v = 0;

			ASSERT_EQ(0, try_read(m + i, &v));
			ASSERT_EQ('M', v) TH_LOG("offset %zu", i);
		}
	}
}

TEST_F(dev, mmap_checks_its_arguments)
{
	void *p;

	errno = 0;
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->d.fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, self->d.fd, page);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	p = mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_SHARED, self->d.fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EPERM, errno);
	errno = 0;
	p = mmap(NULL, MHEAP_MAP_MAX + page, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_NORESERVE, self->d.fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(ENOMEM, errno);
	/* The largest one is fine, and costs nothing until touched. */
	p = mmap(NULL, MHEAP_MAP_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, self->d.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	((char *)p)[MHEAP_MAP_MAX - 1] = 1;
	EXPECT_EQ(0, kfault(self->d.fd, (char *)p + MHEAP_MAP_MAX / 2, MHEAP_MAP_MAX / 2));
	EXPECT_EQ(SIGSEGV, try_read((char *)p + MHEAP_MAP_MAX - 1, NULL));
	munmap(p, MHEAP_MAP_MAX);
	/* Read-only descriptor: read-only shared mappings only. */
	int ro = open(DEV_PATH, O_RDONLY | O_CLOEXEC);

	ASSERT_LE(0, ro);
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0));
	EXPECT_EQ(EACCES, errno);
	p = mmap(NULL, page, PROT_READ, MAP_SHARED, ro, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, *(volatile char *)p);
	munmap(p, page);
	close(ro);
}

/* ------------------------------------------------------------ MADV_DOFORK */

#define DOFORK_PAGES	4

/* Rss of the mapping that starts at addr, in kB, from smaps; -1 if none. */
static long smaps_rss_kb(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512], want[32];
	bool in = false;
	long kb = -1;

	if (!f)
		return -1;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			in = true;
		else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return in ? kb : -1;
}

/*
 * The child's side: exit status 0 if the mapping is dead here, else what
 * was wrong (1-3 from probe results, 4 no mapping, 5 entries copied).
 */
static int dofork_child(char *mem, size_t len)
{
	char v;
	int sig;

	/* Page-table entries copied from the parent show up as Rss. */
	if (smaps_rss_kb(mem) < 0)
		return 4;
	if (smaps_rss_kb(mem) != 0)
		return 5;
	probes_install();
	for (size_t off = 0; off < len; off += page) {
		v = 0;
		sig = try_read(mem + off, &v);
		if (!sig && v == 'P')
			return 1;	/* the parent's data */
		if (sig != SIGBUS)
			return 2;
		if (try_write(mem + off, 'C') != SIGBUS)
			return 3;
	}
	return 0;
}

TEST_F(dev, a_dofork_mapping_shows_a_child_nothing_of_the_parent)
{
	static const char *const why[] = {
		[1] = "the child read the parent's data",
		[2] = "a read in the child did not raise SIGBUS",
		[3] = "a write in the child did not raise SIGBUS",
		[4] = "the child has no mapping there",
		[5] = "page-table entries were copied into the child (smaps Rss)",
	};
	size_t len = DOFORK_PAGES * page;
	int status;
	char *mem;
	pid_t pid;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, self->d.fd, 0);
	ASSERT_NE(MAP_FAILED, mem) TH_LOG("mmap: %s", strerror(errno));
	/* Every page resident and mapped in the parent. */
	memset(mem, 'P', len);
	ASSERT_EQ(0, madvise(mem, len, MADV_DOFORK))
		TH_LOG("MADV_DOFORK: %s", strerror(errno));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(dofork_child(mem, len));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child status %#x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("%s", WEXITSTATUS(status) < 6 ?
		       why[WEXITSTATUS(status)] : "?");

	/* The parent's pages are its own still. */
	for (size_t off = 0; off < len; off++)
		if (mem[off] != 'P') {
			EXPECT_EQ('P', mem[off]) TH_LOG("at offset %zu", off);
			break;
		}
	EXPECT_EQ(0, munmap(mem, len));
}

TEST_HARNESS_MAIN
