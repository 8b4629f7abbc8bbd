// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl() commands of /dev/mheap.
 *
 * mheap_ioctl() matches the whole command number, so a command with the
 * right number but a different size or direction (an older or newer
 * header's struct) is unknown and fails with -ENOTTY instead of being
 * misread. Each command has one handler that copies its argument in,
 * checks it, acts on the file's context and copies the answer out. User
 * memory is only touched here, never with a lock held: an argument may lie
 * in a mapping of this very module.
 *
 * FAULT and RELEASE take a vector of ranges and handle them one at a time,
 * each under the locks for that range alone, so a long vector neither holds
 * mmap_lock for long nor keeps a fatal signal waiting (the next range then
 * fails with -EINTR, and @done says how far it got). @done is written
 * before the first range too: a caller whose @done cannot be written gets
 * -EFAULT with nothing done, rather than -EFAULT after an unknown number
 * of ranges took effect. Should the final write fail all the same (the
 * argument lay in memory this FAULT quarantined, or another thread unmapped
 * it), the ranges are idempotent, so the caller may send the vector again.
 */
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>
#include <linux/mheap.h>

#include "mheap_internal.h"

static_assert(sizeof(struct mheap_stats) == MHEAP_STATS_SIZE_V2);
static_assert(offsetof(struct mheap_stats, user) == MHEAP_STATS_SIZE_V1);
static_assert(_IOC_SIZE(MHEAP_IOC_STATS) == MHEAP_STATS_SIZE_V2);

static long mheap_ioc_version(struct mheap_ctx *ctx,
			      struct mheap_version __user *uarg)
{
	/* Every field is set, so no uninitialised kernel bytes reach user space. */
	const struct mheap_version ver = {
		.major		= MHEAP_VERSION_MAJOR,
		.minor		= MHEAP_VERSION_MINOR,
		.patch		= MHEAP_VERSION_PATCH,
		.reserved	= 0,
	};

	if (copy_to_user(uarg, &ver, sizeof(ver)))
		return -EFAULT;
	return 0;
}

static long mheap_ioc_ranges(struct file *file,
			     struct mheap_ranges __user *uarg, bool quarantine)
{
	struct mheap_range __user *ur;
	struct mheap_ranges arg;
	struct mheap_range r;
	long ret = 0;
	u32 i;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || arg.reserved)
		return -EINVAL;
	/* Where the outcome goes must be writable before anything happens. */
	if (put_user(0, &uarg->done))
		return -EFAULT;
	ur = u64_to_user_ptr(arg.ranges);
	for (i = 0; i < arg.nr; i++) {
		/* A long vector of good ranges must not outlast SIGKILL. */
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (copy_from_user(&r, &ur[i], sizeof(r))) {
			ret = -EFAULT;
			break;
		}
		ret = mheap_map_range(file, &r, quarantine, false);
		if (ret)
			break;
		cond_resched();
	}
	if (put_user(i, &uarg->done))
		return -EFAULT;
	return ret;
}

/* MHEAP_IOC_STATS or MHEAP_IOC_STATS_V1: size is the one the number says. */
static long mheap_ioc_stats(struct mheap_ctx *ctx,
			    struct mheap_stats __user *uarg, u32 size)
{
	struct mheap_stats st;

	if (copy_from_user(&st, uarg, offsetof(struct mheap_stats, self)))
		return -EFAULT;
	if (st.flags || st.reserved)
		return -EINVAL;
	/* This command's number says how big the caller's struct is. */
	if (st.size != size)
		return -EINVAL;
	mheap_stats_fill(ctx, &st);
	st.size = size;
	if (copy_to_user(uarg, &st, size))
		return -EFAULT;
	return 0;
}

static long mheap_ioc_set_limit(struct mheap_ctx *ctx,
				struct mheap_limit __user *uarg)
{
	struct mheap_limit lim;

	if (copy_from_user(&lim, uarg, sizeof(lim)))
		return -EFAULT;
	return mheap_set_limit(ctx, &lim);
}

long mheap_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct mheap_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case MHEAP_IOC_VERSION:
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_ioc_version(ctx, uarg);
	case MHEAP_IOC_FAULT:
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_ioc_ranges(file, uarg, true);
	case MHEAP_IOC_RELEASE:
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_ioc_ranges(file, uarg, false);
	case MHEAP_IOC_STATS:
	case MHEAP_IOC_STATS_V1:
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_ioc_stats(ctx, uarg, _IOC_SIZE(cmd));
	case MHEAP_IOC_SET_LIMIT:
		mheap_count(ctx, MHEAP_C_COMMANDS, 1);
		return mheap_ioc_set_limit(ctx, uarg);
	default:
		return -ENOTTY;
	}
}
