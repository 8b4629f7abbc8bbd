// SPDX-License-Identifier: MIT
/*
 * `make demo`: the library at work, narrated. Builds and frees a linked
 * structure across threads, shows the page heap growing and the scavenger
 * giving a freed peak back, and lets a child process commit a double free
 * to show how mheap reports it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
	struct mh_stats st;

	mh_stats_read(&st);
	printf("  %-34s heap_inuse %6.1f MiB  idle %6.1f MiB  released %6.1f MiB  RSS %4zu MiB\n",
	       when, st.heap_inuse / 1048576.0, st.heap_idle / 1048576.0,
	       st.heap_released / 1048576.0, rss_mib());
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
	struct mh_stats st;

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
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(STDOUT_FILENO, STDERR_FILENO);
		char *p = mh_malloc(32);
		mh_free(p);
		mh_free(p);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	printf("  child ended by signal %d (%s)\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0,
	       WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no signal");
	return WIFSIGNALED(status) ? 0 : 1;
}
