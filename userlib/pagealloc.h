/* SPDX-License-Identifier: MIT */
/*
 * The page allocator: which pages of the heap are free, and which free pages
 * have been returned to the OS. See pagealloc.c for the design.
 * All functions run under the heap lock.
 */
#ifndef MHEAP_PAGEALLOC_H
#define MHEAP_PAGEALLOC_H

#include "arenamap.h"

struct pa_result {
	uintptr_t base;		/* first byte, 0 when nothing fits */
	uintptr_t released;	/* pages of the run that had been released */
	bool needzero;		/* some page may hold old data */
};

/* Mark a new arena's pages free and released (fresh mmap memory). */
MH_HIDDEN void pa_arena_init(struct heap_arena *ha);
/* Where a run of npages, its first page number a multiple of align_pages
 * (a power of two), would go; 0 if no free run can hold it. Low: the
 * lowest-addressed free run that can (first fit). High: the highest-
 * addressed one, the pages taken from its top. */
MH_HIDDEN uintptr_t pa_find(uintptr_t npages, uintptr_t align_pages, bool high);
/* Such a run, marked in use. */
MH_HIDDEN struct pa_result pa_alloc(uintptr_t npages, uintptr_t align_pages, bool high);
/* Whether free pages [base, base + npages) are all resident (none released). */
MH_HIDDEN bool pa_resident(uintptr_t base, uintptr_t npages);
/* Mark exactly pages [base, base + npages) in use if they are all free. */
MH_HIDDEN bool pa_alloc_at(uintptr_t base, uintptr_t npages, struct pa_result *res);
/*
 * Chunks for the per-thread page caches (pagecache.c): aligned runs of
 * PA_CHUNK_TAKE_PAGES pages, a power of two, so that a chunk's bits lie in
 * one allocation-bitmap word. pa_chunk_take takes every free page of the
 * chunk that holds the lowest free page (0 when no page is free) and
 * returns the chunk's base and which of its pages it took (*free, bit i
 * for page i of the chunk); they are marked in use but still count as free
 * pages and keep their scavenged bits. pa_chunk_alloc makes taken pages
 * [base, base + npages) a real allocation (counters and scavenged bits, as
 * pa_alloc); pa_chunk_return gives the taken pages still in free back (none: a no-op).
 */
#define PA_CHUNK_TAKE_PAGES	16	/* 128 KiB; pagecache.c says why */
MH_HIDDEN uintptr_t pa_chunk_take(uint64_t *free);
MH_HIDDEN struct pa_result pa_chunk_alloc(uintptr_t base, uintptr_t npages);
MH_HIDDEN void pa_chunk_return(uintptr_t base, uint64_t free);
/* Free a run; released: its pages are known not resident (they read zero). */
MH_HIDDEN void pa_free(uintptr_t base, uintptr_t npages, bool released);
/* Return up to npages free, resident pages to the OS, highest addresses
 * first; returns how many were released. */
MH_HIDDEN uintptr_t pa_scavenge(uintptr_t npages);

/* Page counts, exact under the heap lock. */
MH_HIDDEN extern uint64_t pa_total_pages;	/* all pages of all arenas */
MH_HIDDEN extern uint64_t pa_free_pages;	/* free pages */
MH_HIDDEN extern uint64_t pa_released_pages;	/* free pages returned to the OS */

/* Summary of bits [from, from + len) of a bitmap (exposed for tests). */
MH_HIDDEN struct pa_sum pa_summarize(const uint64_t *bits, unsigned from, unsigned len);

#endif
