/* SPDX-License-Identifier: MIT */
/*
 * Report lines built inside a SIGSEGV handler (uaf.c, secure_report.c):
 * formatted by hand into a stack buffer, no allocation, no stdio, so that
 * they are async-signal-safe; the caller writes the line with one write(2).
 */
#ifndef MHEAP_REPORT_H
#define MHEAP_REPORT_H

#include "internal.h"

struct line {
	char buf[320];
	size_t n;
};

static inline void put_str(struct line *l, const char *s)
{
	while (*s && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = *s++;
}

/* v in base 10 or 16 (with 0x). */
static inline void put_num(struct line *l, uint64_t v, unsigned base)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		put_str(l, "0x");
	while (i > 0 && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = tmp[--i];
}

/* Milliseconds with three decimals. */
static inline void put_ms(struct line *l, uint64_t ns)
{
	uint64_t us = ns / 1000;
	char frac[4] = { (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
			 (char)('0' + us % 10), 0 };

	put_num(l, us / 1000, 10);
	put_str(l, ".");
	put_str(l, frac);
}

/* " (guard backend)\n": every fault report ends so, naming the backend
 * that faulted the memory. */
static inline void put_backend(struct line *l, const char *name)
{
	put_str(l, " (");
	put_str(l, name);
	put_str(l, " backend)\n");
}

#endif
