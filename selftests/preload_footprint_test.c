// SPDX-License-Identifier: GPL-2.0
/*
 * The pages of libmheap.so's own code a default-mode program keeps
 * resident. The kernel maps a cached file's pages 64 KiB at a time around
 * a page fault (fault-around), so every 64 KiB block of the library's code
 * that a process runs anything in is resident whole. The build puts the
 * code a default-mode program runs (allocation, free, start-up, thread
 * exit, the fork handlers) in the first block of the code segment and the
 * features such a program never runs (the secure mode, user arenas, the
 * quarantine scan, the heap check, the statistics' reports) after it (the
 * Makefile's COLD_SRCS and SO_LDFLAGS, internal.h's MH_DEFAULT_TEXT): a
 * program that allocates every way there is, with threads and a fork,
 * keeps one block. Built with the code in link order, 124 kB of its 124 kB
 * were resident (docs/heap-pages-log.md).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "preload_lib.h"

#define BLOCK	(64u << 10)	/* the kernel's fault_around_bytes default */

/*
 * The child: allocates every way a C program does (sizes of every small
 * class and large ones, calloc, realloc across classes and to large,
 * the aligned forms, usable size), in two threads besides main (one frees
 * what another made), forks, then prints the size and the resident kB of
 * the library's code mapping (smaps) named by argv[1].
 */
static const char child_src[] =
	"#define _GNU_SOURCE\n"
	"#include <limits.h>\n#include <malloc.h>\n#include <pthread.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
	"#include <string.h>\n#include <sys/wait.h>\n#include <unistd.h>\n"
	"static void *keep[4096];\n"
	"static void churn(unsigned seed)\n{\n"
	"	for (int i = 0; i < 20000; i++) {\n"
	"		unsigned k = (seed = seed * 1103515245 + 12345) >> 8;\n"
	"		size_t size = k % 7 ? 1 + k % 1024 : 1 + k % 70000;\n"
	"		free(keep[k % 4096]);\n"
	"		keep[k % 4096] = malloc(size);\n"
	"		memset(keep[k % 4096], 1, size < 64 ? size : 64);\n"
	"	}\n}\n"
	"static void *worker(void *arg)\n{\n"
	"	for (int i = 0; i < 1000; i++)\n"
	"		free(malloc(16 + i % 500));\n"
	"	*(void **)arg = malloc(48);\n"
	"	return NULL;\n}\n"
	"int main(int argc, char **argv)\n{\n"
	"	void *p = calloc(100, 30), *q = NULL, *got[2];\n"
	"	pthread_t t[2];\n"
	"	char line[512], path[PATH_MAX + 1] = \"\";\n"
	"	unsigned long a, b, kb, size = 0, rss = 0;\n"
	"	int mine = 0;\n"
	"	FILE *f;\n"
	"	churn(1);\n"
	"	p = realloc(realloc(realloc(p, 5000), 300000), 20);\n"
	"	free(p);\n"
	"	if (posix_memalign(&q, 64, 1000))\n		return 1;\n"
	"	free(q);\n"
	"	free(aligned_alloc(4096, 8192));\n"
	"	free(memalign(256, 100));\n"
	"	free(valloc(100));\n"
	"	p = malloc(100);\n"
	"	if (malloc_usable_size(p) < 100)\n		return 1;\n"
	"	free(reallocarray(p, 10, 30));\n"
	"	p = malloc(8 << 20);\n"
	"	memset(p, 1, 8 << 20);\n"
	"	free(p);\n"
	"	for (int i = 0; i < 2; i++)\n"
	"		pthread_create(&t[i], NULL, worker, &got[i]);\n"
	"	for (int i = 0; i < 2; i++) {\n"
	"		pthread_join(t[i], NULL);\n"
	"		free(got[i]);\n"
	"	}\n"
	"	pid_t pid = fork();\n"
	"	if (!pid) {\n		free(malloc(100));\n		_exit(0);\n	}\n"
	"	waitpid(pid, NULL, 0);\n"
	"	churn(2);\n"
	"	for (int i = 0; i < 4096; i++)\n		free(keep[i]);\n"
	"	f = fopen(\"/proc/self/smaps\", \"r\");\n"
	"	while (f && fgets(line, sizeof(line), f)) {\n"
	"		char perm[8];\n"
	"		if (sscanf(line, \"%lx-%lx %7s %*s %*s %*s %4096s\", &a, &b, perm, path) >= 3 &&\n"
	"		    strchr(line, '-') < strchr(line, ' ')) {\n"
	"			mine = !strcmp(perm, \"r-xp\") && !strcmp(path, argv[1]);\n"
	"			if (mine)\n				size += (b - a) >> 10;\n"
	"			path[0] = 0;\n"
	"		} else if (mine && sscanf(line, \"Rss: %lu kB\", &kb) == 1) {\n"
	"			rss += kb;\n"
	"		}\n"
	"	}\n"
	"	printf(\"%lu %lu\\n\", size, rss);\n"
	"	return !size;\n}\n";

/* kB of a fresh read-only mapping of path present after one read of its
 * first byte: the kernel's fault-around at a mapping's start. */
static long fault_around_kb(const char *path)
{
	int fd = open(path, O_RDONLY), pm = open("/proc/self/pagemap", O_RDONLY);
	off_t len = fd < 0 ? 0 : lseek(fd, 0, SEEK_END);
	long present = -1, page = sysconf(_SC_PAGESIZE);
	volatile char *p = MAP_FAILED;

	if (fd >= 0 && pm >= 0 && len >= 4 * (off_t)BLOCK)
		p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED) {
		(void)p[0];
		present = 0;
		for (off_t off = 0; off < len; off += page) {
			uint64_t e = 0;

			if (pread(pm, &e, sizeof(e), ((uintptr_t)p + off) / page * sizeof(e)) == sizeof(e))
				present += e >> 63;
		}
		munmap((void *)p, len);
		present = present * page >> 10;
	}
	if (fd >= 0)
		close(fd);
	if (pm >= 0)
		close(pm);
	return present;
}

/* Read the whole file, so that all its pages are in the page cache, as
 * after `make`, `make install` or the benchmark's copy: fault-around maps
 * only cached pages, and this is the case where it maps the most. */
static bool cache_file(const char *path)
{
	char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	close(fd);
	return n == 0;
}

TEST(a_default_program_keeps_one_64_kib_block_of_the_librarys_code)
{
	char dir[] = "/tmp/mheap-footprint-XXXXXX", cmd[PATH_MAX * 3], real[PATH_MAX];
	const char *why, *lib = preload_lib(&why);
	unsigned long size = 0, rss = 0;
	long around;
	FILE *f;

	if (!lib)
		SKIP(return, "%s", why);
	if (system("command -v gcc >/dev/null 2>&1"))
		SKIP(return, "gcc not installed (the child program is built here)");
	ASSERT_NE(NULL, realpath(lib, real));
	ASSERT_TRUE(cache_file(real));
	around = fault_around_kb(real);
	if (around != BLOCK >> 10)
		SKIP(return, "the kernel maps %ld kB around a fault, not 64 (fault_around_bytes): the layout is made for 64", around);
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "%s/child.c", dir);
	f = fopen(cmd, "w");
	ASSERT_NE(NULL, f);
	fputs(child_src, f);
	ASSERT_EQ(0, fclose(f));
	snprintf(cmd, sizeof(cmd), "gcc -O2 -pthread -o %s/child %s/child.c", dir, dir);
	ASSERT_EQ(0, system(cmd));
	snprintf(cmd, sizeof(cmd), "LD_PRELOAD=%s %s/child %s", real, dir, real);
	f = popen(cmd, "r");
	ASSERT_NE(NULL, f);
	EXPECT_EQ(2, fscanf(f, "%lu %lu", &size, &rss));
	EXPECT_EQ(0, pclose(f));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	EXPECT_EQ(0, system(cmd));
	TH_LOG("code mapping %lu kB, %lu kB resident", size, rss);
	EXPECT_LE(rss, BLOCK >> 10);
}

TEST_HARNESS_MAIN
