// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so preloaded into a program whose threads come and go: glibc
 * frees a thread's own buffers (__libc_thread_freeres) after the thread-key
 * destructors, so after the allocator has given the thread's cache back;
 * a thread may ask for its own stack first thing (pthread_getattr_np); and
 * the quarantine scan reads a thread's dead stack unless the thread told
 * the heap its bounds, which in the shared object it does by calling the
 * arena API. Preloading is tested in the plain build only, as in
 * preload_lib.h.
 */
#define _GNU_SOURCE

#include "kselftest_harness.h"
#include "mheap_test.h"

/* 200 threads, one after another, each leaving glibc a buffer to free at
 * its exit: strerror of an unknown error number formats into a buffer
 * malloc'd per thread. */
static const char strerror_threads[] =
	"#include <pthread.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"static void *run(void *arg) { (void)arg; return strerror(12345); }\n"
	"int main(void)\n"
	"{\n"
	"	free(malloc(1));\n"
	"	for (int i = 0; i < 200; i++) {\n"
	"		pthread_t t;\n"
	"		if (pthread_create(&t, NULL, run, NULL) || pthread_join(t, NULL))\n"
	"			return 1;\n"
	"	}\n"
	"	return 0;\n"
	"}\n";

/*
 * A scan's helper threads (userlib/scan_helpers.c) are joined after the
 * scan; glibc then frees each one's TLS array with its stack cache locked.
 * In the secure heap with every small block guarded, that free quarantines
 * the array, and with a tiny budget asks for a scan from inside free():
 * one must neither make threads (which takes the stack cache lock) nor
 * wait for the scan in progress (this thread's own, joining its helpers).
 */
static const char scan_helper_joins[] =
	"#include <dlfcn.h>\n"
	"#include <stdlib.h>\n"
	"int main(void)\n"
	"{\n"
	"	void (*release)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, \"mh_quarantine_release\");\n"
	"	if (!release)\n"
	"		return 2;\n"
	"	for (int i = 0; i < 40; i++) {\n"
	"		free(malloc(64 << 10));\n"
	"		release();\n"
	"	}\n"
	"	return 0;\n"
	"}\n";

/*
 * A thread whose first allocation is the realloc inside glibc's
 * pthread_getattr_np (Rust's runtime asks for a new thread's stack at its
 * start): glibc holds the thread's own lock there, and the heap must not
 * ask for the thread's stack bounds from inside that allocation
 * (userlib/scan_stacks.c). Then a scan, with the thread still there.
 */
static const char getattr_first[] =
	"#define _GNU_SOURCE\n"
	"#include <dlfcn.h>\n"
	"#include <pthread.h>\n"
	"#include <unistd.h>\n"
	"static int fds[2];\n"
	"static void *run(void *arg)\n"
	"{\n"
	"	pthread_attr_t a;\n"
	"	char c;\n"
	"	(void)arg;\n"
	"	if (pthread_getattr_np(pthread_self(), &a))\n"
	"		return (void *)1;\n"
	"	pthread_attr_destroy(&a);\n"
	"	return read(fds[0], &c, 1) == 1 ? NULL : (void *)1;\n"
	"}\n"
	"int main(void)\n"
	"{\n"
	"	void (*release)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, \"mh_quarantine_release\");\n"
	"	pthread_t t;\n"
	"	void *r = (void *)1;\n"
	"	if (!release || pipe(fds) || pthread_create(&t, NULL, run, NULL))\n"
	"		return 2;\n"
	"	usleep(100000);\n"
	"	release();\n"
	"	if (write(fds[1], \"x\", 1) != 1 || pthread_join(t, &r))\n"
	"		return 3;\n"
	"	return r ? 4 : 0;\n"
	"}\n";

/*
 * The dead part of a thread's stack (userlib/scan_stacks.c). A frame that
 * has returned left the only copy of a pointer into a freed arena's chunk
 * 32 KiB below where its thread then blocks in read(2); main keeps the
 * address XORed only, scrubs its stack, and its first arena takes the
 * heap's first chunk (start-up code's stack leftovers hold its base). The
 * scan of mh_quarantine_release leaves the dead part out, and releases the
 * chunk, only for a thread whose stack bounds the heap recorded: in the
 * shared object one that has called the arena API (mh_arena_new, with
 * THREAD_MAKES_AN_ARENA set), not one that has only allocated (the thread
 * allocates first either way: its heap cache records nothing there). With
 * MHEAP_ARENA_REUSE=0 the freed arena's only chunk is quarantined.
 */
static const char dead_frame[] =
	"#define _GNU_SOURCE\n"
	"#include <dlfcn.h>\n"
	"#include <pthread.h>\n"
	"#include <stdint.h>\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"#include <sys/syscall.h>\n"
	"#include <unistd.h>\n"
	"#define KEY ((uintptr_t)0xa5a5a5a5a5a5a5a5ull)\n"
	"static void *(*arena_new)(void);\n"
	"static void *(*arena_alloc)(void *, size_t, size_t);\n"
	"static void (*arena_free)(void *);\n"
	"static void (*release)(void);\n"
	"static void *arena;\n"
	"static uintptr_t enc;\n"
	"static int go[2], ready[2];\n"
	"static volatile pid_t tid;\n"
	"static void __attribute__((noinline)) leave_in_a_dead_frame(void)\n"
	"{\n"
	"	uintptr_t frame[4096];\n"
	"	memset(frame, 0, sizeof(frame));\n"
	"	frame[0] = enc ^ KEY;\n"
	"	__asm__ volatile(\"\" : : \"r\"(frame) : \"memory\");\n"
	"}\n"
	"static void __attribute__((noinline)) scrub(void)\n"
	"{\n"
	"	char b[64 << 10];\n"
	"	memset(b, 0, sizeof(b));\n"
	"	__asm__ volatile(\"\" : : \"r\"(b) : \"memory\");\n"
	"}\n"
	"static void *run(void *arg)\n"
	"{\n"
	"	char c;\n"
	"	(void)arg;\n"
	"	free(malloc(64));\n"
	"	if (getenv(\"THREAD_MAKES_AN_ARENA\")) {\n"
	"		void *a = arena_new();\n"
	"		if (!a)\n"
	"			return (void *)1;\n"
	"		arena_free(a);\n"
	"	}\n"
	"	leave_in_a_dead_frame();\n"
	"	tid = (pid_t)syscall(SYS_gettid);\n"
	"	if (write(ready[1], \"r\", 1) != 1)\n"
	"		return (void *)1;\n"
	"	return read(go[0], &c, 1) == 1 ? NULL : (void *)1;\n"
	"}\n"
	"static void __attribute__((noinline)) make(void)\n"
	"{\n"
	"	void *first = arena_new();\n"
	"	if (!first || !arena_alloc(first, 64, 0))\n"
	"		return;\n"
	"	arena = arena_new();\n"
	"	enc = (uintptr_t)(arena ? arena_alloc(arena, 64, 0) : NULL) ^ KEY;\n"
	"}\n"
	"static int in_read(pid_t t)\n"
	"{\n"
	"	char path[64];\n"
	"	long nr = -1;\n"
	"	FILE *f;\n"
	"	snprintf(path, sizeof(path), \"/proc/self/task/%d/syscall\", (int)t);\n"
	"	f = fopen(path, \"r\");\n"
	"	if (!f)\n"
	"		return 0;\n"
	"	if (fscanf(f, \"%ld\", &nr) != 1)\n"
	"		nr = -1;\n"
	"	fclose(f);\n"
	"	return nr == SYS_read;\n"
	"}\n"
	"int main(void)\n"
	"{\n"
	"	pthread_t t;\n"
	"	void *r = (void *)1;\n"
	"	char c;\n"
	"	int i;\n"
	"	arena_new = (void *(*)(void))dlsym(RTLD_DEFAULT, \"mh_arena_new\");\n"
	"	arena_alloc = (void *(*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, \"mh_arena_alloc\");\n"
	"	arena_free = (void (*)(void *))dlsym(RTLD_DEFAULT, \"mh_arena_free\");\n"
	"	release = (void (*)(void))dlsym(RTLD_DEFAULT, \"mh_quarantine_release\");\n"
	"	if (!arena_new || !arena_alloc || !arena_free || !release || pipe(go) || pipe(ready))\n"
	"		return 2;\n"
	"	make();\n"
	"	if (!arena || enc == KEY)\n"
	"		return 2;\n"
	"	scrub();\n"
	"	if (pthread_create(&t, NULL, run, NULL) || read(ready[0], &c, 1) != 1)\n"
	"		return 2;\n"
	"	for (i = 0; i < 2000 && !in_read(tid); i++)\n"
	"		usleep(1000);\n"
	"	if (i == 2000)\n"
	"		return 2;\n"
	"	arena_free(arena);\n"
	"	release();\n"
	"	if (write(go[1], \"g\", 1) != 1 || pthread_join(t, &r))\n"
	"		return 3;\n"
	"	return r ? 4 : 0;\n"
	"}\n";

/* Build source in a new directory and run it preloaded with env; its exit
 * status, stderr in dir/err (dir is the caller's to remove); -1: skipped. */
static int run_preloaded(struct __test_metadata *_metadata, const char *source, const char *env,
			 char *dir)
{
	const char *lib = getenv("MHEAP_PRELOAD_LIB"), *flavour = getenv("MHEAP_TEST_FLAVOUR");
	char cmd[1024];
	FILE *f;

	if (flavour && (!strcmp(flavour, "asan") || !strcmp(flavour, "tsan"))) {
		SKIP(return -1, "preloading is tested in the plain build");
	}
	if (!lib || access(lib, R_OK) || system("command -v gcc >/dev/null 2>&1")) {
		SKIP(return -1, "no libmheap.so to preload (MHEAP_PRELOAD_LIB), or no gcc");
	}
	if (!mkdtemp(dir))
		return -2;
	snprintf(cmd, sizeof(cmd), "%s/prog.c", dir);
	f = fopen(cmd, "w");
	if (!f)
		return -2;
	fputs(source, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && gcc -O2 -pthread -o prog prog.c -ldl && "
		 "timeout 120 env LD_PRELOAD=%s %s ./prog 2> err", dir, lib, env);
	return system(cmd);
}

static void remove_dir(struct __test_metadata *_metadata, const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		TH_LOG("could not remove %s", dir);
}

/* The figure name of the MHEAP_STATS=1 report in dir/err (the last
 * report's), or -1. */
static long stat_of(const char *dir, const char *name)
{
	char path[64], line[256], key[64];
	long v = -1, n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/err", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %63s %ld", key, &n) == 2 && !strcmp(key, name))
			v = n;
	fclose(f);
	return v;
}

TEST(frees_at_thread_exit_after_the_cache_is_gone_leave_no_cache)
{
	char dir[] = "/tmp/mheap-preload-XXXXXX";
	int rc = run_preloaded(_metadata, strerror_threads, "MHEAP_STATS=1", dir);

	if (rc == -1)
		return;
	EXPECT_EQ(0, rc);
	/* The main thread's cache, and no other. */
	EXPECT_EQ(1, stat_of(dir, "threads_cached"));
	remove_dir(_metadata, dir);
}

TEST(a_scan_asked_for_while_joining_the_scans_helpers_does_not_deadlock)
{
	char dir[] = "/tmp/mheap-preload-XXXXXX";
	int rc = run_preloaded(_metadata, scan_helper_joins,
			       "MHEAP_SECURE=1 MHEAP_SECURE_SAMPLE=1 MHEAP_QUARANTINE_MAX=4K "
			       "MHEAP_QUARANTINE_SCAN_SHARE=100 MHEAP_QUARANTINE_SCAN_THREADS=2",
			       dir);

	if (rc == -1)
		return;
	/* timeout's status 124 is the deadlock. */
	EXPECT_EQ(0, rc);
	remove_dir(_metadata, dir);
}

TEST(a_thread_whose_first_allocation_is_inside_pthread_getattr_np_does_not_deadlock)
{
	char dir[] = "/tmp/mheap-preload-XXXXXX";
	int rc = run_preloaded(_metadata, getattr_first, "", dir);

	if (rc == -1)
		return;
	/* timeout's status 124 is the deadlock. */
	EXPECT_EQ(0, rc);
	remove_dir(_metadata, dir);
}

FIXTURE(dead_stack)
{
};

FIXTURE_VARIANT(dead_stack)
{
	bool arena;	/* the thread calls mh_arena_new */
};

FIXTURE_VARIANT_ADD(dead_stack, thread_that_made_an_arena) { .arena = true };
FIXTURE_VARIANT_ADD(dead_stack, thread_that_never_called_an_arena_function) { .arena = false };

FIXTURE_SETUP(dead_stack)
{
}

FIXTURE_TEARDOWN(dead_stack)
{
}

TEST_F(dead_stack, a_pointer_in_the_dead_part_of_a_thread_stack_keeps_its_chunk_only_if_the_thread_never_called_an_arena_function)
{
	char dir[] = "/tmp/mheap-preload-XXXXXX";
	int rc = run_preloaded(_metadata, dead_frame,
			       variant->arena ? "MHEAP_STATS=1 MHEAP_ARENA_REUSE=0 THREAD_MAKES_AN_ARENA=1"
					      : "MHEAP_STATS=1 MHEAP_ARENA_REUSE=0",
			       dir);

	if (rc == -1)
		return;
	EXPECT_EQ(0, rc);
	/* One scan, which stopped every thread (else it keeps everything). */
	EXPECT_EQ(1, stat_of(dir, "quarantine_scans"));
	EXPECT_EQ(0, stat_of(dir, "quarantine_scans_incomplete"));
	EXPECT_EQ(variant->arena ? 0 : 1, stat_of(dir, "arena_chunks_quarantined"));
	remove_dir(_metadata, dir);
}

TEST_HARNESS_MAIN
