// SPDX-License-Identifier: GPL-2.0
/*
 * What libmheap.so's standard functions promise where glibc has nothing
 * to compare with (MHEAP_FIXTURE, preload_lib.h): C23's free_sized and
 * free_aligned_sized free with a size the block could have been allocated
 * with and abort with the exact line otherwise; malloc_trim and mallinfo2
 * give mheap's own numbers.
 */
#define _GNU_SOURCE
#include "preload_lib.h"

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

static void *freed_100000(const struct family *m)
{
	void *p = m->malloc(100000);

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
/* A small object's double free names the call too. */
SIZED_CASE(free_sized_of_a_freed_object_is_a_double_free, freed_40(m), .size = 40,
	   .dies = "mheap: double free of %#lx in free_sized");
SIZED_CASE(free_aligned_sized_of_a_freed_object_is_a_double_free, freed_40(m), .aligned = true,
	   .align = 8, .size = 40, .dies = "mheap: double free of %#lx in free_aligned_sized");
SIZED_CASE(free_sized_of_a_freed_large_object_is_a_double_free, freed_100000(m), .size = 100000,
	   .dies = "mheap: double free of %#lx in free_sized");
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
