// SPDX-License-Identifier: GPL-2.0
/*
 * The scavenger and the heap lock: pages released (by mh_scavenge and by
 * a free's release of idle pages) with the heap lock dropped around each
 * madvise, seen through an interposed madvise, and pages being released
 * never handed out to a thread allocating meanwhile.
 */
#define _GNU_SOURCE
#include "heap_lib.h"
#include <sys/syscall.h>

/*
 * madvise as the library (linked in statically) calls it: with
 * watch_heap_lock set, each MADV_DONTNEED notes whether the heap lock was
 * held at the time (trylock fails for its owner too); the advice itself
 * goes straight to the kernel.
 */
static atomic_int watch_heap_lock, releases_seen, releases_locked;

int madvise(void *addr, size_t len, int advice)
{
	if (atomic_load(&watch_heap_lock) && advice == MADV_DONTNEED) {
		atomic_fetch_add(&releases_seen, 1);
		if (pthread_mutex_trylock(&mh_heap.lock) == 0)
			pthread_mutex_unlock(&mh_heap.lock);
		else
			atomic_fetch_add(&releases_locked, 1);
	}
	return (int)syscall(SYS_madvise, addr, len, advice);
}

TEST(mh_scavenge_releases_pages_without_holding_the_heap_lock)
{
	size_t len = 32 << 20;
	char *p = mh_malloc(len);

	ASSERT_NE(NULL, p);
	memset(p, 1, len);
	mh_free(p);
	atomic_store(&watch_heap_lock, 1);
	mh_scavenge();
	atomic_store(&watch_heap_lock, 0);
	EXPECT_GT(atomic_load(&releases_seen), 0);
	EXPECT_EQ(0, atomic_load(&releases_locked));
}

TEST(a_free_releases_the_idle_pages_without_holding_the_heap_lock)
{
	enum { N = 16 };
	size_t len = 4 << 20;
	char *p[N];

	for (int i = 0; i < N; i++) {
		p[i] = mh_malloc(len);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i, len);
	}
	for (int i = 0; i < N; i++)
		mh_free(p[i]);
	/* 64 MiB idle: released once the recent peak has decayed and the
	 * chunks have gone unused for a while, by the next free. */
	usleep(1500 * 1000);
	atomic_store(&watch_heap_lock, 1);
	mh_free(mh_malloc(1 << 20));
	atomic_store(&watch_heap_lock, 0);
	EXPECT_GT(atomic_load(&releases_seen), 0);
	EXPECT_EQ(0, atomic_load(&releases_locked));
}

/* While one thread releases free pages (the heap lock dropped around each
 * madvise), another allocates large blocks and checks every page it wrote:
 * a page handed out while being released would read zero. */
struct scav_race {
	atomic_int stop;
	atomic_ulong bad, blocks;
};

static void *release_again_and_again(void *arg)
{
	struct scav_race *r = arg;

	while (!atomic_load(&r->stop)) {
		void *p = mh_malloc(3 << 20);

		memset(p, 7, 3 << 20);
		mh_free(p);
		mh_scavenge();
	}
	return NULL;
}

TEST(pages_being_released_are_not_handed_out)
{
	static struct scav_race r;
	enum { N = 8 };
	uint8_t *blk[N] = { 0 };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, release_again_and_again, &r));
	for (unsigned long it = 0; it < 3000; it++) {
		unsigned k = it % N;
		size_t len = (size_t)(1 + it % 5) << 20;

		if (blk[k]) {
			size_t old = (size_t)(1 + (it - N) % 5) << 20;

			for (size_t i = 0; i < old; i += 4096)
				if (blk[k][i] != (uint8_t)(it - N))
					atomic_fetch_add(&r.bad, 1);
			mh_free(blk[k]);
		}
		blk[k] = mh_malloc(len);
		ASSERT_NE(NULL, blk[k]);
		for (size_t i = 0; i < len; i += 4096)
			blk[k][i] = (uint8_t)it;
		atomic_fetch_add(&r.blocks, 1);
	}
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	for (unsigned k = 0; k < N; k++)
		mh_free(blk[k]);
	EXPECT_EQ(0, atomic_load(&r.bad));
}

TEST_HARNESS_MAIN
