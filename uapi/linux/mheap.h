/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * mheap: user-space ABI of the /dev/mheap character device.
 *
 * mheap is Go's runtime allocator rebuilt as a C library. Its user arenas are
 * meant to fault on any access after they are freed. The library can do that
 * on its own with mprotect() and guard mappings; the optional mheap kernel
 * module offers a cheaper and more precise way, reached through the commands
 * of /dev/mheap defined here. The library works with or without the module;
 * it asks MHEAP_IOC_VERSION first and only uses a module whose major version
 * it knows.
 *
 * Contexts. Each open() of /dev/mheap is an independent context: mappings
 * made from it, its counters, its limit and its fault events belong to that
 * file description alone. A command acts only on the calling process's own
 * mappings of the very file description it was issued on, so the device can
 * be world-usable (mode 0666).
 *
 * Memory. mmap() of the descriptor (MAP_SHARED, offset 0, no PROT_EXEC) gives
 * zero-fill memory: the module allocates a page, charged to the memory cgroup
 * of the task that touches it, on first access. The mapping is one VMA for
 * its whole life, however many ranges are faulted and released in it:
 *  - MHEAP_IOC_FAULT puts page-aligned ranges of it in quarantine: the pages
 *    are unmapped and freed, and any later access faults. Access from user
 *    space raises SIGSEGV (SEGV_MAPERR, si_addr the address); access by the
 *    kernel on the process's behalf (read(), write(), recv() and the like)
 *    fails with EFAULT. Either way the module records a fault event.
 *  - MHEAP_IOC_RELEASE ends the quarantine: the range is zero-fill again.
 * Quarantined memory costs no memory, only address space. A context may cap
 * how much it holds (MHEAP_IOC_SET_LIMIT); the module caps what the contexts
 * of one user hold together (module parameter quarantine_limit_per_user),
 * so that one user cannot use up another's, and may cap the total of all
 * contexts (module parameter quarantine_limit, no cap by default). A FAULT
 * that would pass any of these limits fails with EDQUOT, and the caller is
 * expected to release some old quarantine and try again. A context belongs
 * to the user that opened it: the real uid of the opener, as the initial
 * user namespace sees it.
 *
 * What else happens to such a mapping:
 *  - fork(): the child does not inherit it (as MADV_DONTFORK); the address
 *    range is unmapped in the child. A mapping that MADV_DOFORK made
 *    inheritable is dead in the child: every access there raises SIGBUS and
 *    commands on it fail with EINVAL. Pages are never shared between
 *    processes.
 *  - mremap() fails (no growing, shrinking or moving), and so does munmap(),
 *    mprotect() or anything else that would split it (EINVAL). munmap() of
 *    the whole mapping, close() and exit are always fine.
 *  - Core dumps leave it out (VM_DONTDUMP).
 *  - The pages are ordinary, reference-counted pages, so get_user_pages()
 *    works on resident and zero-fill pages as on any shared memory: O_DIRECT,
 *    vmsplice(), process_vm_readv() and ptrace see the data. A page pinned
 *    that way stays allocated until the pin is dropped even if the range is
 *    faulted meanwhile: the holder keeps the old contents and the mapping no
 *    longer shows them. get_user_pages() on a quarantined page fails (EFAULT;
 *    EIO for /proc/PID/mem) and records an event. io_uring in 6.1 refuses
 *    to register the memory as fixed buffers (EOPNOTSUPP), as it does for
 *    all file-backed memory other than shmem and hugetlbfs; from 6.5 it
 *    pins it as any other get_user_pages() user does.
 *  - MADV_DONTNEED unmaps pages but keeps their contents, as for any shared
 *    mapping; only RELEASE or FAULT drop contents. MADV_POPULATE_* and
 *    mlock() populate the range and so fail on quarantine (EFAULT, ENOMEM);
 *    mlock() locks nothing, as for any VM_MIXEDMAP mapping. msync() has
 *    nothing to write back and succeeds.
 *  - userfaultfd takes it only for asynchronous write protection (6.7 and
 *    later): every page reads and takes writes as before; a page
 *    protected while it had no page-table entry (a block mapped with a
 *    PMD loses it to the protection) counts as written once accessed.
 *    While registered the mapping gets no huge pages mapped with PMDs.
 *  - mmap() places a mapping of 2 MiB or more at a 2 MiB-aligned address.
 *    Advised MADV_HUGEPAGE (the whole mapping), it gets huge pages: a
 *    2 MiB-aligned block touched while it holds no page and no quarantine
 *    is one 2 MiB page, which a FAULT or RELEASE of the whole block frees
 *    at once. Ranges keep their page granularity either way. Without the
 *    advice, or after MADV_NOHUGEPAGE, pages are the kernel's page size.
 *
 * Rules that every command follows, so the ABI can grow without breaking:
 *  - arguments are fixed-size structs of __u32/__u64 fields, laid out so that
 *    32- and 64-bit processes see the same bytes (user pointers travel as
 *    __u64, no longs, no implicit padding); the struct size is part of the
 *    ioctl command number;
 *  - structs carry reserved and flags fields; callers must zero them, and the
 *    module rejects a command whose input has a non-zero reserved field or an
 *    unknown flag with EINVAL, so a later minor version can give them a
 *    meaning safely;
 *  - a command the module does not know fails with ENOTTY, a bad argument
 *    pointer with EFAULT;
 *  - addresses and lengths must be multiples of the kernel's page size
 *    (sysconf(_SC_PAGESIZE)), non-zero, must not wrap around, and must lie
 *    within one mapping of this descriptor in the calling process (EINVAL).
 *
 * Versioning: the major number changes only when an existing command changes
 * incompatibly; the minor number grows when commands or fields are added;
 * the patch number counts fixes that do not touch the ABI.
 *
 * Version 1.0 had MHEAP_IOC_VERSION only. Version 1.1 adds mmap(), FAULT,
 * RELEASE, STATS, SET_LIMIT, fault events read with read(), and the io_uring
 * commands (IORING_OP_URING_CMD) at the end of this file. Version 1.1.1
 * completes the io_uring STATS with 0 instead of its byte count (see there).
 * Version 1.2 adds the per-user quarantine share: struct mheap_stats grows
 * by the counters of the caller's user (so MHEAP_IOC_STATS has a new number
 * and the 1.1 one, MHEAP_IOC_STATS_V1, is still served), struct
 * mheap_counters gets @users, and FAULT and RELEASE fail with EFAULT
 * before doing anything when @done cannot be written. Version 1.3 maps
 * 2 MiB blocks of mappings advised MADV_HUGEPAGE with 2 MiB pages (see
 * mmap() above; a 1.2 module takes the advice and keeps small pages).
 * Version 1.3.1 sends SIGBUS to an access through a userfaultfd
 * write-protect marker instead of faulting for ever, and maps a mapping
 * registered for userfaultfd write protection with small pages only.
 * Version 1.3.2 refuses an io_uring command whose reserved SQE fields are
 * not zero (see the io_uring section at the end), which 1.3.1 ignored.
 */
#ifndef _UAPI_LINUX_MHEAP_H
#define _UAPI_LINUX_MHEAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The device node's name under /dev. */
#define MHEAP_DEVICE_NAME	"mheap"

/* ABI version this header describes; see "Versioning" above. */
#define MHEAP_VERSION_MAJOR	1
#define MHEAP_VERSION_MINOR	3
#define MHEAP_VERSION_PATCH	2

/*
 * ioctl type byte of every mheap command; not claimed in the kernel's
 * Documentation/userspace-api/ioctl/ioctl-number.rst as of 6.1.
 */
#define MHEAP_IOC_MAGIC		0xE7

/* The largest mapping one mmap() of the device may make (64 GiB). */
#define MHEAP_MAP_MAX		0x1000000000ULL

/* A quarantine limit that does not limit. */
#define MHEAP_LIMIT_NONE	(~0ULL)

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

/**
 * struct mheap_range - one range of a mapping of the device
 * @addr: start, page-aligned
 * @len:  length in bytes, page-aligned and non-zero
 *
 * The range must lie inside one mapping that the calling process made from
 * the descriptor the command is issued on.
 */
struct mheap_range {
	__u64 addr;
	__u64 len;
};

/**
 * struct mheap_ranges - argument of MHEAP_IOC_FAULT and MHEAP_IOC_RELEASE
 * @ranges:   user pointer to an array of @nr struct mheap_range
 * @nr:       number of ranges; 0 does nothing and succeeds
 * @flags:    must be 0
 * @done:     out: how many of the leading ranges took effect
 * @reserved: must be 0
 *
 * The ranges are handled in order, each one completely or not at all. The
 * command succeeds when all of them took effect; otherwise it fails with
 * the error of the first range that did not (EINVAL, EDQUOT, EINTR, ...)
 * and @done tells how many came before it. Faulting a range that is already
 * quarantined, or releasing one that is not, is not an error.
 *
 * @done is written (as 0) before any range is handled, so a command whose
 * @done cannot be written fails with EFAULT having done nothing. Should it
 * become unwritable meanwhile (another thread unmaps it, or this very FAULT
 * quarantines it) the command fails with EFAULT after some ranges took
 * effect; as repeating a range is harmless, sending the same vector again
 * (from writable memory) is safe and reports the outcome.
 */
struct mheap_ranges {
	__u64 ranges;
	__u32 nr;
	__u32 flags;
	__u32 done;
	__u32 reserved;
};

/**
 * struct mheap_counters - counters of one context, or of all of them
 * @mapped_bytes:       size of the live mappings
 * @resident_bytes:     memory the module holds for them (allocated pages)
 * @quarantined_bytes:  address space in quarantine
 * @quarantined_ranges: quarantined extents: maximal runs of adjacent
 *                      quarantined pages within a mapping
 * @quarantine_limit:   the limit FAULT checks against; MHEAP_LIMIT_NONE when
 *                      there is none
 * @faults_caught:      accesses to quarantined pages so far (each one also
 *                      makes a fault event)
 * @commands:           commands served so far (ioctl and io_uring), whatever
 *                      their outcome
 * @events_dropped:     fault events lost because nobody read them in time
 * @mappings:           live mappings
 * @contexts:           open descriptors (1 in a context's own counters)
 * @users:              users with an open descriptor (1 in a context's and
 *                      a user's counters); 0 from a 1.1 module
 * @reserved:           zero
 *
 * The values are read one by one without stopping other users, so counters
 * of a busy context may be a moment apart from each other.
 */
struct mheap_counters {
	__u64 mapped_bytes;
	__u64 resident_bytes;
	__u64 quarantined_bytes;
	__u64 quarantined_ranges;
	__u64 quarantine_limit;
	__u64 faults_caught;
	__u64 commands;
	__u64 events_dropped;
	__u64 mappings;
	__u64 contexts;
	__u64 users;
	__u64 reserved[5];
};

/**
 * struct mheap_stats - argument of MHEAP_IOC_STATS
 * @size:     in: the size of this struct as the caller knows it, which for
 *            the ioctl is the size its command number carries; out: how
 *            many bytes the module filled in
 * @flags:    must be 0
 * @reserved: must be 0
 * @self:     out: this context's counters
 * @global:   out: the counters of all contexts together
 * @user:     out: the counters of all contexts of this context's user (the
 *            one that opened it); @user.quarantine_limit is the per-user
 *            limit (1.2)
 *
 * Later versions may append fields (and, for the ioctl, get a new command
 * number by the size; the old one keeps working). Through io_uring, where no
 * command number carries a size, a caller that knows more than the module
 * sees the extra bytes untouched and @size smaller than it asked for.
 */
struct mheap_stats {
	__u32 size;
	__u32 flags;
	__u64 reserved;
	struct mheap_counters self;
	struct mheap_counters global;
	struct mheap_counters user;
};

#define MHEAP_STATS_SIZE_V1	272	/* sizeof(struct mheap_stats) in 1.1 */
#define MHEAP_STATS_SIZE_V2	400	/* since 1.2: @user appended */

/**
 * struct mheap_limit - argument of MHEAP_IOC_SET_LIMIT
 * @bytes:    the most address space the context, or with MHEAP_LIMIT_GLOBAL
 *            all contexts, may hold in quarantine; MHEAP_LIMIT_NONE for none
 * @flags:    0 or MHEAP_LIMIT_GLOBAL
 * @reserved: must be 0
 *
 * A context starts without a limit of its own. The global limit is the
 * module parameter quarantine_limit; setting it here needs CAP_SYS_ADMIN
 * (EPERM otherwise). A limit below what is already held only makes later
 * FAULTs fail; nothing is released.
 */
struct mheap_limit {
	__u64 bytes;
	__u32 flags;
	__u32 reserved;
};

#define MHEAP_LIMIT_GLOBAL	0x1

/**
 * struct mheap_event - one access to quarantined memory, read with read()
 * @seq:      number of the event in its context, from 0; a gap means that
 *            events were dropped (the buffer holds the newest ones)
 * @time_ns:  when, CLOCK_MONOTONIC
 * @addr:     the address accessed (the start of its page when the access
 *            came through get_user_pages())
 * @pid:      process (thread group) id of the accessing task
 * @tid:      thread id of the accessing task
 * @flags:    MHEAP_EVENT_*
 * @reserved: zero
 * @comm:     the accessing task's name, NUL-terminated
 * @reserved2: zero
 *
 * read() returns as many whole events as fit in the buffer (EINVAL if not
 * even one does), blocks while there are none unless the descriptor is
 * O_NONBLOCK (EAGAIN), and poll() reports POLLIN when events are waiting.
 */
struct mheap_event {
	__u64 seq;
	__u64 time_ns;
	__u64 addr;
	__u32 pid;
	__u32 tid;
	__u32 flags;
	__u32 reserved;
	char comm[16];
	__u64 reserved2;
};

/* The access was a write. */
#define MHEAP_EVENT_WRITE	0x1
/* Made by the kernel on the process's behalf (a system call's copy, GUP). */
#define MHEAP_EVENT_KERNEL	0x2
/* Made from another process (ptrace, /proc/PID/mem, process_vm_*). */
#define MHEAP_EVENT_REMOTE	0x4

/* Read the module's ABI version. Never fails except with EFAULT. */
#define MHEAP_IOC_VERSION	_IOR(MHEAP_IOC_MAGIC, 0x00, struct mheap_version)
/* Quarantine ranges; see struct mheap_ranges. */
#define MHEAP_IOC_FAULT		_IOWR(MHEAP_IOC_MAGIC, 0x01, struct mheap_ranges)
/*
 * End the quarantine of ranges: they are zero-fill again, which also drops
 * the contents of pages in them that were not quarantined.
 */
#define MHEAP_IOC_RELEASE	_IOWR(MHEAP_IOC_MAGIC, 0x02, struct mheap_ranges)
/* Read the counters; see struct mheap_stats. */
#define MHEAP_IOC_STATS		_IOWR(MHEAP_IOC_MAGIC, 0x03, struct mheap_stats)
/* The same with the 1.1 struct, without @user (its first 272 bytes). */
#define MHEAP_IOC_STATS_V1	\
	_IOC(_IOC_READ | _IOC_WRITE, MHEAP_IOC_MAGIC, 0x03, MHEAP_STATS_SIZE_V1)
/* Set the context's (or the global) quarantine limit. */
#define MHEAP_IOC_SET_LIMIT	_IOW(MHEAP_IOC_MAGIC, 0x04, struct mheap_limit)

/*
 * io_uring. IORING_OP_URING_CMD on the descriptor serves FAULT, RELEASE and
 * STATS, so that many of them go in one io_uring_enter(). The command is
 * sqe->cmd_op; its argument fills the 16-byte command area of a 64-byte SQE
 * (sqe->cmd, where addr3 lies otherwise), as the structs below. With
 * 128-byte SQEs (IORING_SETUP_SQE128) the command area is 80 bytes, of which
 * the 64 after the argument must be zero. Every other SQE field that is not
 * io_uring's own (opcode, flags, fd, user_data, personality) must be zero:
 * off's upper half and ioprio, which io_uring itself checks, uring_cmd_flags
 * (IORING_URING_CMD_FIXED is refused), and addr, len, buf_index and the
 * 32-bit word after personality (splice_fd_in, file_index), which io_uring
 * passes on unread and which are reserved for later versions of this ABI.
 * Since 1.3.2 the module fails a command with a reserved field set with
 * -EINVAL, on kernels from 6.5, which show it the whole SQE; 6.1 shows a
 * driver the command area alone, so there the fields cannot be checked (nor
 * ever be given a meaning) and are ignored. The result is cqe->res: 0 or a
 * negative errno; STATS says how many bytes it wrote in the size field of
 * the struct mheap_stats it fills in. (Version 1.1.0 gave that count as
 * cqe->res, which 6.1's io_uring takes for a failure: a command linked after
 * such a STATS was cancelled, and a STATS issued from io-wq, as with
 * IOSQE_ASYNC, never completed. Callers that accept both 0 and the count
 * there and read the size field work with either version.) Unknown commands
 * complete with -ENOTTY. A FAULT or RELEASE takes one range; a batch is one
 * SQE per range, best linked (IOSQE_IO_LINK) so that after the first failure
 * the rest are cancelled (-ECANCELED) and the leading ranges done are
 * exactly those with cqe->res == 0. Polled rings (IORING_SETUP_IOPOLL) are
 * not supported.
 */

/**
 * struct mheap_uring_stats - command area of MHEAP_URING_CMD_STATS
 * @stats: user pointer to a struct mheap_stats to fill in
 * @size:  its size, at least MHEAP_STATS_SIZE_V1
 * @flags: must be 0
 *
 * Fills in the struct as MHEAP_IOC_STATS would (its own size, flags and
 * reserved fields are not read), setting its @size to the number of bytes
 * written, and completes with 0.
 */
struct mheap_uring_stats {
	__u64 stats;
	__u32 size;
	__u32 flags;
};

/* Command area: struct mheap_range. */
#define MHEAP_URING_CMD_FAULT	_IOW(MHEAP_IOC_MAGIC, 0x81, struct mheap_range)
/* Command area: struct mheap_range. */
#define MHEAP_URING_CMD_RELEASE	_IOW(MHEAP_IOC_MAGIC, 0x82, struct mheap_range)
/* Command area: struct mheap_uring_stats. */
#define MHEAP_URING_CMD_STATS	\
	_IOW(MHEAP_IOC_MAGIC, 0x83, struct mheap_uring_stats)

#endif /* _UAPI_LINUX_MHEAP_H */
