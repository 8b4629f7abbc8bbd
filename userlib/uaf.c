// SPDX-License-Identifier: MIT
/*
 * The use-after-free report. Touching a quarantined arena chunk raises
 * SIGSEGV; this handler recognises the address through the arena map
 * (lock-free loads only), prints one line that begins "mheap:
 * use-after-free" and names the address, the kind of access, the chunk, the
 * arena and how long ago it was freed, then restores the default action and
 * re-raises: the process dies of SIGSEGV as it would have, and core dumps
 * still work. Any other fault goes to the handler installed before ours, or
 * to the default action.
 *
 * Everything here is async-signal-safe: the line is formatted by hand into
 * a stack buffer and written with one write(2).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "arena.h"
#include "arenamap.h"
#include "fault.h"

uint64_t uaf_faults_caught;

static struct sigaction previous;
static int installed;

struct line {
	char buf[320];
	size_t n;
};

static void put_str(struct line *l, const char *s)
{
	while (*s && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = *s++;
}

static void put_num(struct line *l, uint64_t v, unsigned base)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		put_str(l, "0x");
	while (i > 0 && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = tmp[--i];
}

/* Milliseconds with three decimals. */
static void put_ms(struct line *l, uint64_t ns)
{
	uint64_t us = ns / 1000;
	char frac[4] = { (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
			 (char)('0' + us % 10), 0 };

	put_num(l, us / 1000, 10);
	put_str(l, ".");
	put_str(l, frac);
}

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

static void pass_on(int sig, siginfo_t *si, void *ctx)
{
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, si, ctx);
	} else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
	} else {
		/* Default (or an ignored SIGSEGV, which cannot be ignored
		 * for a real fault): die as without us; the faulting
		 * instruction runs again on return. */
		signal(sig, SIG_DFL);
	}
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	uintptr_t addr = (uintptr_t)si->si_addr;
	struct mspan *s = span_of(addr);
	struct arena_chunk *c = s && LOAD_RELAXED(&s->state) == MSPAN_CHUNK ?
				LOAD_ACQUIRE(&s->chunk_data) : NULL;

	if (!c || LOAD_ACQUIRE(&c->state) != CHUNK_QUARANTINED) {
		pass_on(sig, si, ctx);
		return;
	}
	__atomic_add_fetch(&uaf_faults_caught, 1, __ATOMIC_RELAXED);

	struct line l = { .n = 0 };
	put_str(&l, "mheap: use-after-free: ");
	put_str(&l, is_write(ctx) ? "write to " : "read of ");
	put_num(&l, addr, 16);
	put_str(&l, " in freed arena #");
	put_num(&l, c->arena_id, 10);
	put_str(&l, c->large ? ", large chunk [" : ", chunk [");
	put_num(&l, c->base, 16);
	put_str(&l, ", ");
	put_num(&l, c->limit, 16);
	put_str(&l, "), freed ");
	put_ms(&l, mh_nanotime() - c->freed_ns);
	put_str(&l, " ms ago (");
	put_str(&l, mh_backend_name());
	put_str(&l, " backend)\n");
	if (write(STDERR_FILENO, l.buf, l.n) < 0)
		l.n = 0;

	/* Die of SIGSEGV as usual: default action, then the signal again
	 * (blocked while we run, delivered as we return). */
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

void uaf_install(void)
{
	static mh_lock_t lock = MH_LOCK_INIT;
	struct sigaction sa;

	if (LOAD_ACQUIRE(&installed))
		return;
	mh_lock(&lock);
	if (!installed) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, &previous);
		STORE_RELEASE(&installed, 1);
	}
	mh_unlock(&lock);
}
