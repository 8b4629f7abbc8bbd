// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap mappings under userfaultfd write protection, as a kselftest.
 *
 * userfaultfd refuses these mappings in every mode but one: from 6.7 the
 * asynchronous write protection (UFFD_FEATURE_WP_ASYNC, the write
 * tracking PAGEMAP_SCAN works with) accepts any memory, to any user
 * (UFFD_USER_MODE_ONLY needs no privilege). Protecting a page that has
 * no page-table entry leaves a marker in its place, which the module's
 * page fault cannot map over. Pinned down here, each in a child process
 * of an unprivileged user that makes its own mapping (children do not
 * inherit mappings), judged by the parent with a deadline:
 *  - a user access to a marked page completes (the marker goes, the page
 *    is mapped) rather than faulting again for ever;
 *  - so does a kernel access to one (read() into it), rather than
 *    looping in the kernel, where not even SIGKILL ends it;
 *  - a block mapped with a PMD before the protection, which protecting
 *    replaces with markers, keeps its contents readable and writable;
 *  - resident pages are protected and written as with any memory, the
 *    marked ones work again once the protection is lifted, and FAULT
 *    still makes any access SIGSEGV;
 *  - write faults racing the protection of fresh 2 MiB blocks leave the
 *    kernel log clean (a registered mapping gets no PMDs: protection can
 *    put a page table where the fault was about to put its PMD).
 * On kernels without the asynchronous mode (6.1) registering the mapping
 * for write protection fails, so no marker can exist: the tests check
 * that refusal and report SKIP.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC	(1 << 15)	/* 6.7 */
#endif

#define UFFD_PAGES	4
#define NOBODY		65534

/* How a child's run ended. */
enum {
	C_OK = 0,
	C_NO_ASYNC = 20,	/* no asynchronous mode; registration refused */
	C_SETUP = 21,		/* the device, the mapping or userfaultfd failed */
	C_REGISTERED = 22,	/* no asynchronous mode, registration accepted */
	C_WRONG = 23,		/* a result other than the one expected */
	C_STUCK = 99,		/* still running at the deadline (parent's own) */
};

/*
 * Open the device as an unprivileged user, map UFFD_PAGES pages, write
 * to the first one (resident; the others never touched) and register the
 * mapping for asynchronous write protection. Exits the child on failure.
 */
static char *setup_protected(int *fd, int *uffd)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC,
	};
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	char *mem;

	if (getuid() == 0 && setresuid(NOBODY, NOBODY, NOBODY))
		_exit(C_SETUP);
	probes_install();
	*fd = dev_open();
	mem = *fd < 0 ? NULL : dev_map(*fd, UFFD_PAGES * page);
	*uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (!mem || *uffd < 0)
		_exit(C_SETUP);
	mem[0] = 1;
	reg.range.start = (uintptr_t)mem;
	reg.range.len = UFFD_PAGES * page;
	if (ioctl(*uffd, UFFDIO_API, &api)) {
		/* 6.1: write protection of this memory only synchronously. */
		struct uffdio_api api_sync = { .api = UFFD_API };

		if (ioctl(*uffd, UFFDIO_API, &api_sync))
			_exit(C_SETUP);
		if (ioctl(*uffd, UFFDIO_REGISTER, &reg) == 0)
			_exit(C_REGISTERED);
		_exit(errno == EINVAL ? C_NO_ASYNC : C_WRONG);
	}
	if (ioctl(*uffd, UFFDIO_REGISTER, &reg))
		_exit(C_WRONG);
	wp.range = reg.range;
	if (ioctl(*uffd, UFFDIO_WRITEPROTECT, &wp))
		_exit(C_WRONG);
	return mem;
}

/*
 * Run fn in a child and return its exit status (C_*), or C_STUCK if it
 * has not ended secs later; a stuck child is sent SIGKILL and waited for
 * 2 s more, and *killable says whether that ended it.
 */
static int run_bounded(void (*fn)(void), int secs, bool *killable)
{
	pid_t pid = fork();
	int status, waited;

	*killable = true;
	if (pid == 0) {
		fn();
		_exit(C_OK);
	}
	if (pid < 0)
		return -1;
	for (waited = 0; waited < secs * 1000; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) :
						   128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	for (waited = 0; waited < 2000; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return C_STUCK;
		usleep(10000);
	}
	*killable = false;
	return C_STUCK;
}

static void user_access(void)
{
	int fd, uffd;
	char *mem = setup_protected(&fd, &uffd);

	char v = 1;

	/* Page 1 holds a marker: the access completes, no fault loop. */
	if (try_read(mem + page, &v) || v || try_write(mem + page, 9) ||
	    try_read(mem + page, &v) || v != 9)
		_exit(C_WRONG);
}

static void kernel_access(void)
{
	int fd, uffd, p[2];
	char *mem = setup_protected(&fd, &uffd);

	if (pipe(p) || write(p[1], "x", 1) != 1)
		_exit(C_SETUP);
	if (read(p[0], mem + 2 * page, 1) != 1 || mem[2 * page] != 'x')
		_exit(C_WRONG);
}

static void protection_lifted(void)
{
	struct uffdio_writeprotect wp = { .mode = 0 };
	int fd, uffd;
	char *mem = setup_protected(&fd, &uffd);
	char v = 0;

	/* The resident page is protected as any memory: the write resolves. */
	if (try_write(mem, 7) || try_read(mem, &v) || v != 7)
		_exit(C_WRONG);
	/* Unprotected, the marked pages are zero-fill device memory again. */
	wp.range.start = (uintptr_t)mem;
	wp.range.len = UFFD_PAGES * page;
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		_exit(C_WRONG);
	if (try_read(mem + page, &v) || v || try_write(mem + page, 5))
		_exit(C_WRONG);
	/* Quarantine still wins over everything. */
	if (kfault(fd, mem, UFFD_PAGES * page) || try_read(mem + page, NULL) != SIGSEGV ||
	    try_write(mem + 3 * page, 1) != SIGSEGV)
		_exit(C_WRONG);
}

static void expect_child(struct __test_metadata *_metadata, void (*fn)(void), int secs)
{
	bool killable;
	int rc;

	if (!device_present())
		SKIP(return, NO_DEVICE);
	rc = run_bounded(fn, secs, &killable);
	if (rc == C_NO_ASYNC)
		SKIP(return, "no UFFD_FEATURE_WP_ASYNC (before 6.7): write protection of the mapping is refused, no marker can exist");
	EXPECT_TRUE(killable) TH_LOG("the child ignored SIGKILL: stuck in the kernel");
	EXPECT_EQ(C_OK, rc) TH_LOG("child: %d (%d: still running after %d s)", rc, C_STUCK, secs);
	EXPECT_EQ(0, kernel_log_splats());
}

/* ------------------------------------------------------------ huge blocks */

#define BLOCK		(2u << 20)
#define RACE_BLOCKS	8
#define RACE_S		3

static struct {
	char *mem;
	pthread_barrier_t start, done;
	volatile int delay;	/* > 0: the protector waits, < 0: the writer */
	volatile int late;	/* the writer's last write met a marker */
	volatile int bad;
} race;

/* The page faults this thread has taken so far. */
static long thread_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) ? 0 : ru.ru_minflt + ru.ru_majflt;
}

/* Spin for n loops: the offset between the two racing threads. */
static void spin(int n)
{
	for (volatile int i = 0; i < n; i++)
		;
}

/* Write-fault each block, started with the protector's pass over it. */
static void *race_writer(void *arg)
{
	(void)arg;
	probes_install();
	for (int b = 0; b < RACE_BLOCKS; b++) {
		pthread_barrier_wait(&race.start);
		spin(-race.delay);
		long before = thread_faults();
		int sig = try_write(race.mem + (size_t)b * BLOCK + page, 1);

		/* A marker first: one fault takes it away, a second maps. */
		race.late = thread_faults() - before > 1;
		if (sig)
			race.bad = sig;
		pthread_barrier_wait(&race.done);
	}
	return NULL;
}

/*
 * Rounds of: a fresh mapping of RACE_BLOCKS blocks advised MADV_HUGEPAGE,
 * each block made resident (one compound page, one PMD) and its PMD
 * dropped again (MADV_DONTNEED keeps the page), registered for write
 * protection; then, block by block, one thread write-faults the block,
 * which maps it with a PMD again where its slot is still empty, while
 * this one write-protects it, which puts a page table of markers into
 * the slot where it is empty. The two start together, then one waits:
 * the protector longer after each block where it came first (the write
 * met a marker), shorter after each where it came last, in steps that
 * halve at each turn, so that the passes gather where the fault looks
 * at the slot. For MHEAP_UFFD_RACE_S seconds (RACE_S).
 */
static void race_rounds(void)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	struct timespec end = deadline_in(env_uint("MHEAP_UFFD_RACE_S", RACE_S));
	size_t len = (size_t)RACE_BLOCKS * BLOCK;
	int fd, uffd, step = 1024, dir = 0, same = 0;
	char *mem = setup_protected(&fd, &uffd);
	pthread_t t;

	munmap(mem, UFFD_PAGES * page);
	if (pthread_barrier_init(&race.start, NULL, 2) ||
	    pthread_barrier_init(&race.done, NULL, 2))
		_exit(C_SETUP);
	while (!deadline_passed(&end)) {
		race.mem = dev_map(fd, len);
		if (!race.mem || madvise(race.mem, len, MADV_HUGEPAGE))
			_exit(C_SETUP);
		for (int b = 0; b < RACE_BLOCKS; b++)
			race.mem[(size_t)b * BLOCK] = 1;
		if (madvise(race.mem, len, MADV_DONTNEED))
			_exit(C_SETUP);
		reg.range.start = (uintptr_t)race.mem;
		reg.range.len = len;
		if (ioctl(uffd, UFFDIO_REGISTER, &reg))
			_exit(C_WRONG);
		if (pthread_create(&t, NULL, race_writer, NULL))
			_exit(C_SETUP);
		for (int b = 0; b < RACE_BLOCKS; b++) {
			wp.range.start = reg.range.start + (size_t)b * BLOCK;
			wp.range.len = BLOCK;
			pthread_barrier_wait(&race.start);
			spin(race.delay);
			if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
				_exit(C_WRONG);
			pthread_barrier_wait(&race.done);
			int d = race.late ? 1 : -1;

			if (d != dir && step > 8)
				step /= 2;
			else if (d == dir && ++same >= 8 && step < 1 << 16)
				step *= 2, same = 0;
			if (d != dir)
				same = 0;
			dir = d;
			race.delay += d * step;
		}
		pthread_join(t, NULL);
		munmap(race.mem, len);
		if (race.bad)
			_exit(C_WRONG);
	}
}

TEST(write_faults_racing_write_protection_of_fresh_blocks_never_warn)
{
	expect_child(_metadata, race_rounds, env_uint("MHEAP_UFFD_RACE_S", RACE_S) + 30);
}

TEST(a_user_access_to_a_write_protect_marker_completes)
{
	expect_child(_metadata, user_access, 10);
}

TEST(a_kernel_access_to_a_write_protect_marker_completes)
{
	expect_child(_metadata, kernel_access, 10);
}

TEST(protected_resident_pages_work_and_marked_ones_once_unprotected)
{
	expect_child(_metadata, protection_lifted, 10);
}

/*
 * A block made resident and mapped with one PMD before the registration:
 * protecting it takes the PMD away (the kernel splits a file mapping's
 * PMD for write protection, which for these mappings means dropping it)
 * and leaves a marker on each of its pages. Its contents were written
 * and are resident: they must read back and take writes like any
 * resident memory, not raise SIGBUS.
 */
static void pmd_block_protected(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	size_t len = 2 * (size_t)BLOCK;
	int fd, uffd, sig;
	char *mem, v = 0;

	if (getuid() == 0 && setresuid(NOBODY, NOBODY, NOBODY))
		_exit(C_SETUP);
	probes_install();
	fd = dev_open();
	mem = fd < 0 ? NULL : dev_map(fd, len);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (!mem || uffd < 0 || madvise(mem, len, MADV_HUGEPAGE))
		_exit(C_SETUP);
	/* The first block: one compound page, mapped with a PMD. */
	mem[0] = 0x11;
	mem[BLOCK - 1] = 0x22;
	if (ioctl(uffd, UFFDIO_API, &api))
		_exit(C_NO_ASYNC);
	reg.range.start = (uintptr_t)mem;
	reg.range.len = len;
	wp.range = reg.range;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) || ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		_exit(C_WRONG);
	sig = try_read(mem + BLOCK - 1, &v);
	if (sig || v != 0x22) {
		fprintf(stderr, "# resident byte: signal %d, value %#x\n", sig, v);
		_exit(C_WRONG);
	}
	if (try_read(mem, &v) || v != 0x11 || try_write(mem + page, 3) ||
	    try_read(mem + page, &v) || v != 3)
		_exit(C_WRONG);
}

TEST(resident_pmd_mapped_blocks_read_and_write_once_protected)
{
	expect_child(_metadata, pmd_block_protected, 10);
}

TEST_HARNESS_MAIN
