// SPDX-License-Identifier: GPL-2.0
/*
 * Accounting: the counters of each context and of all of them, the
 * quarantine limits, and the sysfs view of the global counters.
 *
 * Counters are atomic64_t, each updated on its own where the event happens
 * (mheap_count() adds to the context and to mheap_global at once), so no
 * lock covers them and a snapshot may be a moment apart across fields.
 *
 * The quarantine limits are checked by reservation: FAULT adds the bytes it
 * is about to quarantine to the context's and the global total and takes
 * them back if either total is now over its limit. Two FAULTs racing near a
 * limit may then both fail although one of them alone would have fitted;
 * they never both succeed past it. A context has no limit of its own until
 * MHEAP_IOC_SET_LIMIT gives it one; the global limit is the module parameter
 * quarantine_limit, which root may change through sysfs or the ioctl.
 *
 * Administrators read the global counters in /sys/class/misc/mheap/, one
 * value per file, named as the fields of struct mheap_counters.
 */
#include <linux/capability.h>
#include <linux/kernel.h>
#include <linux/device.h>
#include <linux/moduleparam.h>
#include <linux/sysfs.h>

#include "mheap_internal.h"

/* Quarantined memory costs no memory, only address space: 64 GiB default. */
static unsigned long long quarantine_limit = 64ULL << 30;
module_param(quarantine_limit, ullong, 0644);
MODULE_PARM_DESC(quarantine_limit,
		 "Bytes all contexts together may hold in quarantine; a FAULT past it fails with EDQUOT (default 64 GiB, 18446744073709551615 for no limit)");

struct mheap_count mheap_global;

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
	atomic64_t *all = &mheap_global.c[MHEAP_C_QUARANTINED];

	if (add_over(mine, bytes, READ_ONCE(ctx->limit)))
		return -EDQUOT;
	if (add_over(all, bytes, READ_ONCE(quarantine_limit))) {
		atomic64_sub(bytes, mine);
		return -EDQUOT;
	}
	return 0;
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
}

void mheap_stats_fill(struct mheap_ctx *ctx, struct mheap_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	snapshot(&ctx->count, READ_ONCE(ctx->limit), &st->self);
	snapshot(&mheap_global, READ_ONCE(quarantine_limit), &st->global);
}

int mheap_set_limit(struct mheap_ctx *ctx, const struct mheap_limit *lim)
{
	if (lim->flags & ~MHEAP_LIMIT_GLOBAL || lim->reserved)
		return -EINVAL;
	if (lim->flags & MHEAP_LIMIT_GLOBAL) {
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
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

static ssize_t quarantine_limit_show(struct device *dev,
				     struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", READ_ONCE(quarantine_limit));
}
static DEVICE_ATTR_RO(quarantine_limit);

static struct attribute *mheap_attrs[] = {
	&dev_attr_mapped_bytes.attr,
	&dev_attr_resident_bytes.attr,
	&dev_attr_quarantined_bytes.attr,
	&dev_attr_quarantined_ranges.attr,
	&dev_attr_quarantine_limit.attr,
	&dev_attr_faults_caught.attr,
	&dev_attr_commands.attr,
	&dev_attr_events_dropped.attr,
	&dev_attr_mappings.attr,
	&dev_attr_contexts.attr,
	NULL,
};

static const struct attribute_group mheap_attr_group = {
	.attrs = mheap_attrs,
};

const struct attribute_group *mheap_attr_groups[] = {
	&mheap_attr_group,
	NULL,
};
