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

/* The libmheap.so to test, or NULL with *why saying why there is none. */
static const char *preload_lib(const char **why)
{
	const char *lib = getenv("MHEAP_PRELOAD_LIB");
	const char *flavour = getenv("MHEAP_TEST_FLAVOUR");

	if (flavour && (!strcmp(flavour, "asan") || !strcmp(flavour, "tsan"))) {
		*why = "the sanitizer runtime must come first in every process: preloading is tested in the plain build";
		return NULL;
	}
	if (!lib || access(lib, R_OK)) {
		*why = "no libmheap.so to preload here (MHEAP_PRELOAD_LIB unset or missing; static VM tests)";
		return NULL;
	}
	return lib;
}

FIXTURE_SETUP(preload)
{
	const char *why, *lib = preload_lib(&why);

	if (!lib)
		SKIP(return, "%s", why);
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
		{ "aligned_alloc", "mh_aligned_alloc" },
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

/*
 * The standard functions of libmheap.so against glibc's, case by case: each
 * variant calls one function the same way through glibc (this process's own
 * malloc) and through libmheap.so (dlopen'ed, so both run side by side), and
 * the two must agree on success or failure and on errno (on posix_memalign's
 * return value: it need not keep or set errno). A block must also have the
 * alignment and the usable size the contract promises, and
 * malloc_usable_size(NULL) must be 0. Sizes assume 4 KiB pages, as on x86-64.
 */
struct family {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*realloc)(void *, size_t);
	void *(*reallocarray)(void *, size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	void *(*memalign)(size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	size_t (*malloc_usable_size)(void *);
};

#define PAGE 4096

/* What one call did: whether it returned a block, and its error if not. */
struct outcome {
	bool ok;
	int err;
	bool aligned;	/* a block has the alignment asked for */
	bool fits;	/* its usable size covers the size asked for; 0 for NULL */
};

FIXTURE(wrappers)
{
	void *lib;
	struct family glibc, mheap;
};

/* One case: call a function of f, return the block (NULL if none) and its
 * error (0 on success). */
FIXTURE_VARIANT(wrappers)
{
	void *(*call)(const struct family *f, int *err);
	size_t align, size;	/* what a block must have */
	/* C17 (DR 460) and glibc from 2.38 fail with EINVAL; glibc 2.36
	 * rounds the alignment up as memalign does. */
	bool einval_since_glibc_2_38;
};

static bool load_family(void *h, struct family *f)
{
#define LOAD(name) (f->name = (__typeof(f->name))dlsym(h, #name)) != NULL
	return LOAD(malloc) && LOAD(free) && LOAD(realloc) && LOAD(reallocarray) &&
	       LOAD(valloc) && LOAD(pvalloc) && LOAD(memalign) && LOAD(posix_memalign) &&
	       LOAD(aligned_alloc) && LOAD(malloc_usable_size);
#undef LOAD
}

FIXTURE_SETUP(wrappers)
{
	const char *why, *lib = preload_lib(&why);
	void *libc;

	if (!lib)
		SKIP(return, "%s", why);
	ASSERT_EQ(PAGE, sysconf(_SC_PAGESIZE));
	libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		SKIP(return, "no shared glibc in this process to compare with (static build)");
	ASSERT_TRUE(load_family(libc, &self->glibc));
	self->lib = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	ASSERT_NE(NULL, self->lib) TH_LOG("dlopen: %s", dlerror());
	ASSERT_TRUE(load_family(self->lib, &self->mheap));
}

FIXTURE_TEARDOWN(wrappers)
{
	if (self->lib)
		dlclose(self->lib);
}

static struct outcome call(const struct family *f, const FIXTURE_VARIANT(wrappers) *v)
{
	struct outcome o;
	void *p;

	errno = 0;
	p = v->call(f, &o.err);
	o.ok = p != NULL;
	o.aligned = (uintptr_t)p % v->align == 0;
	o.fits = p ? f->malloc_usable_size(p) >= v->size : f->malloc_usable_size(p) == 0;
	f->free(p);
	return o;
}

TEST_F(wrappers, behave_as_glibc)
{
	struct outcome want, got;

	RETURN_IF_SETUP_SKIPPED();
	want = call(&self->glibc, variant);
	got = call(&self->mheap, variant);
	if (variant->einval_since_glibc_2_38)
		want = (struct outcome){ .err = EINVAL, .aligned = true, .fits = true };
	ASSERT_TRUE(want.aligned && want.fits) TH_LOG("glibc breaks the case's own contract");
	EXPECT_EQ(want.ok, got.ok);
	EXPECT_EQ(want.err, got.err) TH_LOG("errno %d (%s), glibc %d (%s)",
		got.err, strerror(got.err), want.err, strerror(want.err));
	EXPECT_TRUE(got.aligned);
	EXPECT_TRUE(got.fits);
}

/* The error of a call that returns a block or NULL with errno. */
static void *block(void *p, int *err)
{
	*err = p ? 0 : errno;
	return p;
}

#define CASE(name, expr, ...) \
	static void *name(const struct family *f, int *err) { return block(expr, err); } \
	FIXTURE_VARIANT_ADD(wrappers, name) { .call = name, __VA_ARGS__ }

CASE(valloc_returns_a_page_aligned_block, f->valloc(100), .align = PAGE, .size = 100);
CASE(valloc_of_0_returns_a_page_aligned_block, f->valloc(0), .align = PAGE, .size = 0);
CASE(valloc_of_SIZE_MAX_fails_with_ENOMEM, f->valloc(SIZE_MAX), .align = 1);
CASE(pvalloc_of_0_returns_a_page, f->pvalloc(0), .align = PAGE, .size = 0);
CASE(pvalloc_rounds_the_size_up_to_whole_pages, f->pvalloc(1), .align = PAGE, .size = PAGE);
CASE(pvalloc_of_SIZE_MAX_fails_with_ENOMEM, f->pvalloc(SIZE_MAX), .align = 1);
CASE(pvalloc_of_a_size_whose_rounding_wraps_fails_with_ENOMEM, f->pvalloc(SIZE_MAX - PAGE + 2),
     .align = 1);
CASE(memalign_returns_a_block_so_aligned, f->memalign(256, 100), .align = 256, .size = 100);
CASE(memalign_of_alignment_0_is_malloc, f->memalign(0, 100), .align = 1, .size = 100);
CASE(memalign_rounds_alignment_3_up_to_4, f->memalign(3, 100), .align = 4, .size = 100);
CASE(memalign_rounds_alignment_24_up_to_32, f->memalign(24, 100), .align = 32, .size = 100);
CASE(memalign_of_size_0_rounds_the_alignment_up_too, f->memalign(24, 0), .align = 32, .size = 0);
CASE(memalign_of_SIZE_MAX_fails_with_ENOMEM, f->memalign(64, SIZE_MAX), .align = 1);
CASE(memalign_of_the_largest_power_of_two_alignment_fails_with_ENOMEM,
     f->memalign(SIZE_MAX / 2 + 1, 1), .align = 1);
CASE(memalign_above_the_largest_power_of_two_fails_with_EINVAL, f->memalign(SIZE_MAX / 2 + 2, 1),
     .align = 1);
CASE(aligned_alloc_returns_a_block_so_aligned, f->aligned_alloc(64, 100), .align = 64, .size = 100);
CASE(aligned_alloc_of_size_0_returns_a_block, f->aligned_alloc(64, 0), .align = 64, .size = 0);
CASE(aligned_alloc_of_SIZE_MAX_fails_with_ENOMEM, f->aligned_alloc(64, SIZE_MAX), .align = 1);
CASE(aligned_alloc_of_alignment_24_fails_with_EINVAL, f->aligned_alloc(24, 100), .align = 1,
     .einval_since_glibc_2_38 = true);
CASE(aligned_alloc_of_alignment_0_fails_with_EINVAL, f->aligned_alloc(0, 100), .align = 1,
     .einval_since_glibc_2_38 = true);
CASE(reallocarray_allocates_n_times_size, f->reallocarray(NULL, 10, 10), .align = 1, .size = 100);
CASE(reallocarray_whose_product_overflows_fails_with_ENOMEM, f->reallocarray(NULL, SIZE_MAX, 2),
     .align = 1);
CASE(reallocarray_to_0_elements_returns_NULL_without_error, f->reallocarray(f->malloc(10), 0, 10),
     .align = 1);
CASE(realloc_to_0_returns_NULL_without_error, f->realloc(f->malloc(10), 0), .align = 1);
CASE(realloc_of_NULL_to_0_returns_a_block, f->realloc(NULL, 0), .align = 1, .size = 0);
CASE(realloc_to_SIZE_MAX_fails_with_ENOMEM, f->realloc(NULL, SIZE_MAX), .align = 1);

/* posix_memalign's error is its return value; *out is set only on success. */
#define POSIX_MEMALIGN_CASE(name, al, sz, ...) \
	static void *name(const struct family *f, int *err) \
	{ \
		void *p = NULL; \
		*err = f->posix_memalign(&p, al, sz); \
		return p; \
	} \
	FIXTURE_VARIANT_ADD(wrappers, name) { .call = name, __VA_ARGS__ }

POSIX_MEMALIGN_CASE(posix_memalign_returns_a_block_so_aligned, 64, 100, .align = 64, .size = 100);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_0_fails_with_EINVAL, 0, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_not_a_multiple_of_a_pointer_fails_with_EINVAL,
		    4, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_24_fails_with_EINVAL, 24, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_SIZE_MAX_fails_with_ENOMEM, 64, SIZE_MAX, .align = 1);

TEST_HARNESS_MAIN
