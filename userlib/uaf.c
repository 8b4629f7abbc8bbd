// SPDX-License-Identifier: MIT
/*
 * The use-after-free report. Touching a quarantined arena chunk raises
 * SIGSEGV (one that is leaving quarantine too, until it is opened); this handler recognises the address through the arena map
 * (lock-free loads only), prints one line that begins "mheap:
 * use-after-free" and names the address, the kind of access, the chunk, the
 * arena and how long ago it was freed, then restores the default action and
 * re-raises: the process dies of SIGSEGV as it would have, and core dumps
 * still work. A live chunk that faults in a child of fork because its
 * /dev/mheap memory stayed in the parent (fault_kmod.c) gets a line of its
 * own and the same death.
 *
 * Only a fault can be a use-after-free: a SIGSEGV with si_code <= 0 was
 * sent (kill, raise, sigqueue, tgkill) and its si_addr is no address at all
 * (it overlaps the sender's pid and uid). Every SIGSEGV that is not ours is
 * handled as the disposition installed before ours would have handled it,
 * and ours stays installed, so later use-after-free is still reported:
 *  - SIG_IGN: a sent signal is dropped; a fault kills anyway, as the kernel
 *    forces it;
 *  - SIG_DFL (or SIG_IGN for a fault): the default action is restored and
 *    the fault taken again on return, or the sent signal raised again;
 *  - a handler: called as the kernel would call it, with its sa_mask (and
 *    the signal, unless SA_NODEFER) blocked around the call, with the
 *    siginfo and context we were given when SA_SIGINFO; SA_RESETHAND makes
 *    it default for every later SIGSEGV, as it would have been; SA_RESTART
 *    is taken over into our own flags when installing.
 * SIG_DFL and SIG_IGN are checked before SA_SIGINFO, since sa_handler and
 * sa_sigaction share their storage. A handler the program installs after
 * ours replaces ours, and mheap is not called at all.
 *
 * Everything here is async-signal-safe: the line is formatted by hand into
 * a stack buffer and written with one write(2); signal state is changed
 * with sigaction, pthread_sigmask and raise only.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "report.h"
#include "secure.h"
#include "sigchain.h"

uint64_t uaf_faults_caught;

static struct sigaction previous;	/* the disposition ours replaced */
static int previous_spent;		/* its SA_RESETHAND has taken effect */
static int installed;

static bool is_write(void *ctx)
{
#if defined(__x86_64__)
	/* Bit 1 of the page-fault error code: the access was a write. */
	return ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_ERR] & 2;
#else
	(void)ctx;
	return false;
#endif
}

/* "read of 0x...", "write to 0x...". */
static void put_access(struct line *l, uintptr_t addr, void *ctx)
{
	put_str(l, is_write(ctx) ? "write to " : "read of ");
	put_num(l, addr, 16);
}

/* "arena #7, chunk [0x..., 0x...)". */
static void put_chunk(struct line *l, const struct arena_chunk *c)
{
	put_str(l, "arena #");
	put_num(l, c->arena_id, 10);
	put_str(l, c->large ? ", large chunk [" : ", chunk [");
	put_num(l, c->base, 16);
	put_str(l, ", ");
	put_num(l, c->limit, 16);
	put_str(l, ")");
}

static void set_default(int sig)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };

	sigaction(sig, &sa, NULL);
}

/* Die of sig as without us: default action, then the signal again (blocked
 * while we run, delivered as we return), so that core dumps still work. */
static void die_of(int sig)
{
	set_default(sig);
	raise(sig);
}

/* Handle a SIGSEGV that is not ours as the previous disposition would. */
static void pass_on(int sig, siginfo_t *si, void *ctx)
{
	bool fault = si->si_code > 0;
	void (*handler)(int) = previous.sa_handler;

	/* The first delivery spends a one-shot handler; default after it. */
	if (handler != SIG_DFL && handler != SIG_IGN && sigchain_spent(&previous, &previous_spent))
		handler = SIG_DFL;
	if (handler == SIG_IGN && !fault)
		return;
	if (handler == SIG_DFL || handler == SIG_IGN) {
		/* A fault happens again as we return, then under the default
		 * action (which a fault also gets past SIG_IGN). */
		if (fault)
			set_default(sig);
		else
			die_of(sig);
		return;
	}
	sigchain_call(&previous, sig, si, ctx);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	uintptr_t addr = (uintptr_t)si->si_addr;
	struct mspan *s = si->si_code > 0 ? span_of(addr) : NULL;
	struct arena_chunk *c = s && LOAD_RELAXED(&s->state) == MSPAN_CHUNK ?
				LOAD_ACQUIRE(&s->chunk_data) : NULL;
	uint8_t state = c ? LOAD_ACQUIRE(&c->state) : 0;
	struct line l = { .n = 0 };

	if (unlikely(mh_secure) && si->si_code > 0 &&
	    secure_fault_report(addr, c, is_write(ctx), &l)) {
		/* A guarded heap block or malloc(0)'s memory (secure_report.c). */
		__atomic_add_fetch(&uaf_faults_caught, 1, __ATOMIC_RELAXED);
		die_of(SIGSEGV);
		return;
	} else if (state == CHUNK_QUARANTINED || state == CHUNK_RELEASING) {
		/* RELEASING: out of quarantine, not open yet (or its opening
		 * refused): nobody's, and the access a stale one the scan did
		 * not see. */
		__atomic_add_fetch(&uaf_faults_caught, 1, __ATOMIC_RELAXED);
		put_str(&l, "mheap: use-after-free: ");
		put_access(&l, addr, ctx);
		put_str(&l, " in freed ");
		put_chunk(&l, c);
		put_str(&l, ", freed ");
		put_ms(&l, mh_nanotime() - c->freed_ns);
		put_str(&l, " ms ago");
	} else if (state == CHUNK_LIVE && kmod_left_in_parent(c->base)) {
		put_str(&l, "mheap: arena memory lost in fork: ");
		put_access(&l, addr, ctx);
		put_str(&l, " in ");
		put_chunk(&l, c);
		put_str(&l, ", live in the parent: /dev/" MHEAP_DEVICE_NAME
			" memory is not inherited across fork");
	} else {
		pass_on(sig, si, ctx);
		return;
	}
	put_backend(&l, mh_backend_name());
	if (write(STDERR_FILENO, l.buf, l.n) < 0)
		l.n = 0;
	die_of(SIGSEGV);
}

/* Held across fork, so that a child finds the handler installed or not,
 * never half (`previous` saved but `installed` not yet set: installing
 * again would save the handler itself as the one to pass signals on to).
 * Nothing else is taken under it, nor it under anything. */
static mh_lock_t install_lock = MH_LOCK_INIT;

MH_DEFAULT_TEXT static void fork_prepare(void)
{
	mh_lock(&install_lock);
}

MH_DEFAULT_TEXT static void fork_release(void)
{
	mh_unlock(&install_lock);
}

__attribute__((constructor(MH_CTOR_UAF))) static void uaf_fork_init(void)
{
	pthread_atfork(fork_prepare, fork_release, fork_release);
}

void uaf_install(void)
{
	struct sigaction sa;

	if (LOAD_ACQUIRE(&installed))
		return;
	mh_lock(&install_lock);
	if (!installed) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, &previous);
		/* Whether a system call interrupted by a sent SIGSEGV restarts
		 * is the previous disposition's choice: ignoring or a handler
		 * with SA_RESTART (the default action kills anyway). */
		if (previous.sa_handler == SIG_IGN || previous.sa_handler == SIG_DFL ||
		    (previous.sa_flags & SA_RESTART)) {
			sa.sa_flags |= SA_RESTART;
			sigaction(SIGSEGV, &sa, NULL);
		}
		STORE_RELEASE(&installed, 1);
	}
	mh_unlock(&install_lock);
}
