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
/* Ready memory outside the heap for metadata (zeroed). */
MH_HIDDEN void *sys_alloc(size_t size);
/* Return ready memory's pages to the OS; the range stays mapped, reads zero. */
MH_HIDDEN void sys_release(void *p, size_t size);
MH_HIDDEN void sys_free(void *p, size_t size);

/* Bytes mapped for metadata so far (stats). */
MH_HIDDEN uint64_t sys_metadata_bytes(void);

#endif
