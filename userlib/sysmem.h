/* SPDX-License-Identifier: MIT */
/*
 * The operating system's memory, in the four states Go names in mem.go:
 *   reserved  address space mapped PROT_NONE, no memory behind it;
 *   ready     readable and writable, faulted in on first touch;
 *   released  ready but handed back with MADV_DONTNEED (reads as zero);
 *   unmapped  given back entirely.
 * Every call that can fail returns false/NULL with errno set, never aborts:
 * out of memory is the caller's to report.
 */
#ifndef MHEAP_SYSMEM_H
#define MHEAP_SYSMEM_H

#include "internal.h"

/* Reserve size bytes exactly at hint (MAP_FIXED_NOREPLACE); NULL if taken. */
MH_HIDDEN void *sys_reserve_at(void *hint, size_t size);
/* Reserve size bytes anywhere, aligned to align. */
MH_HIDDEN void *sys_reserve_aligned(size_t size, size_t align);
/* Make reserved memory ready (read/write). */
MH_HIDDEN bool sys_map(void *p, size_t size);
/* Whether the kernel's overcommit policy would grant size bytes of memory
 * that counts against it (sysmem.c): the heap's own mappings do not. */
MH_HIDDEN bool sys_could_commit(size_t size);
/* Fresh ready memory over a range of the heap, with the heap's own flags
 * (MAP_FIXED: whatever was there, or nothing, is replaced; it reads zero). */
MH_HIDDEN bool sys_map_over(void *p, size_t size);
/* Ready memory outside the heap for metadata (zeroed). */
MH_HIDDEN void *sys_alloc(size_t size);
/* Return ready memory's pages to the OS; the range stays mapped, reads zero. */
MH_HIDDEN void sys_release(void *p, size_t size);
MH_HIDDEN void sys_free(void *p, size_t size);
/* Whether at least enough bytes of [p, p + size) are resident (mincore;
 * false when the kernel refuses). p is page aligned. */
MH_HIDDEN bool sys_resident_at_least(const void *p, size_t size, size_t enough);

/*
 * Transparent huge pages for ranges the caller picks (arena chunks; see the
 * top of sysmem.c). sys_thp_size() is the PMD huge page size when THP can be
 * asked for with madvise here, else 0; probed once, at the first call.
 * sys_thp_default() says whether ranges nobody advised get huge pages anyway
 * (THP "always"). sys_thp_advise() sets MADV_HUGEPAGE (huge) or
 * MADV_NOHUGEPAGE on [p, p + len); false when the kernel refused (say, out
 * of VMAs), which only costs speed or memory, never correctness.
 */
MH_HIDDEN size_t sys_thp_size(void);
MH_HIDDEN bool sys_thp_default(void);
MH_HIDDEN bool sys_thp_advise(void *p, size_t len, bool huge);

/*
 * The metadata registry (see sysmem.c): sys_alloc notes its ranges, other
 * mappings of the allocator's own (kmod's tables and rings) are noted and
 * forgotten by their owners. sys_metadata_lock gives the ranges, sorted by
 * base, and holds the registry's lock (a leaf: taken after every other
 * allocator lock) until sys_metadata_unlock: the quarantine scan skips them.
 */
struct sys_range {
	uintptr_t base, limit;
};
MH_HIDDEN void sys_metadata_note(void *p, size_t size);
MH_HIDDEN void sys_metadata_forget(void *p, size_t size);
MH_HIDDEN size_t sys_metadata_lock(const struct sys_range **ranges);
MH_HIDDEN void sys_metadata_unlock(void);

/* The start of a small file (sysfs, procfs), up to len - 1 bytes,
 * NUL-terminated; false if unreadable. Raw system calls: stdio would
 * allocate, and callers run inside malloc or with the world stopped. */
MH_HIDDEN bool sys_read_file(const char *path, char *buf, size_t len);

/* Bytes mapped for metadata so far (stats). */
MH_HIDDEN uint64_t sys_metadata_bytes(void);

#endif
