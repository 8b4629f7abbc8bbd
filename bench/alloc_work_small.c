// SPDX-License-Identifier: MIT
/*
 * alloc_bench's workloads of the report's "Small objects" and "Memory"
 * sections: small (batches of objects freed LIFO, FIFO or at random),
 * prodcons (producer/consumer pairs through a bounded ring, every free
 * cross-thread) and memory (a heap of log-uniform sizes, every byte
 * written, freed half at random and then the rest, RSS read on the way).
 * alloc_bench.c's header gives their keys.
 */
#define _GNU_SOURCE
#include "alloc_bench.h"

/* ----------------------------------------------------------------- small */

void *w_small(void *arg)
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

void *w_producer(void *arg)
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

void *w_consumer(void *arg)
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

/* ---------------------------------------------------------------- memory */

void *w_memory(void *arg)
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
