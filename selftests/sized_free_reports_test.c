// SPDX-License-Identifier: GPL-2.0
/*
 * The frees given a size (C23's free_sized and free_aligned_sized, C++'s
 * sized delete: mh_free_sized_checked, userlib/malloc_sized.c) name their
 * call in every report, in both modes: a double or invalid free ("double
 * free of 0x... in free_aligned_sized") and a size or alignment the block
 * cannot have, whose report gives the arguments as the call had them
 * ("free_aligned_sized of 0x... with alignment 4096 and size 48: ...").
 * Each case runs in both modes, in a child that is this program started
 * again (the mode is read when the heap is set up; the secure mode with no
 * sampling), which prints the block's address and must abort with
 * exactly the line. The contract of the sized frees
 * that work is preload_contract_test's; misuse_test has a row for each
 * mode of the double free_sized.
 */
#define _GNU_SOURCE
#include <stdint.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "mheap_impl.h"

/* The blocks the cases free, by index (passed to the child). */
static void *freed_32(void)
{
	void *p = mh_malloc(32);

	mh_free(p);
	return p;
}

static void *freed_middle(void)
{
	void *p = mh_malloc(64 << 10);

	mh_free(p);
	return p;
}

static void *aligned_64_48(void)
{
	return mh_aligned_alloc(64, 48);
}

/* A 48-byte block that is not 4 KiB-aligned. */
static void *unaligned_48(void)
{
	void *p = mh_malloc(48);

	return (uintptr_t)p % 4096 ? p : mh_malloc(48);
}

static void *freed_zero_size(void)
{
	void *p = mh_malloc(0);

	mh_free(p);
	return p;
}

enum block { FREED_32, FREED_MIDDLE, ALIGNED_64_48, UNALIGNED_48, FREED_ZERO_SIZE };
static void *(*const blocks[])(void) = {
	[FREED_32] = freed_32, [FREED_MIDDLE] = freed_middle, [ALIGNED_64_48] = aligned_64_48,
	[UNALIGNED_48] = unaligned_48, [FREED_ZERO_SIZE] = freed_zero_size,
};

FIXTURE(sized_free) {};
FIXTURE_SETUP(sized_free) {}
FIXTURE_TEARDOWN(sized_free) {}

FIXTURE_VARIANT(sized_free)
{
	bool secure;		/* the mode */
	enum block block;	/* the block freed */
	enum sized_free_fn fn;
	bool aligned;
	size_t align, size;
	const char *dies;	/* the line, %#lx the block */
};

/* In the child: this program again, in the variant's mode, to make the
 * block, print its address and free it as the variant says (main). */
static void exec_case(void *arg)
{
	const FIXTURE_VARIANT(sized_free) *v = arg;
	char block[8], fn[8], aligned[8], align[24], size[24];

	snprintf(block, sizeof(block), "%d", (int)v->block);
	snprintf(fn, sizeof(fn), "%d", (int)v->fn);
	snprintf(aligned, sizeof(aligned), "%d", (int)v->aligned);
	snprintf(align, sizeof(align), "%zu", v->align);
	snprintf(size, sizeof(size), "%zu", v->size);
	setenv("SIZED_BLOCK", block, 1);
	setenv("SIZED_FN", fn, 1);
	setenv("SIZED_ALIGNED", aligned, 1);
	setenv("SIZED_ALIGN", align, 1);
	setenv("SIZED_SIZE", size, 1);
	if (v->secure) {
		setenv("MHEAP_SECURE", "1", 1);
		setenv("MHEAP_SECURE_SAMPLE", "0", 1);
		setenv("MHEAP_SECURE_MIDDLE_SAMPLE", "0", 1);
	} else {
		unsetenv("MHEAP_SECURE");
	}
	execl("/proc/self/exe", "sized_free_reports_test", (char *)NULL);
	_exit(127);
}

TEST_F(sized_free, aborts_naming_the_call)
{
	struct child_result r;
	char want[320];
	unsigned long p;
	int n;

	run_child(exec_case, (void *)variant, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, stderr: %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	n = snprintf(want, sizeof(want), "%#lx\n", p);
	snprintf(want + n, sizeof(want) - n - 1, variant->dies, p);
	strcat(want, "\n");
	EXPECT_STREQ(want, r.err);
}

/* Each case in both modes, "dies" the same in both. */
#define CASE(name, ...) \
	FIXTURE_VARIANT_ADD(sized_free, name##_default) { .secure = false, __VA_ARGS__ }; \
	FIXTURE_VARIANT_ADD(sized_free, name##_secure) { .secure = true, __VA_ARGS__ }

/* Both modes name the call, not just "double free of 0x...". */
CASE(free_sized_of_a_freed_block, .block = FREED_32, .fn = SIZED_FREE, .size = 32,
     .dies = "mheap: double free of %#lx in free_sized");
CASE(free_aligned_sized_of_a_freed_block, .block = FREED_32, .fn = SIZED_FREE, .aligned = true,
     .align = 16, .size = 32, .dies = "mheap: double free of %#lx in free_aligned_sized");
CASE(sized_delete_of_a_freed_block, .block = FREED_32, .fn = SIZED_DELETE, .size = 32,
     .dies = "mheap: double free of %#lx in operator delete");
CASE(sized_delete_array_of_a_freed_block, .block = FREED_32, .fn = SIZED_DELETE_ARRAY,
     .size = 32, .dies = "mheap: double free of %#lx in operator delete[]");
CASE(free_sized_of_a_freed_middle_block, .block = FREED_MIDDLE, .fn = SIZED_FREE,
     .size = 64 << 10, .dies = "mheap: double free of %#lx in free_sized");
/* In the secure mode malloc(0)'s pointer is a slot of the zero-size
 * range; by default a heap block. */
CASE(free_sized_of_a_freed_malloc_0, .block = FREED_ZERO_SIZE, .fn = SIZED_FREE, .size = 0,
     .dies = "mheap: double free of %#lx in free_sized");
/* The secure mode's alignment reports give the alignment too, not the
 * size only ("free_aligned_sized of 0x... with size 48: ..."). */
CASE(free_aligned_sized_with_an_alignment_the_block_lacks, .block = UNALIGNED_48,
     .fn = SIZED_FREE, .aligned = true, .align = 4096, .size = 48,
     .dies = "mheap: free_aligned_sized of %#lx with alignment 4096 and size 48: "
	     "the object is not 4096-byte aligned (alignment mismatch)");
CASE(free_aligned_sized_with_an_alignment_not_a_power_of_two, .block = ALIGNED_64_48,
     .fn = SIZED_FREE, .aligned = true, .align = 24, .size = 48,
     .dies = "mheap: free_aligned_sized of %#lx with alignment 24 and size 48: "
	     "the alignment is not a power of two");
CASE(aligned_sized_delete_with_an_alignment_the_block_lacks, .block = UNALIGNED_48,
     .fn = SIZED_DELETE, .aligned = true, .align = 4096, .size = 48,
     .dies = "mheap: operator delete of %#lx with alignment 4096 and size 48: "
	     "the object is not 4096-byte aligned (alignment mismatch)");
/* The size differs by mode: by default the block is its class's 64
 * bytes, in the secure mode the 48 asked for (its trailer keeps it). */
FIXTURE_VARIANT_ADD(sized_free, free_aligned_sized_with_another_size_default)
{
	.block = ALIGNED_64_48, .fn = SIZED_FREE, .aligned = true, .align = 64, .size = 200,
	.dies = "mheap: free_aligned_sized of %#lx with alignment 64 and size 200: "
		"the object is 64 bytes (size mismatch)",
};
FIXTURE_VARIANT_ADD(sized_free, free_aligned_sized_with_another_size_secure)
{
	.secure = true, .block = ALIGNED_64_48, .fn = SIZED_FREE, .aligned = true, .align = 64,
	.size = 200,
	.dies = "mheap: free_aligned_sized of %#lx with alignment 64 and size 200: "
		"the object is 48 bytes (size mismatch)",
};

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	const char *block = getenv("SIZED_BLOCK");
	void *p;

	if (!block)
		return harness_main(argc, argv);
	p = blocks[atoi(block)]();
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	mh_free_sized_checked(p, (enum sized_free_fn)atoi(getenv("SIZED_FN")),
			      atoi(getenv("SIZED_ALIGNED")), strtoul(getenv("SIZED_ALIGN"), NULL, 10),
			      strtoul(getenv("SIZED_SIZE"), NULL, 10));
	return 0;
}
