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
 *  - events made while the ring cannot be allocated (the accessing task's
 *    memory cgroup has no room for it) are each counted lost, and the next
 *    event, once there is a ring, carries the number after them; a ring
 *    allocated meanwhile by another task loses none of its events;
 *  - a task the reader's pid namespace cannot see is anonymous in them.
 * The memory cgroup tests mount cgroup2 themselves where it is not mounted
 * (the VM's init does not), and need root.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* ------------------------------------------------------------ no ring */

/*
 * A memory cgroup of its own for a child, with room for a few pages but
 * never for an event ring: the ring is charged to the memory cgroup of the
 * task whose access makes the first event (GFP_KERNEL_ACCOUNT), so in the
 * child it cannot be allocated. cgroup2 is mounted on a directory of our
 * own when it is mounted nowhere (the VM's init does not mount it).
 */
#define CG_MAX		(1 << 20)	/* memory.max: 1 MiB */
#define RING_EVENTS	65536U		/* events_per_context: a 4 MiB ring */

struct memcg {
	char root[64];		/* where cgroup2 is mounted */
	char dir[128];		/* the cgroup */
	bool mounted;		/* by us */
};

static void memcg_remove(struct memcg *cg)
{
	if (cg->dir[0])
		rmdir(cg->dir);
	if (cg->mounted) {
		umount2(cg->root, MNT_DETACH);
		rmdir(cg->root);
	}
	memset(cg, 0, sizeof(*cg));
}

/* Make the cgroup; NULL, or why it cannot be had (a SKIP). */
static const char *memcg_make(struct memcg *cg)
{
	char path[192], line[256], dev[64], dir[64], type[32];
	FILE *f = fopen("/proc/self/mounts", "re");

	memset(cg, 0, sizeof(*cg));
	if (geteuid() != 0)
		return "a memory cgroup of its own needs root";
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %63s %31s", dev, dir, type) == 3 &&
		    !strcmp(type, "cgroup2"))
			snprintf(cg->root, sizeof(cg->root), "%s", dir);
	if (f)
		fclose(f);
	if (!cg->root[0]) {
		snprintf(cg->root, sizeof(cg->root), "/tmp/mheap-cgroup2.XXXXXX");
		if (!mkdtemp(cg->root))
			return "no directory to mount cgroup2 on";
		if (mount("cgroup2", cg->root, "cgroup2", 0, NULL)) {
			rmdir(cg->root);
			return "cgroup2 cannot be mounted";
		}
		cg->mounted = true;
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg->root);
	if (write_text(path, "+memory")) {
		memcg_remove(cg);
		return "no memory controller in cgroup2";
	}
	snprintf(cg->dir, sizeof(cg->dir), "%s/mheap-events-%d", cg->root, getpid());
	snprintf(path, sizeof(path), "%s/memory.max", cg->dir);
	snprintf(line, sizeof(line), "%d", CG_MAX);
	if (mkdir(cg->dir, 0755) || write_text(path, line)) {
		memcg_remove(cg);
		return "cannot make a memory cgroup";
	}
	return NULL;
}

/* Move the calling process into the cgroup; 0 or errno. */
static int memcg_enter(const struct memcg *cg)
{
	char path[192], pid[16];

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dir);
	snprintf(pid, sizeof(pid), "%d", getpid());
	return write_text(path, pid);
}

/* How often the cgroup's memory.max refused a charge; -1 if unreadable. */
static long long memcg_max_events(const struct memcg *cg)
{
	char path[192], line[128];
	long long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.events", cg->dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "max %lld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* Warm up the stack a signal handler runs on, before the cgroup binds. */
static void __attribute__((noinline)) touch_stack(void)
{
	volatile char buf[64 << 10];

	memset((char *)buf, 0, sizeof(buf));
}

FIXTURE(noring) {
	int fd;
	char *mem;
	long long events_param;
	struct memcg cg;
	volatile int *stop;	/* shared with the child */
};

FIXTURE_SETUP(noring)
{
	const char *why;

	self->fd = -1;
	self->mem = NULL;
	self->events_param = -1;
	self->stop = MAP_FAILED;
	memset(&self->cg, 0, sizeof(self->cg));
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	why = memcg_make(&self->cg);
	if (why)
		SKIP_SETUP("%s", why);
	probes_install();
	self->events_param = module_param("events_per_context");
	ASSERT_LT(0, self->events_param);
	ASSERT_EQ(0, module_param_set("events_per_context", RING_EVENTS));
	self->fd = dev_open();
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, O_NONBLOCK));
	self->mem = dev_map(self->fd, page);
	ASSERT_NE(NULL, self->mem);
	ASSERT_EQ(0, kfault(self->fd, self->mem, page));
	self->stop = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->stop);
}

FIXTURE_TEARDOWN(noring)
{
	if (self->stop != MAP_FAILED)
		munmap((void *)self->stop, page);
	if (self->mem)
		munmap(self->mem, page);
	if (self->fd >= 0)
		close(self->fd);
	if (self->events_param > 0)
		module_param_set("events_per_context", self->events_param);
	memcg_remove(&self->cg);
}

/*
 * The child's side: a mapping of the fixture's descriptor of its own,
 * quarantined, then into the cgroup and touch it n times, or until *stop
 * once started is written to (when n is 0, at most 1000 times). Exits 0 if
 * every touch faulted.
 */
static void toucher(int fd, const struct memcg *cg, unsigned int n, volatile int *stop,
		    int started)
{
	char *m = dev_map(fd, page);
	unsigned int most = n ? n : 1000;

	probes_install();
	touch_stack();
	if (!m || kfault(fd, m, page))
		_exit(10);
	if (memcg_enter(cg))
		_exit(11);
	for (unsigned int i = 0; i < most && !*stop; i++) {
		if (try_read(m + i % page, NULL) != SIGSEGV)
			_exit(12);
		if (i == 0 && started >= 0 && write(started, "s", 1) != 1)
			_exit(13);
	}
	_exit(0);
}

TEST_F(noring, events_made_while_the_ring_cannot_be_allocated_are_each_counted_lost)
{
	const unsigned int n = 20;
	struct mheap_event ev;
	struct mheap_stats st;
	int status;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		toucher(self->fd, &self->cg, n, self->stop, -1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("child status %#x", status);
	/* The cgroup's limit is what refused the ring. */
	EXPECT_LT(0, memcg_max_events(&self->cg));

	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(n, st.self.faults_caught);
	EXPECT_EQ(n, st.self.events_dropped);
	EXPECT_FAILS_WITH(EAGAIN, read(self->fd, &ev, sizeof(ev)));

	/* Out here the ring comes, and the next event follows the lost ones. */
	ASSERT_EQ(SIGSEGV, try_read(self->mem + 1, NULL));
	ASSERT_EQ(sizeof(ev), read(self->fd, &ev, sizeof(ev)));
	EXPECT_EQ(n, ev.seq);
	EXPECT_EQ((uintptr_t)self->mem + 1, ev.addr);
	ASSERT_EQ(0, kstats(self->fd, &st));
	EXPECT_EQ(n, st.self.events_dropped);
}

/*
 * The child keeps failing to allocate the ring while this process, outside
 * the cgroup, allocates it and makes events: none of those may be lost
 * when a failure that began before the ring existed ends after them. A few
 * rounds, each on a fresh descriptor, so that one lands in that window.
 */
TEST_F(noring, a_ring_allocated_while_another_task_fails_to_loses_no_event)
{
	const unsigned int rounds = 5, mine = 200;

	for (unsigned int r = 0; r < rounds; r++) {
		unsigned int read_mine = 0, read_all = 0;
		struct mheap_event ev;
		struct mheap_stats st;
		int fd = dev_open(), sync[2], status;
		char *m, c;
		pid_t pid;

		ASSERT_LE(0, fd);
		ASSERT_EQ(0, pipe(sync));
		*self->stop = 0;
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			close(sync[0]);
			toucher(fd, &self->cg, 0, self->stop, sync[1]);
		}
		close(sync[1]);
		m = dev_map(fd, page);
		ASSERT_NE(NULL, m);
		ASSERT_EQ(0, kfault(fd, m, page));
		/* Once the child's first event is lost, make ours. */
		ASSERT_EQ(1, read(sync[0], &c, 1));
		for (unsigned int i = 0; i < mine; i++)
			ASSERT_EQ(SIGSEGV, try_read(m + i, NULL));
		*self->stop = 1;
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("child status %#x", status);
		close(sync[0]);

		ASSERT_EQ(0, fcntl(fd, F_SETFL, O_NONBLOCK));
		while (read(fd, &ev, sizeof(ev)) == sizeof(ev)) {
			read_all++;
			read_mine += (pid_t)ev.pid == getpid();
		}
		ASSERT_EQ(0, kstats(fd, &st));
		EXPECT_LE(1, st.self.events_dropped);
		/* Every event is read or counted lost, and none of ours is lost. */
		EXPECT_EQ(st.self.faults_caught, read_all + st.self.events_dropped)
			TH_LOG("round %u", r);
		EXPECT_EQ(mine, read_mine) TH_LOG("round %u", r);
		munmap(m, page);
		close(fd);
	}
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
