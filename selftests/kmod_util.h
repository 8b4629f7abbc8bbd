/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers the /dev/mheap selftests (kmod_*_test.c) share: opening and
 * mapping the device, the range, STATS and SET_LIMIT commands, the same
 * commands through either transport (struct kio: ioctl or io_uring, for
 * fixtures whose variants run a test over both), the global counters in
 * sysfs, the module's reference count and parameters, unloading and
 * loading it, probes that touch memory and report the signal instead of
 * dying, a scan of the kernel log for splats, a check that the module
 * holds nothing any more, io_uring command SQEs, and for the tests that
 * run for a while a deadline and a log of unexpected results that threads
 * share. It includes the headers all of that needs (libc's, liburing's,
 * <linux/mheap.h>, mheap_test.h), so a test includes only what it uses
 * beyond them. Include kselftest_harness.h first.
 *
 * Everything is static (inline), so a test that uses only part of it gets
 * no unused-function warning.
 */
#ifndef KMOD_UTIL_H
#define KMOD_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "mheap_test.h"

#define DEV_PATH	"/dev/" MHEAP_DEVICE_NAME
#define SYSFS_DIR	"/sys/class/misc/" MHEAP_DEVICE_NAME "/"
#define NO_DEVICE	DEV_PATH " not present: module not loaded"

#define MODULE_SYSFS	"/sys/module/mheap"
#define PARAMS_DIR	MODULE_SYSFS "/parameters/"
#define NO_KO		"MHEAP_KO not set: reloading needs the module file (VM only)"

/*
 * SKIP() from a FIXTURE_SETUP(). The 6.1 harness marks the test skipped but
 * still runs its body after setup returns; leaving setup through the
 * harness's own jump buffer skips the body and the teardown instead.
 */
#define SKIP_SETUP(fmt, ...) \
	SKIP(longjmp(_metadata->env, 1), fmt, ##__VA_ARGS__)

/* The call fails with exactly this errno. */
#define EXPECT_FAILS_WITH(err, call) do {			\
	errno = 0;						\
	EXPECT_EQ(-1, (call));					\
	EXPECT_EQ(err, errno);					\
} while (0)

#define EXPECT_IOCTL_FAILS(err, ...) EXPECT_FAILS_WITH(err, ioctl(__VA_ARGS__))

static size_t page;

__attribute__((constructor)) static void init_page(void)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
}

static inline bool device_present(void)
{
	return access(DEV_PATH, F_OK) == 0;
}

/* ------------------------------------------------------------ probes */

/*
 * Touch memory and learn whether it faulted: a SIGSEGV/SIGBUS handler jumps
 * back to the probe (per thread, so threads can probe at once).
 */
static __thread sigjmp_buf probe_env;
static __thread volatile sig_atomic_t probe_armed;
static __thread volatile int probe_sig;
static __thread void *volatile probe_addr;

static inline void probe_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!probe_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	probe_sig = sig;
	probe_addr = si->si_addr;
	probe_armed = 0;
	siglongjmp(probe_env, 1);
}

static inline void probes_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = probe_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* 0 if reading *p worked (the byte in *out), else the signal it raised. */
static inline int try_read(const char *p, char *out)
{
	probe_sig = 0;
	if (sigsetjmp(probe_env, 1))
		return probe_sig;
	probe_armed = 1;
	char v = *(const volatile char *)p;
	probe_armed = 0;
	if (out)
		*out = v;
	return 0;
}

static inline int try_write(char *p, char v)
{
	probe_sig = 0;
	if (sigsetjmp(probe_env, 1))
		return probe_sig;
	probe_armed = 1;
	*(volatile char *)p = v;
	probe_armed = 0;
	return 0;
}

/* ------------------------------------------------------------ device */

static inline int dev_open(void)
{
	return open(DEV_PATH, O_RDWR | O_CLOEXEC);
}

static inline char *dev_map(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Whether /proc/self/maps shows a mapping of the device at addr. */
static inline bool device_mapped_at(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e, a = (uintptr_t)addr;
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= a && a < e &&
		    strstr(line, DEV_PATH))
			found = true;
	fclose(f);
	return found;
}

/* A ranges command; 0 or its errno, and how many ranges were done. */
static inline int ranges_cmd(int fd, unsigned long cmd, const struct mheap_range *r,
			     unsigned int n, unsigned int *done)
{
	struct mheap_ranges a = { .ranges = (uintptr_t)r, .nr = n, .done = 0xdead };
	int ret = ioctl(fd, cmd, &a) ? errno : 0;

	if (done)
		*done = a.done;
	return ret;
}

static inline int kfault(int fd, const void *addr, size_t len)
{
	struct mheap_range r = { (uintptr_t)addr, len };

	return ranges_cmd(fd, MHEAP_IOC_FAULT, &r, 1, NULL);
}

static inline int krelease(int fd, const void *addr, size_t len)
{
	struct mheap_range r = { (uintptr_t)addr, len };

	return ranges_cmd(fd, MHEAP_IOC_RELEASE, &r, 1, NULL);
}

static inline int kstats(int fd, struct mheap_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return ioctl(fd, MHEAP_IOC_STATS, st) ? errno : 0;
}

static inline int klimit(int fd, uint64_t bytes, uint32_t flags)
{
	struct mheap_limit lim = { .bytes = bytes, .flags = flags };

	return ioctl(fd, MHEAP_IOC_SET_LIMIT, &lim) ? errno : 0;
}

/* A global counter from sysfs, -1 if unreadable (or a limit of none). */
static inline long long sysfs_counter(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), SYSFS_DIR "%s", name);
	return read_number_file(path);
}

/* Write text to a sysfs (or cgroup) file in one write(); 0 or its errno. */
static inline int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, text, strlen(text)) < 0)
		err = errno;
	close(fd);
	return err;
}

/* The gauges that must return to where they were when a test is done. */
struct gauges {
	long long mapped, resident, quarantined, ranges, mappings, contexts;
};

static inline void gauges_read(struct gauges *g)
{
	g->mapped = sysfs_counter("mapped_bytes");
	g->resident = sysfs_counter("resident_bytes");
	g->quarantined = sysfs_counter("quarantined_bytes");
	g->ranges = sysfs_counter("quarantined_ranges");
	g->mappings = sysfs_counter("mappings");
	g->contexts = sysfs_counter("contexts");
}

#define EXPECT_GAUGES_EQ(a, b) do {					\
	EXPECT_EQ((a).mapped, (b).mapped);				\
	EXPECT_EQ((a).resident, (b).resident);				\
	EXPECT_EQ((a).quarantined, (b).quarantined);			\
	EXPECT_EQ((a).ranges, (b).ranges);				\
	EXPECT_EQ((a).mappings, (b).mappings);				\
	EXPECT_EQ((a).contexts, (b).contexts);				\
} while (0)

/*
 * Poll the global gauges until they read *want, for at most 5 s: io_uring
 * drops the file references of its requests from a worker, a moment after
 * the ring is closed. The last values read are left in *g.
 */
static inline void gauges_settle_at(const struct gauges *want, struct gauges *g)
{
	for (int waited = 0; waited < 5000; waited += 10) {
		gauges_read(g);
		if (!memcmp(g, want, sizeof(*want)))
			return;
		usleep(10000);
	}
}

static inline void gauges_settle_at_zero(struct gauges *g)
{
	const struct gauges zero = { 0 };

	gauges_settle_at(&zero, g);
}

/*
 * Nothing is left in the module once everything is closed: STATS on a
 * fresh descriptor sees no mapping, page or quarantine anywhere and itself
 * as the only context, and the sysfs counters are all zero after it closes.
 */
static inline void expect_module_idle(struct __test_metadata *_metadata)
{
	struct mheap_stats st;
	struct gauges g;
	int fd;

	gauges_settle_at_zero(&g);
	fd = dev_open();
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, kstats(fd, &st));
	EXPECT_EQ(0, st.global.mapped_bytes);
	EXPECT_EQ(0, st.global.resident_bytes);
	EXPECT_EQ(0, st.global.quarantined_bytes);
	EXPECT_EQ(0, st.global.quarantined_ranges);
	EXPECT_EQ(0, st.global.mappings);
	EXPECT_EQ(1, st.global.contexts);
	close(fd);
	gauges_settle_at_zero(&g);
	EXPECT_GAUGES_EQ(g, ((struct gauges){ 0 }));
}

/*
 * What most fixtures hold: a context and a mapping of it (KDEV_PAGES pages,
 * or len bytes with kdev_setup_len), and the global gauges from before,
 * which must read the same again once both are gone (kdev_teardown checks).
 * Setup skips without the device.
 */
struct kdev {
	int fd;
	char *mem;
	size_t len;
	struct gauges before;
};

#define KDEV_PAGES	64

static inline void kdev_setup_len(struct __test_metadata *_metadata, struct kdev *d,
				  size_t len)
{
	d->fd = -1;
	d->mem = NULL;
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
	probes_install();
	gauges_read(&d->before);
	d->len = len;
	d->fd = dev_open();
	ASSERT_LE(0, d->fd) TH_LOG("open: %s", strerror(errno));
	d->mem = dev_map(d->fd, d->len);
	ASSERT_NE(NULL, d->mem) TH_LOG("mmap: %s", strerror(errno));
}

static inline void kdev_setup(struct __test_metadata *_metadata, struct kdev *d)
{
	kdev_setup_len(_metadata, d, KDEV_PAGES * page);
}

/* Unmap and close; everything the test held is given back (settling, for
 * the io_uring requests that let go of the context a moment later). */
static inline void kdev_teardown(struct __test_metadata *_metadata, struct kdev *d)
{
	struct gauges after;

	if (d->mem)
		munmap(d->mem, d->len);
	if (d->fd >= 0)
		close(d->fd);
	gauges_settle_at(&d->before, &after);
	EXPECT_GAUGES_EQ(d->before, after);
}

/* FIXTURE(name) holding a struct kdev d, set up and torn down as above. */
#define KDEV_FIXTURE(name)						\
	FIXTURE(name) {							\
		struct kdev d;						\
	};								\
	FIXTURE_SETUP(name)						\
	{								\
		kdev_setup(_metadata, &self->d);			\
	}								\
	FIXTURE_TEARDOWN(name)						\
	{								\
		kdev_teardown(_metadata, &self->d);			\
	}

/* Lines of the kernel log that are splats; -1 if the log is unreadable. */
static inline int kernel_log_splats(void)
{
	static const char *const pats[] = {
		"BUG:", "WARNING:", "Oops", "general protection", "Call Trace",
	};
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *buf, *line, *save;
	int n = 0, len;

	if (size <= 0)
		return -1;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -1;
	len = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
	if (len < 0) {
		free(buf);
		return -1;
	}
	buf[len] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
			if (strstr(line, pats[i])) {
				n++;
				break;
			}
	free(buf);
	return n;
}

/* ------------------------------------------------------------ the module */

/* The module's reference count from sysfs, or -1 when it cannot be read. */
static inline long module_refcnt(void)
{
	return (long)read_number_file(MODULE_SYSFS "/refcnt");
}

/* Poll until the reference count is want again; the last value read. */
static inline long refcnt_settles_at(long want)
{
	long n = module_refcnt();

	for (int waited = 0; n != want && waited < 5000; waited += 10) {
		usleep(10000);
		n = module_refcnt();
	}
	return n;
}

/* A module parameter, -1 if unreadable; and setting one, 0 or errno. */
static inline long long module_param(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), PARAMS_DIR "%s", name);
	return read_number_file(path);
}

static inline int module_param_set(const char *name, unsigned long long v)
{
	char path[128], text[32];

	snprintf(path, sizeof(path), PARAMS_DIR "%s", name);
	snprintf(text, sizeof(text), "%llu", v);
	return write_text(path, text);
}

static inline int delete_module(const char *name, unsigned int flags)
{
	return (int)syscall(SYS_delete_module, name, flags);
}

static inline int finit_module(int fd, const char *params, unsigned int flags)
{
	return (int)syscall(SYS_finit_module, fd, params, flags);
}

/* Poll until path exists (or no longer does); false after timeout_ms. */
static inline bool wait_for_path(const char *path, bool present, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if ((access(path, F_OK) == 0) == present)
			return true;
		usleep(10000);
	}
	return false;
}

/* ------------------------------------------------------------ io_uring */

/* One IORING_OP_URING_CMD: op with len bytes of arg in the command area. */
static inline void prep_cmd(struct io_uring_sqe *sqe, int fd, uint32_t op, const void *arg,
			    size_t len, uint64_t data)
{
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	sqe->cmd_op = op;
	memcpy((char *)sqe + offsetof(struct io_uring_sqe, cmd), arg, len);
	sqe->user_data = data;
}

/* Why IORING_OP_URING_CMD cannot be used here, or NULL if it can. */
static inline const char *uring_cmd_missing(void)
{
	struct io_uring_probe *probe;
	struct io_uring ring;
	bool ok;

	if (io_uring_queue_init(4, &ring, 0))
		return "no io_uring";
	probe = io_uring_get_probe_ring(&ring);
	ok = probe && io_uring_opcode_supported(probe, IORING_OP_URING_CMD);
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return ok ? NULL : "io_uring has no IORING_OP_URING_CMD";
}

/*
 * Whether the running kernel shows a URING_CMD's driver its whole SQE, so
 * that the module checks the SQE fields io_uring leaves to it (addr, len,
 * buf_index, file_index: reserved, uapi/linux/mheap.h): from 6.5 on. 6.1
 * hands the driver the command area alone (kmod/mheap_compat.h).
 */
static inline bool uring_cmd_sees_whole_sqe(void)
{
	struct utsname u;
	unsigned int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 5);
}

/*
 * Wait for n completions of the commands just submitted on ring, whose
 * user_data are 0 to n - 1: results in res[] (1 until one comes, which no
 * command answers). At most 10 s for each, so that a command that never
 * completes fails the test rather than hangs it; how many came.
 */
static inline unsigned int uring_reap(struct io_uring *ring, unsigned int n, int *res)
{
	struct __kernel_timespec ts = { .tv_sec = 10 };
	struct io_uring_cqe *cqe;
	unsigned int got = 0;

	for (unsigned int i = 0; i < n; i++)
		res[i] = 1;
	while (got < n && !io_uring_wait_cqe_timeout(ring, &cqe, &ts)) {
		if (cqe->user_data < n)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	return got;
}

/* ------------------------------------------------------------ transports */

/*
 * FAULT, RELEASE and STATS by ioctl or through io_uring, for the fixtures
 * whose variants run one test over both (FIXTURE_VARIANT with a bool
 * uring). A vector of ranges is one ioctl, or one linked SQE per range: a
 * failure cancels the ranges after it in both, so "the leading ranges
 * done" means the same. Results are 0 or a positive errno, as by ioctl.
 */
#define KIO_RING	64

struct kio {
	bool uring;
	int fd;
	bool ring_up;
	struct io_uring ring;
};

/* Set io up for fd; NULL, or why the transport cannot be used (a SKIP). */
static inline const char *kio_init(struct kio *io, int fd, bool uring)
{
	const char *missing;

	io->uring = uring;
	io->fd = fd;
	io->ring_up = false;
	if (!uring)
		return NULL;
	missing = uring_cmd_missing();
	if (missing)
		return missing;
	if (io_uring_queue_init(KIO_RING, &io->ring, 0))
		return "no io_uring";
	io->ring_up = true;
	return NULL;
}

static inline void kio_exit(struct kio *io)
{
	if (io->ring_up)
		io_uring_queue_exit(&io->ring);
	io->ring_up = false;
}

/* Submit n SQEs and collect their results by user_data; 0 or an errno. */
static inline int kio_run(struct kio *io, unsigned int n, int *res)
{
	if (io_uring_submit(&io->ring) != (int)n)
		return EIO;
	return uring_reap(&io->ring, n, res) == n ? 0 : ETIMEDOUT;
}

/* FAULT (fault true) or RELEASE n ranges; how many leading ones were done. */
static inline int kio_ranges(struct kio *io, bool fault, const struct mheap_range *r,
			     unsigned int n, unsigned int *done)
{
	unsigned int ok = 0;
	int res[KIO_RING], ret = 0;

	if (!io->uring)
		return ranges_cmd(io->fd, fault ? MHEAP_IOC_FAULT : MHEAP_IOC_RELEASE, r, n,
				  done);
	while (ok < n && !ret) {
		unsigned int k = n - ok < KIO_RING ? n - ok : KIO_RING;

		for (unsigned int i = 0; i < k; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

			prep_cmd(sqe, io->fd, fault ? MHEAP_URING_CMD_FAULT :
				 MHEAP_URING_CMD_RELEASE, &r[ok + i], sizeof(r[0]), i);
			if (i + 1 < k)
				sqe->flags |= IOSQE_IO_LINK;
		}
		ret = kio_run(io, k, res);
		for (unsigned int i = 0; i < k && !ret; i++) {
			if (res[i])
				ret = res[i] < 0 ? -res[i] : EPROTO;
			else
				ok++;
		}
	}
	if (done)
		*done = ok;
	return ret;
}

static inline int kio_fault(struct kio *io, const void *addr, size_t len)
{
	struct mheap_range r = { (uintptr_t)addr, len };

	return kio_ranges(io, true, &r, 1, NULL);
}

static inline int kio_release(struct kio *io, const void *addr, size_t len)
{
	struct mheap_range r = { (uintptr_t)addr, len };

	return kio_ranges(io, false, &r, 1, NULL);
}

/* STATS of the whole struct; 0 or an errno. */
static inline int kio_stats(struct kio *io, struct mheap_stats *st)
{
	struct mheap_uring_stats arg = { .stats = (uintptr_t)st, .size = sizeof(*st) };
	int res, ret;

	if (!io->uring)
		return kstats(io->fd, st);
	memset(st, 0, sizeof(*st));
	prep_cmd(io_uring_get_sqe(&io->ring), io->fd, MHEAP_URING_CMD_STATS, &arg,
		 sizeof(arg), 0);
	ret = kio_run(io, 1, &res);
	if (ret)
		return ret;
	return res < 0 ? -res : res ? EPROTO : 0;
}

/* ------------------------------------------------------------ long runs */

/* A whole number from the environment, dflt if unset. */
static inline unsigned int env_uint(const char *name, unsigned int dflt)
{
	const char *s = getenv(name);

	return s && *s ? (unsigned int)strtoul(s, NULL, 10) : dflt;
}

/* CLOCK_MONOTONIC secs from now. */
static inline struct timespec deadline_in(unsigned int secs)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += secs;
	return t;
}

static inline bool deadline_passed(const struct timespec *end)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > end->tv_sec ||
	       (now.tv_sec == end->tv_sec && now.tv_nsec >= end->tv_nsec);
}

/* Unexpected results from any thread: all counted, the first few kept. */
struct reports {
	pthread_mutex_t lock;
	unsigned long count;
	unsigned int kept;
	char line[8][160];
};

static inline void reports_init(struct reports *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
}

static inline __attribute__((format(printf, 2, 3)))
void reports_add(struct reports *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	r->count++;
	if (r->kept < sizeof(r->line) / sizeof(r->line[0])) {
		va_start(ap, fmt);
		vsnprintf(r->line[r->kept++], sizeof(r->line[0]), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

/* Log the kept reports and expect there were none. */
#define EXPECT_NO_REPORTS(r) do {						for (unsigned int _i = 0; _i < (r)->kept; _i++)					TH_LOG("unexpected: %s", (r)->line[_i]);			EXPECT_EQ(0, (r)->count);					} while (0)

#endif
