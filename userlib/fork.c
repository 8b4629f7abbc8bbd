// SPDX-License-Identifier: MIT
/*
 * fork(): the child of a multi-threaded process has only the thread that
 * forked, and any lock another thread held stays held for ever. So around
 * fork every allocator lock is taken (prepare) and let go in both processes
 * (parent, child), as glibc's malloc does (pthread_atfork).
 *
 * The order: the quarantine scan's lock first (a scan holds it, then the
 * heap lock: scan.c), then the hooks' locks (user arenas' arena_lock, which is
 * never held while another allocator lock is taken), then the caches'
 * registry lock, then the heap's (mheap_lock_all: the heap lock, the
 * mcentrals', ...), then the secure mode's zero-size range's, the order
 * every path takes them in; they are let go in reverse.
 *
 * In the child, what the locks guard is consistent. The other threads'
 * caches are not (their owners change them without a lock): their spans
 * are taken back from the heap's records (mcache.c, "Fork").
 */
#include "fork.h"
#include "hooks.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "scan.h"
#include "secure.h"

/* The hooks whose fork_prepare ran: parent and child call the same set,
 * even if hooks were registered in between (a library loading). */
static const struct heap_hooks *fork_hooks;

static void fork_prepare(void)
{
	const struct heap_hooks *h = heap_hooks();

	scan_fork_prepare();
	h->fork_prepare();
	mh_lock(&mh_caches_lock);
	mheap_lock_all();
	if (mh_secure)
		zero_size_fork_prepare();
	fork_hooks = h;
}

static void fork_parent(void)
{
	if (mh_secure)
		zero_size_fork_release();
	mheap_unlock_all();
	mh_unlock(&mh_caches_lock);
	fork_hooks->fork_parent();
	scan_fork_parent();
}

static void fork_child(void)
{
	/* Only this thread survives, and it holds every lock (prepare took
	 * them). */
	if (mh_secure)
		zero_size_fork_release();
	mheap_unlock_all();
	mcache_after_fork_child();
	mh_unlock(&mh_caches_lock);
	fork_hooks->fork_child();
	scan_fork_child();
}

void fork_handlers_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
