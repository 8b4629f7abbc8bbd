// SPDX-License-Identifier: GPL-2.0
/*
 * Invalid frees abort with one line naming the address, in a child
 * process, by the owner and by another thread: foreign and stack
 * pointers, a pointer in the top arena of the address space, pointers
 * past the last object of a span, inside an object (the last one
 * included; one byte in and one short of the end in every class), and
 * unaligned pointers into large blocks cached or kept.
 */
#define _GNU_SOURCE
#include "bad_free.h"

static void free_victim_base_then_victim(void *arg)
{
	(void)arg;
	mh_free((void *)((uintptr_t)victim & ~(uintptr_t)(MH_PAGE_SIZE - 1)));
	mcache_large_release(mh_tls_cache);
	mh_free(victim);
}

static void *victim_block;

static void free_block_then_victim(void *arg)
{
	(void)arg;
	mh_free(victim_block);
	mh_free(victim);
}

/* A block the freeing thread keeps maps all its pages to its struct: a
 * pointer into it that no allocation returned is an invalid free. */
TEST(invalid_free_of_an_unaligned_pointer_into_a_large_block_the_thread_keeps)
{
	victim_block = mh_malloc(64 << 10);
	victim = (char *)victim_block + MH_PAGE_SIZE + 3;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_block_then_victim, "kept, unaligned");
}

/* The first page of a cached large span maps to its dead struct (so that
 * its neighbours find it), but a pointer no allocation returned is still
 * an invalid free there, not a double one. */
TEST(invalid_free_of_an_unaligned_pointer_into_a_cached_large_block)
{
	victim = (char *)mh_malloc(5 * MH_PAGE_SIZE) + 3;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim_base_then_victim, "cached span, unaligned");
}

TEST(invalid_free_of_a_foreign_pointer)
{
	victim = malloc(32);	/* libc's, not ours */
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "libc pointer");
}

TEST(invalid_free_of_a_stack_pointer)
{
	int local;

	victim = &local;
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "stack pointer");
}

/* A new thread's cache has freed into no heap arena yet: its lookup starts
 * from a map of nothing, which must send the pointer to the checks. */
static void *malloc_then_free_victim(void *arg)
{
	(void)arg;
	mh_free(mh_malloc(16));
	mh_free(victim);
	return NULL;
}

static void free_victim_on_a_new_thread(void *arg)
{
	(void)arg;
	on_a_new_thread(malloc_then_free_victim, NULL);
}

TEST(invalid_free_of_a_pointer_in_the_top_arena_of_the_address_space)
{
	victim = (void *)((uintptr_t)0 - 4096);
	WANT("mheap: invalid free of %#lx", victim);
	expect_abort(_metadata, free_victim, "top arena");
	expect_abort(_metadata, free_victim_on_a_new_thread, "top arena, new thread");
}

/* A span's pages past its last object (the 48-byte class's 32 KiB hold
 * 682 objects and 32 bytes more; a 1152-byte span 28 objects and 512
 * bytes; a 704-byte span, one bitmap word, 58 objects and 128 bytes, the
 * tail's index inside the word): no object was ever there, though the
 * address is a multiple of the object size. By the owner and by another
 * thread. */
TEST(invalid_free_past_the_last_object_of_a_span)
{
	static const size_t sizes[] = { 48, 80, 144, 704, 1152, 6912 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mh_malloc(sizes[i]);
		struct mspan *s = span_of((uintptr_t)p);
		uintptr_t end = s->nelems * (uintptr_t)s->elemsize;

		ASSERT_LT(end, s->npages << MH_PAGE_SHIFT) TH_LOG("%zu B: no tail", sizes[i]);
		victim = (void *)(s->base + end);
		WANT("mheap: invalid free of %#lx (past the last object of its span)", victim);
		expect_abort(_metadata, free_victim, "owner");
		expect_abort(_metadata, free_victim_on_a_new_thread, "another thread");
		mh_free(p);
	}
}

/* An address inside a span's last object, within an object's size of the
 * span's end (the 48-byte class's last object ends 32 bytes before it): an
 * interior pointer like any other, not one past the last object. */
TEST(invalid_free_inside_the_last_object_of_a_span)
{
	static const size_t sizes[] = { 40, 48, 56, 80, 144, 704, 1152, 6912 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mh_malloc(sizes[i]);
		struct mspan *s = span_of((uintptr_t)p);
		uintptr_t end = s->nelems * (uintptr_t)s->elemsize;

		ASSERT_LT(end, s->npages << MH_PAGE_SHIFT) TH_LOG("%zu B: no tail", sizes[i]);
		victim = (void *)(s->base + end - 8);
		WANT("mheap: invalid free of %#lx (inside an object)", victim);
		expect_abort(_metadata, free_victim, "owner");
		expect_abort(_metadata, free_victim_on_a_new_thread, "another thread");
		mh_free(p);
	}
}

/* By the owner and by another thread, whose free checks the span its
 * lookup through its own heap arena found (free_checked's `found`). */
TEST(invalid_free_inside_an_object)
{
	char *p = mh_malloc(100);

	victim = p + 8;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "small interior");
	expect_abort(_metadata, free_victim_on_a_new_thread, "small interior, another thread");
	p = mh_malloc(100000);
	victim = p + 4096;
	WANT("mheap: invalid free of %#lx (inside an object)", victim);
	expect_abort(_metadata, free_victim, "large interior");
	expect_abort(_metadata, free_victim_on_a_new_thread, "large interior, another thread");
}

/*
 * The owner's start test (checkedfree.h, owner_object_q): offset * divmul
 * splits into the index and a remainder, and p starts an object exactly
 * when the remainder is below divmul. One byte into an object gives a
 * remainder of divmul itself, or of about it (rounded up), the edge of
 * the compare; one byte short of the next object the largest. In every
 * class, each of the object's first, second and last bytes but the
 * first freed by the owner is an invalid free naming it, and the object
 * is then freed once.
 */
TEST(owners_free_one_byte_into_and_before_the_end_of_an_object_in_every_class)
{
	mh_free(mh_malloc(1 << 20));	/* the heap set up */
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++) {
		uint32_t size = mh_class[cls].size;
		char *p = mh_malloc(size);
		uintptr_t offs[] = { 1, 2, size - 1 };

		ASSERT_NE(NULL, p);
		ASSERT_EQ(mh_tls_cache, span_of((uintptr_t)p)->owner) TH_LOG("class %u", cls);
		for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			victim = p + offs[i];
			WANT("mheap: invalid free of %#lx (inside an object)", victim);
			expect_abort(_metadata, free_victim, "owner");
		}
		mh_free(p);
	}
}

TEST_HARNESS_MAIN
