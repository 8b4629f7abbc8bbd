/* SPDX-License-Identifier: MIT */
/*
 * Definitions shared by the library's files: geometry of the heap, small
 * helpers for atomics, locks and fatal errors. Nothing here allocates.
 *
 * Geometry (as Go on linux/amd64):
 *   page        8 KiB: the unit of the page heap and of spans;
 *   heap arena  64 MiB: the unit of address-space reservation, each with its
 *               own metadata (struct heap_arena) found through the arena map;
 *   user arena chunk 8 MiB by default: the unit of user-arena allocation.
 */
#ifndef MHEAP_INTERNAL_H
#define MHEAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "mheap.h"	/* the public header, userlib/include/mheap.h */

#define MH_PAGE_SHIFT		13
#define MH_PAGE_SIZE		((size_t)1 << MH_PAGE_SHIFT)
#define MH_ARENA_SHIFT		26
#define MH_ARENA_SIZE		((size_t)1 << MH_ARENA_SHIFT)
#define MH_PAGES_PER_ARENA	(MH_ARENA_SIZE / MH_PAGE_SIZE)

/* Small objects are up to 32 KiB; larger ones get a span of their own. */
#define MH_MAX_SMALL_SIZE	32768
#define MH_NUM_CLASSES		MH_NUM_SIZE_CLASSES
/* The most objects a small span holds: 8-byte objects in one page. */
#define MH_MAX_OBJS_PER_SPAN	(MH_PAGE_SIZE / 8)

/*
 * Metadata that different threads write is kept this many bytes apart: the
 * cores here prefetch cache lines in aligned pairs, so two 64-byte lines of
 * one 128-byte block still pass between the cores of the threads writing
 * them. fixalloc rounds every object to it.
 * Measured: docs/heap.md#metadata-sharing-blocks.
 */
#define MH_SHARING_BLOCK	128

/* User space on x86-64 with 4-level paging is 47 bits. */
#define MH_ADDR_BITS		47

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#define MH_HIDDEN	__attribute__((visibility("hidden")))
#define MH_NORETURN	__attribute__((noreturn))

/*
 * The large zero arrays of the library's static data (the arena index, the
 * user arenas' block table, the no-span map, the secure mode's zero-slot
 * bits) go to .lbss, x86-64's section for large zero data, which the linker
 * places after .bss in the same segment: the small variables written at
 * start-up (the heap's mcentrals and locks, the class tables, the stats)
 * then share a few pages of their own instead of sitting between the
 * arrays, each with a page of its neighbours' written around it. Code
 * reaches them as before (the small code model: the section's name changes
 * where they lie, not how they are addressed). Each array names a section
 * of its own, as .lbss.<name>. Left out under ASan, which instruments no
 * variable placed in a named section. Why: docs/heap.md, "The
 * library's private pages"; figures:
 * docs/heap-pages-log.md#the-librarys-private-pages-and-the-one-word-span-structs-2026-12-07-issue-24.
 *
 * Only where the build asks (MH_LARGE_ZERO_SECTIONS): the shared object,
 * whose own link keeps .lbss a few MiB from its code, and the tests. Not
 * the archive: a program built with -mcmodel=medium has its arrays over
 * 64 KiB in .lbss too, and the linker may place the library's after
 * gigabytes of them, out of the small model's reach ("relocation
 * truncated to fit"; tools/archive-tap.sh, tools/archive_medium.c).
 */
#if defined(MH_LARGE_ZERO_SECTIONS) && defined(__x86_64__) && defined(__GNUC__) && \
	!defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MH_LARGE_ZERO_PLACED	1
#define MH_LARGE_ZERO(name)	__attribute__((section(".lbss." #name)))
#else
#define MH_LARGE_ZERO_PLACED	0
#define MH_LARGE_ZERO(name)
#endif

/*
 * The library's code lies in two groups (the Makefile's COLD_SRCS): first
 * what a default-mode program runs, then the features it never runs (the
 * secure mode, user arenas, the quarantine scan, the heap check, ...), so
 * that the kernel's fault-around, which maps a cached file's pages 64 KiB
 * at a time around a page fault, maps the first group's block only.
 * MH_DEFAULT_TEXT moves a function of a cold file that every process runs
 * all the same (a fork handler, a constructor's helper) to the first:
 * .text.hot.*, which GNU ld's default script puts ahead of all plain
 * .text. It says where the code lies, not how it is compiled (unlike the
 * hot attribute). Why: docs/heap.md, "The library's own pages";
 * selftests/preload_footprint_test.c checks it.
 */
#define MH_DEFAULT_TEXT	__attribute__((section(".text.hot.mh_default")))

/*
 * The library's constructors run in this order, whatever the order of
 * their objects in the link: arena_init first, as the secure mode's
 * allocations take arena chunks; then the backend's and the options'
 * checks, the statistics' and the use-after-free handler's set-up; and
 * last, without a priority, malloc_hooks_init (malloc.c), whose hooks
 * allocate (pthread_key_create, the secure mode's dlopen of libgcc). GCC
 * runs the constructors with a priority first, lowest first. (Without
 * priorities the order was the link's, which the Makefile no longer keeps
 * alphabetical.)
 */
#define MH_CTOR_ARENA		101
#define MH_CTOR_FAULT		102
#define MH_CTOR_OPTIONS		103
#define MH_CTOR_STATS		104
#define MH_CTOR_UAF		105

#define ALIGN_UP(x, a)		(((x) + ((a) - 1)) & ~((uintptr_t)(a) - 1))
#define ALIGN_DOWN(x, a)	((x) & ~((uintptr_t)(a) - 1))
#define IS_POW2(x)		((x) != 0 && ((x) & ((x) - 1)) == 0)

/*
 * Relaxed atomics for fields one thread writes and others only peek at (a
 * span's window, its allocation bitmap). On x86 these are plain moves;
 * they keep the compiler honest and ThreadSanitizer informed.
 */
#define LOAD_RELAXED(p)		__atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_RELAXED(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define LOAD_ACQUIRE(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_RELEASE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
/*
 * Add to a counter only its owner writes and other threads read (relaxed
 * loads). No locked instruction is needed: with one writer, a reader sees
 * the old or the new value of an aligned 8-byte word. On x86-64 it is one
 * add to memory; gcc turns the relaxed load and store of the portable form
 * into three instructions (the free path counts every free).
 * ThreadSanitizer cannot see into asm, so its build keeps the atomic pair.
 */
static inline void owner_add(uint64_t *p, uint64_t v)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	__asm__("addq %1, %0" : "+m"(*p) : "er"(v));
#else
	STORE_RELAXED(p, LOAD_RELAXED(p) + v);
#endif
}
/* owner_add for a 32-bit counter. */
static inline void owner_add32(uint32_t *p, uint32_t v)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	__asm__("addl %1, %0" : "+m"(*p) : "er"(v));
#else
	STORE_RELAXED(p, LOAD_RELAXED(p) + v);
#endif
}

/*
 * Bits set in x. Without -mpopcnt (the x86-64 baseline lacks the
 * instruction) __builtin_popcountll is a call into libgcc's table-driven
 * count, and the classic SWAR sum below is 18 inline instructions. Every
 * x86-64 CPU of the last fifteen years has POPCNT, so where CPUID says so
 * (mh_cpu_popcnt, set by mh_cpu_init as the heap is set up) it is the
 * instruction itself, behind one predictable branch: malloc's slow paths
 * count each window's objects with it (nmalloc, mcache.h), about 15
 * instructions fewer a refill or span change
 * (docs/heap-objects-log.md#instructions-gcc-did-not-need-to-spend-2026-12-07-issue-24).
 * Before mh_cpu_init, the SWAR sum: the same answer.
 */
#if defined(__x86_64__) && !defined(__POPCNT__)
MH_HIDDEN extern bool mh_cpu_popcnt;
#endif
MH_HIDDEN void mh_cpu_init(void);

static inline unsigned mh_popcount(uint64_t x)
{
#ifdef __POPCNT__
	return (unsigned)__builtin_popcountll(x);
#else
#ifdef __x86_64__
	if (likely(LOAD_RELAXED(&mh_cpu_popcnt))) {
		uint64_t n;

		__asm__("popcnt %1, %0" : "=r"(n) : "rm"(x) : "cc");
		return (unsigned)n;
	}
#endif
	x -= (x >> 1) & 0x5555555555555555ull;
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* Locks: pthread mutexes, which fork handlers and TSan understand. */
typedef pthread_mutex_t mh_lock_t;
#define MH_LOCK_INIT PTHREAD_MUTEX_INITIALIZER
static inline void mh_lock(mh_lock_t *l) { pthread_mutex_lock(l); }
static inline void mh_unlock(mh_lock_t *l) { pthread_mutex_unlock(l); }
static inline bool mh_trylock(mh_lock_t *l) { return !pthread_mutex_trylock(l); }
static inline void mh_lock_reinit(mh_lock_t *l) { pthread_mutex_init(l, NULL); }

/*
 * Print "mheap: <message>" on stderr as one line and abort. Formats into a
 * stack buffer and writes with one write(2): safe anywhere, even with the
 * heap's locks held.
 */
MH_HIDDEN MH_NORETURN void mh_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* The same without aborting (warnings, reports). */
MH_HIDDEN void mh_print(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The reports of a pointer the malloc family cannot take, what naming the
 * call after the address as every such report does: "" for free, " in
 * realloc", " in free_sized", ..., mh_in_usable_size. Abort: p is a block
 * freed already ("double free of p", or "use after free of p" for a call
 * that frees nothing: malloc_usable_size); p is no block's start
 * ("invalid free of p", or "invalid pointer p", and why: "" or " (inside
 * an object)", ...). One place words them, whatever layer finds it.
 */
MH_HIDDEN extern const char mh_in_usable_size[];
MH_HIDDEN MH_NORETURN void mh_freed_pointer(uintptr_t p, const char *what);
MH_HIDDEN MH_NORETURN void mh_invalid_pointer(uintptr_t p, const char *what, const char *why);

/* write(2) all of buf, or as much as fd takes. */
MH_HIDDEN void mh_write_all(int fd, const char *buf, size_t n);

/* The MHEAP_* options (options.c). */
#include "options.h"

/* Monotonic clock in nanoseconds. */
MH_HIDDEN uint64_t mh_nanotime(void);

#endif /* MHEAP_INTERNAL_H */
