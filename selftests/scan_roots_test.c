// SPDX-License-Identifier: GPL-2.0
/*
 * Where the quarantine scan finds a pointer (scan_range.h): in each kind
 * of root a C program has (fixture `root`: a global, a thread-local,
 * another thread's stack, a register or a vector register of a thread
 * blocked in a system call, a heap object, an mmaped buffer, a buffer
 * below a thread stack given in it), found while stored and no longer once
 * overwritten; a range is its base to its last byte; a freed heap object
 * is not a root; anywhere in a long mapping or a large heap object, also
 * its part in the next heap arena; a device mapping left out whole; random
 * data never crashes it; unreadable pages (PROT_NONE, guard pages) skipped
 * and what follows them read.
 */
#define _GNU_SOURCE
#include "scan_range.h"

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

/*
 * process_vm_readv(2) fails with EFAULT for a page that cannot be read,
 * which the scan skips; any other failure (ENOMEM: the kernel could not
 * allocate its copy of the iovecs or its page array) says nothing about the
 * page, which may hold a pointer. Ours, for the library's calls: the real
 * call, or a failure with fail_errno while it is set.
 */
static _Atomic int fail_errno;

ssize_t process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
			 const struct iovec *remote, unsigned long riovcnt, unsigned long flags)
{
	int e = atomic_load(&fail_errno);

	if (e) {
		errno = e;
		return -1;
	}
	return syscall(SYS_process_vm_readv, pid, local, liovcnt, remote, riovcnt, flags);
}

TEST(a_read_failing_for_want_of_kernel_memory_makes_the_scan_incomplete)
{
	uintptr_t enc = range_new();
	size_t len = (size_t)1 << 20;
	char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(0, enc);
	ASSERT_NE(MAP_FAILED, map);
	*(volatile uintptr_t *)(map + 40) = (enc ^ KEY) + 8;
	ASSERT_EQ(1, scan_one(enc));
	/* Not found, for no page could be read: the scan must not say so. */
	atomic_store(&fail_errno, ENOMEM);
	EXPECT_EQ(-1, scan_one(enc));
	atomic_store(&fail_errno, 0);
	*(volatile uintptr_t *)(map + 40) = 0;
	munmap(map, len);
	range_free(enc);
}

TEST_HARNESS_MAIN
