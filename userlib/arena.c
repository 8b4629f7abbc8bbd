// SPDX-License-Identifier: MIT
/*
 * User arenas (Go's runtime/arena.go), made safe for C: the API. The chunks
 * behind it are arena_chunk.c's, and arena_impl.h has the map of the files.
 *
 * An arena bump-allocates from 8 MiB chunks and is freed all at once.
 * Pointer-carrying allocations grow up from the bottom of the active chunk,
 * pointer-free ones down from the top, as in Go (the split costs nothing
 * and keeps the layout Go's), inside the chunk's window (arena_hugepages.c).
 * An allocation over a quarter of a chunk gets a dedicated chunk of its own
 * size that belongs to the arena and is faulted with it: C has no GC to
 * free it later.
 *
 * Freeing an arena (mh_arena_free) hands its chunks on: the active one to
 * the reuse list when it has room left (a big arena's, or a used-up one, to
 * the warm list while that has room), a big arena's full ones to the warm
 * list (arena_warm.c), and every one to quarantine (arena_quarantine.c),
 * faulting, a batch of system calls at a time.
 *
 * Handles. An mh_arena * is not the address of the arena's struct but a
 * handle: the index of a slot (low 24 bits) and its generation (the other
 * 40), counted up each time the slot is given to a new arena. The slot
 * keeps the handle it is live under, so a freed handle, however many
 * arenas came after it, is told from a live one and from garbage: "arena
 * double free of", "use of freed arena". Slots of 128 bytes (a sharing
 * block, internal.h: each is written by the thread using its arena) are
 * made 4,096 at a time and never freed; a freed slot waits behind 4,096
 * others before reuse (ARENA_STRUCT_DELAY), and one whose generations are
 * used up (2^40 reuses) is retired, so no handle is ever handed out twice.
 * There are 16M slots, for live arenas and the delayed ones; beyond,
 * mh_arena_new fails with ENOMEM. Measured: docs/arenas.md#design.
 *
 * The inline fast path. A slot starts with the arena's bump window (its
 * live handle and the free space [lo, hi) of its active chunk), which
 * mheap.h's inline mh_arena_alloc reads through the handle and bumps:
 * 13-15 instructions and two dependent loads (the block, the slot) when the
 * handle is live and the request fits, the block's load once per loop of
 * allocations (the table of blocks is const to the program: an entry is
 * set once, here, and never changes); the rest comes here
 * (mh_arena_alloc_slow_), stale handles included. While a chunk is
 * active its own lo and hi are stale: the slow path and mh_arena_free
 * write the window back first (window_save) and take it again after
 * (window_load). The window also says how far ahead of the bump the fast
 * path prefetches: 0 (the line the next object starts in, or for noscan
 * this object's: a short head start) until the arena has used up a
 * window, PREFETCH_AHEAD from then on. An arena that fills more than a
 * window streams through memory that is not in cache, and the prefetch
 * takes up to half off the time of its fill; a small one's memory mostly
 * is in cache, where lines fetched ahead that the program never writes
 * cost more than they save. Measured: docs/arenas.md#the-inline-fast-path.
 *
 * An arena is used by one thread at a time, as in Go: allocation touches
 * only the arena and its active chunk, without locks. The chunk lists are
 * shared and under arena_lock (arena_impl.h); system calls are made
 * outside it.
 */
#define MH_ARENA_BLOCKS_WRITABLE_	/* mheap.h: the one writer of the table */
#include <errno.h>
#include <string.h>

#include "arena_impl.h"
#include "arenamap.h"
#include "fault.h"
#include "hooks.h"
#include "scan.h"
#include "sysmem.h"

/* Freed arena slots wait in a FIFO this long before reuse, so that a
 * slot's generations go up slowly (see "Handles"). */
#define ARENA_STRUCT_DELAY 4096
/* Handles: the slot index is the low SLOT_BITS bits, the generation the
 * rest; slots are made in blocks of BLOCK_SLOTS (mheap.h's inline fast
 * path finds them the same way). */
#define SLOT_BITS	24
#define BLOCK_BITS	MH_ARENA_BLOCK_BITS_
#define BLOCK_SLOTS	((uintptr_t)1 << BLOCK_BITS)
#define NBLOCKS		((uintptr_t)1 << (SLOT_BITS - BLOCK_BITS))
#define GEN_MAX		(UINTPTR_MAX >> SLOT_BITS)
/* How far ahead of its bump pointer an arena that has used up a window
 * prefetches (see "The inline fast path"). */
#define PREFETCH_AHEAD	((uintptr_t)1024)
/* The active chunk goes to the reuse list only with this much room left. */
#define REUSE_MIN_FREE	((uintptr_t)64 << 10)

/* An arena, in the slot its handle names. */
struct arena {
	/* First, for mheap.h's inline fast path: the handle it is live
	 * under, else 0, the free space of its active chunk's window
	 * (0, 0 without one) and the prefetch distance. */
	struct mh_arena_window_ w;
	union {
		struct arena_chunk *active;	/* live */
		struct arena *next_freed;	/* freed: the delayed-reuse FIFO */
	};
	uintptr_t last;			/* the latest handle of this slot */
	uint64_t id;
	struct list used;		/* full and large chunks */
	bool big;			/* has filled a chunk and taken another */
} __attribute__((aligned(MH_SHARING_BLOCK)));
_Static_assert(sizeof(struct arena) == MH_ARENA_SLOT_BYTES_ && offsetof(struct arena, w) == 0 &&
	       NBLOCKS == sizeof(mh_arena_blocks_) / sizeof(mh_arena_blocks_[0]),
	       "slots are laid out as mheap.h's inline fast path finds them");

/* Blocks of slots, made on demand, never freed (arena_lock); the inline
 * fast path reads them. */
struct mh_arena_window_ *mh_arena_blocks_[NBLOCKS] MH_LARGE_ZERO(mh_arena_blocks_);
static uintptr_t slots_made;

mh_lock_t arena_lock = MH_LOCK_INIT;
struct arena_config arena_cfg;
static uint64_t arenas_live;
static uint64_t next_arena_id = 1;
static struct arena *freed_head, *freed_tail;
static unsigned freed_count;

/* ------------------------------------------------------------ config */

/* arena_lock is never held while another allocator lock is taken: fork
 * takes it before the heap's (fork.c). */
MH_DEFAULT_TEXT static void fork_prepare(void)
{
	mh_lock(&arena_lock);
}

MH_DEFAULT_TEXT static void fork_release(void)
{
	mh_unlock(&arena_lock);
}

static void arena_stats(struct mh_stats *st);

/* What the heap asks of arenas (hooks.h). */
static const struct heap_hooks arena_hooks = {
	.give_back = arena_give_back,
	.release_idle = arena_release_idle,
	.stats = arena_stats,
	.check_chunk = arena_check_chunk,
	.check_lists = arena_check_lists,
	.fork_prepare = fork_prepare,
	.fork_parent = fork_release,
	.fork_child = fork_release,
};

__attribute__((constructor(MH_CTOR_ARENA))) static void arena_init(void)
{
	arena_cfg.chunk_bytes = mh_option(MH_OPT_ARENA_CHUNK);
	arena_cfg.reuse = mh_option(MH_OPT_ARENA_REUSE);
	arena_cfg.reuse_max = mh_option(MH_OPT_ARENA_REUSE_MAX);
	arena_cfg.quarantine_max = mh_option(MH_OPT_QUARANTINE_MAX);
	arena_cfg.ready_max = mh_option(MH_OPT_ARENA_READY_MAX);
	arena_cfg.thp = mh_option(MH_OPT_ARENA_THP);
	arena_cfg.thp_after = mh_option(MH_OPT_ARENA_THP_AFTER);
	arena_cfg.recycle = mh_option(MH_OPT_ARENA_RECYCLE);
	arena_cfg.warm_max = mh_option(MH_OPT_ARENA_WARM_MAX);
	arena_cfg.scan = mh_option(MH_OPT_QUARANTINE_SCAN);
	arena_cfg.quarantine_cap = mh_option(MH_OPT_QUARANTINE_CAP);
	arena_cfg.scan_share = (unsigned)mh_option(MH_OPT_QUARANTINE_SCAN_SHARE);
	arena_cfg.scan_threads = (unsigned)mh_option(MH_OPT_QUARANTINE_SCAN_THREADS);
	arena_cfg.to_heap = mh_option(MH_OPT_QUARANTINE_TO_HEAP);
	arena_chunk_init();
	heap_hooks_register(&arena_hooks);
}

void arena_config_get(struct arena_config *cfg)
{
	mh_lock(&arena_lock);
	*cfg = arena_cfg;
	mh_unlock(&arena_lock);
}

void arena_configure(const struct arena_config *cfg)
{
	mh_lock(&arena_lock);
	if (arenas_live)
		mh_fatal("arena settings changed while %llu arenas are live",
			 (unsigned long long)arenas_live);
	arena_cfg = *cfg;
	arena_cfg.chunk_bytes = ALIGN_UP(arena_cfg.chunk_bytes, MH_PAGE_SIZE);
	mh_unlock(&arena_lock);
	warm_trim();	/* a lower cap, or recycling off */
}

/* ------------------------------------------------------------ arenas */

/* The slot handle h names, or NULL when its block was never made. */
static inline struct arena *slot_of(const mh_arena *h)
{
	uintptr_t v = (uintptr_t)h;
	struct arena *b = (struct arena *)LOAD_RELAXED(&mh_arena_blocks_[(v >> BLOCK_BITS) &
									(NBLOCKS - 1)]);

	return b ? b + (v & (BLOCK_SLOTS - 1)) : NULL;
}

/* A slot never used before (arena_lock held), or NULL. */
static struct arena *slot_new(void)
{
	uintptr_t i = slots_made;
	struct arena *b;

	if (i == NBLOCKS * BLOCK_SLOTS)
		return NULL;
	b = (struct arena *)mh_arena_blocks_[i >> BLOCK_BITS];
	if (!b) {
		b = sys_alloc(BLOCK_SLOTS * sizeof(*b));	/* zeroed */
		if (!b)
			return NULL;
		STORE_RELEASE(&mh_arena_blocks_[i >> BLOCK_BITS], &b->w);
	}
	slots_made++;
	b += i & (BLOCK_SLOTS - 1);
	b->last = i;	/* generation 0: never handed out */
	return b;
}

mh_arena *mh_arena_new(void)
{
	struct arena *a;
	uintptr_t h = 0;

	/* Before any lock: pthread_getattr_np allocates (scan_stacks.c). */
	scan_stack_record();
	if (fault_backend()->faults)
		uaf_install();
	mh_lock(&arena_lock);
	if (freed_count > ARENA_STRUCT_DELAY) {
		a = freed_head;
		freed_head = a->next_freed;
		freed_count--;
	} else {
		a = slot_new();
	}
	if (a) {
		h = a->last += (uintptr_t)1 << SLOT_BITS;	/* the next generation */
		a->w.lo = a->w.hi = a->w.ahead = 0;
		STORE_RELAXED(&a->w.live, h);
		a->active = NULL;
		a->used = (struct list){ 0 };
		a->big = false;
		a->id = next_arena_id++;
		arenas_live++;
	}
	mh_unlock(&arena_lock);
	if (!a)
		errno = ENOMEM;
	return (mh_arena *)h;
}

/* What the fatal errors of a use of a handle that is not live say. */
struct handle_words {
	const char *null, *freed, *invalid;
};
static const struct handle_words in_use = {
	"use of a NULL arena", "use of freed arena", "invalid arena"
};
static const struct handle_words in_free = {
	"arena free of NULL", "arena double free of", "invalid arena free of"
};

/* The arena of live handle h; any other handle is a fatal error. A freed
 * one is any other of a generation its slot has had. */
static struct arena *live_arena(const mh_arena *h, const struct handle_words *w)
{
	struct arena *a = slot_of(h);
	uintptr_t gen = (uintptr_t)h >> SLOT_BITS;

	if (likely(h && a && LOAD_RELAXED(&a->w.live) == (uintptr_t)h))
		return a;
	if (!h)
		mh_fatal("%s", w->null);
	if (a && gen && gen <= LOAD_RELAXED(&a->last) >> SLOT_BITS)
		mh_fatal("%s %p", w->freed, (const void *)h);
	mh_fatal("%s %p", w->invalid, (const void *)h);
}

static void *alloc_large(struct arena *a, size_t size, size_t align)
{
	struct arena_chunk *c;

	if (size > PTRDIFF_MAX - MH_ARENA_SIZE) {
		errno = ENOMEM;
		return NULL;
	}
	c = chunk_new(size ? size : 1, align);
	if (!c)
		return NULL;
	c->large = 1;
	c->arena_id = a->id;
	c->lo = c->hi = c->base + size;
	STORE_RELAXED(&c->state, CHUNK_LIVE);
	list_push_tail(&a->used, &c->link);
	mh_lock(&arena_lock);
	chunks_live++;
	mh_unlock(&arena_lock);
	return (void *)c->base;
}

/* The active chunk's window is the slot's while the chunk is active (the
 * inline fast path bumps there): back into the chunk before anything
 * reads or changes the chunk, and from it after. */
static void window_save(struct arena *a)
{
	if (a->active) {
		a->active->lo = a->w.lo;
		a->active->hi = a->w.hi;
	}
}

static void window_load(struct arena *a)
{
	a->w.lo = a->active ? a->active->lo : 0;
	a->w.hi = a->active ? a->active->hi : 0;
}

/* Default alignment when 0 is given: what malloc guarantees (as mheap.h's
 * inline fast path). */
#define ARENA_DEFAULT_ALIGN 16

/* Everything the inline fast path (mheap.h) does not take: a handle that
 * is not live, a bad alignment, size 0 (a byte of its own, so that the
 * pointer is unique, as malloc(0)'s), a large request, a full window. */
void *mh_arena_alloc_slow_(mh_arena *h, size_t size, size_t align, bool scan)
{
	struct arena *a = live_arena(h, &in_use);
	void *p;

	scan_stack_record();	/* as in mh_arena_new */
	if (!align)
		align = ARENA_DEFAULT_ALIGN;
	if (!IS_POW2(align)) {
		errno = EINVAL;
		return NULL;
	}
	if (size > arena_cfg.chunk_bytes / 4 || align > arena_cfg.chunk_bytes / 4)
		return alloc_large(a, size, align);
	if (!size)
		size = 1;
	for (bool big = false; !mh_arena_bump_(h, size, align, scan, &p);) {
		struct arena_chunk *c = a->active;

		window_save(a);
		if (c && c->next_window) {
			chunk_next_window(c);
		} else {
			if (c) {
				list_push_tail(&a->used, &c->link);
				a->active = NULL;
				big = a->big = true;
			}
			a->active = chunk_get(a->id, big);
		}
		window_load(a);
		if (!a->active)
			return NULL;
		/* It used up a window: it streams ("The inline fast
		 * path", above). */
		if (c)
			a->w.ahead = PREFETCH_AHEAD;
	}
	return p;
}

void *mh_arena_calloc(mh_arena *a, size_t n, size_t size)
{
	size_t total;
	void *p;

	if (__builtin_mul_overflow(n, size, &total)) {
		live_arena(a, &in_use);
		errno = ENOMEM;
		return NULL;
	}
	p = mh_arena_alloc(a, total, 0);
	if (p)
		memset(p, 0, total);
	return p;
}

/* Whether a freed arena's active chunk goes warm (arena_warm.c): a big
 * arena's may, and any arena's that is used up (too little left to reuse:
 * short arenas that go on in a reused chunk fill it in turn, and the one
 * that fills it is usually small). */
static bool active_moves(const struct arena *a, bool used_up)
{
	return (a->big || used_up) && warm_takes_active(a->active);
}

void mh_arena_free(mh_arena *h)
{
	struct arena *a = live_arena(h, &in_free);
	struct arena_chunk *cs[ARENA_BATCH];
	uintptr_t live = (uintptr_t)h;
	unsigned n = 0;

	/* Claim the arena: of two frees racing through live_arena, exactly
	 * one takes it from live to freed; the other is a double free. */
	if (!__atomic_compare_exchange_n(&a->w.live, &live, 0, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		mh_fatal("%s %p", in_free.freed, (const void *)h);
	window_save(a);
	a->w.lo = a->w.hi = 0;

	struct arena_chunk *active = a->active;
	bool moves = false, faulted = false;

	mh_lock(&arena_lock);
	arenas_live--;
	chunks_live -= a->used.count + (active != NULL);
	/* A chunk whose memory stayed in the parent of fork (kmod) faults
	 * all over: it is not reused, it is quarantined as a whole. */
	if (active && arena_cfg.reuse && fault_backend()->faults &&
	    !kmod_left_in_parent(active->base)) {
		bool used_up = chunk_free_bytes(active) < REUSE_MIN_FREE;

		moves = active_moves(a, used_up);
		/* The next arena takes its place (arena_warm.c). */
		warm_first += moves;
		/* Over the cap on dead data, the chunk faults instead. */
		if (!moves && !used_up &&
		    reuse_used + chunk_used_bytes(active) <= arena_cfg.reuse_max) {
			STORE_RELAXED(&active->state, CHUNK_REUSE);
			list_push_tail(&reuse_list, &active->link);
			reuse_used += chunk_used_bytes(active);
			active = NULL;
		}
	}
	mh_unlock(&arena_lock);
	/* A moving active chunk goes first, so that the warm list's room,
	 * checked above, is not taken by the full ones. */
	if (moves)
		list_push_head(&a->used, &active->link);
	else if (active)
		list_push_tail(&a->used, &active->link);
	a->active = NULL;

	/* Fault the rest, a batch of system calls at a time; a big arena's
	 * full chunks, and a moving active chunk, move their pages to warm
	 * chunks first. */
	while (a->used.head) {
		cs[n++] = chunk_of(list_pop_head(&a->used));
		if (n == ARENA_BATCH || !a->used.head) {
			if (a->big || moves)
				recycle_chunks(cs, n, moves ? active : NULL);
			quarantine_chunks(cs, n, a->id);
			faulted = true;
			n = 0;
		}
	}
	/* The free's own calls left chunk addresses on the dead stack: they
	 * must not become roots of later scans from the program's frames. */
	if (faulted && arena_cfg.scan)
		scan_scrub_stack();

	/* The slot waits in a FIFO before reuse (see ARENA_STRUCT_DELAY); one
	 * whose generations are used up is never used again. */
	if (a->last >> SLOT_BITS == GEN_MAX)
		return;
	mh_lock(&arena_lock);
	a->next_freed = NULL;
	if (freed_tail)
		freed_tail->next_freed = a;
	else
		freed_head = a;
	freed_tail = a;
	freed_count++;
	mh_unlock(&arena_lock);
}

/* ------------------------------------------------------------ queries */

bool mh_in_arena(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);
	const struct arena_chunk *c;

	if (!s || LOAD_RELAXED(&s->state) != MSPAN_CHUNK)
		return false;
	/* A guarded heap block is no arena's (secure_large.c). */
	c = LOAD_ACQUIRE(&s->chunk_data);
	return !c || !c->block.addr;
}

void *mh_arena_clone(const void *p, size_t size)
{
	void *q;

	if (!mh_in_arena(p))
		return (void *)p;
	q = mh_malloc(size);
	if (q)
		memcpy(q, p, size);
	return q;
}

/* The arenas' fields of a statistics snapshot (hooks.h). */
static void arena_stats(struct mh_stats *st)
{
	mh_lock(&arena_lock);
	st->arenas_live = arenas_live;
	st->arena_chunks_live = chunks_live;
	st->arena_chunks_reuse = reuse_list.count;
	st->arena_chunks_quarantined = quarantine.count;
	st->arena_chunks_ready = ready_list.count;
	st->arena_quarantined_bytes = quarantined_bytes;
	st->arena_releases_budget = releases_budget;
	st->arena_releases_enomem = releases_enomem;
	st->arena_chunks_warm = warm_list.count;
	st->arena_chunks_kept = chunks_kept;
	st->arena_releases_scan = releases_scan;
	st->arena_releases_referenced = releases_referenced;
	mh_unlock(&arena_lock);
	quarantine_scan_stats(st);
	st->arena_faults_caught = LOAD_RELAXED(&uaf_faults_caught);
}
