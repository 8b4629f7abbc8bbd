// SPDX-License-Identifier: GPL-2.0
/*
 * The fault commands of /dev/mheap (ABI 1.1), as a kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down what uapi/linux/mheap.h promises:
 *  - mmap() gives zero-fill memory; FAULT makes ranges fault (SIGSEGV with
 *    the address) and frees their pages, RELEASE makes them zero-fill again;
 *    however many ranges are faulted the mapping stays one VMA;
 *  - counters (STATS and sysfs), extents, limits and EDQUOT;
 *  - fault events read with read() and poll(); a task the reader's pid
 *    namespace cannot see is anonymous in them;
 *  - FAULT and RELEASE whose @done cannot be written do nothing;
 *  - io_uring commands, linked batches, and their argument checks;
 *  - kernel access to quarantined memory (read, write, recv) gets EFAULT;
 *    get_user_pages paths: vmsplice, process_vm_readv, /proc/self/mem and
 *    O_DIRECT (through a loop device, when there is one) work on resident
 *    pages and fail on quarantined ones, a pinned page outlives FAULT with
 *    its contents, io_uring fixed buffers are refused (6.1) or pinned;
 *  - fork, MADV_DOFORK, close, exit, munmap, mprotect and mremap, with the
 *    global counters back where they were afterwards;
 *  - page faults racing with FAULT and RELEASE from other threads;
 *  - every argument checked (random commands, threads and interleaved
 *    unmaps and closes are kmod_fuzz_test.c's, and kmod_stress_test.c has
 *    all of the above at once);
 *  - the library's kmod backend on top: io_uring or ioctl, fork (a child
 *    touching an arena that was live in the parent gets a one-line report
 *    and dies of SIGSEGV), EDQUOT;
 *  - unloading waits for the last mapping; after reload the counters are 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/loop.h>
#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"
#include "kmod_util.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"

/* The ioctl fails with exactly this errno. */
#define EXPECT_IOCTL_FAILS(err, ...) do {			\
	errno = 0;						\
	EXPECT_EQ(-1, ioctl(__VA_ARGS__));			\
	EXPECT_EQ(err, errno);					\
} while (0)

#define PARAM_LIMIT	"/sys/module/mheap/parameters/quarantine_limit"

/* Whether /proc/self/maps shows a mapping of the device at addr. */
static bool device_mapped_at(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e, a = (uintptr_t)addr;
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= a && a < e &&
		    strstr(line, DEV_PATH))
			found = true;
	fclose(f);
	return found;
}

/* ------------------------------------------------------------ fixture */

#define NPAGES 64

FIXTURE(dev) {
	int fd;
	char *mem;
	size_t len;
	struct gauges before;
};

FIXTURE_SETUP(dev)
{
	self->fd = -1;
	self->mem = NULL;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	probes_install();
	gauges_read(&self->before);
	self->len = NPAGES * page;
	self->fd = dev_open();
	ASSERT_LE(0, self->fd) TH_LOG("open: %s", strerror(errno));
	self->mem = dev_map(self->fd, self->len);
	ASSERT_NE(NULL, self->mem) TH_LOG("mmap: %s", strerror(errno));
}

FIXTURE_TEARDOWN(dev)
{
	struct gauges after;

	if (self->mem)
		munmap(self->mem, self->len);
	if (self->fd >= 0)
		close(self->fd);
	/* Whatever the test did, everything it held is given back. */
	gauges_read(&after);
	EXPECT_GAUGES_EQ(self->before, after);
}

/* ------------------------------------------------------------ memory */

TEST_F(dev, mapping_is_zero_fill_memory_allocated_on_touch)
{
	struct mheap_stats st;
	char v;

	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(self->len, st.self.mapped_bytes);
	EXPECT_EQ(1, st.self.mappings);
	EXPECT_EQ(1, st.self.contexts);
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(MHEAP_LIMIT_NONE, st.self.quarantine_limit);
	EXPECT_EQ(sizeof(st), st.size);
	EXPECT_EQ(1, vmas_in((uintptr_t)self->mem, (uintptr_t)self->mem + self->len));
	EXPECT_TRUE(device_mapped_at(self->mem));

	for (size_t i = 0; i < self->len; i += page) {
		ASSERT_EQ(0, try_read(self->mem + i, &v));
		ASSERT_EQ(0, v);
	}
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(self->len, st.self.resident_bytes);
	for (size_t i = 0; i < self->len; i++)
		self->mem[i] = (char)(i * 7);
	for (size_t i = 0; i < self->len; i++)
		ASSERT_EQ((char)(i * 7), self->mem[i]);
	/* MADV_DONTNEED unmaps pages but, as for any shared mapping, keeps them. */
	ASSERT_EQ(0, madvise(self->mem, self->len, MADV_DONTNEED));
	EXPECT_EQ((char)(5 * 7), self->mem[5]);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(self->len, st.self.resident_bytes);
	EXPECT_EQ(self->len, (size_t)sysfs_counter("resident_bytes") - self->before.resident);
}

TEST_F(dev, fault_makes_a_range_fault_and_release_makes_it_zero_again)
{
	char *q = self->mem + 8 * page;
	struct mheap_stats st;
	char v;

	memset(self->mem, 0x5a, self->len);
	ASSERT_EQ(0, kfault(self->fd, q, 4 * page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(self->len - 4 * page, st.self.resident_bytes);

	for (size_t i = 0; i < 4 * page; i += 997) {
		EXPECT_EQ(SIGSEGV, try_read(q + i, NULL));
		EXPECT_EQ(q + i, probe_addr);
		EXPECT_EQ(SIGSEGV, try_write(q + i, 1));
		EXPECT_EQ(q + i, probe_addr);
	}
	/* The neighbours kept their data. */
	ASSERT_EQ(0, try_read(q - 1, &v));
	EXPECT_EQ(0x5a, v);
	ASSERT_EQ(0, try_read(q + 4 * page, &v));
	EXPECT_EQ(0x5a, v);
	EXPECT_EQ(1, vmas_in((uintptr_t)self->mem, (uintptr_t)self->mem + self->len));

	/* Faulting again is no error and holds nothing more. */
	ASSERT_EQ(0, kfault(self->fd, q, 4 * page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);

	ASSERT_EQ(0, krelease(self->fd, q, 4 * page));
	for (size_t i = 0; i < 4 * page; i++) {
		ASSERT_EQ(0, try_read(q + i, &v));
		ASSERT_EQ(0, v);
	}
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(0, st.self.quarantined_ranges);
	/* Releasing what is not quarantined drops its contents too. */
	ASSERT_EQ(0, krelease(self->fd, self->mem, page));
	EXPECT_EQ(0, self->mem[0]);
	EXPECT_EQ(0x5a, self->mem[page]);
}

TEST_F(dev, quarantined_ranges_count_extents)
{
	struct mheap_stats st;
	char *m = self->mem;

	ASSERT_EQ(0, kfault(self->fd, m, page));
	ASSERT_EQ(0, kfault(self->fd, m + 2 * page, page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	/* Filling the gap joins them. */
	ASSERT_EQ(0, kfault(self->fd, m + page, page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(3 * page, st.self.quarantined_bytes);
	/* Releasing the middle splits them. */
	ASSERT_EQ(0, krelease(self->fd, m + page, page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	/* One range over both and more merges everything. */
	ASSERT_EQ(0, kfault(self->fd, m, 10 * page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(10 * page, st.self.quarantined_bytes);
	/* At the very end of the mapping too. */
	ASSERT_EQ(0, kfault(self->fd, m + self->len - page, page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	EXPECT_EQ(2, st.global.quarantined_ranges - self->before.ranges);
	EXPECT_EQ(11 * page, (size_t)sysfs_counter("quarantined_bytes") -
			     (size_t)self->before.quarantined);
}

TEST_F_TIMEOUT(dev, ten_thousand_faulted_ranges_stay_one_vma, 300)
{
	enum { RANGES = 10000 };
	size_t len = (2 * RANGES + 1) * page;
	struct mheap_range *r = calloc(RANGES, sizeof(*r));
	struct mheap_stats st;
	unsigned int done;
	char *m;

	ASSERT_NE(NULL, r);
	m = dev_map(self->fd, len);
	ASSERT_NE(NULL, m);
	for (size_t i = 0; i < len; i += page)
		m[i] = 1;
	/* Every other page: 10k ranges that cannot merge. */
	for (int i = 0; i < RANGES; i++) {
		r[i].addr = (uintptr_t)(m + (2 * i + 1) * page);
		r[i].len = page;
	}
	ASSERT_EQ(0, ranges_cmd(self->fd, MHEAP_IOC_FAULT, r, RANGES, &done));
	EXPECT_EQ(RANGES, done);
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + len));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(RANGES, st.self.quarantined_ranges);
	EXPECT_EQ(RANGES * page, st.self.quarantined_bytes);
	EXPECT_EQ((RANGES + 1) * page, st.self.resident_bytes);
	for (int i = 0; i < RANGES; i += 487) {
		EXPECT_EQ(SIGSEGV, try_read(m + (2 * i + 1) * page, NULL));
		EXPECT_EQ(0, try_read(m + 2 * i * page, NULL));
	}
	/* One RELEASE of the whole mapping ends them all. */
	ASSERT_EQ(0, krelease(self->fd, m, len));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(0, st.self.quarantined_ranges);
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + len));
	munmap(m, len);
	free(r);
}

TEST_F(dev, a_vector_stops_at_the_first_bad_range)
{
	struct mheap_range r[3] = {
		{ (uintptr_t)self->mem, page },
		{ (uintptr_t)self->mem + 1, page },	/* unaligned */
		{ (uintptr_t)self->mem + 2 * page, page },
	};
	unsigned int done = 99;

	EXPECT_EQ(EINVAL, ranges_cmd(self->fd, MHEAP_IOC_FAULT, r, 3, &done));
	EXPECT_EQ(1, done);
	EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
	EXPECT_EQ(0, try_read(self->mem + 2 * page, NULL));
	EXPECT_EQ(EINVAL, ranges_cmd(self->fd, MHEAP_IOC_RELEASE, r, 3, &done));
	EXPECT_EQ(1, done);
	EXPECT_EQ(0, try_read(self->mem, NULL));
	/* An empty vector is fine and says so. */
	EXPECT_EQ(0, ranges_cmd(self->fd, MHEAP_IOC_FAULT, r, 0, &done));
	EXPECT_EQ(0, done);
}

TEST_F(dev, a_vector_whose_done_cannot_be_written_does_nothing)
{
	struct mheap_range r = { (uintptr_t)self->mem, 4 * page };
	struct mheap_ranges *a;
	struct mheap_stats st;

	/* The argument is readable, its @done is not writable. */
	a = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, a);
	*a = (struct mheap_ranges){ .ranges = (uintptr_t)&r, .nr = 1 };
	ASSERT_EQ(0, mprotect(a, page, PROT_READ));
	self->mem[0] = 7;

	/* The caller learns the outcome: EFAULT, and nothing took effect. */
	EXPECT_IOCTL_FAILS(EFAULT, self->fd, MHEAP_IOC_FAULT, a);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(7, self->mem[0]);
	/* Likewise RELEASE: the quarantine stays. */
	ASSERT_EQ(0, kfault(self->fd, self->mem, 4 * page));
	EXPECT_IOCTL_FAILS(EFAULT, self->fd, MHEAP_IOC_RELEASE, a);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
	munmap(a, page);
}

TEST_F(dev, a_vector_that_quarantines_its_own_argument_can_be_sent_again)
{
	struct mheap_range r[2] = {
		{ (uintptr_t)self->mem, 2 * page },
		{ (uintptr_t)self->mem + 8 * page, page },
	};
	struct mheap_ranges *a = (struct mheap_ranges *)(self->mem + page);
	unsigned int done;
	struct mheap_stats st;

	/* @done lies in the first range: gone by the time it is written. */
	*a = (struct mheap_ranges){ .ranges = (uintptr_t)r, .nr = 2 };
	EXPECT_IOCTL_FAILS(EFAULT, self->fd, MHEAP_IOC_FAULT, a);
	/* Repeating ranges is harmless: the same vector again says all. */
	EXPECT_EQ(0, ranges_cmd(self->fd, MHEAP_IOC_FAULT, r, 2, &done));
	EXPECT_EQ(2, done);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(3 * page, st.self.quarantined_bytes);
	EXPECT_EQ(2, st.self.quarantined_ranges);
}

TEST_F(dev, stats_v1_fills_the_1_1_struct_and_not_a_byte_more)
{
	unsigned char buf[sizeof(struct mheap_stats)];
	struct mheap_stats *st = (struct mheap_stats *)buf;

	memset(buf, 0xa5, sizeof(buf));
	memset(buf, 0, offsetof(struct mheap_stats, self));
	st->size = MHEAP_STATS_SIZE_V1;
	ASSERT_EQ(0, ioctl(self->fd, MHEAP_IOC_STATS_V1, st));
	EXPECT_EQ(MHEAP_STATS_SIZE_V1, st->size);
	EXPECT_EQ(self->len, st->self.mapped_bytes);
	for (size_t i = MHEAP_STATS_SIZE_V1; i < sizeof(buf); i++) {
		ASSERT_EQ(0xa5, buf[i]) TH_LOG("byte %zu", i);
	}
	/* The size must be the one the command number says. */
	st->size = sizeof(*st);
	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_STATS_V1, st);
}

/* ------------------------------------------------------------ limits */

TEST_F(dev, a_context_limit_makes_fault_fail_with_edquot)
{
	struct mheap_stats st;
	char *m = self->mem;

	ASSERT_EQ(0, klimit(self->fd, 4 * page, 0));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantine_limit);
	EXPECT_EQ(0, kfault(self->fd, m, 3 * page));
	/* One page fits, two do not, and nothing of a refused range happens. */
	EXPECT_EQ(EDQUOT, kfault(self->fd, m + 3 * page, 2 * page));
	EXPECT_EQ(0, try_read(m + 3 * page, NULL));
	EXPECT_EQ(0, kfault(self->fd, m + 3 * page, page));
	EXPECT_EQ(EDQUOT, kfault(self->fd, m + 4 * page, page));
	/* Already quarantined pages cost nothing more. */
	EXPECT_EQ(0, kfault(self->fd, m, 4 * page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	/* Releasing makes room again. */
	EXPECT_EQ(0, krelease(self->fd, m, 2 * page));
	EXPECT_EQ(0, kfault(self->fd, m + 10 * page, 2 * page));
	/* A limit below what is held refuses more and releases nothing. */
	EXPECT_EQ(0, klimit(self->fd, page, 0));
	EXPECT_EQ(EDQUOT, kfault(self->fd, m + 20 * page, page));
	EXPECT_EQ(SIGSEGV, try_read(m + 10 * page, NULL));
	/* Another context is not bound by this one's limit. */
	int fd2 = dev_open();
	char *m2 = dev_map(fd2, 4 * page);

	ASSERT_NE(NULL, m2);
	EXPECT_EQ(0, kfault(fd2, m2, 4 * page));
	munmap(m2, 4 * page);
	close(fd2);
	EXPECT_EQ(0, klimit(self->fd, MHEAP_LIMIT_NONE, 0));
	EXPECT_EQ(0, kfault(self->fd, m, self->len));
}

static void try_global_limit_unprivileged(void *arg)
{
	int fd = dev_open();

	(void)arg;
	if (setgid(65534) || setuid(65534))
		_exit(10);
	_exit(klimit(fd, page, MHEAP_LIMIT_GLOBAL) == EPERM ? 0 : 11);
}

TEST_F(dev, the_global_limit_binds_all_contexts_and_needs_cap_sys_admin)
{
	struct mheap_stats st;
	unsigned long long saved, param;
	struct child_result r;
	FILE *f;

	ASSERT_EQ(0, kstats(self->fd, &st));
	saved = st.global.quarantine_limit;
	EXPECT_EQ((long long)saved, sysfs_counter("quarantine_limit"));
	if (geteuid() != 0)
		SKIP(return, "setting the global limit needs root");

	/* Room for the quarantine already there plus 3 pages. */
	ASSERT_EQ(0, klimit(self->fd, st.global.quarantined_bytes + 3 * page,
			    MHEAP_LIMIT_GLOBAL));
	f = fopen(PARAM_LIMIT, "re");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%llu", &param));
	fclose(f);
	EXPECT_EQ(st.global.quarantined_bytes + 3 * page, param);

	int fd2 = dev_open();
	char *m2 = dev_map(fd2, 4 * page);

	ASSERT_NE(NULL, m2);
	EXPECT_EQ(0, kfault(self->fd, self->mem, 2 * page));
	EXPECT_EQ(EDQUOT, kfault(fd2, m2, 2 * page));
	EXPECT_EQ(0, kfault(fd2, m2, page));
	EXPECT_EQ(EDQUOT, kfault(self->fd, self->mem + 5 * page, page));
	EXPECT_EQ(0, krelease(self->fd, self->mem, 2 * page));
	EXPECT_EQ(0, kfault(fd2, m2 + page, 2 * page));

	/* Without CAP_SYS_ADMIN: EPERM. */
	run_child(try_global_limit_unprivileged, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x", r.status);

	EXPECT_EQ(0, klimit(self->fd, saved, MHEAP_LIMIT_GLOBAL));
	munmap(m2, 4 * page);
	close(fd2);
}

/* ------------------------------------------------------------ events */

/* Send fd over a unix socket; 0 or -1. */
static int fd_send(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char c = 0;
	struct iovec iov = { &c, 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

/* Receive an fd sent by fd_send(); the fd or -1. */
static int fd_recv(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char c;
	struct iovec iov = { &c, 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/*
 * In a child: a descriptor opened in a new pid namespace, where this
 * process is invisible, gets an access from this process. Exits 0 if the
 * event says neither who (pid, tid) nor what (comm) it was.
 */
static void access_from_outside_the_readers_namespace(void *arg)
{
	static const char nameless[16];
	struct mheap_event ev;
	int sv[2], pfds[2], fd;
	char *m;
	pid_t pid;

	(void)arg;
	if (unshare(CLONE_NEWPID) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		_exit(10);
	pid = fork();
	if (pid == 0) {
		/* pid 1 of the new namespace opens, and hands the fd out. */
		fd = dev_open();
		_exit(fd < 0 || fd_send(sv[1], fd) ? 1 : 0);
	}
	fd = fd_recv(sv[0]);
	if (pid < 0 || fd < 0)
		_exit(11);
	waitpid(pid, NULL, 0);
	m = dev_map(fd, page);
	if (!m || kfault(fd, m, page) || pipe(pfds))
		_exit(12);
	/* The kernel's access on our behalf makes the event (no signal). */
	if (write(pfds[1], m, 1) != -1 || errno != EFAULT)
		_exit(13);
	if (read(fd, &ev, sizeof(ev)) != sizeof(ev))
		_exit(14);
	if (ev.pid || ev.tid)
		_exit(15);
	if (memcmp(ev.comm, nameless, sizeof(nameless)))
		_exit(16);
	_exit(0);
}

TEST_F(dev, a_task_the_readers_pid_namespace_cannot_see_is_anonymous)
{
	struct child_result r;

	if (geteuid() != 0)
		SKIP(return, "unshare(CLONE_NEWPID) needs root");
	run_child(access_from_outside_the_readers_namespace, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x", r.status);
}

TEST_F(dev, accesses_to_quarantine_are_events)
{
	char *q = self->mem + 3 * page;
	struct mheap_event ev[4];
	struct mheap_stats st;
	struct pollfd pfd = { .fd = self->fd, .events = POLLIN };
	int pfds[2];
	ssize_t n;

	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, O_NONBLOCK));
	errno = 0;
	EXPECT_EQ(-1, read(self->fd, ev, sizeof(ev)));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(0, poll(&pfd, 1, 0));

	ASSERT_EQ(0, kfault(self->fd, q, page));
	EXPECT_EQ(SIGSEGV, try_read(q + 100, NULL));
	EXPECT_EQ(SIGSEGV, try_write(q + 200, 1));
	/* The kernel's own access on our behalf: write() from the page. */
	ASSERT_EQ(0, pipe(pfds));
	errno = 0;
	EXPECT_EQ(-1, write(pfds[1], q + 300, 10));
	EXPECT_EQ(EFAULT, errno);
	close(pfds[0]);
	close(pfds[1]);

	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLIN);
	/* Too small a buffer for one event. */
	errno = 0;
	EXPECT_EQ(-1, read(self->fd, ev, sizeof(ev[0]) - 1));
	EXPECT_EQ(EINVAL, errno);
	n = read(self->fd, ev, sizeof(ev));
	/* The kernel's copy may retry after its first fault: 1 or 2 events. */
	ASSERT_LE(3 * (ssize_t)sizeof(ev[0]), n);
	n /= sizeof(ev[0]);

	EXPECT_EQ(0, ev[0].seq);
	EXPECT_EQ((uintptr_t)q + 100, ev[0].addr);
	EXPECT_EQ(0, ev[0].flags);
	EXPECT_EQ(getpid(), (pid_t)ev[0].pid);
	EXPECT_EQ(gettid(), (pid_t)ev[0].tid);
	EXPECT_NE(0, ev[0].time_ns);
	EXPECT_STREQ("kmod_fault_test", ev[0].comm);

	EXPECT_EQ(1, ev[1].seq);
	EXPECT_EQ((uintptr_t)q + 200, ev[1].addr);
	EXPECT_EQ(MHEAP_EVENT_WRITE, ev[1].flags);
	EXPECT_LE(ev[0].time_ns, ev[1].time_ns);

	for (ssize_t i = 2; i < n; i++) {
		EXPECT_EQ(i, ev[i].seq);
		EXPECT_LE((uintptr_t)q + 300, ev[i].addr);
		EXPECT_GT((uintptr_t)q + 310, ev[i].addr);
		EXPECT_EQ(MHEAP_EVENT_KERNEL, ev[i].flags);
	}

	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(n, st.self.faults_caught);
	EXPECT_EQ(0, st.self.events_dropped);
	/* Read, they are gone. */
	errno = 0;
	EXPECT_EQ(-1, read(self->fd, ev, sizeof(ev)));
	EXPECT_EQ(EAGAIN, errno);
}

TEST_F(dev, the_newest_events_are_kept_and_the_lost_ones_counted)
{
	unsigned int cap = 256;
	FILE *f = fopen("/sys/module/mheap/parameters/events_per_context", "re");
	struct mheap_event ev;
	struct mheap_stats st;
	uint64_t expect;

	if (f) {
		if (fscanf(f, "%u", &cap) != 1)
			cap = 256;
		fclose(f);
	}
	ASSERT_EQ(0, kfault(self->fd, self->mem, page));
	for (unsigned int i = 0; i < cap + 10; i++)
		ASSERT_EQ(SIGSEGV, try_read(self->mem + i % page, NULL));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(cap + 10, st.self.faults_caught);
	EXPECT_EQ(10, st.self.events_dropped);
	/* The oldest left is number 10; then they follow without a gap. */
	expect = 10;
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, O_NONBLOCK));
	while (read(self->fd, &ev, sizeof(ev)) == sizeof(ev)) {
		ASSERT_EQ(expect, ev.seq);
		ASSERT_EQ((uintptr_t)self->mem + expect % page, ev.addr);
		expect++;
	}
	EXPECT_EQ(cap + 10, expect);
}

static void *blocked_reader(void *arg)
{
	int fd = *(int *)arg;
	static struct mheap_event ev;

	return read(fd, &ev, sizeof(ev)) == sizeof(ev) ? &ev : NULL;
}

TEST_F(dev, read_blocks_until_an_event_comes)
{
	struct mheap_event *ev;
	pthread_t t;

	ASSERT_EQ(0, kfault(self->fd, self->mem, page));
	ASSERT_EQ(0, pthread_create(&t, NULL, blocked_reader, &self->fd));
	usleep(100 * 1000);
	EXPECT_EQ(SIGSEGV, try_write(self->mem + 42, 1));
	ASSERT_EQ(0, pthread_join(t, (void **)&ev));
	ASSERT_NE(NULL, ev);
	EXPECT_EQ((uintptr_t)self->mem + 42, ev->addr);
	EXPECT_EQ(MHEAP_EVENT_WRITE, ev->flags);
}

/* ------------------------------------------------------------ io_uring */

/* Submit what is queued, wait for n completions, results by user_data. */
static int uring_run(struct io_uring *ring, unsigned int n, int *res)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait(ring, n);

	if (ret < 0)
		return ret;
	for (unsigned int i = 0; i < n; i++) {
		ret = io_uring_wait_cqe(ring, &cqe);
		if (ret)
			return ret;
		if (cqe->user_data < n)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

TEST_F(dev, io_uring_batches_fault_release_and_stats)
{
	struct mheap_uring_stats sarg;
	struct io_uring ring;
	struct mheap_stats st;
	int res[NPAGES + 1];
	uint64_t cmds;

	ASSERT_EQ(0, io_uring_queue_init(NPAGES + 8, &ring, 0));
	ASSERT_EQ(0, kstats(self->fd, &st));
	cmds = st.self.commands;

	/* A linked batch: one SQE per page, all succeed. */
	memset(self->mem, 1, self->len);
	for (int i = 0; i < NPAGES; i++) {
		struct mheap_range r = { (uintptr_t)self->mem + i * page, page };
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		prep_cmd(sqe, self->fd, MHEAP_URING_CMD_FAULT, &r, sizeof(r), i);
		if (i + 1 < NPAGES)
			sqe->flags |= IOSQE_IO_LINK;
	}
	ASSERT_EQ(0, uring_run(&ring, NPAGES, res));
	for (int i = 0; i < NPAGES; i++) {
		EXPECT_EQ(0, res[i]) TH_LOG("range %d", i);
	}
	EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
	EXPECT_EQ(SIGSEGV, try_read(self->mem + self->len - 1, NULL));

	/* STATS through the ring. */
	memset(&st, 0xff, sizeof(st));
	sarg = (struct mheap_uring_stats){ .stats = (uintptr_t)&st, .size = sizeof(st) };
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_STATS, &sarg,
		 sizeof(sarg), 0);
	ASSERT_EQ(0, uring_run(&ring, 1, res));
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(sizeof(st), st.size);
	EXPECT_EQ(self->len, st.self.quarantined_bytes);
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(cmds + NPAGES + 1, st.self.commands);
	EXPECT_EQ(0, st.reserved);

	/* A bad range in the middle: those after it are cancelled. */
	for (int i = 0; i < 5; i++) {
		struct mheap_range r = { (uintptr_t)self->mem + i * page, i == 2 ? 3 : page };
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		prep_cmd(sqe, self->fd, MHEAP_URING_CMD_RELEASE, &r, sizeof(r), i);
		if (i + 1 < 5)
			sqe->flags |= IOSQE_IO_LINK;
	}
	ASSERT_EQ(0, uring_run(&ring, 5, res));
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(0, res[1]);
	EXPECT_EQ(-EINVAL, res[2]);
	EXPECT_EQ(-ECANCELED, res[3]);
	EXPECT_EQ(-ECANCELED, res[4]);
	EXPECT_EQ(0, try_read(self->mem + page, NULL));
	EXPECT_EQ(SIGSEGV, try_read(self->mem + 3 * page, NULL));

	/* EDQUOT comes through as it does by ioctl. */
	struct mheap_range two = { (uintptr_t)self->mem, 2 * page };

	ASSERT_EQ(0, klimit(self->fd, self->len - page, 0));
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_FAULT, &two, sizeof(two), 0);
	ASSERT_EQ(0, uring_run(&ring, 1, res));
	EXPECT_EQ(-EDQUOT, res[0]);
	io_uring_queue_exit(&ring);
}

TEST_F(dev, io_uring_commands_check_their_arguments)
{
	struct mheap_range good = { (uintptr_t)self->mem, page };
	struct mheap_range foreign = { (uintptr_t)&good & ~(page - 1), page };
	struct mheap_uring_stats sarg = { .stats = 0, .size = sizeof(struct mheap_stats) };
	struct io_uring_params p;
	struct io_uring ring, big;
	struct io_uring_sqe *sqe;
	int res[8];

	ASSERT_EQ(0, io_uring_queue_init(8, &ring, 0));
	/* Unknown command: ENOTTY. */
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_FAULT + 0x10000, &good,
		 sizeof(good), 0);
	/* A range outside this descriptor's mappings. */
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_FAULT, &foreign,
		 sizeof(foreign), 1);
	/* Stats to a bad pointer, then with a short size, then with flags. */
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_STATS, &sarg,
		 sizeof(sarg), 2);
	sarg.stats = (uintptr_t)res;
	sarg.size = MHEAP_STATS_SIZE_V1 - 8;
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_STATS, &sarg,
		 sizeof(sarg), 3);
	sarg.size = MHEAP_STATS_SIZE_V1;
	sarg.flags = 1;
	prep_cmd(io_uring_get_sqe(&ring), self->fd, MHEAP_URING_CMD_STATS, &sarg,
		 sizeof(sarg), 4);
	/* A registered-buffer flag the commands have no use for. */
	sqe = io_uring_get_sqe(&ring);
	prep_cmd(sqe, self->fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 5);
	sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
	ASSERT_EQ(0, uring_run(&ring, 6, res));
	EXPECT_EQ(-ENOTTY, res[0]);
	EXPECT_EQ(-EINVAL, res[1]);
	EXPECT_EQ(-EFAULT, res[2]);
	EXPECT_EQ(-EINVAL, res[3]);
	EXPECT_EQ(-EINVAL, res[4]);
	/* io_uring rejects it itself (no buffers registered) or we do. */
	EXPECT_TRUE(res[5] == -EFAULT || res[5] == -EINVAL) TH_LOG("%d", res[5]);
	EXPECT_EQ(0, try_read(self->mem, NULL));
	io_uring_queue_exit(&ring);

	/* 128-byte SQEs: the rest of the 80-byte area must be zero. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	if (io_uring_queue_init_params(4, &big, &p))
		SKIP(return, "no IORING_SETUP_SQE128");
	sqe = io_uring_get_sqe(&big);
	prep_cmd(sqe, self->fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0);
	memset((char *)sqe + offsetof(struct io_uring_sqe, cmd) + 16, 0, 64);
	sqe = io_uring_get_sqe(&big);
	prep_cmd(sqe, self->fd, MHEAP_URING_CMD_RELEASE, &good, sizeof(good), 1);
	memset((char *)sqe + offsetof(struct io_uring_sqe, cmd) + 16, 0, 64);
	((char *)sqe)[offsetof(struct io_uring_sqe, cmd) + 79] = 1;
	ASSERT_EQ(0, uring_run(&big, 2, res));
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(-EINVAL, res[1]);
	EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
	io_uring_queue_exit(&big);
}

/* ------------------------------------------------------------ kernel access */

TEST_F(dev, kernel_access_to_quarantine_is_efault)
{
	char *q = self->mem + 5 * page;
	char buf[64] = "data for the kernel to copy";
	int pfds[2], sv[2];

	ASSERT_EQ(0, pipe(pfds));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_EQ(0, kfault(self->fd, q, page));

	/* write() from quarantine. */
	errno = 0;
	EXPECT_EQ(-1, write(pfds[1], q, 16));
	EXPECT_EQ(EFAULT, errno);
	/* read() into quarantine. */
	ASSERT_EQ(16, write(pfds[1], buf, 16));
	errno = 0;
	EXPECT_EQ(-1, read(pfds[0], q + 8, 16));
	EXPECT_EQ(EFAULT, errno);
	/* recv() into quarantine, send() from it. */
	ASSERT_EQ(16, send(sv[0], buf, 16, 0));
	errno = 0;
	EXPECT_EQ(-1, recv(sv[1], q, 16, 0));
	EXPECT_EQ(EFAULT, errno);
	errno = 0;
	EXPECT_EQ(-1, send(sv[0], q, 16, 0));
	EXPECT_EQ(EFAULT, errno);
	/* A copy that starts in good memory and runs into quarantine. */
	memset(q - page, 7, page);
	errno = 0;
	ssize_t w = write(pfds[1], q - 8, 16);
	EXPECT_TRUE(w == 8 || (w == -1 && errno == EFAULT)) TH_LOG("%zd", w);

	/* After RELEASE the same calls work, on zeroed memory. */
	ASSERT_EQ(0, krelease(self->fd, q, page));
	EXPECT_EQ(16, read(pfds[0], q, 16));
	EXPECT_EQ(16, recv(sv[1], q + 16, 16, 0));
	EXPECT_EQ(0, memcmp(q + 16, buf, 16));
	close(pfds[0]);
	close(pfds[1]);
	close(sv[0]);
	close(sv[1]);
}

TEST_F(dev, get_user_pages_works_on_resident_pages_and_fails_on_quarantine)
{
	char *m = self->mem, buf[64];
	struct iovec local = { buf, 16 }, remote = { m, 16 };
	int memfd, pfds[2];
	struct mheap_event ev;

	memset(m, 'A', self->len);
	/* process_vm_readv and /proc/self/mem on resident pages. */
	EXPECT_EQ(16, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ('A', buf[15]);
	memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, memfd);
	EXPECT_EQ(16, pread(memfd, buf, 16, (off_t)(uintptr_t)m));
	EXPECT_EQ('A', buf[0]);
	/* ... and on untouched zero-fill ones, which they bring in. */
	ASSERT_EQ(0, krelease(self->fd, m + page, page));
	EXPECT_EQ(16, pread(memfd, buf, 16, (off_t)(uintptr_t)(m + page)));
	EXPECT_EQ(0, buf[0]);

	ASSERT_EQ(0, kfault(self->fd, m, page));
	errno = 0;
	EXPECT_EQ(-1, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ(EFAULT, errno);
	errno = 0;
	EXPECT_EQ(-1, pread(memfd, buf, 16, (off_t)(uintptr_t)m));
	EXPECT_EQ(EIO, errno);
	errno = 0;
	EXPECT_EQ(-1, pwrite(memfd, buf, 16, (off_t)(uintptr_t)m));
	EXPECT_EQ(EIO, errno);
	close(memfd);

	/* vmsplice of a quarantined page. */
	ASSERT_EQ(0, pipe(pfds));
	errno = 0;
	EXPECT_EQ(-1, vmsplice(pfds[1], &remote, 1, 0));
	EXPECT_EQ(EFAULT, errno);
	close(pfds[0]);
	close(pfds[1]);

	/* The get_user_pages accesses were recorded as kernel ones, the
	 * process_vm_readv one as remote too. */
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, O_NONBLOCK));
	ASSERT_EQ(sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ((uintptr_t)m, ev.addr);
	EXPECT_TRUE(ev.flags & MHEAP_EVENT_KERNEL);
	EXPECT_TRUE(ev.flags & MHEAP_EVENT_REMOTE);
}

TEST_F(dev, a_page_pinned_by_vmsplice_outlives_fault_with_its_contents)
{
	struct iovec iov = { self->mem, page };
	struct mheap_stats st;
	char *buf = malloc(page);
	int pfds[2];

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, pipe(pfds));
	memset(self->mem, 'A', page);
	ASSERT_EQ((ssize_t)page, vmsplice(pfds[1], &iov, 1, 0));
	/* The module lets go of the page; the pipe still holds it. */
	ASSERT_EQ(0, kfault(self->fd, self->mem, page));
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
	/* New pages come and get written; the pipe's page is not one of them. */
	ASSERT_EQ(0, krelease(self->fd, self->mem, page));
	memset(self->mem, 'B', self->len);
	ASSERT_EQ((ssize_t)page, read(pfds[0], buf, page));
	for (size_t i = 0; i < page; i++) {
		ASSERT_EQ('A', buf[i]) TH_LOG("byte %zu", i);
	}
	close(pfds[0]);
	close(pfds[1]);
	free(buf);
}

TEST_F(dev, io_uring_fixed_buffers_of_device_memory_are_refused_or_pinned)
{
	struct iovec iov = { self->mem, 4 * page };
	struct io_uring ring;
	int ret;

	ASSERT_EQ(0, io_uring_queue_init(4, &ring, 0));
	memset(self->mem, 1, 4 * page);
	/*
	 * 6.1 refuses all file-backed memory but shmem and hugetlbfs. From
	 * 6.5 get_user_pages() decides, and pins it (FOLL_LONGTERM) as any
	 * other pin: the pages then outlive a FAULT, as with vmsplice.
	 */
	ret = io_uring_register_buffers(&ring, &iov, 1);
	EXPECT_TRUE(ret == -EOPNOTSUPP || ret == 0) TH_LOG("%d", ret);
	if (ret == 0) {
		EXPECT_EQ(0, kfault(self->fd, self->mem, 4 * page));
		EXPECT_EQ(SIGSEGV, try_read(self->mem, NULL));
		EXPECT_EQ(0, io_uring_unregister_buffers(&ring));
	}
	io_uring_queue_exit(&ring);
}

/* A loop device over a file in /dev/shm, for O_DIRECT; -1 if none here. */
static int loop_setup(char *path, size_t pathlen, const char *backing, size_t size)
{
	int ctl, nr, bfd, lfd = -1;
	char *data;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -1;
	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (nr < 0)
		return -1;
	snprintf(path, pathlen, "/dev/loop%d", nr);
	for (int i = 0; i < 100 && access(path, F_OK); i++)
		usleep(10000);
	bfd = open(backing, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (bfd < 0)
		return -1;
	data = malloc(size);
	for (size_t i = 0; data && i < size; i++)
		data[i] = (char)('a' + i % 26);
	if (!data || write(bfd, data, size) != (ssize_t)size)
		goto out;
	lfd = open(path, O_RDWR | O_CLOEXEC);
	if (lfd >= 0 && ioctl(lfd, LOOP_SET_FD, bfd)) {
		close(lfd);
		lfd = -1;
	}
out:
	free(data);
	close(bfd);
	return lfd;
}

TEST_F(dev, o_direct_reads_into_resident_pages_and_fails_on_quarantine)
{
	const char *backing = "/dev/shm/mheap-kmod-loop";
	char path[64];
	int lfd, dfd;

	lfd = loop_setup(path, sizeof(path), backing, 64 * 1024);
	if (lfd < 0) {
		unlink(backing);
		SKIP(return, "no loop device for O_DIRECT (modprobe loop)");
	}
	dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, dfd) TH_LOG("open %s O_DIRECT: %s", path, strerror(errno));
	/* Into a resident page, and into a zero-fill one. */
	self->mem[0] = 'x';
	EXPECT_EQ((ssize_t)page, pread(dfd, self->mem, page, 0));
	EXPECT_EQ('a', self->mem[0]);
	EXPECT_EQ('a' + (page - 1) % 26, self->mem[page - 1]);
	EXPECT_EQ((ssize_t)page, pread(dfd, self->mem + 2 * page, page, page));
	EXPECT_EQ('a' + page % 26, self->mem[2 * page]);
	/* Into quarantine: EFAULT, and nothing reaches the freed page. */
	ASSERT_EQ(0, kfault(self->fd, self->mem + 4 * page, 2 * page));
	errno = 0;
	EXPECT_EQ(-1, pread(dfd, self->mem + 4 * page, page, 0));
	EXPECT_EQ(EFAULT, errno);
	/* Out of a resident page, O_DIRECT writes work too. */
	int wfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);

	ASSERT_LE(0, wfd);
	memset(self->mem + 8 * page, 'Z', page);
	EXPECT_EQ((ssize_t)page, pwrite(wfd, self->mem + 8 * page, page, 0));
	errno = 0;
	EXPECT_EQ(-1, pwrite(wfd, self->mem + 4 * page, page, 0));
	EXPECT_EQ(EFAULT, errno);
	close(wfd);
	close(dfd);
	ioctl(lfd, LOOP_CLR_FD, 0);
	close(lfd);
	unlink(backing);
}

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

	memset(self->mem, 'P', self->len);
	ASSERT_EQ(0, kfault(self->fd, self->mem + page, page));
	child_arg.mem = self->mem;
	child_arg.fd = self->fd;
	run_child(child_has_no_mapping, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x", r.status);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
	/* The parent's mapping is as it was. */
	ASSERT_EQ(0, try_read(self->mem, &v));
	EXPECT_EQ('P', v);
	EXPECT_EQ(SIGSEGV, try_read(self->mem + page, NULL));
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
	if (munmap(child_arg.mem, NPAGES * page))
		_exit(14);
	_exit(0);
}

TEST_F(dev, a_mapping_inherited_through_madv_dofork_is_dead_in_the_child)
{
	struct child_result r;

	memset(self->mem, 'P', self->len);
	ASSERT_EQ(0, madvise(self->mem, self->len, MADV_DOFORK));
	child_arg.mem = self->mem;
	child_arg.fd = self->fd;
	run_child(child_with_dofork_mapping, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x", r.status);
	EXPECT_EQ(0, WEXITSTATUS(r.status));
	EXPECT_EQ('P', self->mem[0]);
	EXPECT_EQ('P', self->mem[self->len - 1]);
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
	EXPECT_EQ(self->before.contexts + 2, g.contexts);
	EXPECT_EQ(9, m[8 * page]);
	EXPECT_EQ(SIGSEGV, try_read(m, NULL));
	EXPECT_EQ(12 * page, (size_t)(g.resident - self->before.resident));
	EXPECT_EQ(4 * page, (size_t)(g.quarantined - self->before.quarantined));
	ASSERT_EQ(0, munmap(m, 16 * page));
	gauges_read(&g);
	EXPECT_EQ(self->before.contexts + 1, g.contexts);
	EXPECT_EQ(self->before.resident, g.resident);
	EXPECT_EQ(self->before.quarantined, g.quarantined);
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
	EXPECT_EQ(self->before.mapped + (long long)self->len, g.mapped);
	EXPECT_EQ(self->before.resident, g.resident);
	EXPECT_EQ(self->before.quarantined, g.quarantined);
	EXPECT_EQ(self->before.ranges, g.ranges);
	EXPECT_EQ(self->before.mappings + 1, g.mappings);
	EXPECT_EQ(self->before.contexts + 1, g.contexts);
}

/* ------------------------------------------------------------ VMA changes */

TEST_F(dev, the_mapping_cannot_be_split_moved_or_grown)
{
	char *m = self->mem;
	void *p;

	m[0] = 'k';
	errno = 0;
	EXPECT_EQ(-1, munmap(m + page, page));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, munmap(m, page));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, mprotect(m + 2 * page, page, PROT_READ));
	EXPECT_EQ(EINVAL, errno);
	/* A flag change on part of it (MADV_DONTFORK would be none: it is set). */
	errno = 0;
	EXPECT_EQ(-1, madvise(m, page, MADV_DOFORK));
	EXPECT_EQ(EINVAL, errno);
	/* mremap: growing, shrinking, moving. */
	EXPECT_EQ(MAP_FAILED, mremap(m, self->len, self->len + page, 0));
	EXPECT_EQ(MAP_FAILED, mremap(m, self->len, self->len + page, MREMAP_MAYMOVE));
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(m, self->len, self->len / 2, 0));
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, self->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	errno = 0;
	EXPECT_EQ(MAP_FAILED, mremap(m, self->len, self->len, MREMAP_MAYMOVE | MREMAP_FIXED, p));
	EXPECT_EQ(EINVAL, errno);
	munmap(p, self->len);
	/* A MAP_FIXED mapping over part of it would split it too. */
	EXPECT_EQ(MAP_FAILED, mmap(m + page, page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));

	/* Still whole, still working. */
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + self->len));
	EXPECT_EQ('k', m[0]);
	EXPECT_EQ(0, kfault(self->fd, m + page, page));
	EXPECT_EQ(SIGSEGV, try_read(m + page, NULL));

	/* Whole-mapping changes are fine: mprotect, then back. */
	ASSERT_EQ(0, mprotect(m, self->len, PROT_READ));
	EXPECT_EQ(SIGSEGV, try_write(m, 1));
	ASSERT_EQ(0, mprotect(m, self->len, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, try_write(m, 1));
	/* Never executable. */
	errno = 0;
	EXPECT_EQ(-1, mprotect(m, self->len, PROT_READ | PROT_EXEC));
	EXPECT_EQ(EACCES, errno);
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
	char *m = self->mem, *q = m + 16 * page;

	memset(m, 'M', self->len);
	ASSERT_EQ(0, kfault(self->fd, q, 4 * page));
	for (size_t i = 0; i < sizeof(advice) / sizeof(advice[0]); i++) {
		int whole = madvise(m, self->len, advice[i]) ? errno : 0;
		int part = madvise(m, page, advice[i]) ? errno : 0;

		TH_LOG("madvise %d: whole %s, first page %s", advice[i], strerror(whole),
		       strerror(part));
	}
	ASSERT_EQ(0, madvise(m, self->len, MADV_DONTFORK));
	/* Population stops at quarantine. */
	errno = 0;
	EXPECT_EQ(-1, madvise(q, page, MADV_POPULATE_WRITE));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, msync(m, self->len, MS_SYNC));
	EXPECT_EQ(0, msync(m, self->len, MS_ASYNC | MS_INVALIDATE));
	/* mlock() locks nothing here (a VM_MIXEDMAP mapping) but populates
	 * the range, which fails on quarantine. */
	EXPECT_EQ(0, mlock(m, 16 * page));
	EXPECT_EQ(0, munlock(m, 16 * page));
	errno = 0;
	EXPECT_EQ(-1, mlock(m, self->len));
	EXPECT_EQ(ENOMEM, errno);

	/* Contents, quarantine and the single VMA all as they were. */
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + self->len));
	for (size_t i = 0; i < self->len; i += 512) {
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
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, page);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	p = mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_SHARED, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EPERM, errno);
	errno = 0;
	p = mmap(NULL, MHEAP_MAP_MAX + page, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_NORESERVE, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(ENOMEM, errno);
	/* The largest one is fine, and costs nothing until touched. */
	p = mmap(NULL, MHEAP_MAP_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	((char *)p)[MHEAP_MAP_MAX - 1] = 1;
	EXPECT_EQ(0, kfault(self->fd, (char *)p + MHEAP_MAP_MAX / 2, MHEAP_MAP_MAX / 2));
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

/* ------------------------------------------------------------ arguments */

TEST_F(dev, range_commands_check_every_argument)
{
	const unsigned long cmds[] = { MHEAP_IOC_FAULT, MHEAP_IOC_RELEASE };
	char *m = self->mem;
	int other = dev_open();
	char *om = dev_map(other, page);
	char *anon = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const struct mheap_range bad[] = {
		{ (uintptr_t)m + 1, page },			/* unaligned start */
		{ (uintptr_t)m, page + 1 },			/* unaligned length */
		{ (uintptr_t)m, 0 },				/* empty */
		{ (uintptr_t)m, self->len + page },		/* past the end */
		{ (uintptr_t)m - page, 2 * page },		/* before the start */
		{ (uintptr_t)m, UINT64_MAX & ~(page - 1) },	/* wraps */
		{ UINT64_MAX & ~(page - 1), 2 * page },		/* wraps */
		{ 0xffff888000000000ull, page },		/* kernel address */
		{ 0, page },					/* nothing there */
		{ (uintptr_t)anon, page },			/* not the device's */
		{ (uintptr_t)om, page },			/* another context's */
	};
	struct mheap_ranges a;

	ASSERT_NE(NULL, om);
	ASSERT_NE(MAP_FAILED, anon);
	for (int c = 0; c < 2; c++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			unsigned int done = 77;

			EXPECT_EQ(EINVAL, ranges_cmd(self->fd, cmds[c], &bad[i], 1, &done))
				TH_LOG("cmd %d range %zu", c, i);
			EXPECT_EQ(0, done);
		}
		/* Flags and reserved fields must be zero. */
		a = (struct mheap_ranges){ .ranges = (uintptr_t)bad, .nr = 0, .flags = 1 };
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[c], &a));
		EXPECT_EQ(EINVAL, errno);
		a = (struct mheap_ranges){ .ranges = (uintptr_t)bad, .nr = 0, .reserved = 1 };
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[c], &a));
		EXPECT_EQ(EINVAL, errno);
		/* Bad pointers: the argument, the vector. */
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[c], NULL));
		EXPECT_EQ(EFAULT, errno);
		a = (struct mheap_ranges){ .ranges = 8, .nr = 1 };
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[c], &a));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(0, a.done);
		a = (struct mheap_ranges){ .ranges = (uintptr_t)bad, .nr = UINT32_MAX };
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->fd, cmds[c], &a));
		EXPECT_EQ(EINVAL, errno);
	}
	/* The anonymous and the other context's memory were left alone. */
	EXPECT_EQ(0, try_write(anon, 1));
	EXPECT_EQ(0, try_write(om, 1));
	EXPECT_EQ(0, try_write(m, 1));

	/* STATS: size, flags, reserved; SET_LIMIT: flags, reserved. */
	struct mheap_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st) - 8;
	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_STATS, &st);
	st.size = sizeof(st);
	st.flags = 2;
	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_STATS, &st);
	st.flags = 0;
	st.reserved = 1;
	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_STATS, &st);
	EXPECT_IOCTL_FAILS(EFAULT, self->fd, MHEAP_IOC_STATS, NULL);
	struct mheap_limit lim = { .bytes = page, .flags = 2 };

	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_SET_LIMIT, &lim);
	lim.flags = 0;
	lim.reserved = 1;
	EXPECT_IOCTL_FAILS(EINVAL, self->fd, MHEAP_IOC_SET_LIMIT, &lim);
	EXPECT_IOCTL_FAILS(EFAULT, self->fd, MHEAP_IOC_SET_LIMIT, (void *)8);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(MHEAP_LIMIT_NONE, st.self.quarantine_limit);

	munmap(anon, page);
	munmap(om, page);
	close(other);
}

/* ------------------------------------------------------------ races */

static struct {
	char *mem;
	size_t len;
	volatile int stop;
	unsigned long touched, faulted;
} race;

static void *racer(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	unsigned long touched = 0, faulted = 0;

	probes_install();
	while (!race.stop) {
		size_t off = (size_t)rand_r(&seed) % race.len;

		if (try_write(race.mem + off, (char)off))
			faulted++;
		else
			touched++;
	}
	__atomic_add_fetch(&race.touched, touched, __ATOMIC_RELAXED);
	__atomic_add_fetch(&race.faulted, faulted, __ATOMIC_RELAXED);
	return NULL;
}

TEST_F_TIMEOUT(dev, page_faults_race_with_fault_and_release, 120)
{
	struct mheap_stats st;
	pthread_t t[3];
	int rounds = 400;

	race.mem = self->mem;
	race.len = self->len;
	race.stop = 0;
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)(i + 1)));
	for (int i = 0; i < rounds; i++) {
		ASSERT_EQ(0, kfault(self->fd, self->mem, self->len));
		/* No fault that raced with FAULT left a page behind. */
		ASSERT_EQ(0, kstats(self->fd, &st));
		ASSERT_EQ(0, st.self.resident_bytes) TH_LOG("round %d", i);
		ASSERT_EQ(self->len, st.self.quarantined_bytes);
		usleep(100);
		ASSERT_EQ(0, krelease(self->fd, self->mem, self->len));
		usleep(200);
	}
	race.stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	TH_LOG("%lu writes landed, %lu faulted", race.touched, race.faulted);
	EXPECT_NE(0, race.touched);
	EXPECT_NE(0, race.faulted);
	/* Consistent at the end: what is resident is what reads back. */
	ASSERT_EQ(0, krelease(self->fd, self->mem, self->len));
	for (size_t i = 0; i < self->len; i++)
		ASSERT_EQ(0, self->mem[i]);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(self->len, st.self.resident_bytes);
}

/* ------------------------------------------------------------ the library */

FIXTURE(lib) {
	struct gauges before;
	struct arena_config cfg;
};

FIXTURE_SETUP(lib)
{
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	gauges_read(&self->before);
}

FIXTURE_TEARDOWN(lib)
{
}

/* Commands the module served so far, all contexts. */
static long long commands(void)
{
	return sysfs_counter("commands");
}

static void three_chunk_arena_cycle(struct __test_metadata *_metadata, const char *io,
				    long long expect_commands)
{
	struct arena_config cfg;
	long long before;
	mh_arena *a;
	char *p[3];

	setenv("MHEAP_KMOD_IO", io, 1);
	ASSERT_NE(NULL, fault_backend_select("kmod"));
	arena_config_get(&cfg);
	cfg.reuse = false;
	arena_configure(&cfg);
	a = mh_arena_new();
	for (int i = 0; i < 3; i++) {
		p[i] = mh_arena_alloc(a, cfg.chunk_bytes / 2, 0);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i + 1, 4096);
		EXPECT_TRUE(device_mapped_at(p[i]));
	}
	/* A first cycle sets the ring up; count the second one. */
	before = commands();
	mh_arena_free(a);
	a = mh_arena_new();
	for (int i = 0; i < 3; i++)
		p[i] = mh_arena_alloc(a, cfg.chunk_bytes / 2, 0);
	mh_quarantine_release();
	before = commands();
	mh_arena_free(a);
	EXPECT_EQ(expect_commands, commands() - before) TH_LOG("%s", io);
	mh_quarantine_release();
}

TEST_F(lib, arena_chunks_are_faulted_in_one_io_uring_batch)
{
	/* One linked SQE per chunk: three commands. */
	three_chunk_arena_cycle(_metadata, "uring", 3);
}

TEST_F(lib, or_in_one_ioctl_with_a_vector)
{
	three_chunk_arena_cycle(_metadata, "ioctl", 1);
}

static struct {
	char *live, *stale;
	mh_arena *live_arena;
} forked;

static void child_uses_arenas_after_fork(void *arg)
{
	(void)arg;
	probes_install();
	/* Quarantine is still quarantine; live chunks did not come along. */
	if (try_read(forked.stale, NULL) != SIGSEGV)
		_exit(10);
	if (try_read(forked.live, NULL) != SIGSEGV)
		_exit(11);
	if (!device_mapped_at(forked.stale) || !device_mapped_at(forked.live))
		_exit(12);
	/* New arenas work, and their memory is the child's own. */
	for (int i = 0; i < 3; i++) {
		mh_arena *a = mh_arena_new();
		char *p = mh_arena_alloc(a, 1 << 20, 0);

		if (!p || try_write(p, 1) || try_write(p + (1 << 20) - 1, 2))
			_exit(13);
		mh_arena_free(a);
	}
	mh_arena_free(forked.live_arena);
	mh_quarantine_release();
	_exit(0);
}

TEST_F(lib, a_forked_child_keeps_its_heap_mapped)
{
	struct child_result r;
	mh_arena *a;

	ASSERT_NE(NULL, fault_backend_select("kmod"));
	arena_config_get(&self->cfg);
	self->cfg.reuse = false;
	arena_configure(&self->cfg);
	a = mh_arena_new();
	forked.stale = mh_arena_alloc(a, 64, 0);
	strcpy(forked.stale, "stale");
	mh_arena_free(a);
	forked.live_arena = mh_arena_new();
	forked.live = mh_arena_alloc(forked.live_arena, 64, 0);
	strcpy(forked.live, "live");

	run_child(child_uses_arenas_after_fork, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	/* The parent's arena is untouched by all that. */
	EXPECT_STREQ("live", forked.live);
	mh_arena_free(forked.live_arena);
	mh_quarantine_release();
}

/*
 * Arenas live at fork, touched in the child with mheap's own handler: the
 * report names the access, the arena and the chunk, and says why.
 */
static struct {
	char *p;
	bool write;
	bool free_first;	/* the child frees the arena before touching it */
	bool grandchild;	/* ... or forks again and the grandchild touches */
	mh_arena *arena;
} lost;

static void touch_lost(void *arg)
{
	(void)arg;
	if (lost.free_first)
		mh_arena_free(lost.arena);
	if (lost.write)
		*lost.p = 1;
	else
		*(volatile char *)lost.p;
	_exit(0);
}

static void touch_lost_in_grandchild(void *arg)
{
	struct child_result r;

	run_child(touch_lost, arg, &r);
	/* Pass on how the grandchild ended, and what it said. */
	if (write(STDERR_FILENO, r.err, strlen(r.err)) < 0 || !died_of(&r, SIGSEGV))
		_exit(20);
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

/* The line a child must print for an access to p, a chunk of the parent. */
static void lost_line(char *buf, size_t size, const char *p, bool write)
{
	const struct mspan *s = span_of((uintptr_t)p);
	const struct arena_chunk *c = s ? s->chunk_data : NULL;

	if (!c) {
		snprintf(buf, size, "(%p is in no chunk)", (const void *)p);
		return;
	}
	snprintf(buf, size,
		 "mheap: arena memory lost in fork: %s %#lx in arena #%llu, %schunk [%#lx, %#lx), "
		 "live in the parent: " DEV_PATH " memory is not inherited across fork "
		 "(kmod backend)\n",
		 write ? "write to" : "read of", (unsigned long)(uintptr_t)p,
		 (unsigned long long)c->arena_id, c->large ? "large " : "", (unsigned long)c->base,
		 (unsigned long)c->limit);
}

FIXTURE(lost) {
	struct arena_config cfg;
	mh_arena *arena;
	char *p;
};

FIXTURE_VARIANT(lost) {
	bool write;
	bool grandchild;
};

FIXTURE_VARIANT_ADD(lost, read) { .write = false };
FIXTURE_VARIANT_ADD(lost, write) { .write = true };
FIXTURE_VARIANT_ADD(lost, read_in_grandchild) { .write = false, .grandchild = true };

FIXTURE_SETUP(lost)
{
	self->arena = NULL;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	ASSERT_NE(NULL, fault_backend_select("kmod"));
	arena_config_get(&self->cfg);
	self->cfg.reuse = false;
	arena_configure(&self->cfg);
	self->arena = mh_arena_new();
	ASSERT_NE(NULL, self->arena);
	self->p = mh_arena_alloc(self->arena, 4096, 0);
	ASSERT_NE(NULL, self->p);
	strcpy(self->p + 100, "live in the parent");
	memset(&lost, 0, sizeof(lost));
	lost.p = self->p + 100;
	lost.write = variant->write;
	lost.grandchild = variant->grandchild;
	lost.arena = self->arena;
}

FIXTURE_TEARDOWN(lost)
{
	if (self->arena) {
		mh_arena_free(self->arena);
		mh_quarantine_release();
	}
}

static void run_lost(struct child_result *r)
{
	run_child(lost.grandchild ? touch_lost_in_grandchild : touch_lost, NULL, r);
}

TEST_F(lost, a_forked_child_touching_a_live_arena_gets_a_report_and_dies)
{
	struct child_result r;
	char want[512];
	RETURN_IF_SETUP_SKIPPED();

	lost_line(want, sizeof(want), lost.p, lost.write);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_STREQ(want, r.err);
	/* The parent's arena is untouched by all that. */
	EXPECT_STREQ("live in the parent", lost.p);
}

TEST_F(lost, a_live_arena_freed_in_the_child_is_then_a_use_after_free)
{
	struct child_result r;
	char want[128];
	RETURN_IF_SETUP_SKIPPED();

	lost.free_first = true;
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 lost.write ? "write to" : "read of", (unsigned long)(uintptr_t)lost.p);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	EXPECT_EQ(NULL, strstr(r.err, "lost in fork")) TH_LOG("%s", r.err);
}

TEST_F(lost, an_arena_freed_in_the_parent_is_a_use_after_free_in_the_child)
{
	struct child_result r;
	char want[128];
	RETURN_IF_SETUP_SKIPPED();

	mh_arena_free(self->arena);
	self->arena = NULL;
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 lost.write ? "write to" : "read of", (unsigned long)(uintptr_t)lost.p);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	mh_quarantine_release();
}

static void replace_the_library_descriptor(void *arg)
{
	char link[64], target[256];
	int victim = -1, file;
	mh_arena *a;

	(void)arg;
	a = mh_arena_new();
	*(char *)mh_arena_alloc(a, 64, 0) = 1;
	for (int fd = 3; fd < 4096 && victim < 0; fd++) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			if (!strcmp(target, DEV_PATH))
				victim = fd;
		}
	}
	if (victim < 0)
		_exit(10);
	/* A program "tidying up" its descriptors puts a file in its place. */
	file = open("/dev/shm/mheap-kmod-victim", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file < 0 || ftruncate(file, 64 << 20) || dup2(file, victim) != victim)
		_exit(11);
	/* The next chunk must not be a mapping of that file. */
	a = mh_arena_new();
	mh_arena_alloc(a, 16 << 20, 0);
	_exit(12);
}

TEST_F(lib, a_descriptor_replaced_behind_its_back_is_caught)
{
	struct child_result r;

	ASSERT_NE(NULL, fault_backend_select("kmod"));
	run_child(replace_the_library_descriptor, NULL, &r);
	unlink("/dev/shm/mheap-kmod-victim");
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, "was closed or replaced behind mheap's back"))
		TH_LOG("%s", r.err);
}

TEST_F(lib, edquot_releases_the_oldest_chunks)
{
	struct mh_stats st = MH_STATS_INIT;
	struct mheap_stats ks;
	uint64_t saved;
	int fd;

	if (geteuid() != 0)
		SKIP(return, "setting the global limit needs root");
	ASSERT_NE(NULL, fault_backend_select("kmod"));
	arena_config_get(&self->cfg);
	self->cfg.reuse = false;
	arena_configure(&self->cfg);
	fd = dev_open();
	ASSERT_EQ(0, kstats(fd, &ks));
	saved = ks.global.quarantine_limit;
	/* Room for three chunks more than is quarantined now. */
	ASSERT_EQ(0, klimit(fd, ks.global.quarantined_bytes + 3 * self->cfg.chunk_bytes,
			    MHEAP_LIMIT_GLOBAL));
	for (int i = 0; i < 10; i++) {
		mh_arena *a = mh_arena_new();

		*(char *)mh_arena_alloc(a, 64, 0) = 1;
		mh_arena_free(a);
	}
	/* Every chunk is either still quarantined or was released because
	 * the module said EDQUOT; the budget had nothing to do with it. */
	mh_stats_read(&st);
	EXPECT_LE(1, st.arena_chunks_quarantined);
	EXPECT_GE(3, st.arena_chunks_quarantined);
	EXPECT_EQ(10, st.arena_chunks_quarantined + st.arena_releases_enomem);
	EXPECT_EQ(0, st.arena_releases_budget);
	ASSERT_EQ(0, klimit(fd, saved, MHEAP_LIMIT_GLOBAL));
	close(fd);
	mh_quarantine_release();
}

/* ------------------------------------------------------------ unload */

static int delete_module(const char *name, unsigned int flags)
{
	return (int)syscall(SYS_delete_module, name, flags);
}

static int finit_module(int fd, const char *params, unsigned int flags)
{
	return (int)syscall(SYS_finit_module, fd, params, flags);
}

static bool wait_for(const char *path, bool present)
{
	for (int i = 0; i < 500; i++) {
		if ((access(path, F_OK) == 0) == present)
			return true;
		usleep(10000);
	}
	return false;
}

/* A fixture of its own so that it runs last, after every other test. */
FIXTURE(unload) {
};

FIXTURE_SETUP(unload)
{
}

FIXTURE_TEARDOWN(unload)
{
}

TEST_F(unload, waits_for_the_last_mapping_and_reload_starts_from_zero)
{
	const char *ko = getenv("MHEAP_KO");
	struct gauges g;
	int kofd, fd;
	char *m;

	if (!device_present())
		SKIP(return, NO_DEVICE);
	if (!ko || !*ko)
		SKIP(return, "MHEAP_KO not set: reloading needs the module file (VM only)");
	kofd = open(ko, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, kofd);

	/* Nothing of earlier tests is left anywhere. */
	gauges_read(&g);
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
	if (errno == EPERM)
		SKIP(munmap(m, 8 * page); close(kofd); return,
		     "unloading modules needs CAP_SYS_MODULE");
	EXPECT_EQ(EWOULDBLOCK, errno);
	EXPECT_EQ(1, m[5 * page]);
	ASSERT_EQ(0, munmap(m, 8 * page));

	gauges_read(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));
	ASSERT_EQ(0, delete_module("mheap", O_NONBLOCK)) TH_LOG("%s", strerror(errno));
	EXPECT_TRUE(wait_for(DEV_PATH, false));
	ASSERT_EQ(0, finit_module(kofd, "", 0)) TH_LOG("%s", strerror(errno));
	ASSERT_TRUE(wait_for(DEV_PATH, true));
	gauges_read(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));
	EXPECT_EQ(0, sysfs_counter("commands"));
	EXPECT_EQ(0, sysfs_counter("faults_caught"));
	close(kofd);
}

TEST_HARNESS_MAIN
