// SPDX-License-Identifier: MIT
/*
 * The secure heap, MHEAP_SECURE=1 (issue #26): the general heap gets the
 * protections user arenas have, and those hardened allocators give small
 * blocks, at a measured cost (docs/secure.md). It is a layer on
 * top of the default heap: malloc and free (and the sized frees) jump
 * here through the entry table set at start-up (entry.h), the rest of the
 * malloc family takes one branch on mh_secure into here, and this file
 * asks the default heap for its blocks, so the spans, caches and the
 * exact checks of free stay as they are (an invalid or double free still
 * aborts naming the address).
 *
 * Small blocks (the size classes, up to 32 KiB less the trailer):
 *  - a canary after each block: the request is served from the class with
 *    room for it and an 8-byte trailer at the slot's end (for a multiple
 *    of 16 bytes, which may need 16-byte alignment, a class whose slots all
 *    are: not 24, 40 or 56: secure_class); up to 16 bytes
 *    from the block's end towards the trailer hold a secret byte
 *    (CANARY_MAX), and the trailer the block's size and a check word made
 *    from it and a secret (secure_canary.h). free checks
 *    both before anything else: an overflow is reported at free, naming the
 *    block ("heap overflow: canary after N-byte block ...").
 *  - zero on free, checked at reuse (secure_slot.h): free zeroes the
 *    whole slot, trailer included (a second free finds no trailer:
 *    "double free"); the next allocation of the slot checks that it is
 *    still zero, and a write after free is reported then ("write after
 *    free: ... detected at its reuse"). Fresh spans are zero (mheap.c), so
 *    calloc of a small block needs no memset.
 *  - no immediate reuse: a freed small block goes back to its span at
 *    once, and the span hands a slot out only after its next sweep (the
 *    default heap never hands out a slot freed since the span's last
 *    sweep); which free slot comes next is random: each allocation either
 *    takes the span's next free slot or, on a random bit, the one its
 *    thread holds back for the class, holding the new one instead
 *    (shuffle_take). A held slot is allocated as far as its span knows; a
 *    thread's held slots go back at its exit. One span lookup serves the
 *    check of free and the free itself (docs/secure.md).
 *
 * Middle blocks (from there up to MHEAP_SECURE_LARGE, 2 MiB) are the
 * default heap's large blocks with the canary and trailer at their pages'
 * end, partly zeroed on free and delayed before their pages go back
 * (secure_middle.c); realloc grows them in place where the default heap
 * would.
 *
 * Large blocks (from MHEAP_SECURE_LARGE on), sampled small ones (about 1
 * in MHEAP_SECURE_SAMPLE blocks of up to a page, GWP-ASan's idea) and
 * sampled middle ones (about one per MHEAP_SECURE_MIDDLE_SAMPLE bytes) are
 * guarded blocks (secure_large.c): pages of their own ending at a guard
 * page, faulted and quarantined on free as arena chunks are.
 *
 * Zero-size blocks (malloc(0): a unique address that faults) are
 * secure_zero.c's; the canary and trailer secure_canary.h's; faults on
 * guarded blocks are reported by secure_report.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "arenamap.h"
#include "checkedfree.h"
#include "mcache.h"
#include "secure_slot.h"

bool mh_secure;

/* The largest small block: its slot holds the trailer. */
#define SMALL_MAX	(MH_MAX_SMALL_SIZE - TRAILER)
/* Blocks up to this size may be sampled: one page. */
#define SAMPLE_MAX	MH_PAGE_SIZE

static size_t large_min;	/* MHEAP_SECURE_LARGE */
static uint32_t sample_rate;	/* MHEAP_SECURE_SAMPLE, 0: off */
/* Per class, the first class from it on whose slots are all 16-aligned
 * (secure_class): aligned_class(16, ...) without its walk. */
static uint8_t class16[MH_NUM_CLASSES];
_Static_assert(MH_NUM_CLASSES <= 256, "class16 holds a class in a byte");

/* One random bit: a draw makes 63. */
static inline bool random_bit(void)
{
	uint64_t b = secure_self.bits;
	bool bit;

	if (unlikely(b <= 1))
		b = next_random() | (uint64_t)1 << 63;
	bit = b & 1;
	secure_self.bits = b >> 1;
	return bit;
}

void secure_init_locked(void)
{
	secure_canary_init();
	for (unsigned cls = 1; cls < MH_NUM_CLASSES; cls++)
		class16[cls] = (uint8_t)aligned_class(16, mh_class[cls].size);
	slot_pieces_init();
	large_min = mh_option(MH_OPT_SECURE_LARGE);	/* above SMALL_MAX: options.c */
	sample_rate = (uint32_t)mh_option(MH_OPT_SECURE_SAMPLE);
	middle_init();
	zero_size_init();
}

void secure_init(void)
{
	/* Faults on guarded blocks and malloc(0)'s memory are reported. */
	uaf_install();
}

static bool stacks_ready;

void secure_stacks_init(void)
{
	void *frames[1];

	if (backtrace(frames, 1) > 0)
		STORE_RELEASE(&stacks_ready, true);
}

bool secure_stacks_ready(void)
{
	return LOAD_ACQUIRE(&stacks_ready);
}

/* ------------------------------------------------------------ small blocks */

/* Whether this allocation is the thread's sampled one. */
static inline bool sample_now(size_t size, size_t align)
{
	if (!sample_rate) {
		secure_self.sample_in = UINT32_MAX;	/* secure_alloc's fast path */
		return false;
	}
	if (size > SAMPLE_MAX || align > 16)
		return false;
	if (secure_self.sample_in > 1) {
		secure_self.sample_in--;
		return false;
	}
	bool first = !secure_self.sample_in;	/* the thread's first: draw only */

	/* The next one in 1 to 2N - 1 allocations: N on average. */
	secure_self.sample_in = sample_rate == 1 ? 1 : 1 + (uint32_t)(next_random() % (2 * sample_rate - 1));
	return !first || sample_rate == 1;
}

/*
 * A slot of class cls, the next free one or the one held back: each
 * allocation of the class either takes the span's next free slot or, on a
 * random bit, hands out the slot it holds and holds the new one in its
 * place, so which free slot comes next is not known from the span's bitmap
 * alone. The held slot is allocated as far as the span knows (statistics,
 * heap checker); a thread's held slots go back at its exit. NULL when
 * there is no slot.
 */
static inline void *shuffle_take(unsigned cls)
{
	uintptr_t p = (uintptr_t)heap_alloc_small(cls), held = secure_self.held[cls], swap;

	if (unlikely(!held || !p)) {
		/* The thread's first of the class (or none left): hold one
		 * on a random bit, as a swap would. */
		if (!p || !random_bit() || unlikely(mh_tls_exited))	/* nothing given back any more */
			return (void *)p;
		secure_self.held[cls] = p;
		p = (uintptr_t)heap_alloc_small(cls);
		if (unlikely(!p)) {
			p = secure_self.held[cls];
			secure_self.held[cls] = 0;
		}
		return (void *)p;
	}
	/* Swap on a random bit, without a branch on it: a branch on a
	 * random bit mispredicts every other allocation
	 * (docs/secure-log.md#small-blocks-branches-on-random-bits-and-slot-sizes-2026-12-07-issue-26). */
	swap = (p ^ held) & -(uintptr_t)random_bit();
	secure_self.held[cls] = held ^ swap;
	return (void *)(p ^ swap);
}

/* The class of a slot for a block of size bytes and room for want bytes
 * and the trailer. The slot is where the block starts, and slots of 24, 40
 * and 56 bytes are 16-aligned every other time: a block whose size is a
 * multiple of 16 may need that alignment (the default heap's requests of
 * 16, 32 or 48 bytes never land in those classes; with the trailer they
 * would). That class comes from class16, not from aligned_class's walk at
 * every such malloc (docs/secure.md). */
static inline unsigned secure_class(size_t size, size_t want)
{
	unsigned cls = size_to_class(want + TRAILER);

	return size % 16 ? cls : class16[cls];
}

/* The slot p of class cls checked and made the block of size bytes. */
static inline __attribute__((always_inline)) void *slot_hand_out(uintptr_t p, size_t size,
								 unsigned cls, bool zero)
{
	size_t room = mh_class[cls].size;

	zero_check(p, room, &class_pieces[cls], zero);
	canary_set(p, size, room);
	return (void *)p;
}

/* alloc_small_in but its common case: through heap_alloc_small. */
static __attribute__((noinline)) void *alloc_small_slow(size_t size, unsigned cls, bool zero)
{
	void *p = shuffle_take(cls);

	if (unlikely(!p))
		return NULL;
	return slot_hand_out((uintptr_t)p, size, cls, zero);
}

/*
 * A small block of size bytes from a slot of class cls, not guarded. The
 * common case - the thread's current span of the class has a window and
 * the thread holds a slot of it - is shuffle_take's swap with
 * heap_alloc_small's take inline (window_take, mspan.h): no call before the
 * checks, so that the path keeps its values in registers that need no
 * saving (a call there costs the registers saved and restored around it:
 * docs/secure-log.md#one-jump-into-the-mode-and-the-checks-registers-2026-12-07-issue-26).
 * The rest is alloc_small_slow's.
 */
static inline __attribute__((always_inline)) void *alloc_small_in(unsigned cls, size_t size, bool zero)
{
	struct mcache *c = mh_tls_cache;
	uintptr_t held = secure_self.held[cls], p, swap;
	struct mspan *s;
	uint32_t window;
	uint64_t a;

	if (unlikely(!c || !held))
		return alloc_small_slow(size, cls, zero);
	s = c->alloc[cls];
	if (unlikely(!window_open(s, &window, &a)))
		return alloc_small_slow(size, cls, zero);
	p = window_take(s, window, a);
	/* shuffle_take's swap. */
	swap = (p ^ held) & -(uintptr_t)random_bit();
	secure_self.held[cls] = held ^ swap;
	return slot_hand_out(p ^ swap, size, cls, zero);
}

/* A small block of size bytes from a slot for want bytes (size to
 * SMALL_MAX), not guarded. */
static inline void *alloc_small(size_t size, size_t want, bool zero)
{
	return alloc_small_in(secure_class(size, want), size, zero);
}

/* A block of size bytes from a slot or pages for want bytes (at least
 * size: realloc asks for room to grow). */
static void *alloc_block(size_t size, size_t want, size_t align, bool zero)
{
	size_t room;
	void *p;

	if (size == 0) {
		p = zero_size_alloc(align);
		if (p)
			return p;
		/* The zero-size range is full, or align is above its slots':
		 * a block of the heap, whose slot must have 16 bytes at least
		 * (zero_check and slot_zero read and write 16-byte pieces:
		 * slot_piece), so not the 8-byte class size 0 and its trailer
		 * would take. */
		want = 1;
	}
	if (size >= large_min || align > MH_PAGE_SIZE || sample_now(size, align) ||
	    (size > SMALL_MAX && middle_sampled(size))) {
		p = guarded_alloc(size, align, size < large_min);
		if (p) {
			if (zero)
				memset(p, 0, size);
			return p;
		}
		if (size >= large_min && errno == ENOMEM)
			return NULL;
		/* No guard could be had (out of VMAs): an ordinary block. */
	}
	if (want > PTRDIFF_MAX - MH_ARENA_SIZE) {
		errno = ENOMEM;
		return NULL;
	}
	if (want <= SMALL_MAX && align <= 8)
		return alloc_small(size, want, zero);
	/* Aligned (C++'s new of 16 bytes or more asks for 16: preload_cxx.c),
	 * from a class whose slots all are, through the shuffle as any small
	 * block, so that aligned blocks too come in a random order, not the
	 * default heap's address order. */
	if (want <= SMALL_MAX && align <= MH_PAGE_SIZE)
		return alloc_small_in(align == 16 ? class16[size_to_class(want + TRAILER)] :
				      aligned_class(align, want + TRAILER), size, zero);
	if (want > size && want + TRAILER > MH_MAX_SMALL_SIZE)	/* realloc's */
		p = heap_alloc_moved(want + TRAILER, &room);
	else
		p = heap_alloc_plain(want + TRAILER, align, &room);
	if (!p)
		return NULL;
	if (zero)
		memset(p, 0, size);
	canary_set((uintptr_t)p, size, room);
	return p;
}

/* secure_malloc's calls but its common case: the thread's cache made
 * first, as the default mode's first allocation makes it (secure_malloc
 * may be the thread's first call). */
static __attribute__((noinline)) void *alloc_first(size_t size, size_t align, bool zero)
{
	(void)mcache_get();	/* NULL after the thread's exit: none needed */
	return alloc_block(size, size, align, zero);
}

/*
 * malloc in this mode (mh_malloc, malloc: entry.h). The common case is a
 * small block whose thread is not at its sampled allocation: sample_now's
 * countdown, which blocks above SAMPLE_MAX leave alone, is above 1; it is
 * 0 before the thread's first allocation, so that one goes to
 * alloc_first. (The entry table points here once the heap is set up.)
 * Kept apart from alloc_block, which calls out in many places: the fast
 * path saves and restores fewer registers (a third of a small malloc's
 * instructions were those of alloc_block's entry and exit).
 */
void *secure_malloc(size_t size)
{
	uint32_t in = secure_self.sample_in;

	if (likely(size - 1 < SMALL_MAX && in > 1)) {
		secure_self.sample_in = in - (size <= SAMPLE_MAX);
		return alloc_small(size, size, false);
	}
	return alloc_first(size, 1, false);
}

/* The same for calloc, aligned_alloc and realloc's new blocks. */
void *secure_alloc(size_t size, size_t align, bool zero)
{
	if (likely(size - 1 < SMALL_MAX && align <= 8)) {
		if (size > SAMPLE_MAX)
			return alloc_small(size, size, zero);
		/* sample_now's countdown, when it does not end. */
		if (likely(secure_self.sample_in > 1)) {
			secure_self.sample_in--;
			return alloc_small(size, size, zero);
		}
	}
	return alloc_block(size, size, align, zero);
}

void secure_thread_exit(void)
{
	middle_thread_exit();
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		if (secure_self.held[cls])
			heap_free_plain((void *)secure_self.held[cls]);
		secure_self.held[cls] = 0;
	}
}

/* secure_free of anything but a small block: a zero-size one, a guarded
 * one (c its chunk) or a middle one, a large one of the heap (room its
 * pages: secure_middle.c). */
static __attribute__((noinline)) void free_other(uintptr_t p, struct arena_chunk *c, size_t room)
{
	if (zero_size_owns(p)) {
		zero_size_free(p, "");
	} else if (c) {
		guarded_free(c, p, "");
	} else {
		middle_free(p, canary_check(p, room, ""), room, false, "");
	}
}

/* secure_free of anything but an allocated block of a span the thread
 * owns: the exact check of free through heap_checked_room. */
static __attribute__((noinline)) void free_checked_other(uintptr_t p)
{
	struct arena_chunk *c = NULL;
	struct mspan *small = NULL;
	uint64_t gen = 0;
	size_t room = 0;

	if (!p)
		return;
	if (likely(!zero_size_owns(p)))
		room = heap_checked_room(p, &small, &c, &gen, "");
	if (unlikely(!small)) {
		free_other(p, c, room);
		return;
	}
	(void)canary_check(p, room, "");
	slot_zero(p, room, &class_pieces[small->sizeclass]);
	heap_free_small(small, (void *)p, gen, "");
}

/*
 * A freed small block goes back to its span at once (the span hands the
 * slot out only after its next sweep), its canary checked and its slot
 * zeroed first. The common case, a block of a span the thread owns, is
 * the owner's free of the default heap (checkedfree.h) with the secure
 * checks between its check and its record: one span lookup, one check
 * (measured: docs/secure-log.md). The rest goes through
 * heap_checked_room. free in this mode (mh_free, free: entry.h).
 */
void secure_free(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	struct mcache *c = mh_tls_cache;
	struct mspan *s;
	uint32_t idx;

	if (unlikely(!c) || !(s = owned_span(c, p)) || unlikely(!local_free_allowed(s, p, &idx))) {
		free_checked_other(p);
		return;
	}
	size_t room = s->elemsize;

	(void)canary_check(p, room, "");
	slot_zero(p, room, &class_pieces[s->sizeclass]);
	local_free_at(c, s, idx);
}

/* The size of block p (what stands for it in messages), checked as a
 * free checks it; *room and *c as heap_checked_room gives them. */
static size_t checked_size(uintptr_t p, size_t *room, struct arena_chunk **c, const char *what)
{
	struct mspan *small;
	uint64_t gen;

	*room = heap_checked_room(p, &small, c, &gen, what);
	if (!*c)
		return canary_check(p, *room, what);
	return guarded_checked_size(*c, p, what);
}

/* The size of block p, which the call what names was given, checked as a
 * free checks it (malloc(0)'s pointers too). */
static size_t checked_usable(uintptr_t p, const char *what)
{
	struct arena_chunk *c;
	size_t room;

	if (zero_size_owns(p)) {
		zero_size_check(p, what);
		return 0;
	}
	return checked_size(p, &room, &c, what);
}

/* A block's size, checked: a freed block or a pointer inside one is
 * reported naming malloc_usable_size (mh_in_usable_size); 0 for NULL and
 * for what is not the heap's memory, as in the default mode. */
size_t secure_usable_size(const void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;

	if (!ptr || (!zero_size_owns(p) && !arena_of(p)))
		return 0;
	return checked_usable(p, mh_in_usable_size);
}

/*
 * A sized free (heap_free_sized_secure): the block checked as free checks
 * it, naming the call (what), its size and alignment compared with the
 * call's (sized_free_mismatch words a mismatch as the default mode does),
 * then freed from what the check found: one lookup, and a free of p
 * racing this one reported naming the call too. Not through
 * secure_free, which would look the block up and check it again, and
 * report without the call's name.
 */
void secure_free_sized(void *ptr, const char *what, bool aligned, size_t align, size_t size)
{
	uintptr_t p = (uintptr_t)ptr;
	struct arena_chunk *c = NULL;
	struct mspan *small = NULL;
	uint64_t gen = 0;
	size_t have, room = 0;
	bool zero = zero_size_owns(p);

	if (!ptr)
		return;
	/* A freed or invalid pointer is reported as such, naming the call,
	 * whatever the size says (as the default mode's sized free). */
	if (zero) {
		zero_size_check(p, what);
		have = 0;
	} else {
		room = heap_checked_room(p, &small, &c, &gen, what);
		have = c ? guarded_checked_size(c, p, what) : canary_check(p, room, what);
	}
	if (!IS_POW2(align) || p % align || size != have)
		sized_free_mismatch(p, what + strlen(" in "), aligned, align, size, have);
	if (zero) {
		zero_size_free(p, what);
	} else if (c) {
		guarded_free(c, p, what);
	} else if (!small) {
		middle_free(p, have, room, false, what);
	} else {
		slot_zero(p, room, &class_pieces[small->sizeclass]);
		heap_free_small(small, ptr, gen, what);
	}
}

void *secure_realloc(void *ptr, size_t size)
{
	uintptr_t p = (uintptr_t)ptr;
	struct arena_chunk *c;
	size_t old = 0, room;
	void *q;

	if (!ptr)
		return secure_alloc(size, 1, false);
	if (size == 0) {	/* as glibc: free and return NULL */
		secure_free(ptr);
		return NULL;
	}
	if (!zero_size_owns(p)) {
		old = checked_size(p, &room, &c, " in realloc");
		/* In place when the slot or pages hold the new size and its
		 * trailer and are not too large for it (small: same class),
		 * and the block's alignment suits the new size (secure_class). */
		if (!c && size <= room - TRAILER && size + TRAILER > room / 2 &&
		    (size % 16 || p % 16 == 0)) {
			/* The canary moves to the new end (growing, over
			 * bytes checked or zero just now). */
			canary_set(p, size, room);
			return ptr;
		}
		if (c && guarded_resize(c, size))
			return ptr;
		/* A middle block grows in place into free pages after it,
		 * as the default heap's large blocks do: no copy, and no
		 * pages left behind (secure_middle.c). */
		if (!c && room > MH_MAX_SMALL_SIZE && size > room - TRAILER && size < large_min &&
		    heap_grow_plain(ptr, size + TRAILER, &room)) {
			canary_set(p, size, room);
			return ptr;
		}
	} else {
		zero_size_check(p, " in realloc");
	}
	/* A block that grows past its room moves, to one with room to grow
	 * by half as much again (a buffer grown step by step moves a
	 * logarithmic number of times); its old place goes through the free
	 * path, and stale pointers to it are caught as after any free. */
	if (size > old && size >= large_min)
		q = guarded_alloc_growing(size);
	else if (size > old && size <= PTRDIFF_MAX - MH_ARENA_SIZE)
		q = alloc_block(size, size + size / 2 < large_min ? size + size / 2 : size, 1, false);
	else
		q = NULL;
	if (!q)
		q = secure_alloc(size, 1, false);
	if (!q)
		return NULL;
	memcpy(q, ptr, old < size ? old : size);
	if (!zero_size_owns(p) && !c && room > MH_MAX_SMALL_SIZE)
		middle_free(p, old, room, true, " in realloc");	/* canary checked above */
	else
		secure_free(ptr);
	return q;
}
