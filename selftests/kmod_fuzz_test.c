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
 * are allowed as well, and so is success for a call whose one flaw was a
 * range bad only as the pool stood (another context's mapping, or past its
 * mapping's end): the address may have been mapped again meanwhile, by the
 * call's own context. The documented results, all told:
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
 * The generator is in headers this file alone includes: kmod_fuzz.h (the
 * pool, the workers, the bad arguments), kmod_fuzz_ioctl.h and
 * kmod_fuzz_uring.h (each transport's calls and their oracle); here are
 * the workers' memory calls, the run and the tests.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include "kmod_fuzz.h"
#include "kmod_fuzz_ioctl.h"
#include "kmod_fuzz_uring.h"

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
	self->sh.sqe_fields_checked = uring_cmd_sees_whole_sqe();
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
