// SPDX-License-Identifier: MIT
/*
 * The scavenger's policy, measured: rounds of building a 2 GiB heap of
 * 100,000 objects of 1 B to 40 KB (each touched) and freeing it all, then a
 * quiet phase of 1.5 s in which the program makes one allocation every 50 ms.
 * Prints the time of the rounds, their minor page faults, and RSS right
 * after the last free and at the end of the quiet phase. Run it under
 * different MHEAP_SCAVENGE_* settings (bench/Makefile: `make scavenge`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mheap.h"

static long rss_mib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * 4096 >> 20;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 3;
	enum { N = 100000 };
	void **p = malloc(N * sizeof(*p));
	struct rusage ru;

	if (!p)
		return 1;
	double t0 = now();
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < N; i++) {
			size_t size = (size_t)(i * 7919u) % 40000 + 1;

			p[i] = mh_malloc(size);
			if (!p[i])
				return 1;
			memset(p[i], 1, size);
		}
		for (int i = 0; i < N; i++)
			mh_free(p[i]);
	}
	double t1 = now();
	getrusage(RUSAGE_SELF, &ru);
	long after = rss_mib();
	for (int i = 0; i < 30; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		mh_free(mh_malloc(1 << 20));
	}
	printf("seconds=%.2f minflt=%ld rss_after_free_mib=%ld rss_later_mib=%ld\n", t1 - t0,
	       ru.ru_minflt, after, rss_mib());
	free(p);
	return 0;
}
