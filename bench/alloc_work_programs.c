// SPDX-License-Identifier: MIT
/*
 * alloc_bench's program-like workloads (the report's "Program-like"
 * section): tree, hashmap, larson, realloc, and issue #24's shapes
 * bigchurn, localchurn, server and peakfree. alloc_bench.c's header gives
 * what each does and its keys.
 */
#define _GNU_SOURCE
#include "alloc_bench.h"

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

void *w_tree(void *arg)
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

void *w_hashmap(void *arg)
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

void *w_larson(void *arg)
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

void *w_realloc(void *arg)
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

/* ------------------------------------------------- bigchurn, localchurn */

/* `slots` live blocks, each step replacing a random one with a block of a
 * size drawn from the thread's table, written in full. */
void *w_churn(void *arg)
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
size_t *inverse_square_table(size_t n, size_t lo, size_t hi, uint64_t seed,
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

pthread_barrier_t round_bar;

void *w_server(void *arg)
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

static atomic_bool peakfree_done;

void *w_peakfree(void *arg)
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
