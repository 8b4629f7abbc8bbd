// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so as a drop-in malloc: real programs run under LD_PRELOAD, give
 * the same results as without it, and really allocate from mheap (each
 * process prints its statistics at exit with MHEAP_STATS=1).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

FIXTURE(preload)
{
	char dir[64];
	char lib[512];
};

FIXTURE_SETUP(preload)
{
	const char *lib = getenv("MHEAP_PRELOAD_LIB");
	const char *flavour = getenv("MHEAP_TEST_FLAVOUR");

	if (flavour && (!strcmp(flavour, "asan") || !strcmp(flavour, "tsan")))
		SKIP(return, "the %s runtime must come first in every process: preloading is tested in the plain build",
		     flavour);
	if (!lib || access(lib, R_OK))
		SKIP(return, "no libmheap.so to preload here (MHEAP_PRELOAD_LIB unset or missing; static VM tests)");
	snprintf(self->lib, sizeof(self->lib), "%s", lib);
	strcpy(self->dir, "/tmp/mheap-preload-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
}

FIXTURE_TEARDOWN(preload)
{
	char cmd[128];

	if (self->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
		if (system(cmd))
			TH_LOG("could not remove %s", self->dir);
	}
}

/* Run a shell command in the fixture's folder, with or without mheap. */
static int sh(FIXTURE_DATA(preload) *self, bool with_mheap, const char *fmt, ...)
{
	char cmd[4096], body[3072];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "cd %s && %s%s%s %s", self->dir,
		 with_mheap ? "export LD_PRELOAD=" : "", with_mheap ? self->lib : "",
		 with_mheap ? " MHEAP_STATS=1 &&" : "", body);
	return system(cmd);
}

/* Sum of the "mallocs" lines the processes printed into file. */
static unsigned long long mallocs_in(FIXTURE_DATA(preload) *self, const char *file)
{
	char path[256], line[256];
	unsigned long long total = 0, n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", self->dir, file);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " mallocs %llu", &n) == 1)
			total += n;
	fclose(f);
	return total;
}

static bool command_exists(const char *name)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

/* Builds, serialises, parses and sorts a dict of lists; makes byte arrays. */
static const char python_script[] =
	"import json\n"
	"d = {str(i): [i] * (i % 50) for i in range(200000)}\n"
	"s = json.dumps(d)\n"
	"e = json.loads(s)\n"
	"t = sorted(e.items(), key=lambda kv: -len(kv[1]))\n"
	"b = [bytearray(i % 5000) for i in range(20000)]\n"
	"print(len(s), len(t), sum(map(len, b)))\n";

TEST_F_TIMEOUT(preload, python_allocation_heavy_script, 120)
{
	char path[128];
	FILE *f;

	RETURN_IF_SETUP_SKIPPED();

	if (!command_exists("python3"))
		SKIP(return, "python3 not installed");
	snprintf(path, sizeof(path), "%s/script.py", self->dir);
	f = fopen(path, "w");
	ASSERT_NE(NULL, f);
	fputs(python_script, f);
	fclose(f);
	/* PYTHONMALLOC=malloc sends every object to malloc, not pymalloc. */
	ASSERT_EQ(0, sh(self, true, "PYTHONMALLOC=malloc python3 script.py > out 2> err"));
	ASSERT_EQ(0, sh(self, false, "PYTHONMALLOC=malloc python3 script.py > want"));
	EXPECT_EQ(0, sh(self, false, "cmp -s out want"));
	EXPECT_GT(mallocs_in(self, "err"), 1000000);
}

TEST_F_TIMEOUT(preload, sort_of_a_large_file, 120)
{
	RETURN_IF_SETUP_SKIPPED();
	ASSERT_EQ(0, sh(self, false, "seq 1 400000 | awk '{print ($1 * 7919) %% 1000003, $1}' > in"));
	ASSERT_EQ(0, sh(self, true, "sort -k1,1n -S 64M in > out 2> err"));
	ASSERT_EQ(0, sh(self, false, "sort -k1,1n -S 64M in > want"));
	EXPECT_EQ(0, sh(self, false, "cmp -s out want"));
	EXPECT_GT(mallocs_in(self, "err"), 0);

	RETURN_IF_SETUP_SKIPPED();
}

TEST_F_TIMEOUT(preload, gcc_compiles_a_program, 120)
{
	RETURN_IF_SETUP_SKIPPED();
	if (!command_exists("gcc"))
		SKIP(return, "gcc not installed");
	ASSERT_EQ(0, sh(self, false, "printf '%%s\\n' '#include <stdio.h>' "
		"'int main(void) { printf(\"%%d\\n\", 6 * 7); return 0; }' > hello.c"));
	ASSERT_EQ(0, sh(self, true, "gcc -O2 -Wall -o hello hello.c 2> err"));
	ASSERT_EQ(0, sh(self, false, "test \"$(./hello)\" = 42"));
	EXPECT_GT(mallocs_in(self, "err"), 1000);
}

TEST_F_TIMEOUT(preload, git_operations, 120)
{
	RETURN_IF_SETUP_SKIPPED();
	if (!command_exists("git"))
		SKIP(return, "git not installed");
	ASSERT_EQ(0, sh(self, true,
		"{ git init -q repo && cd repo && "
		"git config user.email t@example.org && git config user.name t && "
		"for i in $(seq 1 200); do seq 1 $i > f$i; done && git add . && "
		"git commit -qm one && sed -i s/1/x/ f*0 && git commit -qam two && "
		"git log --oneline | wc -l > ../count && git gc -q && git fsck --strict; } 2> err"));
	EXPECT_EQ(0, sh(self, false, "test \"$(cat count)\" = 2"));
	EXPECT_GT(mallocs_in(self, "err"), 1000);
}

/* A standard function whose contract is exactly an mh_* function's is that
 * function, under a second name (userlib/malloc.c, MH_PRELOAD): a preloaded
 * malloc or free must not pay for a wrapper's jump. */
TEST_F(preload, standard_names_with_an_mh_contract_are_the_mh_functions)
{
	static const char *const same[][2] = {
		{ "malloc", "mh_malloc" }, { "free", "mh_free" }, { "cfree", "mh_free" },
		{ "calloc", "mh_calloc" }, { "realloc", "mh_realloc" },
		{ "aligned_alloc", "mh_aligned_alloc" }, { "memalign", "mh_aligned_alloc" },
	};
	void *h;

	RETURN_IF_SETUP_SKIPPED();
	h = dlopen(self->lib, RTLD_NOW | RTLD_LOCAL);
	ASSERT_NE(NULL, h) TH_LOG("dlopen: %s", dlerror());
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		void *name = dlsym(h, same[i][0]), *impl = dlsym(h, same[i][1]);

		ASSERT_NE(NULL, impl);
		EXPECT_EQ(impl, name) TH_LOG("%s is not %s", same[i][0], same[i][1]);
	}
	dlclose(h);
}

TEST_HARNESS_MAIN
