/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fuzz's io_uring transport (kmod_fuzz_test.c, variant io_uring): a
 * batch of IORING_OP_URING_CMD SQEs (FAULT, RELEASE, STATS) with random
 * IOSQE_ASYNC and IOSQE_IO_LINK, on 64- or 128-byte SQEs, a minority
 * mutated (from 6.5 also in the SQE fields reserved for the module, which
 * 6.1 does not show it); each completion checked against its plan,
 * everything after a link's first failure cancelled, a link io_uring
 * rejects at prep cancelled whole.
 */
#ifndef MHEAP_KMOD_FUZZ_URING_H
#define MHEAP_KMOD_FUZZ_URING_H

#include "kmod_fuzz.h"

/* ------------------------------------------------------------ io_uring */

/* Mutations of one io_uring command; each comment says what it must cause. */
enum uring_mutation {
	UM_OP,		/* an unknown cmd_op: -ENOTTY */
	UM_FD,		/* not the device (-EOPNOTSUPP) or no descriptor (-EBADF) */
	UM_CMD_FLAGS,	/* uring_cmd_flags set: io_uring or we refuse (-EINVAL, -EFAULT) */
	UM_PAD,		/* the upper half of off set: io_uring refuses (-EINVAL) */
	UM_ARG,		/* a bad range, or a bad STATS argument: -EINVAL or -EFAULT */
	UM_TAIL,	/* a 128-byte SQE's command area has bytes past the argument */
	UM_RESERVED,	/* addr, len, buf_index or file_index set (from 6.5): -EINVAL */
	UM_NR
};

struct sqe_plan {
	unsigned int expect;	/* results as bits, of the errno (positive) */
	unsigned int valid;	/* ... had it not been mutated */
	bool pool_bad_only;	/* mutated by bad_range() alone, as the pool stood */
	bool prep_fails;	/* io_uring rejects it before issuing: its link dies whole */
	bool linked;		/* IOSQE_IO_LINK: the next SQE belongs to its link */
	bool mutated;
	unsigned int muts;	/* 1 << enum uring_mutation, for the report */
	uint8_t flags;
	uint32_t op;
	struct mheap_range r;	/* a range command's argument, for the report */
};

/* The SQE fields reserved for the module (uapi/linux/mheap.h). */
static const struct {
	size_t off, size;
} reserved_sqe_fields[] = {
	{ offsetof(struct io_uring_sqe, addr), 8 },
	{ offsetof(struct io_uring_sqe, len), 4 },
	{ offsetof(struct io_uring_sqe, buf_index), 2 },
	{ offsetof(struct io_uring_sqe, file_index), 4 },
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
	bool cmd_flags = false, pad = false, tail = false, resv = false;
	bool pool_bad = false, other_mutation = false;
	unsigned int mutations = 0;
	uint8_t flags = 0;

	memset(pl, 0, sizeof(*pl));
	pthread_mutex_lock(&p->lock);
	fd = p->fds[ctx];
	pthread_mutex_unlock(&p->lock);
	if (op != MHEAP_URING_CMD_STATS && !pick_range(p, &w->g, ctx, &r))
		op = MHEAP_URING_CMD_STATS;	/* the context has no mapping now */
	pl->expect = R(0) | (op == MHEAP_URING_CMD_FAULT ? R(EDQUOT) : 0);
	pl->valid = pl->expect;
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
		if (um == UM_RESERVED && !w->sh->sqe_fields_checked)
			um = UM_ARG;	/* 6.1: the module cannot see them */
		pl->muts |= 1u << um;
		if (um != UM_ARG || op == MHEAP_URING_CMD_STATS)
			other_mutation = true;
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
		case UM_RESERVED:
			resv = true;
			pl->expect |= R(EINVAL);
			break;
		default:	/* UM_ARG */
			if (op != MHEAP_URING_CMD_STATS) {
				/*
				 * The last of two decides: one bad through the pool
				 * sets address and length anew, any other is bad
				 * whatever the pool.
				 */
				pool_bad = bad_range(w, ctx, &r);
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
	pl->r = r;
	if (w->sqe128)
		memset(area + 16, 0, 64);
	if (cmd_flags)
		sqe->uring_cmd_flags = (uint32_t)rnd(&w->g) | 1;
	if (pad)
		sqe->__pad1 = (uint32_t)rnd(&w->g) | 1;
	if (tail)
		area[16 + rnd(&w->g) % 64] = (unsigned char)(rnd(&w->g) | 1);
	if (resv) {
		unsigned int f = (unsigned int)(rnd(&w->g) % 4);

		((unsigned char *)sqe)[reserved_sqe_fields[f].off +
				       rnd(&w->g) % reserved_sqe_fields[f].size] =
			(unsigned char)(rnd(&w->g) | 1);
	}
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
	pl->pool_bad_only = pl->mutated && pool_bad && !other_mutation;
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

			if (raced) {
				expect |= R(EINVAL) | R(EBADF);
				if (pl[i].pool_bad_only)
					expect |= pl[i].valid;
			}
			if (prep_fails)
				expect = pl[i].prep_fails ? expect & ~R(0) : R(ECANCELED);
			else if (failed)
				expect = R(ECANCELED);
			if (!(expect & R(err)))
				report(w, "io_uring %#x mutations %#x flags %#x range %#llx+%#llx%s "
				       "(SQE %u of %u, link %u-%u): %d", pl[i].op, pl[i].muts,
				       pl[i].flags, (unsigned long long)pl[i].r.addr,
				       (unsigned long long)pl[i].r.len,
				       raced ? (pl[i].pool_bad_only ? " raced, bad through the pool"
						: " raced") : "", i, n, start, end - 1, res[i]);
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

#endif /* MHEAP_KMOD_FUZZ_URING_H */
