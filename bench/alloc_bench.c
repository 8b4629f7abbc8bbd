// SPDX-License-Identifier: MIT
/*
 * alloc_bench: allocator workloads, one per run, one result line per run.
 *
 *   alloc_bench WORKLOAD [key=value ...]
 *
 * This file is the driver: it parses the keys, sets up each workload's
 * tables, starts the threads, times them and prints the line. The workloads'
 * thread bodies are in alloc_work_small.c and alloc_work_programs.c, what
 * they share in alloc_bench.h.
 *
 * Built three ways from these sources:
 *   (plain)      malloc/free, so any allocator can be LD_PRELOADed under it;
 *   -DUSE_MH     mh_malloc/mh_free from libmheap.a, linked directly;
 *   -DUSE_MI     mi_malloc/mi_free from libmimalloc, linked directly.
 *
 * Workloads (all deterministic for a given seed, so every allocator gets the
 * same sequence of requests):
 *   small     batches of `batch` objects per thread, sizes uniform in
 *             [min,max] (min == max for fixed sizes), freed in `order`
 *             lifo|fifo|random; `iters` batches per thread.
 *   prodcons  threads/2 producer/consumer pairs: the producer mallocs, the
 *             consumer frees, through a bounded ring of `ring` slots.
 *   tree      per thread: a long-lived tree of `depth`, then `iters` times
 *             build a tree of `depth`, walk it, tear it down (node = `size` B).
 *   hashmap   per thread: a chained hash map of `keys` malloc'd strings:
 *             insert (with table doubling), look up, delete half, insert
 *             half again, destroy; `iters` times.
 *   larson    a shared array of `slots` objects; every thread replaces random
 *             slots (malloc new, free old, so mostly other threads' objects),
 *             `ops` replacements per thread.
 *   realloc   per thread: `bufs` buffers grown in turn by random steps of
 *             1..`step` bytes up to `max` bytes, then freed; `iters` times.
 *   memory    allocate `mib` MiB of objects, log-uniform sizes in [min,max],
 *             every byte written; free a random half, then the rest; report
 *             RSS at each point and again `settle_ms` after the last free.
 *   bigchurn  `slots` live blocks of [min,max] bytes (5-25 MiB); each of
 *             `ops` steps replaces a random one with a new block of random
 *             size, written in full (C++ make_unique<char[]>(n)), 1 thread.
 *   localchurn per thread: `slots` live blocks whose sizes follow an
 *             inverse-square distribution on [min,max] (most tiny, a few
 *             large), each step replacing a random one (written in full);
 *             `ops` steps per thread, no frees cross threads.
 *   server    Larson's server shape: per thread an array of `slots` blocks
 *             of [min,max] bytes; `iters` rounds of `ops` replacements of
 *             random slots, after each of which the threads hand their
 *             arrays on to the next thread, so the old blocks it frees were
 *             mostly allocated by another (remote frees).
 *   peakfree  two threads: thread 0 builds a peak of `mib` MiB in blocks of
 *             `size` bytes (written), frees it and waits `settle_ms` (or
 *             until thread 1 is done), again and again until then; thread 1 makes `ops`
 *             allocations of [min,max] bytes (large objects: each takes
 *             the heap lock), freed in FIFO order through a ring of `ring`.
 *             Thread 1's time and its slowest operation (max_op_us) show
 *             how long the scavenger's releases of thread 0's peak hold it.
 *
 * Output: one line of key=value pairs starting with "workload=".
 * ops counts allocation calls (malloc or realloc); each is paired with a free.
 */
#define _GNU_SOURCE
#include "alloc_bench.h"

static pthread_barrier_t start_bar;

/*
 * Every worker starts its workload through here: it waits at the barrier
 * for the others, then takes its own start and end times. The run's time is
 * from the first start to the last end. The main thread does not time the
 * run: with as many workers as CPUs it is one thread too many, and when the
 * barrier let it go it could wait for a CPU while the workers ran, so that
 * its clock started late (a two-thread run of 8 batches of 4096 objects
 * once measured 1 us where it takes about 800).
 */
static void *timed_worker(void *arg)
{
	struct targ *t = arg;
	void *ret;

	pthread_barrier_wait(&start_bar);
	t->start = now_sec();
	ret = t->work(arg);
	t->end = now_sec();
	return ret;
}

static bool min_set, max_set;

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: alloc_bench small|prodcons|tree|hashmap|larson|realloc|memory|bigchurn|\n"
		"                   localchurn|server|peakfree [key=value ...]\n"
		"keys: threads iters batch ops min max order=lifo|fifo|random depth size keys\n"
		"      slots ring bufs step mib settle_ms seed\n");
	exit(1);
}

static void parse_args(struct cfg *c, int argc, char **argv)
{
	int i;

	if (argc < 2)
		usage();
	c->workload = argv[1];
	for (i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *k = argv[i], *v;

		if (!eq)
			usage();
		*eq = '\0';
		v = eq + 1;
		if (!strcmp(k, "threads"))
			c->threads = (int)parse_num(k, v);
		else if (!strcmp(k, "iters"))
			c->iters = parse_num(k, v);
		else if (!strcmp(k, "batch"))
			c->batch = parse_num(k, v);
		else if (!strcmp(k, "ops"))
			c->ops = parse_num(k, v);
		else if (!strcmp(k, "min"))
			c->min = (size_t)parse_num(k, v), min_set = true;
		else if (!strcmp(k, "max"))
			c->max = (size_t)parse_num(k, v), max_set = true;
		else if (!strcmp(k, "size"))
			c->size = c->min = c->max = (size_t)parse_num(k, v),
			min_set = max_set = true;
		else if (!strcmp(k, "depth"))
			c->depth = (int)parse_num(k, v);
		else if (!strcmp(k, "keys"))
			c->keys = parse_num(k, v);
		else if (!strcmp(k, "slots"))
			c->slots = parse_num(k, v);
		else if (!strcmp(k, "ring"))
			c->ring = parse_num(k, v);
		else if (!strcmp(k, "bufs"))
			c->bufs = parse_num(k, v);
		else if (!strcmp(k, "step"))
			c->step = (size_t)parse_num(k, v);
		else if (!strcmp(k, "mib"))
			c->mib = parse_num(k, v);
		else if (!strcmp(k, "settle_ms"))
			c->settle_ms = parse_num(k, v);
		else if (!strcmp(k, "seed"))
			c->seed = (uint64_t)parse_num(k, v);
		else if (!strcmp(k, "order")) {
			if (!strcmp(v, "lifo"))
				c->order = ORDER_LIFO;
			else if (!strcmp(v, "fifo"))
				c->order = ORDER_FIFO;
			else if (!strcmp(v, "random"))
				c->order = ORDER_RANDOM;
			else
				usage();
		} else {
			fprintf(stderr, "bench: unknown key %s\n", k);
			usage();
		}
	}
	if (c->threads < 1 || c->threads > MAX_THREADS) {
		fprintf(stderr, "bench: threads must be 1..%d\n", MAX_THREADS);
		exit(1);
	}
	if (c->min < 8 && strcmp(c->workload, "localchurn"))
		c->min = 8;	/* room for the stamp (localchurn stamps none) */
	if (c->max < c->min)
		c->max = c->min;
}

static size_t *size_table(size_t n, size_t lo, size_t hi, uint64_t seed,
			  size_t extra)
{
	size_t *s = bk_alloc((n + extra) * sizeof(*s)), i;

	for (i = 0; i < n; i++)
		s[i] = rng_range(&seed, lo, hi);
	return s;
}

static const char *order_name(enum order o)
{
	return o == ORDER_LIFO ? "lifo" : o == ORDER_FIFO ? "fifo" : "random";
}

int main(int argc, char **argv)
{
	struct cfg c = {
		.threads = 1, .iters = 100, .batch = 4096, .ops = 1000000,
		.min = 16, .max = 1024, .order = ORDER_LIFO, .depth = 16,
		.size = 32, .keys = 50000, .slots = 16384, .ring = 1024,
		.bufs = 4, .step = 512, .mib = 512, .settle_ms = 1000,
		.seed = 42,
	};
	static struct targ ta[MAX_THREADS];
	void *(*fn)(void *) = NULL;
	void *(*fn2)(void *) = NULL;	/* odd threads of prodcons */
	struct mem_snap m0, m1, m2;
	double t0, t1;
	pthread_t th[MAX_THREADS];
	uint64_t ops = 0, check = 0;
	void *shared = NULL;
	size_t shared_len = 0;
	long rss_settled = -1, rss_half = -1;
	int i, nt;
	char extra[256] = "";

	parse_args(&c, argc, argv);
	nt = c.threads;
	if (!min_set && !max_set) {
		if (!strcmp(c.workload, "realloc"))
			c.max = 1 << 20;
		else if (!strcmp(c.workload, "memory"))
			c.min = 16, c.max = 32768;
	}

	for (i = 0; i < nt; i++) {
		ta[i].id = i;
		ta[i].cfg = &c;
		ta[i].rng = c.seed * 0x100000001b3ULL + (uint64_t)i + 1;
	}

	if (!strcmp(c.workload, "small")) {
		fn = w_small;
		for (i = 0; i < nt; i++) {
			ta[i].nsizes = (size_t)c.batch;
			ta[i].sizes = size_table(ta[i].nsizes, c.min, c.max, ta[i].rng, 0);
			ta[i].perm = bk_perm(ta[i].nsizes, ta[i].rng ^ 0x5555);
			ta[i].ptrs = bk_alloc(ta[i].nsizes * sizeof(void *));
		}
		snprintf(extra, sizeof(extra), "min=%zu max=%zu order=%s batch=%ld iters=%ld",
			 c.min, c.max, order_name(c.order), c.batch, c.iters);
	} else if (!strcmp(c.workload, "prodcons")) {
		int pairs = nt / 2;
		size_t cap = 1;

		if (nt % 2) {
			fprintf(stderr, "bench: prodcons needs an even thread count\n");
			return 1;
		}
		while (cap < (size_t)c.ring)
			cap <<= 1;
		fn = w_producer;
		fn2 = w_consumer;
		shared_len = (size_t)pairs * sizeof(struct ring);
		shared = bk_alloc(shared_len);
		for (i = 0; i < pairs; i++) {
			struct ring *r = (struct ring *)shared + i;

			r->slot = bk_alloc(cap * sizeof(void *));
			r->mask = cap - 1;
			ta[2 * i].shared = ta[2 * i + 1].shared = r;
			ta[2 * i].nsizes = 4096;
			ta[2 * i].sizes = size_table(4096, c.min, c.max, ta[2 * i].rng, 0);
		}
		snprintf(extra, sizeof(extra), "min=%zu max=%zu ring=%zu per_pair=%ld",
			 c.min, c.max, cap, c.ops);
	} else if (!strcmp(c.workload, "tree")) {
		fn = w_tree;
		snprintf(extra, sizeof(extra), "depth=%d node=%zu iters=%ld",
			 c.depth, c.size, c.iters);
	} else if (!strcmp(c.workload, "hashmap")) {
		fn = w_hashmap;
		snprintf(extra, sizeof(extra), "keys=%ld iters=%ld", c.keys, c.iters);
	} else if (!strcmp(c.workload, "larson")) {
		size_t s = 1;

		while (s < (size_t)c.slots)
			s <<= 1;
		c.slots = (long)s;
		fn = w_larson;
		shared_len = s * sizeof(void *);
		shared = bk_alloc(shared_len);
		for (i = 0; i < nt; i++) {
			ta[i].nsizes = 4096;
			ta[i].sizes = size_table(4096, c.min, c.max, ta[i].rng, 0);
			ta[i].shared = shared;
		}
		/* Filled by the main thread: the first frees are all remote. */
		{
			uint64_t r = c.seed;
			_Atomic(void *) *sl = shared;
			size_t k;

			for (k = 0; k < s; k++) {
				void *p = xmalloc(rng_range(&r, c.min, c.max));

				stamp(p, k);
				atomic_store(&sl[k], p);
			}
		}
		snprintf(extra, sizeof(extra), "min=%zu max=%zu slots=%ld per_thread=%ld",
			 c.min, c.max, c.slots, c.ops);
	} else if (!strcmp(c.workload, "realloc")) {
		fn = w_realloc;
		for (i = 0; i < nt; i++) {
			ta[i].nsizes = 4096;
			ta[i].sizes = size_table(4096, 1, c.step, ta[i].rng, (size_t)c.bufs);
			ta[i].ptrs = bk_alloc((size_t)c.bufs * sizeof(void *));
		}
		snprintf(extra, sizeof(extra), "bufs=%ld step=1-%zu max=%zu iters=%ld",
			 c.bufs, c.step, c.max, c.iters);
	} else if (!strcmp(c.workload, "memory")) {
		/* Log-uniform sizes until the total reaches mib MiB, per thread. */
		size_t target = (size_t)c.mib << 20;

		fn = w_memory;
		for (i = 0; i < nt; i++) {
			double lmin = log((double)c.min), lmax = log((double)c.max);
			size_t n = 0, tot, k, *s = NULL;
			uint64_t r;
			int pass;

			/* Pass 0 counts the objects, pass 1 fills the table. */
			for (pass = 0; pass < 2; pass++) {
				r = ta[i].rng;
				if (pass)
					s = bk_alloc(n * sizeof(*s));
				for (k = 0, tot = 0; tot < target / (size_t)nt; k++) {
					double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0;
					size_t sz = (size_t)exp(lmin + u * (lmax - lmin));

					if (sz < c.min)
						sz = c.min;
					if (pass)
						s[k] = sz;
					tot += sz;
				}
				n = k;
			}
			ta[i].sizes = s;
			ta[i].nsizes = n;
			ta[i].perm = bk_perm(n, r);
			ta[i].ptrs = bk_alloc(n * sizeof(void *));
		}
		snprintf(extra, sizeof(extra), "mib=%ld min=%zu max=%zu objects=%zu",
			 c.mib, c.min, c.max, ta[0].nsizes * (size_t)nt);
	} else if (!strcmp(c.workload, "bigchurn")) {
		if (nt != 1) {
			fprintf(stderr, "bench: bigchurn runs one thread\n");
			return 1;
		}
		fn = w_churn;
		ta[0].nsizes = 4096;
		ta[0].sizes = size_table(ta[0].nsizes, c.min, c.max, ta[0].rng, (size_t)c.slots);
		ta[0].ptrs = bk_alloc((size_t)c.slots * sizeof(void *));
		snprintf(extra, sizeof(extra), "min=%zu max=%zu slots=%ld steps=%ld",
			 c.min, c.max, c.slots, c.ops);
	} else if (!strcmp(c.workload, "localchurn")) {
		fn = w_churn;
		for (i = 0; i < nt; i++) {
			ta[i].nsizes = 1 << 16;
			ta[i].sizes = inverse_square_table(ta[i].nsizes, c.min, c.max, ta[i].rng,
							   (size_t)c.slots);
			ta[i].ptrs = bk_alloc((size_t)c.slots * sizeof(void *));
		}
		snprintf(extra, sizeof(extra), "min=%zu max=%zu slots=%ld per_thread=%ld",
			 c.min, c.max, c.slots, c.ops);
	} else if (!strcmp(c.workload, "server")) {
		void ***arrays = bk_alloc((size_t)nt * sizeof(void **));
		uint64_t r = c.seed;

		fn = w_server;
		for (i = 0; i < nt; i++) {
			arrays[i] = bk_alloc((size_t)c.slots * sizeof(void *));
			/* Filled by the main thread: the first round's frees are
			 * all remote, as in Larson's benchmark. */
			for (long k = 0; k < c.slots; k++) {
				arrays[i][k] = xmalloc(rng_range(&r, c.min, c.max));
				stamp(arrays[i][k], (uint64_t)k);
			}
			ta[i].nsizes = 4096;
			ta[i].sizes = size_table(4096, c.min, c.max, ta[i].rng, 0);
			ta[i].shared = arrays;
		}
		shared = arrays;
		shared_len = (size_t)nt * sizeof(void **);
		if (pthread_barrier_init(&round_bar, NULL, (unsigned)nt))
			die("pthread_barrier_init");
		snprintf(extra, sizeof(extra), "min=%zu max=%zu slots=%ld rounds=%ld per_round=%ld",
			 c.min, c.max, c.slots, c.iters, c.ops);
	} else if (!strcmp(c.workload, "peakfree")) {
		if (nt != 2) {
			fprintf(stderr, "bench: peakfree runs two threads\n");
			return 1;
		}
		fn = w_peakfree;
		ta[0].nsizes = ((size_t)c.mib << 20) / c.size;
		ta[0].ptrs = bk_alloc(ta[0].nsizes * sizeof(void *));
		ta[1].nsizes = 4096;
		ta[1].sizes = size_table(4096, c.min, c.max, ta[1].rng, 0);
		ta[1].ptrs = bk_alloc((size_t)c.ring * sizeof(void *));
		snprintf(extra, sizeof(extra), "mib=%ld block=%zu min=%zu max=%zu ring=%ld",
			 c.mib, c.size, c.min, c.max, c.ring);
	} else {
		usage();
	}

	if (pthread_barrier_init(&start_bar, NULL, (unsigned)nt))
		die("pthread_barrier_init");
	mem_snap(&m0);
	for (i = 0; i < nt; i++) {
		ta[i].work = (fn2 && (i & 1)) ? fn2 : fn;
		if (pthread_create(&th[i], NULL, timed_worker, &ta[i]))
			die("pthread_create");
	}
	for (i = 0; i < nt; i++)
		pthread_join(th[i], NULL);
	t0 = ta[0].start;
	t1 = ta[0].end;
	for (i = 1; i < nt; i++) {
		if (ta[i].start < t0)
			t0 = ta[i].start;
		if (ta[i].end > t1)
			t1 = ta[i].end;
	}

	if (!strcmp(c.workload, "server")) {
		void ***arrays = shared;

		for (i = 0; i < nt; i++) {
			for (long k = 0; k < c.slots; k++) {
				check += peek(arrays[i][k]);
				B_FREE(arrays[i][k]);
			}
		}
	}
	if (!strcmp(c.workload, "larson")) {
		_Atomic(void *) *sl = shared;
		long k;

		for (k = 0; k < c.slots; k++) {
			void *p = atomic_exchange(&sl[k], NULL);

			if (p) {
				check += peek(p);
				B_FREE(p);
			}
		}
	}
	mem_snap(&m1);
	for (i = 0; i < nt; i++) {
		ops += ta[i].ops;
		check += ta[i].check;
		if (ta[i].rss_half_kb > rss_half)
			rss_half = ta[i].rss_half_kb;
	}
	if (!strcmp(c.workload, "memory") && c.settle_ms > 0) {
		sleep_ms(c.settle_ms);
		mem_snap(&m2);
		rss_settled = m2.rss_kb;
	}

	printf("workload=%s api=%s threads=%d %s ops=%llu seconds=%.6f mops=%.6g "
	       "rss_base_kb=%ld peak_rss_kb=%ld rss_after_kb=%ld",
	       c.workload, B_API, nt, extra, (unsigned long long)ops, t1 - t0,
	       (double)ops / (t1 - t0) / 1e6, m0.rss_kb, m1.hwm_kb, m1.rss_kb);
	if (!strcmp(c.workload, "memory"))
		printf(" rss_half_kb=%ld", rss_half);
	if (!strcmp(c.workload, "peakfree"))
		printf(" max_op_us=%.1f", ta[1].max_op * 1e6);
	if (rss_settled >= 0)
		printf(" rss_settled_kb=%ld settle_ms=%ld", rss_settled, c.settle_ms);
	printf(" minflt=%ld majflt=%ld check=%llu status=ok\n",
	       m1.minflt - m0.minflt, m1.majflt - m0.majflt,
	       (unsigned long long)(check & 0xffff));
	fflush(stdout);
	return 0;
}
