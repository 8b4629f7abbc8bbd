// SPDX-License-Identifier: MIT
/*
 * Choosing the fault backend (see fault.h), and the two backends that need
 * no special kernel support: mprotect and none.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fault.h"

/* ------------------------------------------------------------ mprotect */

static int mprotect_probe(void)
{
	return 0;
}

int fault_prepare_nothing(void *base, size_t len)
{
	(void)base;
	(void)len;
	return 0;
}

void fault_unprepare_nothing(void *base, size_t len)
{
	(void)base;
	(void)len;
}

bool fault_protects_all(const struct fault_range *r)
{
	(void)r;
	return true;
}

bool fault_protects_none(const struct fault_range *r)
{
	(void)r;
	return false;
}

/*
 * A refused mprotect is not all or nothing: a range can span several VMAs
 * (huge-page advice splits a chunk, a neighbour with the same flags merges
 * into it), and the kernel changes them one after the other, so running
 * out of VMAs at the split of a later one leaves the earlier ones changed.
 * The range is then set back to what it was, which needs no new VMA where
 * the first call merged nothing (the changed VMAs begin and end at splits
 * made already; a merge frees one), so that a refusal leaves the range as
 * it was: open memory that the caller may give to the page heap, or
 * faulting memory still quarantined. Returns 0 or the refusal's -errno;
 * *back says whether the range is as it was.
 */
static int protect_whole(void *base, size_t len, int prot, int before, bool *back)
{
	int err;

	*back = true;
	if (!mprotect(base, len, prot))
		return 0;
	err = -errno;
	*back = !mprotect(base, len, before);
	return err;
}

unsigned fault_protect(const struct fault_range *r, unsigned n, int *err)
{
	for (unsigned i = 0; i < n; i++) {
		/* Protect first: if the kernel refuses (out of VMAs), the
		 * memory stays as it was and the caller can retry. The
		 * MADV_DONTNEED after it frees the pages, and drops any a
		 * stale access wrote to a moved range (fault_guard.c). */
		bool back;
		int e = protect_whole(r[i].base, r[i].len, PROT_NONE, PROT_READ | PROT_WRITE, &back);

		/* Part of it protected and that part not open again: the
		 * caller would give it to the page heap, where malloc's next
		 * block there would fault. Abort, loudly, instead. */
		if (e && !back)
			mh_fatal("cannot open arena range %p again after a refused mprotect: %s",
				 r[i].base, strerror(-e));
		if (e) {
			*err = e;
			return i;
		}
		madvise(r[i].base, r[i].len, MADV_DONTNEED);
	}
	return n;
}

unsigned fault_unprotect(const struct fault_range *r, unsigned n, int *err)
{
	for (unsigned i = 0; i < n; i++) {
		/* Protected ranges side by side are one VMA: opening one of
		 * them alone splits it, which fails when the VMAs have run
		 * out. The range then still faults, all of it (or, refused
		 * that too, the part opened reads as zero and is nobody's,
		 * the island's release opens it later); the caller goes on. */
		bool back;
		int e = protect_whole(r[i].base, r[i].len, PROT_READ | PROT_WRITE, PROT_NONE, &back);

		if (e) {
			*err = e;
			return i;
		}
	}
	return n;
}

const struct fault_backend fault_backend_mprotect = {
	.name = "mprotect",
	.probe = mprotect_probe,
	.prepare = fault_prepare_nothing,
	.unprepare = fault_unprepare_nothing,
	.fault = fault_protect,
	.release = fault_unprotect,
	.protects = fault_protects_all,
	.faults = true,
	.thp = FAULT_THP_RANGES,
	.remap = true,
};

/* ------------------------------------------------------------ none */

static unsigned none_fault(const struct fault_range *r, unsigned n, int *err)
{
	(void)r;
	(void)err;
	return n;
}

static unsigned none_release(const struct fault_range *r, unsigned n, int *err)
{
	(void)r;
	(void)err;
	return n;
}

const struct fault_backend fault_backend_none = {
	.name = "none",
	.probe = mprotect_probe,
	.prepare = fault_prepare_nothing,
	.unprepare = fault_unprepare_nothing,
	.fault = none_fault,
	.release = none_release,
	.protects = fault_protects_none,
	.faults = false,
	.thp = FAULT_THP_RANGES,
};

/* ------------------------------------------------------------ choice */

static const struct fault_backend *const auto_order[] = {
	&fault_backend_kmod, &fault_backend_guard, &fault_backend_mprotect,
};
static const struct fault_backend *const all_backends[] = {
	&fault_backend_kmod, &fault_backend_guard, &fault_backend_mprotect,
	&fault_backend_none,
};

static const struct fault_backend *chosen;
static mh_lock_t choice_lock = MH_LOCK_INIT;

const struct fault_backend *fault_backend_select(const char *name)
{
	const struct fault_backend *b = NULL;

	if (!strcmp(name, "auto")) {
		for (unsigned i = 0; !b && i < sizeof(auto_order) / sizeof(auto_order[0]); i++)
			if (auto_order[i]->probe() == 0)
				b = auto_order[i];
	} else {
		for (unsigned i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
			if (!strcmp(name, all_backends[i]->name) && all_backends[i]->probe() == 0)
				b = all_backends[i];
	}
	if (b)
		STORE_RELEASE(&chosen, b);
	return b;
}

/* What a backend needs, for the start-up error when the one named in
 * MHEAP_BACKEND does not work: the errno alone ("No such file or
 * directory") does not tell a user what to do. */
static const char *backend_needs(const char *name)
{
	if (!strcmp(name, "kmod"))
		return " (it needs the module loaded, /dev/mheap: modprobe mheap)";
	if (!strcmp(name, "guard"))
		return " (it needs Linux 6.13 or later, MADV_GUARD_INSTALL)";
	return "";
}

static const struct fault_backend *select_from_env(void)
{
	const char *name = mh_option_str(MH_OPT_BACKEND);
	const struct fault_backend *b = fault_backend_select(name);
	if (b)
		return b;
	for (unsigned i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
		if (!strcmp(name, all_backends[i]->name))
			mh_fatal("MHEAP_BACKEND=%s: that backend does not work here%s: %s", name,
				 backend_needs(name), strerror(-all_backends[i]->probe()));
	mh_fatal("MHEAP_BACKEND=%s: unknown backend (auto, kmod, guard, mprotect or none)",
		 name);
}

const struct fault_backend *fault_backend(void)
{
	const struct fault_backend *b = LOAD_ACQUIRE(&chosen);

	if (likely(b))
		return b;
	mh_lock(&choice_lock);
	b = chosen ? chosen : select_from_env();
	mh_unlock(&choice_lock);
	return b;
}

/* Which of guard and mprotect works on this kernel: probed once. */
static const struct fault_backend *anonymous;

const struct fault_backend *fault_block_backend(void)
{
	const struct fault_backend *b = fault_backend(), *a;

	if (b != &fault_backend_kmod)
		return b;
	a = LOAD_ACQUIRE(&anonymous);
	if (unlikely(!a)) {
		a = fault_backend_guard.probe() == 0 ? &fault_backend_guard
						      : &fault_backend_mprotect;
		STORE_RELEASE(&anonymous, a);
	}
	return a;
}

/* ------------------------------------------------------------ fork */

/*
 * The fault layer's locks are held across fork, so that a child finds each
 * free and what it guards whole: choice_lock (the first arena may be
 * probing backends), then the kmod backend's, which its probe takes under
 * choice_lock. One set of handlers takes them all, so that the order does
 * not hang on the order in which constructors register handlers. None of
 * them is held while a lock of the heap or of the arenas is taken, nor
 * taken under one (arenas ask for the backend under arena_lock only once an
 * arena exists, when the choice is made and takes no lock), so their
 * handlers' place among those is free.
 */
MH_DEFAULT_TEXT static void fork_prepare(void)
{
	mh_lock(&choice_lock);
	kmod_fork_prepare();
}

MH_DEFAULT_TEXT static void fork_parent(void)
{
	kmod_fork_parent();
	mh_unlock(&choice_lock);
}

static void fork_child(void)
{
	kmod_fork_child();
	mh_unlock(&choice_lock);
}

/* An explicit MHEAP_BACKEND is checked when the program starts, so a
 * missing backend is reported at once rather than at the first arena. */
__attribute__((constructor(MH_CTOR_FAULT))) static void fault_check_env(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	if (strcmp(mh_option_str(MH_OPT_BACKEND), "auto"))
		(void)fault_backend();
}

const char *mh_backend_name(void)
{
	return fault_backend()->name;
}
