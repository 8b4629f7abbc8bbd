// SPDX-License-Identifier: MIT
/*
 * Small services the allocator needs that must never allocate: fatal errors
 * and reports written with a single write(2), environment parsing, a clock.
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

void mh_print(int fd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint(fd, "", fmt, ap);
	va_end(ap);
}

/*
 * Every variable the library reads, and what its value may be. mh_env_str
 * and mh_env_u64 check a value each time they read it, and a constructor
 * reads them all when the program starts, so a bad value stops the program
 * at once with one line naming it, "mheap: NAME=VALUE: why", however late
 * the library would first have used it. An empty value is the same as
 * none: the default applies.
 */
enum env_kind {
	ENV_NUMBER,	/* decimal, optional K, M or G suffix (powers of 1024) */
	ENV_FLAG,	/* 0 or 1 */
	ENV_WORD,	/* one of words, or any (words NULL: its reader checks) */
};

static const struct env_var {
	const char *name;
	enum env_kind kind;
	uint64_t max;		/* the most its reader can use (a flag is read as 0 or 1) */
	const char *words;	/* ENV_WORD: the values allowed, as a phrase */
	const char *word[3];	/* ... and one by one, NULL-terminated */
} env_vars[] = {
#define NUMBER(n, m)	{ .name = n, .kind = ENV_NUMBER, .max = m }
#define FLAG(n)		{ .name = n, .kind = ENV_FLAG, .max = 1 }
	FLAG("MHEAP_STATS"),
	NUMBER("MHEAP_SCAVENGE_RESERVE", UINT64_MAX),
	/* scavenge.c multiplies it by the heap's pages in use */
	NUMBER("MHEAP_SCAVENGE_PERCENT", UINT64_MAX >> (MH_ADDR_BITS - MH_PAGE_SHIFT)),
	/* scavenge.c keeps it in nanoseconds */
	NUMBER("MHEAP_SCAVENGE_DECAY_MS", UINT64_MAX / 1000000),
	/* fault.c's constructor checks the name and that the backend works */
	{ .name = "MHEAP_BACKEND", .kind = ENV_WORD },
	{ .name = "MHEAP_KMOD_IO", .kind = ENV_WORD, .words = "uring or ioctl",
	  .word = { "uring", "ioctl" } },
	NUMBER("MHEAP_ARENA_CHUNK", UINT64_MAX),
	FLAG("MHEAP_ARENA_REUSE"),
	NUMBER("MHEAP_ARENA_REUSE_MAX", UINT64_MAX),
	NUMBER("MHEAP_QUARANTINE_MAX", UINT64_MAX),
	NUMBER("MHEAP_ARENA_READY_MAX", UINT64_MAX),
	FLAG("MHEAP_ARENA_THP"),
	NUMBER("MHEAP_ARENA_THP_AFTER", UINT64_MAX),
	FLAG("MHEAP_ARENA_RECYCLE"),
	NUMBER("MHEAP_ARENA_WARM_MAX", UINT64_MAX),
#undef NUMBER
#undef FLAG
};

#define ENV_VARS (sizeof(env_vars) / sizeof(env_vars[0]))

/* A number as ENV_NUMBER describes it, or a fatal error. */
static uint64_t env_number(const struct env_var *e, const char *v)
{
	const char *c = v;
	uint64_t n = 0;
	unsigned shift = 0;

	if (*c < '0' || *c > '9')
		goto bad;
	for (; *c >= '0' && *c <= '9'; c++)
		if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(*c - '0'), &n))
			goto range;
	switch (*c) {
	case 'k': case 'K': shift = 10; c++; break;
	case 'm': case 'M': shift = 20; c++; break;
	case 'g': case 'G': shift = 30; c++; break;
	default: break;
	}
	if (*c != '\0')
		goto bad;
	if (n > e->max >> shift)
		goto range;
	return n << shift;
bad:
	mh_fatal("%s=%s: not a decimal number with an optional K, M or G suffix", e->name, v);
range:
	mh_fatal("%s=%s: out of range (at most %llu)", e->name, v, (unsigned long long)e->max);
}

/* The value of a variable of the table, checked; NULL if unset or empty. */
static const char *env_value(const char *name, const struct env_var **out)
{
	const struct env_var *e = NULL;
	const char *v;

	for (size_t i = 0; !e && i < ENV_VARS; i++)
		if (!strcmp(env_vars[i].name, name))
			e = &env_vars[i];
	if (!e)
		mh_fatal("%s: not in util.c's table of variables", name);
	*out = e;
	v = getenv(name);
	if (!v || !*v)
		return NULL;
	switch (e->kind) {
	case ENV_NUMBER:
		(void)env_number(e, v);
		break;
	case ENV_FLAG:
		if (strcmp(v, "0") && strcmp(v, "1"))
			mh_fatal("%s=%s: use 0 or 1", name, v);
		break;
	case ENV_WORD:
		for (size_t i = 0; e->words && strcmp(v, e->word[i]); i++)
			if (!e->word[i + 1])
				mh_fatal("%s=%s: use %s", name, v, e->words);
		break;
	}
	return v;
}

const char *mh_env_str(const char *name)
{
	const struct env_var *e;

	return env_value(name, &e);
}

uint64_t mh_env_u64(const char *name, uint64_t def)
{
	const struct env_var *e;
	const char *v = env_value(name, &e);

	return v ? env_number(e, v) : def;
}

/* Every variable checked when the program starts (see env_vars). */
__attribute__((constructor)) static void env_check_all(void)
{
	for (size_t i = 0; i < ENV_VARS; i++)
		(void)mh_env_str(env_vars[i].name);
}

uint64_t mh_nanotime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
