// SPDX-License-Identifier: GPL-2.0
/*
 * How the library's kmod backend uses /dev/mheap: an arena's chunks are
 * faulted in one batch, by either transport (MHEAP_KMOD_IO: one ioctl with
 * a vector, or one linked SQE per chunk), also when several threads free
 * arenas at once; a descriptor replaced behind the library's back is
 * caught.
 */
#define _GNU_SOURCE
#include "kmod_lib_fixture.h"

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

TEST_HARNESS_MAIN
