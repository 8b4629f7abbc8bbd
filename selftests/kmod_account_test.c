// SPDX-License-Identifier: GPL-2.0
/*
 * Who pays for quarantine on /dev/mheap (ABI 1.2), as a kselftest.
 *
 * Without the module every test reports SKIP with the reason; with it loaded
 * (the VM's "kmod" suite, run as root) they pin down:
 *  - each user (real uid of the opener) has its own quarantine share, the
 *    module parameter quarantine_limit_per_user: a user that has used all of
 *    it gets EDQUOT, and another user's FAULT still succeeds;
 *  - MHEAP_IOC_STATS gives the counters of the caller's user, summed over
 *    its contexts, and sysfs how many users there are;
 *  - the module parameters refuse values that make no sense (EINVAL) and
 *    keep the value they had; the global limit set by ioctl likewise.
 * The users are children of the test that switch to uid 1000 and 1001 with
 * setresuid(), so the tests need root (in the VM they have it).
 */
#define _GNU_SOURCE
#include <grp.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

#define NOT_ROOT	"switching users needs root"

#define UID_A	1000
#define UID_B	1001

/* ------------------------------------------------------------ users */

/*
 * Quarantine all the caller's user may: whole mappings first, then halves
 * of what is left, down to one page, until even one page gets EDQUOT.
 * 0 with the bytes it holds in *held, or the first other errno.
 */
static int fill_share(int fd, unsigned long long *held)
{
	size_t len = MHEAP_MAP_MAX, off = MHEAP_MAP_MAX;
	int maps = 0, err;
	char *m = NULL;

	*held = 0;
	while (len >= page) {
		if (off + len > MHEAP_MAP_MAX) {
			/* 4 whole mappings: more than any share here. */
			if (maps++ == 4)
				return E2BIG;
			m = dev_map(fd, MHEAP_MAP_MAX);
			if (!m)
				return errno;
			off = 0;
		}
		err = kfault(fd, m + off, len);
		if (err == EDQUOT) {
			len /= 2;
			continue;
		}
		if (err)
			return err;
		off += len;
		*held += len;
	}
	return 0;
}

/* What a holder did, as it tells its parent. */
struct report {
	int err;			/* of switching user, opening, FAULT */
	int more;			/* of one more page in a second context */
	unsigned long long held;	/* bytes quarantined in the first */
	struct mheap_stats st;		/* STATS of the second context */
};

/* A child that holds quarantine as another user until it is killed. */
struct holder {
	pid_t pid;
	struct report rep;
};

/* In the child: become uid, quarantine bytes (0: all of its share). */
static void hold(uid_t uid, size_t bytes, struct report *r)
{
	int fd, fd2;
	char *m;

	if (setgroups(0, NULL) || setresgid(uid, uid, uid) ||
	    setresuid(uid, uid, uid)) {
		r->err = errno;
		return;
	}
	fd = dev_open();
	fd2 = dev_open();
	if (fd < 0 || fd2 < 0) {
		r->err = errno;
		return;
	}
	if (!bytes) {
		r->err = fill_share(fd, &r->held);
	} else {
		m = dev_map(fd, bytes);
		r->err = m ? kfault(fd, m, bytes) : errno;
		r->held = r->err ? 0 : bytes;
	}
	if (r->err)
		return;
	m = dev_map(fd2, page);
	r->more = m ? kfault(fd2, m, page) : errno;
	if (kstats(fd2, &r->st))
		r->err = errno;
}

/* Start a holder and wait for its report; 0, or -1 if it never came. */
static int holder_start(struct holder *h, uid_t uid, size_t bytes)
{
	int rep[2];
	ssize_t n;

	memset(h, 0, sizeof(*h));
	if (pipe(rep))
		return -1;
	fflush(NULL);
	h->pid = fork();
	if (h->pid < 0)
		return -1;
	if (h->pid == 0) {
		struct report r;

		memset(&r, 0, sizeof(r));
		close(rep[0]);
		hold(uid, bytes, &r);
		if (write(rep[1], &r, sizeof(r)) != sizeof(r))
			_exit(1);
		/* Keep the quarantine until killed. */
		for (;;)
			pause();
	}
	close(rep[1]);
	n = read(rep[0], &h->rep, sizeof(h->rep));
	close(rep[0]);
	return n == sizeof(h->rep) ? 0 : -1;
}

/* End the holder, its quarantine with it; true if it was still holding. */
static bool holder_stop(struct holder *h)
{
	int status = 0;

	if (h->pid <= 0)
		return false;
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &status, 0);
	h->pid = 0;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

FIXTURE(users) {
	struct holder a, b;
	long long users_before;
};

FIXTURE_SETUP(users)
{
	if (access(DEV_PATH, F_OK))
		SKIP_SETUP(NO_DEVICE);
	if (geteuid() != 0)
		SKIP_SETUP(NOT_ROOT);
	self->users_before = read_number_file(SYSFS_DIR "users");
}

FIXTURE_TEARDOWN(users)
{
	EXPECT_TRUE(holder_stop(&self->a));
	EXPECT_TRUE(holder_stop(&self->b));
	/* The users went with their last context. */
	EXPECT_EQ(self->users_before, read_number_file(SYSFS_DIR "users"));
}

TEST_F(users, a_user_at_its_share_leaves_other_users_theirs)
{
	ASSERT_EQ(0, holder_start(&self->a, UID_A, 0));
	ASSERT_EQ(0, self->a.rep.err) TH_LOG("%s", strerror(self->a.rep.err));
	/* All of its share, and not one page more, in any of its contexts. */
	EXPECT_EQ(read_number_file(SYSFS_DIR "quarantine_limit_per_user"),
		  self->a.rep.held);
	EXPECT_EQ(EDQUOT, self->a.rep.more);

	/* Another user quarantines as if the first were not there. */
	ASSERT_EQ(0, holder_start(&self->b, UID_B, page));
	EXPECT_EQ(0, self->b.rep.err) TH_LOG("%s", strerror(self->b.rep.err));
	EXPECT_EQ(0, self->b.rep.more) TH_LOG("%s", strerror(self->b.rep.more));
}

TEST_F(users, stats_give_the_callers_user_and_sysfs_counts_users)
{
	const struct mheap_counters *ua = &self->a.rep.st.user;
	const struct mheap_counters *ub = &self->b.rep.st.user;

	ASSERT_EQ(0, holder_start(&self->a, UID_A, 3 * page));
	ASSERT_EQ(0, holder_start(&self->b, UID_B, 5 * page));
	ASSERT_EQ(0, self->a.rep.err);
	ASSERT_EQ(0, self->b.rep.err);
	ASSERT_EQ(0, self->a.rep.more);
	ASSERT_EQ(0, self->b.rep.more);

	/* self: the context asked; user: both contexts of its user. */
	EXPECT_EQ(page, self->a.rep.st.self.quarantined_bytes);
	EXPECT_EQ(1, self->a.rep.st.self.users);
	EXPECT_EQ(4 * page, ua->quarantined_bytes);
	EXPECT_EQ(2, ua->quarantined_ranges);
	EXPECT_EQ(4 * page, ua->mapped_bytes);
	EXPECT_EQ(2, ua->mappings);
	EXPECT_EQ(2, ua->contexts);
	EXPECT_EQ(1, ua->users);
	EXPECT_EQ(read_number_file(SYSFS_DIR "quarantine_limit_per_user"),
		  ua->quarantine_limit);
	EXPECT_EQ(read_number_file(PARAMS_DIR "quarantine_limit_per_user"),
		  ua->quarantine_limit);
	EXPECT_EQ(6 * page, ub->quarantined_bytes);
	EXPECT_EQ(2, ub->contexts);
	EXPECT_EQ(1, ub->users);

	/* Both users are there, for the holders and for an administrator. */
	EXPECT_LE(self->users_before + 2, (long long)self->b.rep.st.global.users);
	EXPECT_EQ(self->users_before + 2, read_number_file(SYSFS_DIR "users"));
	EXPECT_LE(10 * page, self->b.rep.st.global.quarantined_bytes);
}

TEST_F(users, the_share_is_the_parameter_quarantine_limit_per_user)
{
	unsigned long long saved = read_number_file(PARAMS_DIR "quarantine_limit_per_user");
	char text[32];

	ASSERT_NE(0, saved);
	snprintf(text, sizeof(text), "%zu", 4 * page);
	ASSERT_EQ(0, write_text(PARAMS_DIR "quarantine_limit_per_user", text));

	ASSERT_EQ(0, holder_start(&self->a, UID_A, 3 * page));
	EXPECT_EQ(0, self->a.rep.err);
	EXPECT_EQ(0, self->a.rep.more);
	EXPECT_EQ(4 * page, self->a.rep.st.user.quarantine_limit);
	ASSERT_EQ(0, holder_start(&self->b, UID_B, 4 * page));
	EXPECT_EQ(0, self->b.rep.err);
	EXPECT_EQ(EDQUOT, self->b.rep.more);

	snprintf(text, sizeof(text), "%llu", saved);
	EXPECT_EQ(0, write_text(PARAMS_DIR "quarantine_limit_per_user", text));
}

/* ------------------------------------------------------------ parameters */

FIXTURE(param) {
	char path[128];
	char before[64];
};

FIXTURE_VARIANT(param) {
	const char *name;
	const char *bad;
};

FIXTURE_VARIANT_ADD(param, global_limit_zero) {
	.name = "quarantine_limit", .bad = "0",
};
FIXTURE_VARIANT_ADD(param, global_limit_below_a_page) {
	.name = "quarantine_limit", .bad = "1",
};
FIXTURE_VARIANT_ADD(param, global_limit_not_a_number) {
	.name = "quarantine_limit", .bad = "lots",
};
FIXTURE_VARIANT_ADD(param, user_limit_zero) {
	.name = "quarantine_limit_per_user", .bad = "0",
};
FIXTURE_VARIANT_ADD(param, user_limit_below_a_page) {
	.name = "quarantine_limit_per_user", .bad = "1",
};
FIXTURE_VARIANT_ADD(param, events_zero) {
	.name = "events_per_context", .bad = "0",
};
FIXTURE_VARIANT_ADD(param, events_over_65536) {
	.name = "events_per_context", .bad = "65537",
};
FIXTURE_VARIANT_ADD(param, events_negative) {
	.name = "events_per_context", .bad = "-1",
};

/* The whole text of the parameter's file. */
static void param_read(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (!f)
		return;
	if (!fgets(buf, (int)size, f))
		buf[0] = 0;
	fclose(f);
}

FIXTURE_SETUP(param)
{
	if (access(DEV_PATH, F_OK))
		SKIP_SETUP(NO_DEVICE);
	if (geteuid() != 0)
		SKIP_SETUP("writing module parameters needs root");
	snprintf(self->path, sizeof(self->path), PARAMS_DIR "%s", variant->name);
	param_read(self->path, self->before, sizeof(self->before));
	ASSERT_NE(0, self->before[0]) TH_LOG("%s unreadable", self->path);
}

FIXTURE_TEARDOWN(param)
{
}

TEST_F(param, a_bad_value_is_einval_and_keeps_the_old_one)
{
	int err = write_text(self->path, variant->bad);
	char after[64];

	EXPECT_EQ(EINVAL, err);
	param_read(self->path, after, sizeof(after));
	EXPECT_STREQ(self->before, after);
	/* Taken after all: put the old value back for the tests after this. */
	if (!err)
		write_text(self->path, self->before);
}

TEST(a_global_limit_below_a_page_is_refused_by_ioctl_too)
{
	struct mheap_limit lim = { .bytes = page - 1, .flags = MHEAP_LIMIT_GLOBAL };
	unsigned long long before = read_number_file(PARAMS_DIR "quarantine_limit");
	int fd;

	if (access(DEV_PATH, F_OK))
		SKIP(return, NO_DEVICE);
	if (geteuid() != 0)
		SKIP(return, "setting the global limit needs root");
	fd = dev_open();
	ASSERT_LE(0, fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, MHEAP_IOC_SET_LIMIT, &lim));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(before, read_number_file(PARAMS_DIR "quarantine_limit"));
	/* Taken after all: put the old value back for the tests after this. */
	lim.bytes = before;
	if (!errno)
		ioctl(fd, MHEAP_IOC_SET_LIMIT, &lim);
	close(fd);
}

TEST_HARNESS_MAIN
