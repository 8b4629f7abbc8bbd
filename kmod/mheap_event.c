// SPDX-License-Identifier: GPL-2.0
/*
 * Fault events: a record of every access to quarantined memory, read by
 * user space with read() on the descriptor whose mapping was touched.
 *
 * Each context keeps the newest events in a ring, allocated when the first
 * event comes (most contexts never see one) with room for the module
 * parameter events_per_context of them. Events carry consecutive sequence
 * numbers; when the ring is full the oldest event is dropped, which a reader
 * sees as a gap in the numbers and in the events_dropped counter. Every
 * event lost is counted, one by one: pushed out of a full ring, or made
 * while the ring could not be allocated (then it is the only one lost: a
 * ring another thread allocated meanwhile is used, never emptied).
 *
 * Pid namespaces. An event names the accessing task as the reader's pid
 * namespace sees it: the one of the task that opened the descriptor. A
 * task that namespace cannot see (it runs in an ancestor or a sibling
 * namespace) is given as pid and tid 0 and an empty comm, so that its name
 * does not leak where its number does not.
 *
 * Recording happens in the page-fault handler, possibly with a map lock
 * held, so it only takes event_lock, a spinlock. read() copies events out
 * one at a time without holding it: the copy itself may fault on a mapping
 * of this module (even a quarantined one, which records an event). An event
 * is consumed only once copied; read_lock keeps two readers from returning
 * the same event.
 */
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>

#include "mheap_internal.h"

#define MHEAP_EVENTS_MAX	65536U

static unsigned int events_per_context = 256;

/* 1 to MHEAP_EVENTS_MAX; anything else is refused with -EINVAL. */
static int events_param_set(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret;

	ret = kstrtouint(val, 0, &n);
	if (ret)
		return ret;
	if (!n || n > MHEAP_EVENTS_MAX)
		return -EINVAL;
	WRITE_ONCE(events_per_context, n);
	return 0;
}

static const struct kernel_param_ops events_param_ops = {
	.set	= events_param_set,
	.get	= param_get_uint,
};

module_param_cb(events_per_context, &events_param_ops, &events_per_context,
		0644);
MODULE_PARM_DESC(events_per_context,
		 "Fault events each descriptor keeps until they are read (1-65536, default 256; newer ones push out older ones)");

void mheap_events_init(struct mheap_ctx *ctx)
{
	spin_lock_init(&ctx->event_lock);
	init_waitqueue_head(&ctx->event_wait);
	mutex_init(&ctx->read_lock);
	ctx->pid_ns = get_pid_ns(task_active_pid_ns(current));
}

void mheap_events_free(struct mheap_ctx *ctx)
{
	kvfree(ctx->events);
	put_pid_ns(ctx->pid_ns);
}

/*
 * Allocate the ring unless there is one; it stays NULL if that fails. It is
 * charged to the memory cgroup of the task that touched quarantine, and
 * worth no OOM kill there nor a warning: without it the event is counted
 * lost (__GFP_RETRY_MAYFAIL: reclaim, but fail rather than call the OOM
 * killer; kvmalloc takes it, unlike __GFP_NORETRY).
 */
static void ring_alloc(struct mheap_ctx *ctx)
{
	u32 cap = READ_ONCE(events_per_context);
	struct mheap_event *ring;

	if (READ_ONCE(ctx->events))
		return;
	ring = kvcalloc(cap, sizeof(*ring),
			GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN);
	if (!ring)
		return;
	spin_lock(&ctx->event_lock);
	if (!ctx->events) {
		ctx->event_cap = cap;
		WRITE_ONCE(ctx->events, ring);
		ring = NULL;
	}
	spin_unlock(&ctx->event_lock);
	kvfree(ring);
}

/* Give ev the next number and keep it, or count it lost. */
static void ring_put(struct mheap_ctx *ctx, struct mheap_event *ev)
{
	lockdep_assert_held(&ctx->event_lock);
	ev->seq = ctx->event_head++;
	if (!ctx->events) {
		/* No ring, so no other event is waiting: this one is lost. */
		ctx->event_tail = ctx->event_head;
		mheap_count(ctx, MHEAP_C_DROPPED, 1);
		return;
	}
	if (ctx->event_head - ctx->event_tail > ctx->event_cap) {
		/* Full: the oldest one makes room. */
		ctx->event_tail++;
		mheap_count(ctx, MHEAP_C_DROPPED, 1);
	}
	ctx->events[ev->seq % ctx->event_cap] = *ev;
}

void mheap_event_record(struct mheap_ctx *ctx, unsigned long addr, u32 flags)
{
	struct mheap_event ev = {
		.time_ns = ktime_get_ns(),
		.addr = addr,
		.pid = task_tgid_nr_ns(current, ctx->pid_ns),
		.tid = task_pid_nr_ns(current, ctx->pid_ns),
		.flags = flags,
	};

	/* A task the reader cannot see stays nameless (comm is zeroed). */
	if (ev.pid)
		get_task_comm(ev.comm, current);
	mheap_count(ctx, MHEAP_C_FAULTS, 1);
	ring_alloc(ctx);

	spin_lock(&ctx->event_lock);
	ring_put(ctx, &ev);
	spin_unlock(&ctx->event_lock);
	wake_up_interruptible(&ctx->event_wait);
}

static bool events_waiting(struct mheap_ctx *ctx)
{
	bool waiting;

	spin_lock(&ctx->event_lock);
	waiting = ctx->event_head != ctx->event_tail;
	spin_unlock(&ctx->event_lock);
	return waiting;
}

/* Copy the oldest unread event to ev; false if there is none. */
static bool peek(struct mheap_ctx *ctx, struct mheap_event *ev)
{
	bool found = false;

	spin_lock(&ctx->event_lock);
	if (ctx->event_head != ctx->event_tail) {
		*ev = ctx->events[ctx->event_tail % ctx->event_cap];
		found = true;
	}
	spin_unlock(&ctx->event_lock);
	return found;
}

/* The event numbered seq has been read: consume it unless already gone. */
static void consume(struct mheap_ctx *ctx, u64 seq)
{
	spin_lock(&ctx->event_lock);
	if (ctx->event_tail == seq)
		ctx->event_tail++;
	spin_unlock(&ctx->event_lock);
}

ssize_t mheap_event_read(struct file *file, char __user *buf, size_t count,
			 loff_t *ppos)
{
	struct mheap_ctx *ctx = file->private_data;
	struct mheap_event ev;
	size_t done = 0;
	int ret;

	if (count < sizeof(ev))
		return -EINVAL;
	if (mutex_lock_interruptible(&ctx->read_lock))
		return -ERESTARTSYS;
	while (!events_waiting(ctx)) {
		mutex_unlock(&ctx->read_lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(ctx->event_wait,
					       events_waiting(ctx));
		if (ret)
			return ret;
		if (mutex_lock_interruptible(&ctx->read_lock))
			return -ERESTARTSYS;
	}
	while (count - done >= sizeof(ev) && peek(ctx, &ev)) {
		if (copy_to_user(buf + done, &ev, sizeof(ev)))
			break;
		consume(ctx, ev.seq);
		done += sizeof(ev);
	}
	mutex_unlock(&ctx->read_lock);
	return done ? done : -EFAULT;
}

__poll_t mheap_event_poll(struct file *file, struct poll_table_struct *wait)
{
	struct mheap_ctx *ctx = file->private_data;

	poll_wait(file, &ctx->event_wait, wait);
	return events_waiting(ctx) ? EPOLLIN | EPOLLRDNORM : 0;
}
