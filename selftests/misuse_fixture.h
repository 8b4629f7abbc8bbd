/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Heap misuse, one small program per kind, in the manner of hardened_malloc's
 * own test suite (misuse_*_test.c, a file per kind of misuse): each runs
 * as its test program started again with the misuse's name (MISUSE=name)
 * and the mode's environment, and the test checks how it ended - the
 * signal, or that it ran to its end - and the exact first line of its
 * report.
 *
 * A file states each misuse as its program followed by MISUSE_TEST(name,
 * default, secure, sampled): what it gives in each mode. What the default
 * mode does not catch is stated there (the program survives, silent), not
 * skipped. Modes:
 *   default   no MHEAP_SECURE;
 *   secure    MHEAP_SECURE=1, sampling off (MHEAP_SECURE_SAMPLE=0 and
 *             MHEAP_SECURE_MIDDLE_SAMPLE=0) so that the outcome does not
 *             depend on which allocation is sampled;
 *   sampled   MHEAP_SECURE=1 with every small and middle allocation
 *             sampled (both 1): the guarded page each one gets.
 * The secure modes run on every fault backend that can fault here (kmod
 * only with /dev/mheap: SKIP otherwise): fixture `misuse`, a variant per
 * mode and backend.
 *
 * A guarded block's report must go on with the stacks that allocated
 * and freed it.
 *
 * A misuse program prints the addresses its report line will name on
 * stderr, one per line, before the misuse (say); the line is the
 * expectation's format with them filled in ($1, $2, ... in order), '#'
 * standing for the time since the free (digits and a point) and '@' for
 * the name of the backend that faults guarded blocks (with kmod, guard or
 * mprotect: their memory must survive fork, blocks_across_fork).
 *
 * main here runs the misuse a process was started for, else the harness:
 * each file ends with TEST_HARNESS_MAIN as any kselftest, which defines
 * harness_main here.
 */
#ifndef MHEAP_MISUSE_FIXTURE_H
#define MHEAP_MISUSE_FIXTURE_H

#include <errno.h>
#include <stdint.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "fault.h"
#include "mheap_impl.h"

#define LARGE	((size_t)2 << 20)	/* a large block, guarded (MHEAP_SECURE_LARGE) */
#define MIDDLE	((size_t)64 << 10)	/* a middle block: secure_middle.c */

/* ------------------------------------------------------------ the programs' helpers */

/* Print an address the report will name ($1, $2, ... in the expectation),
 * on stderr before the report, as "misuse: 0x...". */
#define SAY "misuse: "
static inline void say(const void *p)
{
	fprintf(stderr, SAY "%#lx\n", (unsigned long)(uintptr_t)p);
}

static volatile char sink __attribute__((unused));

/* $1 the block, $2 its end. */
static inline char *small_block(size_t size)
{
	char *p = mh_malloc(size);

	say(p);
	say(p + size);
	return p;
}

/* ------------------------------------------------------------ what a misuse gives */

enum mode { DEFAULT, SECURE, SAMPLED, MODES };

/* How a misuse program ends. */
enum end {
	SURVIVES,	/* runs to its end, silent: not caught */
	REUSED,		/* status 3: the freed block came back at once */
	ABORTS,		/* SIGABRT after its report line */
	FAULTS,		/* SIGSEGV after its report line */
	CRASHES,	/* SIGSEGV, silent: it ran off the heap's mapped end */
};

struct expect {
	enum end end;
	const char *line;	/* the report's first line: $N, # and @ as at the top */
};

#define NOT_CAUGHT { SURVIVES, NULL }
/* An access at the start of a block freed and faulted. */
#define UAF(access, n) { FAULTS, "mheap: use-after-free: " access " $1 at offset 0 of freed " \
			 n "-byte block [$1, $2), freed # ms ago (@ backend)" }
/* An access at offset off ($3) of a block freed and faulted. */
#define UAF_AT(access, off, n) { FAULTS, "mheap: use-after-free: " access " $3 at offset " off \
				 " of freed " n "-byte block [$1, $2), freed # ms ago (@ backend)" }
/* A write just past the end of a guarded block. */
#define PAST_END(n) { FAULTS, "mheap: heap overflow: write to $2, 0 bytes past the end of " \
		      n "-byte block [$1, $2) (@ backend)" }
#define CANARY { ABORTS, "mheap: heap overflow: canary after 32-byte block $1 overwritten " \
		 "at offset 32, detected at free" }
/* A write at offset at of an n-byte block's canary. */
#define CANARY_AT(n, at) { ABORTS, "mheap: heap overflow: canary after " n "-byte block $1 " \
			   "overwritten at offset " at ", detected at free" }
#define USABLE_AFTER_FREE { ABORTS, "mheap: use after free of $1 in malloc_usable_size" }
#define CANARY_IN_REALLOC { ABORTS, "mheap: heap overflow: canary after 20-byte block $1 " \
			    "overwritten at offset 20, detected in realloc" }
#define ZERO_SIZE(access) { FAULTS, "mheap: zero-size access: " access \
			    " $1 through malloc(0)'s pointer $1" }
/* The same in every mode. */
#define ALL_MODES(...) [DEFAULT] = __VA_ARGS__, [SECURE] = __VA_ARGS__, [SAMPLED] = __VA_ARGS__

/* A misuse: its program, run in a process of its own, what it gives in
 * each mode, and a setting its processes get in every mode ("NAME=value",
 * or NULL). */
struct misuse {
	const char *name;
	void (*run)(void);
	const char *env;
	struct expect in[MODES];
};

/* The file's misuses, for main to find the one a process runs. */
static const struct misuse *misuses[64];
static unsigned misuse_count;

static inline void misuse_register(const struct misuse *m)
{
	if (misuse_count == sizeof(misuses) / sizeof(misuses[0]))
		abort();
	misuses[misuse_count++] = m;
}

/* ------------------------------------------------------------ running them */

/* ------------------------------------------------------------ running them */

/* How a misuse program ended, the addresses it printed, and the rest of
 * what it wrote on stderr: its report. */
struct run {
	struct child_result child;
	char values[9][24];	/* $1..$9 */
	const char *err;
};

/* The child: this program again, as misuse name, with the "NAME=value"
 * strings of env (NULL-ended) added to the environment. */
static const char *const *exec_env;

static void exec_misuse(void *name)
{
	setenv("MISUSE", name, 1);
	for (const char *const *e = exec_env; *e; e++)
		putenv((char *)*e);
	execl("/proc/self/exe", program_invocation_short_name, (char *)NULL);
	_exit(127);
}

static void run_misuse(const char *name, const char *const *env, struct run *r)
{
	unsigned n = 0;

	memset(r, 0, sizeof(*r));
	exec_env = env;
	run_child(exec_misuse, (void *)name, &r->child);
	r->err = r->child.err;
	while (!strncmp(r->err, SAY, strlen(SAY))) {
		const char *v = r->err + strlen(SAY), *end = strchr(v, '\n');

		if (!end)
			break;
		if (n < 9)
			snprintf(r->values[n++], sizeof(r->values[0]), "%.*s", (int)(end - v), v);
		r->err = end + 1;
	}
}

/* Whether text starts with the line fmt describes, filled in from r (see
 * the top); *want gets fmt filled in, for the log. */
static bool line_matches(const char *fmt, const struct run *r, const char *backend,
			 const char *text, char *want, size_t size)
{
	size_t n = 0;
	bool ok = true;

	for (const char *f = fmt; *f && n < size - 1; f++) {
		const char *put = NULL;

		if (*f == '$' && f[1] >= '1' && f[1] <= '9') {
			put = r->values[*++f - '1'];
		} else if (*f == '@') {
			put = backend;
		} else if (*f == '#') {
			want[n++] = '#';
			if (ok && (*text < '0' || *text > '9'))
				ok = false;
			while (ok && ((*text >= '0' && *text <= '9') || *text == '.'))
				text++;
			continue;
		} else {
			want[n++] = *f;
			if (ok && *text++ != *f)
				ok = false;
			continue;
		}
		for (; *put && n < size - 1; put++) {
			want[n++] = *put;
			if (ok && *text++ != *put)
				ok = false;
		}
	}
	want[n] = '\0';
	return ok && (*text == '\n');
}

FIXTURE(misuse) {};

FIXTURE_VARIANT(misuse)
{
	enum mode mode;
	const char *backend;	/* NULL: the default (auto) */
};

FIXTURE_VARIANT_ADD(misuse, default) { .mode = DEFAULT };
FIXTURE_VARIANT_ADD(misuse, secure_guard) { .mode = SECURE, .backend = "guard" };
FIXTURE_VARIANT_ADD(misuse, secure_mprotect) { .mode = SECURE, .backend = "mprotect" };
FIXTURE_VARIANT_ADD(misuse, secure_kmod) { .mode = SECURE, .backend = "kmod" };
FIXTURE_VARIANT_ADD(misuse, sampled_guard) { .mode = SAMPLED, .backend = "guard" };
FIXTURE_VARIANT_ADD(misuse, sampled_mprotect) { .mode = SAMPLED, .backend = "mprotect" };
FIXTURE_VARIANT_ADD(misuse, sampled_kmod) { .mode = SAMPLED, .backend = "kmod" };

FIXTURE_SETUP(misuse)
{
	if (variant->backend && !fault_backend_select(variant->backend)) {
		if (!strcmp(variant->backend, "kmod"))
			SKIP(return, "kmod backend unavailable: needs /dev/mheap with fault commands");
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	}
}

FIXTURE_TEARDOWN(misuse) {}

/* Run misuse m in the variant's mode and check it against what it gives there. */
static void check_misuse(struct __test_metadata *_metadata, const FIXTURE_VARIANT(misuse) *variant,
			 const struct misuse *m)
{
	static const char *const modes[MODES][4] = {
		[DEFAULT] = { NULL },
		[SECURE] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=0",
			     "MHEAP_SECURE_MIDDLE_SAMPLE=0", NULL },
		[SAMPLED] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=1",
			      "MHEAP_SECURE_MIDDLE_SAMPLE=1", NULL },
	};
	const char *misuse = m->name;
	const char *env[8] = { NULL };
	char backend_env[64], want[512];
	const struct expect *e;
	const char *backend;
	struct run r;
	unsigned n = 0;

	RETURN_IF_SETUP_SKIPPED();
	e = &m->in[variant->mode];
	for (const char *const *v = modes[variant->mode]; *v; v++)
		env[n++] = *v;
	backend = variant->backend ? variant->backend : fault_backend()->name;
	snprintf(backend_env, sizeof(backend_env), "MHEAP_BACKEND=%s", backend);
	env[n++] = backend_env;
	if (m->env)
		env[n++] = m->env;
	run_misuse(misuse, env, &r);

	switch (e->end) {
	case SURVIVES:
		EXPECT_TRUE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0)
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		EXPECT_STREQ("", r.err);
		return;
	case REUSED:
		EXPECT_TRUE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 3)
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		return;
	case CRASHES:
		/* A sanitizer's runtime takes the SIGSEGV and reports it. */
		if (UNDER_SANITIZER) {
			EXPECT_FALSE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0);
			EXPECT_EQ(NULL, strstr(r.err, "mheap:")) TH_LOG("%s", r.err);
			return;
		}
		EXPECT_TRUE(died_of(&r.child, SIGSEGV))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		EXPECT_STREQ("", r.err);
		return;
	case ABORTS:
		EXPECT_TRUE(died_of(&r.child, SIGABRT))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		break;
	case FAULTS:
		EXPECT_TRUE(died_of(&r.child, SIGSEGV))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		break;
	}
	EXPECT_TRUE(line_matches(e->line, &r, fault_block_backend()->name, r.err, want,
				 sizeof(want)))
		TH_LOG("%s: want \"%s\", got \"%s\"", misuse, want, r.err);
	/* A guarded block's report goes on with the stacks that allocated
	 * it and, once freed, freed it. */
	if (e->end == FAULTS && strstr(e->line, "-byte block [")) {
		EXPECT_NE(NULL, strstr(r.err, "\nmheap: allocated by:\n")) TH_LOG("%s", r.err);
		if (strstr(e->line, "use-after-free"))
			EXPECT_NE(NULL, strstr(r.err, "\nmheap: freed by:\n")) TH_LOG("%s", r.err);
	}
}

/*
 * The test of misuse name, whose program is the function name, in every
 * mode: what it gives follows, in the order default, secure, sampled
 * (struct expect). MISUSE_TEST_ENV gives its processes a setting more.
 */
#define MISUSE_TEST_ENV(name, setting, ...)						\
	static const struct misuse name##_misuse = { #name, name, setting, { __VA_ARGS__ } }; \
	static void __attribute__((constructor)) name##_register(void)			\
	{										\
		misuse_register(&name##_misuse);					\
	}										\
	TEST_F(misuse, name)								\
	{										\
		check_misuse(_metadata, variant, &name##_misuse);			\
	}
#define MISUSE_TEST(name, ...)	MISUSE_TEST_ENV(name, NULL, __VA_ARGS__)

int harness_main(int argc, char **argv);

int main(int argc, char **argv)
{
	const char *name = getenv("MISUSE");

	if (!name)
		return harness_main(argc, argv);
	for (unsigned i = 0; i < misuse_count; i++) {
		if (!strcmp(misuses[i]->name, name)) {
			misuses[i]->run();
			return 0;
		}
	}
	fprintf(stderr, "%s: no misuse %s\n", program_invocation_short_name, name);
	return 2;
}

/* TEST_HARNESS_MAIN, at the end of the file, defines harness_main. */
#define main harness_main

#endif /* MHEAP_MISUSE_FIXTURE_H */
