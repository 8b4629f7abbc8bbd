/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests of the quarantine scan on its own (userlib/scan.c;
 * scan_*_test.c) share: a range of address space that stands for a
 * quarantined chunk (a PROT_NONE mapping, as a faulted chunk is), a scan
 * for it alone, and a global root to point into it. The range's address is
 * kept XORed with a key everywhere but in the root under test (roots.h);
 * the helpers do not inline, so that no caller's copy is what a scan finds.
 * A live arena is a root through arena_scan.c, which
 * quarantine_scan_test.c tests.
 */
#ifndef MHEAP_SCAN_RANGE_H
#define MHEAP_SCAN_RANGE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mheap.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "roots.h"
#include "scan_impl.h"

#define RANGE_LEN ((size_t)2 << 20)
/* The interior offset the pointer is given. */
#define INTERIOR 123456
/* Scans in the concurrency tests (each is slow under the sanitizers). */
#define CONCURRENT_SCANS (UNDER_SANITIZER ? 8 : 50)

/* ------------------------------------------------------------ helpers */

/*
 * A fake quarantined chunk: reserved, faulting. Returns it XORed. It sits
 * in the middle of a larger reservation, so that its base is not the end of
 * a neighbouring mapping: the end of a thread stack is recorded by the
 * thread library, and that word would count as a pointer to the base.
 */
#define RANGE_GAP ((size_t)64 << 10)

static uintptr_t __attribute__((noinline)) range_new(void)
{
	char *p = mmap(NULL, RANGE_LEN + 2 * RANGE_GAP, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? 0 : (uintptr_t)(p + RANGE_GAP) ^ KEY;
}

static void __attribute__((noinline)) range_free(uintptr_t enc)
{
	munmap((void *)((enc ^ KEY) - RANGE_GAP), RANGE_LEN + 2 * RANGE_GAP);
}

/*
 * Threads the tests' scans read with: more than the CPUs of the machines
 * the tests run on, so that the roots are always shared out among readers
 * (scan_helpers.c); random_data_... compares one reader with many.
 */
#define READERS 3

/* Scan for one range; 1 found, 0 not, -1 the scan was incomplete. */
static int __attribute__((noinline)) scan_one(uintptr_t enc)
{
	struct sys_range t = { enc ^ KEY, (enc ^ KEY) + RANGE_LEN };
	struct scan_result res;
	uint8_t ref = 0;

	scan_for_pointers(&t, 1, &ref, NULL, READERS, false, &res);
	return res.complete ? ref : -1;
}

static void __attribute__((noinline, unused)) set_global(uintptr_t enc, intptr_t off)
{
	global_root = (void *)((enc ^ KEY) + (uintptr_t)off);
}

/* A thread that blocks in read(2) on fds[0] until a byte comes; tid set
 * once it runs. */
struct reader {
	int fds[2];
	_Atomic pid_t tid;
};

static __attribute__((unused)) void *read_a_byte(void *arg)
{
	struct reader *rd = arg;
	char c;
	ssize_t n;

	atomic_store(&rd->tid, (pid_t)syscall(SYS_gettid));
	n = read(rd->fds[0], &c, 1);
	return (void *)(intptr_t)(n == 1 ? 0 : errno);
}

#endif /* MHEAP_SCAN_RANGE_H */
