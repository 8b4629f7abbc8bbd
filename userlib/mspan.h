/* SPDX-License-Identifier: MIT */
/*
 * mspan: a run of pages, as in Go's mheap.go/mbitmap.go. A span is either
 * free (owned by the page heap), a small-object span cut into objects of one
 * size class, a large-object span holding one object, or a user-arena chunk.
 *
 * Small-object spans and explicit free
 * ------------------------------------
 * Go allocates from a span by scanning allocBits from freeindex, through a
 * 64-bit inverted window (allocCache) consumed with count-trailing-zeros; the
 * GC later sweeps the span, replacing allocBits with the mark bits. C frees
 * explicitly, so "sweeping" here folds recorded frees into allocBits:
 *
 *   allocated(i) = alloc_bits[i] && !freed(i)
 *
 * alloc_bits has the objects allocated at the last sweep and those handed
 * out since: malloc sets an object's bit as it hands it out. A free
 * records the object in one of two bitmaps:
 *   - freed_local, plain stores, when the freeing thread's cache owns the
 *     span (the common case: the fast path of free takes no atomic);
 *   - freed_remote, an atomic OR plus an atomic add to `remote`, otherwise.
 * The owner sweeps (new alloc_bits = alloc_bits minus both freed sets)
 * when its span runs dry, so freed objects are reused from then on.
 *
 * The window
 * ----------
 * The owner allocates from one alloc_bits word at a time, the window:
 * malloc's fast path takes the word's lowest clear bit and sets it (a + 1
 * has it as its lowest set bit), reading the word through `window`, its
 * byte offset from the span. A closed window reads `full` (all ones), so
 * that malloc takes its slow path with no test of its own. The window is
 * the bitmap word itself, not a copy of its free bits with an index moved
 * past each object handed out (Go's allocCache and freeindex): malloc and
 * free each save instructions, and free's check reads one word
 * (docs/heap-objects-log.md#the-window-in-the-bitmap-2026-12-07-issue-24).
 * The window is opened on a word with a free object below
 * `touched` (mspan_open_window) and closed as the owner refills, sweeps,
 * reaches a page further or lets the span stop being current
 * (mspan_close_window). While it is open on the word `touched` falls in,
 * that word's objects at or past `touched` (and past the last object) are
 * reserved: set in alloc_bits and in freed_local, so that malloc needs no
 * mask and any free of one fails the check (allocated, but freed) as it
 * did when their bits were clear. The owner's count of local frees
 * (notify_in) does not count them, and the fold of a sweep clears them
 * as it clears every freed object. A remote freer takes an object at or
 * past `touched` for not handed out whatever its bits say: the window is
 * opened on a word after `touched` is written, and closed before it
 * grows (with a release), so the freer never reads a reserved object's
 * bits half set or half cleared as "allocated".
 *
 * Ownership and the remote counter
 * --------------------------------
 * A small span is either owned by one thread's mcache or unowned on its
 * mcentral's partial or full list. A cache owns its current span per class
 * and keeps owning the spans it used up (mcache.h), so that the frees a
 * thread makes of its own objects stay plain stores. `remote` packs that state with the count
 * of remote frees not yet folded in and the freers holding the span
 * ("Dying spans" below):  remote = count << REMOTE_SHIFT | pins << 8 |
 * flags.
 * Remote freers add to it without a lock; only two transitions of an unowned
 * span take the mcentral lock, each made by exactly one thread: the first
 * pending free (the span may leave the full list) and the free that makes
 * count equal `outstanding`, the objects allocated when the owner let go (the
 * span is empty and goes back to the page heap). `gen` counts the span
 * struct's lives so that a freer arriving late at the lock can tell that the
 * span it freed into has died meanwhile; a freer's count is the last thing
 * it does to the span, but for reading fields that survive the struct's
 * reuse (the struct, below). The owner's sweep subtracts what it
 * folded, so the count may dip below zero for a moment (a freer has set its
 * bit but not yet added); the shift keeps the flags intact. Such a count is
 * not taken for zero: the span is not entirely free until that freer's add
 * (which may come after the owner freed every object again: the freer was
 * preempted), else the add could land on the struct's next life.
 *
 * Dying spans
 * -----------
 * A remote freer finds its span (the arena map), checks p against it,
 * and only then writes to it; meanwhile a racing free of the same object
 * may free the span's last one, the span die and its struct start a new
 * life. Without a hold on the span the late freer's bit and count went
 * into that life: an object of the new span the program held could be
 * folded as free and handed out twice (docs/heap.md#explicit-free,
 * remote_free_race_test). So a remote freer holds the span across
 * its writes, and a span dies only unheld:
 *   - the freer reads gen before its checks (checked_span_life in
 *     checkedfree.h, which every path to remote_free takes, or the
 *     secure mode's heap_checked_room, which hands it to
 *     heap_free_small), and before
 *     its first write adds a pin to `remote` (REMOTE_PIN, sequentially
 *     consistent), then reads gen again. Its count takes the pin off in the same add
 *     (REMOTE_ONE - REMOTE_PIN): a pin costs one locked instruction;
 *   - a small span dies (mheap.c, free_span_locked, which every death of
 *     a span goes through): its state is set dead and gen moved on
 *     (span_struct_kill), and then REMOTE_DEAD is set with an atomic OR
 *     that returns the pins (small_span_dies);
 *   - the pin and the OR are read-modify-writes of one word, so one
 *     comes first. The OR first: the pin reads it or a later value (a
 *     new life's, whose stores to `remote` come after gen moved on), so
 *     the gen read after the pin is the new one. The freer had checked a
 *     life that has ended, in which every object was free, p too: it
 *     aborts, a double free of p, having written nothing but a pin (a new
 *     life may keep it; the process ends). The pin first: the OR sees
 *     it, and the struct is never reused (its pages are); the freer
 *     writes into a struct nobody else uses, and aborts at its bit, its
 *     check, or its count, which returns REMOTE_DEAD;
 *   - what the checks read is of the life gen names: a death sets the
 *     state dead before gen moves on (a release), and a new small life
 *     sets its state last, with a release (mspan_init_small); the freer
 *     reads gen (an acquire), then the state (an acquire,
 *     checked_span_at), then the rest. gen read before a death and the
 *     same after the pin: no death came between, all was of that life.
 *     gen read after a death: the state reads dead (the free aborts) or
 *     small of the next life, and the rest is that life's too: the freer
 *     frees into it, checked against it, as a second free after the
 *     slot was handed out again, which no check can tell from a first.
 *   - fork: a freer cut short in the parent leaves its pin, which no one
 *     would take off, in the child; the child's handler drops every
 *     small span's pins (mcache.c, reclaim_dead_spans).
 * A recheck of gen after the bit, without the pin, would come too late:
 * the bit is in the new life by then, and its owner may fold it. Why a
 * pin and not the other ways: a (gen, count) word changed by a CAS
 * cannot cover the bit, which lies in another word; deferring the
 * struct's reuse until no freer can be in the window (an epoch per
 * thread) costs every remote free a fence as well, and the death path a
 * scan of every thread; the pin is one add on the line the count writes
 * anyway, and a span a freer holds as it dies is one a double free
 * reaches, so it can simply be left unused.
 *
 * Double frees
 * ------------
 * Every free checks that its object is allocated, but the owner's check
 * and bit are plain loads and a store, so a remote free racing with the
 * owner's free of the same object may pass its check as well. Such a pair
 * is caught before it can make an object free twice or a span empty while
 * an object in it is live:
 *   - two remote frees: the atomic OR returns the old word, and the second
 *     finds the first's bit;
 *   - the owner's sweep folds its own frees, writing `window` last (it
 *     closes it), then exchanges every remote word it finds set: a remote
 *     bit of an object that is not allocated once the owner's frees are
 *     folded is a double free, and it aborts naming it;
 *   - a remote freer sets its bit, checks the owner's record (`touched`,
 *     alloc_bits, freed_local), and only then counts its free. The bit's
 *     set and a load of `window` before the check, and the sweep's store
 *     of `window` and its loads of the remote words, are sequentially
 *     consistent (a Dekker pair): if the freer reads a `window` older than
 *     a sweep's, that sweep sees its bit; else it sees all that sweep
 *     folded (the later loads are acquires after the window's). So a
 *     record that says "free" while its bit is still there (no sweep took
 *     it to judge it) means a double free, and it aborts. The check comes
 *     before the count because the count may let the span die: after it
 *     the freer reads only what survives reuse of the struct (free.c,
 *     remote_free);
 *   - before the owner calls a span entirely free from its counts, and
 *     before the mcentral frees an unowned span, mspan_check_frees looks
 *     for an object freed both ways or freed remotely though not allocated.
 * So of two racing frees of one object one aborts at once, or the pair is
 * reported when the span's frees are next folded or it is found empty,
 * before any object is handed out again: freed objects are handed out only
 * after a sweep judged the remote bits, and the objects a window offers
 * were free at that sweep or never handed out in the span's life. The
 * owner's fast paths stay plain; the cost is one locked instruction per
 * sweep (the window's store, an xchg on x86; and one per remote word found
 * set), none per remote free beyond its pin, its bit and its count (the
 * loads are plain moves; an atomic no-op on `remote` between the bit and
 * the check would order them too, at a third locked instruction per
 * remote free: docs/heap.md#explicit-free). Elsewhere the owner opens the
 * window with release stores, and malloc sets an object's bit with a
 * plain one: a freer of a legitimately handed-out object got its pointer
 * after the malloc (the program's own synchronisation), so it sees it.
 *
 * The bit cannot wait in a buffer of the freer's (tcmalloc's and
 * jemalloc's batching): a free nobody can see lets a second free of the
 * object pass (the owner's plain check, or another freer's OR), the
 * owner's sweep fold that one and hand the object out again, and the
 * buffered free then find it allocated and free the new life. Only the
 * count could be deferred, which saves little where remote frees fall on
 * many spans (docs/heap.md, "Where two-thread Larson's time goes").
 */
#ifndef MHEAP_MSPAN_H
#define MHEAP_MSPAN_H

#include "internal.h"
#include "list.h"

enum mspan_state {
	MSPAN_DEAD = 0,		/* struct not in use */
	MSPAN_SMALL,		/* objects of one size class */
	MSPAN_LARGE,		/* a single object above 32 KiB */
	MSPAN_CHUNK,		/* a user-arena chunk */
	MSPAN_CACHED,		/* a freed large object a thread's cache keeps
				 * (largecache.c) */
};

enum mspan_list {
	MSPAN_LIST_NONE = 0,	/* a cache's current span, or not a small span */
	MSPAN_LIST_PARTIAL,	/* unowned, has free objects */
	MSPAN_LIST_FULL,	/* unowned, had none when it was put there */
	MSPAN_LIST_CACHE_PARTIAL, /* owned, not current, has local frees */
	MSPAN_LIST_CACHE_FULL,	/* owned, not current, none known */
	MSPAN_LIST_CACHE_EMPTY,	/* owned, not current, every object free */
};

#define REMOTE_OWNED	((int64_t)1)	/* a cache owns the span */
#define REMOTE_DEAD	((int64_t)2)	/* the span has died ("Dying spans") */
#define REMOTE_PIN	((int64_t)1 << 8)	/* a remote freer holds the span */
#define REMOTE_PINS	(((int64_t)1 << 32) - REMOTE_PIN)
#define REMOTE_SHIFT	32		/* the count, signed */
#define REMOTE_ONE	((int64_t)1 << REMOTE_SHIFT)

#define MH_BITMAP_WORDS	(MH_MAX_OBJS_PER_SPAN / 64)

struct mcache;

/*
 * The fields are ordered by who reads them when. The first cache line holds
 * everything the fast paths of malloc and free read (spans are aligned to
 * MH_SHARING_BLOCK, so to a line as well), so a free into a span that is
 * not hot touches that line and the line of its bitmap word, nothing else.
 *
 * Reuse of the struct (fixalloc, mheap.c) keeps the first line and
 * `remote`, zeroes the rest but the bitmaps (mspan_init_small clears them
 * with atomic stores). Threads read the kept ones without a lock while the
 * span may die and the struct start a new life: gen (late freers compare
 * it), `window` and the word it names (the stats peek at current spans'
 * windows: every value `window` has had names a word inside the struct),
 * base (checked_span), and `remote` and `outstanding`, which a
 * remote freer and mcentral_remote_event read after a count that may have
 * let the span die ("Double frees" above), and that a late freer pins
 * ("Dying spans"). Every life writes those two
 * with atomic stores, so such a read never races with the zeroing; what it
 * reads of a new life is judged by gen. The rest of the first line is
 * kept too; it is all set by mspan_init_small for a small span (needzero
 * when a large span is made, bucket when the struct is allocated), and a
 * struct of bucket 0 (no bitmap words) is never a small span.
 */
struct mspan {
	uint64_t gen;		/* the struct's lives (above) */
	/* All ones: the word a closed window reads as full (`window`). */
	uint64_t full;
	uintptr_t base;		/* first byte */
	uintptr_t npages;	/* length in pages */
	struct mcache *owner;	/* the cache allocating from it, or NULL */
	uint32_t elemsize;	/* small spans: the object size; else 0 */
	uint32_t divmul;	/* object index = offset * divmul >> 32 */
	/* The owner's allocation window: the byte offset from the span of
	 * the alloc_bits word malloc takes the lowest clear bit of, or of
	 * `full` (MSPAN_WINDOW_CLOSED). Peeked at by freers and the stats
	 * ("The window" above). */
	uint32_t window;
	uint32_t notify_in;	/* the owner's frees left until the one that
				 * takes the slow path: free_notify minus the
				 * bits set in freed_local (mspan_notify_at) */
	uint8_t state;		/* enum mspan_state */
	uint8_t sizeclass;	/* small spans: the class; else 0 */
	uint8_t list;		/* enum mspan_list: mcentral's under its lock,
				 * the cache's by the owner */
	/* Slow paths only from here on (in the first line for room). */
	uint8_t needzero : 1;	/* large spans: pages may hold old data */
	uint8_t bucket : 7;	/* the struct's size bucket (mheap.c) */
	/* Small spans: bit w set iff alloc_bits word w has a free object
	 * below `touched` and is not the window's. Written wherever
	 * alloc_bits or `touched` are (the sweeps, mspan_next_free,
	 * mspan_init_small) and as the window moves, read by malloc's
	 * refill (mspan_refill_window). 16 bits: MH_BITMAP_WORDS. */
	uint16_t free_words;
	uint16_t outstanding;	/* objects allocated when the owner let go */

	int64_t remote;		/* see above */
	/* Not kept across reuse from here on; fixalloc's free-list link
	 * lies over the next eight bytes while the struct is free. */
	uint32_t nelems;	/* objects in the span */
	uint32_t touched;	/* small spans: objects [0, touched) may have
				 * been handed out in this life, or lie on
				 * pages resident when it began;
				 * mspan_next_free reuses freed ones before it
				 * goes past. Grows only; read by remote
				 * freers (mspan_obj_handed_out) */
	union {
		struct {
			uint32_t nalloc;	/* owned, not current: objects
						 * allocated (all, as it was
						 * used up) before its local
						 * frees */
			uint32_t free_notify;	/* owned: the count of local
						 * frees at which the owner's
						 * free takes the slow path
						 * (mcache.c sets it as the
						 * span changes list) */
		};
		/* User-arena chunks: the chunk's struct (arena_chunk.c).
		 * Only structs of bucket 0 are chunks, and those are never
		 * small spans, so the two above are never written where a
		 * chunk's reader may look (every reader tests the state
		 * first); reuse zeroes both, and the free-list link of a
		 * free struct lies below them. */
		void *chunk_data;
	};

	/* On an mcentral's or the owning cache's list (list.h); or, on none,
	 * chained: in the span cache (spancache.c), in a batch of new spans
	 * (mheap.c). */
	union {
		struct list_node link;
		struct mspan *chain;
	};

	/* The three bitmaps, interleaved by word so that the words a free
	 * looks at sit in one cache line at a fixed offset from the span (no
	 * pointer to chase): 32 bytes a word from 40 bytes into a line, so
	 * that each word's three fields lie in one line (words start 40 and
	 * 8 bytes into lines, in turn). mspan_bitmap_words(nelems) entries,
	 * allocated with the struct but for the last word's spare field
	 * (mspan_struct_bytes), which nothing reads: a span of one word, 64
	 * objects or fewer, then takes one 128-byte sharing block, not two.
	 * None for large spans and chunks. */
	struct span_bits {
		uint64_t alloc;		/* alloc_bits: allocated at last sweep */
		uint64_t local;		/* freed_local: freed by the owner */
		uint64_t remote;	/* freed_remote: freed by others (atomic) */
		uint64_t unused;	/* past the struct in the last word */
	} bits[];
};

/* What reuse of the struct keeps (above). */
#define MSPAN_KEEP	offsetof(struct mspan, nelems)

_Static_assert(MH_BITMAP_WORDS <= 16, "free_words has a bit per bitmap word");
_Static_assert(MH_MAX_OBJS_PER_SPAN <= UINT16_MAX, "outstanding is 16-bit");
_Static_assert(offsetof(struct mspan, bits) % 64 == 40 && sizeof(struct span_bits) == 32,
	       "each bitmap word's alloc, local and remote bits lie in one cache line");
_Static_assert(offsetof(struct mspan, bits) + sizeof(struct span_bits) - sizeof(uint64_t) ==
	       MH_SHARING_BLOCK, "a span of one bitmap word takes one sharing block");
_Static_assert(offsetof(struct mspan, list) < 64 && offsetof(struct mspan, remote) >= 64,
	       "the fields the fast paths read are in the first cache line, and\n"
	       "`remote`, which other threads write, is not");

/* The span whose list link is n, or NULL for NULL. */
static inline struct mspan *mspan_of_link(struct list_node *n)
{
	return list_entry(n, struct mspan, link);
}

static inline unsigned mspan_bitmap_words(uint32_t nelems)
{
	return (nelems + 63) / 64;
}

/* The bytes of a span struct with this many bitmap words: the last word's
 * spare field is left out (struct mspan, bits). */
static inline size_t mspan_struct_bytes(unsigned words)
{
	return offsetof(struct mspan, bits) +
	       (words ? words * sizeof(struct span_bits) - sizeof(uint64_t) : 0);
}

/* Objects freed by the owner since the last sweep: the bits set in
 * freed_local, kept as the countdown the owner's free decrements (one
 * instruction and a branch, where a count and a comparison took five). */
static inline uint32_t mspan_local_frees(const struct mspan *s)
{
	return s->free_notify - s->notify_in;
}

/* Make the owner's free that brings the local frees to `target` take the
 * slow path (the next one, if they are there already). */
static inline void mspan_notify_at(struct mspan *s, uint32_t target)
{
	uint32_t done = mspan_local_frees(s);

	s->free_notify = target > done ? target : done + 1;
	s->notify_in = s->free_notify - done;
}

/* Index of the object containing p (p inside the span). */
static inline uint32_t mspan_obj_index(const struct mspan *s, uintptr_t p)
{
	return (uint32_t)(((uint64_t)(p - s->base) * s->divmul) >> 32);
}

static inline uintptr_t mspan_limit(const struct mspan *s)
{
	return s->base + (s->npages << MH_PAGE_SHIFT);
}

/*
 * Allocation from a span the caller owns. mspan_next_free refills the window
 * and returns 0 when the span has no free object left before a sweep.
 * Objects on pages not yet faulted in come last: on a span made of fresh
 * or released pages, while the owner has freed objects of it, it sweeps in
 * place and reuses them before the window goes a page of objects further
 * (`touched`), as mimalloc extends a page's free list only when no freed
 * block is left. A class of few live objects and big spans (8 objects of
 * 4-32 KiB) otherwise faulted in every slot of its span in turn before the
 * sweep: up to 256 KiB for one live object. A span on resident pages
 * starts with every object touched: the refills a page at a time would
 * cost it time and save no memory. Measured: docs/heap.md#spans. In the
 * secure mode the pages of the objects reached are written before any is
 * handed out (secure_span_reach).
 */
MH_HIDDEN uintptr_t mspan_next_free(struct mspan *s);
/* The window's value when closed: the offset of `full`. */
#define MSPAN_WINDOW_CLOSED	((uint32_t)offsetof(struct mspan, full))

/* The window's value for alloc_bits word w, and back. */
static inline uint32_t mspan_window_at(unsigned w)
{
	return (uint32_t)(offsetof(struct mspan, bits) + w * sizeof(struct span_bits));
}
static inline unsigned mspan_window_index(uint32_t window)
{
	return (unsigned)((window - offsetof(struct mspan, bits)) / sizeof(struct span_bits));
}

/* The first object of the word of window (not closed): an lea, where
 * the index times 64 took four instructions. */
static inline uint32_t mspan_window_first(uint32_t window)
{
	_Static_assert(sizeof(struct span_bits) == 32, "64 objects a bitmap word of 32 bytes");
	return (window - (uint32_t)offsetof(struct mspan, bits)) * 2;
}

/* The word malloc takes from: an alloc_bits word, or `full`. */
static inline uint64_t *mspan_window_word(struct mspan *s, uint32_t window)
{
	return (uint64_t *)((char *)s + window);
}

/* The span struct with the most bitmap words, as one object: the memory
 * operand of the fast paths' asm (window_word_load, local_free), which
 * tells gcc that the asm reads or writes the span, while the asm
 * addresses the word itself. Nothing reads it whole. */
struct mspan_bytes {
	char b[offsetof(struct mspan, bits) + MH_BITMAP_WORDS * sizeof(struct span_bits)];
};
static inline struct mspan_bytes *mspan_whole(struct mspan *s)
{
	return (struct mspan_bytes *)s;
}

/*
 * malloc's load and store of its window word, addressed as the span plus
 * `window` in the instruction itself: gcc formed the word's address with
 * an add and kept a copy of `window` for the object's index, two
 * instructions of malloc's fast path (measured:
 * docs/heap-objects-log.md#the-fast-paths-addressing-and-the-refill-lane-2026-12-07-issue-24).
 * Plain moves, as the relaxed atomics are on x86-64 (the stats read the
 * word with relaxed loads). ThreadSanitizer cannot see into asm: its
 * build keeps the atomics.
 */
static inline uint64_t window_word_load(struct mspan *s, uint32_t window)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	uint64_t a;

	__asm__("movq (%1,%2), %0"
		: "=r"(a)
		: "r"(s), "r"((uintptr_t)window), "m"(*mspan_whole(s)));
	return a;
#else
	return LOAD_RELAXED(mspan_window_word(s, window));
#endif
}
static inline void window_word_store(struct mspan *s, uint32_t window, uint64_t a)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	__asm__ volatile("movq %1, (%2,%3)"
			 : "+m"(*mspan_whole(s))
			 : "r"(a), "r"(s), "r"((uintptr_t)window));
#else
	STORE_RELAXED(mspan_window_word(s, window), a);
#endif
}

/* The next object from s, whose window word is not full (a, mspan.h,
 * "The window"): its lowest clear bit, set. Go's nextFreeFast, without
 * its separate window: no lock, no atomic, and no counter (the objects of
 * a window were counted when it was opened). The word is an alloc_bits
 * word itself, so nothing else moves: a free's check reads the bitmap
 * words alone. */
static inline uintptr_t window_take(struct mspan *s, uint32_t window, uint64_t a)
{
	uint64_t next = a + 1;	/* its lowest set bit: a's lowest clear one */

	window_word_store(s, window, a | next);
	/* The object's offset in 32 bits (a span is far smaller than 4 GiB):
	 * one multiply by `elemsize` in memory, no load of its own. */
	return s->base + (uint32_t)((mspan_window_first(window) +
				     (uint32_t)__builtin_ctzll(next)) * s->elemsize);
}

/* Whether the window word of s, read into *window and *a, has an object. */
static inline bool window_open(struct mspan *s, uint32_t *window, uint64_t *a)
{
	*window = s->window;
	*a = window_word_load(s, *window);
	return *a != ~(uint64_t)0;
}

/* The objects of word w at or past `touched` (the span's tail past its
 * last object included): reserved while the window is on w ("The
 * window"). */
static inline uint64_t mspan_past_touched(const struct mspan *s, unsigned w)
{
	uint32_t n = s->touched - w * 64;	/* > 0: w holds a free object below */

	return n >= 64 ? 0 : ~(((uint64_t)1 << n) - 1);
}

/* Objects the window still offers: for the owner exact, for others a
 * snapshot (the stats: every store to an alloc_bits word and to `window`
 * is atomic, and both stay inside the struct's memory across its lives). */
static inline uint32_t mspan_window_free(struct mspan *s)
{
	return (uint32_t)mh_popcount(~LOAD_RELAXED(mspan_window_word(s, LOAD_RELAXED(&s->window))));
}

/* Close the window (the owner): its reserved bits cleared (a remote
 * freer takes an object at or past `touched` for free whatever its bits
 * say, and `touched` grows only after this), the word back in free_words
 * if the window still had objects. */
static inline void mspan_close_window(struct mspan *s)
{
	uint32_t window = s->window;

	if (window == MSPAN_WINDOW_CLOSED)
		return;
	unsigned w = mspan_window_index(window);
	uint64_t res = mspan_past_touched(s, w);
	uint64_t a = LOAD_RELAXED(&s->bits[w].alloc) & ~res;

	STORE_RELAXED(&s->window, MSPAN_WINDOW_CLOSED);
	if (res) {
		STORE_RELAXED(&s->bits[w].alloc, a);
		STORE_RELAXED(&s->bits[w].local, LOAD_RELAXED(&s->bits[w].local) & ~res);
	}
	if (~(a | res))
		s->free_words = (uint16_t)(s->free_words | 1u << w);
}

/*
 * Open the window on word w, which has a free object below `touched`,
 * and hand out its first free object. The word leaves free_words (its
 * free objects are the window's). Its objects at or past `touched` are
 * set in alloc_bits and freed_local while the window is on it, so that
 * malloc's fast path needs no mask and a free of one fails the check as
 * before: local first, alloc with a release after.
 */
static inline uintptr_t mspan_open_window(struct mspan *s, unsigned w)
{
	uint64_t res = mspan_past_touched(s, w);
	uint64_t a = LOAD_RELAXED(&s->bits[w].alloc) | res;

	s->free_words = (uint16_t)(s->free_words & ~(1u << w));
	if (res)
		STORE_RELAXED(&s->bits[w].local, LOAD_RELAXED(&s->bits[w].local) | res);
	STORE_RELEASE(&s->bits[w].alloc, a | (a + 1));
	/* A release: a remote freer that reads it sees the sweep before. */
	STORE_RELEASE(&s->window, mspan_window_at(w));
	return s->base + (uintptr_t)(w * 64 + (uint32_t)__builtin_ctzll(a + 1)) * s->elemsize;
}
/*
 * The refill of a current span's window that ran dry, malloc's (malloc.c,
 * malloc_refill) and the slow path's (mspan_next_free): the window, full
 * or closed, moved to the first word with a free object below `touched`,
 * whose first free object it hands out; 0, the window left as it is, when none
 * is left there (the slow path sweeps, or goes a page further,
 * mspan_next_free). free_words names those words, so there is no loop over
 * the words, whose tests were coin tosses (a word left full by the sweep
 * or not). free_words counts objects below `touched` only, so a span of
 * fresh pages that keeps being swept in place short of its end takes this
 * lane too rather than the slow way
 * (docs/heap-objects-log.md#partly-touched-spans-and-the-refill-lane-2026-12-07-issue-24).
 * Also the first pick from a span just swept, where a span change takes
 * its first object (mcache.c, adopt). mh_empty_span (no objects) gives 0
 * and is not written. mspan_refill_from is the refill of a span whose
 * free_words (words) the caller found non-zero: it hands out an object,
 * never 0 (malloc's lane, which tests free_words itself).
 */
static inline __attribute__((always_inline)) uintptr_t mspan_refill_from(struct mspan *s,
									uint32_t words)
{
	uint32_t window = s->window;

	/* The window is closed or full (the callers come when malloc found
	 * it so, or after a sweep): it needs closing only for the reserved
	 * objects of the word `touched` falls in. */
	if (window != MSPAN_WINDOW_CLOSED && mspan_window_first(window) + 64 > s->touched)
		mspan_close_window(s);
	return mspan_open_window(s, (unsigned)__builtin_ctz(words));
}
static inline uintptr_t mspan_refill_window(struct mspan *s)
{
	uint32_t words = s->free_words;

	if (!words)
		return 0;
	return mspan_refill_from(s, words);
}
/* Fold recorded frees into alloc_bits and restart at object 0 (owner). */
MH_HIDDEN void mspan_sweep(struct mspan *s);
/* Fold only the owner's own frees and handed-out objects (before letting go). */
MH_HIDDEN void mspan_fold_local(struct mspan *s);
/* Whether object idx is allocated by the owner's record alone (handed out,
 * not freed by the owner), remote frees aside; for others a snapshot, exact
 * as "Double frees" above says. `window` is read first and sequentially
 * consistent, not for its value: it is the variable of the Dekker pair
 * with the sweep's store ("Double frees"). */
static inline bool mspan_obj_handed_out(const struct mspan *s, uint32_t idx)
{
	unsigned w = idx / 64;
	uint64_t bit = (uint64_t)1 << (idx % 64);

	(void)__atomic_load_n(&s->window, __ATOMIC_SEQ_CST);
	/* An object past `touched` may be reserved ("The window"). */
	if (idx >= LOAD_ACQUIRE(&s->touched))
		return false;
	if (!(LOAD_ACQUIRE(&s->bits[w].alloc) & bit))
		return false;
	/* freed_local is written by the owner only, with relaxed stores, so
	 * a remote freer can see a free the owner made before. */
	return !(LOAD_ACQUIRE(&s->bits[w].local) & bit);
}
/* Whether object idx is allocated now; exact for the owner, a snapshot for
 * others. */
static inline bool mspan_obj_allocated(const struct mspan *s, uint32_t idx)
{
	uint64_t bit = (uint64_t)1 << (idx % 64);

	return mspan_obj_handed_out(s, idx) && !(LOAD_RELAXED(&s->bits[idx / 64].remote) & bit);
}
/* Abort: p, an object of the heap, has been freed already. */
MH_HIDDEN MH_NORETURN void mspan_double_free(uintptr_t p);
/* Abort naming an object whose free is recorded twice - in both freed
 * bitmaps, or in freed_remote though not allocated - before the owner or
 * the mcentral takes s for entirely free ("Double frees" above). */
MH_HIDDEN void mspan_check_frees(const struct mspan *s);
/* Set up a fresh small span over pages [base, base + npages); resident:
 * none of them has been released (or never touched), so that handing out
 * any object faults nothing in (`touched` starts at the end). */
MH_HIDDEN void mspan_init_small(struct mspan *s, unsigned sizeclass, bool resident);
/* Count of objects a span would have free after a sweep now. */
static inline uint32_t mspan_pending_frees(const struct mspan *s)
{
	int64_t remote = LOAD_RELAXED(&s->remote) >> REMOTE_SHIFT;

	return mspan_local_frees(s) + (remote > 0 ? (uint32_t)remote : 0);
}

#endif
