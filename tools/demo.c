// SPDX-License-Identifier: MIT
/*
 * `make demo`: the library at work, narrated. Builds and frees a linked
 * structure across threads, shows the page heap growing and the scavenger
 * giving a freed peak back, lets a child process commit a double free, then
 * fills a user arena, frees it, and has a child touch a stale pointer into
 * it: the access faults and mheap names the arena and the chunk.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mheap.h"

struct node {
	struct node *next;
	char payload[48];
};

static size_t rss_mib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	if (f)
		fclose(f);
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE) >> 20;
}

static void show(const char *when)
{
	struct mh_stats st = MH_STATS_INIT;

	mh_stats_read(&st);
	printf("  %-34s heap_inuse %6.1f MiB  idle %6.1f MiB  released %6.1f MiB  RSS %4zu MiB\n",
	       when, st.heap_inuse / 1048576.0, st.heap_idle / 1048576.0,
	       st.heap_released / 1048576.0, rss_mib());
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void double_free(void *arg)
{
	char *p = mh_malloc(32);

	(void)arg;
	mh_free(p);
	mh_free(p);
}

static void touch(void *arg)
{
	printf("  the stale node says: %s\n", ((struct node *)arg)->payload);
}

/* Run fn in a child whose stderr is our stdout; true if it died of sig. */
static int in_child(void (*fn)(void *), void *arg, int sig)
{
	int status;

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(STDOUT_FILENO, STDERR_FILENO);
		fn(arg);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	printf("  -> the child died of %s\n",
	       WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "nothing: it exited");
	return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

static void *free_list(void *arg)
{
	for (struct node *n = arg, *next; n; n = next) {
		next = n->next;
		mh_free(n);
	}
	return NULL;
}

int main(void)
{
	enum { NODES = 2000000 };
	struct node *head = NULL;
	pthread_t t;
	struct mh_stats st = MH_STATS_INIT;

	printf("mheap demo: Go's allocator in C\n\n");
	show("start");
	for (int i = 0; i < NODES; i++) {
		struct node *n = mh_malloc(sizeof(*n));

		snprintf(n->payload, sizeof(n->payload), "node %d", i);
		n->next = head;
		head = n;
	}
	show("2M nodes of 56 bytes (64-byte class)");
	void *big = mh_malloc(200 << 20);
	memset(big, 1, 200 << 20);
	show("plus one 200 MiB object");

	/* Another thread frees the list: every free is a cross-thread free. */
	pthread_create(&t, NULL, free_list, head);
	pthread_join(t, NULL);
	mh_free(big);
	show("all freed (recent peak kept)");
	for (int i = 0; i < 12; i++) {
		usleep(100 * 1000);	/* the scavenger's reserve decays */
		mh_free(mh_malloc(1 << 20));
	}
	show("1.2 s later: scavenger released");

	mh_stats_read(&st);
	printf("\n  %llu mallocs, %llu frees, %llu heap arenas of 64 MiB, metadata %.1f MiB\n",
	       (unsigned long long)st.mallocs, (unsigned long long)st.frees,
	       (unsigned long long)st.heap_arenas, st.metadata_sys / 1048576.0);

	printf("\nA child process frees the same pointer twice:\n");
	int died_ok = in_child(double_free, NULL, SIGABRT);

	printf("\nA user arena (backend: %s):\n", mh_backend_name());
	mh_arena *a = mh_arena_new();
	struct node *first = NULL, *oldest = NULL;
	uint64_t t0 = now_ns();
	for (int i = 0; i < 1000000; i++) {
		struct node *n = mh_arena_alloc(a, sizeof(*n), 0);

		n->next = first;
		first = n;
		if (!oldest)
			oldest = n;	/* in the first chunk, which will fault */
	}
	uint64_t t1 = now_ns();
	strcpy(oldest->payload, "still here?");
	mh_stats_read(&st);
	printf("  1M nodes bump-allocated in %.1f ms (%.1f ns each, first-touch page faults included) into %llu chunks of 8 MiB\n",
	       (t1 - t0) / 1e6, (double)(t1 - t0) / 1e6, (unsigned long long)st.arena_chunks_live);
	t0 = now_ns();
	mh_arena_free(a);
	t1 = now_ns();
	mh_stats_read(&st);
	printf("  freed in %.3f ms: %llu chunks quarantined (%llu MiB of address space), %llu kept for reuse\n",
	       (t1 - t0) / 1e6, (unsigned long long)st.arena_chunks_quarantined,
	       (unsigned long long)(st.arena_quarantined_bytes >> 20),
	       (unsigned long long)st.arena_chunks_reuse);
	printf("  a child reads a stale pointer into the freed arena:\n");
	died_ok &= in_child(touch, oldest, SIGSEGV);
	return died_ok ? 0 : 1;
}
