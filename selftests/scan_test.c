// SPDX-License-Identifier: GPL-2.0
/*
 * The quarantine scan on its own (userlib/scan.c): a range of address space
 * stands for a quarantined chunk (a PROT_NONE mapping, as a faulted chunk
 * is), and a pointer into it is put in each kind of root a C program has:
 * a global, a thread-local, another thread's stack, a register of a thread
 * blocked in a system call, a heap object, an mmaped buffer (roots.h; a
 * live arena is a root through arena_scan.c, which quarantine_scan_test.c
 * tests). The scan must find it there and stop finding it once it is
 * overwritten; it must skip what it cannot read, never crash on random
 * data, stop threads that never called the allocator, and keep working
 * while threads come and go and the process forks.
 *
 * The range's address is kept XORed with a key everywhere but in the root
 * under test (roots.h).
 */
#define _GNU_SOURCE
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

FIXTURE(root)
{
	uintptr_t enc;
	struct roots roots;
};

FIXTURE_VARIANT(root)
{
	enum root_kind kind;
};

ROOT_VARIANTS(root);

FIXTURE_SETUP(root)
{
	const char *why = root_unsupported(variant->kind);

	self->enc = range_new();
	ASSERT_NE(0, self->enc);
	ASSERT_TRUE(roots_init(&self->roots));
	if (why)
		SKIP(return, "%s", why);
	if (variant->kind == ROOT_ARENA)
		SKIP(return, "arena chunks are roots through arena_scan.c: quarantine_scan_test.c");
}

FIXTURE_TEARDOWN(root)
{
	roots_fini(&self->roots);
	range_free(self->enc);
}

/* The interior pointer the tests store, XORed. */
static uintptr_t __attribute__((noinline)) interior(uintptr_t enc)
{
	return ((enc ^ KEY) + INTERIOR) ^ KEY;
}

TEST_F(root, nothing_is_found_before_the_pointer_is_stored)
{
	RETURN_IF_SETUP_SKIPPED();
	EXPECT_EQ(0, scan_one(self->enc));
}

TEST_F(root, an_interior_pointer_stored_there_is_found)
{
	RETURN_IF_SETUP_SKIPPED();
	ASSERT_TRUE(root_set(&self->roots, variant->kind, interior(self->enc)));
	EXPECT_EQ(1, scan_one(self->enc));
	/* Found again: the scan changed nothing. */
	EXPECT_EQ(1, scan_one(self->enc));
}

TEST_F(root, once_overwritten_it_is_no_longer_found)
{
	RETURN_IF_SETUP_SKIPPED();
	ASSERT_TRUE(root_set(&self->roots, variant->kind, interior(self->enc)));
	ASSERT_EQ(1, scan_one(self->enc));
	ASSERT_TRUE(root_clear(&self->roots, variant->kind));
	EXPECT_EQ(0, scan_one(self->enc));
}

/* ------------------------------------------------------------ pointers */

static void __attribute__((noinline)) set_global(uintptr_t enc, intptr_t off)
{
	global_root = (void *)((enc ^ KEY) + (uintptr_t)off);
}

/* From its base to its last byte; one past the end is the next thing's. */
TEST(the_range_is_its_base_to_its_last_byte)
{
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	set_global(enc, 0);
	EXPECT_EQ(1, scan_one(enc));
	set_global(enc, RANGE_LEN - 1);
	EXPECT_EQ(1, scan_one(enc));
	set_global(enc, RANGE_LEN);
	EXPECT_EQ(0, scan_one(enc));
	set_global(enc, -8);
	EXPECT_EQ(0, scan_one(enc));
	global_root = NULL;
	range_free(enc);
}

static void *volatile held[40];

/* Of several ranges, exactly those pointed into are found. */
TEST(of_many_ranges_only_those_pointed_into_are_found)
{
	enum { N = 40 };
	static uintptr_t enc[N];
	struct sys_range t[N];
	uint8_t ref[N];
	struct scan_result res;

	for (int i = 0; i < N; i++) {
		enc[i] = range_new();
		ASSERT_NE(0, enc[i]);
	}
	/* Sorted by base, as the scan wants. */
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			if ((enc[j] ^ KEY) < (enc[i] ^ KEY)) {
				uintptr_t x = enc[i];

				enc[i] = enc[j];
				enc[j] = x;
			}
	for (int i = 0; i < N; i++) {
		t[i] = (struct sys_range){ enc[i] ^ KEY, (enc[i] ^ KEY) + RANGE_LEN };
		if (i % 3 == 0)
			held[i] = (void *)((enc[i] ^ KEY) + (size_t)i * 4096);
	}
	scan_for_pointers(t, N, ref, NULL, READERS, false, &res);
	ASSERT_TRUE(res.complete);
	for (int i = 0; i < N; i++) {
		EXPECT_EQ(i % 3 == 0, ref[i]) TH_LOG("range %d", i);
	}
	for (int i = 0; i < N; i++) {
		held[i] = NULL;
		range_free(enc[i]);
	}
}

static void __attribute__((noinline)) store_in(volatile uintptr_t *o, uintptr_t enc)
{
	o[3] = (enc ^ KEY) + 64;
}

TEST(a_freed_heap_object_is_not_a_root)
{
	uintptr_t enc = range_new();
	volatile uintptr_t *o = mh_malloc(64);

	ASSERT_NE(0, enc);
	ASSERT_NE(NULL, o);
	store_in(o, enc);
	ASSERT_EQ(1, scan_one(enc));
	mh_free((void *)o);	/* the word stays in the free slot */
	EXPECT_EQ(0, scan_one(enc));
	range_free(enc);
}

/*
 * The roots are read in units of 4 MiB (scan_roots.c): a pointer is found
 * in any unit of a long root, its first and last words included, both in
 * a mapping and in a large heap object, whose span is shared out among the
 * units that hold its pages.
 */
static const size_t unit_offsets[] = {
	0, ((size_t)4 << 20) - 8, (size_t)4 << 20, ((size_t)10 << 20) + 8, ((size_t)18 << 20) - 8,
};
#define LONG_ROOT ((size_t)18 << 20)

static void __attribute__((noinline)) store_at(volatile char *root, size_t off, uintptr_t enc)
{
	*(volatile uintptr_t *)(root + off) = enc ? (enc ^ KEY) + INTERIOR : 0;
}

static void expect_found_at_every_offset(struct __test_metadata *_metadata, volatile char *root)
{
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	for (size_t i = 0; i < sizeof(unit_offsets) / sizeof(unit_offsets[0]); i++) {
		store_at(root, unit_offsets[i], enc);
		EXPECT_EQ(1, scan_one(enc)) TH_LOG("offset %zu", unit_offsets[i]);
		store_at(root, unit_offsets[i], 0);
		EXPECT_EQ(0, scan_one(enc)) TH_LOG("offset %zu", unit_offsets[i]);
	}
	range_free(enc);
}

TEST(a_pointer_anywhere_in_a_long_mapping_is_found)
{
	char *map = mmap(NULL, LONG_ROOT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);

	ASSERT_NE(MAP_FAILED, map);
	expect_found_at_every_offset(_metadata, map);
	munmap(map, LONG_ROOT);
}

TEST(a_pointer_anywhere_in_a_large_heap_object_is_found)
{
	char *o = mh_malloc(LONG_ROOT);

	ASSERT_NE(NULL, o);
	memset(o, 0, LONG_ROOT);
	expect_found_at_every_offset(_metadata, o);
	mh_free(o);
}

/* A large object longer than a heap arena runs into the next one, where
 * its pages are not its span's first: a pointer there, on either side of
 * the boundary and in the object's last word, is found. */
TEST(a_pointer_in_a_large_heap_objects_part_in_the_next_heap_arena_is_found)
{
	size_t len = MH_ARENA_SIZE + ((size_t)8 << 20);
	char *o = mh_malloc(len);
	uintptr_t enc = range_new();
	size_t past;

	ASSERT_NE(NULL, o);
	ASSERT_NE(0, enc);
	memset(o, 0, len);
	past = ALIGN_UP((uintptr_t)o + 1, MH_ARENA_SIZE) - (uintptr_t)o;
	ASSERT_LT(past, len);
	const size_t offsets[] = { past - 8, past, past + ((size_t)4 << 20), len - 8 };

	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		if (offsets[i] >= len)
			continue;
		store_at(o, offsets[i], enc);
		EXPECT_EQ(1, scan_one(enc)) TH_LOG("offset %zu", offsets[i]);
		store_at(o, offsets[i], 0);
		EXPECT_EQ(0, scan_one(enc)) TH_LOG("offset %zu", offsets[i]);
	}
	range_free(enc);
	mh_free(o);
}

/* Count the threads of the process. */
static int task_count(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");

	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Helper threads are made for a scan and joined before it returns. The
 * kernel wakes a joiner when the thread has let go of its memory, a moment
 * before it takes the task out of /proc/self/task, so the count is waited
 * for (a second at most). (The first scan comes first: a sanitizer starts
 * a thread of its own at the process's first thread creation.) */
TEST(a_scans_helper_threads_are_gone_when_it_returns)
{
	uintptr_t enc = range_new();
	int before, after;

	ASSERT_NE(0, enc);
	ASSERT_EQ(0, scan_one(enc));
	before = task_count();
	ASSERT_LT(0, before);
	EXPECT_EQ(0, scan_one(enc));
	for (int ms = 0; (after = task_count()) != before && ms < 1000; ms++)
		usleep(1000);
	EXPECT_EQ(before, after);
	range_free(enc);
}

static void *no_op(void *arg)
{
	return arg;
}

/* The lines of /proc/self/maps: the mappings of the process. */
static int mapping_count(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* In a child whose threads cannot be made (over RLIMIT_NPROC as an
 * unprivileged user): 0 when its scans find the pointer and map nothing
 * more than they unmap; 3 when the limit cannot be set, 4 when threads
 * can still be made. */
static int scan_without_helpers(uintptr_t enc)
{
	struct rlimit none = { 0, 0 };
	pthread_t t;
	int before;

	if ((!getuid() && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))) ||
	    prctl(PR_SET_DUMPABLE, 1) || setrlimit(RLIMIT_NPROC, &none))
		return 3;
	if (!pthread_create(&t, NULL, no_op, NULL)) {
		pthread_join(t, NULL);
		return 4;
	}
	set_global(enc, INTERIOR);
	if (scan_one(enc) != 1)
		return 1;
	before = mapping_count();
	for (int i = 0; i < 4; i++)
		if (scan_one(enc) != 1)
			return 1;
	return mapping_count() == before ? 0 : 2;
}

/* A scan whose helper threads cannot be made (pthread_create fails) reads
 * alone, completes, and leaves no helper's mapping behind. */
TEST(a_scan_whose_helpers_cannot_be_made_reads_alone_and_leaks_nothing)
{
	uintptr_t enc = range_new();
	pid_t pid;
	int rc;

	ASSERT_NE(0, enc);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(scan_without_helpers(enc));
	rc = wait_child_ms(pid, 60000);
	range_free(enc);
	if (rc == 3 || rc == 4)
		SKIP(return, "cannot keep threads from being made here (%d)", rc);
	EXPECT_EQ(0, rc);
}

/* The threads there were before the scans of the test (and the thread
 * that signals the others), then the SIGUSR1 counts. */
#define KNOWN_MAX 64
static pid_t known[KNOWN_MAX];
static int nknown;
static _Atomic int usr1_elsewhere, usr1_sent;
static _Atomic pid_t sender;

static bool is_known(pid_t tid)
{
	if (tid == atomic_load(&sender))
		return true;
	for (int i = 0; i < nknown; i++)
		if (known[i] == tid)
			return true;
	return false;
}

static void note_usr1(int sig)
{
	(void)sig;
	if (!is_known((pid_t)syscall(SYS_gettid)))
		atomic_fetch_add(&usr1_elsewhere, 1);
}

/* Send SIGUSR1 to every thread that was not there when it started: the
 * scans' helpers, while they exist. */
static void *signal_new_threads(void *arg)
{
	_Atomic bool *stop = arg;

	atomic_store(&sender, (pid_t)syscall(SYS_gettid));
	while (!atomic_load(stop)) {
		DIR *d = opendir("/proc/self/task");

		if (!d)
			break;
		for (struct dirent *e; (e = readdir(d));) {
			pid_t tid = (pid_t)atoi(e->d_name);

			if (tid > 0 && !is_known(tid) &&
			    !syscall(SYS_tgkill, getpid(), tid, SIGUSR1))
				atomic_fetch_add(&usr1_sent, 1);
		}
		closedir(d);
	}
	return NULL;
}

/* A scan's helper threads run with every signal blocked: a signal sent to
 * one never runs the program's handler there. */
TEST(a_signal_sent_to_a_scans_helper_never_runs_the_programs_handler)
{
	struct sigaction sa = { .sa_handler = note_usr1, .sa_flags = SA_RESTART }, old;
	uintptr_t enc = range_new();
	_Atomic bool stop = false;
	pthread_t th;
	DIR *d;

	ASSERT_NE(0, enc);
	ASSERT_EQ(0, scan_one(enc));	/* a sanitizer's own threads first */
	d = opendir("/proc/self/task");
	ASSERT_NE(NULL, d);
	for (struct dirent *e; (e = readdir(d)) && nknown < KNOWN_MAX - 1;)
		if (atoi(e->d_name) > 0)
			known[nknown++] = (pid_t)atoi(e->d_name);
	closedir(d);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, &old));
	ASSERT_EQ(0, pthread_create(&th, NULL, signal_new_threads, &stop));
	for (int i = 0; i < 100 * (UNDER_SANITIZER ? 1 : 5) && atomic_load(&usr1_sent) < 20; i++)
		EXPECT_EQ(0, scan_one(enc));
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	sigaction(SIGUSR1, &old, NULL);
	range_free(enc);
	if (!atomic_load(&usr1_sent))
		SKIP(return, "no signal reached a helper while it existed");
	EXPECT_EQ(0, atomic_load(&usr1_elsewhere));
}

/*
 * A device file's mapping is not memory (reading some has side effects, and
 * /dev/mheap's faulted ranges cannot be read): it is left out whole, even
 * where it is readable. Where the module is loaded (the VM): a pointer in a
 * readable page of a /dev/mheap mapping whose other page is faulted is not
 * found, and the scan completes; the same pointer in anonymous memory is.
 */
TEST(a_device_mapping_is_left_out_whole)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	int fd = open("/dev/" MHEAP_DEVICE_NAME, O_RDWR | O_CLOEXEC);
	struct mheap_range r;
	struct mheap_ranges rs = { .ranges = (uintptr_t)&r, .nr = 1 };
	uintptr_t enc;
	char *dev, *anon;

	if (fd < 0)
		SKIP(return, "no /dev/" MHEAP_DEVICE_NAME ": the module is not loaded here");
	dev = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	anon = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	enc = range_new();
	ASSERT_NE(MAP_FAILED, dev);
	ASSERT_NE(MAP_FAILED, anon);
	ASSERT_NE(0, enc);
	store_at(dev, pg, enc);
	r = (struct mheap_range){ (uintptr_t)dev, pg };
	ASSERT_EQ(0, ioctl(fd, MHEAP_IOC_FAULT, &rs));
	EXPECT_EQ(0, scan_one(enc));
	store_at(anon, 0, enc);
	EXPECT_EQ(1, scan_one(enc));
	store_at(anon, 0, 0);
	munmap(dev, 2 * pg);
	munmap(anon, pg);
	close(fd);
	range_free(enc);
}

/* ------------------------------------------------------------ robustness */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Roots full of random words, heap objects too, and targets all over the
 * address space: every scan completes, and a random word that happens to
 * point into a range keeps it (exactly those do), whether one thread reads
 * the roots or several share them out. */
TEST(random_data_never_crashes_the_scan_and_lookalikes_count)
{
	enum { N = 64, WORDS = (8 << 20) / 8, OBJS = 20000 };
	static const unsigned readers[] = { 1, READERS, SCAN_THREADS_MAX };
	static struct sys_range t[N];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	uint64_t *buf = mmap(NULL, WORDS * 8, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static uint64_t *objs[OBJS];
	uint8_t ref[N], first[N], want[N] = { 0 };
	struct scan_result res;

	ASSERT_NE(MAP_FAILED, buf);
	/* Targets: 64 ranges of 1 MiB spread over the low 46 bits, where
	 * nothing is mapped in practice, so only the words below point there. */
	for (int i = 0; i < N; i++) {
		uintptr_t b = ((uintptr_t)(i + 1) << 39) + ((uintptr_t)i << 20);

		t[i] = (struct sys_range){ b, b + (1 << 20) };
	}
	for (size_t i = 0; i < WORDS; i++)
		buf[i] = xorshift(&seed);
	for (int i = 0; i < OBJS; i++) {
		objs[i] = mh_malloc(8 + xorshift(&seed) % 512);
		ASSERT_NE(NULL, objs[i]);
		objs[i][0] = xorshift(&seed);
	}
	/* Lookalikes: random words inside every fourth range. */
	for (int i = 0; i < N; i += 4) {
		buf[xorshift(&seed) % WORDS] = t[i].base + xorshift(&seed) % (1 << 20);
		want[i] = 1;
	}
	/* And random words from the heap to random targets are all set. */
	for (int k = 0; k < 3; k++) {
		scan_for_pointers(t, N, ref, NULL, readers[k], false, &res);
		ASSERT_TRUE(res.complete);
		for (int i = 0; i < N; i++) {
			if (want[i])
				EXPECT_EQ(1, ref[i]) TH_LOG("range %d", i);
		}
		if (k == 0)
			memcpy(first, ref, N);
		EXPECT_EQ(0, memcmp(first, ref, N)) TH_LOG("%u readers", readers[k]);
		EXPECT_GE(res.bytes, (uint64_t)WORDS * 8);
	}
	for (int i = 0; i < OBJS; i++)
		mh_free(objs[i]);
	munmap(buf, WORDS * 8);
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

FIXTURE(unreadable)
{
	uintptr_t enc;
	char *map;
};

FIXTURE_VARIANT(unreadable)
{
	int how;	/* 0: PROT_NONE page, 1: guard page */
};

FIXTURE_VARIANT_ADD(unreadable, prot_none) { .how = 0 };
FIXTURE_VARIANT_ADD(unreadable, guard_page) { .how = 1 };

FIXTURE_SETUP(unreadable)
{
	self->enc = range_new();
	ASSERT_NE(0, self->enc);
	self->map = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	ASSERT_NE(MAP_FAILED, self->map);
	memset(self->map, 1, 16 * 4096);
	if (variant->how == 1 && madvise(self->map + 8 * 4096, 4096, MADV_GUARD_INSTALL))
		SKIP(return, "MADV_GUARD_INSTALL: %s", strerror(errno));
	if (variant->how == 0)
		ASSERT_EQ(0, mprotect(self->map + 8 * 4096, 4096, PROT_NONE));
}

FIXTURE_TEARDOWN(unreadable)
{
	munmap(self->map, 16 * 4096);
	range_free(self->enc);
}

/* A page that faults in the middle of a root is skipped, not faulted on,
 * and the root after it is still read. */
TEST_F(unreadable, is_skipped_and_what_follows_is_read)
{
	RETURN_IF_SETUP_SKIPPED();
	*(volatile uintptr_t *)(self->map + 12 * 4096 + 40) = (self->enc ^ KEY) + 8;
	EXPECT_EQ(1, scan_one(self->enc));
	*(volatile uintptr_t *)(self->map + 12 * 4096 + 40) = 0;
	EXPECT_EQ(0, scan_one(self->enc));
}

/* ------------------------------------------------------------ threads */

/* Threads that allocate, free, hold the pointer, come and go while the
 * main thread scans: every scan completes and finds the pointer a live
 * thread holds. */
struct churn {
	_Atomic bool stop;
	uintptr_t enc;
};

static void *short_lived(void *arg)
{
	void *p = mh_malloc(100);

	mh_free(p);
	return arg;
}

static void *churner(void *arg)
{
	struct churn *ch = arg;
	void *keep[64] = { 0 };
	unsigned i = 0;

	while (!atomic_load(&ch->stop)) {
		pthread_t t;

		mh_free(keep[i % 64]);
		keep[i % 64] = mh_malloc(16 + i % 2000);
		if (i % 16 == 0 && !pthread_create(&t, NULL, short_lived, NULL))
			pthread_join(t, NULL);
		i++;
	}
	for (i = 0; i < 64; i++)
		mh_free(keep[i]);
	return NULL;
}

TEST(scans_complete_while_threads_allocate_free_start_and_exit)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th[3];
	int found = 0, scans = 0;

	ASSERT_NE(0, ch.enc);
	set_global(ch.enc, 77);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, churner, &ch));
	for (; scans < CONCURRENT_SCANS; scans++)
		found += scan_one(ch.enc) == 1;
	atomic_store(&ch.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	EXPECT_EQ(scans, found);
	global_root = NULL;
	range_free(ch.enc);
}

static void *forker(void *arg)
{
	struct churn *ch = arg;

	while (!atomic_load(&ch->stop)) {
		pid_t pid = fork();

		if (pid == 0) {
			/* The child can scan too: the lock came over free. */
			_exit(scan_one(ch->enc) == 1 ? 0 : 1);
		}
		if (pid < 0 || wait_child_ms(pid, 10000) != 0) {
			atomic_store(&ch->stop, true);
			return (void *)1;
		}
	}
	return NULL;
}

TEST(fork_during_scans_leaves_parent_and_child_scanning)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th;
	void *failed = NULL;
	int found = 0, scans = 0;

	ASSERT_NE(0, ch.enc);
	set_global(ch.enc, 77);
	ASSERT_EQ(0, pthread_create(&th, NULL, forker, &ch));
	for (; scans < CONCURRENT_SCANS && !atomic_load(&ch.stop); scans++)
		found += scan_one(ch.enc) == 1;
	atomic_store(&ch.stop, true);
	pthread_join(th, &failed);
	EXPECT_EQ(NULL, failed);
	EXPECT_EQ(scans, found);
	global_root = NULL;
	range_free(ch.enc);
}

static void *spin_with_pointer(void *arg)
{
	struct churn *ch = arg;
	volatile uintptr_t local = ch->enc ^ KEY;

	while (!atomic_load(&ch->stop))
		;
	local = 0;
	(void)local;
	return NULL;
}

/* A thread in a busy loop, never in a system call, is stopped too. */
TEST(a_running_thread_is_stopped_and_its_stack_read)
{
	struct churn ch = { .enc = range_new() };
	pthread_t th;

	ASSERT_NE(0, ch.enc);
	ASSERT_EQ(0, pthread_create(&th, NULL, spin_with_pointer, &ch));
	usleep(20000);
	EXPECT_EQ(1, scan_one(ch.enc));
	atomic_store(&ch.stop, true);
	pthread_join(th, NULL);
	EXPECT_EQ(0, scan_one(ch.enc));
	range_free(ch.enc);
}

struct reader {
	int fds[2];
	_Atomic pid_t tid;
};

static void *read_a_byte(void *arg)
{
	struct reader *rd = arg;
	char c;
	ssize_t n;

	atomic_store(&rd->tid, (pid_t)syscall(SYS_gettid));
	n = read(rd->fds[0], &c, 1);
	return (void *)(intptr_t)(n == 1 ? 0 : errno);
}

/* The stop signal is SA_RESTART: a read blocked through scans goes on. */
TEST(a_blocked_read_is_restarted_not_interrupted)
{
	uintptr_t enc = range_new();
	struct reader rd = { .tid = 0 };
	pthread_t th;
	void *err = (void *)-1;

#ifdef __SANITIZE_THREAD__
	SKIP(return, "ThreadSanitizer holds the stop signal back until a system call returns");
#endif
	ASSERT_NE(0, enc);
	ASSERT_EQ(0, pipe(rd.fds));
	ASSERT_EQ(0, pthread_create(&th, NULL, read_a_byte, &rd));
	while (!atomic_load(&rd.tid))
		usleep(100);
	ASSERT_TRUE(wait_in_syscall(atomic_load(&rd.tid), SYS_read));
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(0, scan_one(enc));
	ASSERT_EQ(1, write(rd.fds[1], "x", 1));
	pthread_join(th, &err);
	EXPECT_EQ(NULL, err);
	close(rd.fds[0]);
	close(rd.fds[1]);
	range_free(enc);
}

/*
 * The tracer of missed_the_end...: seizes tid, lets the first stop signal
 * in, freezes the thread (PTRACE_INTERRUPT) on the first byte from cmd and
 * lets it go on the second, answering each step on ack.
 */
static int freeze_in_the_stop(pid_t tid, int cmd, int ack)
{
	int st;
	char c;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0))
		return 10;
	if (write(ack, "s", 1) != 1 || waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st) ||
	    WSTOPSIG(st) != SIGURG || ptrace(PTRACE_CONT, tid, 0, SIGURG))
		return 11;
	if (read(cmd, &c, 1) != 1 || ptrace(PTRACE_INTERRUPT, tid, 0, 0) ||
	    waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st) || write(ack, "f", 1) != 1)
		return 12;
	if (read(cmd, &c, 1) != 1 || ptrace(PTRACE_DETACH, tid, 0, 0) || write(ack, "d", 1) != 1)
		return 13;
	return 0;
}

/*
 * A stopped thread may not run again before the next scan has begun and
 * ended (a loaded machine; under ThreadSanitizer a thread still in the
 * handler is left running after 10 ms): it must still leave the handler
 * once it runs. Here a tracer freezes it in the handler of one stop, past
 * that stop's end and through the whole of the next.
 */
TEST(a_thread_that_misses_the_end_of_its_stop_still_resumes)
{
	struct reader rd = { .tid = 0 };
	int cmd[2], ack[2], st;
	int32_t no_helpers[1] = { 0 };
	struct timespec until;
	pthread_t th;
	pid_t pid;
	char c;

#ifdef __SANITIZE_THREAD__
	SKIP(return, "ThreadSanitizer holds the stop signal back until a system call returns");
#endif
	ASSERT_EQ(0, pipe(rd.fds));
	ASSERT_EQ(0, pipe(cmd));
	ASSERT_EQ(0, pipe(ack));
	ASSERT_EQ(0, pthread_create(&th, NULL, read_a_byte, &rd));
	while (!atomic_load(&rd.tid))
		usleep(100);
	ASSERT_TRUE(wait_in_syscall(atomic_load(&rd.tid), SYS_read));
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(freeze_in_the_stop(atomic_load(&rd.tid), cmd[0], ack[1]));
	if (read(ack[0], &c, 1) != 1) {
		waitpid(pid, &st, 0);
		ASSERT_EQ(1, write(rd.fds[1], "x", 1));
		pthread_join(th, NULL);
		SKIP(return, "the thread cannot be traced here");
	}
	ASSERT_TRUE(world_prepare(no_helpers, 0));
	ASSERT_TRUE(world_stop());
	ASSERT_EQ(1, write(cmd[1], "f", 1));
	ASSERT_EQ(1, read(ack[0], &c, 1));
	world_start();
	/* Frozen: it cannot stop again, and this stop ends too. */
	EXPECT_FALSE(world_stop());
	world_start();
	ASSERT_EQ(1, write(cmd[1], "d", 1));
	ASSERT_EQ(1, read(ack[0], &c, 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(1, write(rd.fds[1], "x", 1));
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	/* Still in the first stop's handler, it would never read the byte. */
	EXPECT_EQ(0, pthread_timedjoin_np(th, NULL, &until));
	for (int i = 0; i < 2; i++) {
		close(rd.fds[i]);
		close(cmd[i]);
		close(ack[i]);
	}
}

static void *block_stop_signal(void *arg)
{
	struct churn *ch = arg;
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGURG);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	while (!atomic_load(&ch->stop))
		usleep(1000);
	return NULL;
}

static void blocked_thread_child(void *arg)
{
	struct churn ch = { .enc = (uintptr_t)arg };
	pthread_t th;

	if (pthread_create(&th, NULL, block_stop_signal, &ch))
		_exit(2);
	usleep(20000);
	int r = scan_one(ch.enc);

	atomic_store(&ch.stop, true);
	pthread_join(th, NULL);
	_exit(r == -1 ? 0 : 3);
}

/* A thread that blocks the stop signal cannot be stopped: the scan says it
 * is incomplete (nothing may be released by it), with one warning. */
TEST(a_thread_that_blocks_the_signal_makes_the_scan_incomplete)
{
	struct child_result r;
	uintptr_t enc = range_new();

#ifdef __SANITIZE_THREAD__
	SKIP(return, "under ThreadSanitizer such threads are left running (scan_stop.c)");
#endif
	ASSERT_NE(0, enc);
	run_child(blocked_thread_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: a quarantine scan could not stop every thread"));
	range_free(enc);
}

static void own_sigurg(int sig)
{
	(void)sig;
}

static void foreign_handler_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;

	if (scan_one(enc) != 0)	/* installs mheap's handler */
		_exit(2);
	signal(SIGURG, own_sigurg);
	_exit(scan_one(enc) == -1 ? 0 : 3);
}

TEST(a_program_handler_for_sigurg_makes_scans_incomplete_with_a_warning)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(foreign_handler_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	EXPECT_NE(NULL, strstr(r.err, "mheap: SIGURG has a handler not mheap's"));
	range_free(enc);
}

static _Atomic int urg_seen;

static void count_sigurg(int sig)
{
	(void)sig;
	atomic_fetch_add(&urg_seen, 1);
}

static void chained_child(void *arg)
{
	uintptr_t enc = (uintptr_t)arg;

	signal(SIGURG, count_sigurg);
	if (scan_one(enc) != 0)	/* mheap's handler goes on top */
		_exit(2);
	raise(SIGURG);
	_exit(atomic_load(&urg_seen) == 1 ? 0 : 3);
}

/* A SIGURG that is not the scan's reaches the handler installed before. */
TEST(a_sigurg_not_the_scans_goes_to_the_handler_before_mheaps)
{
	struct child_result r;
	uintptr_t enc = range_new();

	ASSERT_NE(0, enc);
	run_child(chained_child, (void *)enc, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("%s", r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	range_free(enc);
}

TEST_HARNESS_MAIN
