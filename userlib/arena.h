/* SPDX-License-Identifier: MIT */
/*
 * User arenas: the data structures shared by the arena files (the map of
 * them and their design: arena_impl.h) and uaf.c (the use-after-free
 * report).
 */
#ifndef MHEAP_ARENA_H
#define MHEAP_ARENA_H

#include "list.h"
#include "mspan.h"

enum chunk_state {
	CHUNK_LIVE = 1,		/* owned by a live arena */
	CHUNK_REUSE,		/* a freed arena's partly used active chunk */
	CHUNK_QUARANTINED,	/* faulting; its address space is held back */
	CHUNK_RELEASING,	/* leaving quarantine */
	CHUNK_READY,		/* out of quarantine, reusable */
	CHUNK_WARM,		/* holds a freed chunk's moved pages, reusable */
};

/* What a part of a chunk was advised for transparent huge pages
 * (arena_hugepages.c). */
enum chunk_thp {
	CHUNK_THP_DEFAULT = 0,	/* never advised: the system's THP mode decides */
	CHUNK_THP_ON,		/* MADV_HUGEPAGE */
	CHUNK_THP_OFF,		/* MADV_NOHUGEPAGE */
};

/* Frames of a stack kept for a guarded heap block. */
#define HEAP_BLOCK_FRAMES 12

/*
 * The secure heap's guarded block a chunk holds (secure_large.c), for its
 * free and its report; addr is 0 in arena chunks.
 */
struct heap_block {
	uintptr_t addr;			/* the block: [addr, addr + size) */
	size_t size;
	uint8_t freed;			/* its free has begun (atomic) */
	uint8_t nalloc, nfree;		/* frames in each stack */
	uint8_t small;			/* at most a page, or below
					 * MHEAP_SECURE_LARGE (sampled): quarantined
					 * under SECURE_SMALL_BLOCKS_QUARANTINED */
	struct list_node small_link;	/* its place among those */
	void *alloc_stack[HEAP_BLOCK_FRAMES];
	void *free_stack[HEAP_BLOCK_FRAMES];
};

/*
 * One chunk of arena memory: a span of the page heap (state MSPAN_CHUNK,
 * span->chunk_data points here), bump-allocated from both ends of a window:
 * the whole chunk, or first a small window at its base, in small pages,
 * and then [next_window, limit), in huge pages (arena_hugepages.c explains
 * why).
 */
struct fault_backend;

struct arena_chunk {
	struct mspan *span;
	uintptr_t base, limit;		/* the chunk is [base, limit) */
	uintptr_t lo, hi;		/* free space of the window is [lo, hi) */
	uintptr_t next_window;		/* the next window is [next_window, limit); 0: none */
	uint64_t arena_id;		/* the arena that used it last */
	uint64_t freed_ns;		/* when it was faulted */
	uint8_t state;			/* enum chunk_state */
	uint8_t large;			/* holds one large allocation */
	uint8_t thp_head;		/* enum chunk_thp of the first huge page */
	uint8_t thp_tail;		/* ... and of the rest of the chunk */
	uint8_t moved;			/* pages moved to a warm chunk, until released */
	uint8_t head_empty;		/* warm: no pages in the first huge page (not given out) */
	/* The fault backend that prepared it, faults and releases it: the
	 * one in use, but for a guarded heap block's (fault_block_backend). */
	const struct fault_backend *backend;
	struct list_node link;		/* on the list of its state (arena_chunk.c) */
	struct heap_block block;	/* secure mode: the guarded heap block it holds */
};

/* The chunk whose link is n, or NULL for NULL. */
static inline struct arena_chunk *chunk_of(struct list_node *n)
{
	return list_entry(n, struct arena_chunk, link);
}

/* Arena settings, from the options at start-up (options.c: defaults). */
struct arena_config {
	size_t chunk_bytes;	/* MHEAP_ARENA_CHUNK */
	bool reuse;		/* MHEAP_ARENA_REUSE */
	size_t reuse_max;	/* MHEAP_ARENA_REUSE_MAX */
	size_t quarantine_max;	/* MHEAP_QUARANTINE_MAX */
	size_t ready_max;	/* MHEAP_ARENA_READY_MAX */
	bool thp;		/* MHEAP_ARENA_THP */
	size_t thp_after;	/* MHEAP_ARENA_THP_AFTER */
	bool recycle;		/* MHEAP_ARENA_RECYCLE */
	size_t warm_max;	/* MHEAP_ARENA_WARM_MAX */
	bool scan;		/* MHEAP_QUARANTINE_SCAN */
	size_t quarantine_cap;	/* MHEAP_QUARANTINE_CAP */
	unsigned scan_share;	/* MHEAP_QUARANTINE_SCAN_SHARE, percent */
	unsigned scan_threads;	/* MHEAP_QUARANTINE_SCAN_THREADS, 0: one per CPU */
	bool to_heap;		/* MHEAP_QUARANTINE_TO_HEAP */
};

/* For tests: read or change the settings (only while no arena is live). */
MH_HIDDEN void arena_config_get(struct arena_config *cfg);
MH_HIDDEN void arena_configure(const struct arena_config *cfg);

/* The secure heap's guarded blocks (secure_large.c): a live chunk of at
 * least bytes for one, counted with the live chunks, its last BLOCK_GUARD
 * bytes the block's guard (a warm one when one fits: arena_warm.c); and
 * its free, which moves the block's pages warm and faults and quarantines
 * the chunk as an arena's chunks are. */
#define BLOCK_GUARD	MH_PAGE_SIZE
/* Small guarded blocks (of at most a page, or below MHEAP_SECURE_LARGE:
 * the sampled ones) quarantined at most, the oldest released past it
 * (arena_quarantine.c). */
#define SECURE_SMALL_BLOCKS_QUARANTINED 64
/* Freed guarded blocks' pages kept warm for later blocks, in chunks at
 * most (arena_warm.c, "Guarded blocks"). */
#define WARM_BLOCKS_KEPT	8
MH_HIDDEN struct arena_chunk *arena_block_chunk_new(size_t bytes);
MH_HIDDEN void arena_block_chunk_free(struct arena_chunk *c);

/* uaf.c: install the SIGSEGV handler once; count of faults it reported. */
MH_HIDDEN void uaf_install(void);
MH_HIDDEN extern uint64_t uaf_faults_caught;

/* fault_kmod.c: the chunk at base was live in the parent when this process
 * was forked, and its /dev/mheap memory stayed there. Async-signal-safe. */
MH_HIDDEN bool kmod_left_in_parent(uintptr_t base);

#endif
