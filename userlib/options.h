/* SPDX-License-Identifier: MIT */
/*
 * The library's options: every MHEAP_* environment variable, with its
 * default, what its value may be and what it does, in one table
 * (options.c). Readers take an option's value by its number here, never by
 * name, so no default is written twice. Included by internal.h, whose
 * MH_HIDDEN it uses.
 */
#ifndef MHEAP_OPTIONS_H
#define MHEAP_OPTIONS_H

#include <stdint.h>

enum mh_opt {
	MH_OPT_VERBOSE,
	MH_OPT_STATS,
	MH_OPT_SCAVENGE_RESERVE,
	MH_OPT_SCAVENGE_PERCENT,
	MH_OPT_SCAVENGE_DECAY_MS,
	MH_OPT_BACKEND,
	MH_OPT_KMOD_IO,
	MH_OPT_ARENA_CHUNK,
	MH_OPT_ARENA_REUSE,
	MH_OPT_ARENA_REUSE_MAX,
	MH_OPT_QUARANTINE_MAX,
	MH_OPT_ARENA_READY_MAX,
	MH_OPT_ARENA_THP,
	MH_OPT_ARENA_THP_AFTER,
	MH_OPT_ARENA_RECYCLE,
	MH_OPT_ARENA_WARM_MAX,
	MH_OPT_SECURE,
	MH_OPT_SECURE_LARGE,
	MH_OPT_SECURE_SAMPLE,
	MH_OPT_SECURE_MIDDLE_SAMPLE,
	MH_OPT_QUARANTINE_SCAN,
	MH_OPT_QUARANTINE_CAP,
	MH_OPT_QUARANTINE_SCAN_SHARE,
	MH_OPT_QUARANTINE_SCAN_THREADS,
	MH_OPT_QUARANTINE_TO_HEAP,
	MH_OPT_COUNT
};

/* MHEAP_STATS's values, as mh_option gives them. */
enum { MH_STATS_OFF, MH_STATS_TEXT, MH_STATS_JSON };

/*
 * The value of an option, from the environment or else its default, checked
 * on every read: a bad value is fatal ("mheap: NAME=VALUE: why"), and an
 * empty one is the same as none. The variables are read, not cached, so a
 * reader sees what the environment says when it asks (readers ask once, at
 * start-up). mh_option: a number, a flag (0 or 1), or for a word from a
 * list its index in that list. mh_option_str: the value as written.
 */
MH_HIDDEN uint64_t mh_option(enum mh_opt opt);
MH_HIDDEN const char *mh_option_str(enum mh_opt opt);

/*
 * The same by name, for the tests: mh_env_u64 is a number's value or def;
 * mh_env_str the value, or NULL when unset or empty. A name not in the
 * table is fatal.
 */
MH_HIDDEN uint64_t mh_env_u64(const char *name, uint64_t def);
MH_HIDDEN const char *mh_env_str(const char *name);

#endif /* MHEAP_OPTIONS_H */
