// SPDX-License-Identifier: MIT
/*
 * alloc_bench: allocator workloads, one per run, one result line per run.
 *
 *   alloc_bench WORKLOAD [key=value ...]
 *
 * Built three ways from this one source:
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
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bench_common.h"

#if defined(USE_MH)
#include "mheap.h"
#define B_MALLOC(n) mh_malloc(n)
#define B_CALLOC(n, s) mh_calloc(n, s)
#define B_REALLOC(p, n) mh_realloc(p, n)
#define B_FREE(p) mh_free(p)
#define B_API "mh_malloc"
#elif defined(USE_MI)
#include <mimalloc.h>
#define B_MALLOC(n) mi_malloc(n)
#define B_CALLOC(n, s) mi_calloc(n, s)
#define B_REALLOC(p, n) mi_realloc(p, n)
#define B_FREE(p) mi_free(p)
#define B_API "mi_malloc"
#else
#define B_MALLOC(n) malloc(n)
#define B_CALLOC(n, s) calloc(n, s)
#define B_REALLOC(p, n) realloc(p, n)
#define B_FREE(p) free(p)
#define B_API "malloc"
#endif

#define MAX_THREADS 64

enum order { ORDER_LIFO, ORDER_FIFO, ORDER_RANDOM };

struct cfg {
	const char *workload;
	int threads;
	long iters;
	long batch;
	long ops;
	size_t min, max;
	enum order order;
	int depth;
	size_t size;
	long keys;
	long slots;
	long ring;
	long bufs;
	size_t step;
	long mib;
	long settle_ms;
	uint64_t seed;
};

static atomic_bool peakfree_done;

struct targ {
	int id;
	const struct cfg *cfg;
	void *(*work)(void *);	/* the workload's thread body */
	double start, end;	/* when this thread began and ended its work */
	uint64_t ops;		/* allocation calls done */
	uint64_t check;		/* keeps the writes alive */
	uint64_t rng;
	size_t *sizes;		/* per-thread tables, from bk_alloc */
	size_t nsizes;
	uint32_t *perm;
	void **ptrs;
	void *shared;
	long rss_half_kb;
	double max_op;		/* peakfree: thread 1's slowest operation, seconds */
};

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

static inline void *xmalloc(size_t n)
{
	void *p = B_MALLOC(n);

	if (!p)
		oom(n);
	return p;
}

/* Touch the first word so the allocator's memory is really used. */
static inline void stamp(void *p, uint64_t v)
{
	*(volatile uint64_t *)p = v;
}

static inline uint64_t peek(const void *p)
{
	return *(const volatile uint64_t *)p;
}

/* ----------------------------------------------------------------- small */

static void *w_small(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	size_t n = (size_t)c->batch;
	void **ptrs = t->ptrs;
	uint64_t sum = 0;
	long it;
	size_t i;

	for (it = 0; it < c->iters; it++) {
		size_t off = (size_t)((uint64_t)it * 7919u % n);

		for (i = 0; i < n; i++) {
			size_t j = i + off;

			if (j >= n)
				j -= n;
			ptrs[i] = xmalloc(t->sizes[j]);
			stamp(ptrs[i], i);
		}
		switch (c->order) {
		case ORDER_LIFO:
			for (i = n; i-- > 0;) {
				sum += peek(ptrs[i]);
				B_FREE(ptrs[i]);
			}
			break;
		case ORDER_FIFO:
			for (i = 0; i < n; i++) {
				sum += peek(ptrs[i]);
				B_FREE(ptrs[i]);
			}
			break;
		case ORDER_RANDOM:
			for (i = 0; i < n; i++) {
				void *p = ptrs[t->perm[i]];

				sum += peek(p);
				B_FREE(p);
			}
			break;
		}
	}
	t->ops = (uint64_t)c->iters * n;
	t->check = sum;
	return NULL;
}

/* -------------------------------------------------------------- prodcons */

struct ring {
	_Alignas(64) _Atomic uint64_t head;	/* consumer position */
	_Alignas(64) _Atomic uint64_t tail;	/* producer position */
	_Alignas(64) void **slot;
	uint64_t mask;
};

static void *w_producer(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	struct ring *r = t->shared;
	uint64_t n = (uint64_t)c->ops, i, tail = 0, cap = r->mask + 1;
	unsigned spins = 0;

	for (i = 0; i < n; i++) {
		void *p = xmalloc(t->sizes[i & (t->nsizes - 1)]);

		stamp(p, i);
		while (tail - atomic_load_explicit(&r->head, memory_order_acquire) >= cap)
			spin_pause(&spins);
		r->slot[tail & r->mask] = p;
		tail++;
		atomic_store_explicit(&r->tail, tail, memory_order_release);
	}
	t->ops = n;
	return NULL;
}

static void *w_consumer(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	struct ring *r = t->shared;
	uint64_t n = (uint64_t)c->ops, head = 0, sum = 0;
	unsigned spins = 0;

	while (head < n) {
		void *p;

		while (atomic_load_explicit(&r->tail, memory_order_acquire) == head)
			spin_pause(&spins);
		p = r->slot[head & r->mask];
		head++;
		atomic_store_explicit(&r->head, head, memory_order_release);
		sum += peek(p);
		B_FREE(p);
	}
	t->ops = 0;
	t->check = sum;
	return NULL;
}

/* ------------------------------------------------------------------ tree */

struct node {
	struct node *left, *right;
	uint64_t val;
};

static struct node *tree_build(int depth, size_t nsize, uint64_t *count)
{
	struct node *n = xmalloc(nsize);

	++*count;
	n->val = *count;
	if (depth > 0) {
		n->left = tree_build(depth - 1, nsize, count);
		n->right = tree_build(depth - 1, nsize, count);
	} else {
		n->left = n->right = NULL;
	}
	return n;
}

static uint64_t tree_check(const struct node *n)
{
	uint64_t s = 0;

	while (n) {
		s += n->val;
		if (n->left)
			s += tree_check(n->left);
		n = n->right;
	}
	return s;
}

static void tree_free(struct node *n)
{
	while (n) {
		struct node *r = n->right;

		if (n->left)
			tree_free(n->left);
		B_FREE(n);
		n = r;
	}
}

static void *w_tree(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	size_t nsize = c->size < sizeof(struct node) ? sizeof(struct node) : c->size;
	uint64_t count = 0, sum = 0;
	struct node *longlived;
	long it;

	longlived = tree_build(c->depth, nsize, &count);
	for (it = 0; it < c->iters; it++) {
		struct node *tr = tree_build(c->depth, nsize, &count);

		sum += tree_check(tr);
		tree_free(tr);
	}
	sum += tree_check(longlived);
	tree_free(longlived);
	t->ops = count;
	t->check = sum;
	return NULL;
}

/* --------------------------------------------------------------- hashmap */

struct hnode {
	struct hnode *next;
	uint64_t hash;
	char *key;
	uint64_t val;
};

struct hmap {
	struct hnode **b;
	size_t nb, count;
	uint64_t allocs;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

/* Key number k of generation g: 8..40 chars of [a-z0-9], reproducible. */
static size_t make_key(char *buf, uint64_t seed, uint64_t g, uint64_t k)
{
	static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint64_t s = seed ^ (g << 40) ^ (k * 0x9e3779b97f4a7c15ULL);
	size_t len = rng_range(&s, 8, 40), i;
	uint64_t r = 0;

	for (i = 0; i < len; i++) {
		if ((i & 7) == 0)
			r = rng_next(&s);
		buf[i] = al[(r & 0xff) % 36];
		r >>= 8;
	}
	buf[len] = '\0';
	return len;
}

static void hmap_init(struct hmap *m)
{
	m->nb = 16;
	m->count = 0;
	m->b = B_CALLOC(m->nb, sizeof(*m->b));
	if (!m->b)
		oom(m->nb * sizeof(*m->b));
	m->allocs++;
}

static void hmap_grow(struct hmap *m)
{
	size_t nb = m->nb * 2, i;
	struct hnode **b = B_CALLOC(nb, sizeof(*b));

	if (!b)
		oom(nb * sizeof(*b));
	m->allocs++;
	for (i = 0; i < m->nb; i++) {
		struct hnode *n = m->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	B_FREE(m->b);
	m->b = b;
	m->nb = nb;
}

static void hmap_put(struct hmap *m, const char *key, size_t len, uint64_t val)
{
	uint64_t h = hash_str(key);
	struct hnode *n;

	for (n = m->b[h & (m->nb - 1)]; n; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0) {
			n->val = val;
			return;
		}
	if (m->count + 1 > m->nb / 4 * 3)
		hmap_grow(m);
	n = xmalloc(sizeof(*n));
	n->key = xmalloc(len + 1);
	memcpy(n->key, key, len + 1);
	n->hash = h;
	n->val = val;
	n->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = n;
	m->count++;
	m->allocs += 2;
}

static struct hnode **hmap_find(struct hmap *m, const char *key)
{
	uint64_t h = hash_str(key);
	struct hnode **pp;

	for (pp = &m->b[h & (m->nb - 1)]; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			return pp;
	return NULL;
}

static void hmap_destroy(struct hmap *m)
{
	size_t i;

	for (i = 0; i < m->nb; i++) {
		struct hnode *n = m->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			B_FREE(n->key);
			B_FREE(n);
		}
	}
	B_FREE(m->b);
	m->b = NULL;
}

static void *w_hashmap(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	uint64_t seed = c->seed + (uint64_t)t->id * 1000003u, sum = 0;
	uint64_t keys = (uint64_t)c->keys, k;
	struct hmap m = { 0 };
	char buf[64];
	long it;

	for (it = 0; it < c->iters; it++) {
		uint64_t g = (uint64_t)it * 2;

		hmap_init(&m);
		for (k = 0; k < keys; k++)
			hmap_put(&m, buf, make_key(buf, seed, g, k), k);
		for (k = 0; k < keys; k++) {
			struct hnode **pp;

			make_key(buf, seed, g, k);
			pp = hmap_find(&m, buf);
			if (pp)
				sum += (*pp)->val;
		}
		for (k = 0; k < keys; k += 2) {
			struct hnode **pp, *n;

			make_key(buf, seed, g, k);
			pp = hmap_find(&m, buf);
			if (!pp)
				continue;
			n = *pp;
			*pp = n->next;
			B_FREE(n->key);
			B_FREE(n);
			m.count--;
		}
		for (k = 0; k < keys / 2; k++)
			hmap_put(&m, buf, make_key(buf, seed, g + 1, k), k);
		sum += m.count;
		hmap_destroy(&m);
	}
	t->ops = m.allocs;
	t->check = sum;
	return NULL;
}

/* ---------------------------------------------------------------- larson */

static void *w_larson(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	_Atomic(void *) *slots = t->shared;
	uint64_t mask = (uint64_t)c->slots - 1, sum = 0;
	long i;

	for (i = 0; i < c->ops; i++) {
		uint64_t r = rng_next(&t->rng);
		void *p = xmalloc(t->sizes[(r >> 40) & (t->nsizes - 1)]), *old;

		stamp(p, (uint64_t)i);
		old = atomic_exchange_explicit(&slots[r & mask], p, memory_order_acq_rel);
		if (old) {
			sum += peek(old);
			B_FREE(old);
		}
	}
	t->ops = (uint64_t)c->ops;
	t->check = sum;
	return NULL;
}

/* --------------------------------------------------------------- realloc */

static void *w_realloc(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	size_t nb = (size_t)c->bufs, i, k = 0;
	unsigned char **buf = (unsigned char **)t->ptrs;
	size_t *len = t->sizes + t->nsizes;	/* bufs extra slots */
	uint64_t ops = 0, sum = 0;
	long it;

	for (it = 0; it < c->iters; it++) {
		size_t done = 0;

		for (i = 0; i < nb; i++) {
			buf[i] = NULL;
			len[i] = 0;
		}
		while (done < nb) {
			done = 0;
			for (i = 0; i < nb; i++) {
				size_t nl;
				unsigned char *p;

				if (len[i] >= c->max) {
					done++;
					continue;
				}
				nl = len[i] + t->sizes[k++ & (t->nsizes - 1)];
				p = B_REALLOC(buf[i], nl);
				if (!p)
					oom(nl);
				if (len[i])
					sum += p[len[i] - 1];
				p[nl - 1] = (unsigned char)nl;
				buf[i] = p;
				len[i] = nl;
				ops++;
			}
		}
		for (i = 0; i < nb; i++)
			B_FREE(buf[i]);
	}
	t->ops = ops;
	t->check = sum;
	return NULL;
}

/* ---------------------------------------------------------------- memory */

static void *w_memory(void *arg)
{
	struct targ *t = arg;
	size_t n = t->nsizes, i;
	uint64_t sum = 0;

	for (i = 0; i < n; i++) {
		t->ptrs[i] = xmalloc(t->sizes[i]);
		memset(t->ptrs[i], (int)(i & 0xff) | 1, t->sizes[i]);
	}
	for (i = 0; i < n / 2; i++) {
		void *p = t->ptrs[t->perm[i]];

		sum += peek(p);
		B_FREE(p);
	}
	t->rss_half_kb = proc_status_kb("VmRSS");
	for (i = n / 2; i < n; i++) {
		void *p = t->ptrs[t->perm[i]];

		sum += peek(p);
		B_FREE(p);
	}
	t->ops = n;
	t->check = sum;
	return NULL;
}

/* ------------------------------------------------- bigchurn, localchurn */

/* `slots` live blocks, each step replacing a random one with a block of a
 * size drawn from the thread's table, written in full. */
static void *w_churn(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	size_t n = (size_t)c->slots, mask = t->nsizes - 1, i;
	unsigned char **blk = (unsigned char **)t->ptrs;
	size_t *len = t->sizes + t->nsizes;	/* slots extra entries */
	uint64_t sum = 0;
	long k;

	for (i = 0; i < n; i++) {
		len[i] = t->sizes[i & mask];
		blk[i] = xmalloc(len[i]);
		memset(blk[i], (int)i, len[i]);
	}
	for (k = 0; k < c->ops; k++) {
		uint64_t r = rng_next(&t->rng);
		size_t j = (size_t)(r % n), sz = t->sizes[(r >> 40) & mask];

		sum += blk[j][len[j] - 1];
		B_FREE(blk[j]);
		blk[j] = xmalloc(sz);
		memset(blk[j], (int)k, sz);
		len[j] = sz;
	}
	for (i = 0; i < n; i++) {
		sum += blk[i][0];
		B_FREE(blk[i]);
	}
	t->ops = (uint64_t)c->ops + n;
	t->check = sum;
	return NULL;
}

/* Sizes on [lo, hi] with density proportional to 1/size^2: the inverse of
 * its distribution function, F(s) = (1/lo - 1/s) / (1/lo - 1/hi). */
static size_t *inverse_square_table(size_t n, size_t lo, size_t hi, uint64_t seed,
				    size_t extra)
{
	size_t *s = bk_alloc((n + extra) * sizeof(*s)), i;
	double a = 1.0 / (double)lo, b = 1.0 / (double)hi;

	for (i = 0; i < n; i++) {
		double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
		size_t sz = (size_t)(1.0 / (a - u * (a - b)));

		s[i] = sz < lo ? lo : sz > hi ? hi : sz;
	}
	return s;
}

/* ---------------------------------------------------------------- server */

static pthread_barrier_t round_bar;

static void *w_server(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	void ***arrays = t->shared;	/* one array of slots per thread */
	size_t n = (size_t)c->slots, mask = t->nsizes - 1;
	uint64_t sum = 0;
	long it, k;

	for (it = 0; it < c->iters; it++) {
		/* Round it works on the array thread (id + it) started with. */
		void **a = arrays[(t->id + it) % c->threads];

		for (k = 0; k < c->ops; k++) {
			uint64_t r = rng_next(&t->rng);
			size_t j = (size_t)(r % n);
			void *p = xmalloc(t->sizes[(r >> 40) & mask]);

			stamp(p, (uint64_t)k);
			sum += peek(a[j]);
			B_FREE(a[j]);
			a[j] = p;
		}
		pthread_barrier_wait(&round_bar);	/* hand the array on */
	}
	t->ops = (uint64_t)c->iters * (uint64_t)c->ops;
	t->check = sum;
	return NULL;
}

/* -------------------------------------------------------------- peakfree */

static void *w_peakfree(void *arg)
{
	struct targ *t = arg;
	const struct cfg *c = t->cfg;
	uint64_t sum = 0, ops = 0;

	if (t->id == 0) {
		size_t n = t->nsizes, i;

		while (!atomic_load(&peakfree_done)) {
			for (i = 0; i < n && !atomic_load(&peakfree_done); i++) {
				t->ptrs[i] = xmalloc(c->size);
				memset(t->ptrs[i], (int)i, c->size);
			}
			while (i-- > 0)
				B_FREE(t->ptrs[i]);
			/* In 1 ms steps: the run ends when thread 1 does, not
			 * up to settle_ms after (the time is the threads'). */
			for (long ms = 0; ms < c->settle_ms && !atomic_load(&peakfree_done); ms++)
				sleep_ms(1);
		}
	} else {
		size_t ring = (size_t)c->ring, mask = t->nsizes - 1;
		double worst = 0;
		long k;

		for (k = 0; k < c->ops; k++) {
			double t0 = now_sec(), d;
			size_t slot = (size_t)k % ring;

			if (t->ptrs[slot])
				B_FREE(t->ptrs[slot]);
			t->ptrs[slot] = xmalloc(t->sizes[(size_t)k & mask]);
			stamp(t->ptrs[slot], (uint64_t)k);
			d = now_sec() - t0;
			if (d > worst)
				worst = d;
		}
		for (size_t i = 0; i < ring; i++) {
			if (t->ptrs[i]) {
				sum += peek(t->ptrs[i]);
				B_FREE(t->ptrs[i]);
			}
		}
		ops = (uint64_t)c->ops;
		t->max_op = worst;
		atomic_store(&peakfree_done, true);
	}
	t->ops = ops;
	t->check = sum;
	return NULL;
}

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
