// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap's io_uring commands complete, whichever way io_uring issues
 * them, as a kselftest.
 *
 * io_uring issues a command inline from io_uring_enter(), or punts it to an
 * io-wq worker: always with IOSQE_ASYNC, and for a command linked behind
 * one that was punted; IOSQE_IO_DRAIN defers it until everything before it
 * has completed. Every command must complete on every one of these paths
 * with its own result (0 or -errno), must not cancel the commands linked
 * after it, and must leave no request behind: once the ring and the device
 * are closed, the module's reference count is what it was, so that the
 * module can be unloaded (tools/vm-init.sh checks rmmod after the suite).
 * A STATS that returned its byte count as cqe->res did none of that on 6.1:
 * inline it cancelled the commands linked after it, and from io-wq it never
 * completed at all, leaking the request and its file reference.
 *
 * Fixture "args" has the argument checks only io_uring has: an unknown
 * command, the STATS command area, a registered-buffer flag, the rest of a
 * 128-byte SQE's command area, and the SQE fields io_uring checks itself.
 * Fixture "reserved" has the SQE fields io_uring leaves to the driver,
 * one variant each, on every path io_uring may issue the command by.
 * (The ranges' checks, FAULT, RELEASE and STATS themselves are
 * kmod_fault_test.c's, over both transports.)
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"
#include "kmod_util.h"

#define NPAGES		4

/* Submit what is queued and collect n completions (uring_reap). */
static unsigned int uring_collect(struct io_uring *ring, unsigned int n, int *res)
{
	if (io_uring_submit(ring) < 0)
		return 0;
	return uring_reap(ring, n, res);
}

/* The next SQE: op on fd with arg, numbered data, with SQE flags. */
static struct io_uring_sqe *queue_cmd(struct io_uring *ring, int fd, uint32_t op,
				      const void *arg, size_t len, uint64_t data, uint8_t flags)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	prep_cmd(sqe, fd, op, arg, len, data);
	sqe->flags = flags;
	return sqe;
}

FIXTURE(ring) {
	long refcnt;		/* the module's, before this test opened anything */
	int fd;
	size_t page;
	char *mem;
	struct io_uring ring;
	bool ring_up;
};

FIXTURE_SETUP(ring)
{
	self->fd = -1;
	self->mem = MAP_FAILED;
	self->ring_up = false;
	self->page = page;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	self->refcnt = module_refcnt();
	ASSERT_EQ(0, io_uring_queue_init(16, &self->ring, 0));
	self->ring_up = true;
	probes_install();
	self->fd = dev_open();
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", DEV_PATH, strerror(errno));
	self->mem = mmap(NULL, NPAGES * self->page, PROT_READ | PROT_WRITE,
			 MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, self->mem) TH_LOG("mmap: %s", strerror(errno));
	memset(self->mem, 'P', NPAGES * self->page);
}

FIXTURE_TEARDOWN(ring)
{
	if (self->ring_up)
		io_uring_queue_exit(&self->ring);
	if (self->mem != MAP_FAILED)
		munmap(self->mem, NPAGES * self->page);
	if (self->fd >= 0)
		close(self->fd);
}

/*
 * Three commands, FAULT of page 0, STATS, FAULT of page 1, with these SQE
 * flags each: the ways io_uring may issue them.
 */
FIXTURE_VARIANT(ring) {
	uint8_t flags[3];
};

/* Inline, linked: nothing after STATS may be cancelled. */
FIXTURE_VARIANT_ADD(ring, inline_linked) {
	.flags = { IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

/* Each one punted to io-wq. */
FIXTURE_VARIANT_ADD(ring, async) {
	.flags = { IOSQE_ASYNC, IOSQE_ASYNC, IOSQE_ASYNC },
};

/* Each one deferred until those before it completed. */
FIXTURE_VARIANT_ADD(ring, drain) {
	.flags = { IOSQE_IO_DRAIN, IOSQE_IO_DRAIN, IOSQE_IO_DRAIN },
};

/* Linked behind a punted command: the rest run in the io-wq worker too. */
FIXTURE_VARIANT_ADD(ring, linked_behind_async) {
	.flags = { IOSQE_ASYNC | IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

/* Drained and linked at once. */
FIXTURE_VARIANT_ADD(ring, drain_linked) {
	.flags = { IOSQE_IO_DRAIN | IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

TEST_F(ring, every_command_completes_once_with_its_result)
{
	struct mheap_range r0 = { (uintptr_t)self->mem, self->page };
	struct mheap_range r1 = { (uintptr_t)self->mem + self->page, self->page };
	struct mheap_stats st, after;
	struct mheap_uring_stats sarg = {
		.stats = (uintptr_t)&st, .size = sizeof(st),
	};
	unsigned int got;
	int res[3];

	memset(&st, 0xff, sizeof(st));
	queue_cmd(&self->ring, self->fd, MHEAP_URING_CMD_FAULT,
		 &r0, sizeof(r0), 0, variant->flags[0]);
	queue_cmd(&self->ring, self->fd, MHEAP_URING_CMD_STATS,
		 &sarg, sizeof(sarg), 1, variant->flags[1]);
	queue_cmd(&self->ring, self->fd, MHEAP_URING_CMD_FAULT,
		 &r1, sizeof(r1), 2, variant->flags[2]);
	got = uring_collect(&self->ring, 3, res);
	EXPECT_EQ(3, got) TH_LOG("only %u of 3 commands completed", got);
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(0, res[1]) TH_LOG("STATS completed with %d", res[1]);
	EXPECT_EQ(0, res[2]) TH_LOG("the FAULT after STATS: %d%s", res[2],
				    res[2] == -ECANCELED ? " (cancelled)" : "");
	/* STATS says how much it filled in through the struct itself. */
	EXPECT_EQ(sizeof(st), st.size);
	EXPECT_EQ(0, st.reserved);
	EXPECT_LE(1, st.self.commands);

	/* Both FAULTs took effect. */
	ASSERT_EQ(0, kstats(self->fd, &after));
	EXPECT_EQ(2 * self->page, after.self.quarantined_bytes);
	EXPECT_EQ(1, after.self.quarantined_ranges);
	EXPECT_EQ('P', self->mem[2 * self->page]);

	/* Nothing left behind: every request dropped its file reference. */
	io_uring_queue_exit(&self->ring);
	self->ring_up = false;
	munmap(self->mem, NPAGES * self->page);
	self->mem = MAP_FAILED;
	close(self->fd);
	self->fd = -1;
	if (self->refcnt >= 0)
		EXPECT_EQ(self->refcnt, refcnt_settles_at(self->refcnt))
			TH_LOG("a request still holds /dev/mheap open");
}

/* ------------------------------------------------------------ arguments */

/* The checks only io_uring has: of the command's SQE and its STATS area. */
FIXTURE(args) {
	struct kdev d;
	struct io_uring ring;
	bool ring_up;
};

FIXTURE_SETUP(args)
{
	self->ring_up = false;
	kdev_setup(_metadata, &self->d);
	if (uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	ASSERT_EQ(0, io_uring_queue_init(8, &self->ring, 0));
	self->ring_up = true;
}

FIXTURE_TEARDOWN(args)
{
	if (self->ring_up)
		io_uring_queue_exit(&self->ring);
	kdev_teardown(_metadata, &self->d);
}

/* One command on the fixture's ring; its result. */
static int one_cmd(struct io_uring *ring, int fd, uint32_t op, const void *arg, size_t len)
{
	int res;

	queue_cmd(ring, fd, op, arg, len, 0, 0);
	return uring_collect(ring, 1, &res) == 1 ? res : 1;
}

TEST_F(args, an_unknown_command_is_enotty)
{
	struct mheap_range good = { (uintptr_t)self->d.mem, page };

	EXPECT_EQ(-ENOTTY, one_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT + 0x10000,
				   &good, sizeof(good)));
	EXPECT_EQ(0, try_read(self->d.mem, NULL));
}

TEST_F(args, stats_check_their_pointer_size_and_flags)
{
	struct mheap_stats st;
	struct mheap_uring_stats sarg = { .stats = 0, .size = sizeof(st) };

	EXPECT_EQ(-EFAULT, one_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_STATS, &sarg,
				   sizeof(sarg)));
	sarg.stats = (uintptr_t)&st;
	sarg.size = MHEAP_STATS_SIZE_V1 - 8;
	EXPECT_EQ(-EINVAL, one_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_STATS, &sarg,
				   sizeof(sarg)));
	sarg.size = MHEAP_STATS_SIZE_V1;
	sarg.flags = 1;
	EXPECT_EQ(-EINVAL, one_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_STATS, &sarg,
				   sizeof(sarg)));
}

TEST_F(args, a_registered_buffer_flag_is_refused)
{
	struct mheap_range good = { (uintptr_t)self->d.mem, page };
	struct io_uring_sqe *sqe;
	int res;

	sqe = queue_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0, 0);
	sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
	ASSERT_EQ(1, uring_collect(&self->ring, 1, &res));
	/* io_uring rejects it itself (no buffers registered) or we do. */
	EXPECT_TRUE(res == -EFAULT || res == -EINVAL) TH_LOG("%d", res);
	EXPECT_EQ(0, try_read(self->d.mem, NULL));
}

TEST_F(args, in_a_128_byte_sqe_the_rest_of_the_command_area_must_be_zero)
{
	struct mheap_range good = { (uintptr_t)self->d.mem, page };
	const size_t cmd = offsetof(struct io_uring_sqe, cmd);
	struct io_uring_params p;
	struct io_uring_sqe *sqe;
	struct io_uring big;
	int res[2];

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	if (io_uring_queue_init_params(4, &big, &p))
		SKIP(return, "no IORING_SETUP_SQE128");
	sqe = queue_cmd(&big, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0, 0);
	memset((char *)sqe + cmd + 16, 0, 64);
	sqe = queue_cmd(&big, self->d.fd, MHEAP_URING_CMD_RELEASE, &good, sizeof(good), 1, 0);
	memset((char *)sqe + cmd + 16, 0, 64);
	((char *)sqe)[cmd + 79] = 1;
	ASSERT_EQ(2, uring_collect(&big, 2, res));
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(-EINVAL, res[1]);
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	io_uring_queue_exit(&big);
}

/*
 * The SQE fields io_uring itself checks for a URING_CMD, so the module
 * need not: each set alone is refused before the module sees the SQE, on
 * both kernels. Should a kernel stop checking one, the module must.
 */
TEST_F(args, io_uring_refuses_the_fields_it_checks_itself)
{
	struct mheap_range good = { (uintptr_t)self->d.mem, page };
	struct io_uring_sqe *sqe;
	int res;

	sqe = queue_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0, 0);
	sqe->ioprio = 1;
	ASSERT_EQ(1, uring_collect(&self->ring, 1, &res));
	EXPECT_EQ(-EINVAL, res) TH_LOG("ioprio");
	sqe = queue_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0, 0);
	sqe->personality = 0xfff;	/* none registered */
	ASSERT_EQ(1, uring_collect(&self->ring, 1, &res));
	EXPECT_EQ(-EINVAL, res) TH_LOG("personality");
	sqe = queue_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0,
			IOSQE_BUFFER_SELECT);
	ASSERT_EQ(1, uring_collect(&self->ring, 1, &res));
	EXPECT_EQ(-EOPNOTSUPP, res) TH_LOG("IOSQE_BUFFER_SELECT");
	sqe = queue_cmd(&self->ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), 0, 0);
	sqe->__pad1 = 1;
	ASSERT_EQ(1, uring_collect(&self->ring, 1, &res));
	EXPECT_EQ(-EINVAL, res) TH_LOG("the upper half of off");
	EXPECT_EQ(0, try_read(self->d.mem, NULL));
}

/* ------------------------------------------------------ reserved SQE fields */

/*
 * The SQE fields io_uring hands a URING_CMD's driver without looking at
 * them are reserved: zero, else -EINVAL (uapi/linux/mheap.h, ABI 1.3.2),
 * however io_uring issues the command: inline, from io-wq (IOSQE_ASYNC),
 * linked behind another command, drained, in a 128-byte SQE. 1.3.1 ignored
 * them. Where the kernel shows the driver the command area alone (6.1),
 * the module cannot see them, and they are ignored: the FAULT is done.
 */
FIXTURE(reserved) {
	struct kdev d;
	struct io_uring ring, big;
	bool ring_up, big_up;
};

FIXTURE_VARIANT(reserved) {
	size_t off;		/* in the SQE */
	size_t size;
};

FIXTURE_VARIANT_ADD(reserved, addr) {
	.off = offsetof(struct io_uring_sqe, addr), .size = 8,
};

FIXTURE_VARIANT_ADD(reserved, len) {
	.off = offsetof(struct io_uring_sqe, len), .size = 4,
};

/* Read by io_uring only with IORING_URING_CMD_FIXED, which the module refuses. */
FIXTURE_VARIANT_ADD(reserved, buf_index) {
	.off = offsetof(struct io_uring_sqe, buf_index), .size = 2,
};

/* splice_fd_in, file_index, addr_len: one 32-bit word. */
FIXTURE_VARIANT_ADD(reserved, file_index) {
	.off = offsetof(struct io_uring_sqe, file_index), .size = 4,
};

FIXTURE_SETUP(reserved)
{
	struct io_uring_params p;

	self->ring_up = self->big_up = false;
	kdev_setup(_metadata, &self->d);
	if (uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	ASSERT_EQ(0, io_uring_queue_init(8, &self->ring, 0));
	self->ring_up = true;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	self->big_up = io_uring_queue_init_params(4, &self->big, &p) == 0;
}

FIXTURE_TEARDOWN(reserved)
{
	if (self->ring_up)
		io_uring_queue_exit(&self->ring);
	if (self->big_up)
		io_uring_queue_exit(&self->big);
	kdev_teardown(_metadata, &self->d);
}

/* The ways io_uring may issue a command: SQE flags; -1: a 128-byte SQE. */
static const struct {
	const char *name;
	int flags;
	bool behind;		/* linked behind a STATS */
} issue_ways[] = {
	{ "inline", 0, false },
	{ "IOSQE_ASYNC", IOSQE_ASYNC, false },
	{ "linked", 0, true },
	{ "linked behind a punted command", IOSQE_ASYNC, true },
	{ "IOSQE_IO_DRAIN", IOSQE_IO_DRAIN, false },
	{ "128-byte SQE", -1, false },
};

/*
 * Send a FAULT of the first page the way issue_ways[w] says, with one byte
 * of the variant's field set (each way another byte of it: every byte must
 * count); the FAULT's result. -2 for a way this machine lacks.
 */
static int fault_with_field(struct __test_metadata *_metadata, FIXTURE_DATA(reserved) *self,
			    const FIXTURE_VARIANT(reserved) *variant, size_t w)
{
	const size_t cmd = offsetof(struct io_uring_sqe, cmd);
	const bool big = issue_ways[w].flags < 0;
	struct io_uring *ring = big ? &self->big : &self->ring;
	uint8_t flags = big ? 0 : (uint8_t)issue_ways[w].flags;
	struct mheap_range good = { (uintptr_t)self->d.mem, page };
	struct mheap_stats st;
	struct mheap_uring_stats sarg = { .stats = (uintptr_t)&st, .size = sizeof(st) };
	struct io_uring_sqe *sqe;
	unsigned int n = 0;
	int res[2] = { 1, 1 };

	if (big && !self->big_up)
		return -2;
	if (issue_ways[w].behind)
		queue_cmd(ring, self->d.fd, MHEAP_URING_CMD_STATS, &sarg, sizeof(sarg), n++,
			  flags | IOSQE_IO_LINK);
	sqe = queue_cmd(ring, self->d.fd, MHEAP_URING_CMD_FAULT, &good, sizeof(good), n++,
			issue_ways[w].behind ? 0 : flags);
	if (big)
		memset((char *)sqe + cmd + sizeof(good), 0, 64);
	((unsigned char *)sqe)[variant->off + w % variant->size] = 0x80;
	EXPECT_EQ(n, uring_collect(ring, n, res)) TH_LOG("%s", issue_ways[w].name);
	if (issue_ways[w].behind)
		EXPECT_EQ(0, res[0]) TH_LOG("%s: the STATS before", issue_ways[w].name);
	return res[n - 1];
}

TEST_F(reserved, a_nonzero_field_fails_the_command)
{
	if (!uring_cmd_sees_whole_sqe())
		SKIP(return, "before 6.5 the module sees the command area only");
	for (size_t w = 0; w < sizeof(issue_ways) / sizeof(issue_ways[0]); w++) {
		int res = fault_with_field(_metadata, self, variant, w);

		if (res == -2)
			continue;
		EXPECT_EQ(-EINVAL, res) TH_LOG("%s", issue_ways[w].name);
		EXPECT_EQ(0, try_read(self->d.mem, NULL)) TH_LOG("%s", issue_ways[w].name);
	}
}

/*
 * 6.1: the module cannot see the field, on any path (kmod/mheap_compat.h),
 * so it is ignored on every one alike.
 */
TEST_F(reserved, before_6_5_the_field_is_ignored)
{
	if (uring_cmd_sees_whole_sqe())
		SKIP(return, "from 6.5 the module sees the whole SQE");
	for (size_t w = 0; w < sizeof(issue_ways) / sizeof(issue_ways[0]); w++) {
		int res = fault_with_field(_metadata, self, variant, w);

		if (res == -2)
			continue;
		EXPECT_EQ(0, res) TH_LOG("%s", issue_ways[w].name);
		EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL)) TH_LOG("%s", issue_ways[w].name);
		ASSERT_EQ(0, krelease(self->d.fd, self->d.mem, page));
	}
}

TEST_HARNESS_MAIN
