// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap mappings under userfaultfd write protection, as a kselftest.
 *
 * userfaultfd refuses these mappings in every mode but one: from 6.7 the
 * asynchronous write protection (UFFD_FEATURE_WP_ASYNC, what CRIU and
 * PAGEMAP_SCAN use for dirty tracking) accepts any memory, to any user
 * (UFFD_USER_MODE_ONLY needs no privilege). Protecting a page that has
 * no page-table entry leaves a marker in its place, which the module's
 * page fault cannot map over. Pinned down here, each in a child process
 * of an unprivileged user that makes its own mapping (children do not
 * inherit mappings), judged by the parent with a deadline:
 *  - a user access to a marked page raises SIGBUS, once, rather than
 *    faulting again for ever;
 *  - a kernel access to one (read() into it) fails with EFAULT rather
 *    than looping in the kernel, where not even SIGKILL ends it;
 *  - resident pages are protected and written as with any memory, the
 *    marked ones work again once the protection is lifted, and FAULT
 *    still makes any access SIGSEGV.
 * On kernels without the asynchronous mode (6.1) registering the mapping
 * for write protection fails, so no marker can exist: the tests check
 * that refusal and report SKIP.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
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

	/* Page 1 holds a marker: SIGBUS, not a fault loop. */
	if (try_read(mem + page, NULL) != SIGBUS || try_write(mem + page, 1) != SIGBUS)
		_exit(C_WRONG);
}

static void kernel_access(void)
{
	int fd, uffd, p[2];
	char *mem = setup_protected(&fd, &uffd);

	if (pipe(p) || write(p[1], "x", 1) != 1)
		_exit(C_SETUP);
	errno = 0;
	if (read(p[0], mem + 2 * page, 1) != -1 || errno != EFAULT)
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

TEST(a_user_access_to_a_write_protect_marker_is_sigbus)
{
	expect_child(_metadata, user_access, 10);
}

TEST(a_kernel_access_to_a_write_protect_marker_is_efault)
{
	expect_child(_metadata, kernel_access, 10);
}

TEST(protected_resident_pages_work_and_marked_ones_once_unprotected)
{
	expect_child(_metadata, protection_lifted, 10);
}

TEST_HARNESS_MAIN
