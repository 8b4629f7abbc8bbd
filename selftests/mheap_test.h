/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the mheap selftests: running a piece of code in a child
 * process and collecting how it ended and what it printed on stderr, and
 * reading the process's resident memory and its mappings.
 */
#ifndef MHEAP_TEST_H
#define MHEAP_TEST_H

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct child_result {
	int status;		/* as from waitpid */
	char err[8192];		/* what the child wrote on stderr */
};

/* Run fn(arg) in a child with stderr captured; the child exits 0 after fn. */
static inline void run_child(void (*fn)(void *), void *arg, struct child_result *res)
{
	int pfd[2];
	pid_t pid;
	size_t n = 0;

	memset(res, 0, sizeof(*res));
	if (pipe(pfd))
		abort();
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		dup2(pfd[1], STDERR_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		fn(arg);
		_exit(0);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t r = read(pfd[0], res->err + n, sizeof(res->err) - 1 - n);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(pfd[0]);
	waitpid(pid, &res->status, 0);
}

/* Start this program again with the "NAME=value" strings of env (NULL-ended)
 * added to its environment: for options read when the heap is set up.
 * Returns only on failure. */
static inline int exec_self_with(char **argv, const char *const *env)
{
	for (; *env; env++)
		putenv((char *)*env);
	execv("/proc/self/exe", argv);
	perror("execv /proc/self/exe");
	return 1;
}

static inline bool died_of(const struct child_result *res, int sig)
{
	return WIFSIGNALED(res->status) && WTERMSIG(res->status) == sig;
}

/* How forked child pid ended: its exit status, 128 + a signal, or -1 when
 * it had not ended after ms milliseconds (it is killed then). For children
 * that may hang in a fork handler, before they could set a timer. */
static inline int wait_child_ms(pid_t pid, int ms)
{
	int status = 0;

	for (int i = 0; i < ms; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* Pages of [p, p + len) in memory (p page-aligned). */
static inline size_t resident_pages_in(void *p, size_t len)
{
	size_t n = len / 4096, count = 0;
	unsigned char *vec = malloc(n);

	if (!vec || mincore(p, len, vec))
		abort();
	for (size_t i = 0; i < n; i++)
		count += vec[i] & 1;
	free(vec);
	return count;
}

/* Field n (0: VmSize, 1: resident) of /proc/self/statm, in bytes; 0 if
 * unreadable. */
static inline size_t statm_bytes(int n)
{
	long field[2] = { 0, 0 };
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &field[0], &field[1]) != 2)
		field[n] = 0;
	fclose(f);
	return (size_t)field[n] * (size_t)sysconf(_SC_PAGESIZE);
}

/* Resident set size of this process in bytes. */
static inline size_t rss_bytes(void)
{
	return statm_bytes(1);
}

/* Address space (VmSize) of this process in bytes. */
static inline size_t vm_bytes(void)
{
	return statm_bytes(0);
}

/* Lines of /proc/self/maps (VMAs) overlapping [lo, hi); -1 if unreadable. */
static inline int vmas_in(uintptr_t lo, uintptr_t hi)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e;
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < hi && e > lo)
			n++;
	fclose(f);
	return n;
}

/*
 * The number a one-number file holds (sysfs, procfs), or -1. It is read as
 * unsigned and given back as its bits, so negative numbers come back as
 * they are and UINT64_MAX (the module's "no limit") is -1 too.
 */
static inline long long read_number_file(const char *path)
{
	unsigned long long v;
	FILE *f = fopen(path, "re");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%llu", &v);
	fclose(f);
	return n == 1 ? (long long)v : -1;
}

/* All VMAs of the process. */
static inline int count_vmas(void)
{
	return vmas_in(0, UINTPTR_MAX);
}

/*
 * The 6.1 kselftest harness runs a TEST_F body even after FIXTURE_SETUP
 * called SKIP() (later kernels return early); fixture tests start with this.
 */
#define RETURN_IF_SETUP_SKIPPED() do { if (_metadata->skip) return; } while (0)

/* Built with a sanitizer (the top Makefile defines this for asan/tsan). */
#ifdef MHEAP_SANITIZER
#define UNDER_SANITIZER 1
#else
#define UNDER_SANITIZER 0
#endif

#endif
