// SPDX-License-Identifier: MIT
/*
 * fault_bench: what it costs to fault and release one arena chunk with each
 * fault backend, and how many quarantined ranges each backend holds before
 * it fails.
 *
 *   kmod-ioctl  /dev/mheap, MHEAP_IOC_FAULT / MHEAP_IOC_RELEASE, the
 *               mapping advised MADV_HUGEPAGE (2 MiB pages, as a big
 *               arena's chunks take them)
 *   kmod-uring  /dev/mheap, the same as IORING_OP_URING_CMD (liburing)
 *   guard       anonymous memory, MADV_GUARD_INSTALL, then MADV_GUARD_REMOVE
 *               (Linux 6.13+; skipped=unsupported elsewhere)
 *   mprotect    anonymous memory, mprotect(PROT_NONE) + MADV_DONTNEED, then
 *               mprotect(PROT_READ | PROT_WRITE): the library's fallback,
 *               in transparent huge pages where the system default gives
 *               them (as the library's big arena chunks are); every chunk
 *               is mapped 2 MiB-aligned, as the library's and the module's
 *               are, so that it is whole huge pages wherever it lands
 *   mprotect-4k the same advised MADV_NOHUGEPAGE: small pages, as the module
 *               always has, so the per-page costs compare
 *   none        anonymous memory left as it is (the cost of not faulting)
 *
 * It talks to the kernel directly rather than through libmheap, so that the
 * numbers are those of the mechanisms alone, except in test=arena, which
 * is the library end to end. The cycle, batch and arena tests
 * interleave the backends (one cycle of each in turn), so that a noisy
 * machine slows them all alike and their ratios hold. Every line it prints
 * is "fault_bench key=value ...":
 *
 *   test=cycle     one chunk, faulted then released, N times: medians and
 *                  minima in microseconds of the FAULT, of the RELEASE, and
 *                  of touching every page again afterwards (what the next
 *                  arena pays); fill=touched has every page of the chunk
 *                  resident before the FAULT (a chunk that was used up),
 *                  fill=sparse one page only
 *   test=batch     16 chunks faulted and released in one call (an ioctl
 *                  vector, 16 linked SQEs in one submission, 16 mprotect
 *                  pairs): cost per chunk
 *   test=arena     the library: a big arena of ARENA_CHUNKS chunks' worth
 *                  of data (8 MiB each, the default chunk size), every
 *                  page written (fill), then mh_arena_free() (free), in a
 *                  process of its own per backend (this program again,
 *                  with MHEAP_BACKEND set and -A: the library chooses its
 *                  backend once per process), ARENA_ROUNDS arenas one
 *                  after the other in each, the processes of the backends
 *                  in turn; medians in microseconds per chunk over the
 *                  rounds after each process's first. kmod advises a big
 *                  arena's chunks MADV_HUGEPAGE as the anonymous backends
 *                  do (userlib/arena_hugepages.c); mprotect's freed full
 *                  chunks move warm (userlib/arena_warm.c), so its next
 *                  fill takes no page faults; mprotect-norecycle
 *                  (MHEAP_ARENA_RECYCLE=0) faults them as kmod does
 *   test=capacity  one-page ranges quarantined until the backend refuses:
 *                  kmod stops at its quarantine limit (set here to
 *                  -l bytes for this context, EDQUOT) with the mapping
 *                  still one VMA; mprotect stops near vm.max_map_count
 *                  (ENOMEM)
 *
 * Usage: fault_bench [-c chunk_bytes] [-n cycles] [-l kmod_limit_bytes]
 * (-c does not apply to test=arena: the library's chunks are its own)
 * Without /dev/mheap the kmod lines say skipped=no-device.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "mheap.h"

#define BATCH 16

static size_t page, chunk = 8u << 20;
static int cycles = 30;
static uint64_t kmod_limit = 1ull << 30;

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

enum backend { KMOD_IOCTL, KMOD_URING, GUARD, MPROTECT, MPROTECT_4K, NONE, NBACKENDS };
static const char *const names[] = {
	"kmod-ioctl", "kmod-uring", "guard", "mprotect", "mprotect-4k", "none"
};

static int dev = -1;
static struct io_uring ring;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "fault_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double minimum(const double *v, int n)
{
	double m = v[0];

	for (int i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

/* ------------------------------------------------------------ backends */

#define HUGE_ALIGN (2u << 20)

/* Anonymous memory at a HUGE_ALIGN-aligned address: map more, trim. */
static void *map_anon_aligned(size_t len)
{
	char *p = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	size_t head;

	if (p == MAP_FAILED)
		return p;
	head = -(uintptr_t)p & (HUGE_ALIGN - 1);
	if (head)
		munmap(p, head);
	munmap(p + head + len, HUGE_ALIGN - head);
	return p + head;
}

static char *map_chunks(enum backend b, size_t len)
{
	void *p;

	/* The module aligns its own mappings of 2 MiB and more. */
	if (b != KMOD_IOCTL && b != KMOD_URING)
		p = map_anon_aligned(len);
	else
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (b == MPROTECT_4K && madvise(p, len, MADV_NOHUGEPAGE))
		die("madvise(MADV_NOHUGEPAGE)");
	if ((b == KMOD_IOCTL || b == KMOD_URING) && madvise(p, len, MADV_HUGEPAGE))
		die("madvise(MADV_HUGEPAGE)");
	return p;
}

static int kmod_ioctl(unsigned long cmd, char *const *base, int n, size_t len)
{
	struct mheap_range r[BATCH];
	struct mheap_ranges a = { .ranges = (uintptr_t)r, .nr = (uint32_t)n };

	for (int i = 0; i < n; i++) {
		r[i].addr = (uintptr_t)base[i];
		r[i].len = len;
	}
	return ioctl(dev, cmd, &a) ? -errno : 0;
}

static int kmod_uring(uint32_t op, char *const *base, int n, size_t len)
{
	struct io_uring_cqe *cqe;
	int err = 0;

	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct mheap_range r = { (uintptr_t)base[i], len };

		io_uring_prep_rw(IORING_OP_URING_CMD, sqe, dev, NULL, 0, 0);
		sqe->cmd_op = op;
		memcpy((char *)sqe + offsetof(struct io_uring_sqe, cmd), &r, sizeof(r));
		if (i + 1 < n)
			sqe->flags |= IOSQE_IO_LINK;
	}
	if (io_uring_submit_and_wait(&ring, (unsigned int)n) < 0)
		die("io_uring_submit_and_wait");
	for (int i = 0; i < n; i++) {
		if (io_uring_wait_cqe(&ring, &cqe))
			die("io_uring_wait_cqe");
		if (cqe->res < 0 && !err)
			err = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
	}
	return err;
}

static void do_fault(enum backend b, char *const *base, int n, size_t len)
{
	int err = 0;

	switch (b) {
	case KMOD_IOCTL:
		err = kmod_ioctl(MHEAP_IOC_FAULT, base, n, len);
		break;
	case KMOD_URING:
		err = kmod_uring(MHEAP_URING_CMD_FAULT, base, n, len);
		break;
	case GUARD:
		for (int i = 0; i < n && !err; i++)
			if (madvise(base[i], len, MADV_GUARD_INSTALL))
				err = -errno;
		break;
	case MPROTECT:
	case MPROTECT_4K:
		for (int i = 0; i < n && !err; i++) {
			if (mprotect(base[i], len, PROT_NONE))
				err = -errno;
			madvise(base[i], len, MADV_DONTNEED);
		}
		break;
	default:
		break;
	}
	if (err) {
		errno = -err;
		die("fault");
	}
}

static void do_release(enum backend b, char *const *base, int n, size_t len)
{
	int err = 0;

	switch (b) {
	case KMOD_IOCTL:
		err = kmod_ioctl(MHEAP_IOC_RELEASE, base, n, len);
		break;
	case KMOD_URING:
		err = kmod_uring(MHEAP_URING_CMD_RELEASE, base, n, len);
		break;
	case GUARD:
		for (int i = 0; i < n && !err; i++)
			if (madvise(base[i], len, MADV_GUARD_REMOVE))
				err = -errno;
		break;
	case MPROTECT:
	case MPROTECT_4K:
		for (int i = 0; i < n && !err; i++)
			if (mprotect(base[i], len, PROT_READ | PROT_WRITE))
				err = -errno;
		break;
	default:
		break;
	}
	if (err) {
		errno = -err;
		die("release");
	}
}

static void touch(char *p, size_t len, size_t step)
{
	for (size_t off = 0; off < len; off += step)
		((volatile char *)p)[off] = 1;
}

/* ------------------------------------------------------------ tests */

/* Why each backend cannot run here (NULL: it can), found once by main(). */
static const char *why_not[NBACKENDS];

/* True, after printing test's skipped line, if backend b cannot run. */
static bool skipped(const char *test, int b)
{
	if (why_not[b])
		printf("fault_bench test=%s backend=%s skipped=%s\n", test, names[b], why_not[b]);
	return why_not[b] != NULL;
}

/* Per backend: the median of each measured quantity, over the cycles. */
struct samples {
	double *v[3];
};

static void samples_init(struct samples *s)
{
	for (int k = 0; k < 3; k++) {
		s->v[k] = calloc((size_t)cycles, sizeof(double));
		if (!s->v[k])
			die("calloc");
	}
}

static void samples_free(struct samples *s)
{
	for (int k = 0; k < 3; k++)
		free(s->v[k]);
}

static void cycle_once(enum backend b, char *p, bool full, struct samples *s, int i)
{
	double t0, t1, t2, t3;

	t0 = now_us();
	do_fault(b, &p, 1, chunk);
	t1 = now_us();
	do_release(b, &p, 1, chunk);
	t2 = now_us();
	/* What the next user of the chunk pays to bring it back. */
	touch(p, full ? chunk : page, page);
	t3 = now_us();
	s->v[0][i] = t1 - t0;
	s->v[1][i] = t2 - t1;
	s->v[2][i] = t3 - t2;
}

/* One chunk per backend, faulted and released by each backend in turn. */
static void cycle(bool full)
{
	struct samples s[NBACKENDS];
	char *p[NBACKENDS];

	for (int b = 0; b < NBACKENDS; b++) {
		if (why_not[b])
			continue;
		samples_init(&s[b]);
		p[b] = map_chunks((enum backend)b, chunk);
		touch(p[b], full ? chunk : page, page);
	}
	for (int i = 0; i < cycles; i++)
		for (int b = 0; b < NBACKENDS; b++)
			if (!why_not[b])
				cycle_once((enum backend)b, p[b], full, &s[b], i);
	for (int b = 0; b < NBACKENDS; b++) {
		if (skipped("cycle", b))
			continue;
		printf("fault_bench test=cycle backend=%s chunk_kib=%zu fill=%s n=%d"
		       " fault_us_med=%.1f fault_us_min=%.1f release_us_med=%.1f"
		       " release_us_min=%.1f touch_us_med=%.1f\n",
		       names[b], chunk >> 10, full ? "touched" : "sparse", cycles,
		       median(s[b].v[0], cycles), minimum(s[b].v[0], cycles),
		       median(s[b].v[1], cycles), minimum(s[b].v[1], cycles),
		       median(s[b].v[2], cycles));
		munmap(p[b], chunk);
		samples_free(&s[b]);
	}
}

static void batch_once(enum backend b, char **base, struct samples *s, int i)
{
	double t0, t1, t2;

	for (int c = 0; c < BATCH; c++)
		touch(base[c], page, page);
	t0 = now_us();
	do_fault(b, base, BATCH, chunk);
	t1 = now_us();
	do_release(b, base, BATCH, chunk);
	t2 = now_us();
	s->v[0][i] = (t1 - t0) / BATCH;
	s->v[1][i] = (t2 - t1) / BATCH;
}

/* BATCH chunks per backend, each backend's batch in turn. */
static void batch(void)
{
	struct samples s[NBACKENDS];
	char *base[NBACKENDS][BATCH];

	for (int b = 0; b < NBACKENDS; b++) {
		if (why_not[b])
			continue;
		samples_init(&s[b]);
		/* Separate mappings, as the library's chunks are. */
		for (int c = 0; c < BATCH; c++)
			base[b][c] = map_chunks((enum backend)b, chunk);
	}
	for (int i = 0; i < cycles; i++)
		for (int b = 0; b < NBACKENDS; b++)
			if (!why_not[b])
				batch_once((enum backend)b, base[b], &s[b], i);
	for (int b = 0; b < NBACKENDS; b++) {
		if (skipped("batch", b))
			continue;
		printf("fault_bench test=batch backend=%s chunks=%d chunk_kib=%zu fill=sparse n=%d"
		       " fault_us_per_chunk_med=%.1f release_us_per_chunk_med=%.1f\n",
		       names[b], BATCH, chunk >> 10, cycles, median(s[b].v[0], cycles),
		       median(s[b].v[1], cycles));
		for (int c = 0; c < BATCH; c++)
			munmap(base[b][c], chunk);
		samples_free(&s[b]);
	}
}

static long max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

static int vmas_in(uintptr_t lo, uintptr_t hi)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e;
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < hi && e > lo)
			n++;
	fclose(f);
	return n;
}

static void capacity_kmod(void)
{
	size_t ranges_max = kmod_limit / page + 1;
	size_t len = (2 * ranges_max + 1) * page;
	struct mheap_limit lim = { .bytes = kmod_limit };
	struct mheap_range r[1024];
	size_t held = 0;
	int err = 0;
	double t0, t1;
	char *p = map_chunks(KMOD_IOCTL, len);

	if (ioctl(dev, MHEAP_IOC_SET_LIMIT, &lim))
		die("MHEAP_IOC_SET_LIMIT");
	t0 = now_us();
	while (!err && held < ranges_max) {
		struct mheap_ranges a = { .ranges = (uintptr_t)r, .nr = 1024 };

		for (int i = 0; i < 1024; i++) {
			r[i].addr = (uintptr_t)(p + (2 * (held + (size_t)i) + 1) * page);
			r[i].len = page;
		}
		if (ioctl(dev, MHEAP_IOC_FAULT, &a))
			err = errno;
		held += a.done;
	}
	t1 = now_us();
	printf("fault_bench test=capacity backend=kmod ranges=%zu stop=%s limit_bytes=%llu"
	       " vmas=%d us_per_range=%.2f max_map_count=%ld\n",
	       held, err == EDQUOT ? "EDQUOT" : err ? strerror(err) : "none",
	       (unsigned long long)kmod_limit, vmas_in((uintptr_t)p, (uintptr_t)p + len),
	       (t1 - t0) / (held ? held : 1), max_map_count());
	struct mheap_range all = { (uintptr_t)p, len };
	struct mheap_ranges a = { .ranges = (uintptr_t)&all, .nr = 1 };

	ioctl(dev, MHEAP_IOC_RELEASE, &a);
	lim.bytes = MHEAP_LIMIT_NONE;
	ioctl(dev, MHEAP_IOC_SET_LIMIT, &lim);
	munmap(p, len);
}

static void capacity_mprotect(void)
{
	long maxc = max_map_count();
	size_t ranges_max = (size_t)(maxc > 0 ? maxc : 65530) + 1000;
	size_t len = (2 * ranges_max + 1) * page, held = 0;
	char *p = map_chunks(MPROTECT, len);
	int err = 0, vmas_before = vmas_in(0, UINTPTR_MAX);
	double t0, t1;

	t0 = now_us();
	while (held < ranges_max) {
		if (mprotect(p + (2 * held + 1) * page, page, PROT_NONE)) {
			err = errno;
			break;
		}
		held++;
	}
	t1 = now_us();
	printf("fault_bench test=capacity backend=mprotect ranges=%zu stop=%s"
	       " vmas=%d other_vmas=%d us_per_range=%.2f max_map_count=%ld\n",
	       held, err == ENOMEM ? "ENOMEM" : err ? strerror(err) : "none",
	       vmas_in((uintptr_t)p, (uintptr_t)p + len), vmas_before - 1,
	       (t1 - t0) / (held ? held : 1), maxc);
	munmap(p, len);
}

/* Guard regions split nothing: quarantine as many one-page ranges as kmod
 * holds under its limit and count the VMAs afterwards. */
static void capacity_guard(void)
{
	size_t ranges = (size_t)(kmod_limit / page), len = (2 * ranges + 1) * page, held = 0;
	char *p = map_chunks(GUARD, len);
	int err = 0;
	double t0, t1;

	t0 = now_us();
	while (held < ranges) {
		if (madvise(p + (2 * held + 1) * page, page, MADV_GUARD_INSTALL)) {
			err = errno;
			break;
		}
		held++;
	}
	t1 = now_us();
	printf("fault_bench test=capacity backend=guard ranges=%zu stop=%s vmas=%d"
	       " us_per_range=%.2f\n", held, err ? "error" : "cap",
	       vmas_in((uintptr_t)p, (uintptr_t)p + len), (t1 - t0) / (held ? held : 1));
	munmap(p, len);
}

/* ------------------------------------------------------------ the library */

#define ARENA_CHUNK	(8u << 20)	/* the library's default chunk size */
#define ARENA_CHUNKS	4
#define ARENA_ROUNDS	4
#define ARENA_PROCS	5	/* processes per backend */
#define ARENA_PIECE	(64u << 10)

/*
 * -A: ARENA_ROUNDS rounds of one arena of ARENA_CHUNKS chunks' worth of
 * data, every page written, then freed; "fill free" in microseconds per
 * round on stdout.
 */
static int arena_child(void)
{
	size_t bytes = ARENA_CHUNKS * ARENA_CHUNK;

	mh_arena_free(mh_arena_new());	/* the library's set-up, not timed */
	for (int r = 0; r < ARENA_ROUNDS; r++) {
		mh_arena *a = mh_arena_new();
		double t0, t1, t2;

		if (!a)
			die("mh_arena_new");
		t0 = now_us();
		for (size_t n = 0; n < bytes; n += ARENA_PIECE) {
			char *p = mh_arena_alloc(a, ARENA_PIECE, 0);

			if (!p)
				die("mh_arena_alloc");
			for (size_t i = 0; i < ARENA_PIECE; i += page)
				p[i] = 1;
		}
		t1 = now_us();
		mh_arena_free(a);
		t2 = now_us();
		printf("%.1f %.1f\n", t1 - t0, t2 - t1);
	}
	return 0;
}

/* The library's configurations measured: a backend, and an option. */
static const struct {
	const char *name, *backend, *option;
} lib[] = {
	{ "kmod", "kmod", NULL },
	{ "guard", "guard", NULL },
	{ "mprotect", "mprotect", NULL },
	/* Freed full chunks faulted, not moved warm: kmod's way. */
	{ "mprotect-norecycle", "mprotect", "MHEAP_ARENA_RECYCLE=0" },
};
#define NLIB (sizeof(lib) / sizeof(lib[0]))

/* Run this program with -A under configuration l; its rounds after the
 * first into fill[] and freed[] from *n on. False if it failed, and why on
 * stderr. */
static bool arena_proc(unsigned l, double *fill, double *freed, int *n)
{
	char buf[512], *line, *save;
	int fds[2], status;
	ssize_t len, got = 0;
	pid_t pid;

	if (pipe(fds))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		dup2(fds[1], 1);
		close(fds[0]);
		setenv("MHEAP_BACKEND", lib[l].backend, 1);
		if (lib[l].option)
			putenv((char *)lib[l].option);
		execl("/proc/self/exe", "fault_bench", "-A", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (got < (ssize_t)sizeof(buf) - 1 &&
	       (len = read(fds[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += len;
	buf[got] = '\0';
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "fault_bench: -A as %s: status %#x, output \"%s\"\n",
			lib[l].name, status, buf);
		return false;
	}
	line = strtok_r(buf, "\n", &save);
	for (int r = 0; line; r++, line = strtok_r(NULL, "\n", &save)) {
		if (r == 0)
			continue;
		if (sscanf(line, "%lf %lf", &fill[*n], &freed[*n]) != 2)
			return false;
		++*n;
	}
	return true;
}

/* The library's configurations that work here, their processes in turn. */
static void arena(void)
{
	enum { PER = ARENA_PROCS * (ARENA_ROUNDS - 1) };
	double fill[NLIB][PER], freed[NLIB][PER];
	const char *why[NLIB] = { NULL };
	int n[NLIB] = { 0 };

	for (unsigned l = 0; l < NLIB; l++)
		if (!strcmp(lib[l].backend, "kmod") && dev < 0)
			why[l] = "no-device";
		else if (!strcmp(lib[l].backend, "guard") && why_not[GUARD])
			why[l] = why_not[GUARD];
	for (int i = 0; i < ARENA_PROCS; i++)
		for (unsigned l = 0; l < NLIB; l++)
			if (!why[l] && !arena_proc(l, fill[l], freed[l], &n[l]))
				why[l] = "failed";
	for (unsigned l = 0; l < NLIB; l++) {
		if (why[l] || !n[l]) {
			printf("fault_bench test=arena backend=%s skipped=%s\n", lib[l].name,
			       why[l] ? why[l] : "failed");
			continue;
		}
		printf("fault_bench test=arena backend=%s chunks=%d chunk_kib=%zu n=%d"
		       " fill_us_med=%.1f free_us_med=%.1f\n",
		       lib[l].name, ARENA_CHUNKS, (size_t)ARENA_CHUNK >> 10, n[l],
		       median(fill[l], n[l]) / ARENA_CHUNKS,
		       median(freed[l], n[l]) / ARENA_CHUNKS);
	}
}

static bool guard_works(void)
{
	char *p = map_chunks(GUARD, page);
	bool ok = madvise(p, page, MADV_GUARD_INSTALL) == 0;

	munmap(p, page);
	return ok;
}

/* Why backend b cannot run here, or NULL. */
static const char *unavailable(enum backend b)
{
	if ((b == KMOD_IOCTL || b == KMOD_URING) && dev < 0)
		return "no-device";
	if (b == GUARD && !guard_works())
		return "unsupported";
	return NULL;
}

int main(int argc, char **argv)
{
	struct mheap_version v;
	int opt;

	page = (size_t)sysconf(_SC_PAGESIZE);
	while ((opt = getopt(argc, argv, "c:n:l:A")) != -1) {
		switch (opt) {
		case 'A':
			return arena_child();
		case 'c':
			chunk = (strtoull(optarg, NULL, 0) + page - 1) & ~(page - 1);
			break;
		case 'n':
			cycles = atoi(optarg);
			break;
		case 'l':
			kmod_limit = strtoull(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s [-c chunk_bytes] [-n cycles] [-l kmod_limit]\n",
				argv[0]);
			return 2;
		}
	}
	if (cycles < 1 || chunk < page)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);

	dev = open("/dev/" MHEAP_DEVICE_NAME, O_RDWR | O_CLOEXEC);
	if (dev >= 0 && (ioctl(dev, MHEAP_IOC_VERSION, &v) || v.major != MHEAP_VERSION_MAJOR ||
			 v.minor < 1)) {
		close(dev);
		dev = -1;
	}
	if (dev >= 0 && io_uring_queue_init(2 * BATCH, &ring, 0))
		die("io_uring_queue_init");
	for (int b = 0; b < NBACKENDS; b++)
		why_not[b] = unavailable((enum backend)b);

	cycle(true);
	cycle(false);
	batch();
	arena();
	if (dev >= 0)
		capacity_kmod();
	else
		printf("fault_bench test=capacity backend=kmod skipped=no-device\n");
	if (!skipped("capacity", GUARD))
		capacity_guard();
	capacity_mprotect();
	return 0;
}
