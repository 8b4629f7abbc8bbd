/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * mheap: user-space ABI of the /dev/mheap character device.
 *
 * mheap is Go's runtime allocator rebuilt as a C library. Its user arenas are
 * meant to fault on any access after they are freed. The library can do that
 * on its own with mprotect() and guard mappings; the optional mheap kernel
 * module offers a cheaper and more precise way, reached through the ioctl()
 * commands of /dev/mheap defined here. The library works with or without the
 * module; it asks MHEAP_IOC_VERSION first and only uses a module whose major
 * version it knows.
 *
 * Each open() of /dev/mheap is an independent context: state that later
 * commands attach to it (fault ranges, statistics, limits) belongs to that
 * file description alone and goes away when it is closed.
 *
 * Rules that every command follows, so the ABI can grow without breaking:
 *  - arguments are fixed-size structs of __u32/__u64 fields, laid out so that
 *    32- and 64-bit processes see the same bytes (no pointers, no longs, no
 *    implicit padding); the struct size is part of the command number;
 *  - structs carry reserved fields; callers must zero them, and the module
 *    rejects a command whose input has a non-zero reserved field with EINVAL,
 *    so a later minor version can give them a meaning safely;
 *  - a command the module does not know fails with ENOTTY, a bad argument
 *    pointer with EFAULT.
 *
 * Versioning: the major number changes only when an existing command changes
 * incompatibly; the minor number grows when commands or fields are added;
 * the patch number counts fixes that do not touch the ABI.
 *
 * Version 1.0 has one command, MHEAP_IOC_VERSION. Planned for later minor
 * versions, in this order of command numbers: FAULT (make a range of the
 * caller's memory fault on access), RELEASE (end that for a range), STATS
 * (per-context counters) and SET_LIMIT (cap the address space a context may
 * hold in quarantine).
 */
#ifndef _UAPI_LINUX_MHEAP_H
#define _UAPI_LINUX_MHEAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The device node's name under /dev. */
#define MHEAP_DEVICE_NAME	"mheap"

/* ABI version this header describes; see "Versioning" above. */
#define MHEAP_VERSION_MAJOR	1
#define MHEAP_VERSION_MINOR	0
#define MHEAP_VERSION_PATCH	0

/*
 * ioctl type byte of every mheap command; not claimed in the kernel's
 * Documentation/userspace-api/ioctl/ioctl-number.rst as of 6.1.
 */
#define MHEAP_IOC_MAGIC		0xE7

/**
 * struct mheap_version - answer of MHEAP_IOC_VERSION
 * @major:    MHEAP_VERSION_MAJOR of the running module
 * @minor:    MHEAP_VERSION_MINOR of the running module
 * @patch:    MHEAP_VERSION_PATCH of the running module
 * @reserved: always zero in version 1.x
 *
 * A caller built against an older or newer header compares @major with its
 * own MHEAP_VERSION_MAJOR and must not use the device when they differ; a
 * higher @minor only means that more commands exist.
 */
struct mheap_version {
	__u32 major;
	__u32 minor;
	__u32 patch;
	__u32 reserved;
};

/* Read the module's ABI version. Never fails except with EFAULT. */
#define MHEAP_IOC_VERSION	_IOR(MHEAP_IOC_MAGIC, 0x00, struct mheap_version)

#endif /* _UAPI_LINUX_MHEAP_H */
