// SPDX-License-Identifier: MIT
/*
 * Small services the allocator needs that must never allocate: fatal errors
 * and reports written with a single write(2), a clock. (The environment:
 * options.c.)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) && !defined(__POPCNT__)
#include <cpuid.h>

bool mh_cpu_popcnt;
#endif

/* What the CPU offers beyond the build's baseline (mh_popcount). */
void mh_cpu_init(void)
{
#if defined(__x86_64__) && !defined(__POPCNT__)
	unsigned a, b, c, d;

	if (__get_cpuid(1, &a, &b, &c, &d))
		STORE_RELAXED(&mh_cpu_popcnt, (c & bit_POPCNT) != 0);
#endif
}

static void vprint(int fd, const char *prefix, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n = strlen(prefix);

	memcpy(buf, prefix, n);
	int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(buf) - n - 1 ? (size_t)m : sizeof(buf) - n - 2;
	if (n == 0 || buf[n - 1] != '\n')
		buf[n++] = '\n';
	mh_write_all(fd, buf, n);
}

void mh_write_all(int fd, const char *buf, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/*
 * One report for threads that die together: two threads can find bad
 * frees at the same time (two racing frees of one object can each be
 * caught, by one freer's check and by the other's, or by the owner's
 * sweep: mspan.h, "Double frees"), and each wrote its line before the
 * first abort took the process down. The first thread to get here writes
 * its report; one that comes while a report is being written, or within
 * FATAL_QUIET_NS after one was, waits until it is whole and aborts
 * without its own. The wait is bounded, so that a thread that comes back
 * here while writing (a signal handler's free) or a child forked
 * mid-report does not hang; and a program that survives an abort (a
 * SIGABRT handler that jumps away) has its later reports written.
 */
#define FATAL_QUIET_NS	1000000000ull

static int fatal_writing;		/* a report is being written */
static uint64_t fatal_written;		/* when the last one was, or 0 */

void mh_fatal(const char *fmt, ...)
{
	va_list ap;

	if (!__atomic_exchange_n(&fatal_writing, 1, __ATOMIC_ACQ_REL)) {
		uint64_t done = __atomic_load_n(&fatal_written, __ATOMIC_RELAXED);

		if (!done || mh_nanotime() - done > FATAL_QUIET_NS) {
			va_start(ap, fmt);
			vprint(STDERR_FILENO, "mheap: ", fmt, ap);
			va_end(ap);
			__atomic_store_n(&fatal_written, mh_nanotime(), __ATOMIC_RELAXED);
		}
		__atomic_store_n(&fatal_writing, 0, __ATOMIC_RELEASE);
	} else {
		struct timespec ms = { 0, 1000000 };

		for (int i = 0; i < 1000 && __atomic_load_n(&fatal_writing, __ATOMIC_ACQUIRE); i++)
			nanosleep(&ms, NULL);
	}
	abort();
}

const char mh_in_usable_size[] = " in malloc_usable_size";

void mh_freed_pointer(uintptr_t p, const char *what)
{
	mh_fatal("%s of %#lx%s", what == mh_in_usable_size ? "use after free" : "double free",
		 (unsigned long)p, what);
}

void mh_invalid_pointer(uintptr_t p, const char *what, const char *why)
{
	mh_fatal("%s %#lx%s%s", what == mh_in_usable_size ? "invalid pointer" : "invalid free of",
		 (unsigned long)p, what, why);
}

void mh_print(int fd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint(fd, "", fmt, ap);
	va_end(ap);
}

uint64_t mh_nanotime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
