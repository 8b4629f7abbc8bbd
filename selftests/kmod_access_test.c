// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel and remote access to /dev/mheap memory, as a kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down:
 *  - the kernel's own access to quarantine (read, write, recv, send) gets
 *    EFAULT, and works again after RELEASE;
 *  - get_user_pages paths (process_vm_readv, /proc/self/mem, vmsplice, and
 *    O_DIRECT through a loop device when there is one) work on resident
 *    and zero-fill pages and fail on quarantined ones, and make events
 *    marked as kernel and remote accesses;
 *  - a page pinned by vmsplice outlives FAULT with its contents;
 *  - io_uring fixed buffers of device memory are refused (6.1) or pinned.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/uio.h>

#include <linux/loop.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

KDEV_FIXTURE(dev)

/* ------------------------------------------------------------ kernel access */

TEST_F(dev, kernel_access_to_quarantine_is_efault)
{
	char *q = self->d.mem + 5 * page;
	char buf[64] = "data for the kernel to copy";
	int pfds[2], sv[2];

	ASSERT_EQ(0, pipe(pfds));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_EQ(0, kfault(self->d.fd, q, page));

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
	ASSERT_EQ(0, krelease(self->d.fd, q, page));
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
	char *m = self->d.mem, buf[64];
	struct iovec local = { buf, 16 }, remote = { m, 16 };
	int memfd, pfds[2];
	struct mheap_event ev;

	memset(m, 'A', self->d.len);
	/* process_vm_readv and /proc/self/mem on resident pages. */
	EXPECT_EQ(16, process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ('A', buf[15]);
	memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, memfd);
	EXPECT_EQ(16, pread(memfd, buf, 16, (off_t)(uintptr_t)m));
	EXPECT_EQ('A', buf[0]);
	/* ... and on untouched zero-fill ones, which they bring in. */
	ASSERT_EQ(0, krelease(self->d.fd, m + page, page));
	EXPECT_EQ(16, pread(memfd, buf, 16, (off_t)(uintptr_t)(m + page)));
	EXPECT_EQ(0, buf[0]);

	ASSERT_EQ(0, kfault(self->d.fd, m, page));
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
	ASSERT_EQ(0, fcntl(self->d.fd, F_SETFL, O_NONBLOCK));
	ASSERT_EQ(sizeof(ev), read(self->d.fd, &ev, sizeof(ev)));
	EXPECT_EQ((uintptr_t)m, ev.addr);
	EXPECT_TRUE(ev.flags & MHEAP_EVENT_KERNEL);
	EXPECT_TRUE(ev.flags & MHEAP_EVENT_REMOTE);
}

TEST_F(dev, a_page_pinned_by_vmsplice_outlives_fault_with_its_contents)
{
	struct iovec iov = { self->d.mem, page };
	struct mheap_stats st;
	char *buf = malloc(page);
	int pfds[2];

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, pipe(pfds));
	memset(self->d.mem, 'A', page);
	ASSERT_EQ((ssize_t)page, vmsplice(pfds[1], &iov, 1, 0));
	/* The module lets go of the page; the pipe still holds it. */
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	/* New pages come and get written; the pipe's page is not one of them. */
	ASSERT_EQ(0, krelease(self->d.fd, self->d.mem, page));
	memset(self->d.mem, 'B', self->d.len);
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
	struct iovec iov = { self->d.mem, 4 * page };
	struct io_uring ring;
	int ret;

	ASSERT_EQ(0, io_uring_queue_init(4, &ring, 0));
	memset(self->d.mem, 1, 4 * page);
	/*
	 * 6.1 refuses all file-backed memory but shmem and hugetlbfs. From
	 * 6.5 get_user_pages() decides, and pins it (FOLL_LONGTERM) as any
	 * other pin: the pages then outlive a FAULT, as with vmsplice.
	 */
	ret = io_uring_register_buffers(&ring, &iov, 1);
	EXPECT_TRUE(ret == -EOPNOTSUPP || ret == 0) TH_LOG("%d", ret);
	if (ret == 0) {
		EXPECT_EQ(0, kfault(self->d.fd, self->d.mem, 4 * page));
		EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
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
	self->d.mem[0] = 'x';
	EXPECT_EQ((ssize_t)page, pread(dfd, self->d.mem, page, 0));
	EXPECT_EQ('a', self->d.mem[0]);
	EXPECT_EQ('a' + (page - 1) % 26, self->d.mem[page - 1]);
	EXPECT_EQ((ssize_t)page, pread(dfd, self->d.mem + 2 * page, page, page));
	EXPECT_EQ('a' + page % 26, self->d.mem[2 * page]);
	/* Into quarantine: EFAULT, and nothing reaches the freed page. */
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem + 4 * page, 2 * page));
	errno = 0;
	EXPECT_EQ(-1, pread(dfd, self->d.mem + 4 * page, page, 0));
	EXPECT_EQ(EFAULT, errno);
	/* Out of a resident page, O_DIRECT writes work too. */
	int wfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);

	ASSERT_LE(0, wfd);
	memset(self->d.mem + 8 * page, 'Z', page);
	EXPECT_EQ((ssize_t)page, pwrite(wfd, self->d.mem + 8 * page, page, 0));
	errno = 0;
	EXPECT_EQ(-1, pwrite(wfd, self->d.mem + 4 * page, page, 0));
	EXPECT_EQ(EFAULT, errno);
	close(wfd);
	close(dfd);
	ioctl(lfd, LOOP_CLR_FD, 0);
	close(lfd);
	unlink(backing);
}

TEST_HARNESS_MAIN
