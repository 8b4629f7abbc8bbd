// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so as a drop-in malloc: real programs run under LD_PRELOAD, give
 * the same results as without it, and really allocate from mheap (each
 * process prints its statistics at exit with MHEAP_STATS=1).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
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

/* Write text into the fixture's folder as file name. */
static bool put_file(FIXTURE_DATA(preload) *self, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", self->dir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
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
	RETURN_IF_SETUP_SKIPPED();

	if (!command_exists("python3"))
		SKIP(return, "python3 not installed");
	ASSERT_TRUE(put_file(self, "script.py", python_script));
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

/*
 * A C++ program, preloaded: every form of operator new and delete is
 * libmheap.so's (dladdr) and works, allocating from mheap (its blocks have
 * mheap's usable size and alignment, and a block of 16 bytes or more is
 * 16-aligned, as C++ asks of new[] - aligned for any object that fits -
 * and Clang assumes of every new-expression); a huge new throws std::bad_alloc,
 * after running the new-handler; a huge nothrow new returns NULL; and a
 * sized delete[] with the size of another size class aborts with one line.
 */
static const char cxx_program[] =
	"#include <cstdint>\n"
	"#include <cstdio>\n"
	"#include <cstring>\n"
	"#include <dlfcn.h>\n"
	"#include <malloc.h>\n"
	"#include <new>\n"
	"using std::size_t;\n"
	"static const std::align_val_t a64{64};\n"
	"static const std::nothrow_t &nt = std::nothrow;\n"
	"static int failures, handler_calls;\n"
	"static void fail(const char *what) { std::printf(\"FAIL %s\\n\", what); failures++; }\n"
	"/* p is a block of mheap's of at least n bytes, so aligned */\n"
	"static void *check(const char *what, void *p, size_t n, size_t align) {\n"
	"	if (!p || malloc_usable_size(p) < n || reinterpret_cast<std::uintptr_t>(p) % align)\n"
	"		fail(what);\n"
	"	else\n"
	"		std::memset(p, 1, n);\n"
	"	return p;\n"
	"}\n"
	"/* f is defined in libmheap.so */\n"
	"static void ours(const char *what, void *f) {\n"
	"	Dl_info info;\n"
	"	if (!dladdr(f, &info) || !std::strstr(info.dli_fname, \"libmheap\"))\n"
	"		fail(what);\n"
	"}\n"
	"#define OURS(type, name) ours(#type, reinterpret_cast<void *>(static_cast<type>(&name)))\n"
	"static void handler() { handler_calls++; std::set_new_handler(nullptr); }\n"
	"struct alignas(64) Wide { char c[100]; };\n"
	"struct Counted { ~Counted() {} int x[10]; };	/* new[] keeps a count: sized delete[] */\n"
	"int main(int argc, char **argv) {\n"
	"	const size_t huge = SIZE_MAX / 4;\n"
	"	if (argc > 1) {\n"
	"		void *p = ::operator new[](40);\n"
	"		std::printf(\"%p\\n\", p);\n"
	"		std::fflush(stdout);\n"
	"		::operator delete[](p, 200);\n"
	"		return 0;\n"
	"	}\n"
	"	OURS(void *(*)(size_t), ::operator new);\n"
	"	OURS(void *(*)(size_t), ::operator new[]);\n"
	"	OURS(void *(*)(size_t, const std::nothrow_t &), ::operator new);\n"
	"	OURS(void *(*)(size_t, const std::nothrow_t &), ::operator new[]);\n"
	"	OURS(void *(*)(size_t, std::align_val_t), ::operator new);\n"
	"	OURS(void *(*)(size_t, std::align_val_t), ::operator new[]);\n"
	"	OURS(void *(*)(size_t, std::align_val_t, const std::nothrow_t &), ::operator new);\n"
	"	OURS(void *(*)(size_t, std::align_val_t, const std::nothrow_t &), ::operator new[]);\n"
	"	OURS(void (*)(void *), ::operator delete);\n"
	"	OURS(void (*)(void *), ::operator delete[]);\n"
	"	OURS(void (*)(void *, size_t), ::operator delete);\n"
	"	OURS(void (*)(void *, size_t), ::operator delete[]);\n"
	"	OURS(void (*)(void *, std::align_val_t), ::operator delete);\n"
	"	OURS(void (*)(void *, std::align_val_t), ::operator delete[]);\n"
	"	OURS(void (*)(void *, size_t, std::align_val_t), ::operator delete);\n"
	"	OURS(void (*)(void *, size_t, std::align_val_t), ::operator delete[]);\n"
	"	OURS(void (*)(void *, const std::nothrow_t &), ::operator delete);\n"
	"	OURS(void (*)(void *, const std::nothrow_t &), ::operator delete[]);\n"
	"	OURS(void (*)(void *, std::align_val_t, const std::nothrow_t &), ::operator delete);\n"
	"	OURS(void (*)(void *, std::align_val_t, const std::nothrow_t &), ::operator delete[]);\n"
	"	::operator delete(check(\"new\", ::operator new(100), 100, 16));\n"
	"	::operator delete(check(\"new, sized delete\", ::operator new(100), 100, 16), 100);\n"
	"	::operator delete[](check(\"new[]\", ::operator new[](100), 100, 16));\n"
	"	::operator delete[](check(\"new[], sized delete[]\", ::operator new[](100), 100, 16), 100);\n"
	"	::operator delete(check(\"nothrow new\", ::operator new(100, nt), 100, 16), nt);\n"
	"	::operator delete[](check(\"nothrow new[]\", ::operator new[](100, nt), 100, 16), nt);\n"
	"	::operator delete(check(\"aligned new\", ::operator new(100, a64), 100, 64), a64);\n"
	"	::operator delete(check(\"aligned new, sized\", ::operator new(100, a64), 100, 64), 100, a64);\n"
	"	::operator delete[](check(\"aligned new[]\", ::operator new[](100, a64), 100, 64), a64);\n"
	"	::operator delete[](check(\"aligned new[], sized\", ::operator new[](100, a64), 100, 64), 100, a64);\n"
	"	::operator delete(check(\"aligned nothrow new\", ::operator new(100, a64, nt), 100, 64), a64, nt);\n"
	"	::operator delete[](check(\"aligned nothrow new[]\", ::operator new[](100, a64, nt), 100, 64), a64, nt);\n"
	"	Wide *w = new Wide[3];\n"
	"	check(\"new Wide[3]\", w, sizeof(Wide) * 3, 64);\n"
	"	delete[] w;\n"
	"	delete static_cast<Wide *>(check(\"new Wide\", new Wide, sizeof(Wide), 64));\n"
	"	delete[] new Counted[9];\n"
"	/* aligned for any object that fits: 16 bytes from 16 on */\n"
"	for (size_t n = 16; n <= 64; n += 8) {\n"
"		void *p[8], *q[8];\n"
"		for (int i = 0; i < 8; i++) {\n"
"			p[i] = check(\"new of 16-64 bytes, 16-aligned\", ::operator new(n), n, 16);\n"
"			q[i] = check(\"nothrow new[] of 16-64 bytes, 16-aligned\", ::operator new[](n, nt), n, 16);\n"
"		}\n"
"		for (int i = 0; i < 8; i++) {\n"
"			::operator delete(p[i], n);\n"
"			::operator delete[](q[i], n);\n"
"		}\n"
"	}\n"
	"	if (::operator new(huge, nt) || ::operator new[](huge, a64, nt))\n"
	"		fail(\"a huge nothrow new returned a block\");\n"
	"	try {\n"
	"		::operator delete(::operator new(huge));\n"
	"		fail(\"a huge new returned\");\n"
	"	} catch (const std::bad_alloc &e) {\n"
	"		std::printf(\"a huge new threw %s\\n\", e.what());\n"
	"	}\n"
	"	std::set_new_handler(handler);\n"
	"	try {\n"
	"		::operator delete[](::operator new[](huge, a64), a64);\n"
	"		fail(\"a huge aligned new[] returned\");\n"
	"	} catch (const std::bad_alloc &e) {\n"
	"		std::printf(\"a huge aligned new[] ran the new-handler %d time(s), then threw %s\\n\",\n"
	"			    handler_calls, e.what());\n"
	"	}\n"
	"	std::printf(\"%d failures\\n\", failures);\n"
	"	return failures != 0;\n"
	"}\n";

/* In a child of run_child: the C++ program's sized-delete case, preloaded,
 * its stdout (the block's address) in the file addr. */
static void cxx_sized_delete(void *arg)
{
	FIXTURE_DATA(preload) *self = arg;
	int fd;

	if (chdir(self->dir) || setenv("LD_PRELOAD", self->lib, 1))
		_exit(2);
	fd = open("addr", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
		_exit(2);
	execl("./prog", "prog", "sized-delete", (char *)NULL);
	_exit(127);
}

TEST_F_TIMEOUT(preload, cxx_program_new_and_delete_of_every_form, 120)
{
	char path[128], want[256];
	struct child_result r;
	unsigned long addr;
	FILE *f;

	RETURN_IF_SETUP_SKIPPED();
	if (!command_exists("g++"))
		SKIP(return, "g++ not installed (build-essential has it: make deps)");
	ASSERT_TRUE(put_file(self, "prog.cc", cxx_program));
	ASSERT_EQ(0, sh(self, false, "g++ -std=c++17 -O2 -Wall -Werror -o prog prog.cc"));
	ASSERT_EQ(0, sh(self, true, "./prog > out 2> err"));
	EXPECT_EQ(0, sh(self, false, "printf '%%s\\n' "
		"'a huge new threw std::bad_alloc' "
		"'a huge aligned new[] ran the new-handler 1 time(s), then threw std::bad_alloc' "
		"'0 failures' | cmp -s - out || cat out >&2"));
	/* Its 15 news at least (and the exceptions'), all served by mheap. */
	EXPECT_GE(mallocs_in(self, "err"), 15);

	/* A 40-byte new[] is a 48-byte object (16-aligned): deleting 200
	 * bytes aborts. */
	run_child(cxx_sized_delete, self, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, stderr: %s", r.status, r.err);
	snprintf(path, sizeof(path), "%s/addr", self->dir);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%lx", &addr));
	fclose(f);
	snprintf(want, sizeof(want),
		 "mheap: operator delete[] of %#lx with size 200: the object is 48 bytes (size mismatch)\n",
		 addr);
	EXPECT_STREQ(want, r.err);
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
		{ "_ZdlPv", "mh_free" }, { "_ZdaPv", "mh_free" },	/* delete, delete[] */
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
	/* glibc's <malloc.h> introspection and tuning */
	struct mallinfo2 (*mallinfo2)(void);
	struct mallinfo (*mallinfo)(void);
	int (*malloc_info)(int, FILE *);
	void (*malloc_stats)(void);
	int (*malloc_trim)(size_t);
	int (*mallopt)(int, int);
	/* C23, which glibc 2.36 lacks: loaded apart (load_sized_frees) */
	void (*free_sized)(void *, size_t);
	void (*free_aligned_sized)(void *, size_t, size_t);
	void *(*calloc)(size_t, size_t);
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
 * error (0 on success); or, for a function that returns a number (or a
 * property of the heap that both must have, as 1), that number and the
 * error. */
FIXTURE_VARIANT(wrappers)
{
	void *(*call)(const struct family *f, int *err);
	long (*number)(const struct family *f, int *err);
	bool property;		/* the number must be 1, glibc's included */
	size_t align, size;	/* what a block must have */
	/* C17 (DR 460) and glibc from 2.38 fail with EINVAL; glibc 2.36
	 * rounds the alignment up as memalign does. */
	bool einval_since_glibc_2_38;
};

/* dlsym, but only a definition in h itself: dlsym searches h's
 * dependencies too, where libc's function would stand in for one missing
 * from libmheap.so. */
static void *own_sym(void *h, const char *name)
{
	void *p = dlsym(h, name);
	struct link_map *map;
	Dl_info info;

	if (!p || dlinfo(h, RTLD_DI_LINKMAP, &map) || !dladdr(p, &info) ||
	    strcmp(info.dli_fname, map->l_name))
		return NULL;
	return p;
}

static bool load_family(void *h, struct family *f)
{
#define LOAD(name) (f->name = (__typeof(f->name))own_sym(h, #name)) != NULL
	return LOAD(malloc) && LOAD(free) && LOAD(realloc) && LOAD(reallocarray) &&
	       LOAD(valloc) && LOAD(pvalloc) && LOAD(memalign) && LOAD(posix_memalign) &&
	       LOAD(aligned_alloc) && LOAD(malloc_usable_size) && LOAD(mallinfo2) &&
	       LOAD(mallinfo) && LOAD(malloc_info) && LOAD(malloc_stats) && LOAD(malloc_trim) &&
	       LOAD(mallopt);
#undef LOAD
}

/* libmheap.so's C23 sized frees and calloc, which the cases of the
 * sized_frees fixture need besides its family. */
static bool load_sized_frees(void *h, struct family *f)
{
#define LOAD(name) (f->name = (__typeof(f->name))own_sym(h, #name)) != NULL
	return LOAD(free_sized) && LOAD(free_aligned_sized) && LOAD(calloc);
#undef LOAD
}

/*
 * Set up a fixture that calls libmheap.so beside this process's glibc
 * malloc: *lib is the shared object dlopen'ed, *mheap its functions. False
 * when there is none to test here (a skip, *why says why) or when it does
 * not load (*why is NULL: a failure).
 */
static bool open_mheap(void **lib, struct family *mheap, const char **why)
{
	const char *path = preload_lib(why);

	if (!path)
		return false;
	*why = NULL;
	*lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*lib)
		fprintf(stderr, "# dlopen: %s\n", dlerror());
	return *lib && load_family(*lib, mheap) && load_sized_frees(*lib, mheap);
}

/* A fixture with libmheap.so's functions only, in self->m: no glibc to
 * compare with. */
#define MHEAP_FIXTURE(name) \
	FIXTURE(name) \
	{ \
		void *lib; \
		struct family m; \
	}; \
	FIXTURE_SETUP(name) \
	{ \
		const char *why; \
		if (!open_mheap(&self->lib, &self->m, &why)) { \
			ASSERT_NE(NULL, why); \
			SKIP(return, "%s", why); \
		} \
	} \
	FIXTURE_TEARDOWN(name) \
	{ \
		if (self->lib) \
			dlclose(self->lib); \
	}

FIXTURE_SETUP(wrappers)
{
	const char *why;
	void *libc;

	if (!open_mheap(&self->lib, &self->mheap, &why)) {
		ASSERT_NE(NULL, why);
		SKIP(return, "%s", why);
	}
	ASSERT_EQ(PAGE, sysconf(_SC_PAGESIZE));
	libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		SKIP(return, "no shared glibc in this process to compare with (static build)");
	ASSERT_TRUE(load_family(libc, &self->glibc));
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
	if (variant->number) {
		int want_err = 0, got_err = 0;
		long want_n, got_n;

		errno = 0;
		want_n = variant->number(&self->glibc, &want_err);
		errno = 0;
		got_n = variant->number(&self->mheap, &got_err);
		if (variant->property)
			ASSERT_EQ(1, want_n) TH_LOG("glibc breaks the case's own contract");
		EXPECT_EQ(want_n, got_n);
		EXPECT_EQ(want_err, got_err);
		return;
	}
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

/* A case of a function that returns a number: expr, with no error. */
#define NUMBER_CASE(name, expr, ...) \
	static long name(const struct family *f, int *err) { *err = 0; return (expr); } \
	FIXTURE_VARIANT_ADD(wrappers, name) { .number = name, __VA_ARGS__ }

/* mallopt: 1 for every parameter, known or not, but for an M_MXFAST out of
 * glibc's range [0, 160]. (Each test runs in a child of its own: what glibc
 * does with a value does not outlive it.) */
NUMBER_CASE(mallopt_M_MXFAST_in_range_returns_1, f->mallopt(M_MXFAST, 64));
NUMBER_CASE(mallopt_M_MXFAST_above_160_returns_0, f->mallopt(M_MXFAST, 161));
NUMBER_CASE(mallopt_M_MXFAST_negative_returns_0, f->mallopt(M_MXFAST, -1));
NUMBER_CASE(mallopt_M_TRIM_THRESHOLD_returns_1, f->mallopt(M_TRIM_THRESHOLD, 128 << 10));
NUMBER_CASE(mallopt_M_TOP_PAD_returns_1, f->mallopt(M_TOP_PAD, 0));
NUMBER_CASE(mallopt_M_MMAP_THRESHOLD_returns_1, f->mallopt(M_MMAP_THRESHOLD, 1 << 30));
NUMBER_CASE(mallopt_M_MMAP_MAX_returns_1, f->mallopt(M_MMAP_MAX, 65536));
NUMBER_CASE(mallopt_M_CHECK_ACTION_returns_1, f->mallopt(M_CHECK_ACTION, 3));
NUMBER_CASE(mallopt_M_PERTURB_returns_1, f->mallopt(M_PERTURB, 0));
NUMBER_CASE(mallopt_M_ARENA_TEST_returns_1, f->mallopt(M_ARENA_TEST, 8));
NUMBER_CASE(mallopt_M_ARENA_MAX_of_0_returns_1, f->mallopt(M_ARENA_MAX, 0));
NUMBER_CASE(mallopt_M_KEEP_returns_1, f->mallopt(M_KEEP, 0));
NUMBER_CASE(mallopt_of_an_unknown_parameter_returns_1, f->mallopt(12345, 1));

/* malloc_info's error is its return value: EINVAL for options other than 0. */
static long malloc_info_to_dev_null(const struct family *f, int options)
{
	FILE *fp = fopen("/dev/null", "w");
	int ret = f->malloc_info(options, fp);

	fclose(fp);
	return ret;
}

NUMBER_CASE(malloc_info_with_options_0_returns_0, malloc_info_to_dev_null(f, 0));
NUMBER_CASE(malloc_info_with_options_1_returns_EINVAL, malloc_info_to_dev_null(f, 1));

/* Whether xml is the document malloc_info writes: it starts with
 * <malloc version="1">, ends with </malloc> and a newline, and every
 * element is closed, in order. */
static bool malloc_xml_well_formed(const char *xml)
{
	static const char head[] = "<malloc version=\"1\">\n", tail[] = "</malloc>\n";
	char open[8][16];
	size_t len = strlen(xml);
	int depth = 0;

	if (strncmp(xml, head, strlen(head)) || len < strlen(tail) ||
	    strcmp(xml + len - strlen(tail), tail))
		return false;
	for (const char *p = strchr(xml, '<'); p; p = strchr(p, '<')) {
		const char *end = strchr(p, '>');
		size_t n;

		if (!end)
			return false;
		if (p[1] == '/') {		/* </name> closes the innermost */
			n = (size_t)(end - p - 2);
			if (!depth || strlen(open[depth - 1]) != n || strncmp(open[depth - 1], p + 2, n))
				return false;
			depth--;
		} else if (end[-1] != '/') {	/* <name ...> opens one */
			n = strcspn(p + 1, " >");
			if (depth == 8 || n >= sizeof(open[0]))
				return false;
			memcpy(open[depth], p + 1, n);
			open[depth++][n] = '\0';
		}
		p = end + 1;
	}
	return depth == 0;
}

static long malloc_info_writes_its_xml(const struct family *f)
{
	char *xml = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&xml, &len);
	bool ok;

	ok = f->malloc_info(0, fp) == 0;
	fclose(fp);
	ok = ok && malloc_xml_well_formed(xml);
	if (!ok)
		fprintf(stderr, "# malloc_info wrote:\n%s", xml);
	free(xml);
	return ok;
}

NUMBER_CASE(malloc_info_writes_well_formed_xml, malloc_info_writes_its_xml(f), .property = true);

/* What malloc_stats prints on stderr: glibc's lines, in glibc's order, each
 * number right-aligned in 10 columns. */
static long malloc_stats_lines_are_glibcs(const struct family *f)
{
	static const char *const lines[] = {
		"Arena 0:", "system bytes     = ", "in use bytes     = ", "Total (incl. mmap):",
		"system bytes     = ", "in use bytes     = ", "max mmap regions = ",
		"max mmap bytes   = ",
	};
	char out[1024], *line, *save;
	int saved = dup(STDERR_FILENO), fd = fileno(tmpfile());
	unsigned i = 0;
	ssize_t n;

	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	f->malloc_stats();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		const char *num = line + strlen(lines[i < 8 ? i : 0]);

		if (i == 8 || strncmp(line, lines[i], strlen(lines[i])))
			return 0;
		if (num[0] && (strlen(num) < 10 || strspn(num, " 0123456789") != strlen(num) ||
			       num[strlen(num) - 1] == ' '))
			return 0;
	}
	return i == 8;
}

NUMBER_CASE(malloc_stats_prints_glibc_lines, malloc_stats_lines_are_glibcs(f), .property = true);

/* Bytes in use, per mallinfo2, grow by at least the size of a block and
 * shrink again when it is freed. 100,000 bytes: for glibc, above its
 * thread cache (whose blocks count as in use) and below its mmap threshold
 * (whose blocks do not count). */
static long mallinfo2_counts_a_block(const struct family *f)
{
	size_t before = f->mallinfo2().uordblks, during, after;
	char *p = f->malloc(100000);

	memset(p, 1, 100000);
	during = f->mallinfo2().uordblks;
	f->free(p);
	after = f->mallinfo2().uordblks;
	return during >= before + 100000 && after <= during - 100000;
}

NUMBER_CASE(mallinfo2_counts_a_block_in_use_then_not, mallinfo2_counts_a_block(f),
	    .property = true);

/* mallinfo is mallinfo2 truncated to int. */
static long mallinfo_is_mallinfo2_as_int(const struct family *f)
{
	struct mallinfo2 m2 = f->mallinfo2();
	struct mallinfo m = f->mallinfo();

	return m.arena == (int)m2.arena && m.uordblks == (int)m2.uordblks &&
	       m.fordblks == (int)m2.fordblks && m.hblkhd == (int)m2.hblkhd &&
	       m.hblks == (int)m2.hblks && m.keepcost == (int)m2.keepcost;
}

NUMBER_CASE(mallinfo_is_mallinfo2_truncated_to_int, mallinfo_is_mallinfo2_as_int(f),
	    .property = true);

/* malloc_trim returns 1 when it released memory, else 0. */
NUMBER_CASE(malloc_trim_returns_0_or_1, f->malloc_trim(0) <= 1, .property = true);

/*
 * C23's free_sized and free_aligned_sized, which glibc 2.36 lacks: nothing
 * to compare with, so each case checks mheap's contract. A size the block
 * could have been allocated with frees it (mallinfo2 counts it gone, and
 * a second free is a double free); any other size or alignment aborts
 * with the exact line (in a child).
 */
MHEAP_FIXTURE(sized_frees);

FIXTURE_VARIANT(sized_frees)
{
	void *(*alloc)(const struct family *m);	/* the block */
	bool aligned;		/* free_aligned_sized, else free_sized */
	size_t align, size;	/* their arguments */
	const char *dies;	/* the line it aborts with, %#lx the block; NULL: it frees */
};

/* What a child calls: the case's sized free of p, or a plain free. */
struct sized_call {
	const struct family *m;
	const FIXTURE_VARIANT(sized_frees) *v;
	void *p;
};

static void sized_free(void *arg)
{
	const struct sized_call *c = arg;

	if (c->v->aligned)
		c->m->free_aligned_sized(c->p, c->v->align, c->v->size);
	else
		c->m->free_sized(c->p, c->v->size);
}

static void plain_free(void *arg)
{
	const struct sized_call *c = arg;

	c->m->free(c->p);
}

/* Run fn in a child, which must abort with exactly the line want, fmt
 * formatted with p. */
static void expect_abort(struct __test_metadata *_metadata, void (*fn)(void *),
			 struct sized_call *c, const char *fmt)
{
	struct child_result r;
	char want[256];

	snprintf(want, sizeof(want) - 1, fmt, (unsigned long)(uintptr_t)c->p);
	strcat(want, "\n");
	run_child(fn, c, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, stderr: %s", r.status, r.err);
	EXPECT_STREQ(want, r.err);
}

TEST_F(sized_frees, frees_or_aborts_with_one_line)
{
	struct sized_call c = { .m = &self->m, .v = variant };
	size_t before, usable;

	RETURN_IF_SETUP_SKIPPED();
	c.p = variant->alloc(&self->m);
	if (!c.p) {		/* the NULL case: nothing happens */
		sized_free(&c);
		return;
	}
	if (variant->dies) {
		expect_abort(_metadata, sized_free, &c, variant->dies);
		return;
	}
	before = self->m.mallinfo2().uordblks;
	usable = self->m.malloc_usable_size(c.p);
	sized_free(&c);
	EXPECT_EQ(before - usable, self->m.mallinfo2().uordblks);
	expect_abort(_metadata, plain_free, &c, "mheap: double free of %#lx");
}

#define SIZED_CASE(name, expr, ...) \
	static void *name(const struct family *m) { return (expr); } \
	FIXTURE_VARIANT_ADD(sized_frees, name) { .alloc = name, __VA_ARGS__ }

/* A 48-byte object (class 48) that is not 4 KiB-aligned. */
static void *unaligned_48(const struct family *m)
{
	void *p = m->malloc(48);

	return (uintptr_t)p % 4096 ? p : m->malloc(48);
}

static void *freed_40(const struct family *m)
{
	void *p = m->malloc(40);

	m->free(p);
	return p;
}

SIZED_CASE(free_sized_of_NULL_does_nothing, NULL, .size = 100);
SIZED_CASE(free_aligned_sized_of_NULL_does_nothing, NULL, .aligned = true, .align = 3, .size = 1);
SIZED_CASE(free_sized_with_the_size_allocated_frees, m->malloc(40), .size = 40);
SIZED_CASE(free_sized_with_another_size_of_the_class_frees, m->malloc(40), .size = 33);
SIZED_CASE(free_sized_of_calloc_with_n_times_size_frees, m->calloc(10, 30), .size = 300);
SIZED_CASE(free_sized_of_a_large_object_frees, m->malloc(100000), .size = 100000);
SIZED_CASE(free_sized_of_a_large_object_realloc_kept_in_place_frees,
	   m->realloc(m->malloc(100000), 60000), .size = 60000);
/* realloc moved the 100-byte block and gave it room to grow: 90,000
 * bytes, a 128 KiB block on the 64 KiB lattice, more than twice 60,000. */
SIZED_CASE(free_sized_of_a_block_realloc_moved_with_room_frees,
	   m->realloc(m->malloc(100), 60000), .size = 60000);
SIZED_CASE(free_aligned_sized_of_an_aligned_block_frees, m->aligned_alloc(64, 48),
	   .aligned = true, .align = 64, .size = 48);
SIZED_CASE(free_aligned_sized_of_a_block_aligned_above_a_page_frees,
	   m->aligned_alloc(16384, 100), .aligned = true, .align = 16384, .size = 100);
SIZED_CASE(free_sized_with_the_size_of_another_class_aborts, m->malloc(40), .size = 100,
	   .dies = "mheap: free_sized of %#lx with size 100: the object is 40 bytes (size mismatch)");
SIZED_CASE(free_sized_of_a_large_object_with_a_small_size_aborts, m->malloc(100000), .size = 40,
	   .dies = "mheap: free_sized of %#lx with size 40: the object is 131072 bytes (size mismatch)");
SIZED_CASE(free_sized_of_a_large_object_with_more_pages_aborts, m->malloc(100000),
	   .size = 200000,
	   .dies = "mheap: free_sized of %#lx with size 200000: the object is 131072 bytes (size mismatch)");
SIZED_CASE(free_aligned_sized_with_the_size_of_another_class_aborts, m->aligned_alloc(64, 48),
	   .aligned = true, .align = 64, .size = 200,
	   .dies = "mheap: free_aligned_sized of %#lx with alignment 64 and size 200: the object is 64 bytes (size mismatch)");
SIZED_CASE(free_aligned_sized_with_an_alignment_the_block_lacks_aborts, unaligned_48(m),
	   .aligned = true, .align = 4096, .size = 48,
	   .dies = "mheap: free_aligned_sized of %#lx with alignment 4096 and size 48: the object is not 4096-byte aligned (alignment mismatch)");
SIZED_CASE(free_aligned_sized_with_an_alignment_not_a_power_of_two_aborts,
	   m->aligned_alloc(64, 48), .aligned = true, .align = 24, .size = 48,
	   .dies = "mheap: free_aligned_sized of %#lx with alignment 24 and size 48: the alignment is not a power of two");
SIZED_CASE(free_sized_of_a_freed_object_is_a_double_free, freed_40(m), .size = 40,
	   .dies = "mheap: double free of %#lx");
SIZED_CASE(free_sized_inside_an_object_is_an_invalid_free, (char *)m->malloc(40) + 8, .size = 40,
	   .dies = "mheap: invalid free of %#lx in free_sized (inside an object)");

/* libmheap.so's own numbers through glibc's calls, exactly. */
MHEAP_FIXTURE(mheap_numbers);

/* A freed 1 MiB block stays resident (below the scavenger's reserve):
 * malloc_trim releases it, and then has nothing left to release. */
TEST_F(mheap_numbers, malloc_trim_releases_free_pages_then_has_none_left)
{
	char *p;

	RETURN_IF_SETUP_SKIPPED();
	p = self->m.malloc(1 << 20);
	ASSERT_NE(NULL, p);
	memset(p, 1, 1 << 20);
	self->m.free(p);
	EXPECT_LT(0, self->m.mallinfo2().keepcost);
	EXPECT_EQ(1, self->m.malloc_trim(0));
	EXPECT_EQ(0, self->m.malloc_trim(0));
	EXPECT_EQ(0, self->m.mallinfo2().keepcost);
}

/* uordblks counts a small object by its class's size, a large one by its
 * pages, which hblks and hblkhd count too; uordblks + fordblks = arena. */
TEST_F(mheap_numbers, mallinfo2_counts_objects_by_the_bytes_they_take)
{
	struct mallinfo2 before, during;
	void *small, *large;

	RETURN_IF_SETUP_SKIPPED();
	before = self->m.mallinfo2();
	small = self->m.malloc(1000);
	large = self->m.malloc(100000);	/* 16 pages: 64 KiB steps from 64 KiB */
	during = self->m.mallinfo2();
	EXPECT_EQ(1024, self->m.malloc_usable_size(small));
	EXPECT_EQ(before.uordblks + 1024 + 131072, during.uordblks);
	EXPECT_EQ(before.hblks + 1, during.hblks);
	EXPECT_EQ(before.hblkhd + 131072, during.hblkhd);
	EXPECT_EQ(during.arena, during.uordblks + during.fordblks);
	self->m.free(small);
	self->m.free(large);
	EXPECT_EQ(before.uordblks, self->m.mallinfo2().uordblks);
}

TEST_HARNESS_MAIN
