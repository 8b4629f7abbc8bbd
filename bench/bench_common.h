/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmark drivers: clocks (wall and CPU time), a
 * small deterministic PRNG, bookkeeping memory that never goes through the
 * allocator under test, and the process memory counters (VmRSS, VmHWM,
 * minor faults).
 *
 * The bookkeeping arrays (pointer tables, size tables, permutations) come
 * from mmap and are pre-faulted before the baseline is taken, so they cost
 * the same in every configuration (preloaded, linked or plain glibc) and do
 * not show up in the workload's minor-fault count.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_UNUSED __attribute__((unused))

static BENCH_UNUSED double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (every thread, user and system), in
 * seconds: for a single-threaded driver, its wall time less the time other
 * tasks ran in its place (arena_bench says why that matters). */
static BENCH_UNUSED double cpu_now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: tiny, fast, and the same sequence for every allocator. */
static BENCH_UNUSED uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static BENCH_UNUSED size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static BENCH_UNUSED void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static BENCH_UNUSED void oom(size_t n)
{
	fprintf(stderr, "bench: allocation of %zu bytes failed\n", n);
	exit(3);
}

/* Pre-faulted, zeroed memory that bypasses the allocator under test. */
static BENCH_UNUSED void *bk_alloc(size_t n)
{
	void *p;

	if (n == 0)
		n = 1;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 0, n);
	return p;
}

static BENCH_UNUSED void bk_free(void *p, size_t n)
{
	if (p)
		munmap(p, n ? n : 1);
}

/* A random permutation of 0..n-1. */
static BENCH_UNUSED uint32_t *bk_perm(size_t n, uint64_t seed)
{
	uint32_t *perm = bk_alloc(n * sizeof(*perm));
	size_t i;

	for (i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (i = n; i > 1; i--) {
		size_t j = (size_t)(rng_next(&seed) % i);
		uint32_t t = perm[i - 1];

		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	return perm;
}

/* One field of /proc/self/status in kB, or -1. No malloc: plain read(2). */
static BENCH_UNUSED long proc_status_kb(const char *field)
{
	char buf[8192];
	size_t flen = strlen(field);
	ssize_t n, got = 0;
	char *p;
	int fd;

	fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while ((size_t)got < sizeof(buf) - 1 &&
	       (n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	buf[got] = '\0';
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, field, flen) == 0 && p[flen] == ':')
			return strtol(p + flen + 1, NULL, 10);
	}
	return -1;
}

struct mem_snap {
	long rss_kb;
	long hwm_kb;
	long minflt;
	long majflt;
};

static BENCH_UNUSED void mem_snap(struct mem_snap *m)
{
	struct rusage ru;

	m->rss_kb = proc_status_kb("VmRSS");
	m->hwm_kb = proc_status_kb("VmHWM");
	getrusage(RUSAGE_SELF, &ru);
	m->minflt = ru.ru_minflt;
	m->majflt = ru.ru_majflt;
}

static BENCH_UNUSED void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static BENCH_UNUSED void spin_pause(unsigned *spins)
{
	if (++*spins < 64) {
		__builtin_ia32_pause();
	} else {
		*spins = 0;
		sched_yield();
	}
}

/* A non-negative number with an optional K or M suffix, for key=value
 * arguments; exits with a message on anything else. */
static inline long parse_num(const char *k, const char *v)
{
	char *end;
	long x = strtol(v, &end, 0);

	if (*end == 'k' || *end == 'K')
		x *= 1024, end++;
	else if (*end == 'm' || *end == 'M')
		x *= 1024 * 1024, end++;
	if (*end || x < 0) {
		fprintf(stderr, "bench: bad value for %s: %s\n", k, v);
		exit(1);
	}
	return x;
}

#endif /* BENCH_COMMON_H */
