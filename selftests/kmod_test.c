// SPDX-License-Identifier: GPL-2.0
/*
 * What /dev/mheap promises, as a kselftest.
 *
 * Without the module every test here reports SKIP with the reason: the
 * device is optional, so its absence is not a failure, but it is never a
 * pass either. With the module loaded (the VM's "kmod" suite) the tests pin
 * down the device and the version command (the other commands are
 * kmod_fault_test.c's, and the other kmod_*_test.c files say what theirs
 * cover):
 *  - /dev/mheap is a misc character device that any user may open;
 *  - MHEAP_IOC_VERSION answers the numbers of <linux/mheap.h>, writes exactly
 *    its struct and nothing else, and a bad buffer gets EFAULT;
 *  - any other command, including the version command with another size or
 *    direction, gets ENOTTY and writes nothing;
 *  - every open() is its own context, and the module stays loaded while one
 *    exists, or a mapping;
 *  - the module unloads and loads again cleanly, taking /dev/mheap with it,
 *    with every counter back at zero (only where $MHEAP_KO names the
 *    module file: inside the test VM).
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

#define MISC_MAJOR	10U

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
	self->fd = dev_open();
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

	fd = dev_open();
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

TEST_F(module, waits_for_the_last_mapping_and_reload_starts_from_zero)
{
	struct gauges g;
	int fd;
	char *m;

	/* Nothing of earlier tests is left anywhere. */
	gauges_settle_at_zero(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));

	fd = dev_open();
	m = dev_map(fd, 8 * page);
	ASSERT_NE(NULL, m);
	memset(m, 1, 8 * page);
	ASSERT_EQ(0, kfault(fd, m, 2 * page));
	close(fd);
	/* The mapping alone keeps the module in. */
	errno = 0;
	EXPECT_EQ(-1, delete_module("mheap", O_NONBLOCK));
	if (errno == EPERM) {
		munmap(m, 8 * page);
		SKIP(return, "unloading modules needs CAP_SYS_MODULE");
	}
	EXPECT_EQ(EWOULDBLOCK, errno);
	EXPECT_EQ(1, m[5 * page]);
	ASSERT_EQ(0, munmap(m, 8 * page));

	gauges_read(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));
	ASSERT_EQ(0, delete_module("mheap", O_NONBLOCK)) TH_LOG("%s", strerror(errno));
	EXPECT_TRUE(wait_for_path(DEV_PATH, false, 5000));
	ASSERT_EQ(0, finit_module(self->ko_fd, "", 0)) TH_LOG("%s", strerror(errno));
	ASSERT_TRUE(wait_for_path(DEV_PATH, true, 5000));
	gauges_read(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));
	EXPECT_EQ(0, sysfs_counter("commands"));
	EXPECT_EQ(0, sysfs_counter("faults_caught"));
}

TEST_HARNESS_MAIN
