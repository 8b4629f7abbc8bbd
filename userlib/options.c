// SPDX-License-Identifier: MIT
/*
 * The options (options.h): one table of every MHEAP_* variable, with its
 * default, what its value may be and a line on what it does, and the
 * parsing, which never allocates. Every value is checked each time it is
 * read, and a constructor reads them all when the program starts, so a bad
 * value stops the program at once with one line naming it, "mheap:
 * NAME=VALUE: why", however late the library would first have used it. An
 * empty value is the same as none: the default applies. MHEAP_VERBOSE=1
 * prints the table's values then, and the fault backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "secure.h"

enum opt_kind {
	OPT_NUMBER,	/* decimal, optional K, M or G suffix (powers of 1024) */
	OPT_FLAG,	/* 0 or 1 */
	OPT_WORD,	/* one of word[], or any (word[0] NULL: its reader checks) */
};

static const struct option {
	const char *name;
	enum opt_kind kind;
	const char *def;	/* the default, as it would be written */
	uint64_t min;		/* the least its reader can use (OPT_NUMBER) */
	uint64_t max;		/* the most its reader can use (a flag is read as 0 or 1) */
	uint64_t step;		/* OPT_NUMBER: a multiple of this, if set */
	const char *words;	/* OPT_WORD: the values allowed, as a phrase */
	const char *word[4];	/* ... and one by one, NULL-terminated */
	const char *desc;
} options[MH_OPT_COUNT] = {
#define NUMBER(o, n, d, m, s, ...) [o] = { .name = n, .kind = OPT_NUMBER, .def = d, .max = m, .desc = s, \
					       __VA_ARGS__ }
#define FLAG(o, n, d, s) [o] = { .name = n, .kind = OPT_FLAG, .def = d, .max = 1, .desc = s }
#define WORD(o, n, d, s, ...) [o] = { .name = n, .kind = OPT_WORD, .def = d, .desc = s, __VA_ARGS__ }
	FLAG(MH_OPT_VERBOSE, "MHEAP_VERBOSE", "0",
	     "print the options and the fault backend on stderr at start-up"),
	WORD(MH_OPT_STATS, "MHEAP_STATS", "0", "statistics on stderr at exit: 1 as text, json as one JSON line",
	     .words = "0, 1 or json", .word = { "0", "1", "json" }),
	NUMBER(MH_OPT_SCAVENGE_RESERVE, "MHEAP_SCAVENGE_RESERVE", "16M", UINT64_MAX,
	       "free memory always kept resident"),
	/* scavenge.c multiplies it by the heap's pages in use */
	NUMBER(MH_OPT_SCAVENGE_PERCENT, "MHEAP_SCAVENGE_PERCENT", "25",
	       UINT64_MAX >> (MH_ADDR_BITS - MH_PAGE_SHIFT),
	       "or this share of the in-use heap kept resident, if larger"),
	/* scavenge.c keeps it in nanoseconds */
	NUMBER(MH_OPT_SCAVENGE_DECAY_MS, "MHEAP_SCAVENGE_DECAY_MS", "100", UINT64_MAX / 1000000,
	       "half-life of the recent peak the scavenger keeps, after its hold"),
	/* fault.c's constructor checks the name and that the backend works */
	WORD(MH_OPT_BACKEND, "MHEAP_BACKEND", "auto",
	     "fault backend: auto, kmod, guard, mprotect or none"),
	WORD(MH_OPT_KMOD_IO, "MHEAP_KMOD_IO", "ioctl", "how the kmod backend sends its batches",
	     .words = "uring or ioctl", .word = { "uring", "ioctl" }),
	NUMBER(MH_OPT_ARENA_CHUNK, "MHEAP_ARENA_CHUNK", "8M", (uint64_t)1 << 30,
	       "arena chunk size (64K to 1G, whole 8K pages)", .min = 64 * 1024,
	       .step = MH_PAGE_SIZE),
	FLAG(MH_OPT_ARENA_REUSE, "MHEAP_ARENA_REUSE", "1",
	     "reuse a freed arena's active chunk rather than fault it"),
	NUMBER(MH_OPT_ARENA_REUSE_MAX, "MHEAP_ARENA_REUSE_MAX", "16M", UINT64_MAX,
	       "dead data the reuse list keeps resident"),
	NUMBER(MH_OPT_QUARANTINE_MAX, "MHEAP_QUARANTINE_MAX", "4G", UINT64_MAX,
	       "address space of freed chunks held in quarantine"),
	NUMBER(MH_OPT_ARENA_READY_MAX, "MHEAP_ARENA_READY_MAX", "64M", UINT64_MAX,
	       "chunks out of quarantine kept for new arenas"),
	FLAG(MH_OPT_ARENA_THP, "MHEAP_ARENA_THP", "1",
	     "arena chunks may ask for transparent huge pages"),
	NUMBER(MH_OPT_ARENA_THP_AFTER, "MHEAP_ARENA_THP_AFTER", "256K", UINT64_MAX,
	       "small-page window at the start of an arena's first chunk"),
	FLAG(MH_OPT_ARENA_RECYCLE, "MHEAP_ARENA_RECYCLE", "1",
	     "freed full chunks move their pages to warm chunks"),
	NUMBER(MH_OPT_ARENA_WARM_MAX, "MHEAP_ARENA_WARM_MAX", "128M", UINT64_MAX,
	       "resident memory kept in warm chunks (arenas' and guarded blocks')"),
	FLAG(MH_OPT_SECURE, "MHEAP_SECURE", "0",
	     "secure heap: canaries, zero-on-free, guarded large and sampled blocks"),
	/* the secure mode's trailer keeps block sizes in 32 bits (secure_canary.h);
	 * below its largest small block, a block would be both */
	NUMBER(MH_OPT_SECURE_LARGE, "MHEAP_SECURE_LARGE", "2M", (uint64_t)1 << 31,
	       "secure heap: blocks from this size on get a guard page and quarantine",
	       .min = MH_MAX_SMALL_SIZE - TRAILER + 1),
	NUMBER(MH_OPT_SECURE_SAMPLE, "MHEAP_SECURE_SAMPLE", "10000", UINT32_MAX / 2,
	       "secure heap: about 1 in this many small blocks is guarded (0: none)"),
	NUMBER(MH_OPT_SECURE_MIDDLE_SAMPLE, "MHEAP_SECURE_MIDDLE_SAMPLE", "1G", (uint64_t)1 << 40,
	       "secure heap: blocks from 32 KiB up to MHEAP_SECURE_LARGE: one guarded per about this many bytes of them (0: none)"),
	FLAG(MH_OPT_QUARANTINE_SCAN, "MHEAP_QUARANTINE_SCAN", "1",
	     "a chunk leaves quarantine only when no pointer into it is found (0: FIFO)"),
	NUMBER(MH_OPT_QUARANTINE_CAP, "MHEAP_QUARANTINE_CAP", "16G", UINT64_MAX,
	       "address space quarantine holds at most, pointers into it or not"),
	NUMBER(MH_OPT_QUARANTINE_SCAN_SHARE, "MHEAP_QUARANTINE_SCAN_SHARE", "3", 100,
	       "percent of the time scans may take: past the budget, a scan waits (up to the cap)"),
	NUMBER(MH_OPT_QUARANTINE_SCAN_THREADS, "MHEAP_QUARANTINE_SCAN_THREADS", "0", 8,
	       "threads a scan reads with (0: one per CPU, at most 8; 1: the freeing thread alone)"),
	FLAG(MH_OPT_QUARANTINE_TO_HEAP, "MHEAP_QUARANTINE_TO_HEAP", "0",
	     "chunks out of quarantine may go back to the heap (malloc), not only to arenas"),
#undef NUMBER
#undef FLAG
#undef WORD
};

/*
 * A bound as the user would write it: with the largest of the G, M and K
 * suffixes that divides it ("1G", "8K"), else whole; the largest 64-bit
 * number, which nobody types, by its name.
 */
static const char *bound_text(uint64_t n, char buf[static 24])
{
	static const char suffix[] = "GMK";

	if (n == UINT64_MAX)
		return "2^64 - 1";
	for (unsigned i = 0; i < 3; i++) {
		unsigned shift = 30 - 10 * i;

		if (n && !(n & ((UINT64_C(1) << shift) - 1))) {
			snprintf(buf, 24, "%llu%c", (unsigned long long)(n >> shift), suffix[i]);
			return buf;
		}
	}
	snprintf(buf, 24, "%llu", (unsigned long long)n);
	return buf;
}

/* A number as OPT_NUMBER describes it, or a fatal error. */
static uint64_t parse_number(const struct option *o, const char *v)
{
	const char *c = v;
	uint64_t n = 0;
	unsigned shift = 0;
	char b[24];

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
	if (n > o->max >> shift)
		goto range;
	if (n << shift < o->min)
		mh_fatal("%s=%s: out of range (at least %s)", o->name, v, bound_text(o->min, b));
	if (o->step && (n << shift) % o->step)
		mh_fatal("%s=%s: not a multiple of %s", o->name, v, bound_text(o->step, b));
	return n << shift;
bad:
	mh_fatal("%s=%s: not a decimal number with an optional K, M or G suffix", o->name, v);
range:
	mh_fatal("%s=%s: out of range (at most %s)", o->name, v, bound_text(o->max, b));
}

/* v's index in o's words, or a fatal error; 0 for a word its reader checks. */
static unsigned parse_word(const struct option *o, const char *v)
{
	unsigned i = 0;

	for (; o->word[0] && strcmp(v, o->word[i]); i++)
		if (!o->word[i + 1])
			mh_fatal("%s=%s: use %s", o->name, v, o->words);
	return i;
}

/* The value of an option from the environment, checked; NULL if unset or empty. */
static const char *env_value(const struct option *o)
{
	const char *v = getenv(o->name);

	if (!v || !*v)
		return NULL;
	switch (o->kind) {
	case OPT_NUMBER:
		(void)parse_number(o, v);
		break;
	case OPT_FLAG:
		if (strcmp(v, "0") && strcmp(v, "1"))
			mh_fatal("%s=%s: use 0 or 1", o->name, v);
		break;
	case OPT_WORD:
		(void)parse_word(o, v);
		break;
	}
	return v;
}

const char *mh_option_str(enum mh_opt opt)
{
	const char *v = env_value(&options[opt]);

	return v ? v : options[opt].def;
}

uint64_t mh_option(enum mh_opt opt)
{
	const struct option *o = &options[opt];
	const char *v = mh_option_str(opt);

	switch (o->kind) {
	case OPT_NUMBER:
		return parse_number(o, v);
	case OPT_FLAG:
		return v[0] == '1';
	case OPT_WORD:
		break;
	}
	return parse_word(o, v);
}

static const struct option *by_name(const char *name)
{
	for (unsigned i = 0; i < MH_OPT_COUNT; i++)
		if (!strcmp(options[i].name, name))
			return &options[i];
	mh_fatal("%s: not in options.c's table", name);
}

const char *mh_env_str(const char *name)
{
	return env_value(by_name(name));
}

uint64_t mh_env_u64(const char *name, uint64_t def)
{
	const struct option *o = by_name(name);
	const char *v = env_value(o);

	return v ? parse_number(o, v) : def;
}

/* Every option checked when the program starts (see the top), then
 * printed with MHEAP_VERBOSE=1, one line each. */
__attribute__((constructor(MH_CTOR_OPTIONS))) static void options_check_all(void)
{
	for (unsigned i = 0; i < MH_OPT_COUNT; i++) {
		if (!options[i].name)
			mh_fatal("option %u: not in options.c's table", i);
		(void)env_value(&options[i]);
	}
	if (!mh_option(MH_OPT_VERBOSE))
		return;
	for (unsigned i = 0; i < MH_OPT_COUNT; i++) {
		const char *v = env_value(&options[i]);

		mh_print(STDERR_FILENO, "mheap: %s=%s (%s): %s", options[i].name,
			 v ? v : options[i].def, v ? "set" : "default", options[i].desc);
	}
	mh_print(STDERR_FILENO, "mheap: backend: %s", mh_backend_name());
}
