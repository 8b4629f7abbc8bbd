/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the secure mode's test programs (secure_*_test.c) share: they run in
 * the secure mode, which is read when the heap is set up, so main here
 * starts the program again with MHEAP_SECURE=1 and no sampling
 * (MHEAP_SECURE_SAMPLE=0, MHEAP_SECURE_MIDDLE_SAMPLE=0: outcomes must not
 * depend on which block is sampled) when MHEAP_SECURE is not set, plus the
 * settings the file names in SECURE_TEST_ENV, defined before the include
 * ("NAME=value" strings, each followed by a comma). Then it runs the
 * harness: each file ends with TEST_HARNESS_MAIN as any kselftest, which
 * defines harness_main here.
 *
 * A file whose tests run cases of their own in a new process (this program
 * again, SECURE_CASE=name: secure_exec_case) defines SECURE_TEST_CASE as the
 * name of its function that runs one; main calls it for such a process
 * instead of the harness, and exits 0 if it returns.
 *
 * And the helpers more than one file uses.
 */
#ifndef MHEAP_SECURE_FIXTURE_H
#define MHEAP_SECURE_FIXTURE_H

#include <errno.h>
#include <stdint.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"

#ifndef SECURE_TEST_ENV
#define SECURE_TEST_ENV
#endif

#ifdef SECURE_TEST_CASE
static void SECURE_TEST_CASE(const char *name);
#endif

/* Start this program again as case name (SECURE_TEST_CASE), with the
 * environment it has (the secure mode's, and what the caller set). */
static inline void secure_exec_case(const char *name)
{
	setenv("SECURE_CASE", name, 1);
	execl("/proc/self/exe", program_invocation_short_name, (char *)NULL);
	_exit(127);
}

/* The first byte of p[0..n) that is not the byte i would have in a block
 * filled with (unsigned char)i (pattern) or with zeroes (!pattern); n if
 * none. */
static inline size_t first_wrong(const unsigned char *p, size_t n, bool pattern)
{
	size_t i = 0;

	while (i < n && p[i] == (pattern ? (unsigned char)i : 0))
		i++;
	return i;
}

/* Runs fn in a child that prints, on a line of its own, the address it
 * then frees a second time: its stderr must be exactly that line and the
 * double free's one-line report. */
static inline void expect_printed_double_free(struct __test_metadata *_metadata,
					      void (*fn)(void *))
{
	struct child_result r;
	char want[128];
	unsigned long p;

	run_child(fn, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want), "%#lx\nmheap: double free of %#lx\n", p, p);
	EXPECT_STREQ(want, r.err);
}

int harness_main(int argc, char **argv);

int main(int argc, char **argv)
{
	static const char *const env[] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=0",
					   "MHEAP_SECURE_MIDDLE_SAMPLE=0", SECURE_TEST_ENV NULL };

	if (!getenv("MHEAP_SECURE"))
		return exec_self_with(argv, env);
#ifdef SECURE_TEST_CASE
	if (getenv("SECURE_CASE")) {
		SECURE_TEST_CASE(getenv("SECURE_CASE"));
		return 0;
	}
#endif
	return harness_main(argc, argv);
}

/* TEST_HARNESS_MAIN, at the end of the file, defines harness_main. */
#define main harness_main

#endif /* MHEAP_SECURE_FIXTURE_H */
