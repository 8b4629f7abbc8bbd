// SPDX-License-Identifier: GPL-2.0
/*
 * How the secure heap (MHEAP_SECURE=1) is reached: malloc and free go
 * through the entry table straight to the mode's paths, and the table is
 * read-only. A thread that read the table before the heap was set up holds
 * the default free or free_sized; when it calls it, the heap may have been
 * set up in the secure mode meanwhile, and the pointer may be one the
 * secure layer gave out: such a free must get the secure mode's checks and
 * work, the default slow paths passing it on (docs/secure.md, "The
 * layer"). That race cannot be staged here (the library's constructor
 * sets the heap up before main), so those cases call the default paths
 * themselves, heap_free_default and heap_free_sized_default, from a thread
 * that has never allocated - the state such a thread is in (no cache:
 * mh_no_cache).
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include <pthread.h>

#include "secure_fixture.h"
#include "entry.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "secure.h"

/* malloc and free (and the sized frees) jump to the mode's paths through
 * the entry table (entry.h), set when the heap is. */
TEST(malloc_and_free_go_straight_to_the_secure_mode)
{
	mh_free(mh_malloc(1));
	EXPECT_TRUE(mh_entries.malloc == secure_malloc);
	EXPECT_TRUE(mh_entries.free == secure_free);
	EXPECT_TRUE(mh_entries.free_sized == heap_free_sized_secure);
}

/* ... and the table is read-only: a write, an overflow's or a stray
 * pointer's, faults rather than redirects every later malloc. Written by
 * the kernel here (a read from a pipe into it: EFAULT), so that no
 * sanitizer's handler of SIGSEGV stands between. */
TEST(the_entry_table_is_read_only)
{
	void *other = (void *)heap_malloc_default;
	int fds[2];

	mh_free(mh_malloc(1));
	ASSERT_EQ(0, pipe(fds));
	ASSERT_EQ((ssize_t)sizeof(other), write(fds[1], &other, sizeof(other)));
	EXPECT_EQ(-1, read(fds[0], (void *)&mh_entries.malloc, sizeof(other)));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_TRUE(mh_entries.malloc == secure_malloc);
	close(fds[0]);
	close(fds[1]);
}

/* What the stale thread frees, and how. */
struct stale_free {
	void *p;
	bool sized;
	size_t size;
	bool had_cache;		/* the thread had a cache (the case is wrong) */
};

static void *stale_thread(void *arg)
{
	struct stale_free *f = arg;

	f->had_cache = mh_tls_fast_cache != &mh_no_cache;
	if (f->sized)
		heap_free_sized_default(f->p, SIZED_FREE, false, 1, f->size);
	else
		heap_free_default(f->p);
	return NULL;
}

/* Free p through the default path from a new thread without a cache;
 * exits the child with 2 if the thread had one. */
static void stale_free(void *p, bool sized, size_t size)
{
	struct stale_free f = { .p = p, .sized = sized, .size = size };
	pthread_t t;

	if (pthread_create(&t, NULL, stale_thread, &f) || pthread_join(t, NULL))
		_exit(2);
	if (f.had_cache)
		_exit(2);
}

/* A block overflowed into its canary: the stale free reports it as the
 * secure free does. */
static void overflow_then_stale_free(void *arg)
{
	char *p = mh_malloc(32);

	(void)arg;
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	p[32] = 'x';
	stale_free(p, false, 0);
	_exit(0);
}

/* The defect it catches: the default free taking the block back
 * unchecked (the child exits 0). */
TEST(a_stale_free_checks_the_canary)
{
	struct child_result r;
	char want[200];
	unsigned long p;

	run_child(overflow_then_stale_free, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x, %s", r.status, r.err);
	ASSERT_EQ(1, sscanf(r.err, "%lx", &p)) TH_LOG("%s", r.err);
	snprintf(want, sizeof(want),
		 "%#lx\nmheap: heap overflow: canary after 32-byte block %#lx overwritten at offset 32, detected at free\n",
		 p, p);
	EXPECT_STREQ(want, r.err);
}

/* The secure free zeroes the slot (and a second free is a double free):
 * after a stale free, the block's bytes are zero. */
TEST(a_stale_free_zeroes_the_slot_as_the_secure_free_does)
{
	unsigned char *p = mh_malloc(100);
	size_t i = 0;

	ASSERT_NE(NULL, p);
	memset(p, 0xa5, 100);
	stale_free(p, false, 0);
	while (i < 100 && !p[i])	/* the slot stays the heap's: readable */
		i++;
	EXPECT_EQ(100, i);
}

/* malloc(0)'s pointer lies in the zero-size range, no span of the heap,
 * which the default free alone would call an invalid free. */
static void zero_size_stale_free(void *arg)
{
	void *p = mh_malloc(0);

	(void)arg;
	stale_free(p, false, 0);
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	mh_free(p);	/* freed: a double free */
	_exit(0);
}

TEST(a_stale_free_of_malloc_0s_pointer_frees_it)
{
	expect_printed_double_free(_metadata, zero_size_stale_free);
}

/* A 32-byte block takes a 48-byte slot in this mode (its trailer): the
 * default free_sized's check of the class would call free_sized(p, 32) a
 * size mismatch. The secure layer checks it (the size asked for) and
 * frees it. */
static void sized_stale_free(void *arg)
{
	void *p = mh_malloc(32);

	(void)arg;
	stale_free(p, true, 32);
	fprintf(stderr, "%#lx\n", (unsigned long)(uintptr_t)p);
	mh_free(p);	/* freed: a double free */
	_exit(0);
}

TEST(a_stale_free_sized_is_checked_by_the_secure_layer)
{
	expect_printed_double_free(_metadata, sized_stale_free);
}

TEST_HARNESS_MAIN
