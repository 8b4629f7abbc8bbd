/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Chaining to the handler a program installed before ours: uaf.c's for a
 * SIGSEGV or SIGBUS that is no arena's, scan_stop.c's for a SIGURG that is
 * not the scan's. The handler runs as the kernel would have run it, had
 * ours not been installed: with the interrupted context's mask, its own
 * sa_mask and the signal (unless SA_NODEFER) blocked, not with the mask
 * our handler runs under (every signal, or what a sanitizer's wrapper set);
 * an SA_RESETHAND handler once. Both are async-signal-safe: an atomic
 * exchange and pthread_sigmask.
 */
#ifndef MHEAP_SIGCHAIN_H
#define MHEAP_SIGCHAIN_H

#include <signal.h>
#include <stdbool.h>
#include <ucontext.h>

/* Whether prev, a handler (not SIG_DFL or SIG_IGN), is a one-shot one
 * already run: the first call says no and spends it (*spent). */
static inline bool sigchain_spent(const struct sigaction *prev, int *spent)
{
	return (prev->sa_flags & SA_RESETHAND) &&
	       __atomic_exchange_n(spent, 1, __ATOMIC_ACQ_REL);
}

/* Run prev, a handler (not SIG_DFL or SIG_IGN), for sig with ours' si and
 * ctx, under the mask the kernel would have given it. */
static inline void sigchain_call(const struct sigaction *prev, int sig, siginfo_t *si, void *ctx)
{
	sigset_t mask = ((ucontext_t *)ctx)->uc_sigmask, saved;

	sigorset(&mask, &mask, &prev->sa_mask);
	if (!(prev->sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_SETMASK, &mask, &saved);
	if (prev->sa_flags & SA_SIGINFO)
		prev->sa_sigaction(sig, si, ctx);
	else
		prev->sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

#endif
