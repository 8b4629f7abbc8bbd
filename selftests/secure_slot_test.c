// SPDX-License-Identifier: GPL-2.0
/*
 * A small slot's zero in the secure heap (MHEAP_SECURE=1, secure_slot.h):
 * free zeroes every byte of it, also when another thread frees it, malloc
 * checks every byte of a slot of up to 128 bytes before handing it out
 * again, and no page of a new small block is the shared zero page (the
 * check reads before anything writes). A reused span's bytes past its
 * last slot are secure_span_test's.
 *
 * Runs in the secure mode without sampling, guarded blocks from 32 KiB
 * (secure_fixture.h).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>

#define SECURE_TEST_ENV	"MHEAP_SECURE_LARGE=32K",
#include "secure_fixture.h"
#include "arenamap.h"
#include "mspan.h"

/* Whether the page holding p is in memory but not this process's own
 * (/proc/self/pagemap: present, not mapped exclusively): the kernel's
 * shared zero page, which a read of a page never written maps. */
static bool shared_zero_page(int pagemap, uintptr_t p)
{
	uint64_t e = 0;
	off_t at = (off_t)(p / (uintptr_t)sysconf(_SC_PAGESIZE) * sizeof(e));

	if (pread(pagemap, &e, sizeof(e), at) != sizeof(e))
		return false;
	return (e >> 63 & 1) && !(e >> 56 & 1);
}

/* No page of a new small block is the shared zero page: the mode's check
 * that a slot is still zero reads it before anything writes it, and a read
 * of a page never faulted in maps the zero page, which the first write
 * then has to replace (a second fault, and a TLB flush on every CPU the
 * process runs on). Blocks of 20,000 bytes: five or six pages each, of
 * which the check reads the first and the last. */
TEST(no_page_of_a_new_small_block_is_the_shared_zero_page)
{
	enum { N = 16, SIZE = 20000 };
	int pagemap = open("/proc/self/pagemap", O_RDONLY);
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	char *p[N];

	if (pagemap < 0)
		SKIP(return, "no /proc/self/pagemap: %s", strerror(errno));
	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(SIZE);
		ASSERT_NE(NULL, p[i]);
		for (uintptr_t a = (uintptr_t)p[i]; a < (uintptr_t)p[i] + SIZE;
		     a = (a & ~(page - 1)) + page) {
			size_t at = a - (uintptr_t)p[i];

			EXPECT_FALSE(shared_zero_page(pagemap, a)) TH_LOG("block %d, offset %zu", i, at);
		}
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	close(pagemap);
}

enum { HANDED = 1000 };

static void *free_them(void *arg)
{
	char **p = arg;

	for (int i = 0; i < HANDED; i++)
		mh_free(p[i]);
	return NULL;
}

/* Blocks freed by a thread other than the one that allocated them go back
 * to their spans, counted and zeroed: their slots come back, zero, once
 * their spans are swept. */
TEST(blocks_freed_by_another_thread_are_counted_and_zeroed)
{
	struct mh_stats before = { .size = sizeof(before) }, after = { .size = sizeof(after) };
	static char *p[HANDED];
	pthread_t t;

	for (int i = 0; i < HANDED; i++) {
		p[i] = mh_malloc(48);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], 0xee, 48);
	}
	mh_stats_read(&before);
	ASSERT_EQ(0, pthread_create(&t, NULL, free_them, p));
	ASSERT_EQ(0, pthread_join(t, NULL));
	mh_stats_read(&after);
	EXPECT_EQ(before.frees + HANDED, after.frees);
	/* Until one of those slots comes back (the check at reuse aborts
	 * should one come back written). */
	for (int i = 0; i < 100 * HANDED; i++) {
		unsigned char *q = mh_calloc(1, 48);

		ASSERT_NE(NULL, q);
		ASSERT_EQ(48, first_wrong(q, 48, false));
		for (int j = 0; j < HANDED; j++)
			if ((char *)q == p[j])
				return;
	}
	ASSERT_TRUE(false) TH_LOG("no slot freed by the other thread came back");
}

/* The slot (its class's size) of p, a small block. */
static size_t slot_of(const void *p)
{
	return span_of((uintptr_t)p)->elemsize;
}

/* Free zeroes all of a small block's slot: the block, its canary and its
 * trailer, every byte whatever the class (up to 128 bytes by pieces at the
 * slot's two ends, above that by memset). Read after the free: a small
 * block not sampled stays readable. */
TEST(free_zeroes_every_byte_of_a_small_slot)
{
	for (size_t size = 1; size <= 600; size++) {
		unsigned char *p = mh_malloc(size);
		size_t room;

		ASSERT_NE(NULL, p);
		room = slot_of(p);
		memset(p, 0xff, size);
		mh_free(p);
		EXPECT_EQ(room, first_wrong(p, room, false)) TH_LOG("size %zu, %zu-byte slot", size, room);
	}
}

struct written_slot {
	size_t size, at;	/* the block's size; the byte written after free */
	size_t room;		/* out: its slot */
};

/* In a child: a block of w->size bytes freed, written at w->at, then blocks
 * of its size from malloc until the slot comes back (or 100,000 did not
 * bring it). */
static void write_after_free_then_reuse(void *arg)
{
	struct written_slot *w = arg;
	char *p = mh_malloc(w->size);

	mh_free(p);
	p[w->at] = 1;
	for (int i = 0; i < 100000; i++) {
		char *q = mh_malloc(w->size);

		if (q == p)
			_exit(0);	/* handed out unchecked */
		mh_free(q);
	}
	_exit(2);
}

/* malloc (not calloc) reads every byte of a slot of up to 128 bytes before
 * handing it out again: a write after free anywhere in one, the block's
 * bytes, its canary or its trailer, is reported at the slot's reuse,
 * naming the byte. Each class of up to 128 bytes, written in each of its
 * words (the check's pieces are whole words), at a byte that moves along
 * the words. */
TEST(malloc_checks_every_byte_of_a_slot_of_up_to_128_bytes)
{
	for (size_t size = 8; size <= 120; size += 8) {
		char *probe = mh_malloc(size);
		size_t room = slot_of(probe);

		mh_free(probe);
		if (room > 128)
			continue;
		for (size_t word = 0; word < room / 8; word++) {
			struct written_slot w = { .size = size, .at = 8 * word + word % 8 };
			struct child_result res;
			char want[96];

			run_child(write_after_free_then_reuse, &w, &res);
			snprintf(want, sizeof(want), "%zu-byte slot", room);
			EXPECT_TRUE(died_of(&res, SIGABRT) && strstr(res.err, "write after free") &&
				    strstr(res.err, want))
				TH_LOG("size %zu, %zu-byte slot, byte %zu: status %#x, %s", size, room,
				       w.at, res.status, res.err);
			snprintf(want, sizeof(want), "written at offset %zu after its free", w.at);
			EXPECT_NE(NULL, strstr(res.err, want)) TH_LOG("byte %zu: %s", w.at, res.err);
		}
	}
}

TEST_HARNESS_MAIN
