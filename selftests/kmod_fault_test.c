// SPDX-License-Identifier: GPL-2.0
/*
 * FAULT, RELEASE, STATS and the quarantine limits of /dev/mheap, as a
 * kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite) they pin down what uapi/linux/mheap.h promises of
 * the commands. Fixture "cmd" runs each behaviour the two transports share
 * over both (variants ioctl and io_uring, struct kio of kmod_util.h):
 *  - FAULT makes every byte of its ranges fault with its address and frees
 *    their pages; RELEASE makes them zero-fill memory again; quarantined
 *    ranges are counted as extents, and however many there are the mapping
 *    stays one VMA;
 *  - a vector stops at its first bad range, and a bad range changes nothing;
 *  - a context's limit makes FAULT fail with EDQUOT;
 *  - STATS fills the whole struct, and every command is counted;
 *  - page faults racing with FAULT and RELEASE leave no page behind.
 * Fixture "dev" has what only the ioctls have: the vector's @done and where
 * it lies, the 1.1 STATS command, the argument checks of the ioctl structs,
 * and the global limit (SET_LIMIT). Events are kmod_events_test.c's, kernel
 * and remote access kmod_access_test.c's, what fork, munmap and friends do
 * kmod_vma_test.c's, io_uring's own paths kmod_uring_test.c's.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"
#include "kmod_util.h"

#define PARAM_LIMIT	PARAMS_DIR "quarantine_limit"

/* ------------------------------------------------------------ fixtures */

FIXTURE(cmd) {
	struct kdev d;
	struct kio io;
};

/* How the commands go. */
FIXTURE_VARIANT(cmd) {
	bool uring;
};

FIXTURE_VARIANT_ADD(cmd, ioctl) { .uring = false };
FIXTURE_VARIANT_ADD(cmd, io_uring) { .uring = true };

FIXTURE_SETUP(cmd)
{
	const char *why;

	self->io.ring_up = false;
	kdev_setup(_metadata, &self->d);
	why = kio_init(&self->io, self->d.fd, variant->uring);
	if (why)
		SKIP_SETUP("%s", why);
}

FIXTURE_TEARDOWN(cmd)
{
	kio_exit(&self->io);
	kdev_teardown(_metadata, &self->d);
}

KDEV_FIXTURE(dev)

/* ------------------------------------------------------------ FAULT */

TEST_F(cmd, fault_makes_every_byte_of_a_range_fault_with_its_address)
{
	char *q = self->d.mem + 8 * page;

	memset(self->d.mem, 0x5a, self->d.len);
	ASSERT_EQ(0, kio_fault(&self->io, q, 4 * page));
	for (size_t i = 0; i < 4 * page; i += 997) {
		EXPECT_EQ(SIGSEGV, try_read(q + i, NULL));
		EXPECT_EQ(q + i, probe_addr);
		EXPECT_EQ(SIGSEGV, try_write(q + i, 1));
		EXPECT_EQ(q + i, probe_addr);
	}
	EXPECT_EQ(SIGSEGV, try_read(q + 4 * page - 1, NULL));
}

TEST_F(cmd, fault_frees_the_pages_of_a_range_and_keeps_its_neighbours)
{
	char *q = self->d.mem + 8 * page;
	struct mheap_stats st;
	char v;

	memset(self->d.mem, 0x5a, self->d.len);
	ASSERT_EQ(0, kio_fault(&self->io, q, 4 * page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(self->d.len - 4 * page, st.self.resident_bytes);
	ASSERT_EQ(0, try_read(q - 1, &v));
	EXPECT_EQ(0x5a, v);
	ASSERT_EQ(0, try_read(q + 4 * page, &v));
	EXPECT_EQ(0x5a, v);
}

TEST_F(cmd, fault_of_a_quarantined_range_again_holds_nothing_more)
{
	char *q = self->d.mem + 8 * page;
	struct mheap_stats st;

	ASSERT_EQ(0, kio_fault(&self->io, q, 4 * page));
	ASSERT_EQ(0, kio_fault(&self->io, q, 4 * page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	EXPECT_EQ(1, st.self.quarantined_ranges);
}

/* ------------------------------------------------------------ RELEASE */

TEST_F(cmd, release_makes_a_quarantined_range_zero_fill_memory_again)
{
	char *q = self->d.mem + 8 * page;
	struct mheap_stats st;
	char v;

	memset(self->d.mem, 0x5a, self->d.len);
	ASSERT_EQ(0, kio_fault(&self->io, q, 4 * page));
	ASSERT_EQ(0, kio_release(&self->io, q, 4 * page));
	for (size_t i = 0; i < 4 * page; i++) {
		ASSERT_EQ(0, try_read(q + i, &v));
		ASSERT_EQ(0, v);
	}
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(0, st.self.quarantined_ranges);
	EXPECT_EQ(0x5a, self->d.mem[4 * page]);
}

TEST_F(cmd, release_of_memory_not_quarantined_drops_its_contents)
{
	memset(self->d.mem, 0x5a, self->d.len);
	ASSERT_EQ(0, kio_release(&self->io, self->d.mem, page));
	EXPECT_EQ(0, self->d.mem[0]);
	EXPECT_EQ(0, self->d.mem[page - 1]);
	EXPECT_EQ(0x5a, self->d.mem[page]);
}

/* ------------------------------------------------------------ extents */

TEST_F(cmd, quarantined_ranges_count_extents)
{
	struct mheap_stats st;
	char *m = self->d.mem;

	ASSERT_EQ(0, kio_fault(&self->io, m, page));
	ASSERT_EQ(0, kio_fault(&self->io, m + 2 * page, page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	/* Filling the gap joins them. */
	ASSERT_EQ(0, kio_fault(&self->io, m + page, page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(3 * page, st.self.quarantined_bytes);
	/* Releasing the middle splits them. */
	ASSERT_EQ(0, kio_release(&self->io, m + page, page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	/* One range over both and more merges everything. */
	ASSERT_EQ(0, kio_fault(&self->io, m, 10 * page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(1, st.self.quarantined_ranges);
	EXPECT_EQ(10 * page, st.self.quarantined_bytes);
	/* At the very end of the mapping too. */
	ASSERT_EQ(0, kio_fault(&self->io, m + self->d.len - page, page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(2, st.self.quarantined_ranges);
	EXPECT_EQ(2, st.global.quarantined_ranges - self->d.before.ranges);
	EXPECT_EQ(11 * page, (size_t)sysfs_counter("quarantined_bytes") -
			     (size_t)self->d.before.quarantined);
}

TEST_F_TIMEOUT(cmd, ten_thousand_faulted_ranges_stay_one_vma, 300)
{
	enum { RANGES = 10000 };
	size_t len = (2 * RANGES + 1) * page;
	struct mheap_range *r = calloc(RANGES, sizeof(*r));
	struct mheap_stats st;
	unsigned int done;
	char *m;

	ASSERT_NE(NULL, r);
	m = dev_map(self->d.fd, len);
	ASSERT_NE(NULL, m);
	for (size_t i = 0; i < len; i += page)
		m[i] = 1;
	/* Every other page: 10k ranges that cannot merge. */
	for (int i = 0; i < RANGES; i++) {
		r[i].addr = (uintptr_t)(m + (2 * i + 1) * page);
		r[i].len = page;
	}
	ASSERT_EQ(0, kio_ranges(&self->io, true, r, RANGES, &done));
	EXPECT_EQ(RANGES, done);
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + len));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(RANGES, st.self.quarantined_ranges);
	EXPECT_EQ(RANGES * page, st.self.quarantined_bytes);
	EXPECT_EQ((RANGES + 1) * page, st.self.resident_bytes);
	for (int i = 0; i < RANGES; i += 487) {
		EXPECT_EQ(SIGSEGV, try_read(m + (2 * i + 1) * page, NULL));
		EXPECT_EQ(0, try_read(m + 2 * i * page, NULL));
	}
	/* One RELEASE of the whole mapping ends them all. */
	ASSERT_EQ(0, kio_release(&self->io, m, len));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(0, st.self.quarantined_ranges);
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(1, vmas_in((uintptr_t)m, (uintptr_t)m + len));
	munmap(m, len);
	free(r);
}

/* ------------------------------------------------------------ vectors */

TEST_F(cmd, a_vector_stops_at_the_first_bad_range)
{
	struct mheap_range r[3] = {
		{ (uintptr_t)self->d.mem, page },
		{ (uintptr_t)self->d.mem + 1, page },	/* unaligned */
		{ (uintptr_t)self->d.mem + 2 * page, page },
	};
	unsigned int done = 99;

	EXPECT_EQ(EINVAL, kio_ranges(&self->io, true, r, 3, &done));
	EXPECT_EQ(1, done);
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	EXPECT_EQ(0, try_read(self->d.mem + 2 * page, NULL));
	EXPECT_EQ(EINVAL, kio_ranges(&self->io, false, r, 3, &done));
	EXPECT_EQ(1, done);
	EXPECT_EQ(0, try_read(self->d.mem, NULL));
}

TEST_F(cmd, a_bad_range_is_einval_and_changes_nothing)
{
	char *m = self->d.mem;
	int other = dev_open();
	char *om = dev_map(other, page);
	char *anon = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const struct mheap_range bad[] = {
		{ (uintptr_t)m + 1, page },			/* unaligned start */
		{ (uintptr_t)m, page + 1 },			/* unaligned length */
		{ (uintptr_t)m, 0 },				/* empty */
		{ (uintptr_t)m, self->d.len + page },		/* past the end */
		{ (uintptr_t)m - page, 2 * page },		/* before the start */
		{ (uintptr_t)m, UINT64_MAX & ~(page - 1) },	/* wraps */
		{ UINT64_MAX & ~(page - 1), 2 * page },		/* wraps */
		{ 0xffff888000000000ull, page },		/* kernel address */
		{ 0, page },					/* nothing there */
		{ (uintptr_t)anon, page },			/* not the device's */
		{ (uintptr_t)om, page },			/* another context's */
	};

	ASSERT_NE(NULL, om);
	ASSERT_NE(MAP_FAILED, anon);
	memset(m, 1, self->d.len);
	for (int fault = 0; fault < 2; fault++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			unsigned int done = 77;

			EXPECT_EQ(EINVAL, kio_ranges(&self->io, fault, &bad[i], 1, &done))
				TH_LOG("%s range %zu", fault ? "FAULT" : "RELEASE", i);
			EXPECT_EQ(0, done);
		}
	}
	/* The anonymous and the other context's memory were left alone. */
	EXPECT_EQ(0, try_write(anon, 1));
	EXPECT_EQ(0, try_write(om, 1));
	EXPECT_EQ(1, m[0]);
	EXPECT_EQ(1, m[self->d.len - 1]);
	munmap(anon, page);
	munmap(om, page);
	close(other);
}

/* ------------------------------------------------------------ STATS */

TEST_F(cmd, stats_fill_the_whole_struct)
{
	struct mheap_stats st;

	memset(&st, 0xa5, sizeof(st));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(sizeof(st), st.size);
	EXPECT_EQ(0, st.reserved);
	EXPECT_EQ(self->d.len, st.self.mapped_bytes);
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(1, st.self.mappings);
	EXPECT_EQ(1, st.self.contexts);
	EXPECT_EQ(1, st.self.users);
	EXPECT_EQ(MHEAP_LIMIT_NONE, st.self.quarantine_limit);
	EXPECT_LE(st.self.mapped_bytes, st.user.mapped_bytes);
	EXPECT_LE(st.user.mapped_bytes, st.global.mapped_bytes);
}

/* An ioctl vector is one command; through io_uring each range is one. */
TEST_F(cmd, every_command_is_counted)
{
	struct mheap_range r[4];
	struct mheap_stats st;
	uint64_t before;

	for (int i = 0; i < 4; i++)
		r[i] = (struct mheap_range){ (uintptr_t)self->d.mem + 2 * i * page, page };
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	before = st.self.commands;
	ASSERT_EQ(0, kio_ranges(&self->io, true, r, 4, NULL));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	/* The first STATS counts itself too. */
	EXPECT_EQ(before + (variant->uring ? 4 : 1) + 1, st.self.commands);
}

/* ------------------------------------------------------------ limits */

TEST_F(cmd, a_context_limit_makes_fault_fail_with_edquot)
{
	struct mheap_stats st;
	char *m = self->d.mem;

	ASSERT_EQ(0, klimit(self->d.fd, 4 * page, 0));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(4 * page, st.self.quarantine_limit);
	EXPECT_EQ(0, kio_fault(&self->io, m, 3 * page));
	/* One page fits, two do not, and nothing of a refused range happens. */
	EXPECT_EQ(EDQUOT, kio_fault(&self->io, m + 3 * page, 2 * page));
	EXPECT_EQ(0, try_read(m + 3 * page, NULL));
	EXPECT_EQ(0, kio_fault(&self->io, m + 3 * page, page));
	EXPECT_EQ(EDQUOT, kio_fault(&self->io, m + 4 * page, page));
}

TEST_F(cmd, quarantined_pages_cost_nothing_more_against_the_limit)
{
	struct mheap_stats st;

	ASSERT_EQ(0, klimit(self->d.fd, 4 * page, 0));
	ASSERT_EQ(0, kio_fault(&self->io, self->d.mem, 3 * page));
	EXPECT_EQ(0, kio_fault(&self->io, self->d.mem, 4 * page));
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
}

TEST_F(cmd, release_makes_room_under_the_limit)
{
	ASSERT_EQ(0, klimit(self->d.fd, 4 * page, 0));
	ASSERT_EQ(0, kio_fault(&self->io, self->d.mem, 4 * page));
	ASSERT_EQ(EDQUOT, kio_fault(&self->io, self->d.mem + 10 * page, 2 * page));
	EXPECT_EQ(0, kio_release(&self->io, self->d.mem, 2 * page));
	EXPECT_EQ(0, kio_fault(&self->io, self->d.mem + 10 * page, 2 * page));
}

TEST_F(cmd, a_limit_below_what_is_held_refuses_more_and_releases_nothing)
{
	ASSERT_EQ(0, kio_fault(&self->io, self->d.mem, 4 * page));
	ASSERT_EQ(0, klimit(self->d.fd, page, 0));
	EXPECT_EQ(EDQUOT, kio_fault(&self->io, self->d.mem + 20 * page, page));
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem + 3 * page, NULL));
	/* No limit again: everything fits. */
	EXPECT_EQ(0, klimit(self->d.fd, MHEAP_LIMIT_NONE, 0));
	EXPECT_EQ(0, kio_fault(&self->io, self->d.mem, self->d.len));
}

TEST_F(cmd, another_context_is_not_bound_by_a_contexts_limit)
{
	int fd2 = dev_open();
	char *m2 = dev_map(fd2, 4 * page);

	ASSERT_NE(NULL, m2);
	ASSERT_EQ(0, klimit(self->d.fd, page, 0));
	EXPECT_EQ(0, kfault(fd2, m2, 4 * page));
	munmap(m2, 4 * page);
	close(fd2);
}

/* ------------------------------------------------------------ races */

static struct {
	char *mem;
	size_t len;
	volatile int stop;
	unsigned long touched, faulted;
} race;

static void *racer(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	unsigned long touched = 0, faulted = 0;

	probes_install();
	while (!race.stop) {
		size_t off = (size_t)rand_r(&seed) % race.len;

		if (try_write(race.mem + off, (char)off))
			faulted++;
		else
			touched++;
	}
	__atomic_add_fetch(&race.touched, touched, __ATOMIC_RELAXED);
	__atomic_add_fetch(&race.faulted, faulted, __ATOMIC_RELAXED);
	return NULL;
}

TEST_F_TIMEOUT(cmd, page_faults_racing_with_fault_and_release_leave_no_page_behind, 120)
{
	struct mheap_stats st;
	pthread_t t[3];
	int rounds = 400;

	race.mem = self->d.mem;
	race.len = self->d.len;
	race.stop = 0;
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)(i + 1)));
	for (int i = 0; i < rounds; i++) {
		ASSERT_EQ(0, kio_fault(&self->io, self->d.mem, self->d.len));
		/* No fault that raced with FAULT left a page behind. */
		ASSERT_EQ(0, kio_stats(&self->io, &st));
		ASSERT_EQ(0, st.self.resident_bytes) TH_LOG("round %d", i);
		ASSERT_EQ(self->d.len, st.self.quarantined_bytes);
		usleep(100);
		ASSERT_EQ(0, kio_release(&self->io, self->d.mem, self->d.len));
		usleep(200);
	}
	race.stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	TH_LOG("%lu writes landed, %lu faulted", race.touched, race.faulted);
	EXPECT_NE(0, race.touched);
	EXPECT_NE(0, race.faulted);
	/* Consistent at the end: what is resident is what reads back. */
	ASSERT_EQ(0, kio_release(&self->io, self->d.mem, self->d.len));
	for (size_t i = 0; i < self->d.len; i++)
		ASSERT_EQ(0, self->d.mem[i]);
	ASSERT_EQ(0, kio_stats(&self->io, &st));
	EXPECT_EQ(self->d.len, st.self.resident_bytes);
}

/* ------------------------------------------------------------ ioctl only */

TEST_F(dev, mapping_is_zero_fill_memory_allocated_on_touch)
{
	struct mheap_stats st;
	char v;

	EXPECT_TRUE(device_mapped_at(self->d.mem));
	EXPECT_EQ(1, vmas_in((uintptr_t)self->d.mem, (uintptr_t)self->d.mem + self->d.len));
	for (size_t i = 0; i < self->d.len; i += page) {
		ASSERT_EQ(0, try_read(self->d.mem + i, &v));
		ASSERT_EQ(0, v);
	}
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(self->d.len, st.self.resident_bytes);
	for (size_t i = 0; i < self->d.len; i++)
		self->d.mem[i] = (char)(i * 7);
	for (size_t i = 0; i < self->d.len; i++)
		ASSERT_EQ((char)(i * 7), self->d.mem[i]);
	/* MADV_DONTNEED unmaps pages but, as for any shared mapping, keeps them. */
	ASSERT_EQ(0, madvise(self->d.mem, self->d.len, MADV_DONTNEED));
	EXPECT_EQ((char)(5 * 7), self->d.mem[5]);
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(self->d.len, st.self.resident_bytes);
	EXPECT_EQ(self->d.len, (size_t)sysfs_counter("resident_bytes") - self->d.before.resident);
}

TEST_F(dev, an_empty_vector_does_nothing_and_says_so)
{
	struct mheap_range r = { (uintptr_t)self->d.mem, page };
	unsigned int done = 99;

	EXPECT_EQ(0, ranges_cmd(self->d.fd, MHEAP_IOC_FAULT, &r, 0, &done));
	EXPECT_EQ(0, done);
	EXPECT_EQ(0, try_read(self->d.mem, NULL));
}

TEST_F(dev, a_vector_whose_done_cannot_be_written_does_nothing)
{
	struct mheap_range r = { (uintptr_t)self->d.mem, 4 * page };
	struct mheap_ranges *a;
	struct mheap_stats st;

	/* The argument is readable, its @done is not writable. */
	a = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, a);
	*a = (struct mheap_ranges){ .ranges = (uintptr_t)&r, .nr = 1 };
	ASSERT_EQ(0, mprotect(a, page, PROT_READ));
	self->d.mem[0] = 7;

	/* The caller learns the outcome: EFAULT, and nothing took effect. */
	EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, MHEAP_IOC_FAULT, a);
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(7, self->d.mem[0]);
	/* Likewise RELEASE: the quarantine stays. */
	ASSERT_EQ(0, kfault(self->d.fd, self->d.mem, 4 * page));
	EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, MHEAP_IOC_RELEASE, a);
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(4 * page, st.self.quarantined_bytes);
	EXPECT_EQ(SIGSEGV, try_read(self->d.mem, NULL));
	munmap(a, page);
}

TEST_F(dev, a_vector_that_quarantines_its_own_argument_can_be_sent_again)
{
	struct mheap_range r[2] = {
		{ (uintptr_t)self->d.mem, 2 * page },
		{ (uintptr_t)self->d.mem + 8 * page, page },
	};
	struct mheap_ranges *a = (struct mheap_ranges *)(self->d.mem + page);
	unsigned int done;
	struct mheap_stats st;

	/* @done lies in the first range: gone by the time it is written. */
	*a = (struct mheap_ranges){ .ranges = (uintptr_t)r, .nr = 2 };
	EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, MHEAP_IOC_FAULT, a);
	/* Repeating ranges is harmless: the same vector again says all. */
	EXPECT_EQ(0, ranges_cmd(self->d.fd, MHEAP_IOC_FAULT, r, 2, &done));
	EXPECT_EQ(2, done);
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(3 * page, st.self.quarantined_bytes);
	EXPECT_EQ(2, st.self.quarantined_ranges);
}

TEST_F(dev, range_ioctls_check_flags_reserved_pointers_and_count)
{
	const unsigned long cmds[] = { MHEAP_IOC_FAULT, MHEAP_IOC_RELEASE };
	const struct mheap_range r = { (uintptr_t)self->d.mem, page };
	struct mheap_ranges a;

	for (int c = 0; c < 2; c++) {
		a = (struct mheap_ranges){ .ranges = (uintptr_t)&r, .nr = 1, .flags = 1 };
		EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, cmds[c], &a);
		a = (struct mheap_ranges){ .ranges = (uintptr_t)&r, .nr = 1, .reserved = 1 };
		EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, cmds[c], &a);
		EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, cmds[c], NULL);
		a = (struct mheap_ranges){ .ranges = 8, .nr = 1 };
		EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, cmds[c], &a);
		EXPECT_EQ(0, a.done);
		a = (struct mheap_ranges){ .ranges = (uintptr_t)&r, .nr = UINT32_MAX };
		EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, cmds[c], &a);
	}
	EXPECT_EQ(0, try_write(self->d.mem, 1));
}

TEST_F(dev, stats_and_set_limit_check_their_arguments)
{
	struct mheap_limit lim = { .bytes = page, .flags = 2 };
	struct mheap_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st) - 8;
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_STATS, &st);
	st.size = sizeof(st);
	st.flags = 2;
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_STATS, &st);
	st.flags = 0;
	st.reserved = 1;
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_STATS, &st);
	EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, MHEAP_IOC_STATS, NULL);
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_SET_LIMIT, &lim);
	lim.flags = 0;
	lim.reserved = 1;
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_SET_LIMIT, &lim);
	EXPECT_IOCTL_FAILS(EFAULT, self->d.fd, MHEAP_IOC_SET_LIMIT, (void *)8);
	ASSERT_EQ(0, kstats(self->d.fd, &st));
	EXPECT_EQ(MHEAP_LIMIT_NONE, st.self.quarantine_limit);
}

TEST_F(dev, stats_v1_fills_the_1_1_struct_and_not_a_byte_more)
{
	unsigned char buf[sizeof(struct mheap_stats)];
	struct mheap_stats *st = (struct mheap_stats *)buf;

	memset(buf, 0xa5, sizeof(buf));
	memset(buf, 0, offsetof(struct mheap_stats, self));
	st->size = MHEAP_STATS_SIZE_V1;
	ASSERT_EQ(0, ioctl(self->d.fd, MHEAP_IOC_STATS_V1, st));
	EXPECT_EQ(MHEAP_STATS_SIZE_V1, st->size);
	EXPECT_EQ(self->d.len, st->self.mapped_bytes);
	for (size_t i = MHEAP_STATS_SIZE_V1; i < sizeof(buf); i++) {
		ASSERT_EQ(0xa5, buf[i]) TH_LOG("byte %zu", i);
	}
	/* The size must be the one the command number says. */
	st->size = sizeof(*st);
	EXPECT_IOCTL_FAILS(EINVAL, self->d.fd, MHEAP_IOC_STATS_V1, st);
}

static void try_global_limit_unprivileged(void *arg)
{
	int fd = dev_open();

	(void)arg;
	if (setgid(65534) || setuid(65534))
		_exit(10);
	_exit(klimit(fd, page, MHEAP_LIMIT_GLOBAL) == EPERM ? 0 : 11);
}

TEST_F(dev, the_global_limit_binds_all_contexts_and_needs_cap_sys_admin)
{
	struct mheap_stats st;
	unsigned long long saved;
	struct child_result r;

	ASSERT_EQ(0, kstats(self->d.fd, &st));
	saved = st.global.quarantine_limit;
	EXPECT_EQ((long long)saved, sysfs_counter("quarantine_limit"));
	if (geteuid() != 0)
		SKIP(return, "setting the global limit needs root");

	/* Room for the quarantine already there plus 3 pages. */
	ASSERT_EQ(0, klimit(self->d.fd, st.global.quarantined_bytes + 3 * page,
			    MHEAP_LIMIT_GLOBAL));
	EXPECT_EQ(st.global.quarantined_bytes + 3 * page, read_number_file(PARAM_LIMIT));

	int fd2 = dev_open();
	char *m2 = dev_map(fd2, 4 * page);

	ASSERT_NE(NULL, m2);
	EXPECT_EQ(0, kfault(self->d.fd, self->d.mem, 2 * page));
	EXPECT_EQ(EDQUOT, kfault(fd2, m2, 2 * page));
	EXPECT_EQ(0, kfault(fd2, m2, page));
	EXPECT_EQ(EDQUOT, kfault(self->d.fd, self->d.mem + 5 * page, page));
	EXPECT_EQ(0, krelease(self->d.fd, self->d.mem, 2 * page));
	EXPECT_EQ(0, kfault(fd2, m2 + page, 2 * page));

	/* Without CAP_SYS_ADMIN: EPERM. */
	run_child(try_global_limit_unprivileged, NULL, &r);
	EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		TH_LOG("status %#x", r.status);

	EXPECT_EQ(0, klimit(self->d.fd, saved, MHEAP_LIMIT_GLOBAL));
	munmap(m2, 4 * page);
	close(fd2);
}

TEST_HARNESS_MAIN
