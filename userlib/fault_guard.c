// SPDX-License-Identifier: MIT
/*
 * The guard backend: MADV_GUARD_INSTALL turns a range into guard pages in
 * place (Linux 6.13+). Any access faults, the pages' memory is freed, and
 * the VMA is neither split nor changed, so there is no vm.max_map_count
 * limit to run into. MADV_GUARD_REMOVE makes the range ordinary zero-fill
 * memory again. Support is probed at run time on a scratch mapping.
 *
 * Ranges whose pages were moved away (fault_range.moved: a freed chunk whose
 * pages went to a warm chunk) are protected with mprotect(PROT_NONE) instead.
 * Such a range is empty and already a VMA of its own, so protecting it costs
 * no split, while installing guards writes a guard entry for every page and
 * allocates the page tables to hold them: many times slower. The
 * MADV_DONTNEED after it drops a page that a stale access may have written
 * between the move and the fault. Moved-from chunks side by side
 * merge into one protected VMA, as under the mprotect backend, so opening
 * one of them alone can fail for want of a VMA: release reports it, and
 * arena_quarantine.c opens the whole run instead.
 *
 * Huge pages: installing guards splits a huge page mapping into a page table
 * of guard entries, and removing them leaves that table behind, empty. The
 * kernel only maps a huge page where no page table exists, so a released
 * chunk would be refilled in small pages for ever after. MADV_DONTNEED on
 * the empty range lets a kernel with CONFIG_PT_RECLAIM (6.14+) free those
 * tables; elsewhere it costs a cheap walk and changes nothing.
 * Measured: docs/arenas.md#fault-backends.
 */
#include <errno.h>
#include <sys/mman.h>

#include "fault.h"
#include "sysmem.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

static int guard_probe(void)
{
	long page = 4096;
	void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int err = 0;

	if (p == MAP_FAILED)
		return -errno;
	if (madvise(p, (size_t)page, MADV_GUARD_INSTALL))
		err = -errno;
	munmap(p, (size_t)page);
	return err;
}

static unsigned guard_fault(const struct fault_range *r, unsigned n, int *err)
{
	for (unsigned i = 0; i < n; i++) {
		if (r[i].moved) {
			/* As the mprotect backend: refused, the range is
			 * untouched and the caller retries. */
			if (!fault_protect(r + i, 1, err))
				return i;
			continue;
		}
		if (madvise(r[i].base, r[i].len, MADV_GUARD_INSTALL)) {
			*err = -errno;
			return i;
		}
	}
	return n;
}

static unsigned guard_release(const struct fault_range *r, unsigned n, int *err)
{
	size_t huge = sys_thp_size();

	for (unsigned i = 0; i < n; i++) {
		if (r[i].moved) {
			if (!fault_unprotect(r + i, 1, err))
				return i;
			continue;
		}
		if (madvise(r[i].base, r[i].len, MADV_GUARD_REMOVE)) {
			*err = -errno;
			return i;
		}
		/* Free the emptied page tables (see the top); only a range
		 * that can hold a huge page needs it. */
		if (huge && r[i].len >= huge)
			madvise(r[i].base, r[i].len, MADV_DONTNEED);
	}
	return n;
}

const struct fault_backend fault_backend_guard = {
	.name = "guard",
	.probe = guard_probe,
	.prepare = fault_prepare_nothing,
	.unprepare = fault_unprepare_nothing,
	.fault = guard_fault,
	.release = guard_release,
	.faults = true,
	.thp = FAULT_THP_RANGES,
	.remap = true,
};
