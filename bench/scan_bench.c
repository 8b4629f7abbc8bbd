// SPDX-License-Identifier: MIT
/*
 * The quarantine scan (userlib/scan.c, arena_scan.c), two measurements:
 *
 *   scan_bench heap MIB
 *       A live heap of MIB MiB of small objects (16-512 bytes, random
 *       words that are not pointers into the quarantine, one in 64 a
 *       pointer to another object), one freed arena in quarantine that no
 *       word points into, then mh_quarantine_release(): the scan reads
 *       every root, and the figures come from mh_stats. Prints
 *       "heap_mib=... scan_ms=... pause_ms=... bytes_mib=... gbps=...".
 *
 *   scan_bench workload
 *       An arena-heavy program: a live heap of 256 MiB of small objects
 *       and a stream of 4,000 short arenas (each 1-3 MiB of objects, freed
 *       at once; reuse off, so each free faults its chunks and fills the
 *       quarantine), a tenth of the heap's objects replaced as they go.
 *       Prints "seconds=... cpu_seconds=... maxrss_mib=...
 *       peak_rss_pte_mib=... maps=... scans=... scan_ms=..." (scan_ms: the
 *       scans' length, mh_stats' quarantine_scan_ns; CPU time, user and
 *       system, is what a shared machine leaves comparable; peak_rss_pte_mib and maps count what quarantine holds
 *       besides address space: page tables, VMAs). Run with
 *       MHEAP_QUARANTINE_SCAN=1 and =0 to compare (bench/Makefile's scan
 *       target interleaves them).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mheap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Objects of a live heap of about bytes, in a table of their own. */
struct heap {
	void **obj;
	size_t n;
};

static void heap_build(struct heap *h, size_t bytes)
{
	size_t cap = bytes / 48 + 16, used = 0;

	h->obj = malloc(cap * sizeof(void *));
	h->n = 0;
	while (used < bytes && h->n < cap) {
		size_t sz = 16 + next() % 497;
		uint64_t *o = mh_malloc(sz);

		for (size_t w = 0; w < sz / 8; w++)
			o[w] = next() & 0xffffffffull;	/* far below the heap */
		if (h->n && next() % 64 == 0)
			o[0] = (uintptr_t)h->obj[next() % h->n];
		h->obj[h->n++] = o;
		used += sz;
	}
}

/* A freed arena, in a frame of its own: its address must not stay in
 * heap_scan's. */
static __attribute__((noinline)) void arena_freed(void)
{
	mh_arena *ar = mh_arena_new();

	memset(mh_arena_alloc(ar, 4096, 0), 1, 4096);
	mh_arena_free(ar);
}

static int heap_scan(size_t mib)
{
	struct heap h;
	struct mh_stats a = MH_STATS_INIT, b = MH_STATS_INIT;

	heap_build(&h, mib << 20);
	arena_freed();
	mh_stats_read(&a);
	mh_quarantine_release();
	mh_stats_read(&b);
	double ns = (double)(b.quarantine_scan_ns - a.quarantine_scan_ns);
	double bytes = (double)(b.quarantine_scan_bytes - a.quarantine_scan_bytes);

	printf("heap_mib=%zu scan_ms=%.2f pause_ms=%.2f bytes_mib=%.0f gbps=%.2f released=%llu\n",
	       mib, ns / 1e6, b.quarantine_scan_max_pause_ns / 1e6, bytes / (1 << 20),
	       bytes / ns, (unsigned long long)(b.arena_releases_scan - a.arena_releases_scan));
	return 0;
}

/* A field of /proc/self/status in kB (VmPTE: the page tables, which the
 * guard backend keeps for quarantined chunks: its markers live in them). */
static long status_kib(const char *field)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = strtol(line + strlen(field), NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* The process's mappings (VMAs; vm.max_map_count bounds them). */
static long map_count(void)
{
	char line[512];
	long n = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		n += !!strchr(line, '\n');
	if (f)
		fclose(f);
	return n;
}

static int workload(void)
{
	struct heap h;
	struct rusage ru;
	struct mh_stats st = MH_STATS_INIT;
	long peak_kib = 0;
	double t0 = now();

	heap_build(&h, (size_t)256 << 20);
	for (int i = 0; i < 4000; i++) {
		mh_arena *a = mh_arena_new();
		size_t target = ((size_t)1 << 20) + next() % ((size_t)2 << 20), used = 0;

		while (used < target) {
			size_t sz = 16 + next() % 241;
			uint64_t *o = mh_arena_alloc(a, sz, 0);

			o[0] = used;
			used += sz;
		}
		for (int k = 0; k < 200; k++) {
			size_t j = next() % h.n;

			mh_free(h.obj[j]);
			h.obj[j] = mh_malloc(16 + next() % 497);
		}
		mh_arena_free(a);
		if (i % 50 == 0) {
			long kib = status_kib("VmRSS:") + status_kib("VmPTE:");

			if (kib > peak_kib)
				peak_kib = kib;
		}
	}
	double secs = now() - t0;

	getrusage(RUSAGE_SELF, &ru);
	mh_stats_read(&st);
	printf("seconds=%.3f cpu_seconds=%.3f maxrss_mib=%.1f peak_rss_pte_mib=%.1f maps=%ld "
	       "scans=%llu scan_ms=%.1f kept=%llu\n", secs,
	       ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
	       ru.ru_maxrss / 1024.0, peak_kib / 1024.0, map_count(),
	       (unsigned long long)st.quarantine_scans, st.quarantine_scan_ns / 1e6,
	       (unsigned long long)st.arena_chunks_kept);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "heap"))
		return heap_scan(strtoul(argv[2], NULL, 10));
	if (argc == 2 && !strcmp(argv[1], "workload"))
		return workload();
	fprintf(stderr, "usage: scan_bench heap MIB | scan_bench workload\n");
	return 2;
}
