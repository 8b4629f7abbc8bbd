// SPDX-License-Identifier: MIT
/*
 * A program with its own globals under names libmheap.a's objects use
 * internally, with other types than the library's, linked with libmheap.a
 * (tools/archive-tap.sh). It must link, each side must keep its own
 * symbols, and the heap must work from two threads (thread-local caches).
 * Exit 0 when all is well.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mheap.h"

/* Functions of the library's own, here with other signatures... */
int sys_alloc(int x) { return x + 1; }
const char *pa_free(void) { return "program's pa_free"; }
double fault_backend(double x) { return x * 2; }
int mheap_init_slow(const char *s) { return (int)strlen(s); }
/* ...and its variables, here of other types. */
long pa_total_pages[4] = { 1, 2, 3, 4 };
const char *mh_heap = "program's mh_heap";
char uaf_faults_caught = 'u';

static void *churn(void *arg)
{
	for (int i = 0; i < 10000; i++) {
		char *p = mh_malloc((size_t)i % 3000 + 1);

		if (!p)
			return NULL;
		memset(p, 0x5a, (size_t)i % 3000 + 1);
		mh_free(p);
	}
	return arg;
}

int main(void)
{
	static char ok;
	struct mh_stats st = MH_STATS_INIT;
	pthread_t t;
	void *res;
	mh_arena *a;

	if (pthread_create(&t, NULL, churn, &ok) || churn(&ok) != &ok ||
	    pthread_join(t, &res) || res != &ok) {
		fprintf(stderr, "mh_malloc/mh_free failed\n");
		return 1;
	}
	a = mh_arena_new();
	if (!a || !mh_arena_alloc(a, 100, 8)) {
		fprintf(stderr, "mh_arena_alloc failed\n");
		return 1;
	}
	mh_arena_free(a);
	mh_stats_read(&st);
	if (st.mallocs < 20000 || st.threads_cached < 1) {
		fprintf(stderr, "mh_stats_read: %llu mallocs\n", (unsigned long long)st.mallocs);
		return 1;
	}
	if (sys_alloc(1) != 2 || strcmp(pa_free(), "program's pa_free") || fault_backend(2) != 4 ||
	    mheap_init_slow("abc") != 3 || pa_total_pages[3] != 4 ||
	    strcmp(mh_heap, "program's mh_heap") || uaf_faults_caught != 'u') {
		fprintf(stderr, "the program's own symbols were overridden\n");
		return 1;
	}
	return 0;
}
