// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl() commands of /dev/mheap.
 *
 * mheap_ioctl() matches the whole command number, so a command with the
 * right number but a different size or direction (an older or newer
 * header's struct) is unknown and fails with -ENOTTY instead of being
 * misread. Each command has one handler that copies its argument in,
 * checks it, acts on the file's context and copies the answer out.
 */
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/mheap.h>

#include "mheap_internal.h"

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

long mheap_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct mheap_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case MHEAP_IOC_VERSION:
		return mheap_ioc_version(ctx, uarg);
	default:
		return -ENOTTY;
	}
}
