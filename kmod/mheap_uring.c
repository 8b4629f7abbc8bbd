// SPDX-License-Identifier: GPL-2.0
/*
 * io_uring commands (IORING_OP_URING_CMD) of /dev/mheap: FAULT, RELEASE and
 * STATS, so that a batch of them costs one io_uring_enter().
 *
 * The argument is the command area of the SQE (16 bytes in a 64-byte SQE,
 * 80 in a 128-byte one), which may lie in memory user space shares with
 * the kernel (the SQ ring): the SQE is copied once into a local union
 * (mheap_uring_sqe_copy()) and only that copy is checked and used.
 *
 * What is checked. io_uring itself refuses, for IORING_OP_URING_CMD, a
 * nonzero ioprio, the upper half of off (__pad1), unknown uring_cmd_flags,
 * an unregistered personality and IOSQE_BUFFER_SELECT, and reads fd,
 * flags, user_data and cmd_op; the module refuses IORING_URING_CMD_FIXED
 * (ioucmd->flags) and checks the argument. The fields io_uring passes on
 * unread, addr, len, buf_index (read only with IORING_URING_CMD_FIXED) and
 * the word at byte 44 (splice_fd_in, file_index), are reserved, as are a
 * 128-byte SQE's command area past the argument: each must be zero, else
 * -EINVAL, so that a later ABI can give them a meaning. 6.1 shows the
 * driver only the command area (kmod/mheap_compat.h), so there the four
 * fields are not seen, and ignored.
 *
 * Every command completes inline by returning its result, which io_uring
 * posts as cqe->res; io_uring_cmd_done() is for drivers that complete
 * later, which these commands never do.
 *
 * That result is 0 or a negative errno, never positive, on every kernel. In
 * 6.1, io_uring_cmd() hands a positive value back to its caller as if it
 * were an error: inline, io_uring fails the request with it (so a command
 * linked after it gets -ECANCELED); from an io-wq worker (IOSQE_ASYNC,
 * IOSQE_IO_DRAIN, or a link behind a punted command) only a negative value
 * fails it and a positive one completes nothing, leaking the request and
 * its file reference (the module can never be unloaded, and closing the
 * ring leaves io_ring_exit_work() waiting for it). So STATS reports how
 * much it filled in through the struct's own size field, not through
 * cqe->res.
 *
 * The first attempt runs with IO_URING_F_NONBLOCK in the submitting task.
 * Rather than sleep on a contended mmap_lock or map lock there, the range
 * commands return -EAGAIN, and io_uring retries them from an io-wq worker
 * of the same process, where they may block. Either way current->mm is the
 * submitter's address space, so the commands act on the caller's memory
 * exactly as the ioctl does.
 */
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "mheap_compat.h"
#include "mheap_internal.h"

#define MHEAP_CMD_AREA		16
#define MHEAP_CMD_AREA_128	80
#define MHEAP_SQE_CMD		offsetof(struct io_uring_sqe, cmd)

static_assert(sizeof(struct mheap_range) == MHEAP_CMD_AREA);
static_assert(sizeof(struct mheap_uring_stats) == MHEAP_CMD_AREA);
static_assert(MHEAP_SQE_CMD + MHEAP_CMD_AREA_128 ==
	      sizeof(union mheap_uring_sqe));

/*
 * Whether the copied SQE of a command may be served: no flags, the
 * reserved fields zero, and nothing in a 128-byte SQE's command area past
 * the argument (see the top of this file).
 */
static bool sqe_is_valid(const union mheap_uring_sqe *copy, u32 flags,
			 unsigned int issue_flags)
{
	const struct io_uring_sqe *sqe = &copy->sqe;

	if (flags || sqe->addr || sqe->len || sqe->buf_index ||
	    sqe->file_index)
		return false;
	if (!(issue_flags & IO_URING_F_SQE128))
		return true;
	return !memchr_inv(copy->bytes + MHEAP_SQE_CMD + MHEAP_CMD_AREA, 0,
			   MHEAP_CMD_AREA_128 - MHEAP_CMD_AREA);
}

static int mheap_uring_stats(struct mheap_ctx *ctx,
			     const struct mheap_uring_stats *arg)
{
	struct mheap_stats st;
	u32 n;

	if (arg->flags || arg->size < MHEAP_STATS_SIZE_V1)
		return -EINVAL;
	mheap_stats_fill(ctx, &st);
	n = min_t(u32, arg->size, sizeof(st));
	st.size = n;
	if (copy_to_user(u64_to_user_ptr(arg->stats), &st, n))
		return -EFAULT;
	/* Not n: see the top of this file. */
	return 0;
}

int mheap_uring_cmd(struct io_uring_cmd *ioucmd, unsigned int issue_flags)
{
	struct file *file = ioucmd->file;
	struct mheap_ctx *ctx = file->private_data;
	bool nonblock = issue_flags & IO_URING_F_NONBLOCK;
	union mheap_uring_sqe copy;
	struct mheap_uring_stats sarg;
	struct mheap_range range;
	int ret;

	switch (ioucmd->cmd_op) {
	case MHEAP_URING_CMD_FAULT:
	case MHEAP_URING_CMD_RELEASE:
	case MHEAP_URING_CMD_STATS:
		break;
	default:
		return -ENOTTY;
	}
	mheap_uring_sqe_copy(ioucmd, issue_flags, &copy);
	if (!sqe_is_valid(&copy, ioucmd->flags, issue_flags)) {
		ret = -EINVAL;
		goto out;
	}
	if (ioucmd->cmd_op == MHEAP_URING_CMD_STATS) {
		memcpy(&sarg, copy.bytes + MHEAP_SQE_CMD, sizeof(sarg));
		/* Counted first: the snapshot includes this command. */
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_uring_stats(ctx, &sarg);
	}
	memcpy(&range, copy.bytes + MHEAP_SQE_CMD, sizeof(range));
	ret = mheap_map_range(file, &range,
			      ioucmd->cmd_op == MHEAP_URING_CMD_FAULT, nonblock);
	/* Retried from io-wq, and counted then. */
	if (ret == -EAGAIN && nonblock)
		return ret;
out:
	mheap_count(ctx, MHEAP_C_COMMANDS, 1);
	return ret;
}
