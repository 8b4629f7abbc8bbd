// SPDX-License-Identifier: GPL-2.0
/*
 * Accounting: the counters of each context, of each user and of all of
 * them, the quarantine limits, and the sysfs view of the global counters.
 *
 * Counters are atomic64_t, each updated on its own where the event happens
 * (mheap_count() adds to the context, its user and mheap_global at once),
 * so no lock covers them and a snapshot may be a moment apart across fields.
 *
 * Users. Quarantine costs no memory, only address space, so a limit on it
 * is about fairness: one process must not make every other one's FAULT
 * fail, which would switch off their use-after-free detection. Each user
 * therefore has its own share, the module parameter
 * quarantine_limit_per_user, checked against what all contexts opened by
 * that user hold; a user is the real uid of the task that opened the
 * device, as the initial user namespace sees it (kuid), the owner of the
 * descriptor however it is passed on later. The default share, 64 GiB
 * (MHEAP_MAP_MAX), is one whole mapping and the old global default, so one
 * user alone sees no change. The global limit, quarantine_limit, is still
 * there as an overall cap but is off by default: with any finite cap a few
 * users could use it all up again. The memory a user does make the kernel
 * spend, the bitmap of each mapping (2 MiB for 64 GiB) and the rest of the
 * metadata, is charged to its memory cgroup (GFP_KERNEL_ACCOUNT).
 *
 * The users with an open context are in a hash table, mheap_users; open()
 * finds or adds its user and release() drops it with its last context, both
 * under mheap_users_lock. The context holds its user, so the fast paths
 * (counting, FAULT) never look it up.
 *
 * The quarantine limits are checked by reservation: FAULT adds the bytes it
 * is about to quarantine to the context's, its user's and the global total
 * and takes them back if any total is now over its limit. Two FAULTs racing
 * near a limit may then both fail although one of them alone would have
 * fitted; they never both succeed past it. A refused FAULT changes no
 * total for longer than that moment, so a user at its share never makes
 * another user's FAULT fail. A context has no limit of its own until
 * MHEAP_IOC_SET_LIMIT gives it one; root may change the global limit
 * through sysfs or the ioctl, and the per-user one through sysfs. Both
 * module parameters refuse (EINVAL) a value below one page, which would
 * refuse every FAULT: to switch detection off, unload the module.
 *
 * Administrators read the global counters in /sys/class/misc/mheap/, one
 * value per file, named as the fields of struct mheap_counters (users: how
 * many users have a context open), and the limits there and in
 * /sys/module/mheap/parameters/. Each process reads its own user's counters
 * with MHEAP_IOC_STATS.
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/device.h>
#include <linux/hashtable.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "mheap_internal.h"

/* The smallest global or per-user limit: one page. */
#define MHEAP_LIMIT_MIN		PAGE_SIZE

/* Over all contexts: no cap by default (see the top of this file). */
static unsigned long long quarantine_limit = MHEAP_LIMIT_NONE;
/* One user's share: one whole mapping, 64 GiB. */
static unsigned long long quarantine_limit_per_user = MHEAP_MAP_MAX;

/* A global or per-user limit may be set to bytes. */
static bool limit_valid(u64 bytes)
{
	return bytes >= MHEAP_LIMIT_MIN;
}

static int limit_param_set(const char *val, const struct kernel_param *kp)
{
	unsigned long long bytes;
	int ret;

	ret = kstrtoull(val, 0, &bytes);
	if (ret)
		return ret;
	if (!limit_valid(bytes))
		return -EINVAL;
	WRITE_ONCE(*(unsigned long long *)kp->arg, bytes);
	return 0;
}

static const struct kernel_param_ops limit_param_ops = {
	.set	= limit_param_set,
	.get	= param_get_ullong,
};

module_param_cb(quarantine_limit, &limit_param_ops, &quarantine_limit, 0644);
MODULE_PARM_DESC(quarantine_limit,
		 "Bytes all contexts together may hold in quarantine; a FAULT past it fails with EDQUOT (at least one page; default 18446744073709551615, no limit)");
module_param_cb(quarantine_limit_per_user, &limit_param_ops,
		&quarantine_limit_per_user, 0644);
MODULE_PARM_DESC(quarantine_limit_per_user,
		 "Bytes the contexts of one user (real uid of the opener) may hold in quarantine together; a FAULT past it fails with EDQUOT for that user only (at least one page; default 64 GiB)");

struct mheap_count mheap_global;

/* The users with an open context, by kuid. */
static DEFINE_HASHTABLE(mheap_users, 6);
static DEFINE_MUTEX(mheap_users_lock);

static struct mheap_user *user_find(kuid_t uid)
{
	struct mheap_user *user;

	lockdep_assert_held(&mheap_users_lock);
	hash_for_each_possible(mheap_users, user, node, __kuid_val(uid))
		if (uid_eq(user->uid, uid))
			return user;
	return NULL;
}

/* Make ctx one of the contexts of the calling task's user. */
int mheap_user_attach(struct mheap_ctx *ctx)
{
	kuid_t uid = current_uid();
	struct mheap_user *user;

	mutex_lock(&mheap_users_lock);
	user = user_find(uid);
	if (!user) {
		/* Charged to the opener: it decides how many users exist. */
		user = kzalloc(sizeof(*user), GFP_KERNEL_ACCOUNT);
		if (!user) {
			mutex_unlock(&mheap_users_lock);
			return -ENOMEM;
		}
		user->uid = uid;
		hash_add(mheap_users, &user->node, __kuid_val(uid));
		atomic64_set(&user->count.c[MHEAP_C_USERS], 1);
		atomic64_inc(&mheap_global.c[MHEAP_C_USERS]);
	}
	ctx->user = user;
	atomic64_set(&ctx->count.c[MHEAP_C_USERS], 1);
	mheap_count(ctx, MHEAP_C_CONTEXTS, 1);
	mutex_unlock(&mheap_users_lock);
	return 0;
}

/* ctx closes: its user goes with its last context. */
void mheap_user_detach(struct mheap_ctx *ctx)
{
	struct mheap_user *user = ctx->user;

	mutex_lock(&mheap_users_lock);
	mheap_count(ctx, MHEAP_C_CONTEXTS, -1);
	if (!atomic64_read(&user->count.c[MHEAP_C_CONTEXTS])) {
		hash_del(&user->node);
		atomic64_dec(&mheap_global.c[MHEAP_C_USERS]);
		kfree(user);
	}
	mutex_unlock(&mheap_users_lock);
}

/* Add bytes to a total; true if it is now over limit (and undo that). */
static bool add_over(atomic64_t *total, u64 bytes, u64 limit)
{
	if ((u64)atomic64_add_return(bytes, total) <= limit)
		return false;
	atomic64_sub(bytes, total);
	return true;
}

/* Take bytes of quarantine for ctx; -EDQUOT if a limit would be passed. */
int mheap_quarantine_reserve(struct mheap_ctx *ctx, u64 bytes)
{
	atomic64_t *mine = &ctx->count.c[MHEAP_C_QUARANTINED];
	atomic64_t *users = &ctx->user->count.c[MHEAP_C_QUARANTINED];
	atomic64_t *all = &mheap_global.c[MHEAP_C_QUARANTINED];

	/* Innermost first: a user at its share never touches the global. */
	if (add_over(mine, bytes, READ_ONCE(ctx->limit)))
		return -EDQUOT;
	if (add_over(users, bytes, READ_ONCE(quarantine_limit_per_user)))
		goto undo_mine;
	if (add_over(all, bytes, READ_ONCE(quarantine_limit)))
		goto undo_users;
	return 0;

undo_users:
	atomic64_sub(bytes, users);
undo_mine:
	atomic64_sub(bytes, mine);
	return -EDQUOT;
}

void mheap_quarantine_unreserve(struct mheap_ctx *ctx, u64 bytes)
{
	mheap_count(ctx, MHEAP_C_QUARANTINED, -(s64)bytes);
}

static void snapshot(const struct mheap_count *c, u64 limit,
		     struct mheap_counters *out)
{
	memset(out, 0, sizeof(*out));
	out->mapped_bytes = atomic64_read(&c->c[MHEAP_C_MAPPED]);
	out->resident_bytes = atomic64_read(&c->c[MHEAP_C_RESIDENT]);
	out->quarantined_bytes = atomic64_read(&c->c[MHEAP_C_QUARANTINED]);
	out->quarantined_ranges = atomic64_read(&c->c[MHEAP_C_RANGES]);
	out->quarantine_limit = limit;
	out->faults_caught = atomic64_read(&c->c[MHEAP_C_FAULTS]);
	out->commands = atomic64_read(&c->c[MHEAP_C_COMMANDS]);
	out->events_dropped = atomic64_read(&c->c[MHEAP_C_DROPPED]);
	out->mappings = atomic64_read(&c->c[MHEAP_C_MAPPINGS]);
	out->contexts = atomic64_read(&c->c[MHEAP_C_CONTEXTS]);
	out->users = atomic64_read(&c->c[MHEAP_C_USERS]);
}

void mheap_stats_fill(struct mheap_ctx *ctx, struct mheap_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	snapshot(&ctx->count, READ_ONCE(ctx->limit), &st->self);
	snapshot(&mheap_global, READ_ONCE(quarantine_limit), &st->global);
	snapshot(&ctx->user->count, READ_ONCE(quarantine_limit_per_user),
		 &st->user);
}

int mheap_set_limit(struct mheap_ctx *ctx, const struct mheap_limit *lim)
{
	if (lim->flags & ~MHEAP_LIMIT_GLOBAL || lim->reserved)
		return -EINVAL;
	if (lim->flags & MHEAP_LIMIT_GLOBAL) {
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		if (!limit_valid(lim->bytes))
			return -EINVAL;
		WRITE_ONCE(quarantine_limit, lim->bytes);
	} else {
		WRITE_ONCE(ctx->limit, lim->bytes);
	}
	return 0;
}

/* No context, mapping, page or quarantine left (checked at unload). */
bool mheap_counters_idle(void)
{
	static const enum mheap_counter gauges[] = {
		MHEAP_C_MAPPED, MHEAP_C_RESIDENT, MHEAP_C_QUARANTINED,
		MHEAP_C_RANGES, MHEAP_C_MAPPINGS, MHEAP_C_CONTEXTS,
		MHEAP_C_USERS,
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(gauges); i++)
		if (atomic64_read(&mheap_global.c[gauges[i]]))
			return false;
	return true;
}

/* ------------------------------------------------------------ sysfs */

#define MHEAP_COUNTER_ATTR(name, which)					\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n",				\
			  atomic64_read(&mheap_global.c[which]));	\
}									\
static DEVICE_ATTR_RO(name)

MHEAP_COUNTER_ATTR(mapped_bytes, MHEAP_C_MAPPED);
MHEAP_COUNTER_ATTR(resident_bytes, MHEAP_C_RESIDENT);
MHEAP_COUNTER_ATTR(quarantined_bytes, MHEAP_C_QUARANTINED);
MHEAP_COUNTER_ATTR(quarantined_ranges, MHEAP_C_RANGES);
MHEAP_COUNTER_ATTR(faults_caught, MHEAP_C_FAULTS);
MHEAP_COUNTER_ATTR(commands, MHEAP_C_COMMANDS);
MHEAP_COUNTER_ATTR(events_dropped, MHEAP_C_DROPPED);
MHEAP_COUNTER_ATTR(mappings, MHEAP_C_MAPPINGS);
MHEAP_COUNTER_ATTR(contexts, MHEAP_C_CONTEXTS);
MHEAP_COUNTER_ATTR(users, MHEAP_C_USERS);

#define MHEAP_LIMIT_ATTR(name, limit)					\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%llu\n", READ_ONCE(limit));		\
}									\
static DEVICE_ATTR_RO(name)

MHEAP_LIMIT_ATTR(quarantine_limit, quarantine_limit);
MHEAP_LIMIT_ATTR(quarantine_limit_per_user, quarantine_limit_per_user);

static struct attribute *mheap_attrs[] = {
	&dev_attr_mapped_bytes.attr,
	&dev_attr_resident_bytes.attr,
	&dev_attr_quarantined_bytes.attr,
	&dev_attr_quarantined_ranges.attr,
	&dev_attr_quarantine_limit.attr,
	&dev_attr_quarantine_limit_per_user.attr,
	&dev_attr_faults_caught.attr,
	&dev_attr_commands.attr,
	&dev_attr_events_dropped.attr,
	&dev_attr_mappings.attr,
	&dev_attr_contexts.attr,
	&dev_attr_users.attr,
	NULL,
};

static const struct attribute_group mheap_attr_group = {
	.attrs = mheap_attrs,
};

const struct attribute_group *mheap_attr_groups[] = {
	&mheap_attr_group,
	NULL,
};
