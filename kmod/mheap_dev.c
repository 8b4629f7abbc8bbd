// SPDX-License-Identifier: GPL-2.0
/*
 * The /dev/mheap misc device and its per-open contexts.
 *
 * open() allocates a struct mheap_ctx, makes it one of the contexts of its
 * user (whose quarantine share it counts in) and hangs it on
 * file->private_data; release(), called once the last reference to the file
 * description is dropped, frees it. Nothing else ever frees a context, so a
 * command running on a file (which holds a reference) can always use its
 * context, and so can a mapping of the file (vma->vm_file is such a
 * reference): release() comes only after the last munmap(), so by then the
 * context holds no mapping, page or quarantine any more.
 *
 * The file operations route to the concept that implements them: mmap() to
 * mheap_map.c, read() and poll() to the fault events of mheap_event.c,
 * ioctl() to mheap_ioctl.c and IORING_OP_URING_CMD to mheap_uring.c. The
 * device's sysfs attributes are the global counters of mheap_account.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/mheap.h>

#include "mheap_internal.h"

/* Source of mheap_ctx::id; only used to tell contexts apart in messages. */
static atomic64_t mheap_ctx_ids = ATOMIC64_INIT(0);

static int mheap_open(struct inode *inode, struct file *file)
{
	struct mheap_ctx *ctx;
	int ret;

	/* Positions mean nothing here: lseek(), pread() and pwrite() fail. */
	nonseekable_open(inode, file);

	/* Charged to the opener's memory cgroup: user space controls how many. */
	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	ctx->id = atomic64_inc_return(&mheap_ctx_ids);
	ctx->limit = MHEAP_LIMIT_NONE;
	ret = mheap_user_attach(ctx);
	if (ret) {
		kfree(ctx);
		return ret;
	}
	mheap_events_init(ctx);
	file->private_data = ctx;

	pr_debug("context %llu opened by pid %d\n", ctx->id,
		 task_tgid_nr(current));
	return 0;
}

static int mheap_release(struct inode *inode, struct file *file)
{
	struct mheap_ctx *ctx = file->private_data;

	pr_debug("context %llu closed\n", ctx->id);
	mheap_events_free(ctx);
	mheap_user_detach(ctx);
	kfree(ctx);
	return 0;
}

static const struct file_operations mheap_fops = {
	.owner		= THIS_MODULE,
	.open		= mheap_open,
	.release	= mheap_release,
	.mmap		= mheap_mmap,
	/* 2 MiB-aligned where 2 MiB or more: blocks map with PMDs. */
	.get_unmapped_area = thp_get_unmapped_area,
	/* msync(MS_SYNC) of a mapping: there is nothing to write back. */
	.fsync		= noop_fsync,
	.read		= mheap_event_read,
	.poll		= mheap_event_poll,
	.unlocked_ioctl	= mheap_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.uring_cmd	= mheap_uring_cmd,
};

static struct miscdevice mheap_miscdev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= MHEAP_DEVICE_NAME,
	.fops	= &mheap_fops,
	/* Unprivileged by design: commands only touch the caller's memory. */
	.mode	= 0666,
	.groups	= mheap_attr_groups,
};

int mheap_dev_register(void)
{
	return misc_register(&mheap_miscdev);
}

void mheap_dev_unregister(void)
{
	misc_deregister(&mheap_miscdev);
}
