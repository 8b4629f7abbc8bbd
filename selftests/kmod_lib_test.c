// SPDX-License-Identifier: GPL-2.0
/*
 * The library's kmod backend on /dev/mheap (userlib/fault_kmod.c), as a
 * kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down:
 *  - an arena's chunks are faulted in one batch, by either transport
 *    (MHEAP_KMOD_IO: one ioctl with a vector, or one linked SQE per chunk);
 *  - a forked child keeps its heap mapped: quarantine is still quarantine
 *    there, arenas that were live in the parent are not readable, and new
 *    arenas work; a child touching an arena that was live in the parent
 *    gets a one-line report and dies of SIGSEGV (in a grandchild too),
 *    while freed arenas are use-after-free as anywhere, also one that
 *    another thread was freeing at the fork; a live arena freed in the
 *    child leaves no chunk for a new arena to reuse;
 *  - where the module refuses the child's FAULT (EDQUOT: its user's share),
 *    the chunks fault all the same (PROT_NONE) and are reported alike, a
 *    live arena freed there is use-after-free, and a released chunk reads
 *    zero and takes writes;
 *  - the secure heap's guarded blocks, anonymous memory under kmod, leave
 *    quarantine with the arenas' chunks;
 *  - a descriptor replaced behind the library's back is caught;
 *  - EDQUOT from the module releases the oldest chunks.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "secure.h"

/* ------------------------------------------------------------ the library */

/* The kmod backend, with the FIFO quarantine (quarantine_scan_test.c tests
 * the scan) and a freed arena's active chunk reused or not; false if the
 * backend does not work here. */
static bool kmod_fifo(struct arena_config *cfg, bool reuse)
{
	if (!fault_backend_select("kmod"))
		return false;
	arena_config_get(cfg);
	cfg->reuse = reuse;
	cfg->scan = false;
	arena_configure(cfg);
	return true;
}

/* ------------------------------------------------------------ transports */

FIXTURE(transport) {
	struct arena_config cfg;
};

/* MHEAP_KMOD_IO, and the commands a batch of three chunks takes with it. */
FIXTURE_VARIANT(transport) {
	const char *io;
	long long commands;
};

/* One ioctl with a vector of three ranges. */
FIXTURE_VARIANT_ADD(transport, ioctl) { .io = "ioctl", .commands = 1 };
/* One linked SQE per chunk. */
FIXTURE_VARIANT_ADD(transport, io_uring) { .io = "uring", .commands = 3 };

FIXTURE_SETUP(transport)
{
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (!strcmp(variant->io, "uring") && uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	setenv("MHEAP_KMOD_IO", variant->io, 1);
	ASSERT_TRUE(kmod_fifo(&self->cfg, false));
	/* The library installs its SIGSEGV handler with the first arena; the
	 * probes' handler goes over it, to see the faults themselves. */
	mh_arena_free(mh_arena_new());
	probes_install();
}

FIXTURE_TEARDOWN(transport)
{
	mh_quarantine_release();
}

TEST_F(transport, an_arenas_chunks_are_faulted_in_one_batch)
{
	long long before;
	mh_arena *a;
	char *p[3];

	a = mh_arena_new();
	for (int i = 0; i < 3; i++) {
		p[i] = mh_arena_alloc(a, self->cfg.chunk_bytes / 2, 0);
		ASSERT_NE(NULL, p[i]);
		memset(p[i], i + 1, 4096);
		EXPECT_TRUE(device_mapped_at(p[i]));
	}
	/* A first cycle sets the transport up; count the second one. */
	mh_arena_free(a);
	a = mh_arena_new();
	for (int i = 0; i < 3; i++)
		p[i] = mh_arena_alloc(a, self->cfg.chunk_bytes / 2, 0);
	mh_quarantine_release();
	before = sysfs_counter("commands");
	mh_arena_free(a);
	EXPECT_EQ(variant->commands, sysfs_counter("commands") - before);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(SIGSEGV, try_read(p[i], NULL));
}

#define FREERS		4
#define FREES_EACH	25

static void *free_arenas(void *arg)
{
	long bad = 0;

	(void)arg;
	probes_install();
	for (int i = 0; i < FREES_EACH; i++) {
		mh_arena *a = mh_arena_new();
		char *p = mh_arena_alloc(a, 4096, 0);

		if (!p) {
			bad++;
			continue;
		}
		*p = 1;
		mh_arena_free(a);
		bad += try_read(p, NULL) != SIGSEGV;
	}
	return (void *)bad;
}

/* With ioctl no lock is taken, with io_uring the ring's: either way. */
TEST_F(transport, an_arena_freed_by_any_of_several_threads_at_once_faults_at_once)
{
	pthread_t t[FREERS];
	long bad = 0;
	void *ret;

	for (int i = 0; i < FREERS; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, free_arenas, NULL));
	for (int i = 0; i < FREERS; i++) {
		ASSERT_EQ(0, pthread_join(t[i], &ret));
		bad += (long)ret;
	}
	EXPECT_EQ(0, bad);
}

/* ------------------------------------------------------------ fork */

FIXTURE(lib) {
	struct arena_config cfg;
};

FIXTURE_SETUP(lib)
{
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
}

FIXTURE_TEARDOWN(lib)
{
}

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

/* The line a child must print for an access to p, a chunk of the parent. */
static void lost_line(char *buf, size_t size, const char *p, bool write)
{
	const struct mspan *s = span_of((uintptr_t)p);
	const struct arena_chunk *c = s ? s->chunk_data : NULL;

	if (!c) {
		snprintf(buf, size, "(%p is in no chunk)", (const void *)p);
		return;
	}
	snprintf(buf, size,
		 "mheap: arena memory lost in fork: %s %#lx in arena #%llu, %schunk [%#lx, %#lx), "
		 "live in the parent: " DEV_PATH " memory is not inherited across fork "
		 "(kmod backend)\n",
		 write ? "write to" : "read of", (unsigned long)(uintptr_t)p,
		 (unsigned long long)c->arena_id, c->large ? "large " : "", (unsigned long)c->base,
		 (unsigned long)c->limit);
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

/* ------------------------------------------------------------ guarded blocks */

/*
 * The secure heap's guarded blocks (secure_large.c) take anonymous memory
 * under kmod (fault_block_backend), so that a child of fork has them too
 * (misuse_test: blocks_across_fork), and go to the same quarantine as the
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
	guarded_free(LOAD_ACQUIRE(&span_of((uintptr_t)p)->chunk_data), (uintptr_t)p);
	mh_stats_read(&st);
	ASSERT_EQ(2, st.arena_chunks_quarantined);

	mh_quarantine_release();
	mh_stats_read(&st);
	EXPECT_EQ(0, st.arena_chunks_quarantined);
	EXPECT_EQ(0, st.arena_quarantined_bytes);
}

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

static void replace_the_library_descriptor(void *arg)
{
	char link[64], target[256];
	int victim = -1, file;
	mh_arena *a;

	(void)arg;
	a = mh_arena_new();
	*(char *)mh_arena_alloc(a, 64, 0) = 1;
	for (int fd = 3; fd < 4096 && victim < 0; fd++) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			if (!strcmp(target, DEV_PATH))
				victim = fd;
		}
	}
	if (victim < 0)
		_exit(10);
	/* A program "tidying up" its descriptors puts a file in its place. */
	file = open("/dev/shm/mheap-kmod-victim", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file < 0 || ftruncate(file, 64 << 20) || dup2(file, victim) != victim)
		_exit(11);
	/* The next chunk must not be a mapping of that file. */
	a = mh_arena_new();
	mh_arena_alloc(a, 16 << 20, 0);
	_exit(12);
}

TEST_F(lib, a_descriptor_replaced_behind_its_back_is_caught)
{
	struct child_result r;

	ASSERT_NE(NULL, fault_backend_select("kmod"));
	run_child(replace_the_library_descriptor, NULL, &r);
	unlink("/dev/shm/mheap-kmod-victim");
	EXPECT_TRUE(died_of(&r, SIGABRT)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_NE(NULL, strstr(r.err, "was closed or replaced behind mheap's back"))
		TH_LOG("%s", r.err);
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
