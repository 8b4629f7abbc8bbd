/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared between the files of the mheap module. Nothing here is
 * ABI; the user-visible interface is <linux/mheap.h>.
 */
#ifndef MHEAP_INTERNAL_H
#define MHEAP_INTERNAL_H

#include <linux/fs.h>
#include <linux/types.h>

/**
 * struct mheap_ctx - state of one open file description of /dev/mheap
 * @id: number of this open since the module was loaded, for debug messages
 *
 * Allocated by open() and freed by the last close() of the file; commands
 * find it in file->private_data. Later commands add their state here (fault
 * ranges, counters, limits) together with the lock that protects it.
 */
struct mheap_ctx {
	u64 id;
};

/* mheap_dev.c: the misc device and its open/release. */
int mheap_dev_register(void);
void mheap_dev_unregister(void);

/* mheap_ioctl.c: command dispatch, for unlocked_ioctl and compat_ioctl. */
long mheap_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

#endif /* MHEAP_INTERNAL_H */
