// SPDX-License-Identifier: GPL-2.0
/*
 * The library's quarantine under the kmod backend: the secure heap's
 * guarded blocks, anonymous memory under kmod, leave quarantine with the
 * arenas' chunks of the module; EDQUOT from the module releases the oldest
 * chunks.
 */
#define _GNU_SOURCE
#include "kmod_lib_fixture.h"

/* ------------------------------------------------------------ guarded blocks */

/*
 * The secure heap's guarded blocks (secure_large.c) take anonymous memory
 * under kmod (fault_block_backend), so that a child of fork has them too
 * (misuse_none_test: blocks_across_fork), and go to the same quarantine as the
 * arenas' chunks of the module: one release takes chunks of both, each by
 * its own backend.
 */
TEST_F(lib, arena_and_guarded_block_chunks_leave_quarantine_together)
{
	struct mh_stats st = { .size = sizeof(st) };
	mh_arena *a;
	char *p;

	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	ASSERT_NE(&fault_backend_kmod, fault_block_backend());
	mh_quarantine_release();
	a = mh_arena_new();
	ASSERT_NE(NULL, mh_arena_alloc(a, 64, 0));
	p = guarded_alloc(1 << 20, 16, false);
	ASSERT_NE(NULL, p);
	mh_arena_free(a);
	guarded_free(LOAD_ACQUIRE(&span_of((uintptr_t)p)->chunk_data), (uintptr_t)p, "");
	mh_stats_read(&st);
	ASSERT_EQ(2, st.arena_chunks_quarantined);

	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	EXPECT_EQ(0, st.arena_quarantined_bytes);
}
TEST_F(lib, edquot_releases_the_oldest_chunks)
{
	struct mh_stats st = MH_STATS_INIT;
	struct mheap_stats ks;
	uint64_t saved;
	int fd;

	if (geteuid() != 0)
		SKIP(return, "setting the global limit needs root");
	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	fd = dev_open();
	ASSERT_EQ(0, kstats(fd, &ks));
	saved = ks.global.quarantine_limit;
	/* Room for three chunks more than is quarantined now. */
	ASSERT_EQ(0, klimit(fd, ks.global.quarantined_bytes + 3 * self->cfg.chunk_bytes,
			    MHEAP_LIMIT_GLOBAL));
	for (int i = 0; i < 10; i++) {
		mh_arena *a = mh_arena_new();

		*(char *)mh_arena_alloc(a, 64, 0) = 1;
		mh_arena_free(a);
	}
	/* Every chunk is either still quarantined or was released because
	 * the module said EDQUOT; the budget had nothing to do with it. */
	mh_stats_read(&st);
	EXPECT_LE(1, st.arena_chunks_quarantined);
	EXPECT_GE(3, st.arena_chunks_quarantined);
	EXPECT_EQ(10, st.arena_chunks_quarantined + st.arena_releases_enomem);
	EXPECT_EQ(0, st.arena_releases_budget);
	ASSERT_EQ(0, klimit(fd, saved, MHEAP_LIMIT_GLOBAL));
	close(fd);
	mh_quarantine_release();
}

TEST_HARNESS_MAIN
