// SPDX-License-Identifier: GPL-2.0
/*
 * The heap across fork: a child forked while other threads allocate, and
 * a child forked while a thread was cut short in a list move takes its
 * spans back and hands out none of its live objects. (The child's view of
 * the large blocks other threads keep: heap_large_cache_test.c.)
 */
#define _GNU_SOURCE
#include "heap_lib.h"

/* ------------------------------------------------------------ threads allocating */

static atomic_int stop;

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *p = mh_malloc(100);

		mh_free(p);
	}
	return NULL;
}

TEST(fork_while_other_threads_allocate)
{
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (pid == 0) {
			struct mh_stats st = MH_STATS_INIT;
			void *p[1000];

			for (int j = 0; j < 1000; j++)
				p[j] = mh_malloc((size_t)j * 13 + 1);
			for (int j = 0; j < 1000; j++)
				mh_free(p[j]);
			mh_stats_read(&st);
			/* The other threads' caches were taken back. */
			_exit(st.threads_cached == 1 ? 0 : 3);
		}
		int status;

		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status));
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
}

/* ------------------------------------------------------------ a list move cut short */

/* A thread that fills its current span of class cls, frees an eighth of
 * its objects (enough to put the span on the partial list when it is used
 * up) and parks: its cache is then changed under it, as if it had been cut
 * short, and the process forks. */
struct parked_owner {
	unsigned cls;
	struct mcache *cache;
	struct mspan *span;
	void *live[MH_MAX_OBJS_PER_SPAN];
	unsigned nlive;
	pthread_barrier_t parked, go;
};

static void *fill_span_then_park(void *arg)
{
	struct parked_owner *po = arg;
	uint32_t size = mh_class[po->cls].size;
	void *mine[MH_MAX_OBJS_PER_SPAN];
	unsigned n;
	struct mspan *s = use_up_a_span(size, mine, &n);

	for (unsigned i = 0; i < n; i++) {
		if (i % 8 == 0) {
			mh_free(mine[i]);
		} else {
			memset(mine[i], 0xa5, size);
			po->live[po->nlive++] = mine[i];
		}
	}
	po->cache = mh_tls_cache;
	po->span = s;
	pthread_barrier_wait(&po->parked);
	pthread_barrier_wait(&po->go);
	for (unsigned i = 0; i < po->nlive; i++)
		mh_free(po->live[i]);
	return NULL;
}

/* In the child: allocate the class over and over; not one object may be
 * one the parked thread still holds, and its bytes stay as it left them. */
static int child_uses_the_class(struct parked_owner *po)
{
	uint32_t size = mh_class[po->cls].size;
	char msg[256];

	for (unsigned i = 0; i < 4 * MH_MAX_OBJS_PER_SPAN; i++) {
		void *p = mh_malloc(size);

		for (unsigned j = 0; j < po->nlive; j++)
			if (p == po->live[j])
				return 3;
		memset(p, 0x5a, size);
	}
	for (unsigned j = 0; j < po->nlive; j++)
		for (uint32_t b = 0; b < size; b++)
			if (((unsigned char *)po->live[j])[b] != 0xa5)
				return 4;
	return mheap_check(HEAPCHECK_LOCKED, msg, sizeof(msg)) ? 5 : 0;
}

TEST(fork_takes_back_the_spans_of_a_thread_cut_short_in_a_list_move)
{
	static struct parked_owner po;
	pthread_t t;

	po.cls = size_to_class(64);
	pthread_barrier_init(&po.parked, NULL, 2);
	pthread_barrier_init(&po.go, NULL, 2);
	ASSERT_EQ(0, pthread_create(&t, NULL, fill_span_then_park, &po));
	pthread_barrier_wait(&po.parked);

	struct mcache *c = po.cache;
	struct mspan *s = po.span;
	struct list *l = &c->partial[po.cls];

	ASSERT_EQ(s, c->alloc[po.cls]);
	ASSERT_EQ(0, mspan_window_free(s));	/* used up */
	ASSERT_EQ(0, s->free_words);
	ASSERT_EQ(s->nelems, s->touched);
	ASSERT_GE(mspan_local_frees(s), s->nelems / MH_CACHE_REUSE_SHARE);
	/* The thread's next malloc of the class, cut short in cache_list_append:
	 * the used-up span is off its class name and linked at the tail of
	 * the partial list, but not yet tagged as on it. */
	s->nalloc = s->nelems;
	c->alloc[po.cls] = &mh_empty_span;
	mspan_notify_at(s, s->nalloc);
	list_push_tail(l, &s->link);
	ASSERT_EQ(MSPAN_LIST_NONE, s->list);

	pid_t pid = fork();

	if (pid == 0)
		_exit(child_uses_the_class(&po));
	int rc = wait_child_ms(pid, 10000);

	/* The step, finished: the thread can go on. */
	s->list = MSPAN_LIST_CACHE_PARTIAL;
	pthread_barrier_wait(&po.go);
	pthread_join(t, NULL);
	EXPECT_EQ(0, rc) TH_LOG("child: %s", rc < 0 ? "hung in the fork handler" :
				rc == 3 ? "handed out a live object" :
				rc == 4 ? "a live object was overwritten" : "heap check failed");
}

TEST_HARNESS_MAIN
