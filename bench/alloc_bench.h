/* SPDX-License-Identifier: MIT */
/*
 * What alloc_bench's driver (alloc_bench.c) and its workloads
 * (alloc_work_small.c, alloc_work_programs.c) share: the allocator under
 * test (B_MALLOC and the rest: malloc, or mh_malloc with -DUSE_MH, or
 * mi_malloc with -DUSE_MI), the run's configuration, a worker thread's
 * arguments and results, and the workloads' thread bodies.
 */
#ifndef ALLOC_BENCH_H
#define ALLOC_BENCH_H

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

struct ring {
	_Alignas(64) _Atomic uint64_t head;	/* consumer position */
	_Alignas(64) _Atomic uint64_t tail;	/* producer position */
	_Alignas(64) void **slot;
	uint64_t mask;
};

/* The workloads' thread bodies (alloc_bench.c's header says what each does).
 * prodcons runs w_producer on even threads, w_consumer on odd ones. */
void *w_small(void *arg);
void *w_producer(void *arg);
void *w_consumer(void *arg);
void *w_memory(void *arg);
void *w_tree(void *arg);
void *w_hashmap(void *arg);
void *w_larson(void *arg);
void *w_realloc(void *arg);
void *w_churn(void *arg);
void *w_server(void *arg);
void *w_peakfree(void *arg);

/* localchurn's size table: n sizes on [lo, hi] with density proportional
 * to 1/size^2, and room for `extra` more. */
size_t *inverse_square_table(size_t n, size_t lo, size_t hi, uint64_t seed,
			     size_t extra);

/* server: the threads hand their arrays on at this barrier between rounds. */
extern pthread_barrier_t round_bar;

#endif /* ALLOC_BENCH_H */
