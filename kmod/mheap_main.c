// SPDX-License-Identifier: GPL-2.0
/*
 * mheap: kernel side of the mheap allocator.
 *
 * The mheap library (user space) rebuilds Go's runtime allocator in C. Its
 * user arenas must fault on every access once they are freed. This module is
 * the optional kernel helper for that: it exposes /dev/mheap, and the library
 * drives it with the ioctl() commands of <linux/mheap.h>. Without the module
 * the library falls back to mprotect(), so the module must never be needed
 * for correctness, only for speed and precision.
 *
 * Design
 *
 *  - One misc character device, /dev/mheap, mode 0666: any process may use
 *    it, and every command acts only on the calling process's own mappings
 *    of the descriptor it is issued on, so no privilege is needed or granted
 *    (only raising the global limit through the ioctl needs CAP_SYS_ADMIN).
 *  - Every open() creates a context (struct mheap_ctx) that lives exactly as
 *    long as the file description. Contexts share nothing, so two libraries
 *    in one process, or a parent and a child after fork(), never see each
 *    other's state. The file_operations owner pins the module while any
 *    context exists, and every mapping pins its file, so unloading waits
 *    for the last munmap() and close().
 *  - mmap() of a context gives zero-fill memory whose pages the module
 *    allocates on first touch. FAULT puts ranges of it in quarantine (pages
 *    freed, every access faults and is recorded as an event), RELEASE ends
 *    that; neither splits the VMA: quarantine is per-page state of the
 *    mapping, checked by the page-fault handler (mheap_map.c says why the
 *    pages are ordinary reference-counted ones, and how it all is locked).
 *  - Counters per context and global, a quarantine limit per context and a
 *    global one (module parameter), all in mheap_account.c; the global
 *    counters are also in sysfs, /sys/class/misc/mheap/.
 *  - Commands come by ioctl() (one dispatcher; arguments are fixed-layout
 *    structs, identical for 32- and 64-bit callers, so compat_ioctl is just
 *    compat_ptr_ioctl()) or by io_uring (IORING_OP_URING_CMD), which serves
 *    FAULT, RELEASE and STATS so that the library can batch them.
 *  - The ABI is versioned (MHEAP_IOC_VERSION); new commands raise the minor
 *    number and use reserved fields that must be zero.
 *
 * Source map, one concept per file:
 *   mheap_main.c     module load/unload and metadata (this file)
 *   mheap_dev.c      the misc device, open/release, per-open contexts
 *   mheap_map.c      mappings: pages, quarantine, page faults
 *   mheap_range.c    FAULT and RELEASE of a mapping's ranges
 *   mheap_ioctl.c    ioctl command dispatch and the command handlers
 *   mheap_uring.c    the io_uring commands
 *   mheap_event.c    fault events, read() and poll()
 *   mheap_account.c  counters, limits, module parameter, sysfs attributes
 *   mheap_internal.h declarations shared by the files above, lock order
 *   mheap_map.h      struct mheap_map, shared by mheap_map.c and mheap_range.c
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/stringify.h>
#include <linux/mheap.h>

#include "mheap_internal.h"

static int __init mheap_init(void)
{
	int ret;

	ret = mheap_dev_register();
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", MHEAP_DEVICE_NAME, ret);
		return ret;
	}
	pr_info("ABI %u.%u.%u on /dev/%s\n", MHEAP_VERSION_MAJOR,
		MHEAP_VERSION_MINOR, MHEAP_VERSION_PATCH, MHEAP_DEVICE_NAME);
	return 0;
}

static void __exit mheap_exit(void)
{
	mheap_dev_unregister();
	/*
	 * Every mapping pins its file and every file pins the module, so
	 * nothing can be left: anything here is a leak in this module.
	 */
	WARN_ON_ONCE(!mheap_counters_idle());
}

module_init(mheap_init);
module_exit(mheap_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("The mheap authors");
MODULE_DESCRIPTION("mheap: fault-on-free memory for the mheap allocator's arenas");
MODULE_VERSION(__stringify(MHEAP_VERSION_MAJOR) "."
	       __stringify(MHEAP_VERSION_MINOR) "."
	       __stringify(MHEAP_VERSION_PATCH));
