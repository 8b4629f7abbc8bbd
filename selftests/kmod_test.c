// SPDX-License-Identifier: GPL-2.0
/*
 * What /dev/mheap promises, as a kselftest.
 *
 * Without the module every test here reports SKIP with the reason: the
 * device is optional, so its absence is not a failure, but it is never a
 * pass either. With the module loaded (the VM's "kmod" suite) the tests pin
 * down the device and the version command (the commands of ABI 1.1 have
 * kmod_fault_test.c):
 *  - /dev/mheap is a misc character device that any user may open;
 *  - MHEAP_IOC_VERSION answers the numbers of <linux/mheap.h>, writes exactly
 *    its struct and nothing else, and a bad buffer gets EFAULT;
 *  - any other command, including the version command with another size or
 *    direction, gets ENOTTY and writes nothing;
 *  - every open() is its own context, and the module stays loaded while one
 *    exists;
 *  - a mapping that MADV_DOFORK made inheritable is dead in a child of
 *    fork(): the child has no page-table entry in it and sees none of the
 *    parent's data, only SIGBUS (6.1 and 6.12 copy the VMA in a different
 *    order, the promise holds for both);
 *  - the module unloads and loads again cleanly, taking /dev/mheap with it
 *    (only where $MHEAP_KO names the module file: inside the test VM).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#define DEV_PATH	"/dev/" MHEAP_DEVICE_NAME
#define MODULE_SYSFS	"/sys/module/mheap"
#define MISC_MAJOR	10U

#define NO_DEVICE	DEV_PATH " not present: module not loaded"
#define NO_KO		"MHEAP_KO not set: reloading needs the module file (VM only)"

/*
 * SKIP() from a FIXTURE_SETUP(). The 6.1 harness marks the test skipped but
 * still runs its body after setup returns; leaving setup through the
 * harness's own jump buffer skips the body and the teardown instead.
 */
#define SKIP_SETUP(fmt, ...) \
	SKIP(longjmp(_metadata->env, 1), fmt, ##__VA_ARGS__)

static bool device_present(void)
{
	return access(DEV_PATH, F_OK) == 0;
}

/* Poll until path exists (or no longer does); false after timeout_ms. */
static bool wait_for_path(const char *path, bool present, int timeout_ms)
{
	const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };

	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if ((access(path, F_OK) == 0) == present)
			return true;
		nanosleep(&tick, NULL);
	}
	return false;
}

/* The module's reference count from sysfs, or -1 when it cannot be read. */
static long module_refcnt(void)
{
	return (long)read_number_file(MODULE_SYSFS "/refcnt");
}

static int delete_module(const char *name, unsigned int flags)
{
	return syscall(SYS_delete_module, name, flags);
}

static int finit_module(int fd, const char *params, unsigned int flags)
{
	return syscall(SYS_finit_module, fd, params, flags);
}

/* What MHEAP_IOC_VERSION must answer: the numbers this test was built with. */
static const struct mheap_version uapi_version = {
	.major = MHEAP_VERSION_MAJOR,
	.minor = MHEAP_VERSION_MINOR,
	.patch = MHEAP_VERSION_PATCH,
};

/* MHEAP_IOC_VERSION on fd; 0 or the errno it failed with. */
static int read_version(int fd, struct mheap_version *ver)
{
	return ioctl(fd, MHEAP_IOC_VERSION, ver) ? errno : 0;
}

/* ------------------------------------------------------------ the node */

TEST(device_is_a_world_usable_misc_node)
{
	struct stat st;

	if (!device_present())
		SKIP(return, NO_DEVICE);
	ASSERT_EQ(0, stat(DEV_PATH, &st));
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	EXPECT_EQ(MISC_MAJOR, major(st.st_rdev));
	EXPECT_EQ(0666U, st.st_mode & 07777)
		TH_LOG("mode is %04o", st.st_mode & 07777);
}

/* ---------------------------------------------- one open context each */

FIXTURE(dev) {
	int fd;
};

FIXTURE_SETUP(dev)
{
	self->fd = -1;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	self->fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", DEV_PATH, strerror(errno));
}

FIXTURE_TEARDOWN(dev)
{
	if (self->fd >= 0)
		close(self->fd);
}

TEST_F(dev, version_is_the_uapi_version)
{
	struct mheap_version ver;

	memset(&ver, 0xa5, sizeof(ver));
	ASSERT_EQ(0, read_version(self->fd, &ver));
	EXPECT_EQ(uapi_version.major, ver.major);
	EXPECT_EQ(uapi_version.minor, ver.minor);
	EXPECT_EQ(uapi_version.patch, ver.patch);
	EXPECT_EQ(0U, ver.reserved);
}

TEST_F(dev, version_writes_exactly_its_struct)
{
	unsigned char buf[3 * sizeof(struct mheap_version)];
	const size_t at = sizeof(struct mheap_version);

	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ(0, read_version(self->fd, (struct mheap_version *)&buf[at]));
	for (size_t i = 0; i < sizeof(buf); i++) {
		if (i >= at && i < 2 * at)
			continue;
		ASSERT_EQ(0x5a, buf[i]) TH_LOG("byte %zd outside the struct written",
					       (ssize_t)i - (ssize_t)at);
	}
}

TEST_F(dev, version_to_a_bad_buffer_is_efault)
{
	const long page = sysconf(_SC_PAGESIZE);
	char *map;

	/* Two pages: read-write, then inaccessible. */
	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, map);
	ASSERT_EQ(0, mprotect(map + page, page, PROT_NONE));

	EXPECT_EQ(EFAULT, read_version(self->fd, NULL));
	EXPECT_EQ(EFAULT, read_version(self->fd, (void *)(map + page)));
	/* A struct that starts in the good page and ends in the bad one. */
	EXPECT_EQ(EFAULT, read_version(self->fd, (void *)(map + page - 8)));
	/* A kernel address. */
	EXPECT_EQ(EFAULT, read_version(self->fd, (void *)~0xfffUL));
	/* Read-only memory. */
	ASSERT_EQ(0, mprotect(map, page, PROT_READ));
	EXPECT_EQ(EFAULT, read_version(self->fd, (void *)map));

	/* The device still works after all that. */
	ASSERT_EQ(0, mprotect(map, page, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, read_version(self->fd, (void *)map));
	munmap(map, 2 * page);
}

TEST_F(dev, other_commands_are_enotty)
{
	/* Near misses of MHEAP_IOC_VERSION first, then strangers. */
	const unsigned long cmds[] = {
		_IO(MHEAP_IOC_MAGIC, 0x00),
		_IOW(MHEAP_IOC_MAGIC, 0x00, struct mheap_version),
		_IOWR(MHEAP_IOC_MAGIC, 0x00, struct mheap_version),
		_IOR(MHEAP_IOC_MAGIC, 0x00, __u64),
		_IOR(MHEAP_IOC_MAGIC, 0x00, __u32[8]),
		_IOR(MHEAP_IOC_MAGIC, 0x01, struct mheap_version),
		_IOR(MHEAP_IOC_MAGIC, 0xff, struct mheap_version),
		_IOR(MHEAP_IOC_MAGIC + 1, 0x00, struct mheap_version),
		TCGETS,
		0,
	};
	unsigned char buf[256];

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		memset(buf, 0x5a, sizeof(buf));
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[i], buf))
			TH_LOG("command %#lx succeeded", cmds[i]);
		EXPECT_EQ(ENOTTY, errno)
			TH_LOG("command %#lx: %s", cmds[i], strerror(errno));
		for (size_t j = 0; j < sizeof(buf); j++) {
			ASSERT_EQ(0x5a, buf[j])
				TH_LOG("command %#lx wrote byte %zu", cmds[i], j);
		}
	}
}

TEST_F(dev, is_not_seekable)
{
	errno = 0;
	EXPECT_EQ(-1, lseek(self->fd, 0, SEEK_SET));
	EXPECT_EQ(ESPIPE, errno);
}

TEST(each_open_is_its_own_context)
{
	enum { N = 16 };
	struct mheap_version ver;
	long before, during, after;
	int fds[N];

	if (!device_present())
		SKIP(return, NO_DEVICE);

	before = module_refcnt();
	for (int i = 0; i < N; i++) {
		fds[i] = open(DEV_PATH, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, fds[i]) TH_LOG("open #%d: %s", i, strerror(errno));
	}
	/* Every open pins the module once: one context, one reference. */
	during = module_refcnt();
	if (before >= 0) {
		EXPECT_EQ(before + N, during);
	} else {
		TH_LOG("no %s/refcnt (built in?): reference count not checked",
		       MODULE_SYSFS);
	}

	/* Closing half the contexts leaves the others working. */
	for (int i = 0; i < N; i += 2)
		ASSERT_EQ(0, close(fds[i]));
	for (int i = 1; i < N; i += 2) {
		memset(&ver, 0, sizeof(ver));
		EXPECT_EQ(0, read_version(fds[i], &ver)) TH_LOG("fd #%d", i);
		EXPECT_EQ(uapi_version.major, ver.major);
	}
	for (int i = 1; i < N; i += 2)
		ASSERT_EQ(0, close(fds[i]));

	/* And the last close() drops every reference again. */
	after = module_refcnt();
	if (before >= 0)
		EXPECT_EQ(before, after);
}

/* -------------------------------------------- fork after MADV_DOFORK */

#define DOFORK_PAGES	4

static sigjmp_buf probe_env;

static void probe_handler(int sig)
{
	siglongjmp(probe_env, sig);
}

/* Read (or write, if out is NULL) one byte at p: 0, or the signal it raised. */
static int probe(volatile char *p, char *out)
{
	struct sigaction sa = { .sa_handler = probe_handler };
	int sig;

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sig = sigsetjmp(probe_env, 1);
	if (!sig) {
		if (out)
			*out = *p;
		else
			*p = 'C';
	}
	signal(SIGBUS, SIG_DFL);
	signal(SIGSEGV, SIG_DFL);
	return sig;
}

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
	long page = sysconf(_SC_PAGESIZE);
	char v;
	int sig;

	/* Page-table entries copied from the parent show up as Rss. */
	if (smaps_rss_kb(mem) < 0)
		return 4;
	if (smaps_rss_kb(mem) != 0)
		return 5;
	for (size_t off = 0; off < len; off += page) {
		v = 0;
		sig = probe(mem + off, &v);
		if (!sig && v == 'P')
			return 1;	/* the parent's data */
		if (sig != SIGBUS)
			return 2;
		if (probe(mem + off, NULL) != SIGBUS)
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
	size_t len = DOFORK_PAGES * sysconf(_SC_PAGESIZE);
	int status;
	char *mem;
	pid_t pid;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
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

/* ------------------------------------------------- unload and reload */

FIXTURE(module) {
	int ko_fd;
};

/* Runs only where the module file is at hand to load it back. */
FIXTURE_SETUP(module)
{
	const char *ko = getenv("MHEAP_KO");

	self->ko_fd = -1;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (!ko || !*ko)
		SKIP_SETUP(NO_KO);
	self->ko_fd = open(ko, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, self->ko_fd) TH_LOG("open %s: %s", ko, strerror(errno));
}

FIXTURE_TEARDOWN(module)
{
	/* Whatever happened, leave the module loaded for whoever runs next. */
	if (!device_present() && self->ko_fd >= 0) {
		if (finit_module(self->ko_fd, "", 0) && errno != EEXIST)
			TH_LOG("could not load the module back: %s",
			       strerror(errno));
		wait_for_path(DEV_PATH, true, 5000);
	}
	if (self->ko_fd >= 0)
		close(self->ko_fd);
}

TEST_F(module, stays_loaded_while_a_context_is_open)
{
	struct mheap_version ver;
	int fd;

	fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);

	errno = 0;
	EXPECT_EQ(-1, delete_module("mheap", O_NONBLOCK));
	if (errno == EPERM) {
		close(fd);
		SKIP(return, "unloading modules needs CAP_SYS_MODULE");
	}
	EXPECT_EQ(EWOULDBLOCK, errno) TH_LOG("%s", strerror(errno));
	EXPECT_TRUE(device_present());
	EXPECT_EQ(0, read_version(fd, &ver));
	EXPECT_EQ(0, close(fd));
}

TEST_F(module, unloads_and_loads_again)
{
	struct mheap_version ver;
	int fd, ret;

	/* Unload: the node goes away with the module. */
	errno = 0;
	ret = delete_module("mheap", O_NONBLOCK);
	if (ret && errno == EPERM)
		SKIP(return, "unloading modules needs CAP_SYS_MODULE");
	ASSERT_EQ(0, ret) TH_LOG("delete_module: %s", strerror(errno));
	EXPECT_TRUE(wait_for_path(DEV_PATH, false, 5000));
	EXPECT_TRUE(wait_for_path(MODULE_SYSFS, false, 5000));

	/* Load from the file: the node comes back and answers. */
	ASSERT_EQ(0, finit_module(self->ko_fd, "", 0))
		TH_LOG("finit_module: %s", strerror(errno));
	ASSERT_TRUE(wait_for_path(DEV_PATH, true, 5000));
	fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", DEV_PATH, strerror(errno));
	EXPECT_EQ(0, read_version(fd, &ver));
	EXPECT_EQ(uapi_version.major, ver.major);
	EXPECT_EQ(0, close(fd));
}

TEST_HARNESS_MAIN
