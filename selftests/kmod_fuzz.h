/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The model of kmod_fuzz_test.c's fuzz of /dev/mheap: its limits, the
 * results a call may have, each thread's random sequence, the pool of
 * contexts and mappings all threads share (with a generation count that
 * says whether a call raced with an unmap or a close), a worker's state,
 * and the bad arguments a mutated call is given (each with its documented
 * errno). kmod_fuzz_ioctl.h and kmod_fuzz_uring.h build the calls of each
 * transport on it. Included by kmod_fuzz_test.c alone, as those two are:
 * the harness is one translation unit per test binary.
 */
#ifndef MHEAP_KMOD_FUZZ_H
#define MHEAP_KMOD_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"
#include "kmod_util.h"

#define NTHREADS	4
#define NCTX		3	/* contexts in the pool */
#define NMAPS		8	/* mappings in the pool */
#define MAP_PAGES	16	/* the largest pool mapping */
#define VEC_MAX		8	/* ranges in one FAULT/RELEASE vector */
#define BATCH_MAX	8	/* SQEs in one io_uring submission */
#ifndef MUTATE_PCT
#define MUTATE_PCT	12	/* default share of mutated calls */
#endif
#ifndef DRAIN_PCT
#define DRAIN_PCT	0	/* default share of SQEs with IOSQE_IO_DRAIN */
#endif

/* A kernel address: never a user pointer, never a user range. */
#define KERNEL_ADDR	0xffff888000000000ull

/* ------------------------------------------------------------ results */

/* The results a call may have, as bits: R(0) for success, R(EINVAL)... */
static const int known_errnos[] = {
	0, EINVAL, EFAULT, ENOTTY, EDQUOT, EBADF, EOPNOTSUPP, ECANCELED, EPERM, ENOMEM,
};
#define NR_RESULTS	(sizeof(known_errnos) / sizeof(known_errnos[0]))

static unsigned int result_bit(int err)
{
	for (unsigned int i = 0; i < NR_RESULTS; i++)
		if (known_errnos[i] == err)
			return 1u << i;
	return 0;	/* undocumented: matches no expectation */
}
#define R(err)	result_bit(err)

/* ------------------------------------------------------------ random */

struct rng {
	uint64_t s;
};

/* splitmix64: good enough, and a thread's sequence follows from its seed. */
static uint64_t rnd(struct rng *g)
{
	uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* True with probability pct percent. */
static bool chance(struct rng *g, unsigned int pct)
{
	return rnd(g) % 100 < pct;
}

/* ------------------------------------------------------------ the pool */

/*
 * Contexts and mappings all threads use. Slots change under the lock, and
 * every change that can invalidate a call in flight (an unmap, a close)
 * bumps gen first, so a call that saw gen unchanged around it knows that
 * its descriptor and mappings were there throughout. A call that saw it
 * change may fail with EINVAL or EBADF where it would have succeeded, and
 * one made bad through the pool's state alone (bad_range()) may succeed.
 * Commands run outside the lock, so they do race with unmaps and closes;
 * touches of mapped
 * memory hold it, so that they never write to an address another thread
 * has just unmapped (and something else may have been mapped at).
 */
struct map_slot {
	char *addr;
	size_t len;
	int ctx;		/* pool context it was mapped from; -1 after close */
};

struct pool {
	pthread_mutex_t lock;
	int fds[NCTX];
	struct map_slot maps[NMAPS];
	unsigned long gen;	/* atomic */
	unsigned long ctx_gen[NCTX];	/* reopens of each context */
	int other_fd;		/* a descriptor of something else: a pipe */
	int other_fd2;		/* the pipe's other end */
	int sentinel_fd;	/* a context no command of the fuzz is issued on */
	char *sentinel;		/* its one page, quarantined for good */
};

static unsigned long gen_now(struct pool *p)
{
	return __atomic_load_n(&p->gen, __ATOMIC_SEQ_CST);
}

static void gen_bump(struct pool *p)
{
	__atomic_add_fetch(&p->gen, 1, __ATOMIC_SEQ_CST);
}

/* A random slot mapped from context ctx (ctx -1: any live mapping); -1 if none. */
static int pick_map(struct pool *p, struct rng *g, int ctx, struct map_slot *out)
{
	int start = (int)(rnd(g) % NMAPS);

	for (int i = 0; i < NMAPS; i++) {
		struct map_slot *m = &p->maps[(start + i) % NMAPS];

		if (m->addr && (ctx < 0 ? true : m->ctx == ctx)) {
			*out = *m;
			return (start + i) % NMAPS;
		}
	}
	return -1;
}

/* A random page-aligned range inside a mapping of context ctx. */
static bool pick_range(struct pool *p, struct rng *g, int ctx, struct mheap_range *r)
{
	struct map_slot m;
	size_t pages, first;
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = pick_map(p, g, ctx, &m) >= 0;
	pthread_mutex_unlock(&p->lock);
	if (!ok)
		return false;
	pages = m.len / page;
	first = rnd(g) % pages;
	r->addr = (uintptr_t)m.addr + first * page;
	r->len = (1 + rnd(g) % (pages - first)) * page;
	return true;
}

/* ------------------------------------------------------------ a worker */

struct counts {
	unsigned long calls;		/* commands issued */
	unsigned long reached;		/* ... that a handler acted on */
	unsigned long mutated;
	unsigned long by_result[NR_RESULTS];
	unsigned long vm_calls;		/* mmap/munmap/close/touch */
};

struct shared {
	struct pool *pool;
	bool uring;
	bool sqe_fields_checked;	/* uring_cmd_sees_whole_sqe() */
	unsigned int mutate_pct;
	unsigned int drain_pct;
	uint64_t seed;
	struct timespec end;
	struct reports reports;
	struct counts total;
};

struct worker {
	struct shared *sh;
	struct rng g;
	int id;
	struct counts c;
	/* Memory for bad pointers: [read-write][PROT_NONE][read-only]. */
	char *area;
	struct io_uring ring;
	bool sqe128;
	bool ring_broken;	/* a batch did not complete: stop using the ring */
	uint64_t batch;		/* batches so far: user_data is batch << 8 | index */
	/* Arguments live here, not on the stack: io_uring reads them later. */
	struct mheap_stats st[BATCH_MAX];
	struct mheap_range ranges[VEC_MAX];
};

#define AREA_RW(w)	((w)->area)
#define AREA_NONE(w)	((w)->area + page)
#define AREA_RO(w)	((w)->area + 2 * page)

#define report(w, ...) reports_add(&(w)->sh->reports, __VA_ARGS__)

/* A pointer that the kernel cannot copy a struct of size bytes through. */
static void *bad_pointer(struct worker *w, size_t size)
{
	switch (rnd(&w->g) % 5) {
	case 0: return NULL;
	case 1: return (void *)(uintptr_t)KERNEL_ADDR;
	case 2: return AREA_NONE(w);
	case 3: return AREA_NONE(w) - (size > 8 ? 8 : size / 2);	/* straddles */
	default: return w->sh->pool->sentinel;			/* quarantined */
	}
}

/*
 * A range no command on a pool context may accept (EINVAL). Returns true
 * when it is bad only as the pool stands now (a mapping of another context,
 * one running past its mapping's end): if another thread unmaps that
 * mapping and maps again before the command runs, the address may then
 * start a mapping of this very context long enough to make it good.
 */
static bool bad_range(struct worker *w, int ctx, struct mheap_range *r)
{
	struct pool *p = w->sh->pool;
	struct map_slot m;
	int other;

	/*
	 * Misaligned by setting low bits, not adding them: a call may get two
	 * bad ranges, and two additions may sum to a page, leaving a good
	 * range one page on.
	 */
	switch (rnd(&w->g) % 9) {
	case 0: r->addr |= 1 + rnd(&w->g) % (page - 1); break;	/* misaligned */
	case 1: r->len |= 1 + rnd(&w->g) % (page - 1); break;
	case 2: r->len = 0; break;
	case 3:	/* wraps around */
		r->addr = UINT64_MAX & ~(uint64_t)(page - 1);
		r->len = 2 * page;
		break;
	case 4: r->addr = KERNEL_ADDR; break;
	case 5: r->addr = (uintptr_t)AREA_RW(w); r->len = page; break;	/* not the device */
	case 6: r->addr = (uintptr_t)p->sentinel; r->len = page; break;	/* another context */
	case 7:	/* a mapping of another context, or of a closed one */
		other = (int)((ctx + 1 + rnd(&w->g) % (NCTX - 1)) % NCTX);
		if (pick_range(p, &w->g, other, r))
			return true;
		r->addr = (uintptr_t)p->sentinel;
		r->len = page;
		break;
	default:	/* runs past the end of its mapping */
		pthread_mutex_lock(&p->lock);
		if (pick_map(p, &w->g, ctx, &m) >= 0) {
			r->addr = (uintptr_t)m.addr;
			r->len = m.len + page;
			pthread_mutex_unlock(&p->lock);
			return true;
		}
		r->len = 0;
		pthread_mutex_unlock(&p->lock);
		break;
	}
	return false;
}

static int bad_fd(struct worker *w, int *err, int other_err)
{
	if (rnd(&w->g) % 2) {
		*err = other_err;
		return w->sh->pool->other_fd;
	}
	*err = EBADF;
	return rnd(&w->g) % 2 ? -1 : 1000 + (int)(rnd(&w->g) % 1000);
}

/* Where a result lands in the counts. */
static void count_result(struct worker *w, int err, bool reached, bool mutated)
{
	for (unsigned int i = 0; i < NR_RESULTS; i++)
		if (known_errnos[i] == err)
			w->c.by_result[i]++;
	w->c.calls++;
	w->c.reached += reached;
	w->c.mutated += mutated;
}

#endif /* MHEAP_KMOD_FUZZ_H */
