// SPDX-License-Identifier: GPL-2.0
/*
 * Fault events of /dev/mheap: every access to quarantine, read with read()
 * and poll() on the descriptor whose mapping was touched, as a kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down:
 *  - an access from user space or from the kernel on the task's behalf is
 *    an event with its number, address, kind, pid, tid and comm, and
 *    poll() says when there is one; read() blocks until one comes;
 *  - a full ring keeps the newest events and counts every one it lost;
 *  - a task the reader's pid namespace cannot see is anonymous in them.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

KDEV_FIXTURE(dev)

/* ------------------------------------------------------------ events */

TEST_F(dev, without_an_event_poll_says_nothing_and_read_would_block)
{
	struct pollfd pfd = { .fd = self->d.fd, .events = POLLIN };
	struct mheap_event ev;

	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	ASSERT_EQ(0, fcntl(self->d.fd, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_FAILS_WITH(EAGAIN, read(self->d.fd, &ev, sizeof(ev)));
}

TEST_F(dev, a_user_access_is_an_event_with_its_number_address_kind_and_task)
{
	char *q = self->d.mem + 3 * page, comm[16] = "";
	struct mheap_event ev[2];
	struct mheap_stats st;

	ASSERT_EQ(0, prctl(PR_GET_NAME, comm));
	ASSERT_EQ(0, kfault(self->d.fd, q, page));
	ASSERT_EQ(SIGSEGV, try_read(q + 100, NULL));
	ASSERT_EQ(SIGSEGV, try_write(q + 200, 1));
	ASSERT_EQ(sizeof(ev), read(self->d.fd, ev, sizeof(ev)));

	EXPECT_EQ(0, ev[0].seq);
	EXPECT_EQ((uintptr_t)q + 100, ev[0].addr);
	EXPECT_EQ(0, ev[0].flags);
	EXPECT_EQ(getpid(), (pid_t)ev[0].pid);
	EXPECT_EQ(gettid(), (pid_t)ev[0].tid);
	EXPECT_NE(0, ev[0].time_ns);
	EXPECT_STREQ(comm, ev[0].comm);
	EXPECT_EQ(0, ev[0].reserved);
	EXPECT_EQ(0, ev[0].reserved2);

	EXPECT_EQ(1, ev[1].seq);
	EXPECT_EQ((uintptr_t)q + 200, ev[1].addr);
	EXPECT_EQ(MHEAP_EVENT_WRITE, ev[1].flags);
	EXPECT_LE(ev[0].time_ns, ev[1].time_ns);

	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(2, st.self.faults_caught);
	EXPECT_EQ(0, st.self.events_dropped);
}

TEST_F(dev, a_kernel_access_on_the_tasks_behalf_is_a_kernel_event)
{
	char *q = self->d.mem + 3 * page;
	struct mheap_event ev[4];
	struct mheap_stats st;
	int pfds[2];
	ssize_t n;

	ASSERT_EQ(0, kfault(self->d.fd, q, page));
	ASSERT_EQ(0, pipe(pfds));
	EXPECT_FAILS_WITH(EFAULT, write(pfds[1], q + 300, 10));
	close(pfds[0]);
	close(pfds[1]);
	ASSERT_EQ(0, fcntl(self->d.fd, F_SETFL, O_NONBLOCK));
	n = read(self->d.fd, ev, sizeof(ev));
	/* The kernel's copy may retry after its first fault: 1 or 2 events. */
	ASSERT_LE((ssize_t)sizeof(ev[0]), n);
	ASSERT_GE(2 * (ssize_t)sizeof(ev[0]), n);
	n /= sizeof(ev[0]);
	for (ssize_t i = 0; i < n; i++) {
		EXPECT_EQ(i, ev[i].seq);
		EXPECT_LE((uintptr_t)q + 300, ev[i].addr);
		EXPECT_GT((uintptr_t)q + 310, ev[i].addr);
		EXPECT_EQ(MHEAP_EVENT_KERNEL, ev[i].flags);
		EXPECT_EQ(getpid(), (pid_t)ev[i].pid);
	}
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(n, st.self.faults_caught);
}

TEST_F(dev, poll_says_when_an_event_waits_and_read_consumes_it)
{
	struct pollfd pfd = { .fd = self->d.fd, .events = POLLIN };
	struct mheap_event ev;

	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	ASSERT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLIN);
	ASSERT_EQ(0, fcntl(self->d.fd, F_SETFL, O_NONBLOCK));
	ASSERT_EQ(sizeof(ev), read(self->d.fd, &ev, sizeof(ev)));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_FAILS_WITH(EAGAIN, read(self->d.fd, &ev, sizeof(ev)));
}

TEST_F(dev, read_needs_room_for_a_whole_event)
{
	struct mheap_event ev[2];

	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	ASSERT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	EXPECT_FAILS_WITH(EINVAL, read(self->d.fd, ev, sizeof(ev[0]) - 1));
	/* Room for one and a half: one is copied. */
	EXPECT_EQ(sizeof(ev[0]), read(self->d.fd, ev, sizeof(ev[0]) + sizeof(ev[0]) / 2));
	EXPECT_EQ((uintptr_t)self->d.mem, ev[0].addr);
}

TEST_F(dev, the_newest_events_are_kept_and_the_lost_ones_counted)
{
	long long cap = module_param("events_per_context");
	struct mheap_event ev;
	struct mheap_stats st;
	uint64_t expect;

	ASSERT_LT(0, cap);
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	for (long long i = 0; i < cap + 10; i++)
		ASSERT_EQ(SIGSEGV, try_read(self->d.mem + i % page, NULL));
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(cap + 10, st.self.faults_caught);
	EXPECT_EQ(10, st.self.events_dropped);
	/* The oldest left is number 10; then they follow without a gap. */
	expect = 10;
	ASSERT_EQ(0, fcntl(self->d.fd, F_SETFL, O_NONBLOCK));
	while (read(self->d.fd, &ev, sizeof(ev)) == sizeof(ev)) {
		ASSERT_EQ(expect, ev.seq);
		ASSERT_EQ((uintptr_t)self->d.mem + expect % page, ev.addr);
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

	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, page));
	ASSERT_EQ(0, pthread_create(&t, NULL, blocked_reader, &self->d.fd));
	usleep(100 * 1000);
	EXPECT_EQ(SIGSEGV, try_write(self->d.mem + 42, 1));
	ASSERT_EQ(0, pthread_join(t, (void **)&ev));
	ASSERT_NE(NULL, ev);
	EXPECT_EQ((uintptr_t)self->d.mem + 42, ev->addr);
	EXPECT_EQ(MHEAP_EVENT_WRITE, ev->flags);
}

/* ------------------------------------------------------------ pid namespaces */

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

TEST_HARNESS_MAIN
