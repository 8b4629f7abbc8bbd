/* SPDX-License-Identifier: MIT */
/*
 * The secure heap (MHEAP_SECURE=1): the interface between the heap's hot
 * paths and the mode's own files. secure.c holds the design; in short:
 * small blocks get a canary (secure_canary.h) and are zeroed on free and
 * checked at reuse (secure_slot.h), middle blocks a canary and a delay
 * (secure_middle.c), large and sampled blocks a page-aligned place before
 * a guard page and quarantine on free (secure_large.c), malloc(0) a unique
 * address that faults (secure_zero.c), and faults on any of them a report
 * (secure_report.c).
 *
 * Off by default; the flag is read once, when the heap is set up, before
 * any block exists, and never changes: each hook is one predictable branch.
 */
#ifndef MHEAP_SECURE_H
#define MHEAP_SECURE_H

#include "internal.h"

struct arena_chunk;
struct line;
struct mspan;

/* MHEAP_SECURE, set by mheap_init_slow before the heap is published. */
MH_HIDDEN extern bool mh_secure;

/* Set the mode up: with the heap lock held (nothing here allocates)... */
MH_HIDDEN void secure_init_locked(void);
/* ... and, once the heap is published, the fault report. */
MH_HIDDEN void secure_init(void);
/* From a constructor, never from inside malloc: make backtrace() usable
 * (its first call dlopens libgcc, which inside a malloc called by the
 * dynamic loader trips ld.so's consistency check). Until it has run,
 * guarded blocks get no stacks. */
MH_HIDDEN void secure_stacks_init(void);
/* Whether backtrace() may be called now (secure_stacks_init has run). */
MH_HIDDEN bool secure_stacks_ready(void);

/* The malloc family in the secure mode: malloc and free (and the sized
 * frees, through secure_free_sized) are bound to them at start-up
 * (entry.h), the others test mh_secure (malloc.c). */
MH_HIDDEN void *secure_malloc(size_t size);
MH_HIDDEN void *secure_alloc(size_t size, size_t align, bool zero);
MH_HIDDEN void secure_free(void *p);
MH_HIDDEN void *secure_realloc(void *p, size_t size);
MH_HIDDEN size_t secure_usable_size(const void *p);
/* A sized free: what names the call in its messages (" in free_sized"),
 * aligned whether it gave align (else 1). */
MH_HIDDEN void secure_free_sized(void *p, const char *what, bool aligned, size_t align,
				 size_t size);
/* Abort: a sized free (fn: "free_sized", ...) of p, a block of have bytes,
 * with a size or alignment (aligned: given by the call) it cannot have
 * (malloc_sized.c; both modes word it so). */
MH_HIDDEN MH_NORETURN void sized_free_mismatch(uintptr_t p, const char *fn, bool aligned,
					       size_t align, size_t size, size_t have);

/* The thread is exiting: give back the slots its allocations hold. */
MH_HIDDEN void secure_thread_exit(void);

/* Objects [from, to) of small span s, never handed out in its life, are
 * about to be (mspan_next_free): fault their pages in writable. */
MH_HIDDEN void secure_span_reach(const struct mspan *s, uint32_t from, uint32_t to);

/* A small span of class cls over [base, base + npages pages), whose pages
 * come back from the span cache's small list unzeroed (mheap.c), is about
 * to be made: abort if its bytes past the class's last slot are not zero
 * (a write after free there; its slots are checked as they are handed
 * out). Heap lock held. */
MH_HIDDEN void secure_span_reused(uintptr_t base, uintptr_t npages, unsigned cls);

/* What malloc.c and free.c offer the mode: an object of small class cls; an
 * allocation of the default mode, with its room (the slot or the pages it
 * got); the default mode's checked free, and its free of p, an object of
 * small span s; and p's room if p is an allocated block of the heap
 * (*small its span if it is a small one, else NULL), or 0 with *guarded
 * its chunk if p is in a guarded block's chunk, else an abort naming p
 * (what is appended to the message, as checked_span's). */
MH_HIDDEN void *heap_alloc_small(unsigned cls);
MH_HIDDEN void *heap_alloc_plain(size_t size, size_t align, size_t *room);
/* A large block that realloc moves, placed low as the default mode's
 * realloc places it (room for growth after it more often). */
MH_HIDDEN void *heap_alloc_moved(size_t size, size_t *room);
MH_HIDDEN void heap_free_plain(void *p);
/* A large block realloc moved away from: to the page heap, not the
 * thread's large cache (growth in place needs free runs). */
MH_HIDDEN void heap_free_moved(void *p);
/* p, an allocated object of s, a small span that heap_checked_room found
 * in its life gen, freed; a free of p racing this one is reported naming
 * the call what. */
MH_HIDDEN void heap_free_small(struct mspan *s, void *p, uint64_t gen, const char *what);
/* p, a large block of the heap (heap_alloc_plain), grown in place to
 * hold size bytes, if the pages after it are free; *room its pages then. */
MH_HIDDEN bool heap_grow_plain(void *p, size_t size, size_t *room);
MH_HIDDEN size_t heap_checked_room(uintptr_t p, struct mspan **small, struct arena_chunk **guarded,
				   uint64_t *gen, const char *what);

/* The trailer at the end of a small slot or a middle block's pages: the
 * block's size (low half) and a check word made from it (high half). */
#define TRAILER		8

/* A random word (secure_slot.h: per thread, seeded from a secret). */
MH_HIDDEN uint64_t secure_random(void);

/* Middle blocks (secure_middle.c), between the small classes and
 * MHEAP_SECURE_LARGE: the option read (start-up); whether the block of
 * size bytes about to be allocated is the thread's guarded one; the free
 * of the block of size bytes at p, its pages room bytes, whose canary was
 * checked (claimed against a racing free, zeroed, delayed, then given
 * back checked: to the thread's large cache, or to the page heap if moved,
 * realloc moved it away; a racing free reported naming the call what); a
 * thread's delayed blocks given back at its exit. */
MH_HIDDEN void middle_init(void);
MH_HIDDEN bool middle_sampled(size_t size);
MH_HIDDEN void middle_free(uintptr_t p, size_t size, size_t room, bool moved, const char *what);
MH_HIDDEN void middle_thread_exit(void);

/* Canary bytes (secure_canary.c): fill n bytes at d; how many of the n bytes at d,
 * from the first, are intact. */
MH_HIDDEN void canary_fill(uint8_t *d, size_t n);
MH_HIDDEN size_t canary_intact(const uint8_t *d, size_t n);

/* Guarded blocks (secure_large.c): a block of its own pages, ending at a
 * guard page, quarantined on free (sampled: below MHEAP_SECURE_LARGE,
 * among the latest few). NULL when it cannot be made (the caller falls
 * back to the heap). */
MH_HIDDEN void *guarded_alloc(size_t size, size_t align, bool sampled);
/* One that realloc grows: room for half as much again before the guard. */
MH_HIDDEN void *guarded_alloc_growing(size_t size);
/* realloc of c's block to size in place, if its room holds it. */
MH_HIDDEN bool guarded_resize(struct arena_chunk *c, size_t size);
/* Whether arena chunk c holds a guarded block (rather than an arena's
 * objects). */
MH_HIDDEN bool guarded_holds_block(const struct arena_chunk *c);
/* The size of c's block, if p names it, it is not freed and its canary
 * is intact; else an abort naming the call with what (" in realloc",
 * mh_in_usable_size, ...). */
MH_HIDDEN size_t guarded_checked_size(struct arena_chunk *c, uintptr_t p, const char *what);
/* c's block, if p names it, is freed (its canary checked); else an abort
 * naming the call with what. */
MH_HIDDEN void guarded_free(struct arena_chunk *c, uintptr_t p, const char *what);

/* Zero-size blocks (secure_zero.c): their range reserved (start-up, or a
 * fatal error); whether addr is in it; a unique address in it for an
 * alignment of at most 16, or NULL (none left, or a larger alignment); the
 * check of realloc (what: " in realloc") and a free (what: "", " in
 * free_sized", ...), which abort on an address not given out or freed
 * already. */
MH_HIDDEN void zero_size_init(void);
MH_HIDDEN bool zero_size_owns(uintptr_t addr);
MH_HIDDEN void *zero_size_alloc(size_t align);
MH_HIDDEN void zero_size_check(uintptr_t p, const char *what);
MH_HIDDEN void zero_size_free(uintptr_t p, const char *what);
/* fork: the range's lock taken (prepare), then let go in parent and child. */
MH_HIDDEN void zero_size_fork_prepare(void);
MH_HIDDEN void zero_size_fork_release(void);

/* The fault at addr hit a guarded block (c its chunk, or NULL) or
 * malloc(0)'s memory: write the report (l is scratch) and return true;
 * false when it is none of ours. Async-signal-safe. */
MH_HIDDEN bool secure_fault_report(uintptr_t addr, const struct arena_chunk *c, bool write,
				   struct line *l);

#endif
