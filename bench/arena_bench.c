// SPDX-License-Identifier: MIT
/*
 * arena_bench: bulk allocation and bulk free, arenas against malloc.
 *
 *   arena_bench WORKLOAD VARIANT [key=value ...]
 *
 * Workloads:
 *   bulk      `objects` small objects (sizes uniform in [min,max]) allocated
 *             into one arena which is then freed at once; `iters` times,
 *             after `warmup` untimed rounds (default 0). A warm-up round
 *             measures the steady state of a program that does this again
 *             and again: malloc and mimalloc heaps then reuse memory they
 *             already faulted in, while an arena still faults its chunks
 *             every round, by design. Without it the first round also
 *             times the process's first touch of memory, which on a VM
 *             whose host reclaims free guest memory varies with what ran
 *             before (huge pages from reclaimed memory cost ~7 ms each).
 *   requests  `requests` short-lived arenas, each filled with objects of
 *             [min,max] bytes until it holds a request size drawn uniformly
 *             from [req_min,req_max], then freed.
 *
 * Variants, by build:
 *   -DUSE_MH  arena      mh_arena_new / mh_arena_alloc / mh_arena_free
 *             noscan     the same with mh_arena_alloc_noscan
 *             malloc     mh_malloc every object, mh_free every object
 *   -DUSE_MI  heap       mi_heap_new / mi_heap_malloc / mi_heap_destroy
 *             malloc     mi_malloc / mi_free
 *   (plain)   malloc     malloc / free (LD_PRELOAD another allocator under it)
 *
 * Time. `seconds` is the CPU time of the process over the timed part
 * (CLOCK_PROCESS_CPUTIME_ID: user and system, page faults included), the
 * wall time is `wall_seconds`. The driver is single-threaded and never
 * blocks, so the two differ only by the time other tasks ran in its place:
 * on a shared machine one scheduler slice (about 4 ms here) lost inside the
 * ~6 ms the 16 B bulk arena is timed for put whole runs in a second group
 * of ~10.5 ms (measured: docs/arenas-log.md#what-decided-the-bulk-arenas-group).
 *
 * Every variant runs the same per-object loop, compiled for it alone (the
 * variant a constant, SPECIALISE), so that no row pays for a dispatch per
 * object. The malloc variants free the objects in allocation order. If the
 * arena API is not there yet (mh_arena_new returns NULL, or the build had to
 * use -DMH_NO_ARENA because libmheap.a lacks the mh_arena_* symbols) the
 * result line says status=unavailable instead of giving numbers.
 */
#define _GNU_SOURCE
#include <stdbool.h>

#include "bench_common.h"

#if defined(USE_MH)
#include "mheap.h"
#define API "mh"
#ifdef MH_NO_ARENA
/* libmheap.a has no arena API yet: every arena variant is "unavailable". */
#define mh_arena_new() ((mh_arena *)NULL)
#define mh_arena_alloc(a, s, al) ((void)(a), (void)(s), (void)(al), (void *)NULL)
#define mh_arena_alloc_noscan(a, s, al) ((void)(a), (void)(s), (void)(al), (void *)NULL)
#define mh_arena_free(a) ((void)(a))
#define NO_ARENA_REASON "mh_arena_API_not_in_libmheap.a"
#endif
#elif defined(USE_MI)
#include <mimalloc.h>
#define API "mi"
#else
#define API "libc"
#endif

struct cfg {
	const char *workload, *variant;
	long objects, iters, warmup, requests;
	size_t min, max, req_min, req_max;
	uint64_t seed;
};

enum variant { V_MALLOC, V_ARENA, V_NOSCAN, V_HEAP };

static inline void stamp(void *p, uint64_t v)
{
	*(volatile uint64_t *)p = v;
}

/* ------------------------------------------------- one "region" of objects */

struct region {
	enum variant v;
	void **ptrs;		/* malloc variants only */
	size_t n;
#if defined(USE_MH)
	mh_arena *a;
#elif defined(USE_MI)
	mi_heap_t *h;
#endif
};

/* false when the arena API is not available */
static bool region_open(struct region *r, enum variant v, void **ptrs)
{
	r->v = v;
	r->ptrs = ptrs;
	r->n = 0;
#if defined(USE_MH)
	if (v == V_ARENA || v == V_NOSCAN) {
		r->a = mh_arena_new();
		return r->a != NULL;
	}
#elif defined(USE_MI)
	if (v == V_HEAP) {
		r->h = mi_heap_new();
		return r->h != NULL;
	}
#endif
	return true;
}

/* v is r->v, passed as a constant by the specialised loops below. */
static inline __attribute__((always_inline)) void *
region_alloc(struct region *r, enum variant v, size_t size)
{
	void *p;

	switch (v) {
#if defined(USE_MH)
	case V_ARENA:
		p = mh_arena_alloc(r->a, size, 8);
		break;
	case V_NOSCAN:
		p = mh_arena_alloc_noscan(r->a, size, 8);
		break;
	case V_MALLOC:
		p = mh_malloc(size);
		r->ptrs[r->n++] = p;
		break;
#elif defined(USE_MI)
	case V_HEAP:
		p = mi_heap_malloc(r->h, size);
		break;
	case V_MALLOC:
		p = mi_malloc(size);
		r->ptrs[r->n++] = p;
		break;
#else
	case V_MALLOC:
		p = malloc(size);
		r->ptrs[r->n++] = p;
		break;
#endif
	default:
		p = NULL;
	}
	if (!p)
		oom(size);
	return p;
}

static void region_free(struct region *r)
{
	size_t i;

	switch (r->v) {
#if defined(USE_MH)
	case V_ARENA:
	case V_NOSCAN:
		mh_arena_free(r->a);
		return;
#elif defined(USE_MI)
	case V_HEAP:
		mi_heap_destroy(r->h);
		return;
#endif
	default:
		break;
	}
	for (i = 0; i < r->n; i++) {
#if defined(USE_MH)
		mh_free(r->ptrs[i]);
#elif defined(USE_MI)
		mi_free(r->ptrs[i]);
#else
		free(r->ptrs[i]);
#endif
	}
	r->n = 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: arena_bench bulk|requests VARIANT [key=value ...]\n"
		"variants in this build (" API "):"
#if defined(USE_MH)
		" arena noscan malloc\n"
#elif defined(USE_MI)
		" heap malloc\n"
#else
		" malloc\n"
#endif
		"keys: objects iters warmup requests min max req_min req_max seed\n");
	exit(1);
}

static enum variant parse_variant(const char *s)
{
	if (!strcmp(s, "malloc"))
		return V_MALLOC;
#if defined(USE_MH)
	if (!strcmp(s, "arena"))
		return V_ARENA;
	if (!strcmp(s, "noscan"))
		return V_NOSCAN;
#elif defined(USE_MI)
	if (!strcmp(s, "heap"))
		return V_HEAP;
#endif
	usage();
	return V_MALLOC;
}

/*
 * The per-object loops are compiled once per variant, the variant a
 * constant in each copy, and SPECIALISE picks the copy once per round: no
 * variant pays a switch per object, or registers for the other variants'
 * state, in its loop. Every variant and build runs the same loop this way.
 */
#define SPECIALISE(v, call)						\
	do {								\
		switch (v) {						\
		case V_MALLOC: { const enum variant V = V_MALLOC; call; break; } \
		case V_ARENA: { const enum variant V = V_ARENA; call; break; } \
		case V_NOSCAN: { const enum variant V = V_NOSCAN; call; break; } \
		case V_HEAP: { const enum variant V = V_HEAP; call; break; } \
		}							\
	} while (0)

/* objects objects into r, their sizes from sizes[] in turn, each stamped. */
static inline __attribute__((always_inline)) void
bulk_fill(struct region *r, enum variant v, long objects, const size_t *sizes, size_t nsizes)
{
	for (long k = 0; k < objects; k++) {
		void *p = region_alloc(r, v, sizes[(size_t)k & (nsizes - 1)]);

		stamp(p, (uint64_t)k);
	}
}

/* One bulk round: c->objects objects into one region, then free it. */
static bool bulk_round(const struct cfg *c, enum variant v, const size_t *sizes,
		       size_t nsizes, void **ptrs)
{
	struct region r = { 0 };

	if (!region_open(&r, v, ptrs))
		return false;
	SPECIALISE(v, bulk_fill(&r, V, c->objects, sizes, nsizes));
	region_free(&r);
	return true;
}

/* One request: objects into r until they hold want bytes; the bytes
 * allocated, and the objects counted into *ops. */
static inline __attribute__((always_inline)) size_t
request_fill(struct region *r, enum variant v, size_t want, const size_t *sizes,
	     size_t nsizes, size_t *k, uint64_t *ops)
{
	size_t got = 0;

	while (got < want) {
		size_t s = sizes[(*k)++ & (nsizes - 1)];
		void *p = region_alloc(r, v, s);

		stamp(p, got);
		got += s;
		(*ops)++;
	}
	return got;
}

int main(int argc, char **argv)
{
	struct cfg c = {
		.objects = 1000000, .iters = 1, .requests = 100000,
		.min = 16, .max = 256, .req_min = 4096, .req_max = 65536,
		.seed = 42,
	};
	struct mem_snap m0, m1;
	enum variant v;
	size_t *sizes, nsizes = 65536, maxptrs, i;
	void **ptrs;
	uint64_t ops = 0, sum = 0, rng;
	double t0, t1, c0, c1;
	bool available = true;
	char extra[200];
	int a;

	if (argc < 3)
		usage();
	c.workload = argv[1];
	c.variant = argv[2];
	v = parse_variant(c.variant);
	for (a = 3; a < argc; a++) {
		char *eq = strchr(argv[a], '=');
		const char *k = argv[a], *val;

		if (!eq)
			usage();
		*eq = '\0';
		val = eq + 1;
		if (!strcmp(k, "objects"))
			c.objects = parse_num(k, val);
		else if (!strcmp(k, "iters"))
			c.iters = parse_num(k, val);
		else if (!strcmp(k, "warmup"))
			c.warmup = parse_num(k, val);
		else if (!strcmp(k, "requests"))
			c.requests = parse_num(k, val);
		else if (!strcmp(k, "min"))
			c.min = (size_t)parse_num(k, val);
		else if (!strcmp(k, "max"))
			c.max = (size_t)parse_num(k, val);
		else if (!strcmp(k, "req_min"))
			c.req_min = (size_t)parse_num(k, val);
		else if (!strcmp(k, "req_max"))
			c.req_max = (size_t)parse_num(k, val);
		else if (!strcmp(k, "seed"))
			c.seed = (uint64_t)parse_num(k, val);
		else
			usage();
	}
	if (c.min < 8)
		c.min = 8;
	if (c.max < c.min)
		c.max = c.min;
	if (c.req_max < c.req_min)
		c.req_max = c.req_min;

	/* Size table and pointer table from mmap: same cost for every variant. */
	rng = c.seed;
	sizes = bk_alloc(nsizes * sizeof(*sizes));
	for (i = 0; i < nsizes; i++)
		sizes[i] = rng_range(&rng, c.min, c.max);
	if (!strcmp(c.workload, "bulk"))
		maxptrs = (size_t)c.objects;
	else if (!strcmp(c.workload, "requests"))
		maxptrs = c.req_max / c.min + 1;
	else
		usage();
	ptrs = bk_alloc(maxptrs * sizeof(void *));

	if (!strcmp(c.workload, "bulk")) {
		for (long it = 0; it < c.warmup && available; it++)
			available = bulk_round(&c, v, sizes, nsizes, ptrs);
	}
	mem_snap(&m0);
	t0 = now_sec();
	c0 = cpu_now_sec();
	if (!strcmp(c.workload, "bulk")) {
		for (long it = 0; it < c.iters && available; it++) {
			available = bulk_round(&c, v, sizes, nsizes, ptrs);
			ops += (uint64_t)c.objects;
		}
		snprintf(extra, sizeof(extra), "objects=%ld iters=%ld warmup=%ld min=%zu max=%zu",
			 c.objects, c.iters, c.warmup, c.min, c.max);
	} else {
		long q;
		size_t k = 0;

		rng = c.seed ^ 0xabcdef;
		for (q = 0; q < c.requests; q++) {
			size_t want = rng_range(&rng, c.req_min, c.req_max), got = 0;
			struct region r = { 0 };

			if (!region_open(&r, v, ptrs)) {
				available = false;
				break;
			}
			SPECIALISE(v, got = request_fill(&r, V, want, sizes, nsizes, &k, &ops));
			sum += got;
			region_free(&r);
		}
		snprintf(extra, sizeof(extra),
			 "requests=%ld req_min=%zu req_max=%zu min=%zu max=%zu",
			 c.requests, c.req_min, c.req_max, c.min, c.max);
	}
	c1 = cpu_now_sec();
	t1 = now_sec();
	mem_snap(&m1);

	if (!available) {
#ifdef NO_ARENA_REASON
		const char *why = NO_ARENA_REASON;
#else
		const char *why = "mh_arena_new_returned_NULL";
#endif
		printf("workload=arena-%s variant=%s api=%s status=unavailable "
		       "reason=%s\n", c.workload, c.variant, API, why);
		return 0;
	}
	printf("workload=arena-%s variant=%s api=%s threads=1 %s ops=%llu "
	       "seconds=%.6f wall_seconds=%.6f mops=%.4f rss_base_kb=%ld peak_rss_kb=%ld "
	       "rss_after_kb=%ld minflt=%ld majflt=%ld check=%llu status=ok\n",
	       c.workload, c.variant, API, extra, (unsigned long long)ops,
	       c1 - c0, t1 - t0, (double)ops / (c1 - c0) / 1e6, m0.rss_kb, m1.hwm_kb,
	       m1.rss_kb, m1.minflt - m0.minflt, m1.majflt - m0.majflt,
	       (unsigned long long)(sum & 0xffff));
	return 0;
}
