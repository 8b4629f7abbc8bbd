/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared between the files of the mheap module. Nothing here is
 * ABI; the user-visible interface is <linux/mheap.h>.
 *
 * Objects and their lifetimes:
 *
 *   struct mheap_ctx   one per open file description (mheap_dev.c). Freed by
 *                      the file's release(), which runs only once nothing
 *                      refers to the file any more - and every mapping of it
 *                      does, through vma->vm_file. So a context outlives all
 *                      of its mappings.
 *   struct mheap_map   one per mmap() of a context (mheap_map.h), the state
 *                      behind exactly one VMA: its pages and which of them
 *                      are quarantined. Referenced by that VMA (and, for a
 *                      moment, by the copy mremap() makes before it is
 *                      refused); freed by the last vm_ops->close().
 *   struct mheap_user  one per user (kuid) with an open context
 *                      (mheap_account.c): that user's counters, against
 *                      which its quarantine share is checked. Taken by each
 *                      open() of the user, freed with its last context.
 *   struct mheap_count counters (mheap_account.c), one set in each context,
 *                      one in each user and one global set, mheap_global.
 *
 * Lock order, outermost first:
 *   mm->mmap_lock > mheap_map::lock > mheap_ctx::event_lock, xarray lock
 *   mheap_ctx::read_lock > mheap_ctx::event_lock
 *   mheap_users_lock (mheap_account.c) is taken alone, by open and release.
 * No user memory is touched with mmap_lock or a map lock held: copying
 * to or from user space can fault on a mapping of this module.
 */
#ifndef MHEAP_INTERNAL_H
#define MHEAP_INTERNAL_H

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/wait.h>
#include <linux/mheap.h>

struct io_uring_cmd;

/*
 * Counters kept for each context, for each user and once more for all of
 * them; struct mheap_counters in the UAPI header is their snapshot. Each one
 * is updated atomically on its own.
 */
enum mheap_counter {
	MHEAP_C_MAPPED,		/* bytes of live mappings */
	MHEAP_C_RESIDENT,	/* bytes of pages the module holds */
	MHEAP_C_QUARANTINED,	/* bytes in quarantine; the limits' totals */
	MHEAP_C_RANGES,		/* quarantined extents */
	MHEAP_C_MAPPINGS,	/* live mappings */
	MHEAP_C_CONTEXTS,	/* open contexts */
	MHEAP_C_FAULTS,		/* accesses to quarantined pages */
	MHEAP_C_COMMANDS,	/* commands served */
	MHEAP_C_DROPPED,	/* fault events lost */
	MHEAP_C_USERS,		/* users with an open context */
	MHEAP_NR_COUNTERS
};

struct mheap_count {
	atomic64_t c[MHEAP_NR_COUNTERS];
};

/**
 * struct mheap_user - the contexts of one user, for the per-user share
 * @node:     in the table of users, mheap_users (mheap_account.c)
 * @uid:      the user: real uid of the openers, in the initial namespace
 * @count:    the sum of their counters
 *
 * Found, and freed with its last context, under mheap_users_lock, which
 * also covers every change of its MHEAP_C_CONTEXTS counter; a context's
 * @user stays valid for as long as the context lives.
 */
struct mheap_user {
	struct hlist_node node;
	kuid_t uid;
	struct mheap_count count;
};

/**
 * struct mheap_ctx - state of one open file description of /dev/mheap
 * @id:          number of this open since the module was loaded, for messages
 * @user:        the user who opened it, whose share its quarantine counts in
 * @count:       this context's counters
 * @limit:       its own quarantine limit in bytes, MHEAP_LIMIT_NONE if none
 * @pid_ns:      pid namespace of the opener: event pids are given in it
 * @event_lock:  protects @events, @event_cap, @event_head and @event_tail
 * @events:      ring of @event_cap fault events, allocated at the first one
 * @event_cap:   its capacity
 * @event_head:  sequence number of the next event to record
 * @event_tail:  sequence number of the oldest event not read yet
 * @event_wait:  readers waiting for an event
 * @read_lock:   serialises read()
 *
 * Allocated by open() and freed by the last close() of the file; commands
 * find it in file->private_data.
 */
struct mheap_ctx {
	u64 id;
	struct mheap_user *user;
	struct mheap_count count;
	u64 limit;
	struct pid_namespace *pid_ns;
	spinlock_t event_lock;		/* the ring and its indices */
	struct mheap_event *events;
	u32 event_cap;
	u64 event_head;
	u64 event_tail;
	wait_queue_head_t event_wait;
	struct mutex read_lock;		/* one read() at a time */
};

/* mheap_account.c: counters, limits, and their sysfs view. */
extern struct mheap_count mheap_global;
extern const struct attribute_group *mheap_attr_groups[];

/* Add delta to one counter of a context, of its user, and of all. */
static inline void mheap_count(struct mheap_ctx *ctx, enum mheap_counter which,
			       s64 delta)
{
	atomic64_add(delta, &ctx->count.c[which]);
	atomic64_add(delta, &ctx->user->count.c[which]);
	atomic64_add(delta, &mheap_global.c[which]);
}

int mheap_user_attach(struct mheap_ctx *ctx);
void mheap_user_detach(struct mheap_ctx *ctx);
int mheap_quarantine_reserve(struct mheap_ctx *ctx, u64 bytes);
void mheap_quarantine_unreserve(struct mheap_ctx *ctx, u64 bytes);
void mheap_stats_fill(struct mheap_ctx *ctx, struct mheap_stats *st);
int mheap_set_limit(struct mheap_ctx *ctx, const struct mheap_limit *lim);
bool mheap_counters_idle(void);

/* mheap_dev.c: the misc device and its open/release. */
int mheap_dev_register(void);
void mheap_dev_unregister(void);

/* mheap_ioctl.c: command dispatch, for unlocked_ioctl and compat_ioctl. */
long mheap_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

/* mheap_uring.c: IORING_OP_URING_CMD. */
int mheap_uring_cmd(struct io_uring_cmd *ioucmd, unsigned int issue_flags);

/* mheap_map.c: mappings and their page faults. */
int mheap_mmap(struct file *file, struct vm_area_struct *vma);

/* mheap_range.c: FAULT and RELEASE. */
int mheap_map_range(struct file *file, const struct mheap_range *r,
		    bool quarantine, bool nonblock);

/* mheap_event.c: fault events. */
void mheap_events_init(struct mheap_ctx *ctx);
void mheap_events_free(struct mheap_ctx *ctx);
void mheap_event_record(struct mheap_ctx *ctx, unsigned long addr, u32 flags);
ssize_t mheap_event_read(struct file *file, char __user *buf, size_t count,
			 loff_t *ppos);
__poll_t mheap_event_poll(struct file *file, struct poll_table_struct *wait);

#endif /* MHEAP_INTERNAL_H */
