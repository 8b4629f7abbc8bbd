// SPDX-License-Identifier: GPL-2.0
/*
 * libmheap.so preloaded into a program whose threads come and go: glibc
 * frees a thread's own buffers (__libc_thread_freeres) after the thread-key
 * destructors, so after the allocator has given the thread's cache back.
 * Preloading is tested in the plain build only, as in preload_test.c.
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

TEST(frees_at_thread_exit_after_the_cache_is_gone_leave_no_cache)
{
	const char *lib = getenv("MHEAP_PRELOAD_LIB"), *flavour = getenv("MHEAP_TEST_FLAVOUR");
	char dir[] = "/tmp/mheap-preload-XXXXXX", cmd[1024], line[256];
	long cached = -1, n;
	FILE *f;

	if (flavour && (!strcmp(flavour, "asan") || !strcmp(flavour, "tsan")))
		SKIP(return, "preloading is tested in the plain build");
	if (!lib || access(lib, R_OK) || system("command -v gcc >/dev/null 2>&1"))
		SKIP(return, "no libmheap.so to preload (MHEAP_PRELOAD_LIB), or no gcc");
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "%s/threads.c", dir);
	f = fopen(cmd, "w");
	ASSERT_NE(NULL, f);
	fputs(strerror_threads, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "cd %s && gcc -O2 -pthread -o threads threads.c && "
		 "LD_PRELOAD=%s MHEAP_STATS=1 ./threads 2> err", dir, lib);
	EXPECT_EQ(0, system(cmd));
	snprintf(cmd, sizeof(cmd), "%s/err", dir);
	f = fopen(cmd, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, " threads_cached %ld", &n) == 1)
				cached = n;
		fclose(f);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		TH_LOG("could not remove %s", dir);
	/* The main thread's cache, and no other. */
	EXPECT_EQ(1, cached);
}

TEST_HARNESS_MAIN
