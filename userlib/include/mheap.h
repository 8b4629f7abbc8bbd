/* SPDX-License-Identifier: MIT */
/*
 * mheap: Go's runtime allocator rebuilt as a C library, with Go's user arenas
 * made safe: a freed arena faults on access and its address space is kept in
 * quarantine instead of being reused.
 *
 * Two halves share one page heap:
 *  - the general heap (mh_malloc and friends): size-classed spans cached per
 *    thread, explicit free, malloc-compatible semantics;
 *  - user arenas (mh_arena_*): bump allocation into 8 MiB chunks, freed in
 *    bulk, faulting after free.
 *
 * Everything here is thread-safe unless noted. Environment variables read at
 * start-up are listed in README.md.
 */
#ifndef MHEAP_H
#define MHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MHEAP_API __attribute__((visibility("default")))

/* --------------------------------------------------------------- version */

/*
 * The library's version, in this one place (the Makefile reads it from here
 * for the shared object's file name, its SONAME libmheap.so.MAJOR and
 * mheap.pc). Not the kernel module's ABI version, which is MHEAP_VERSION_*
 * in <linux/mheap.h>.
 */
#define MH_VERSION_MAJOR 0
#define MH_VERSION_MINOR 4
#define MH_VERSION_PATCH 0
#define MH_VERSION_STR_(x) #x
#define MH_VERSION_STR(x) MH_VERSION_STR_(x)
/* "0.4.0" */
#define MH_VERSION MH_VERSION_STR(MH_VERSION_MAJOR) "." \
	MH_VERSION_STR(MH_VERSION_MINOR) "." MH_VERSION_STR(MH_VERSION_PATCH)
/* 400 for 0.4.0: comparable with < and >, as in #if MH_VERSION_NUMBER >= 400 */
#define MH_VERSION_NUMBER \
	(MH_VERSION_MAJOR * 10000 + MH_VERSION_MINOR * 100 + MH_VERSION_PATCH)

/*
 * The version of the library the program runs with (MH_VERSION is that of
 * the header it was compiled with; they differ when the shared object was
 * upgraded under it).
 */
MHEAP_API const char *mh_version(void);

/* ------------------------------------------------------------------ heap */

/*
 * The malloc family. Semantics follow glibc: mh_malloc(0) returns a unique
 * pointer; failures return NULL with errno = ENOMEM; mh_free(NULL) does
 * nothing. Freeing a pointer the heap did not hand out, or freeing twice,
 * aborts with a one-line "mheap: ..." message naming the address.
 */
MHEAP_API void *mh_malloc(size_t size);
MHEAP_API void *mh_calloc(size_t n, size_t size);
MHEAP_API void *mh_realloc(void *p, size_t size);
/* Any power-of-two alignment; size need not be a multiple of it. */
MHEAP_API void *mh_aligned_alloc(size_t align, size_t size);
MHEAP_API void mh_free(void *p);
MHEAP_API size_t mh_usable_size(const void *p);

/* Number of small size classes, class 0 (large objects) included. Before
 * 0.4.0 there were 68 (no 40- and 56-byte classes) and by_class below was
 * that much shorter: mh_stats_read gives a caller built against such a
 * header the layout it knows. */
#define MH_NUM_SIZE_CLASSES 70

/* Per size class counters; class 0 counts objects above 32 KiB. */
struct mh_size_class_stats {
	uint64_t size;		/* object size of the class (0 for class 0) */
	uint64_t mallocs;	/* objects allocated, cumulative */
	uint64_t frees;		/* objects freed, cumulative */
};

/*
 * A snapshot of the heap, named after Go's runtime.MemStats. Byte counts of
 * the page heap are exact at the time of the call; object counters are summed
 * over all threads' caches without stopping them, so they can lag by the
 * operations in flight.
 *
 * The structure grows at its end only (but once: 0.4.0's by_class has two
 * more entries, see MH_NUM_SIZE_CLASSES), and its first field says how much
 * of it the caller has: set size to sizeof(struct mh_stats) (MH_STATS_INIT
 * does) before mh_stats_read.
 */
struct mh_stats {
	size_t size;		/* in: the caller's sizeof; out: bytes filled */

	/* Page heap. heap_sys = heap_inuse + heap_idle. */
	uint64_t heap_sys;	/* address space reserved for the heap */
	uint64_t heap_inuse;	/* bytes in spans in use (objects or chunks) */
	uint64_t heap_idle;	/* bytes in free pages */
	uint64_t heap_released;	/* part of heap_idle returned to the OS */
	uint64_t heap_alloc;	/* bytes of live objects (small and large) */
	uint64_t mallocs;	/* objects allocated, cumulative */
	uint64_t frees;		/* objects freed, cumulative */
	uint64_t metadata_sys;	/* bytes mapped for the allocator's own use */
	uint64_t heap_arenas;	/* 64 MiB heap arenas reserved */
	uint64_t scavenged_bytes; /* bytes returned to the OS, cumulative */
	uint64_t threads_cached; /* threads that own a cache now */
	struct mh_size_class_stats by_class[MH_NUM_SIZE_CLASSES];

	/* User arenas (see below). */
	uint64_t arenas_live;		/* arenas created and not yet freed */
	uint64_t arena_chunks_live;	/* chunks owned by live arenas */
	uint64_t arena_chunks_reuse;	/* partly used chunks on the reuse list */
	uint64_t arena_chunks_quarantined; /* faulting chunks held back */
	uint64_t arena_chunks_ready;	/* chunks out of quarantine, reusable */
	uint64_t arena_quarantined_bytes; /* address space held in quarantine */
	uint64_t arena_faults_caught;	/* use-after-free faults reported */
	uint64_t arena_releases_budget;	/* chunks released early by the budget */
	uint64_t arena_releases_enomem;	/* chunks released early on ENOMEM/EDQUOT */
	uint64_t arena_chunks_warm;	/* freed chunks' pages moved, resident, reusable */

	/* The quarantine scan (MHEAP_QUARANTINE_SCAN), cumulative. */
	uint64_t quarantine_scans;	/* scans of the process for pointers */
	uint64_t quarantine_scans_incomplete; /* could not stop a thread: all kept */
	uint64_t quarantine_scan_bytes;	/* root bytes read */
	uint64_t quarantine_scan_ns;	/* time in scans */
	uint64_t quarantine_scan_max_pause_ns; /* longest the other threads were stopped */
	uint64_t arena_chunks_kept;	/* chunks a scan found a pointer into (per scan) */
	uint64_t arena_releases_scan;	/* chunks released: no pointer found */
	uint64_t arena_releases_referenced; /* released by the cap, pointed into */
};

/* Size of struct mh_stats in 0.2.0, the first version with the size field.
 * Fields were appended after it (1872 bytes before 0.4.0); 0.4.0's by_class
 * has two more classes (1920). */
#define MH_STATS_SIZE_V1 1808

/* struct mh_stats st = MH_STATS_INIT; sets the size, zeroes the rest. In
 * C++ a value-initialised copy, as designated initialisers are C++20's
 * and g++ -Wextra warns of every field they leave out. */
#ifdef __cplusplus
#define MH_STATS_INIT ([] { struct mh_stats st_ = {}; st_.size = sizeof(st_); return st_; }())
#else
#define MH_STATS_INIT { .size = sizeof(struct mh_stats) }
#endif

/*
 * Fill *st with a snapshot: the first min(st->size, the library's own
 * sizeof(struct mh_stats)) bytes, and set st->size to that. A program built
 * against an older, shorter header gets its prefix (before 0.4.0, by_class
 * had 68 entries: that layout) and nothing written past it; one built
 * against a newer header than the library finds st->size smaller than it
 * set, and the fields past it unwritten (1872 or less: a library before
 * 0.4.0, which fills its own layout). Returns 0, or -1
 * with errno EINVAL when st is NULL or st->size is below MH_STATS_SIZE_V1
 * (an uninitialised size, most likely); *st is then untouched.
 */
MHEAP_API int mh_stats_read(struct mh_stats *st);
/* Print the snapshot in a readable form to fd (MHEAP_STATS=1 does it at exit). */
MHEAP_API void mh_stats_print(int fd);

/* Return every free page to the OS now (the scavenger's work, all at once). */
MHEAP_API void mh_scavenge(void);

/* ---------------------------------------------------------------- arenas */

/* An arena handle is opaque (not an address): a freed one is recognised
 * however many arenas come after it, and any use of it aborts, as does
 * that of NULL or of a handle never issued (unlike mh_free(NULL), which
 * does nothing). Every allocator below returns NULL with errno = ENOMEM
 * when out of memory; size 0 gets a unique pointer. */
typedef struct mh_arena mh_arena;

MHEAP_API mh_arena *mh_arena_new(void);
/* Memory that may hold pointers: bump-allocated upwards in the chunk.
 * align 0 means 16; otherwise a power of two (else NULL, EINVAL). A
 * request over a quarter of a chunk (MHEAP_ARENA_CHUNK) gets a chunk of its
 * own, faulted with the arena. */
MHEAP_API void *mh_arena_alloc(mh_arena *a, size_t size, size_t align);
/* Pointer-free memory: bump-allocated downwards, as Go does. */
MHEAP_API void *mh_arena_alloc_noscan(mh_arena *a, size_t size, size_t align);
/* Zeroed, with n * size overflow checked (NULL, ENOMEM). */
MHEAP_API void *mh_arena_calloc(mh_arena *a, size_t n, size_t size);
/* Free everything in the arena at once; its memory faults from now on. */
MHEAP_API void mh_arena_free(mh_arena *a);
/* A copy on the general heap if p lies in an arena, else p itself. */
MHEAP_API void *mh_arena_clone(const void *p, size_t size);
/* Whether p points into an arena chunk (live or quarantined). O(1). */
MHEAP_API bool mh_in_arena(const void *p);
/* The fault backend in use: "kmod", "guard", "mprotect" or "none". */
MHEAP_API const char *mh_backend_name(void);
/* End the quarantine of every freed chunk now. */
MHEAP_API void mh_quarantine_release(void);

/*
 * The arenas' fast path, inline. Not part of the API: names ending in an
 * underscore may change with any release, and what they describe is the
 * library's business (docs/arenas.md, "The inline fast path"). Compiled
 * into a program, they are part of the library's ABI: a release that
 * changes them changes the SONAME's major number.
 *
 * A handle's low 24 bits name a slot: slot (h & 4095) of block
 * ((h >> 12) & 4095), slots MH_ARENA_SLOT_BYTES_ apart. A slot starts with
 * its bump window: the handle it is live under (0 when it is not), the
 * free space [lo, hi) of its active chunk (0, 0 when it has none) and how
 * far ahead of the bump pointer to prefetch (0 until the arena has used
 * up a window: set by the library). The fast path bumps there when the
 * handle is the live one and the request fits, and calls the library for
 * anything else: a freed, stale or invalid handle is reported there,
 * exactly as without the fast path. Defining MH_NO_INLINE before
 * including this header turns it off.
 */
struct mh_arena_window_ {
	uintptr_t live;
	uintptr_t lo, hi;
	uintptr_t ahead;
};
#define MH_ARENA_BLOCK_BITS_	12
#define MH_ARENA_SLOT_BYTES_	128
/* The table of slot blocks is read-only to the program: const here, and
 * writable only in the library's arena.c, which defines
 * MH_ARENA_BLOCKS_WRITABLE_. Each entry goes from NULL to its block once,
 * when the block is made, and never changes again; so a compiler may keep
 * an entry it has read across calls and stores: in a loop of allocations
 * the slot is found once, not at every allocation. An entry kept while it
 * was NULL only sends the fast path to the library. */
#ifdef MH_ARENA_BLOCKS_WRITABLE_
#define MH_ARENA_BLOCKS_CONST_
#else
#define MH_ARENA_BLOCKS_CONST_ const
#endif
MHEAP_API extern struct mh_arena_window_ *MH_ARENA_BLOCKS_CONST_ mh_arena_blocks_[1 << MH_ARENA_BLOCK_BITS_];
MHEAP_API void *mh_arena_alloc_slow_(mh_arena *a, size_t size, size_t align, bool scan);

/* mh_arena_alloc and mh_arena_alloc_noscan inline (GNU C's extern
 * inline: the library has the same functions out of line, arena_alloc.c,
 * for calls that are not inlined and for compilers without it). */
#if defined(__GNUC__) && !defined(MH_NO_INLINE)
#ifndef MH_ARENA_INLINE_
#define MH_ARENA_INLINE_ extern __inline__ __attribute__((gnu_inline))
#endif

/* Bump size bytes, aligned to align (0: 16), in a's window, upwards for
 * scan, else downwards, into *out; false, changing nothing, when that
 * takes the library. Always inlined, in the library's functions too: it
 * has no out-of-line copy. */
extern __inline__ __attribute__((gnu_inline, always_inline)) bool
mh_arena_bump_(mh_arena *a, size_t size, size_t align, bool scan, void **out)
{
	uintptr_t h = (uintptr_t)a, mask = (1u << MH_ARENA_BLOCK_BITS_) - 1;
	struct mh_arena_window_ *b = mh_arena_blocks_[(h >> MH_ARENA_BLOCK_BITS_) & mask], *w;
	uintptr_t p;

	if (!align)
		align = 16;
	if (__builtin_expect(!b || (align & (align - 1)), 0))
		return false;
	w = (struct mh_arena_window_ *)((char *)b + (h & mask) * MH_ARENA_SLOT_BYTES_);
	if (__builtin_expect(w->live != h, 0))
		return false;
	if (scan) {
		/* Size 0 is the library's (the window may be empty); lo is a
		 * user address, so p + size wraps for no size below 2^63
		 * (and for a constant size the test folds away). The start
		 * is rounded up to the alignment and the object ends size
		 * bytes later: for a size known only at run time that is
		 * two operations and one test fewer than rounding the end
		 * (which takes a test of whether size is a multiple of
		 * align); a loop of allocations whose stores hit the cache
		 * is bound by the operations it issues more than by the
		 * chain from one allocation's lo to the next's, one
		 * operation longer so (docs/arenas.md, "The inline fast
		 * path"). */
		uintptr_t end;

		p = (w->lo + align - 1) & -(uintptr_t)align;
		end = p + size;
		if (__builtin_expect(size - 1 >= (size_t)PTRDIFF_MAX || end > w->hi, 0))
			return false;
		w->lo = end;
		/* The line the bump reaches `ahead` bytes from now, fetched
		 * while this object is written: an arena that streams
		 * through memory not in cache would otherwise wait for
		 * every new line with its stores queued. Never faults. */
		__builtin_prefetch((void *)(end + w->ahead), 1, 3);
	} else {
		/* Size 0 or more than hi: the library's (hi - size would
		 * wrap); then the object ends by hi and must start at lo
		 * or above, one test each, without hi - lo. */
		uintptr_t hi = w->hi;

		if (__builtin_expect(size - 1 >= hi, 0))
			return false;
		p = (hi - size) & -(uintptr_t)align;
		if (__builtin_expect(p < w->lo, 0))
			return false;
		w->hi = p;
		__builtin_prefetch((void *)(p - w->ahead), 1, 3);
	}
	*out = (void *)p;
	return true;
}

MH_ARENA_INLINE_ void *mh_arena_alloc(mh_arena *a, size_t size, size_t align)
{
	void *p;

	if (__builtin_expect(mh_arena_bump_(a, size, align, true, &p), 1))
		return p;
	return mh_arena_alloc_slow_(a, size, align, true);
}

MH_ARENA_INLINE_ void *mh_arena_alloc_noscan(mh_arena *a, size_t size, size_t align)
{
	void *p;

	if (__builtin_expect(mh_arena_bump_(a, size, align, false, &p), 1))
		return p;
	return mh_arena_alloc_slow_(a, size, align, false);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* MHEAP_H */
