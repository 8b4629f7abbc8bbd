// SPDX-License-Identifier: GPL-2.0
/*
 * The library's kmod backend in a forked child whose FAULT the module
 * refuses (EDQUOT: its user's share): the chunks fault all the same
 * (PROT_NONE) and are reported alike, a live arena freed there is
 * use-after-free, and a released chunk reads zero and takes writes.
 */
#define _GNU_SOURCE
#include "kmod_lib_fixture.h"

/*
 * The child's FAULT refused. Its context counts in its user's share, which
 * the parent's quarantine fills: with the share cut to what the user holds
 * at the fork, the module refuses every FAULT the child's fork handler
 * sends (EDQUOT). Its chunks must fault all the same, and be reported as
 * the module's are, never read as zeros.
 */
FIXTURE(refused) {
	struct arena_config cfg;
	mh_arena *arena;		/* live at the fork */
	long long share;		/* quarantine_limit_per_user before */
};

static struct {
	char *stale, *live;
	mh_arena *arena;
	uint64_t user_bytes;	/* the user's quarantine, the share */
} refused;

FIXTURE_SETUP(refused)
{
	struct mheap_stats ks;
	mh_arena *a;
	int fd;

	self->arena = NULL;
	self->share = -1;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (geteuid() != 0)
		SKIP_SETUP("setting quarantine_limit_per_user needs root");
	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	memset(&refused, 0, sizeof(refused));
	a = mh_arena_new();
	refused.stale = mh_arena_alloc(a, 64, 0);
	ASSERT_NE(NULL, refused.stale);
	strcpy(refused.stale, "freed in the parent");
	mh_arena_free(a);
	self->arena = refused.arena = mh_arena_new();
	refused.live = mh_arena_alloc(self->arena, 64, 0);
	ASSERT_NE(NULL, refused.live);
	strcpy(refused.live, "live in the parent");

	fd = dev_open();
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, kstats(fd, &ks));
	close(fd);
	refused.user_bytes = ks.user.quarantined_bytes;
	ASSERT_LE(self->cfg.chunk_bytes, refused.user_bytes);
	self->share = module_param("quarantine_limit_per_user");
	ASSERT_LT(0, self->share);
	ASSERT_EQ(0, module_param_set("quarantine_limit_per_user", refused.user_bytes));
}

FIXTURE_TEARDOWN(refused)
{
	if (self->share > 0)
		EXPECT_EQ(0, module_param_set("quarantine_limit_per_user", self->share));
	if (self->arena)
		mh_arena_free(self->arena);
	mh_quarantine_release();
}

/* In the child: its fork handler's FAULTs were refused (the user holds no
 * more quarantine than at the fork), else exit 30. */
static void child_was_refused(void)
{
	struct mheap_stats ks;
	int fd = dev_open();

	if (fd < 0 || kstats(fd, &ks) || ks.user.quarantined_bytes != refused.user_bytes)
		_exit(30);
	close(fd);
}

static void touch_refused(void *arg)
{
	child_was_refused();
	*(volatile char *)arg;
	_exit(0);
}

static void free_live_then_touch(void *arg)
{
	(void)arg;
	child_was_refused();
	mh_arena_free(refused.arena);
	*(volatile char *)refused.live;
	_exit(0);
}

static void release_then_use(void *arg)
{
	char v = 1;

	(void)arg;
	child_was_refused();
	mh_quarantine_release();
	probes_install();
	/* Still the device's mapping: released, not given back to the heap. */
	if (!device_mapped_at(refused.stale))
		_exit(10);
	if (try_read(refused.stale, &v) || v)
		_exit(11);
	if (try_write(refused.stale, 2))
		_exit(12);
	_exit(0);
}

TEST_F(refused, a_chunk_freed_in_the_parent_is_a_use_after_free_in_the_child)
{
	struct child_result r;
	char want[128];

	snprintf(want, sizeof(want), "mheap: use-after-free: read of %#lx in freed arena #",
		 (unsigned long)(uintptr_t)refused.stale);
	run_child(touch_refused, refused.stale, &r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
}

TEST_F(refused, a_chunk_live_in_the_parent_is_reported_lost_in_fork)
{
	struct child_result r;
	char want[512];

	lost_line(want, sizeof(want), refused.live, false);
	run_child(touch_refused, refused.live, &r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_STREQ(want, r.err);
	EXPECT_STREQ("live in the parent", refused.live);
}

TEST_F(refused, a_live_arena_freed_in_the_child_is_then_a_use_after_free)
{
	struct child_result r;
	char want[128];

	snprintf(want, sizeof(want), "mheap: use-after-free: read of %#lx in freed arena #",
		 (unsigned long)(uintptr_t)refused.live);
	run_child(free_live_then_touch, NULL, &r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
}

TEST_F(refused, a_chunk_released_in_the_child_reads_zero_and_takes_writes)
{
	struct child_result r;

	run_child(release_then_use, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
}

TEST_HARNESS_MAIN
