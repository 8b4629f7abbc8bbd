// SPDX-License-Identifier: GPL-2.0
/*
 * Everything at once on /dev/mheap, as a kselftest.
 *
 * For a bounded time (MHEAP_STRESS_SECONDS, default 3, per test), threads
 * and processes work on the device together:
 *  - two commanders FAULT and RELEASE random ranges of a shared mapping,
 *    by ioctl vectors or by io_uring batches (IOSQE_ASYNC and IOSQE_IO_LINK
 *    at random), as the variant says;
 *  - a toucher writes and reads random bytes of it (page faults that
 *    allocate, and SIGSEGV where it is quarantined);
 *  - a reader copies random ranges of it with process_vm_readv()
 *    (get_user_pages: whole, partial, or EFAULT);
 *  - a churner opens a context of its own, maps, writes and faults it, and
 *    closes and unmaps it, with io_uring commands still in flight in the
 *    io_uring variant;
 *  - a forker forks children that map the inherited descriptor (the same
 *    context), fault a page of it and touch that page, and so must die of
 *    SIGSEGV.
 * The huge variants make the shared mapping two 2 MiB blocks advised
 * MADV_HUGEPAGE, so that touches map compound pages with one PMD, and the
 * commanders' ranges are whole blocks or a few pages that cut one (the
 * module splits the block's index entry) as often as random ones; and two
 * more actors join:
 *  - an advisor zaps, ages and pages out random ranges (MADV_DONTNEED,
 *    MADV_COLD, MADV_PAGEOUT: the kernel's own walks over these pages,
 *    which split PMDs and try to split compound pages), takes the huge
 *    page advice back and gives it again, and write-protects the whole
 *    mapping for a moment (mprotect);
 *  - a splicer pins random ranges with vmsplice() and reads them out of
 *    the pipe after a moment, while FAULT and RELEASE drop the pages: a
 *    pinned page keeps what it had.
 * Every byte ever written to page i of the shared mapping is pattern(i), so
 * whatever reads it (the toucher, process_vm_readv) must see that or zero
 * (never-touched, released): anything else is memory that came from
 * somewhere it should not have. Afterwards the kernel log is clean and,
 * once everything is closed, every counter of the module is back to zero
 * (tools/vm-init.sh then checks that rmmod works).
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"
#include "kmod_util.h"

#define NPAGES		32	/* the shared mapping */
#define BLOCK		(2u << 20)	/* the huge variants' blocks... */
#define HUGE_BLOCKS	2	/* ...and how many their mapping has */
#define CHURN_PAGES	8	/* the churner's own mappings */
#define MAX_RANGES	4	/* per command batch or vector */

/* What every byte of page i of the shared mapping holds, when not zero. */
static unsigned char pattern(size_t i)
{
	return (unsigned char)(0x11 + 7 * i) | 1;
}

struct stress {
	bool uring, huge;
	int fd;
	char *mem;
	size_t len, npages;
	struct timespec end;
	pthread_barrier_t start;	/* the actors and the clock start together */
	struct reports reports;
	/* Tallies, atomic. */
	unsigned long commands, touches, segvs, reads, partial_reads, read_faults;
	unsigned long churns, children, children_segv, advices, splices, pinned;
};

static bool past_end(const struct stress *s)
{
	return deadline_passed(&s->end);
}

/*
 * Each actor calls this once its descriptors exist (a ring, a pipe), and
 * on every way out before that: the actors and the clock start together.
 * Under emulation creating a thread can take seconds while the first ones
 * fork and lock the address space, and an actor begun after the deadline
 * does nothing; and a descriptor made while the churner's commands are in
 * flight may take the number of the one it closed, which io_uring looks
 * up only when io-wq issues a command (which then fails with EOPNOTSUPP).
 */
static void stress_begin(struct stress *s)
{
	pthread_barrier_wait(&s->start);
}

static void tally(unsigned long *counter, unsigned long n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

#define report(s, ...) reports_add(&(s)->reports, __VA_ARGS__)

/* A random page-aligned range of n pages' mapping at mem. */
static struct mheap_range random_range(unsigned int *seed, char *mem, size_t npages)
{
	size_t first = (size_t)rand_r(seed) % npages;
	size_t pages = 1 + (size_t)rand_r(seed) % (npages - first);

	return (struct mheap_range){ (uintptr_t)mem + first * page, pages * page };
}

/*
 * A commander's range: random, or in the huge variants as often whole
 * blocks (a PMD zapped, a compound page freed at once) or a few pages at
 * random, which mostly cut a block.
 */
static struct mheap_range stress_range(struct stress *s, unsigned int *seed)
{
	size_t per_block = BLOCK / page, first, pages;

	switch (s->huge ? rand_r(seed) % 3 : 0) {
	case 1:
		first = (size_t)rand_r(seed) % HUGE_BLOCKS;
		pages = 1 + (size_t)rand_r(seed) % (HUGE_BLOCKS - first);
		return (struct mheap_range){ (uintptr_t)s->mem + first * BLOCK,
					     pages * BLOCK };
	case 2:
		pages = 1 + (size_t)rand_r(seed) % 8;
		first = (size_t)rand_r(seed) % (s->npages - pages + 1);
		/* Now and then across the boundary between the blocks. */
		if (rand_r(seed) % 4 == 0)
			first = per_block - pages / 2;
		return (struct mheap_range){ (uintptr_t)s->mem + first * page, pages * page };
	default:
		return random_range(seed, s->mem, s->npages);
	}
}

/*
 * Submit n range commands on fd through ring: op, or FAULT or RELEASE at
 * random if op is 0; IOSQE_ASYNC at random unless async_all, which punts
 * every one to io-wq; IOSQE_IO_LINK at random. False if not all went in.
 */
static bool uring_submit_ranges(struct io_uring *ring, int fd, const struct mheap_range *r,
				unsigned int n, uint32_t op, bool async_all, unsigned int *seed)
{
	for (unsigned int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		uint32_t o = op ? op : rand_r(seed) % 2 ? MHEAP_URING_CMD_FAULT :
							  MHEAP_URING_CMD_RELEASE;

		prep_cmd(sqe, fd, o, &r[i], sizeof(r[i]), i);
		if (async_all || rand_r(seed) % 2)
			sqe->flags |= IOSQE_ASYNC;
		if (rand_r(seed) % 2)
			sqe->flags |= IOSQE_IO_LINK;
	}
	return io_uring_submit(ring) == (int)n;
}

/* ------------------------------------------------------------ actors */

/* FAULT and RELEASE random ranges of the shared mapping: all succeed. */
static void *commander(void *arg)
{
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	struct mheap_range r[MAX_RANGES];
	struct io_uring ring;
	int res[MAX_RANGES];

	if (s->uring && io_uring_queue_init(2 * MAX_RANGES, &ring, 0)) {
		report(s, "io_uring_queue_init: %s", strerror(errno));
		stress_begin(s);
		return NULL;
	}
	stress_begin(s);
	while (!past_end(s)) {
		unsigned int n = 1 + (unsigned int)rand_r(&seed) % MAX_RANGES, done;
		/*
		 * The huge variants' ranges are larger: one FAULT in four keeps
		 * the mapping mostly live, for the touches and pins.
		 */
		uint32_t op = !s->huge ? 0 : rand_r(&seed) % 4 ? MHEAP_URING_CMD_RELEASE :
								 MHEAP_URING_CMD_FAULT;

		for (unsigned int i = 0; i < n; i++)
			r[i] = stress_range(s, &seed);
		if (!s->uring) {
			bool fault = op ? op == MHEAP_URING_CMD_FAULT : rand_r(&seed) % 2;
			unsigned long cmd = fault ? MHEAP_IOC_FAULT : MHEAP_IOC_RELEASE;
			int err = ranges_cmd(s->fd, cmd, r, n, &done);

			if (err || done != n)
				report(s, "ioctl %s of %u ranges: %s, %u done",
				       cmd == MHEAP_IOC_FAULT ? "FAULT" : "RELEASE", n,
				       strerror(err), done);
		} else if (!uring_submit_ranges(&ring, s->fd, r, n, op, false, &seed) ||
			   uring_reap(&ring, n, res) != n) {
			report(s, "io_uring: a batch of %u did not complete", n);
			break;
		} else {
			for (unsigned int i = 0; i < n; i++)
				if (res[i])
					report(s, "io_uring command %u of %u: %d", i, n, res[i]);
		}
		tally(&s->commands, n);
	}
	if (s->uring)
		io_uring_queue_exit(&ring);
	return NULL;
}

/* Write and read random bytes: pattern or zero, or SIGSEGV right there. */
static void *toucher(void *arg)
{
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	unsigned long touches = 0, segvs = 0;

	stress_begin(s);
	while (!past_end(s)) {
		size_t off = (size_t)rand_r(&seed) % s->len;
		char *p = s->mem + off, v = 0;
		int sig = rand_r(&seed) % 2 ? try_write(p, (char)pattern(off / page)) : try_read(p, &v);

		touches++;
		if (sig) {
			segvs++;
			if (sig != SIGSEGV || probe_addr != p)
				report(s, "touch of page %zu: signal %d at %p", off / page, sig,
				       probe_addr);
		} else if (v && (unsigned char)v != pattern(off / page)) {
			report(s, "page %zu holds %#x", off / page, (unsigned char)v);
		}
	}
	tally(&s->touches, touches);
	tally(&s->segvs, segvs);
	return NULL;
}

/* process_vm_readv() of random ranges: whole, up to a quarantined page, or EFAULT. */
static void *reader(void *arg)
{
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	unsigned char *buf = malloc(MAX_RANGES * page);
	unsigned long reads = 0, partial = 0, faults = 0;

	stress_begin(s);
	while (buf && !past_end(s)) {
		size_t first = (size_t)rand_r(&seed) % s->npages;
		size_t pages = 1 + (size_t)rand_r(&seed) % MAX_RANGES;
		struct iovec local = { buf, 0 }, remote;
		ssize_t n;

		if (first + pages > s->npages)
			pages = s->npages - first;
		local.iov_len = pages * page;
		remote = (struct iovec){ s->mem + first * page, pages * page };
		n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		reads++;
		if (n < 0) {
			faults++;
			if (errno != EFAULT)
				report(s, "process_vm_readv: %s", strerror(errno));
			continue;
		}
		if ((size_t)n < pages * page)
			partial++;
		if (n % page)
			report(s, "process_vm_readv read %zd bytes, not whole pages", n);
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] && buf[i] != pattern(first + (size_t)i / page)) {
				report(s, "process_vm_readv: page %zu holds %#x",
				       first + (size_t)i / page, buf[i]);
				break;
			}
	}
	free(buf);
	tally(&s->reads, reads);
	tally(&s->partial_reads, partial);
	tally(&s->read_faults, faults);
	return NULL;
}

/*
 * Huge variants: the kernel's own walks over random ranges. Every call
 * succeeds; the data stays (MADV_DONTNEED drops only page-table entries of
 * a shared mapping, the others only age pages or find them unevictable).
 */
static void *advisor(void *arg)
{
	static const int advice[] = { MADV_DONTNEED, MADV_COLD, MADV_PAGEOUT };
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	unsigned long advices = 0;

	stress_begin(s);
	while (!past_end(s)) {
		struct mheap_range r = stress_range(s, &seed);
		int a = advice[rand_r(&seed) % 3];

		if (madvise((void *)(uintptr_t)r.addr, r.len, a))
			report(s, "madvise %d of %llu bytes: %s", a, (unsigned long long)r.len,
			       strerror(errno));
		advices++;
		switch (rand_r(&seed) % 16) {
		case 0:
			/* Blocks touched meanwhile get small pages. */
			if (madvise(s->mem, s->len, MADV_NOHUGEPAGE))
				report(s, "MADV_NOHUGEPAGE: %s", strerror(errno));
			sched_yield();
			if (madvise(s->mem, s->len, MADV_HUGEPAGE))
				report(s, "MADV_HUGEPAGE: %s", strerror(errno));
			break;
		case 1:
			/* PMDs and entries write-protected, then written again. */
			if (mprotect(s->mem, s->len, PROT_READ))
				report(s, "mprotect PROT_READ: %s", strerror(errno));
			sched_yield();
			if (mprotect(s->mem, s->len, PROT_READ | PROT_WRITE))
				report(s, "mprotect back: %s", strerror(errno));
			break;
		}
	}
	tally(&s->advices, advices);
	return NULL;
}

/*
 * Huge variants: pin up to four random pages with vmsplice() and read them
 * back out of the pipe a moment later, while the commanders drop them: each
 * byte is its page's pattern or zero, whatever happened to the mapping.
 */
static void *splicer(void *arg)
{
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	unsigned char *buf = malloc(MAX_RANGES * page);
	unsigned long splices = 0, pinned = 0;
	int pfd[2];

	if (!buf || pipe(pfd)) {
		report(s, "splicer: %s", strerror(errno));
		free(buf);
		stress_begin(s);
		return NULL;
	}
	stress_begin(s);
	while (!past_end(s)) {
		size_t pages = 1 + (size_t)rand_r(&seed) % MAX_RANGES;
		size_t first = (size_t)rand_r(&seed) % (s->npages - pages + 1);
		struct iovec iov = { s->mem + first * page, pages * page };
		ssize_t n = vmsplice(pfd[1], &iov, 1, 0), got = 0, r;

		splices++;
		if (n < 0) {
			if (errno != EFAULT)
				report(s, "vmsplice: %s", strerror(errno));
			continue;
		}
		pinned++;
		sched_yield();
		while (got < n && (r = read(pfd[0], buf + got, (size_t)(n - got))) > 0)
			got += r;
		if (got != n) {
			report(s, "read %zd of %zd spliced bytes: %s", got, n, strerror(errno));
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] && buf[i] != pattern(first + (size_t)i / page)) {
				report(s, "vmsplice: page %zu holds %#x", first + (size_t)i / page,
				       buf[i]);
				break;
			}
	}
	close(pfd[0]);
	close(pfd[1]);
	free(buf);
	tally(&s->splices, splices);
	tally(&s->pinned, pinned);
	return NULL;
}

/*
 * A context of its own, again and again: map, write, fault half of it, and
 * close and unmap. In the io_uring variant the FAULTs are punted to io-wq
 * and the descriptor closed, and sometimes the mapping unmapped, while they
 * are in flight: they then succeed, or find no mapping (-EINVAL), or find
 * no descriptor (-EBADF: io_uring looks it up when io-wq issues the
 * command; 6.12 shows it, 6.1 has not), or were linked behind one that
 * failed (-ECANCELED).
 */
static void *churner(void *arg)
{
	struct stress *s = arg;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();
	size_t len = CHURN_PAGES * page, half = len / 2;
	struct mheap_range r[MAX_RANGES];
	struct io_uring ring;
	int res[MAX_RANGES];

	if (s->uring && io_uring_queue_init(2 * MAX_RANGES, &ring, 0)) {
		report(s, "io_uring_queue_init: %s", strerror(errno));
		stress_begin(s);
		return NULL;
	}
	stress_begin(s);
	while (!past_end(s)) {
		int fd = dev_open(), err = 0;
		bool unmapped = false, first_faulted = true;
		char *m;

		m = fd < 0 ? NULL : dev_map(fd, len);
		if (!m) {
			report(s, "open or mmap: %s", strerror(errno));
			break;
		}
		memset(m, 0x5a, len);
		for (unsigned int i = 0; i < MAX_RANGES; i++)
			r[i] = (struct mheap_range){ (uintptr_t)m + i * half / MAX_RANGES,
						     half / MAX_RANGES };
		if (!s->uring) {
			err = kfault(fd, m, half);
			close(fd);
		} else {
			unsigned int got;

			if (!uring_submit_ranges(&ring, fd, r, MAX_RANGES, MHEAP_URING_CMD_FAULT,
						 true, &seed)) {
				report(s, "io_uring_submit failed");
				break;
			}
			close(fd);
			if (rand_r(&seed) % 4 == 0) {
				munmap(m, len);
				unmapped = true;
			}
			got = uring_reap(&ring, MAX_RANGES, res);
			if (got < MAX_RANGES) {
				report(s, "io_uring: %u of %d FAULTs completed", got, MAX_RANGES);
				break;
			}
			for (unsigned int i = 0; i < MAX_RANGES; i++)
				if (res[i] && res[i] != -EBADF && res[i] != -ECANCELED &&
				    !(unmapped && res[i] == -EINVAL))
					err = -res[i];
			first_faulted = res[0] == 0;
		}
		if (err)
			report(s, "churner FAULT: %s%s", strerror(err), unmapped ? " (unmapped)" : "");
		/* The closed context lives on in its mapping. */
		if (!unmapped) {
			if (!err && first_faulted && try_read(m, NULL) != SIGSEGV)
				report(s, "churner: a faulted page of a closed context was readable");
			if (m[half] != 0x5a)
				report(s, "churner: a live page of a closed context lost its data");
			munmap(m, len);
		}
		tally(&s->churns, 1);
	}
	if (s->uring)
		io_uring_queue_exit(&ring);
	return NULL;
}

/*
 * In the child: map the inherited descriptor, fault the second page and
 * touch it. Only system calls: the parent has other threads, which may have
 * held malloc's locks at the fork.
 */
static void child_touches_quarantine(int fd)
{
	struct mheap_range r;
	unsigned int done;
	char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (m == MAP_FAILED)
		_exit(2);
	m[0] = 1;
	m[page] = 1;
	r = (struct mheap_range){ (uintptr_t)m + page, page };
	if (ranges_cmd(fd, MHEAP_IOC_FAULT, &r, 1, &done))
		_exit(3);
	if (m[0] != 1)
		_exit(4);
	*(volatile char *)(m + page) = 2;	/* SIGSEGV */
	_exit(5);
}

static void *forker(void *arg)
{
	struct stress *s = arg;
	unsigned long children = 0, segv = 0;

	stress_begin(s);
	while (!past_end(s)) {
		int status;
		pid_t pid = fork();

		if (pid == 0)
			child_touches_quarantine(s->fd);
		if (pid < 0) {
			report(s, "fork: %s", strerror(errno));
			break;
		}
		children++;
		if (waitpid(pid, &status, 0) != pid)
			report(s, "waitpid: %s", strerror(errno));
		else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
			segv++;
		else
			report(s, "a child touching quarantine ended with status %#x", status);
	}
	tally(&s->children, children);
	tally(&s->children_segv, segv);
	return NULL;
}

/* ------------------------------------------------------------ the fixture */

FIXTURE(stress) {
	struct stress s;
	int splats;
};

FIXTURE_VARIANT(stress) {
	bool uring;
	bool huge;
};

FIXTURE_VARIANT_ADD(stress, ioctl) {
	.uring = false,
};

FIXTURE_VARIANT_ADD(stress, io_uring) {
	.uring = true,
};

FIXTURE_VARIANT_ADD(stress, ioctl_huge) {
	.uring = false,
	.huge = true,
};

FIXTURE_VARIANT_ADD(stress, io_uring_huge) {
	.uring = true,
	.huge = true,
};

FIXTURE_SETUP(stress)
{
	struct stress *s = &self->s;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	if (variant->uring && uring_cmd_missing())
		SKIP_SETUP("%s", uring_cmd_missing());
	probes_install();
	self->splats = kernel_log_splats();
	s->uring = variant->uring;
	s->huge = variant->huge;
	reports_init(&s->reports);
	s->len = s->huge ? HUGE_BLOCKS * BLOCK : NPAGES * page;
	s->npages = s->len / page;
	s->fd = dev_open();
	ASSERT_LE(0, s->fd);
	s->mem = dev_map(s->fd, s->len);
	ASSERT_NE(NULL, s->mem);
	if (s->huge) {
		ASSERT_EQ(0, (uintptr_t)s->mem % BLOCK);
		ASSERT_EQ(0, madvise(s->mem, s->len, MADV_HUGEPAGE));
	}
}

/* Unmap and close what the fixture holds; the tests may do it first. */
static void stress_close(struct stress *s)
{
	if (s->mem)
		munmap(s->mem, s->len);
	if (s->fd >= 0)
		close(s->fd);
	s->mem = NULL;
	s->fd = -1;
}

FIXTURE_TEARDOWN(stress)
{
	stress_close(&self->s);
}

/* All the actors at once, until the time is up. */
static void stress_run(struct __test_metadata *_metadata, struct stress *s)
{
	void *(*const actors[])(void *) = {
		commander, commander, toucher, reader, churner, forker, advisor, splicer,
	};
	/* The last two only in the huge variants. */
	const unsigned int nr = sizeof(actors) / sizeof(actors[0]) - (s->huge ? 0 : 2);
	unsigned int secs = env_uint("MHEAP_STRESS_SECONDS", 3);
	pthread_t t[sizeof(actors) / sizeof(actors[0])];

	ASSERT_EQ(0, pthread_barrier_init(&s->start, NULL, nr + 1));
	for (unsigned int i = 0; i < nr; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, actors[i], s));
	s->end = deadline_in(secs);
	stress_begin(s);
	for (unsigned int i = 0; i < nr; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&s->start);
	TH_LOG("%s%s, %u s: %lu commands, %lu touches (%lu SIGSEGV), %lu process_vm_readv "
	       "(%lu partial, %lu EFAULT), %lu contexts churned, %lu children, %lu madvise, "
	       "%lu vmsplice (%lu pinned)",
	       s->uring ? "io_uring" : "ioctl", s->huge ? " huge" : "", secs, s->commands,
	       s->touches, s->segvs, s->reads, s->partial_reads, s->read_faults, s->churns,
	       s->children, s->advices, s->splices, s->pinned);
}

TEST_F(stress, every_operation_gets_its_documented_result)
{
	struct stress *s = &self->s;
	struct mheap_stats st;

	RETURN_IF_SETUP_SKIPPED();
	stress_run(_metadata, s);
	EXPECT_NO_REPORTS(&s->reports);
	EXPECT_NE(0, s->commands);
	EXPECT_NE(0, s->touches);
	EXPECT_NE(0, s->reads);
	EXPECT_NE(0, s->churns);
	if (s->huge) {
		EXPECT_NE(0, s->advices);
		EXPECT_NE(0, s->splices);
	}

	/* Consistent afterwards: released whole, it is zero-fill and holds nothing. */
	ASSERT_EQ(0, krelease(s->fd, s->mem, s->len));
	ASSERT_EQ(0, kstats(s->fd, &st));
	EXPECT_EQ(0, st.self.resident_bytes);
	EXPECT_EQ(0, st.self.quarantined_bytes);
	EXPECT_EQ(0, st.self.quarantined_ranges);
	EXPECT_EQ(1, st.self.mappings);
	for (size_t i = 0; i < s->len; i++) {
		ASSERT_EQ(0, s->mem[i]) TH_LOG("byte %zu", i);
	}
}

TEST_F(stress, children_touching_quarantine_die_of_sigsegv)
{
	struct stress *s = &self->s;
	struct mheap_stats st;

	RETURN_IF_SETUP_SKIPPED();
	stress_run(_metadata, s);
	EXPECT_NE(0, s->children);
	EXPECT_EQ(s->children, s->children_segv);
	/* Each child's touch is an event of the context it shares. */
	ASSERT_EQ(0, kstats(s->fd, &st));
	EXPECT_LE(s->children_segv, st.self.faults_caught);
}

TEST_F(stress, afterwards_every_counter_is_back_to_zero)
{
	RETURN_IF_SETUP_SKIPPED();
	stress_run(_metadata, &self->s);
	stress_close(&self->s);
	expect_module_idle(_metadata);
}

TEST_F(stress, afterwards_the_kernel_log_is_clean)
{
	RETURN_IF_SETUP_SKIPPED();
	stress_run(_metadata, &self->s);
	if (self->splats < 0)
		SKIP(return, "kernel log unreadable (%s): vm-init.sh checks it", strerror(errno));
	EXPECT_EQ(self->splats, kernel_log_splats())
		TH_LOG("new BUG/WARNING/Oops lines in the kernel log");
}

TEST_HARNESS_MAIN
