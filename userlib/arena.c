// SPDX-License-Identifier: MIT
/*
 * User arenas (Go's runtime/arena.go), made safe for C.
 *
 * An arena bump-allocates from 8 MiB chunks and is freed all at once. Chunks
 * are spans of the same page heap as everything else (state MSPAN_CHUNK), so
 * the arena map finds them in O(1): that is mh_in_arena, and how the SIGSEGV
 * handler recognises a stale access. Pointer-carrying allocations grow up
 * from the bottom of the active chunk, pointer-free ones down from the top,
 * as in Go (the split costs nothing and keeps the layout Go's).
 * An allocation over a quarter of a chunk gets a dedicated chunk of its own
 * size that belongs to the arena and is faulted with it: C has no GC to
 * free it later.
 *
 * Lifecycle of a chunk, as in Go (lists under arena_lock):
 *
 *   new (page heap) ---> LIVE ---arena freed---> REUSE ---new arena---> LIVE
 *        ^                |  (the active chunk,      (continues where it
 *        |                |   when reuse is on)       stopped: old data is
 *        |                v                           never overwritten)
 *        |          QUARANTINED (faulting, FIFO, address space held)
 *        |                |  budget exceeded, kernel refused a fault,
 *        |                v  or mh_quarantine_release()
 *        +--(too many)-- READY ---new arena---> LIVE
 *
 * A new arena takes a chunk from the reuse list, else (once it has filled
 * one) the warm list, else the ready list, else the page heap. Freeing an
 * arena faults every chunk but the active one, which goes to the reuse list
 * (MHEAP_ARENA_REUSE=0 faults it too, for maximal detection: a stale pointer
 * into a reused chunk reads the old data rather than crashing; a big arena's
 * mostly used active chunk is faulted too, its pages moved warm: see below).
 *
 * The reuse list holds the used part of its chunks resident, dead data
 * nobody will touch again, so it is capped: the used parts of its chunks
 * add up to at most MHEAP_ARENA_REUSE_MAX; over it, the active
 * chunk faults with the rest. mh_scavenge() and mh_quarantine_release()
 * return those used parts, whole pages, to the OS (reuse_drop_used): the
 * chunk goes on where it stopped, so they are never handed out again, and
 * a stale read there finds zeros. Twenty freed 3 MiB arenas used to keep
 * 87 MiB resident on the list.
 *
 * Quarantine: Go releases quarantined chunks once a GC cycle has proved no
 * pointer to them remains. C cannot prove that, so the quarantine is a FIFO
 * under a budget of address space (MHEAP_QUARANTINE_MAX): the memory itself
 * is returned to the OS when a chunk is faulted, so only address space and,
 * for mprotect, VMAs are held. The longer a chunk stays, the later its
 * address range can be reused for new data, and the longer a stale pointer
 * into it is still caught; when the budget is exceeded the oldest chunks are
 * released first. If the kernel refuses a fault (mprotect out of VMAs, the
 * module over its limit) the oldest chunks are released and the fault is
 * retried; with nothing left to release, the chunk goes back to the page
 * heap unfaulted: a free never fails.
 *
 * The rest of the heap comes first when memory or address space runs out
 * (RLIMIT_AS counts quarantine's): when the page heap cannot grow for a
 * span that is not a chunk, mheap.c asks arena_give_back() for warm
 * chunks, then reuse and ready chunks, then the oldest quarantined chunks,
 * a batch at a time, back to the page heap, and retries after each, before
 * it returns NULL.
 *
 * Releasing can need a VMA too: quarantined chunks side by side merge into
 * one protected VMA (mprotect, and guard's moved-from chunks), and opening
 * one of them alone splits it. When the kernel refuses that, the chunk
 * stays quarantined, still faulting, and the whole run of protected
 * quarantined chunks around it (its "island", found through the arena map)
 * is opened at once: that changes whole VMAs and ends at memory that is
 * not protected, so it needs no new VMA. Its younger chunks leave
 * quarantine early; nothing that still faults is ever handed out, and a
 * refusal of any kind (a race with a neighbour being faulted) leaves the
 * chunks quarantined for a later try.
 *
 * Huge pages. A faulted chunk's memory is gone, so every chunk an arena
 * gets from the ready list or the page heap is first-touch memory, and an
 * arena's cost is mostly its page faults: 2,048 for 8 MiB in 4 KiB pages.
 * Populating in advance saves the traps but not the work per page, and
 * would make small arenas resident: not used. Huge pages make the first
 * touch and the fault many times cheaper, so chunks are aligned to the huge
 * page size and use transparent huge pages where an arena is big, but not
 * where it is small: a huge page per small arena would make a thousand live
 * 1 KiB arenas cost gigabytes. Measured: docs/arenas.md#huge-pages-for-big-arenas.
 *
 * The rule (chunk_start, chunk_next_window): an arena's first chunk starts
 * with a window of MHEAP_ARENA_THP_AFTER bytes at its base, in
 * small pages (MADV_NOHUGEPAGE where the system default is huge); both
 * ends bump inside it. When it is used up, the rest of the chunk is advised
 * MADV_HUGEPAGE and allocation moves on one huge page at a time, so an
 * arena holds at most one partly used huge page beyond its data. A chunk an
 * arena takes after filling one is huge from the start. The rest of a window
 * is left unused (address space only; it faults with the chunk). A chunk
 * that goes back to the page heap is advised MADV_NOHUGEPAGE, so that small
 * spans there never sit in huge pages. The advice is a VMA flag: with the
 * guard backend the heap is no longer one VMA but at most a few per chunk
 * (the runs of equal advice), mprotect splits there anyway, and kmod,
 * whose device mappings cannot be split, takes no advice (fault_backend.thp).
 * Everything is probed at run time (sysmem.c); without THP, or with
 * MHEAP_ARENA_THP=0, chunks are one small-page window as before.
 *
 * Warm chunks: moving the pages instead of dropping them. Faulting a chunk
 * gives its memory back, so an arena freed and built again would pay the
 * kernel's page faults and zeroing for all of it every time. So (guard and
 * mprotect backends, recycle_chunks) a full chunk about to be faulted first
 * has its pages moved to a fresh chunk-sized range of the page heap, with
 * mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) (Linux 5.7+): the old range stays
 * mapped, empty, and is faulted exactly as before; the new one is a "warm"
 * chunk, resident, in huge pages when the old one was (both are aligned to
 * the huge page size, so the kernel moves whole PMDs), holding stale data.
 * An arena that has filled a chunk takes a warm chunk before the ready list
 * or a new chunk:
 *
 *   LIVE (full) --arena freed--> pages moved --> WARM ---big arena---> LIVE
 *     |                                           |  over the cap,
 *     +--> the old range: QUARANTINED as before   v  quarantine release
 *                                          page heap (dirty pages)
 *
 * Safety is unchanged: the move comes first because a fault drops the pages
 * (MADV_GUARD_INSTALL frees them, mprotect is followed by MADV_DONTNEED);
 * then the old range is faulted, both before mh_arena_free returns. Between
 * the two the old range is mapped and empty: a racing access through a stale
 * pointer reads zeros, never the old data nor the next arena's (they live at
 * the new address now), and a page it writes is dropped by the fault. That
 * access races with the free itself, which no order can catch. Quarantine
 * bookkeeping does not see the move at all: the same chunks, the same
 * budget, FIFO and ENOMEM fallbacks.
 *
 * Who gets warm chunks: only an arena that has filled a chunk already (a
 * "big" one). A warm chunk is 8 MiB resident; handed to a small arena it
 * would pin all of it for a few KiB, and a thousand live small arenas could
 * pin gigabytes (small arenas stay small, see below). Which chunks move: the
 * full chunks of a big arena, of the standard size and at least half used.
 * Only a big arena's: otherwise chunks nobody takes pile up to the cap,
 * resident (short request arenas that continue in a reused chunk fill it in
 * turn, and the one that fills it is usually small). At least half used: a
 * move costs a VMA and a system call, so moving an almost empty chunk saves
 * nothing. An arena's first chunk has a small-page head apart from its huge
 * tail (two VMAs, and mremap works on one): only the tail moves.
 *
 * A big arena's active chunk, when at least half used and the warm list has
 * room for it, moves as well instead of going to the reuse list
 * (active_moves). Reused, it would keep its used part resident but
 * unusable, and the next big arena, starting in its tail, would touch that
 * much fresh memory beyond its warm chunks every time. Its used part faults
 * too, rather than staying readable. Measured: docs/arenas.md#warm-chunks.
 *
 * Memory held: warm chunks are resident, so they are capped at
 * MHEAP_ARENA_WARM_MAX; the default holds one big arena's chunks, memory
 * the program had resident a moment before. Warm chunks go back to the page
 * heap as dirty pages, oldest first, when over the cap (a lower cap set by
 * arena_configure, or recycling turned off), on mh_quarantine_release()
 * and on mh_scavenge(). There is no ageing: a program that stops making big
 * arenas keeps its warm chunks until one of those. The page heap knows they
 * are dirty, so calloc and friends zero them; mh_arena_calloc always zeroes,
 * and chunks from the ready list are never warm, so they still read zero.
 * When the page heap runs out of room for a new chunk, warm chunks go back
 * before quarantine is cut.
 *
 * Fallbacks: any mremap failure (EINVAL before 5.7, ENOMEM out of VMAs, ...)
 * leaves the chunk to be faulted as before, its pages dropped, and the range
 * taken for the move goes back to the page heap: silent and correct. kmod
 * (device mappings refuse mremap) and none (nothing faults) do not move
 * (fault_backend.remap). MHEAP_ARENA_RECYCLE=0 turns moving off.
 *
 * VMAs: moved pages keep their own VMA (another anon_vma: it never merges
 * with its neighbours), and the moved-from range becomes one too. So ranges
 * of the heap that were ever moved to or from stay separate VMAs, at most
 * two per chunk-sized range of the heap: far below vm.max_map_count even
 * with a full quarantine, and running out falls back as above.
 *
 * fork(): warm chunks are ordinary private memory; a child inherits them
 * copy-on-write like the rest of the heap, so its first write to one copies
 * a page rather than zero-filling it. Nothing else changes.
 *
 * Handles. An mh_arena * is not the address of the arena's struct but a
 * handle: the index of a slot (low 24 bits) and its generation (the other
 * 40), counted up each time the slot is given to a new arena. The slot
 * keeps the handle it is live under, so a freed handle, however many
 * arenas came after it, is told from a live one and from garbage: "arena
 * double free of", "use of freed arena". Slots of 64 bytes (a cache line)
 * are made 4,096 at a time and never freed; a freed slot waits behind 4,096
 * others before reuse (ARENA_STRUCT_DELAY), and one whose generations are
 * used up (2^40 reuses) is retired, so no handle is ever handed out twice.
 * The cost, measured on the 6.18 host: the allocation fast path is 29
 * instructions instead of 22, one load more (the block of slots), 2.1 ns
 * instead of 1.7 ns for a 16-byte allocation in a loop; mh_arena_new +
 * mh_arena_free 26 ns either way; memory as before (a slot per live arena
 * and per delayed one) plus the 32 KiB table of blocks. There are 16M
 * slots, for live arenas and the delayed ones; beyond, mh_arena_new fails
 * with ENOMEM.
 *
 * An arena is used by one thread at a time, as in Go: allocation touches
 * only the arena and its active chunk, without locks. The chunk lists are
 * shared and under arena_lock; system calls are made outside it.
 */
#define _GNU_SOURCE	/* mremap */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "fixalloc.h"
#include "mheap_impl.h"
#include "sysmem.h"

/* Freed arena slots wait in a FIFO this long before reuse, so that a
 * slot's generations go up slowly (see "Handles"). */
#define ARENA_STRUCT_DELAY 4096
/* Handles: the slot index is the low SLOT_BITS bits, the generation the
 * rest; slots are made in blocks of BLOCK_SLOTS. */
#define SLOT_BITS	24
#define BLOCK_BITS	12
#define BLOCK_SLOTS	((uintptr_t)1 << BLOCK_BITS)
#define NBLOCKS		((uintptr_t)1 << (SLOT_BITS - BLOCK_BITS))
#define GEN_MAX		(UINTPTR_MAX >> SLOT_BITS)
/* The active chunk goes to the reuse list only with this much room left. */
#define REUSE_MIN_FREE	((uintptr_t)64 << 10)
/* At most this many chunks are faulted or released per system-call batch. */
#define BATCH		64

/* An arena, in the slot its handle names: 64 bytes, a cache line. */
struct arena {
	uintptr_t live;			/* its handle while live, else 0 */
	union {
		struct arena_chunk *active;	/* live */
		struct arena *next_freed;	/* freed: the delayed-reuse FIFO */
	};
	uintptr_t last;			/* the latest handle of this slot */
	uint64_t id;
	struct chunk_list used;		/* full and large chunks */
	bool big;			/* has filled a chunk and taken another */
};
_Static_assert(sizeof(struct arena) == 64, "an arena is a cache line");

/* Blocks of slots, made on demand, never freed (arena_lock). */
static struct arena *slot_blocks[NBLOCKS];
static uintptr_t slots_made;

static mh_lock_t arena_lock = MH_LOCK_INIT;
static struct arena_config config;
static struct fixalloc chunk_alloc;
static struct chunk_list reuse_list, ready_list, quarantine, warm_list;
static uint64_t quarantined_bytes;
static uint64_t warm_bytes;		/* warm chunks, and moves under way */
static uint64_t reuse_used;		/* chunk_used_bytes of the reuse list */
static uint64_t arenas_live, chunks_live;
static uint64_t releases_budget, releases_enomem;
static uint64_t next_arena_id = 1;
static struct arena *freed_head, *freed_tail;
static unsigned freed_count;

static void warm_trim(void);
static void arena_warm_release(void);

/* ------------------------------------------------------------ lists */

static void list_push(struct chunk_list *l, struct arena_chunk *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->count++;
}

static void list_push_head(struct chunk_list *l, struct arena_chunk *c)
{
	c->prev = NULL;
	c->next = l->head;
	if (l->head)
		l->head->prev = c;
	else
		l->tail = c;
	l->head = c;
	l->count++;
}

static void list_remove(struct chunk_list *l, struct arena_chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->next = c->prev = NULL;
	l->count--;
}

static struct arena_chunk *list_pop_head(struct chunk_list *l)
{
	struct arena_chunk *c = l->head;

	if (c)
		list_remove(l, c);
	return c;
}

static struct arena_chunk *list_pop_tail(struct chunk_list *l)
{
	struct arena_chunk *c = l->tail;

	if (c)
		list_remove(l, c);
	return c;
}

static size_t chunk_bytes(const struct arena_chunk *c)
{
	return c->limit - c->base;
}

/* Room left: in the window, and in the next one. */
static size_t chunk_free_bytes(const struct arena_chunk *c)
{
	return c->hi - c->lo + (c->next_window ? c->limit - c->next_window : 0);
}

/* Room used: the rest of the chunk (the window skipped included). */
static size_t chunk_used_bytes(const struct arena_chunk *c)
{
	return chunk_bytes(c) - chunk_free_bytes(c);
}

/* Whether a freed big arena's chunk is worth moving to the warm list: a
 * standard chunk at least half used (see "Who gets warm chunks"). */
static bool chunk_movable(const struct arena_chunk *c)
{
	size_t len = chunk_bytes(c);

	return !c->large && len == config.chunk_bytes &&
	       chunk_free_bytes(c) <= len / 2;
}

/* ------------------------------------------------------------ config */

/* arena_lock is never held while another allocator lock is taken, so it
 * can be taken around fork on its own. */
static void fork_prepare(void)
{
	mh_lock(&arena_lock);
}

static void fork_release(void)
{
	mh_unlock(&arena_lock);
}

__attribute__((constructor)) static void arena_config_init(void)
{
	pthread_atfork(fork_prepare, fork_release, fork_release);
	config.chunk_bytes = ALIGN_UP(mh_option(MH_OPT_ARENA_CHUNK), MH_PAGE_SIZE);
	if (config.chunk_bytes < 64 * 1024)
		mh_fatal("MHEAP_ARENA_CHUNK must be at least 64K");
	config.reuse = mh_option(MH_OPT_ARENA_REUSE);
	config.reuse_max = mh_option(MH_OPT_ARENA_REUSE_MAX);
	config.quarantine_max = mh_option(MH_OPT_QUARANTINE_MAX);
	config.ready_max = mh_option(MH_OPT_ARENA_READY_MAX);
	config.thp = mh_option(MH_OPT_ARENA_THP);
	config.thp_after = mh_option(MH_OPT_ARENA_THP_AFTER);
	config.recycle = mh_option(MH_OPT_ARENA_RECYCLE);
	config.warm_max = mh_option(MH_OPT_ARENA_WARM_MAX);
	fixalloc_init(&chunk_alloc, sizeof(struct arena_chunk), 0);
}

void arena_config_get(struct arena_config *cfg)
{
	mh_lock(&arena_lock);
	*cfg = config;
	mh_unlock(&arena_lock);
}

void arena_configure(const struct arena_config *cfg)
{
	mh_lock(&arena_lock);
	if (arenas_live)
		mh_fatal("arena settings changed while %llu arenas are live",
			 (unsigned long long)arenas_live);
	config = *cfg;
	config.chunk_bytes = ALIGN_UP(config.chunk_bytes, MH_PAGE_SIZE);
	mh_unlock(&arena_lock);
	warm_trim();	/* a lower cap, or recycling off */
}

/* ------------------------------------------------------------ chunks */

/* A chunk straight from the page heap, at least bytes long. */
static struct arena_chunk *chunk_new(size_t bytes, size_t align)
{
	const struct fault_backend *b = fault_backend();
	uintptr_t npages = ALIGN_UP(bytes, MH_PAGE_SIZE) >> MH_PAGE_SHIFT;
	struct mspan *s;
	struct arena_chunk *c;

	mheap_init();
	s = mheap_alloc_span(npages, align > MH_PAGE_SIZE ? align >> MH_PAGE_SHIFT : 1, 0,
			     MSPAN_CHUNK, PLACE_LOW, NULL);
	if (!s)
		return NULL;
	if (b->prepare((void *)s->base, npages << MH_PAGE_SHIFT)) {
		mheap_free_span(s);
		errno = ENOMEM;
		return NULL;
	}
	mh_lock(&arena_lock);
	c = fixalloc_alloc(&chunk_alloc);
	mh_unlock(&arena_lock);
	if (!c) {
		b->unprepare((void *)s->base, npages << MH_PAGE_SHIFT);
		mheap_free_span(s);
		errno = ENOMEM;
		return NULL;
	}
	c->span = s;
	c->base = c->lo = s->base;
	c->limit = c->hi = mspan_limit(s);
	c->next_window = 0;
	c->large = 0;
	c->moved = 0;
	c->thp_head = c->thp_tail = CHUNK_THP_DEFAULT;
	STORE_RELEASE(&s->chunk_data, c);
	return c;
}

/* Give a chunk whose pages have been dropped back to the page heap. */
static void chunk_destroy(struct arena_chunk *c, bool released)
{
	struct mspan *s = c->span;

	/* Small spans will live here: no huge pages for them (one small
	 * span would keep a whole huge page resident). */
	if (c->thp_head == CHUNK_THP_ON || c->thp_tail == CHUNK_THP_ON)
		sys_thp_advise((void *)c->base, chunk_bytes(c), false);
	fault_backend()->unprepare((void *)c->base, chunk_bytes(c));
	STORE_RELEASE(&s->chunk_data, NULL);
	mheap_free_span_released(s, released);
	mh_lock(&arena_lock);
	fixalloc_free(&chunk_alloc, c);
	mh_unlock(&arena_lock);
}

static bool give_back(unsigned max, bool to_heap);
static unsigned release_chunks(struct arena_chunk **cs, unsigned n, bool ready);

/* ------------------------------------------------------------ huge pages */

/* The huge page size when chunks of an arena take huge pages, else 0. */
static size_t thp_size(void)
{
	return config.thp && fault_backend()->thp ? sys_thp_size() : 0;
}

/* The huge page size if c can be split into a small-page head and a huge
 * tail (aligned, at least two huge pages long), else 0. */
static size_t chunk_thp_size(const struct arena_chunk *c)
{
	size_t h = thp_size();

	if (!h || c->large || (c->base & (h - 1)) || chunk_bytes(c) < 2 * h)
		return 0;
	return h;
}

/* Advise [from, to) of a chunk, whose part's advice is *st, for huge pages
 * or against them; nothing when it is that way already. A refusal leaves
 * things as they were: slower or larger, never wrong. */
static void chunk_thp_set(uint8_t *st, uintptr_t from, uintptr_t to, bool huge)
{
	bool now = *st == CHUNK_THP_ON || (*st == CHUNK_THP_DEFAULT && sys_thp_default());

	if (now == huge || from >= to)
		return;
	if (sys_thp_advise((void *)from, to - from, huge))
		*st = huge ? CHUNK_THP_ON : CHUNK_THP_OFF;
}

/*
 * Set up the windows of a chunk an arena takes from the ready list or the
 * page heap (not a reused one, which goes on where it stopped). An arena
 * that has already filled a chunk is big: the whole chunk is one window in
 * huge pages. Any other gets a first window of thp_after bytes at the base,
 * in small pages, so an arena that stays small stays small in memory too;
 * once that window runs out, chunk_next_window() moves on to the next huge
 * page boundary and the rest of the chunk goes huge.
 */
static void chunk_start(struct arena_chunk *c, bool big)
{
	size_t h = chunk_thp_size(c);
	uintptr_t head = c->base + h;

	c->lo = c->base;
	c->hi = c->limit;
	c->next_window = 0;
	if (!h)
		return;
	if (big || !config.thp_after) {
		chunk_thp_set(&c->thp_head, c->base, head, true);
		chunk_thp_set(&c->thp_tail, head, c->limit, true);
		return;
	}
	chunk_thp_set(&c->thp_head, c->base, head, false);
	c->hi = c->base + (config.thp_after < h ? config.thp_after : h);
	c->next_window = head;
}

/*
 * The window is used up: the next one is the next huge page (the last one
 * runs to the end of the chunk), and the first move advises the rest of
 * the chunk for huge pages. One huge page at a time, so that an arena of a
 * few hundred KiB holds one partly used huge page, not two (pointer-free
 * data would otherwise start at the top of the chunk). What was left of
 * the window is never touched: it costs address space, not memory, and it
 * faults with the chunk.
 */
static void chunk_next_window(struct arena_chunk *c)
{
	size_t h = sys_thp_size();

	chunk_thp_set(&c->thp_tail, c->next_window, c->limit, true);
	c->lo = c->next_window;
	c->hi = h && c->limit - c->lo > h ? c->lo + h : c->limit;
	c->next_window = c->hi < c->limit ? c->hi : 0;
}

/* The alignment of a normal chunk: the huge page size h when it can hold
 * two huge pages, so that its tail can be huge (chunk_thp_size). */
static size_t chunk_align(size_t h)
{
	return h && config.chunk_bytes >= 2 * h ? h : MH_PAGE_SIZE;
}

/*
 * The next chunk for an arena: reuse list, warm list (only for an arena
 * that has filled a chunk already), ready list, or a new one. When
 * the system refuses a new one (out of memory or of VMAs), quarantine is
 * cut, oldest first, until a chunk can be had: released chunks land on the
 * ready list and their VMAs merge back.
 */
static struct arena_chunk *chunk_get(uint64_t arena_id, bool big)
{
	for (;;) {
		struct arena_chunk *c;
		size_t h = thp_size();
		bool reused = false;

		mh_lock(&arena_lock);
		c = list_pop_tail(&reuse_list);	/* the most recent, as Go */
		if (c) {
			reuse_used -= chunk_used_bytes(c);
			reused = true;
		} else if (big && (c = list_pop_tail(&warm_list))) {
			/* The most recently moved: its pages are the likeliest
			 * to be in huge pages still and in cache. */
			warm_bytes -= chunk_bytes(c);
		} else {
			c = list_pop_head(&ready_list);
		}
		if (c) {
			STORE_RELAXED(&c->state, CHUNK_LIVE);
			c->arena_id = arena_id;
			chunks_live++;
		}
		mh_unlock(&arena_lock);
		if (c) {
			if (!reused)
				chunk_start(c, big);
			return c;
		}
		/* Aligned to the huge page size, when huge pages are used. */
		c = chunk_new(config.chunk_bytes, chunk_align(h));
		if (c) {
			c->arena_id = arena_id;
			STORE_RELAXED(&c->state, CHUNK_LIVE);
			mh_lock(&arena_lock);
			chunks_live++;
			mh_unlock(&arena_lock);
			chunk_start(c, big);
			return c;
		}
		if (!give_back(8, false)) {
			errno = ENOMEM;
			return NULL;
		}
	}
}

/* A chunk just made usable again (arena_lock not held): ordinary memory,
 * back to the ready list, or to the page heap when large, when the ready
 * list is full or when ready is false. */
static void chunk_released(struct arena_chunk *c, bool ready)
{
	bool keep;

	c->moved = 0;
	mh_lock(&arena_lock);
	keep = ready && !c->large &&
	       (ready_list.count + 1) * config.chunk_bytes <= config.ready_max;
	if (keep) {
		c->lo = c->base;
		c->hi = c->limit;
		c->next_window = 0;
		STORE_RELAXED(&c->state, CHUNK_READY);
		list_push(&ready_list, c);
	}
	mh_unlock(&arena_lock);
	if (!keep)
		chunk_destroy(c, fault_backend()->faults);
}

/* Put chunks whose release was refused back at the head of the quarantine,
 * in order (arena_lock held): they still fault, and they stay the oldest. */
static void requeue(struct arena_chunk **cs, unsigned n)
{
	while (n--) {
		STORE_RELAXED(&cs[n]->state, CHUNK_QUARANTINED);
		list_push_head(&quarantine, cs[n]);
		quarantined_bytes += chunk_bytes(cs[n]);
	}
}

/* The quarantined chunk right below c (dir < 0) or above it whose range is
 * protected as c's is, or NULL (arena_lock held: a quarantined chunk leaves
 * the state only under it). */
static struct arena_chunk *island_neighbour(const struct arena_chunk *c, int dir)
{
	struct mspan *s = span_of(dir < 0 ? c->base - 1 : c->limit);
	struct arena_chunk *n;

	if (!s || LOAD_RELAXED(&s->state) != MSPAN_CHUNK)
		return NULL;
	n = LOAD_ACQUIRE(&s->chunk_data);
	if (!n || LOAD_RELAXED(&n->state) != CHUNK_QUARANTINED ||
	    (dir < 0 ? n->limit != c->base : n->base != c->limit) ||
	    (!fault_backend()->mprotects && !n->moved))
		return NULL;
	return n;
}

/*
 * The kernel refused to open c alone (quarantined again, at the head): it
 * lies inside a protected VMA with its quarantined neighbours, and the
 * split ran out of VMAs. Opening the whole run of protected quarantined
 * chunks around it needs none: every VMA it touches is changed whole, and
 * the run ends at memory that is not protected. Returns how many chunks
 * were released (0: refused again, they all stay quarantined, faulting).
 * The run's younger chunks leave quarantine early: that is the price.
 */
static unsigned release_island(struct arena_chunk *c, bool ready)
{
	const struct fault_backend *b = fault_backend();
	struct arena_chunk *lo = c, *n;
	struct fault_range r;
	unsigned total = 0;
	int err = 0;

	mh_lock(&arena_lock);
	if (c->state != CHUNK_QUARANTINED || (!b->mprotects && !c->moved)) {
		mh_unlock(&arena_lock);
		return 0;
	}
	while ((n = island_neighbour(lo, -1)))
		lo = n;
	r.base = (void *)lo->base;
	r.moved = c->moved;
	/* Out of quarantine, lowest first, linked through next. */
	for (n = lo; n; n = n->next) {
		list_remove(&quarantine, n);
		quarantined_bytes -= chunk_bytes(n);
		STORE_RELAXED(&n->state, CHUNK_RELEASING);
		r.len = n->limit - lo->base;
		n->next = island_neighbour(n, 1);
	}
	mh_unlock(&arena_lock);
	if (!b->release(&r, 1, &err)) {
		mh_lock(&arena_lock);
		for (n = lo; n; n = lo) {
			lo = n->next;
			requeue(&n, 1);
		}
		mh_unlock(&arena_lock);
		return 0;
	}
	for (n = lo; n; n = lo, total++) {
		lo = n->next;	/* before chunk_released relinks n */
		chunk_released(n, ready);
	}
	return total;
}

/*
 * Release chunks from quarantine (arena_lock not held; they are in state
 * CHUNK_RELEASING and off every list) to the ready list (ready) or the page
 * heap. When the kernel refuses one for want of a VMA, that one and the
 * rest go back to quarantine, still faulting, and the refused one's island
 * is released whole instead. Returns how many chunks were released.
 */
static unsigned release_chunks(struct arena_chunk **cs, unsigned n, bool ready)
{
	struct fault_range r[BATCH];
	const struct fault_backend *b = fault_backend();
	unsigned done;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		r[i].base = (void *)cs[i]->base;
		r[i].len = chunk_bytes(cs[i]);
		r[i].moved = cs[i]->moved;
	}
	done = b->release(r, n, &err);
	for (unsigned i = 0; i < done; i++)
		chunk_released(cs[i], ready);
	if (done == n)
		return n;
	if (err != -ENOMEM)
		mh_fatal("cannot release arena chunk %p (%s backend): %s", r[done].base,
			 b->name, strerror(-err));
	mh_lock(&arena_lock);
	requeue(cs + done, n - done);
	mh_unlock(&arena_lock);
	return done + release_island(cs[done], ready);
}

/*
 * Take up to max of the oldest quarantined chunks out (arena_lock held) into
 * cs; the caller releases them after unlocking.
 */
static unsigned take_oldest(struct arena_chunk **cs, unsigned max)
{
	unsigned n = 0;

	while (n < max && quarantine.head) {
		struct arena_chunk *c = list_pop_head(&quarantine);

		quarantined_bytes -= chunk_bytes(c);
		STORE_RELAXED(&c->state, CHUNK_RELEASING);
		cs[n++] = c;
	}
	return n;
}

/* Release up to max of the oldest quarantined chunks because the system
 * refused something (arena_lock not held); returns how many were. */
static unsigned release_oldest(unsigned max, bool ready)
{
	struct arena_chunk *cs[BATCH];
	unsigned n;

	mh_lock(&arena_lock);
	n = take_oldest(cs, max);
	releases_enomem += n;
	mh_unlock(&arena_lock);
	return n ? release_chunks(cs, n, ready) : 0;
}

/*
 * Give back one more part of what arenas hold and nobody uses, for a caller
 * the system refused memory or address space (arena_lock not held): the warm
 * chunks (memory and address space); else, with to_heap, the reuse list's
 * and the ready list's chunks; else up to max of the oldest quarantined
 * chunks, released to the page heap (to_heap) or the ready list. False when
 * nothing was given back.
 */
static bool give_back(unsigned max, bool to_heap)
{
	struct arena_chunk *c;
	bool warm, idle, dirty;

	mh_lock(&arena_lock);
	warm = warm_list.count != 0;
	idle = to_heap && (reuse_list.count || ready_list.count);
	mh_unlock(&arena_lock);
	if (warm) {
		arena_warm_release();
		return true;
	}
	while (idle) {
		mh_lock(&arena_lock);
		c = list_pop_head(&reuse_list);
		dirty = c != NULL;
		if (c)
			reuse_used -= chunk_used_bytes(c);
		else
			c = list_pop_head(&ready_list);
		mh_unlock(&arena_lock);
		if (!c)
			return true;
		chunk_destroy(c, !dirty && fault_backend()->faults);
	}
	return release_oldest(max, !to_heap) != 0;
}

bool arena_give_back(void)
{
	return give_back(BATCH, true);
}

/* Release quarantine beyond the budget (arena_lock not held). A batch the
 * kernel refused whole stays for a later free to try again. */
static void enforce_budget(void)
{
	struct arena_chunk *cs[BATCH];

	for (;;) {
		unsigned n = 0;

		mh_lock(&arena_lock);
		while (n < BATCH && quarantined_bytes > config.quarantine_max && quarantine.head)
			n += take_oldest(cs + n, 1);
		releases_budget += n;
		mh_unlock(&arena_lock);
		if (!n || !release_chunks(cs, n, true))
			return;
	}
}

/*
 * Fault chunks and put them in quarantine. When the kernel refuses (out of
 * VMAs, or the module's limit), release the oldest quarantined chunks and
 * try again; with nothing left that can be released, the chunk goes back to
 * the page heap unfaulted (its pages dirty) rather than failing the free.
 */
static void quarantine_chunks(struct arena_chunk **cs, unsigned n, uint64_t arena_id)
{
	const struct fault_backend *b = fault_backend();
	struct fault_range r[BATCH];
	unsigned done = 0;

	if (!b->faults) {
		/* Nothing faults: nothing to hold back either. */
		for (unsigned i = 0; i < n; i++)
			STORE_RELAXED(&cs[i]->state, CHUNK_RELEASING);
		release_chunks(cs, n, true);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		r[i].base = (void *)cs[i]->base;
		r[i].len = chunk_bytes(cs[i]);
		r[i].moved = cs[i]->moved;
	}
	while (done < n) {
		int err = 0;
		unsigned k = b->fault(r + done, n - done, &err);
		uint64_t now = mh_nanotime();

		mh_lock(&arena_lock);
		for (unsigned i = done; i < done + k; i++) {
			cs[i]->arena_id = arena_id;
			cs[i]->freed_ns = now;
			STORE_RELEASE(&cs[i]->state, CHUNK_QUARANTINED);
			list_push(&quarantine, cs[i]);
			quarantined_bytes += chunk_bytes(cs[i]);
		}
		done += k;
		mh_unlock(&arena_lock);
		if (done == n)
			break;
		if (err != -ENOMEM && err != -EDQUOT)
			mh_fatal("cannot fault arena chunk %p (%s backend): %s", r[done].base,
				 b->name, strerror(-err));
		/* Out of VMAs or over the limit: make room, oldest first. */
		if (release_oldest(8, true))
			continue;
		/* Nothing could be released: give up faulting this one. Its
		 * pages were not dropped, so they go back dirty. */
		mh_lock(&arena_lock);
		releases_enomem++;
		mh_unlock(&arena_lock);
		chunk_destroy(cs[done++], false);
	}
	enforce_budget();
}

/* ------------------------------------------------------------ warm chunks */

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

/* Give warm chunks back to the page heap, oldest first, until they hold at
 * most limit bytes. Their pages are resident and hold stale data: they go
 * back dirty (not released), which the page heap zeroes before any use that
 * needs zeros, and its scavenger returns to the OS in time. */
static void warm_shrink(uint64_t limit)
{
	for (;;) {
		struct arena_chunk *c = NULL;

		mh_lock(&arena_lock);
		if (warm_bytes > limit && warm_list.head) {
			c = list_pop_head(&warm_list);
			warm_bytes -= chunk_bytes(c);
		}
		mh_unlock(&arena_lock);
		if (!c)
			return;
		chunk_destroy(c, false);
	}
}

static void warm_trim(void)
{
	warm_shrink(config.recycle ? config.warm_max : 0);
}

static void arena_warm_release(void)
{
	warm_shrink(0);
}

/*
 * Give the pages of [base, base + len), part of a live chunk, back to the
 * OS; the range reads as zero afterwards. Ordinary anonymous memory takes
 * MADV_DONTNEED; the device mappings of kmod refuse it, so there the range
 * is faulted and released again, which frees its pages in the module. A
 * refused release leaves the range faulting, which is safe: nothing will
 * be allocated there again.
 */
static void drop_pages(uintptr_t base, size_t len)
{
	const struct fault_backend *b = fault_backend();
	struct fault_range r = { .base = (void *)base, .len = len };
	int err = 0;

	if (b->remap) {
		sys_release(r.base, len);
		return;
	}
	if (b->fault(&r, 1, &err) == 1)
		(void)b->release(&r, 1, &err);
}

/*
 * Return the used part of the chunks on the reuse list to the OS: whole
 * pages of [base, lo) and of [hi, the end of the window). That data is
 * dead, and a reused chunk goes on from lo and hi, inwards: the part is
 * never handed out again, and reads as zero from now on. The list is
 * taken out while the pages go (arena_lock is not held over system calls),
 * so that no arena takes one of its chunks meanwhile; chunks pushed in the
 * meantime are younger and stay behind the older ones.
 */
static void reuse_drop_used(void)
{
	struct chunk_list l;
	struct arena_chunk *c;

	if (!fault_backend()->faults)
		return;	/* none: nothing is ever given back early */
	mh_lock(&arena_lock);
	l = reuse_list;
	reuse_list = (struct chunk_list){ 0 };
	mh_unlock(&arena_lock);
	for (c = l.head; c; c = c->next) {
		uintptr_t below = ALIGN_DOWN(c->lo, MH_PAGE_SIZE);
		uintptr_t above = ALIGN_UP(c->hi, MH_PAGE_SIZE);
		uintptr_t end = c->next_window ? c->next_window : c->limit;

		if (below > c->base)
			drop_pages(c->base, below - c->base);
		if (end > above)
			drop_pages(above, end - above);
	}
	if (!l.head)
		return;
	mh_lock(&arena_lock);
	l.tail->next = reuse_list.head;
	if (reuse_list.head)
		reuse_list.head->prev = l.tail;
	else
		reuse_list.tail = l.tail;
	reuse_list.head = l.head;
	reuse_list.count += l.count;
	mh_unlock(&arena_lock);
}

void arena_release_idle(void)
{
	arena_warm_release();
	reuse_drop_used();
}

/*
 * Move the pages of c, a chunk about to be faulted, to w, a chunk of the
 * same size just taken from the page heap. The old range stays mapped,
 * empty (MREMAP_DONTUNMAP), and is faulted by the caller as before. A move
 * works on one VMA: when the head of c was advised apart from its tail (an
 * arena's first chunk, small-page head, huge tail), only the tail moves; w's
 * head is then page heap memory as in any new chunk. False when the kernel
 * refuses (before 5.7, out of VMAs, ...): nothing has moved then.
 */
static bool chunk_move(struct arena_chunk *c, struct arena_chunk *w)
{
	size_t h = chunk_thp_size(c), len = chunk_bytes(c);
	size_t off = h && c->thp_head != c->thp_tail ? h : 0;

	for (;;) {
		void *p = mremap((void *)(c->base + off), len - off, len - off,
				 MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
				 (void *)(w->base + off));

		if (p != MAP_FAILED)
			break;
		/* EFAULT: the range spans two VMAs after all (say, a head
		 * advised the same as the tail that did not merge with it):
		 * the tail alone is one. */
		if (errno != EFAULT || off || !h)
			return false;
		off = h;
	}
	/* The moved VMA keeps its advice, and the pages their size. */
	w->thp_tail = c->thp_tail;
	if (!off)
		w->thp_head = c->thp_head;
	return true;
}

/*
 * Before full chunks of a freed big arena are faulted, move their pages to
 * fresh chunks that go on the warm list (see the top of the file), up to the
 * cap.
 * Only chunks that are mostly used: for a little one the move would cost a
 * VMA and save a few faults. Failures of any kind leave the chunk to be
 * faulted as before, its pages dropped. errno is left alone.
 */
static void recycle_chunks(struct arena_chunk **cs, unsigned n)
{
	const struct fault_backend *b = fault_backend();
	int saved = errno;

	if (!b->faults || !b->remap)
		return;
	for (unsigned i = 0; i < n; i++) {
		struct arena_chunk *c = cs[i], *w;
		size_t len = chunk_bytes(c);
		bool room;

		if (!chunk_movable(c))
			continue;
		mh_lock(&arena_lock);
		room = config.recycle && warm_bytes + len <= config.warm_max;
		if (room)
			warm_bytes += len;	/* held for this move */
		mh_unlock(&arena_lock);
		if (!room)
			break;
		w = chunk_new(len, chunk_align(thp_size()));
		if (w && chunk_move(c, w)) {
			c->moved = 1;
			w->arena_id = 0;	/* no arena's yet */
			STORE_RELAXED(&w->state, CHUNK_WARM);
			mh_lock(&arena_lock);
			list_push(&warm_list, w);
			mh_unlock(&arena_lock);
			continue;
		}
		if (w)
			chunk_destroy(w, false);
		mh_lock(&arena_lock);
		warm_bytes -= len;
		mh_unlock(&arena_lock);
		/* Out of memory or refused: the next will not do better. */
		break;
	}
	errno = saved;
}

/* ------------------------------------------------------------ arenas */

/* The slot handle h names, or NULL when its block was never made. */
static inline struct arena *slot_of(const mh_arena *h)
{
	uintptr_t v = (uintptr_t)h;
	struct arena *b = LOAD_RELAXED(&slot_blocks[(v >> BLOCK_BITS) & (NBLOCKS - 1)]);

	return b ? b + (v & (BLOCK_SLOTS - 1)) : NULL;
}

/* A slot never used before (arena_lock held), or NULL. */
static struct arena *slot_new(void)
{
	uintptr_t i = slots_made;
	struct arena *b;

	if (i == NBLOCKS * BLOCK_SLOTS)
		return NULL;
	b = slot_blocks[i >> BLOCK_BITS];
	if (!b) {
		b = sys_alloc(BLOCK_SLOTS * sizeof(*b));	/* zeroed */
		if (!b)
			return NULL;
		STORE_RELEASE(&slot_blocks[i >> BLOCK_BITS], b);
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
		STORE_RELAXED(&a->live, h);
		a->active = NULL;
		a->used = (struct chunk_list){ 0 };
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

	if (likely(h && a && LOAD_RELAXED(&a->live) == (uintptr_t)h))
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
	list_push(&a->used, c);
	mh_lock(&arena_lock);
	chunks_live++;
	mh_unlock(&arena_lock);
	return (void *)c->base;
}

/* Bump-allocate size bytes aligned to align in c's window into *out:
 * pointer data from the bottom up, pointer-free data from the top down.
 * False, changing nothing, when they do not fit. */
static inline bool chunk_bump(struct arena_chunk *c, size_t size, size_t align,
			      bool scan, void **out)
{
	uintptr_t p;

	if (scan) {
		p = ALIGN_UP(c->lo, align);
		if (p > c->hi || c->hi - p < size)
			return false;
		c->lo = p + size;
	} else {
		if (c->hi - c->lo < size)
			return false;
		p = ALIGN_DOWN(c->hi - size, align);
		if (p < c->lo)
			return false;
		c->hi = p;
	}
	*out = (void *)p;
	return true;
}

static void *arena_alloc_slow(const mh_arena *h, size_t size, size_t align, bool scan)
{
	struct arena *a = live_arena(h, &in_use);

	if (!IS_POW2(align)) {
		errno = EINVAL;
		return NULL;
	}
	if (size > config.chunk_bytes / 4 || align > config.chunk_bytes / 4)
		return alloc_large(a, size, align);
	for (bool big = false;;) {
		struct arena_chunk *c = a->active;

		if (c) {
			void *p;

			if (chunk_bump(c, size, align, scan, &p))
				return p;
			if (c->next_window) {
				chunk_next_window(c);
				continue;
			}
			list_push(&a->used, c);
			a->active = NULL;
			big = a->big = true;
		}
		c = chunk_get(a->id, big);
		if (!c)
			return NULL;
		a->active = c;
	}
}

/* Default alignment when 0 is given: what malloc guarantees. */
#define ARENA_DEFAULT_ALIGN 16

void *mh_arena_alloc(mh_arena *h, size_t size, size_t align)
{
	struct arena *a = slot_of(h);
	struct arena_chunk *c;

	if (!align)
		align = ARENA_DEFAULT_ALIGN;
	/* Fast path: bump upwards in the active chunk of a live arena. */
	if (likely(a && a->live == (uintptr_t)h && (c = a->active) && IS_POW2(align))) {
		void *p;

		if (likely(chunk_bump(c, size, align, true, &p)))
			return p;
	}
	return arena_alloc_slow(h, size, align, true);
}

void *mh_arena_alloc_noscan(mh_arena *h, size_t size, size_t align)
{
	struct arena *a = slot_of(h);
	struct arena_chunk *c;

	if (!align)
		align = ARENA_DEFAULT_ALIGN;
	/* Fast path: bump downwards in the active chunk of a live arena. */
	if (likely(a && a->live == (uintptr_t)h && (c = a->active) && IS_POW2(align))) {
		void *p;

		if (likely(chunk_bump(c, size, align, false, &p)))
			return p;
	}
	return arena_alloc_slow(h, size, align, false);
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

/*
 * Whether a freed big arena's active chunk moves to the warm list with its
 * full chunks instead of going to the reuse list (arena_lock held). The
 * next big arena then starts in a whole warm chunk: had it continued in the
 * reused one, the used part of that chunk would sit resident and unusable
 * while the arena touched as much fresh memory beyond its warm chunks, every
 * time (measured below, at the top of the file). It also faults the used
 * part rather than leaving the old data readable. Only with room on the
 * warm list: without a move the chunk is worth more reused than faulted.
 */
static bool active_moves(const struct arena *a)
{
	const struct arena_chunk *c = a->active;

	return a->big && config.recycle && fault_backend()->remap &&
	       chunk_movable(c) && warm_bytes + chunk_bytes(c) <= config.warm_max;
}

void mh_arena_free(mh_arena *h)
{
	struct arena *a = live_arena(h, &in_free);
	struct arena_chunk *cs[BATCH];
	uintptr_t live = (uintptr_t)h;
	unsigned n = 0;

	/* Claim the arena: of two frees racing through live_arena, exactly
	 * one takes it from live to freed; the other is a double free. */
	if (!__atomic_compare_exchange_n(&a->live, &live, 0, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		mh_fatal("%s %p", in_free.freed, (const void *)h);

	struct arena_chunk *active = a->active;
	bool moves = false;

	mh_lock(&arena_lock);
	arenas_live--;
	chunks_live -= a->used.count + (active != NULL);
	if (active && config.reuse && fault_backend()->faults &&
	    chunk_free_bytes(active) >= REUSE_MIN_FREE) {
		moves = active_moves(a);
		/* Over the cap on dead data, the chunk faults instead. */
		if (!moves && reuse_used + chunk_used_bytes(active) <= config.reuse_max) {
			STORE_RELAXED(&active->state, CHUNK_REUSE);
			list_push(&reuse_list, active);
			reuse_used += chunk_used_bytes(active);
			active = NULL;
		}
	}
	mh_unlock(&arena_lock);
	/* A moving active chunk goes first, so that the warm list's room,
	 * checked above, is not taken by the full ones. */
	if (moves)
		list_push_head(&a->used, active);
	else if (active)
		list_push(&a->used, active);
	a->active = NULL;

	/* Fault the rest, a batch of system calls at a time; a big arena's
	 * full chunks move their pages to warm chunks first. */
	while (a->used.head) {
		cs[n++] = list_pop_head(&a->used);
		if (n == BATCH || !a->used.head) {
			if (a->big)
				recycle_chunks(cs, n);
			quarantine_chunks(cs, n, a->id);
			n = 0;
		}
	}

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

void mh_quarantine_release(void)
{
	struct arena_chunk *cs[BATCH];

	/* A caller who gives back quarantine wants the arenas' memory back:
	 * warm chunks and the reuse list's dead data are the resident part. */
	arena_release_idle();

	for (;;) {
		mh_lock(&arena_lock);
		unsigned n = take_oldest(cs, BATCH);
		mh_unlock(&arena_lock);
		/* A batch the kernel refused whole stays quarantined. */
		if (!n || !release_chunks(cs, n, true))
			return;
	}
}

/* ------------------------------------------------------------ queries */

bool mh_in_arena(const void *p)
{
	struct mspan *s = span_of((uintptr_t)p);

	return s && LOAD_RELAXED(&s->state) == MSPAN_CHUNK;
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

/* Strong definition of the hook stats.c declares weak. */
void mh_arena_stats(struct mh_stats *st)
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
	mh_unlock(&arena_lock);
	st->arena_faults_caught = LOAD_RELAXED(&uaf_faults_caught);
}

void arena_internals(struct arena_internals *ai)
{
	*ai = (struct arena_internals){
		.lock = &arena_lock,
		.reuse = &reuse_list, .ready = &ready_list,
		.quarantine = &quarantine, .warm = &warm_list,
		.quarantined_bytes = &quarantined_bytes, .warm_bytes = &warm_bytes,
		.chunks_live = &chunks_live,
	};
}
