// SPDX-License-Identifier: GPL-2.0
/*
 * The MHEAP_* environment variables (userlib/options.c): numbers are decimal
 * with an optional K, M or G suffix, flags are 0 or 1, words are from a
 * list; an empty value is the default. A bad value stops the program when
 * it starts, by abort, with one line "mheap: NAME=VALUE: why": checked in
 * children that start this very program with the value set and end at once.
 */
#include "kselftest_harness.h"
#include "mheap_test.h"

#include "internal.h"

/* The argument that makes this program end as soon as main is reached. */
#define STARTUP_ONLY "--startup-only"
/* ... and the one that makes it allocate MALLOCS objects first. */
#define MALLOC_THEN_END "--malloc-then-end"
#define MALLOCS 1000

/* What start_with's child runs with. */
static const char *start_arg = STARTUP_ONLY;

/* A number variable whose reader takes any 64-bit value. */
#define NUM "MHEAP_QUARANTINE_MAX"

static uint64_t read_num(const char *value)
{
	setenv(NUM, value, 1);
	return mh_env_u64(NUM, 12345);
}

TEST(numbers_are_decimal_even_with_a_leading_zero)
{
	EXPECT_EQ(10, read_num("010"));
	EXPECT_EQ(0, read_num("0"));
}

TEST(suffixes_K_M_G_are_powers_of_1024_in_either_case)
{
	EXPECT_EQ(16ull << 10, read_num("16K"));
	EXPECT_EQ(16ull << 10, read_num("16k"));
	EXPECT_EQ(3ull << 20, read_num("3M"));
	EXPECT_EQ(3ull << 20, read_num("3m"));
	EXPECT_EQ(2ull << 30, read_num("2G"));
	EXPECT_EQ(2ull << 30, read_num("2g"));
}

TEST(the_largest_64_bit_values_are_accepted)
{
	EXPECT_EQ(UINT64_MAX, read_num("18446744073709551615"));
	EXPECT_EQ((UINT64_MAX >> 30) << 30, read_num("17179869183G"));
}

TEST(an_empty_value_is_the_default)
{
	EXPECT_EQ(12345, read_num(""));
	EXPECT_EQ(NULL, mh_env_str(NUM));
}

TEST(an_unset_variable_is_the_default)
{
	unsetenv(NUM);
	EXPECT_EQ(12345, mh_env_u64(NUM, 12345));
}

/* Start this program with the variables of env (NAME=VALUE each, NULL at
 * the end) set; it ends in main (STARTUP_ONLY). */
static void start_with(void *env)
{
	const char *const *kv = env;
	int null = open("/dev/null", O_WRONLY);

	for (; *kv; kv++)
		putenv((char *)*kv);
	dup2(null, STDOUT_FILENO);
	execl("/proc/self/exe", "env_test", start_arg, (char *)NULL);
	_exit(127);
}

TEST(every_variable_at_a_good_value_starts)
{
	static const char *const env[] = {
		"MHEAP_STATS=0", "MHEAP_SCAVENGE_RESERVE=1g", "MHEAP_SCAVENGE_PERCENT=1073741823",
		"MHEAP_SCAVENGE_DECAY_MS=18446744073709", "MHEAP_BACKEND=none",
		"MHEAP_KMOD_IO=ioctl", "MHEAP_ARENA_CHUNK=16M", "MHEAP_ARENA_REUSE=0",
		"MHEAP_QUARANTINE_MAX=18446744073709551615", "MHEAP_ARENA_READY_MAX=",
		"MHEAP_ARENA_THP=1", "MHEAP_ARENA_THP_AFTER=0", "MHEAP_ARENA_RECYCLE=1",
		"MHEAP_ARENA_WARM_MAX=17179869183G", "MHEAP_ARENA_REUSE_MAX=4M", NULL,
	};
	struct child_result res;

	run_child(start_with, (void *)env, &res);
	EXPECT_TRUE(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0)
		TH_LOG("status %#x: %s", res.status, res.err);
	EXPECT_STREQ("", res.err);
}

/* Run this program with env set (as start_with), expecting it to start. */
static void start_ok(struct __test_metadata *_metadata, const char *const *env,
		     struct child_result *res)
{
	run_child(start_with, (void *)env, res);
	ASSERT_TRUE(WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0)
		TH_LOG("status %#x: %s", res->status, res->err);
}

/* How many lines of s start with prefix. */
static int lines_starting(const char *s, const char *prefix)
{
	int n = 0;

	for (const char *l = s; *l; l = strchr(l, '\n') + 1) {
		n += !strncmp(l, prefix, strlen(prefix));
		if (!strchr(l, '\n'))
			break;
	}
	return n;
}

TEST(verbose_prints_every_option_and_the_backend_at_start_up)
{
	static const char *const env[] = {
		"MHEAP_VERBOSE=1", "MHEAP_ARENA_CHUNK=16m", "MHEAP_BACKEND=none",
		"MHEAP_QUARANTINE_MAX=", NULL,
	};
	struct child_result res;

	start_ok(_metadata, env, &res);
	/* One line an option, one for the backend, nothing else. */
	EXPECT_EQ(MH_OPT_COUNT + 1, lines_starting(res.err, "mheap: "))
		TH_LOG("%s", res.err);
	EXPECT_EQ(MH_OPT_COUNT, lines_starting(res.err, "mheap: MHEAP_"));
	EXPECT_EQ(MH_OPT_COUNT + 1, lines_starting(res.err, ""));
	EXPECT_NE(NULL, strstr(res.err, "mheap: MHEAP_VERBOSE=1 (set): "));
	EXPECT_NE(NULL, strstr(res.err, "mheap: MHEAP_ARENA_CHUNK=16m (set): "));
	/* An empty value is the default. */
	EXPECT_NE(NULL, strstr(res.err, "mheap: MHEAP_QUARANTINE_MAX=4G (default): "));
	EXPECT_NE(NULL, strstr(res.err, "mheap: MHEAP_ARENA_REUSE=1 (default): "));
	EXPECT_NE(NULL, strstr(res.err, "mheap: MHEAP_KMOD_IO=ioctl (default): "));
	EXPECT_NE(NULL, strstr(res.err, "\nmheap: backend: none\n")) TH_LOG("%s", res.err);
}

TEST(verbose_0_or_unset_prints_nothing)
{
	static const char *const zero[] = { "MHEAP_VERBOSE=0", NULL };
	static const char *const unset[] = { "MHEAP_VERBOSE", NULL };	/* putenv unsets */
	struct child_result res;

	start_ok(_metadata, zero, &res);
	EXPECT_STREQ("", res.err);
	start_ok(_metadata, unset, &res);
	EXPECT_STREQ("", res.err);
}

/* The statistics a child allocating MALLOCS objects prints at exit with
 * MHEAP_STATS=json: one line, in res->err. */
static void stats_json(struct __test_metadata *_metadata, struct child_result *res)
{
	static const char *const env[] = { "MHEAP_STATS=json", NULL };

	start_arg = MALLOC_THEN_END;
	start_ok(_metadata, env, res);
	start_arg = STARTUP_ONLY;
	ASSERT_EQ(1, lines_starting(res->err, "")) TH_LOG("%s", res->err);
}

/* The number after "key": in a JSON text, or -1. */
static long long json_number(const char *json, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(json, k);
	return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

TEST(stats_json_prints_one_json_object_line_at_exit)
{
	struct child_result res;
	int depth = 0, objects = 0;
	bool in_string = false;

	stats_json(_metadata, &res);
	ASSERT_EQ('{', res.err[0]);
	ASSERT_STREQ("}\n", res.err + strlen(res.err) - 2);
	/* Balanced outside strings, closed only at the end. */
	for (const char *c = res.err; *c; c++) {
		if (*c == '"')
			in_string = !in_string;
		else if (!in_string && (*c == '{' || *c == '['))
			depth++, objects += *c == '{';
		else if (!in_string && (*c == '}' || *c == ']'))
			ASSERT_TRUE(--depth > 0 || c[1] == '\n') TH_LOG("%s", c);
	}
	EXPECT_FALSE(in_string);
	EXPECT_EQ(0, depth);
	/* The object and one per size class. */
	EXPECT_EQ(1 + MH_NUM_SIZE_CLASSES, objects);
	EXPECT_GE(json_number(res.err, "mallocs"), MALLOCS);
	EXPECT_GE(json_number(res.err, "frees"), MALLOCS);
	EXPECT_EQ(sizeof(struct mh_stats), json_number(res.err, "size"));
	EXPECT_EQ(0, json_number(res.err, "arenas_live"));
	EXPECT_GE(json_number(res.err, "arena_chunks_warm"), 0);
	EXPECT_NE(NULL, strstr(res.err, ",\"by_class\":[{\"size\":0,"));
}

TEST(stats_json_is_json_to_python)
{
	struct child_result res;
	char cmd[256];
	FILE *py;

	if (system("python3 -c '' 2>/dev/null") != 0)
		SKIP(return, "python3 is not installed");
	stats_json(_metadata, &res);
	/* A list of the by_class sizes, which must be the size classes. */
	snprintf(cmd, sizeof(cmd), "python3 -c 'import json,sys; d = json.loads(sys.stdin.read()); "
		 "sys.exit(len(d[\"by_class\"]) != %d or d[\"mallocs\"] < %d)'",
		 MH_NUM_SIZE_CLASSES, MALLOCS);
	py = popen(cmd, "w");
	ASSERT_NE(NULL, py);
	fputs(res.err, py);
	EXPECT_EQ(0, pclose(py)) TH_LOG("%s", res.err);
}

FIXTURE(bad_value) {};
FIXTURE_SETUP(bad_value) {}
FIXTURE_TEARDOWN(bad_value) {}

FIXTURE_VARIANT(bad_value)
{
	const char *env;	/* NAME=VALUE */
	const char *why;	/* the end of the message */
};

#define NOT_A_NUMBER "not a decimal number with an optional K, M or G suffix"

FIXTURE_VARIANT_ADD(bad_value, a_negative_number) {
	"MHEAP_SCAVENGE_RESERVE=-1", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, a_plus_sign) { "MHEAP_ARENA_CHUNK=+8M", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, a_hexadecimal_number) {
	"MHEAP_ARENA_THP_AFTER=0x100", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, a_leading_space) { "MHEAP_QUARANTINE_MAX= 4G", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, junk_after_the_suffix) {
	"MHEAP_ARENA_READY_MAX=64MB", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, a_suffix_without_a_number) {
	"MHEAP_ARENA_WARM_MAX=M", NOT_A_NUMBER };
FIXTURE_VARIANT_ADD(bad_value, a_number_above_64_bits) {
	"MHEAP_QUARANTINE_MAX=18446744073709551616", "out of range (at most 2^64 - 1)" };
FIXTURE_VARIANT_ADD(bad_value, a_suffix_that_shifts_past_64_bits) {
	"MHEAP_QUARANTINE_MAX=17179869184G", "out of range (at most 2^64 - 1)" };
FIXTURE_VARIANT_ADD(bad_value, decay_ms_whose_nanoseconds_exceed_64_bits) {
	"MHEAP_SCAVENGE_DECAY_MS=18446744073710", "out of range (at most 18446744073709)" };
FIXTURE_VARIANT_ADD(bad_value, a_percentage_that_overflows_the_reserve) {
	"MHEAP_SCAVENGE_PERCENT=1G", "out of range (at most 1073741823)" };
FIXTURE_VARIANT_ADD(bad_value, an_arena_chunk_below_64k) {
	"MHEAP_ARENA_CHUNK=63K", "out of range (at least 64K)" };
FIXTURE_VARIANT_ADD(bad_value, an_arena_chunk_of_part_of_a_page) {
	"MHEAP_ARENA_CHUNK=65537", "not a multiple of 8K" };
FIXTURE_VARIANT_ADD(bad_value, an_arena_chunk_above_1g) {
	"MHEAP_ARENA_CHUNK=2G", "out of range (at most 1G)" };
FIXTURE_VARIANT_ADD(bad_value, an_arena_chunk_that_would_round_past_64_bits) {
	"MHEAP_ARENA_CHUNK=18446744073709551615", "out of range (at most 1G)" };
FIXTURE_VARIANT_ADD(bad_value, a_secure_large_a_small_block_could_have) {
	"MHEAP_SECURE_LARGE=32760", "out of range (at least 32761)" };
FIXTURE_VARIANT_ADD(bad_value, a_flag_of_2) { "MHEAP_ARENA_REUSE=2", "use 0 or 1" };
FIXTURE_VARIANT_ADD(bad_value, a_flag_of_yes) { "MHEAP_ARENA_THP=yes", "use 0 or 1" };
FIXTURE_VARIANT_ADD(bad_value, a_flag_of_01) { "MHEAP_ARENA_RECYCLE=01", "use 0 or 1" };
FIXTURE_VARIANT_ADD(bad_value, stats_other_than_0_1_or_json) {
	"MHEAP_STATS=true", "use 0, 1 or json" };
FIXTURE_VARIANT_ADD(bad_value, an_unknown_kmod_io) {
	"MHEAP_KMOD_IO=io_uring", "use uring or ioctl" };
FIXTURE_VARIANT_ADD(bad_value, verbose_other_than_0_or_1) { "MHEAP_VERBOSE=2", "use 0 or 1" };
FIXTURE_VARIANT_ADD(bad_value, an_unknown_backend) {
	"MHEAP_BACKEND=bogus", "unknown backend (auto, kmod, guard, mprotect or none)" };

TEST_F(bad_value, stops_the_program_at_start_up_with_one_line_naming_it)
{
	const char *env[] = { variant->env, NULL };
	struct child_result res;
	char want[256];

	snprintf(want, sizeof(want), "mheap: %s: %s\n", variant->env, variant->why);
	run_child(start_with, env, &res);
	EXPECT_TRUE(died_of(&res, SIGABRT)) TH_LOG("status %#x", res.status);
	EXPECT_STREQ(want, res.err);
}

/*
 * A program linked with libmheap.a (one object) or libmheap.so has all of
 * the library, every constructor that reads a variable included. The
 * selftests' archive has a member per file, linked only when something
 * refers to it: this refers to the files that read variables.
 */
static __attribute__((used)) void (*const whole_library[])(void) = {
	(void (*)(void))mh_backend_name,	/* fault.c */
	(void (*)(void))mh_arena_new,		/* arena.c */
	(void (*)(void))mh_malloc,		/* malloc.c, scavenge.c */
	(void (*)(void))mh_stats_read,		/* stats.c */
};

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], STARTUP_ONLY))
		return 0;
	if (argc == 2 && !strcmp(argv[1], MALLOC_THEN_END)) {
		for (int i = 0; i < MALLOCS; i++)
			mh_free(mh_malloc(16));
		return 0;
	}
	return harness_main(argc, argv);
}
