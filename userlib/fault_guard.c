// SPDX-License-Identifier: MIT
/*
 * The guard backend: MADV_GUARD_INSTALL turns a range into guard pages in
 * place (Linux 6.13+). Any access faults, the pages' memory is freed, and
 * the VMA is neither split nor changed, so there is no vm.max_map_count
 * limit to run into. MADV_GUARD_REMOVE makes the range ordinary zero-fill
 * memory again. Support is probed at run time on a scratch mapping.
 *
 * Two kinds of range are protected with mprotect(PROT_NONE) and
 * MADV_DONTNEED instead, as under the mprotect backend:
 *
 * - Ranges that own page tables: those holding a whole page table's span
 *   (2 MiB with 4 KiB pages), such as every arena chunk. A guard entry
 *   lives in a page table, so a guarded chunk keeps a page table per 2 MiB
 *   (16 KiB per 8 MiB chunk) for as long as it is quarantined, which with
 *   the quarantine scan is up to its cap of 16 GiB (32 MiB of tables);
 *   installing writes an entry per page, removing walks them all again
 *   (about 50 us per chunk) and leaves the tables behind, where the kernel
 *   then maps no huge page. A protected range's tables are freed by the
 *   MADV_DONTNEED on kernels with CONFIG_PT_RECLAIM (6.14+), and opening
 *   it is one mprotect. The price is a VMA per run of quarantined chunks
 *   (bounded by the quarantine's cap; when the kernel refuses one, the
 *   quarantine makes room as it does under mprotect); with huge pages for
 *   arenas a chunk is two VMAs of different advice anyway.
 * - Ranges whose pages were moved away (fault_range.moved: a freed chunk
 *   whose pages went to a warm chunk): empty and already a VMA of their
 *   own, so protecting them costs no split either. The MADV_DONTNEED
 *   drops a page that a stale access may have written between the move
 *   and the fault.
 *
 * Guard entries are for the rest: ranges that share their page tables with
 * live memory (the guard pages after the secure heap's blocks, blocks
 * smaller than a table's span), where a VMA split per range would be the
 * cost. Protected chunks side by side merge into one VMA, so opening one
 * of them alone can fail for want of a VMA: release reports it, and
 * arena_quarantine.c opens the whole run instead.
 * Measured: docs/arenas.md#fault-backends.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"

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

/* Whether r holds the whole span of a page table: 512 entries of a page
 * (a page of 8-byte entries), aligned. */
static bool owns_page_tables(const struct fault_range *r)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), span = page / 8 * page;
	uintptr_t base = (uintptr_t)r->base;

	return ALIGN_UP(base, span) + span <= base + r->len;
}

static bool guard_protects(const struct fault_range *r)
{
	return r->moved || owns_page_tables(r);
}

static unsigned guard_fault(const struct fault_range *r, unsigned n, int *err)
{
	for (unsigned i = 0; i < n; i++) {
		if (guard_protects(r + i)) {
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
	for (unsigned i = 0; i < n; i++) {
		if (guard_protects(r + i)) {
			if (!fault_unprotect(r + i, 1, err))
				return i;
			/* Guard entries outlive mprotect and MADV_DONTNEED:
			 * a secure block's guard page (secure_large.c) still
			 * has its own, removed now that the range is open (so
			 * that page faulted until then). A range without any
			 * has no page tables left to walk. */
			if (!r[i].moved)
				madvise(r[i].base, r[i].len, MADV_GUARD_REMOVE);
			continue;
		}
		if (madvise(r[i].base, r[i].len, MADV_GUARD_REMOVE)) {
			*err = -errno;
			return i;
		}
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
	.protects = guard_protects,
	.faults = true,
	.thp = FAULT_THP_RANGES,
	.remap = true,
};
