// SPDX-License-Identifier: MIT
/*
 * Middle blocks of the secure heap (secure.c): blocks too large for the
 * small classes (from 32 KiB less the trailer) and below MHEAP_SECURE_LARGE
 * (2 MiB by default), from which every block is guarded. They are the default heap's large
 * blocks, pages of a span of their own, and keep the secure mode's catches
 * in the small blocks' manner, at the cost of a few stores per free rather
 * than a chunk and guard system calls per block (docs/secure.md). Their
 * pages lie on the default heap's 64 KiB lattice when malloc makes them,
 * in page steps when realloc does (malloc_large.c, large_alloc):
 *  - a canary and trailer after the block, as a small slot's (secure_canary.h),
 *    checked at free: an overflow is reported there, naming the block;
 *  - zero on free, checked when the block leaves its delay: free zeroes
 *    the block's first and last 64 bytes, the trailer and one word drawn at
 *    random between them (recorded with the block), and checks them before
 *    the pages go back to the heap ("write after free: ... detected at its
 *    release"). Not all of it: a program that writes a word of a 512 KiB
 *    block would pay for every page of it at each free (peakfree's 64-512
 *    KiB blocks: tens of microseconds each, estimated, against default
 *    mheap's 0.3 us a malloc and free). So a middle block's pages, as a guarded block's,
 *    may hold old data when malloc hands them out again; calloc zeroes
 *    them. A second free of a delayed block finds its trailer zero:
 *    "double free"; of two at once, the one whose swap of the trailer to
 *    zero fails (middle_claim);
 *  - no immediate reuse: a freed block waits in its thread's FIFO of at
 *    most DELAY_BLOCKS blocks and DELAY_BYTES bytes before its pages go
 *    back to the heap (the block freed last always waits), so the next
 *    malloc of its size does not get it; then into the thread's large
 *    cache as the default mode's frees go (largecache.c: no heap lock, a
 *    third of peakfree's instructions in its second thread), but for a
 *    block realloc moved away from, whose pages go to the page heap;
 *  - a share of them guarded (secure_large.c), sampled by size as GWP-ASan
 *    samples by count: one about every MHEAP_SECURE_MIDDLE_SAMPLE bytes of
 *    middle blocks a thread allocates, so that a block's chance grows with
 *    its size and the cost of guarding (its pages, system calls) stays a
 *    fixed share of the bytes.
 */
#include <string.h>

#include "mcache.h"
#include "secure_canary.h"

/* Bytes at each end of a block that free zeroes and the release checks. */
#define CHECKED_END	64
/* The delay: at most this many blocks, and bytes of their pages, per
 * thread (docs/secure.md). */
#define DELAY_BLOCKS	8
#define DELAY_BYTES	((size_t)1 << 20)

struct delayed {
	uintptr_t p;
	size_t size;		/* the block's */
	size_t room;		/* its pages' */
	size_t word;		/* the offset of the random word zeroed */
	bool moved;		/* realloc moved it: its pages go to the page heap */
};

static uint64_t sample_bytes;	/* MHEAP_SECURE_MIDDLE_SAMPLE, 0: off */

static __thread struct {
	struct delayed q[DELAY_BLOCKS];	/* a ring: the oldest at head */
	unsigned head, n;
	size_t bytes;
	uint64_t sample_left;	/* bytes until the next guarded block, 0: not drawn */
} mid;

void middle_init(void)
{
	sample_bytes = mh_option(MH_OPT_SECURE_MIDDLE_SAMPLE);
}

/* Bytes to the next guarded block: 1 to 2N - 1, N on average. */
static uint64_t draw(void)
{
	return sample_bytes == 1 ? 1 : 1 + secure_random() % (2 * sample_bytes - 1);
}

bool middle_sampled(size_t size)
{
	if (!sample_bytes)
		return false;
	if (!mid.sample_left)
		mid.sample_left = draw();
	if (size < mid.sample_left) {
		mid.sample_left -= size;
		return false;
	}
	mid.sample_left = draw();
	return true;
}

/* The offset of the block's tail that free zeroes: its last CHECKED_END
 * bytes, up to its last byte, so not 8-aligned for a size that is not a
 * multiple of 8 (an aligned tail would leave a write after free to the
 * last 1-7 bytes of such a block unseen). After the head: a middle block
 * is far larger than both. */
static inline size_t tail_of(size_t size)
{
	return size - CHECKED_END;
}

/* The first nonzero byte of the n bytes at p, or n. */
static size_t first_written(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && !p[i])
		i++;
	return i;
}

/* The n bytes at p (a multiple of 8, at most CHECKED_END; p need not be
 * 8-aligned) or-ed as words: zero when they all are. No loop left: n is a
 * constant at every call. */
static inline __attribute__((always_inline)) uint64_t or_words(const uint8_t *p, size_t n)
{
	uint64_t any = 0, w;

#pragma GCC unroll 8
	for (size_t i = 0; i < n; i += 8) {
		memcpy(&w, p + i, 8);
		any |= w;
	}
	return any;
}

/* Check that a delayed block's zeroed bytes are still zero: an abort
 * naming the first written one if not. The common case, all zero, reads
 * them as words or-ed into one test, no early exit (a written byte is
 * rare), rather than byte by byte as first_written does once the test
 * has failed, to name the byte (docs/secure-log.md#row-by-row-on-the-new-host-and-the-windows-refill-2026-12-07-issue-26). */
static void check_zero(const struct delayed *d)
{
	const uint8_t *b = (const uint8_t *)d->p;
	size_t tail = tail_of(d->size), at;
	uint64_t w;

	if (likely(!(or_words(b, CHECKED_END) | or_words(b + d->word, 8) |
		     or_words(b + tail, CHECKED_END) | or_words(b + d->room - TRAILER, TRAILER))))
		return;
	at = first_written(b, CHECKED_END);
	if (at == CHECKED_END) {
		memcpy(&w, b + d->word, 8);
		at = w ? d->word + first_written(b + d->word, 8) : CHECKED_END;
	}
	if (at == CHECKED_END) {
		at = tail + first_written(b + tail, CHECKED_END);
		if (at == tail + CHECKED_END)
			at = d->room - TRAILER + first_written(b + d->room - TRAILER, TRAILER);
	}
	mh_fatal("write after free: %zu-byte block %#lx written at offset %zu after its free, detected at its release",
		 d->size, (unsigned long)d->p, at);
}

/* A delayed block's pages go back to the heap: into the thread's large
 * cache, as the default mode's free puts them, unless realloc moved the
 * block away (growth in place needs free runs in the page heap). */
static void release(const struct delayed *d)
{
	if (d->moved)
		heap_free_moved((void *)d->p);
	else
		heap_free_plain((void *)d->p);
}

/* The oldest delayed block's pages go back to the heap, checked first. */
static void release_oldest(void)
{
	struct delayed *d = &mid.q[mid.head];

	check_zero(d);
	mid.head = (mid.head + 1) % DELAY_BLOCKS;
	mid.n--;
	mid.bytes -= d->room;
	release(d);
}

/*
 * Middle block p, its canary checked (size bytes in pages of room),
 * claimed for this free: its pages stay the heap's through its
 * delay (secure_middle.c), so two frees at once both find it allocated
 * and pass canary_check; the one that swaps its trailer to zero frees it,
 * the other aborts. Its first bytes go to zero before: a later free that
 * finds the trailer zero finds them zero too, which canary_broken names a
 * double free (naming the call what).
 */
static void middle_claim(uintptr_t p, size_t size, size_t room, const char *what)
{
	uint64_t trailer = (uint64_t)trailer_check(size) << 32 | size;

	memset((void *)p, 0, 8);
	if (!__atomic_compare_exchange_n((uint64_t *)(p + room - TRAILER), &trailer, 0, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		mh_freed_pointer(p, what);
}

void middle_free(uintptr_t p, size_t size, size_t room, bool moved, const char *what)
{
	size_t tail = tail_of(size), words = (tail - CHECKED_END) / 8;
	struct delayed d = {
		.p = p, .size = size, .room = room, .moved = moved,
		.word = CHECKED_END + secure_random() % words * 8,
	};

	middle_claim(p, size, room, what);
	memset((void *)p, 0, CHECKED_END);
	memset((void *)(p + tail), 0, CHECKED_END);
	memset((void *)(p + d.word), 0, 8);
	memset((void *)(p + room - TRAILER), 0, TRAILER);
	/* The thread's exit gives its delay back through its cache's exit
	 * hook (mcache.c): a thread that only frees gets a cache here. With
	 * none, or after the exit, the block goes back at once. */
	if (unlikely(mh_tls_exited) || unlikely(!mcache_get())) {
		check_zero(&d);
		release(&d);
		return;
	}
	while (mid.n && (mid.n == DELAY_BLOCKS || mid.bytes + room > DELAY_BYTES))
		release_oldest();
	mid.q[(mid.head + mid.n) % DELAY_BLOCKS] = d;
	mid.n++;
	mid.bytes += room;
}

void middle_thread_exit(void)
{
	while (mid.n)
		release_oldest();
}
