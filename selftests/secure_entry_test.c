// SPDX-License-Identifier: GPL-2.0
/*
 * How the secure heap (MHEAP_SECURE=1) is reached: malloc and free go
 * through the entry table straight to the mode's paths, and the table is
 * read-only.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"
#include "entry.h"
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

TEST_HARNESS_MAIN
