// SPDX-License-Identifier: MIT
/*
 * The heap's hooks (hooks.h): the registered set, else one whose every
 * hook does nothing, so that a call site needs no test.
 */
#include "hooks.h"

static bool no_give_back(void)
{
	return false;
}

static void no_op(void)
{
}

static void no_stats(struct mh_stats *st)
{
	(void)st;
}

static int no_check_chunk(struct heapcheck_found *f, const struct mspan *s)
{
	(void)f;
	(void)s;
	return 0;
}

static int no_check_lists(struct heapcheck_found *f)
{
	(void)f;
	return 0;
}

static const struct heap_hooks no_hooks = {
	.give_back = no_give_back,
	.release_idle = no_op,
	.stats = no_stats,
	.check_chunk = no_check_chunk,
	.check_lists = no_check_lists,
	.fork_prepare = no_op,
	.fork_parent = no_op,
	.fork_child = no_op,
};

static const struct heap_hooks *registered = &no_hooks;

void heap_hooks_register(const struct heap_hooks *h)
{
	STORE_RELEASE(&registered, h);
}

const struct heap_hooks *heap_hooks(void)
{
	return LOAD_ACQUIRE(&registered);
}
