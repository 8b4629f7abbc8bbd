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

void mh_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint(STDERR_FILENO, "mheap: ", fmt, ap);
	va_end(ap);
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
