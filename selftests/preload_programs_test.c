// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so as a drop-in malloc for real programs: python3, sort, gcc
 * and git run under LD_PRELOAD, give the same results as without it, and
 * really allocate from mheap (each process prints its statistics at exit
 * with MHEAP_STATS=1); a C++ program built with g++ gets every form of
 * new and delete from the library (std::bad_alloc after the new-handler, a
 * sized delete[] of another size class aborts); the standard names whose
 * contract is an mh_* function's are that function.
 */
#define _GNU_SOURCE
#include "preload_lib.h"

FIXTURE(preload)
{
	char dir[64];
	char lib[512];
};

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

/* A library preloaded after libmheap.so is set up before it: its
 * constructor's operator new is the process's first allocation. In the
 * secure mode that new's block keeps the size given, as every other's
 * (userlib/preload_cxx.c, new_block), so a sized delete of that size
 * frees it. The defect it catches: a new that reads the mode before the
 * heap is set up takes the default mode's rounded request (32 bytes for
 * 17), and the delete aborts with a size mismatch. */
static const char first_new_lib[] =
	"#include <stddef.h>\n"
	"extern void *_Znwm(size_t);\n"
	"extern void _ZdlPvm(void *, size_t);\n"
	"__attribute__((constructor)) static void first(void)\n"
	"{\n"
	"	_ZdlPvm(_Znwm(17), 17);\n"
	"}\n";

TEST_F_TIMEOUT(preload, secure_new_as_the_first_allocation_is_deleted_with_its_size, 60)
{
	RETURN_IF_SETUP_SKIPPED();
	if (!command_exists("gcc"))
		SKIP(return, "gcc not installed");
	ASSERT_TRUE(put_file(self, "first.c", first_new_lib));
	ASSERT_EQ(0, sh(self, false, "gcc -shared -fPIC -o libfirst.so first.c "
			"-Wl,--unresolved-symbols=ignore-all"));
	for (int secure = 0; secure <= 1; secure++) {
		int rc = sh(self, false, "MHEAP_SECURE=%d LD_PRELOAD='%s ./libfirst.so' "
			    "/bin/true 2> err || { cat err >&2; false; }", secure, self->lib);

		EXPECT_EQ(0, rc) TH_LOG("MHEAP_SECURE=%d", secure);
	}
}

/* A library preloaded after libmheap.so (its constructor runs first) that
 * makes every mprotect fail with EPERM, as a sandbox's seccomp filter may. */
static const char no_mprotect_lib[] =
	"#include <errno.h>\n"
	"#include <stddef.h>\n"
	"#include <linux/filter.h>\n"
	"#include <linux/seccomp.h>\n"
	"#include <sys/prctl.h>\n"
	"#include <sys/syscall.h>\n"
	"#include <unistd.h>\n"
	"__attribute__((constructor)) static void deny(void)\n"
	"{\n"
	"	struct sock_filter f[] = {\n"
	"		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),\n"
	"		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 1),\n"
	"		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),\n"
	"		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),\n"
	"	};\n"
	"	struct sock_fprog p = { .len = 4, .filter = f };\n"
	"	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p))\n"
	"		_exit(3);\n"
	"}\n";

/* The entry table is made read-only when the heap is set up
 * (userlib/entry.c). The default mode never needed mprotect and runs
 * without it, the table left as it was loaded; the secure mode, whose
 * promise the read-only table is part of, refuses to start, naming why. */
TEST_F_TIMEOUT(preload, a_sandbox_without_mprotect_runs_the_default_mode_only, 60)
{
	char path[256], err[512] = "";
	FILE *f;

	RETURN_IF_SETUP_SKIPPED();
	if (!command_exists("gcc"))
		SKIP(return, "gcc not installed");
	ASSERT_TRUE(put_file(self, "deny.c", no_mprotect_lib));
	ASSERT_EQ(0, sh(self, false, "gcc -shared -fPIC -o libdeny.so deny.c"));
	EXPECT_EQ(0, sh(self, false, "LD_PRELOAD='%s ./libdeny.so' /bin/echo ok > out 2> err "
			"|| { cat err >&2; false; }", self->lib));
	EXPECT_NE(0, sh(self, false, "MHEAP_SECURE=1 LD_PRELOAD='%s ./libdeny.so' /bin/echo ok "
			"> out 2> err", self->lib));
	snprintf(path, sizeof(path), "%s/err", self->dir);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	if (!fgets(err, sizeof(err), f))
		err[0] = 0;
	fclose(f);
	EXPECT_STREQ("mheap: cannot make the entry table read-only: Operation not permitted\n", err);
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

TEST_HARNESS_MAIN
