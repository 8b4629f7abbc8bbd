// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so preloaded into a program whose threads come and go: glibc
 * frees a thread's own buffers (__libc_thread_freeres) after the thread-key
 * destructors, so after the allocator has given the thread's cache back.
 * Preloading is tested in the plain build only, as in preload_lib.h.
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

TEST(frees_at_thread_exit_after_the_cache_is_gone_leave_no_cache)
{
	char dir[] = "/tmp/mheap-preload-XXXXXX", path[64], line[256];
	long cached = -1, n;
	int rc = run_preloaded(_metadata, strerror_threads, "MHEAP_STATS=1", dir);
	FILE *f;

	if (rc == -1)
		return;
	EXPECT_EQ(0, rc);
	snprintf(path, sizeof(path), "%s/err", dir);
	f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, " threads_cached %ld", &n) == 1)
				cached = n;
		fclose(f);
	}
	remove_dir(_metadata, dir);
	/* The main thread's cache, and no other. */
	EXPECT_EQ(1, cached);
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

TEST_HARNESS_MAIN
