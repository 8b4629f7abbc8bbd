// SPDX-License-Identifier: GPL-2.0
/*
 * A structure-aware fuzz of /dev/mheap's commands, as a kselftest.
 *
 * Random bytes mostly die in the first check of a handler (an unknown
 * command number, a non-zero reserved field, a bad pointer) and never reach
 * the code that does the work. So this fuzz generates mostly valid calls:
 * known command numbers with their own struct, reserved fields and flags
 * zero, page-aligned ranges inside live mappings of the very descriptor the
 * command is issued on; and it mutates a minority of them (MUTATE_PCT) in
 * one or two ways, each of which has a documented errno. Several threads
 * share a pool of contexts and mappings and, between commands, unmap and
 * map again, close and reopen, and touch the memory. Each variant drives
 * the commands through one interface: ioctl() (with range vectors) or
 * io_uring (batches of IORING_OP_URING_CMD with random IOSQE_ASYNC and
 * IOSQE_IO_LINK; half the threads use 128-byte SQEs).
 *
 * Every call has an oracle: a valid call succeeds (FAULT may also get
 * EDQUOT, under the context's limit; a vector reports all its ranges done);
 * a mutated one fails with its mutation's errno (a bad range at index k:
 * EINVAL with k ranges done); in an io_uring link, everything after the
 * first failure is cancelled, and a link with an SQE that io_uring itself
 * rejects is cancelled whole. Where another thread unmapped or closed
 * something during the call (a generation count says so) EINVAL and EBADF
 * are allowed as well. The documented results, all told:
 *   ioctl:    0, EINVAL, EFAULT, ENOTTY, EDQUOT, EBADF
 *   io_uring: 0, -EINVAL, -EFAULT, -ENOTTY, -EDQUOT, -EBADF,
 *             -EOPNOTSUPP (not the device), -ECANCELED (linked)
 *   mmap:     EINVAL (not MAP_SHARED, an offset), EPERM (PROT_EXEC),
 *             ENOMEM (past MHEAP_MAP_MAX); partial munmap: EINVAL
 * The global quarantine limit is system state and left alone.
 *
 * The run lasts MHEAP_FUZZ_SECONDS (default 3) per test. The seed is
 * printed; MHEAP_FUZZ_SEED=<hex> replays each thread's sequence of calls
 * (their interleaving is up to the scheduler). MHEAP_FUZZ_MUTATE=<percent>
 * changes the share of mutated calls: at 100 every call is broken somehow,
 * as in an unstructured fuzz, and most_calls_reach_a_handler fails.
 * MHEAP_FUZZ_DRAIN=<percent> adds IOSQE_IO_DRAIN to that share of SQEs.
 * It is off by default: on both kernels the VM boots (6.1.192, 6.12.95)
 * io_uring itself leaves a drained SQE uncompleted behind SQEs it refused
 * at prep, with no command of this module in the batch at all (seen with
 * IORING_OP_NOP and IORING_OP_URING_CMD on a pipe; 6.18 completes it), so
 * the fuzz would report io_uring's hang as the module's.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
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
 * its descriptor and mappings were there throughout. Commands run outside
 * the lock, so they do race with unmaps and closes; touches of mapped
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

/* A range no command on a pool context may accept (EINVAL). */
static void bad_range(struct worker *w, int ctx, struct mheap_range *r)
{
	struct pool *p = w->sh->pool;
	struct map_slot m;
	int other;

	switch (rnd(&w->g) % 9) {
	case 0: r->addr += 1 + rnd(&w->g) % (page - 1); break;	/* misaligned */
	case 1: r->len += 1 + rnd(&w->g) % (page - 1); break;
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
		if (!pick_range(p, &w->g, other, r)) {
			r->addr = (uintptr_t)p->sentinel;
			r->len = page;
		}
		break;
	default:	/* runs past the end of its mapping */
		pthread_mutex_lock(&p->lock);
		if (pick_map(p, &w->g, ctx, &m) >= 0) {
			r->addr = (uintptr_t)m.addr;
			r->len = m.len + page;
		} else {
			r->len = 0;
		}
		pthread_mutex_unlock(&p->lock);
		break;
	}
}

static bool known_ioctl(unsigned long cmd)
{
	return cmd == MHEAP_IOC_VERSION || cmd == MHEAP_IOC_FAULT || cmd == MHEAP_IOC_RELEASE ||
	       cmd == MHEAP_IOC_STATS || cmd == MHEAP_IOC_SET_LIMIT;
}

/*
 * An unknown command of the module's own type byte: a random number could
 * be one of the VFS's generic ioctls, which act on the file, not on the
 * module.
 */
static unsigned long unknown_ioctl(struct rng *g)
{
	unsigned long cmd;

	do {
		cmd = _IOC(rnd(g) % 4, MHEAP_IOC_MAGIC, rnd(g) % 256, rnd(g) % (1 << 14));
	} while (known_ioctl(cmd));
	return cmd;
}

/* The descriptor a mutated call goes to, and the errno it then gets. */
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

/* ------------------------------------------------------------ ioctl */

enum kind { K_VERSION, K_FAULT, K_RELEASE, K_STATS, K_LIMIT, K_NR };

static const char *const kind_name[] = { "VERSION", "FAULT", "RELEASE", "STATS", "SET_LIMIT" };

static const unsigned long kind_cmd[] = {
	MHEAP_IOC_VERSION, MHEAP_IOC_FAULT, MHEAP_IOC_RELEASE, MHEAP_IOC_STATS,
	MHEAP_IOC_SET_LIMIT,
};

/* Mutations of an ioctl; each comment says what it must cause. */
enum ioctl_mutation {
	IM_CMD,		/* an unknown command: ENOTTY */
	IM_FD,		/* not the device (ENOTTY) or no descriptor (EBADF) */
	IM_ARG,		/* the argument pointer is bad: EFAULT */
	IM_ARG_RO,	/* the argument is read-only: EFAULT if written, else 0 */
	IM_FIELD,	/* a reserved field, flag or size is wrong: EINVAL */
	IM_RANGE,	/* range k of the vector is bad: EINVAL, k done */
	IM_VECTOR,	/* the vector's pointer is bad: EFAULT, none done */
	IM_OVERRUN,	/* nr runs past the array into PROT_NONE: EFAULT */
	IM_NR
};

static void one_ioctl(struct worker *w)
{
	struct pool *p = w->sh->pool;
	union {
		struct mheap_version v;
		struct mheap_ranges r;
		struct mheap_stats st;
		struct mheap_limit lim;
	} a;
	enum kind kind = (enum kind)(rnd(&w->g) % K_NR);
	unsigned long cmd = kind_cmd[kind];
	int ctx = (int)(rnd(&w->g) % NCTX), fd, err, ret;
	unsigned int expect = 0, nr = 0, bad_at = VEC_MAX + 1, mutations = 0, muts = 0;
	bool arg_broken = false, check_done = true, reached;
	size_t size = _IOC_SIZE(cmd);
	unsigned long gen0;
	void *arg = &a;

	/* A valid call first. */
	memset(&a, 0, sizeof(a));
	gen0 = gen_now(p);	/* before anything of the pool is read */
	pthread_mutex_lock(&p->lock);
	fd = p->fds[ctx];
	pthread_mutex_unlock(&p->lock);
	switch (kind) {
	case K_FAULT:
	case K_RELEASE:
		nr = chance(&w->g, 10) ? 0 : 1 + (unsigned int)(rnd(&w->g) % VEC_MAX);
		for (unsigned int i = 0; i < nr; i++)
			if (!pick_range(p, &w->g, ctx, &w->ranges[i]))
				nr = i;
		a.r.ranges = (uintptr_t)w->ranges;
		a.r.nr = nr;
		expect = R(0) | (kind == K_FAULT ? R(EDQUOT) : 0);
		break;
	case K_STATS:
		a.st.size = sizeof(a.st);
		expect = R(0);
		break;
	case K_LIMIT:
		a.lim.bytes = chance(&w->g, 75) ? MHEAP_LIMIT_NONE :
			      rnd(&w->g) % (NMAPS * MAP_PAGES) * page;
		expect = R(0);
		break;
	default:
		expect = R(0);
		break;
	}

	/* A minority mutated, in one or two ways. */
	if (chance(&w->g, w->sh->mutate_pct)) {
		/* A FAULT may meet the limit before what is broken in it. */
		expect = kind == K_FAULT ? R(EDQUOT) : 0;
		mutations = 1 + (unsigned int)(rnd(&w->g) % 2);
	}
	for (unsigned int m = 0; m < mutations; m++) {
		enum ioctl_mutation im = (enum ioctl_mutation)(rnd(&w->g) % IM_NR);
		bool vector = kind == K_FAULT || kind == K_RELEASE;

		/* Range mutations only for vectors, one per call. */
		if ((im >= IM_RANGE && (!vector || bad_at <= VEC_MAX)) ||
		    (im == IM_FIELD && kind == K_VERSION))
			im = IM_ARG;
		muts |= 1u << im;
		switch (im) {
		case IM_CMD:
			cmd = unknown_ioctl(&w->g);
			expect |= R(ENOTTY);
			break;
		case IM_FD:
			fd = bad_fd(w, &err, ENOTTY);
			expect |= R(err);
			break;
		case IM_ARG:
			arg = bad_pointer(w, size);
			arg_broken = true;
			expect |= R(EFAULT);
			break;
		case IM_ARG_RO:
			arg_broken = true;
			expect |= kind == K_LIMIT ? R(0) : R(EFAULT);
			break;
		case IM_FIELD:
			switch (kind) {
			case K_STATS:
				if (rnd(&w->g) % 3 == 0)
					a.st.size = (uint32_t)rnd(&w->g) | 1;
				else if (rnd(&w->g) % 2)
					a.st.flags = (uint32_t)rnd(&w->g) | 1;
				else
					a.st.reserved = rnd(&w->g) | 1;
				break;
			case K_LIMIT:
				if (rnd(&w->g) % 2)
					a.lim.flags = ((uint32_t)rnd(&w->g) | 2) & ~MHEAP_LIMIT_GLOBAL;
				else
					a.lim.reserved = (uint32_t)rnd(&w->g) | 1;
				break;
			default:
				if (rnd(&w->g) % 2)
					a.r.flags = (uint32_t)rnd(&w->g) | 1;
				else
					a.r.reserved = (uint32_t)rnd(&w->g) | 1;
				break;
			}
			expect |= R(EINVAL);
			break;
		case IM_RANGE:
			if (!nr)
				w->ranges[nr++].len = page;	/* made bad below */
			bad_at = (unsigned int)(rnd(&w->g) % nr);
			bad_range(w, ctx, &w->ranges[bad_at]);
			a.r.nr = nr;
			expect |= R(EINVAL);
			break;
		case IM_VECTOR:
			a.r.ranges = (uintptr_t)bad_pointer(w, sizeof(struct mheap_range));
			a.r.nr = nr ? nr : 1;
			bad_at = 0;
			expect |= R(EFAULT);
			break;
		default:	/* IM_OVERRUN: the array ends where PROT_NONE starts */
			memcpy(AREA_NONE(w) - nr * sizeof(struct mheap_range), w->ranges,
			       nr * sizeof(struct mheap_range));
			a.r.ranges = (uintptr_t)(AREA_NONE(w) - nr * sizeof(struct mheap_range));
			a.r.nr = nr + 1 + (unsigned int)(rnd(&w->g) % 1000);
			bad_at = nr;
			expect |= R(EFAULT);
			break;
		}
		if (im <= IM_FIELD && im != IM_ARG_RO)
			check_done = false;
		if (im == IM_ARG_RO) {
			/* The struct as built so far, in a page the kernel cannot write. */
			mprotect(AREA_RO(w), page, PROT_READ | PROT_WRITE);
			arg = AREA_RO(w);
			memcpy(arg, &a, sizeof(a));
			mprotect(AREA_RO(w), page, PROT_READ);
			check_done = false;
		}
	}
	if (arg == &a && (kind == K_FAULT || kind == K_RELEASE))
		a.r.done = 0;	/* so that done > 0 means the kernel wrote it */

	ret = ioctl(fd, cmd, arg) ? errno : 0;

	/* Another thread unmapped or closed something meanwhile. */
	if (gen_now(p) != gen0) {
		expect |= R(EINVAL) | R(EBADF);
		check_done = false;
	}
	if (!(expect & R(ret)))
		report(w, "ioctl %s mutations %#x on fd %d: %s", kind_name[kind], muts, fd,
		       ret ? strerrorname_np(ret) : "success");
	reached = ret == 0 || ret == EDQUOT;
	if (kind == K_FAULT || kind == K_RELEASE) {
		if (!arg_broken && a.r.done > 0)
			reached = true;
		/* A vector stops exactly at its first bad range. */
		if (check_done && !arg_broken && ret != EDQUOT &&
		    a.r.done != (ret ? bad_at : a.r.nr))
			report(w, "ioctl %s: %s with %u of %u ranges done, expected %u",
			       kind_name[kind], ret ? strerrorname_np(ret) : "success", a.r.done,
			       a.r.nr, ret ? bad_at : a.r.nr);
	}
	if (kind == K_VERSION && ret == 0 && !arg_broken && a.v.major != MHEAP_VERSION_MAJOR)
		report(w, "VERSION says major %u", a.v.major);
	if (kind == K_STATS && ret == 0 && !arg_broken && a.st.size != sizeof(a.st))
		report(w, "STATS filled %u bytes", a.st.size);
	count_result(w, ret, reached && !mutations, mutations);
}

/* ------------------------------------------------------------ io_uring */

/* Mutations of one io_uring command; each comment says what it must cause. */
enum uring_mutation {
	UM_OP,		/* an unknown cmd_op: -ENOTTY */
	UM_FD,		/* not the device (-EOPNOTSUPP) or no descriptor (-EBADF) */
	UM_CMD_FLAGS,	/* uring_cmd_flags set: io_uring or we refuse (-EINVAL, -EFAULT) */
	UM_PAD,		/* the upper half of off set: io_uring refuses (-EINVAL) */
	UM_ARG,		/* a bad range, or a bad STATS argument: -EINVAL or -EFAULT */
	UM_TAIL,	/* a 128-byte SQE's command area has bytes past the argument */
	UM_NR
};

struct sqe_plan {
	unsigned int expect;	/* results as bits, of the errno (positive) */
	bool prep_fails;	/* io_uring rejects it before issuing: its link dies whole */
	bool linked;		/* IOSQE_IO_LINK: the next SQE belongs to its link */
	bool mutated;
	unsigned int muts;	/* 1 << enum uring_mutation, for the report */
	uint8_t flags;
	uint32_t op;
};

static const uint32_t uring_ops[] = {
	MHEAP_URING_CMD_FAULT, MHEAP_URING_CMD_RELEASE, MHEAP_URING_CMD_STATS,
};

static void plan_sqe(struct worker *w, unsigned int i, struct sqe_plan *pl)
{
	struct pool *p = w->sh->pool;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	int ctx = (int)(rnd(&w->g) % NCTX), fd, err;
	uint32_t op = uring_ops[rnd(&w->g) % 3];
	unsigned char *area = (unsigned char *)sqe + offsetof(struct io_uring_sqe, cmd);
	struct mheap_uring_stats sarg = { 0 };
	struct mheap_range r = { 0 };
	bool cmd_flags = false, pad = false, tail = false;
	unsigned int mutations = 0;
	uint8_t flags = 0;

	memset(pl, 0, sizeof(*pl));
	pthread_mutex_lock(&p->lock);
	fd = p->fds[ctx];
	pthread_mutex_unlock(&p->lock);
	if (op != MHEAP_URING_CMD_STATS && !pick_range(p, &w->g, ctx, &r))
		op = MHEAP_URING_CMD_STATS;	/* the context has no mapping now */
	pl->expect = R(0) | (op == MHEAP_URING_CMD_FAULT ? R(EDQUOT) : 0);
	w->st[i].size = 0;
	sarg.stats = (uintptr_t)&w->st[i];
	sarg.size = MHEAP_STATS_SIZE_V1;

	if (chance(&w->g, w->sh->mutate_pct)) {
		pl->expect = 0;
		pl->mutated = true;
		mutations = 1 + (unsigned int)(rnd(&w->g) % 2);
	}
	for (unsigned int m = 0; m < mutations; m++) {
		enum uring_mutation um = (enum uring_mutation)(rnd(&w->g) % UM_NR);

		if (um == UM_TAIL && !w->sqe128)
			um = UM_ARG;
		pl->muts |= 1u << um;
		switch (um) {
		case UM_OP:
			do {
				op = (uint32_t)rnd(&w->g);
			} while (op == uring_ops[0] || op == uring_ops[1] || op == uring_ops[2]);
			pl->expect |= R(ENOTTY);
			break;
		case UM_FD:
			fd = bad_fd(w, &err, EOPNOTSUPP);
			pl->expect |= R(err);
			break;
		case UM_CMD_FLAGS:	/* FIXED without buffers: io_uring says EFAULT */
			cmd_flags = pl->prep_fails = true;
			pl->expect |= R(EINVAL) | R(EFAULT);
			break;
		case UM_PAD:
			pad = pl->prep_fails = true;
			pl->expect |= R(EINVAL);
			break;
		case UM_TAIL:
			tail = true;
			pl->expect |= R(EINVAL);
			break;
		default:	/* UM_ARG */
			if (op != MHEAP_URING_CMD_STATS) {
				bad_range(w, ctx, &r);
				pl->expect |= R(EINVAL);
			} else if (rnd(&w->g) % 3 == 0) {
				sarg.flags = (uint32_t)rnd(&w->g) | 1;
				pl->expect |= R(EINVAL);
			} else if (rnd(&w->g) % 2) {
				sarg.size = (uint32_t)(rnd(&w->g) % MHEAP_STATS_SIZE_V1);
				pl->expect |= R(EINVAL);
			} else {
				sarg.stats = (uintptr_t)bad_pointer(w, MHEAP_STATS_SIZE_V1);
				pl->expect |= R(EFAULT);
			}
			break;
		}
	}

	if (op == MHEAP_URING_CMD_STATS)
		prep_cmd(sqe, fd, op, &sarg, sizeof(sarg), w->batch << 8 | i);
	else
		prep_cmd(sqe, fd, op, &r, sizeof(r), w->batch << 8 | i);
	if (w->sqe128)
		memset(area + 16, 0, 64);
	if (cmd_flags)
		sqe->uring_cmd_flags = (uint32_t)rnd(&w->g) | 1;
	if (pad)
		sqe->__pad1 = (uint32_t)rnd(&w->g) | 1;
	if (tail)
		area[16 + rnd(&w->g) % 64] = (unsigned char)(rnd(&w->g) | 1);
	if (chance(&w->g, 33))
		flags |= IOSQE_ASYNC;
	if (chance(&w->g, 33))
		flags |= IOSQE_IO_LINK;
	if (chance(&w->g, w->sh->drain_pct))
		flags |= IOSQE_IO_DRAIN;
	sqe->flags = flags;
	pl->flags = flags;
	pl->linked = flags & IOSQE_IO_LINK;
	pl->op = op;
}

/*
 * Check the results of a batch link by link. A link is a run of SQEs each
 * flagged IOSQE_IO_LINK but the last. If io_uring refused an SQE of the
 * link when preparing it, that SQE gets its own error and the rest of the
 * link -ECANCELED; otherwise they run in order and after the first failure
 * the rest are -ECANCELED.
 */
static void check_batch(struct worker *w, const struct sqe_plan *pl, const int *res,
			unsigned int n, bool raced)
{
	for (unsigned int start = 0, end; start < n; start = end) {
		bool prep_fails = false, failed = false;

		for (end = start; end < n; end++) {
			prep_fails |= pl[end].prep_fails;
			if (!pl[end].linked) {
				end++;
				break;
			}
		}
		for (unsigned int i = start; i < end; i++) {
			unsigned int expect = pl[i].expect;
			int err = -res[i];

			if (raced)
				expect |= R(EINVAL) | R(EBADF);
			if (prep_fails)
				expect = pl[i].prep_fails ? expect & ~R(0) : R(ECANCELED);
			else if (failed)
				expect = R(ECANCELED);
			if (!(expect & R(err)))
				report(w, "io_uring %#x mutations %#x flags %#x (SQE %u of %u, link %u-%u): %d",
				       pl[i].op, pl[i].muts, pl[i].flags, i, n, start, end - 1,
				       res[i]);
			failed |= res[i] < 0;
			count_result(w, err, !pl[i].mutated && (res[i] == 0 || err == EDQUOT),
				     pl[i].mutated);
			if (res[i] == 0 && pl[i].op == MHEAP_URING_CMD_STATS &&
			    w->st[i].size != MHEAP_STATS_SIZE_V1)
				report(w, "io_uring STATS filled %u bytes", w->st[i].size);
		}
	}
}

static void one_batch(struct worker *w)
{
	struct __kernel_timespec ts = { .tv_sec = 10 };
	unsigned int n = 1 + (unsigned int)(rnd(&w->g) % BATCH_MAX), got = 0;
	struct sqe_plan pl[BATCH_MAX];
	struct io_uring_cqe *cqe;
	int res[BATCH_MAX], ret;
	unsigned long gen0;

	if (w->ring_broken)
		return;
	w->batch++;
	gen0 = gen_now(w->sh->pool);
	for (unsigned int i = 0; i < n; i++) {
		plan_sqe(w, i, &pl[i]);
		res[i] = 1;	/* no command completes with 1 */
	}
	ret = io_uring_submit(&w->ring);
	if (ret != (int)n) {
		report(w, "io_uring_submit of %u SQEs: %d", n, ret);
		w->ring_broken = true;
		return;
	}
	while (got < n && !io_uring_wait_cqe_timeout(&w->ring, &cqe, &ts)) {
		uint64_t i = cqe->user_data & 0xff;

		/* Each command completes once, in its own batch. */
		if (cqe->user_data >> 8 != w->batch || i >= n || res[i] != 1)
			report(w, "io_uring: a stray completion %#llx (%d) in batch %llu",
			       (unsigned long long)cqe->user_data, cqe->res,
			       (unsigned long long)w->batch);
		else
			res[i] = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		got++;
	}
	if (got < n) {
		report(w, "io_uring: only %u of %u commands completed in 10 s", got, n);
		w->ring_broken = true;
		return;
	}
	check_batch(w, pl, res, n, gen_now(w->sh->pool) != gen0);
}

/* ------------------------------------------------------------ memory */

/* Map a new mapping into a random slot, unmapping the old one. */
static void remap(struct worker *w)
{
	struct pool *p = w->sh->pool;
	size_t len = (1 + rnd(&w->g) % MAP_PAGES) * page;
	int slot = (int)(rnd(&w->g) % NMAPS), ctx = (int)(rnd(&w->g) % NCTX), fd;
	unsigned long ctx_gen;
	struct map_slot old;
	char *m;

	pthread_mutex_lock(&p->lock);
	fd = p->fds[ctx];
	ctx_gen = p->ctx_gen[ctx];
	pthread_mutex_unlock(&p->lock);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	w->c.vm_calls++;
	if (m == MAP_FAILED) {
		/* Only if the descriptor was closed meanwhile. */
		if (errno != EBADF && errno != ENODEV)
			report(w, "mmap of %zu bytes: %s", len, strerror(errno));
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->ctx_gen[ctx] != ctx_gen) {
		/* Reopened meanwhile: fd may now be another context's. */
		pthread_mutex_unlock(&p->lock);
		munmap(m, len);
		return;
	}
	old = p->maps[slot];
	p->maps[slot] = (struct map_slot){ .addr = m, .len = len, .ctx = ctx };
	if (old.addr) {
		gen_bump(p);
		/* A part of it cannot go: the mapping cannot be split. */
		if (old.len > page && chance(&w->g, 10) &&
		    (munmap(old.addr + page, page) != -1 || errno != EINVAL))
			report(w, "partial munmap did not fail with EINVAL");
		if (munmap(old.addr, old.len))
			report(w, "munmap: %s", strerror(errno));
	}
	pthread_mutex_unlock(&p->lock);
}

/* mmap() arguments the device refuses, each with its errno. */
static void bad_mmap(struct worker *w)
{
	int fd = w->sh->pool->sentinel_fd, want, prot = PROT_READ | PROT_WRITE;
	int flags = MAP_SHARED;
	size_t len = page;
	off_t off = 0;
	void *m;

	switch (rnd(&w->g) % 4) {
	case 0: flags = MAP_PRIVATE; want = EINVAL; break;
	case 1: off = (off_t)page; want = EINVAL; break;
	case 2: prot |= PROT_EXEC; want = EPERM; break;
	default: len = MHEAP_MAP_MAX + page; want = ENOMEM; break;
	}
	m = mmap(NULL, len, prot, flags, fd, off);
	w->c.vm_calls++;
	if (m != MAP_FAILED) {
		munmap(m, len);
		report(w, "a bad mmap succeeded (expected %s)", strerror(want));
	} else if (errno != want) {
		report(w, "bad mmap: %s, expected %s", strerror(errno), strerror(want));
	}
}

/* Close a context and open a new one; its mappings live on, orphaned. */
static void reopen(struct worker *w)
{
	struct pool *p = w->sh->pool;
	int ctx = (int)(rnd(&w->g) % NCTX), fd = dev_open(), old;

	if (fd < 0) {
		report(w, "open: %s", strerror(errno));
		return;
	}
	pthread_mutex_lock(&p->lock);
	old = p->fds[ctx];
	p->fds[ctx] = fd;
	for (int i = 0; i < NMAPS; i++)
		if (p->maps[i].ctx == ctx)
			p->maps[i].ctx = -1;
	p->ctx_gen[ctx]++;
	gen_bump(p);
	pthread_mutex_unlock(&p->lock);
	close(old);
	w->c.vm_calls++;
}

/* Write a byte of a pool mapping; SIGSEGV only where it is quarantined. */
static void touch(struct worker *w)
{
	struct pool *p = w->sh->pool;
	struct map_slot m;
	int sig;

	pthread_mutex_lock(&p->lock);
	if (pick_map(p, &w->g, -1, &m) >= 0) {
		char *a = m.addr + rnd(&w->g) % m.len;

		sig = try_write(a, 1);
		if (sig && (sig != SIGSEGV || probe_addr != a))
			report(w, "touch of %p: signal %d at %p", a, sig, probe_addr);
	}
	pthread_mutex_unlock(&p->lock);
	w->c.vm_calls++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!deadline_passed(&w->sh->end)) {
		unsigned int op = (unsigned int)(rnd(&w->g) % 100);

		if (op < 86)
			w->sh->uring ? one_batch(w) : one_ioctl(w);
		else if (op < 91)
			touch(w);
		else if (op < 96)
			remap(w);
		else if (op < 98)
			bad_mmap(w);
		else
			reopen(w);
	}
	return NULL;
}

/* ------------------------------------------------------------ the run */

static uint64_t fuzz_seed(void)
{
	const char *s = getenv("MHEAP_FUZZ_SEED");
	struct timespec now;

	if (s && *s)
		return strtoull(s, NULL, 16);
	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20) ^ (uint64_t)getpid();
}

FIXTURE(fuzz) {
	struct pool pool;
	struct shared sh;
	struct worker w[NTHREADS];
	uint64_t commands_before;	/* the module's, all contexts */
	uint64_t commands_served;	/* ... during the run */
	int splats;
};

FIXTURE_VARIANT(fuzz) {
	bool uring;
};

FIXTURE_VARIANT_ADD(fuzz, ioctl) {
	.uring = false,
};

FIXTURE_VARIANT_ADD(fuzz, io_uring) {
	.uring = true,
};

FIXTURE_SETUP(fuzz)
{
	struct pool *p = &self->pool;
	struct mheap_stats st;
	int pipefd[2];

	memset(p, 0, sizeof(*p));
	p->sentinel_fd = -1;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (variant->uring && uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	probes_install();
	self->splats = kernel_log_splats();
	pthread_mutex_init(&p->lock, NULL);
	for (int i = 0; i < NCTX; i++) {
		p->fds[i] = dev_open();
		ASSERT_LE(0, p->fds[i]);
	}
	for (int i = 0; i < NMAPS; i++) {
		p->maps[i].len = (1 + i % MAP_PAGES) * page;
		p->maps[i].ctx = i % NCTX;
		p->maps[i].addr = dev_map(p->fds[i % NCTX], p->maps[i].len);
		ASSERT_NE(NULL, p->maps[i].addr);
	}
	/* Not /dev/null: it serves every io_uring command with 0 (since 6.0). */
	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	p->other_fd = pipefd[0];
	p->other_fd2 = pipefd[1];
	p->sentinel_fd = dev_open();
	ASSERT_LE(0, p->sentinel_fd);
	p->sentinel = dev_map(p->sentinel_fd, page);
	ASSERT_NE(NULL, p->sentinel);
	ASSERT_EQ(0, kfault(p->sentinel_fd, p->sentinel, page));

	memset(&self->sh, 0, sizeof(self->sh));
	self->sh.pool = p;
	self->sh.uring = variant->uring;
	self->sh.seed = fuzz_seed();
	self->sh.mutate_pct = env_uint("MHEAP_FUZZ_MUTATE", MUTATE_PCT);
	self->sh.drain_pct = env_uint("MHEAP_FUZZ_DRAIN", DRAIN_PCT);
	reports_init(&self->sh.reports);
	for (int i = 0; i < NTHREADS; i++) {
		struct worker *w = &self->w[i];
		struct io_uring_params params = { .flags = IORING_SETUP_SUBMIT_ALL };

		memset(w, 0, sizeof(*w));
		w->sh = &self->sh;
		w->id = i;
		w->g.s = self->sh.seed + (uint64_t)i * 0x632be59bd9b4e019ull;
		w->area = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, w->area);
		ASSERT_EQ(0, mprotect(AREA_NONE(w), page, PROT_NONE));
		if (!variant->uring)
			continue;
		w->sqe128 = i % 2;
		if (w->sqe128)
			params.flags |= IORING_SETUP_SQE128;
		ASSERT_EQ(0, io_uring_queue_init_params(2 * BATCH_MAX, &w->ring, &params));
	}
	ASSERT_EQ(0, kstats(p->fds[0], &st));
	self->commands_before = st.global.commands;
}

FIXTURE_TEARDOWN(fuzz)
{
}

/* Run the fuzz, then close and unmap everything it used. */
static void fuzz_run(struct __test_metadata *_metadata, FIXTURE_DATA(fuzz) *self,
		     const FIXTURE_VARIANT(fuzz) *variant)
{
	unsigned int secs = env_uint("MHEAP_FUZZ_SECONDS", 3);
	struct pool *p = &self->pool;
	struct mheap_stats st;
	pthread_t t[NTHREADS];

	TH_LOG("seed %#llx (MHEAP_FUZZ_SEED to replay), %u%% mutated, %u%% drained, %u s, "
	       "%d threads, %s", (unsigned long long)self->sh.seed, self->sh.mutate_pct,
	       self->sh.drain_pct, secs, NTHREADS, variant->uring ? "io_uring" : "ioctl");
	self->sh.end = deadline_in(secs);
	for (int i = 0; i < NTHREADS; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, worker_main, &self->w[i]));
	for (int i = 0; i < NTHREADS; i++) {
		struct counts *c = &self->w[i].c, *tot = &self->sh.total;

		pthread_join(t[i], NULL);
		tot->calls += c->calls;
		tot->reached += c->reached;
		tot->mutated += c->mutated;
		tot->vm_calls += c->vm_calls;
		for (unsigned int r = 0; r < NR_RESULTS; r++)
			tot->by_result[r] += c->by_result[r];
	}
	/* Counted before its snapshot: this STATS is one of the commands. */
	ASSERT_EQ(0, kstats(p->sentinel_fd, &st));
	self->commands_served = st.global.commands - self->commands_before - 1;

	for (int i = 0; i < NTHREADS; i++) {
		if (variant->uring)
			io_uring_queue_exit(&self->w[i].ring);
		munmap(self->w[i].area, 3 * page);
	}
	for (int i = 0; i < NMAPS; i++)
		if (p->maps[i].addr)
			munmap(p->maps[i].addr, p->maps[i].len);
	for (int i = 0; i < NCTX; i++)
		close(p->fds[i]);
	munmap(p->sentinel, page);
	close(p->sentinel_fd);
	close(p->other_fd);
	close(p->other_fd2);
}

TEST_F(fuzz, every_call_returns_its_documented_result)
{
	const struct counts *c = &self->sh.total;

	RETURN_IF_SETUP_SKIPPED();
	fuzz_run(_metadata, self, variant);
	TH_LOG("%lu commands (%lu mutated), %lu mmap/munmap/close/touch", c->calls, c->mutated,
	       c->vm_calls);
	for (unsigned int r = 0; r < NR_RESULTS; r++)
		if (c->by_result[r])
			TH_LOG("  %-12s %lu", known_errnos[r] ? strerrorname_np(known_errnos[r]) : "0",
			       c->by_result[r]);
	EXPECT_NE(0, c->calls);
	EXPECT_NO_REPORTS(&self->sh.reports);
}

/*
 * Reaching a handler: the module acted on the call (it succeeded, or hit
 * the quarantine limit, or did some ranges of a vector) rather than
 * refusing it at a check. Mutated calls never count. The module's own
 * count of commands served (all it dispatched, refused or not) lies
 * between that and the number of calls.
 */
TEST_F(fuzz, most_calls_reach_a_handler)
{
	const struct counts *c = &self->sh.total;

	RETURN_IF_SETUP_SKIPPED();
	fuzz_run(_metadata, self, variant);
	ASSERT_NE(0, c->calls);
	TH_LOG("%lu of %lu calls reached a handler (%.1f%%); the module served %llu (%.1f%%)",
	       c->reached, c->calls, 100.0 * c->reached / c->calls,
	       (unsigned long long)self->commands_served,
	       100.0 * self->commands_served / c->calls);
	EXPECT_LT(c->calls, 2 * c->reached);
	EXPECT_LE(c->reached, self->commands_served);
	EXPECT_GE(c->calls, self->commands_served);
}

TEST_F(fuzz, the_kernel_log_stays_clean)
{
	RETURN_IF_SETUP_SKIPPED();
	fuzz_run(_metadata, self, variant);
	if (self->splats < 0)
		SKIP(return, "kernel log unreadable (%s): vm-init.sh checks it", strerror(errno));
	EXPECT_EQ(self->splats, kernel_log_splats())
		TH_LOG("new BUG/WARNING/Oops lines in the kernel log");
}

TEST_F(fuzz, every_counter_returns_to_zero_after_close)
{
	RETURN_IF_SETUP_SKIPPED();
	fuzz_run(_metadata, self, variant);
	expect_module_idle(_metadata);
}

TEST_HARNESS_MAIN
