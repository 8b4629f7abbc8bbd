/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fuzz's ioctl transport (kmod_fuzz_test.c, variant ioctl): one
 * ioctl of a random kind (VERSION, FAULT and RELEASE with range vectors,
 * STATS, SET_LIMIT) on a pool context, mostly valid, a minority mutated in
 * one or two ways, and its result checked against what its mutations
 * document.
 */
#ifndef MHEAP_KMOD_FUZZ_IOCTL_H
#define MHEAP_KMOD_FUZZ_IOCTL_H

#include "kmod_fuzz.h"

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
	unsigned int expect = 0, valid, nr = 0, bad_at = VEC_MAX + 1, mutations = 0, muts = 0;
	bool arg_broken = false, check_done = true, reached, pool_bad_only = true;
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

	valid = expect;

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
			if (!bad_range(w, ctx, &w->ranges[bad_at]))
				pool_bad_only = false;
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
		if (im != IM_RANGE)
			pool_bad_only = false;
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
		if (mutations && pool_bad_only)
			expect |= valid;
		check_done = false;
	}
	if (!(expect & R(ret)))
		report(w, "ioctl %s mutations %#x on fd %d%s: %s", kind_name[kind], muts, fd,
		       gen_now(p) != gen0 ? " (raced)" : "", ret ? strerrorname_np(ret) : "success");
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

#endif /* MHEAP_KMOD_FUZZ_IOCTL_H */
