// SPDX-License-Identifier: GPL-2.0
/*
 * The library's kmod backend across fork: a forked child keeps its heap
 * mapped: quarantine is still quarantine there, arenas that were live in
 * the parent are not readable, and new arenas work; a child touching an
 * arena that was live in the parent gets a one-line report and dies of
 * SIGSEGV (in a grandchild too), while freed arenas are use-after-free as
 * anywhere, also one that another thread was freeing at the fork; a live
 * arena freed in the child leaves no chunk for a new arena to reuse.
 */
#define _GNU_SOURCE
#include "kmod_lib_fixture.h"

/* ------------------------------------------------------------ fork */

static struct {
	char *live, *stale;
	mh_arena *live_arena;
} forked;

static void child_uses_arenas_after_fork(void *arg)
{
	(void)arg;
	probes_install();
	/* Quarantine is still quarantine; live chunks did not come along. */
	if (try_read(forked.stale, NULL) != SIGSEGV)
		_exit(10);
	if (try_read(forked.live, NULL) != SIGSEGV)
		_exit(11);
	if (!device_mapped_at(forked.stale) || !device_mapped_at(forked.live))
		_exit(12);
	/* New arenas work, and their memory is the child's own. */
	for (int i = 0; i < 3; i++) {
		mh_arena *a = mh_arena_new();
		char *p = mh_arena_alloc(a, 1 << 20, 0);

		if (!p || try_write(p, 1) || try_write(p + (1 << 20) - 1, 2))
			_exit(13);
		mh_arena_free(a);
	}
	mh_arena_free(forked.live_arena);
	mh_quarantine_release();
	_exit(0);
}

TEST_F(lib, a_forked_child_keeps_its_heap_mapped)
{
	struct child_result r;
	mh_arena *a;

	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	a = mh_arena_new();
	forked.stale = mh_arena_alloc(a, 64, 0);
	strcpy(forked.stale, "stale");
	mh_arena_free(a);
	forked.live_arena = mh_arena_new();
	forked.live = mh_arena_alloc(forked.live_arena, 64, 0);
	strcpy(forked.live, "live");

	run_child(child_uses_arenas_after_fork, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	/* The parent's arena is untouched by all that. */
	EXPECT_STREQ("live", forked.live);
	mh_arena_free(forked.live_arena);
	mh_quarantine_release();
}

/*
 * Arenas live at fork, touched in the child with mheap's own handler: the
 * report names the access, the arena and the chunk, and says why.
 */
static struct {
	char *p;
	bool write;
	bool free_first;	/* the child frees the arena before touching it */
	bool grandchild;	/* ... or forks again and the grandchild touches */
	mh_arena *arena;
} lost;

static void touch_lost(void *arg)
{
	(void)arg;
	if (lost.free_first)
		mh_arena_free(lost.arena);
	if (lost.write)
		*lost.p = 1;
	else
		*(volatile char *)lost.p;
	_exit(0);
}

static void touch_lost_in_grandchild(void *arg)
{
	struct child_result r;

	run_child(touch_lost, arg, &r);
	/* Pass on how the grandchild ended, and what it said. */
	if (write(STDERR_FILENO, r.err, strlen(r.err)) < 0 || !died_of(&r, SIGSEGV))
		_exit(20);
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

FIXTURE(lost) {
	struct arena_config cfg;
	mh_arena *arena;
	char *p;
};

FIXTURE_VARIANT(lost) {
	bool write;
	bool grandchild;
};

FIXTURE_VARIANT_ADD(lost, read) { .write = false };
FIXTURE_VARIANT_ADD(lost, write) { .write = true };
FIXTURE_VARIANT_ADD(lost, read_in_grandchild) { .write = false, .grandchild = true };

FIXTURE_SETUP(lost)
{
	self->arena = NULL;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	self->arena = mh_arena_new();
	ASSERT_NE(NULL, self->arena);
	self->p = mh_arena_alloc(self->arena, 4096, 0);
	ASSERT_NE(NULL, self->p);
	strcpy(self->p + 100, "live in the parent");
	memset(&lost, 0, sizeof(lost));
	lost.p = self->p + 100;
	lost.write = variant->write;
	lost.grandchild = variant->grandchild;
	lost.arena = self->arena;
}

FIXTURE_TEARDOWN(lost)
{
	if (self->arena) {
		mh_arena_free(self->arena);
		mh_quarantine_release();
	}
}

static void run_lost(struct child_result *r)
{
	run_child(lost.grandchild ? touch_lost_in_grandchild : touch_lost, NULL, r);
}

TEST_F(lost, a_forked_child_touching_a_live_arena_gets_a_report_and_dies)
{
	struct child_result r;
	char want[512];
	RETURN_IF_SETUP_SKIPPED();

	lost_line(want, sizeof(want), lost.p, lost.write);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_STREQ(want, r.err);
	/* The parent's arena is untouched by all that. */
	EXPECT_STREQ("live in the parent", lost.p);
}

TEST_F(lost, a_live_arena_freed_in_the_child_is_then_a_use_after_free)
{
	struct child_result r;
	char want[128];
	RETURN_IF_SETUP_SKIPPED();

	lost.free_first = true;
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 lost.write ? "write to" : "read of", (unsigned long)(uintptr_t)lost.p);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	EXPECT_EQ(NULL, strstr(r.err, "lost in fork")) TH_LOG("%s", r.err);
}

TEST_F(lost, an_arena_freed_in_the_parent_is_a_use_after_free_in_the_child)
{
	struct child_result r;
	char want[128];
	RETURN_IF_SETUP_SKIPPED();

	mh_arena_free(self->arena);
	self->arena = NULL;
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 lost.write ? "write to" : "read of", (unsigned long)(uintptr_t)lost.p);
	run_lost(&r);
	EXPECT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	mh_quarantine_release();
}

/*
 * fork() while another thread frees an arena: whatever moment the fork
 * hits (the arena still live, its FAULT ioctl in flight, its chunks
 * faulted but not yet marked quarantined, or quarantined), the child must
 * find the arena's memory faulting, never zero-fill. The freeing thread
 * publishes a pointer into each arena before freeing it; each child reads
 * its copy of that pointer. The fork handler faults both live and
 * quarantined chunks, and a chunk whose FAULT is in flight is still live.
 */
#define FORK_RACE_FORKS		400	/* at most this many children */
#define FORK_RACE_IN_FREE	20	/* ... or until this many forked mid-free */
#define FORK_RACE_BYTES		(256 << 10)	/* written per arena: a slower FAULT */

static struct {
	char *p;		/* into the newest arena, published before its free */
	int freeing;		/* 1 from just before the free to just after */
	int stop;
} churn;

static void *churn_arenas(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&churn.stop, __ATOMIC_ACQUIRE)) {
		mh_arena *a = mh_arena_new();
		char *p = a ? mh_arena_alloc(a, FORK_RACE_BYTES, 0) : NULL;

		if (!p)
			return (void *)1;
		memset(p, 0x5a, FORK_RACE_BYTES);
		__atomic_store_n(&churn.p, p, __ATOMIC_RELEASE);
		__atomic_store_n(&churn.freeing, 1, __ATOMIC_RELEASE);
		mh_arena_free(a);
		__atomic_store_n(&churn.freeing, 0, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Exit 0 or 1 (whether the fork came mid-free) if *churn.p faulted, 10 or
 * 11 if it read as zero, 12 or 13 if it read anything else. */
static void child_reads_churned_arena(void *arg)
{
	int mid_free = __atomic_load_n(&churn.freeing, __ATOMIC_ACQUIRE);
	char v = 0;

	(void)arg;
	probes_install();
	if (try_read(__atomic_load_n(&churn.p, __ATOMIC_ACQUIRE), &v) == SIGSEGV)
		_exit(mid_free);
	_exit((v ? 12 : 10) + mid_free);
}

TEST_F(lib, an_arena_freed_by_another_thread_during_fork_faults_in_the_child)
{
	int forks = 0, in_free = 0, readable = 0;
	struct child_result r;
	mh_arena *first;
	pthread_t t;
	void *ret;

	ASSERT_NE(NULL, fault_backend_select("kmod"));
	arena_config_get(&self->cfg);
	/* A freed arena's active chunk faults too (reuse would keep it). */
	self->cfg.reuse = false;
	/* The FIFO, with room for the newest arenas' chunks, so that the
	 * published one is never released; few ready chunks, so that each
	 * child has few chunks to map again. */
	self->cfg.scan = false;
	self->cfg.quarantine_max = 4 * self->cfg.chunk_bytes;
	self->cfg.ready_max = 4 * self->cfg.chunk_bytes;
	arena_configure(&self->cfg);
	memset(&churn, 0, sizeof(churn));
	/* A pointer for the children forked before the thread publishes one. */
	first = mh_arena_new();
	churn.p = mh_arena_alloc(first, 64, 0);
	ASSERT_NE(NULL, churn.p);
	mh_arena_free(first);
	ASSERT_EQ(0, pthread_create(&t, NULL, churn_arenas, NULL));
	while (forks < FORK_RACE_FORKS && in_free < FORK_RACE_IN_FREE) {
		run_child(child_reads_churned_arena, NULL, &r);
		forks++;
		ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) <= 13)
			TH_LOG("child %d: status %#x: %s", forks, r.status, r.err);
		in_free += WEXITSTATUS(r.status) & 1;
		if (WEXITSTATUS(r.status) >= 10) {
			TH_LOG("child %d (%s): the freed arena read as %s", forks,
			       WEXITSTATUS(r.status) & 1 ? "mid-free" : "not mid-free",
			       WEXITSTATUS(r.status) >= 12 ? "data" : "zero");
			readable++;
		}
	}
	__atomic_store_n(&churn.stop, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(t, &ret));
	ASSERT_EQ(NULL, ret);
	TH_LOG("%d children, %d of them forked while an arena was being freed", forks, in_free);
	EXPECT_EQ(0, readable);
	mh_quarantine_release();
}

/*
 * A live arena freed in the child: its active chunk, whose memory stayed in
 * the parent, must not go to the reuse list (its free space still faults),
 * so the child's next arena writes memory of its own.
 */
static void free_live_then_new_arena(void *arg)
{
	mh_arena *a;
	char *p;

	mh_arena_free(arg);
	a = mh_arena_new();
	p = a ? mh_arena_alloc(a, 4096, 0) : NULL;
	if (!p)
		_exit(10);
	memset(p, 1, 4096);
	mh_arena_free(a);
	_exit(0);
}

TEST_F(lib, a_live_arena_freed_in_the_child_leaves_no_chunk_to_reuse)
{
	struct child_result r;
	mh_arena *a;

	ASSERT_TRUE(kmod_fifo(&self->cfg, true));
	a = mh_arena_new();
	strcpy(mh_arena_alloc(a, 64, 0), "live in the parent");

	run_child(free_live_then_new_arena, a, &r);
	EXPECT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
	mh_arena_free(a);
	mh_quarantine_release();
}

TEST_HARNESS_MAIN
