// SPDX-License-Identifier: MIT
/*
 * The kmod backend: arena chunks mapped from /dev/mheap and faulted and
 * released by the module (kmod/, ABI in uapi/linux/mheap.h).
 *
 * probe opens the device once per process (the descriptor is the process's
 * context: its counters, limit and fault events) and checks that the module
 * speaks ABI 1.1 or a later 1.x. prepare maps the device over the chunk's
 * own address range (MAP_SHARED | MAP_FIXED), so the chunk stays where the
 * page heap put it, inside the heap's arena map; unprepare puts ordinary
 * anonymous memory back, with the heap's own flags so that it merges into
 * the heap's mapping again. fault and release are MHEAP_IOC_FAULT and
 * MHEAP_IOC_RELEASE: the module frees the pages and makes every access
 * fault, and one device mapping stays one VMA however many ranges are
 * faulted, so vm.max_map_count never comes into it. When the module's
 * quarantine limit (its own or the system's) is reached, FAULT fails with
 * EDQUOT; that is handed to arena_quarantine.c as *err, which releases its
 * oldest chunks and retries.
 *
 * A batch is one ioctl() with a vector of ranges. With MHEAP_KMOD_IO=uring
 * it goes through io_uring instead, when the kernel takes the module's
 * io_uring commands: one SQE per range, linked so that after a failure the
 * rest are cancelled and "the leading ranges done" means what fault.h says,
 * and one io_uring_enter() for the whole batch. ioctl is the default because
 * it is the cheaper of the two per chunk in a batch of 16 on both kernels
 * (bench-vm, docs/kmod.md "Measured"): both are one system call per batch,
 * and the ring adds an SQE and a CQE per range. The ring is
 * fault_kmod_uring.c's; one ring serves all threads, under a lock. The
 * ioctl path takes no lock at all.
 *
 * fork: the module does not let a child inherit its mappings (the chunks
 * would otherwise be holes in the child's heap, and any later mmap() could
 * land in them before the heap maps over them again). The child handler
 * gives the child a context of its own and maps the device over every
 * prepared chunk again, so the address space stays the heap's, and faults
 * again the chunks that must not be readable: quarantined ones (still
 * caught as use-after-free in the child) and live ones (their contents did
 * not come along; reading zeros instead would be silent corruption). Reuse
 * and ready chunks are left zero-fill: their unused space is all an arena
 * takes from them. The chunks are found in a small registry of prepared
 * ranges kept here, in memory of its own (never the heap's).
 *
 * So a child cannot use the arenas that were live at fork: copying them
 * into the child would have to happen in the parent before every fork
 * (the child has nothing to copy from), a cost no fork-and-exec should pay.
 * (The secure heap's guarded blocks are malloc's memory, which a child
 * must keep: they are never device memory, fault_block_backend.)
 * Instead the child handler notes those chunks in a second table, built
 * once and never changed (so the SIGSEGV handler may read it), and uaf.c
 * reports a touch of one, while it is still live, as "mheap: arena memory
 * lost in fork: ...", naming the address, the arena and the chunk, and the
 * child dies of SIGSEGV. The child may still free those arenas: freeing
 * reads only the arena's bookkeeping, which is on the heap; the active
 * chunk of one is never put on the reuse list (arena.c), whose free space
 * would still fault.
 *
 * Shut chunks. The child's context counts in its user's quarantine share
 * with the parent's, and it faults the live chunks besides, so the module
 * may refuse the child's FAULT (EDQUOT) where the parent's went through.
 * Left zero-fill, a stale pointer would read zeros in the child and fault
 * in the parent. So a chunk the module refuses is made PROT_NONE instead,
 * the whole device mapping (one VMA, nothing to split): "shut", a flag of
 * its registry entry. An access faults as a FAULTed one does, and uaf.c
 * reports it from the chunk's state alone, as use-after-free or as lost in
 * fork; system calls given its addresses get EFAULT, as for any PROT_NONE
 * memory. What the module does not see: it keeps no event of such an
 * access and does not count the chunk in its quarantine (nor in the share
 * that refused it); the library counts it as every quarantined chunk.
 * Afterwards the fault backend answers for a shut chunk itself: faulting
 * it (a live-at-fork arena freed in the child) is done already, with no
 * FAULT that the share would refuse again; releasing it is a RELEASE (which
 * drops any page a forced access, ptrace's, put there) and then
 * mprotect(PROT_READ | PROT_WRITE) of the whole chunk; unprepare maps over
 * it. A part of a shut chunk cannot be released alone (EINVAL: it would
 * split the mapping); only reuse chunks are released in parts, and a
 * live-at-fork chunk never becomes one. While no chunk is shut (every
 * process but such a child) fault and release take no lock, as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "fault_kmod_impl.h"
#include "sysmem.h"

#define KMOD_DEVICE	"/dev/" MHEAP_DEVICE_NAME
#define IOCTL_BATCH	64u

int kmod_dev_fd = -1;			/* the context; -1 until probed */
static dev_t dev_rdev;			/* what kmod_dev_fd must still be */
static ino_t dev_ino;
static int probe_error;			/* why not, once probe failed */
static mh_lock_t dev_lock = MH_LOCK_INIT;	/* probe, and kmod_dev_fd in fork */
static int use_ring;			/* MHEAP_KMOD_IO=uring, read at probe */

/* ------------------------------------------------------------ the device */

/*
 * Open the device and check its version. The descriptor is moved up out of
 * the way of programs that dup2() onto small numbers, and what it is gets
 * noted, so that a program closing it behind our back is caught before a
 * MAP_FIXED mapping of whatever file took its number.
 */
static int device_open(void)
{
	struct mheap_version v;
	struct stat st;
	int fd = open(KMOD_DEVICE, O_RDWR | O_CLOEXEC), high;
	int err;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, MHEAP_IOC_VERSION, &v) || fstat(fd, &st)) {
		err = -errno;
		close(fd);
		return err;
	}
	/* FAULT and friends came with 1.1. */
	if (v.major != MHEAP_VERSION_MAJOR || v.minor < 1) {
		close(fd);
		return -EPROTONOSUPPORT;
	}
	high = fcntl(fd, F_DUPFD_CLOEXEC, 512);
	if (high >= 0) {
		close(fd);
		fd = high;
	}
	dev_rdev = st.st_rdev;
	dev_ino = st.st_ino;
	return fd;
}

/* kmod_dev_fd is still our descriptor of the device. */
static void device_check(void)
{
	struct stat st;

	if (fstat(kmod_dev_fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != dev_rdev ||
	    st.st_ino != dev_ino)
		mh_fatal("descriptor %d of %s was closed or replaced behind mheap's back", kmod_dev_fd,
			 KMOD_DEVICE);
}

/* ------------------------------------------------------------ ioctl */

static unsigned ioctl_ranges(unsigned long cmd, const struct fault_range *r, unsigned n,
			     int *err)
{
	struct mheap_range v[IOCTL_BATCH];
	unsigned done = 0;

	while (done < n) {
		unsigned k = n - done < IOCTL_BATCH ? n - done : IOCTL_BATCH;
		struct mheap_ranges arg = { .ranges = (uintptr_t)v, .nr = k };

		for (unsigned i = 0; i < k; i++) {
			v[i].addr = (uintptr_t)r[done + i].base;
			v[i].len = r[done + i].len;
		}
		if (ioctl(kmod_dev_fd, cmd, &arg)) {
			*err = -errno;
			return done + (arg.done < k ? arg.done : k);
		}
		done += k;
	}
	return n;
}

/*
 * The ioctl path shares nothing between threads but kmod_dev_fd, so it takes no
 * lock: threads freeing arenas at once send their vectors at once. Only
 * the ring (its SQ and CQ, one submitter at a time) is under ring_lock; if
 * it cannot be set up, its batches go by ioctl, still under the lock.
 */
static unsigned kmod_ranges(bool quarantine, const struct fault_range *r, unsigned n,
			    int *err)
{
	unsigned long cmd = quarantine ? MHEAP_IOC_FAULT : MHEAP_IOC_RELEASE;
	unsigned done;

	if (!LOAD_RELAXED(&use_ring))
		return ioctl_ranges(cmd, r, n, err);
	mh_lock(&kmod_ring_lock);
	if (kmod_ring_ready())
		done = kmod_ring_ranges(quarantine ? MHEAP_URING_CMD_FAULT : MHEAP_URING_CMD_RELEASE,
				   r, n, err);
	else
		done = ioctl_ranges(cmd, r, n, err);
	mh_unlock(&kmod_ring_lock);
	return done;
}

/* ------------------------------------------------------------ registry */

/*
 * Prepared chunks by base address: open addressing with linear probing in
 * a table of its own mapping, doubled when half full. Only prepare,
 * unprepare and the fork handler use it, under reg_lock.
 */
struct reg_entry {
	uintptr_t base;		/* 0: empty slot */
	size_t len;
	/* In a child of fork: the module refused to fault the chunk, so it
	 * is PROT_NONE instead ("Shut chunks" at the top). */
	bool shut;
};

static struct reg_entry *reg;
static size_t reg_cap, reg_count;
static mh_lock_t reg_lock = MH_LOCK_INIT;
/* How many entries are shut: 0 outside children whose FAULT was refused,
 * and then fault and release take no lock (written under reg_lock). */
static size_t reg_shut;

static size_t reg_home(uintptr_t base, size_t cap)
{
	return (size_t)(((uint64_t)base >> 12) * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
}

/* The slot holding base, or the empty slot where its probe ends. */
static size_t reg_slot(const struct reg_entry *t, size_t cap, uintptr_t base)
{
	size_t i = reg_home(base, cap);

	while (t[i].base && t[i].base != base)
		i = (i + 1) & (cap - 1);
	return i;
}

static void reg_put(struct reg_entry *t, size_t cap, uintptr_t base, size_t len)
{
	size_t i = reg_slot(t, cap, base);

	t[i].base = base;
	t[i].len = len;
	t[i].shut = false;
}

static struct reg_entry *reg_table(size_t cap)
{
	struct reg_entry *t = mmap(NULL, cap * sizeof(*t), PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return NULL;
	sys_metadata_note(t, cap * sizeof(*t));
	return t;
}

static bool reg_insert(uintptr_t base, size_t len)
{
	if ((reg_count + 1) * 2 > reg_cap) {
		size_t cap = reg_cap ? reg_cap * 2 : 256;
		struct reg_entry *t = reg_table(cap);

		if (!t)
			return false;
		for (size_t i = 0; i < reg_cap; i++)
			if (reg[i].base)
				t[reg_slot(t, cap, reg[i].base)] = reg[i];
		if (reg)
			kmod_meta_unmap(reg, reg_cap * sizeof(*reg));
		reg = t;
		reg_cap = cap;
	}
	reg_put(reg, reg_cap, base, len);
	reg_count++;
	return true;
}

static void reg_remove(uintptr_t base)
{
	size_t mask = reg_cap - 1, i, j, k;

	if (!reg_cap)
		return;
	i = reg_slot(reg, reg_cap, base);
	if (!reg[i].base)
		return;
	/* Backward-shift deletion: no tombstones. */
	if (reg[i].shut)
		STORE_RELAXED(&reg_shut, reg_shut - 1);
	reg[i].base = 0;
	reg_count--;
	for (j = (i + 1) & mask; reg[j].base; j = (j + 1) & mask) {
		k = reg_home(reg[j].base, reg_cap);
		/* The entry at j may move to i if its home is not in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		reg[i] = reg[j];
		reg[j].base = 0;
		i = j;
	}
}

/* ------------------------------------------------------------ backend */

static int kmod_probe(void)
{
	int err = 0;

	mh_lock(&dev_lock);
	if (kmod_dev_fd < 0 && !probe_error) {
		int fd = device_open();

		/* ioctl unless io_uring is asked for (see the top of this file). */
		STORE_RELAXED(&use_ring, !strcmp(mh_option_str(MH_OPT_KMOD_IO), "uring"));
		if (fd >= 0)
			STORE_RELEASE(&kmod_dev_fd, fd);
		else
			probe_error = fd;
	}
	err = kmod_dev_fd >= 0 ? 0 : probe_error;
	mh_unlock(&dev_lock);
	return err;
}

static void *map_device(void *base, size_t len)
{
	return mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, kmod_dev_fd, 0);
}

static int kmod_prepare(void *base, size_t len)
{
	int err = 0;

	device_check();
	mh_lock(&reg_lock);
	if (!reg_insert((uintptr_t)base, len)) {
		err = -ENOMEM;
	} else if (map_device(base, len) == MAP_FAILED) {
		err = -errno;
		reg_remove((uintptr_t)base);
	}
	mh_unlock(&reg_lock);
	/* A failed MAP_FIXED may have unmapped the range already: the heap's
	 * memory must be there again before the span goes back to it. */
	if (err && !sys_map_over(base, len))
		mh_fatal("anonymous memory back over arena chunk %p: %s", base, strerror(errno));
	return err;
}

static void kmod_unprepare(void *base, size_t len)
{
	/* The heap's own flags, so the range merges back into its mapping. */
	if (!sys_map_over(base, len))
		mh_fatal("anonymous memory back over arena chunk %p: %s", base, strerror(errno));
	mh_lock(&reg_lock);
	reg_remove((uintptr_t)base);
	mh_unlock(&reg_lock);
}

/* The shut entry of the chunk at base, or NULL (reg_lock held). */
static struct reg_entry *reg_shut_at(uintptr_t base)
{
	struct reg_entry *e;

	if (!reg_cap)
		return NULL;
	e = &reg[reg_slot(reg, reg_cap, base)];
	return e->base == base && e->shut ? e : NULL;
}

/*
 * Make a range of a shut chunk fault (quarantine) or usable again: faulting
 * it is done already; releasing it makes the whole chunk zero-fill
 * (RELEASE), then readable and writable, which a part of it cannot be (the
 * device mapping does not split). False, with *err, when refused: it still
 * faults.
 */
static bool shut_range(bool quarantine, const struct fault_range *r, int *err)
{
	struct reg_entry *e;
	bool ok = true;

	mh_lock(&reg_lock);
	e = reg_shut_at((uintptr_t)r->base);
	if (e && !quarantine) {
		if (r->len != e->len) {
			*err = -EINVAL;
			ok = false;
		} else if (kmod_ranges(false, r, 1, err) != 1) {
			ok = false;
		} else if (mprotect(r->base, r->len, PROT_READ | PROT_WRITE)) {
			*err = -errno;
			ok = false;
		} else {
			e->shut = false;
			STORE_RELAXED(&reg_shut, reg_shut - 1);
		}
	}
	mh_unlock(&reg_lock);
	return ok;
}

/* Whether the range begins at a shut chunk (a whole chunk, or its head). */
static bool range_shut(const struct fault_range *r)
{
	bool shut;

	mh_lock(&reg_lock);
	shut = reg_shut_at((uintptr_t)r->base) != NULL;
	mh_unlock(&reg_lock);
	return shut;
}

/*
 * FAULT or RELEASE, with shut chunks in this process (a child of fork): the
 * ranges of shut chunks need no command, the others go to the module in
 * runs, in order, so that "the leading ranges done" still holds. A shut
 * chunk changes only in the hands of the thread faulting or releasing it,
 * or in unprepare, so a range's answer holds once looked up.
 */
static unsigned shut_ranges(bool quarantine, const struct fault_range *r, unsigned n,
			    int *err)
{
	unsigned done = 0;

	while (done < n) {
		unsigned k = 0, got;

		while (done + k < n && !range_shut(&r[done + k]))
			k++;
		if (k) {
			got = kmod_ranges(quarantine, r + done, k, err);
			done += got;
			if (got < k)
				return done;
		}
		if (done < n) {
			if (!shut_range(quarantine, &r[done], err))
				return done;
			done++;
		}
	}
	return n;
}

static unsigned kmod_fault(const struct fault_range *r, unsigned n, int *err)
{
	if (LOAD_RELAXED(&reg_shut))
		return shut_ranges(true, r, n, err);
	return kmod_ranges(true, r, n, err);
}

static unsigned kmod_release(const struct fault_range *r, unsigned n, int *err)
{
	if (LOAD_RELAXED(&reg_shut))
		return shut_ranges(false, r, n, err);
	return kmod_ranges(false, r, n, err);
}

/* ------------------------------------------------------------ fork */

MH_DEFAULT_TEXT void kmod_fork_prepare(void)
{
	mh_lock(&dev_lock);
	mh_lock(&reg_lock);
	mh_lock(&kmod_ring_lock);
}

MH_DEFAULT_TEXT void kmod_fork_parent(void)
{
	mh_unlock(&kmod_ring_lock);
	mh_unlock(&reg_lock);
	mh_unlock(&dev_lock);
}

/*
 * The chunks that were live in the parent, in a child (see the top): a
 * table like reg's, with reg's capacity at the fork, filled by the child
 * handler before any other thread exists and never changed afterwards; a
 * later fork builds a new one. NULL when there were none.
 */
static struct reg_entry *left;
static size_t left_cap;

bool kmod_left_in_parent(uintptr_t base)
{
	const struct reg_entry *t = LOAD_ACQUIRE(&left);

	return t && t[reg_slot(t, left_cap, base)].base == base;
}

/* The state of the arena chunk at base; 0 if there is none. */
static uint8_t chunk_state(uintptr_t base)
{
	struct mspan *s = span_of(base);
	struct arena_chunk *c;

	if (!s || LOAD_RELAXED(&s->state) != MSPAN_CHUNK)
		return 0;
	c = LOAD_ACQUIRE(&s->chunk_data);
	return c ? LOAD_RELAXED(&c->state) : 0;
}

/*
 * Make a chunk fault in the child (reg_lock held): FAULT, else, where the
 * module refuses (EDQUOT: the child's context counts in its user's share,
 * which the parent's quarantine fills), PROT_NONE on the whole mapping,
 * which splits nothing. Zero-fill is never left: a stale pointer reading
 * zeros is what the arenas promise not to happen.
 */
static void child_fault(struct reg_entry *e)
{
	struct mheap_range mr = { e->base, e->len };
	struct mheap_ranges arg = { .ranges = (uintptr_t)&mr, .nr = 1 };
	int err;

	if (!ioctl(kmod_dev_fd, MHEAP_IOC_FAULT, &arg))
		return;
	err = errno;
	if (mprotect((void *)e->base, e->len, PROT_NONE))
		mh_fatal("fork: arena chunk %#lx cannot fault in the child: %s refused (%s), "
			 "mprotect too (%s)", (unsigned long)e->base, KMOD_DEVICE, strerror(err),
			 strerror(errno));
	e->shut = true;
	STORE_RELAXED(&reg_shut, reg_shut + 1);
}

void kmod_fork_child(void)
{
	struct reg_entry *inherited = left, *lost = NULL;
	size_t inherited_cap = left_cap;

	if (kmod_dev_fd >= 0) {
		int fd = device_open();

		/* The ring's pages are shared with the parent: drop our copy. */
		kmod_ring_forget();
		if (fd >= 0) {
			close(kmod_dev_fd);
			kmod_dev_fd = fd;
		}
		/* A new mapping is never shut (a grandchild's neither). */
		STORE_RELAXED(&reg_shut, 0);
		for (size_t i = 0; i < reg_cap; i++) {
			if (!reg[i].base)
				continue;
			reg[i].shut = false;
			if (map_device((void *)reg[i].base, reg[i].len) == MAP_FAILED)
				mh_fatal("fork: mapping %s over arena chunk %#lx in the child: %s",
					 KMOD_DEVICE, (unsigned long)reg[i].base, strerror(errno));
			uint8_t state = chunk_state(reg[i].base);

			if (state == CHUNK_QUARANTINED || state == CHUNK_LIVE)
				child_fault(&reg[i]);
			/* Without the table a touch is only an unexplained
			 * SIGSEGV: nothing worse. */
			if (state == CHUNK_LIVE && (lost || (lost = reg_table(reg_cap))))
				reg_put(lost, reg_cap, reg[i].base, reg[i].len);
		}
		left_cap = reg_cap;
		STORE_RELEASE(&left, lost);
		if (inherited)
			kmod_meta_unmap(inherited, inherited_cap * sizeof(*inherited));
	}
	mh_unlock(&kmod_ring_lock);
	mh_unlock(&reg_lock);
	mh_unlock(&dev_lock);
}

const struct fault_backend fault_backend_kmod = {
	.name = "kmod",
	.probe = kmod_probe,
	.prepare = kmod_prepare,
	.unprepare = kmod_unprepare,
	.fault = kmod_fault,
	.release = kmod_release,
	.protects = fault_protects_none,
	.faults = true,
	.thp = FAULT_THP_MAPPING,
};
