// SPDX-License-Identifier: MIT
/*
 * The secure heap's zero-size blocks (MHEAP_SECURE=1, secure.c):
 * malloc(0) returns a unique address in a reserved range that is never
 * accessible, ZERO_SLOTS 16-byte slots of PROT_NONE address space with one
 * bit each for the double-free check, so any access through it faults and
 * is reported (secure_report.c). Beyond ZERO_SLOTS live ones, or for an
 * alignment above a slot's, malloc(0) takes a small block instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "secure.h"

#define ZERO_SLOT	16
#define ZERO_SLOTS	((size_t)1 << 22)
#define ZERO_WORDS	(ZERO_SLOTS / 64)	/* of zero_used */

static uintptr_t zero_base;	/* the range, ZERO_SLOTS slots */
static uint64_t zero_used[ZERO_WORDS] MH_LARGE_ZERO(zero_used);
/* A bit per word of zero_used, set while the word is all ones (its 64
 * slots live): the search skips 4,096 slots a word of this. 8 kB, in
 * .lbss too: among the small variables it put two pages between those
 * that every process writes at start-up (the heap's, and after it the
 * arenas' settings and the statistics'). */
static uint64_t zero_full[ZERO_WORDS / 64] MH_LARGE_ZERO(zero_full);
static size_t zero_live;	/* slots given out */
static size_t zero_next;	/* where the search for a free slot starts */
static mh_lock_t zero_lock = MH_LOCK_INIT;

void zero_size_init(void)
{
	void *zero = mmap(NULL, ZERO_SLOTS * ZERO_SLOT, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (zero == MAP_FAILED)
		mh_fatal("MHEAP_SECURE=1: cannot reserve the zero-size range: %s", strerror(errno));
	zero_base = (uintptr_t)zero;
}

bool zero_size_owns(uintptr_t addr)
{
	return addr - zero_base < ZERO_SLOTS * ZERO_SLOT;
}

/* The first bit of bits[0..nbits) (64 a word) that is clear in the words
 * and not below from's in its own word, going round past the end; the
 * word of from last, whole. One such bit must exist. */
static size_t first_clear_round(const uint64_t *bits, size_t nbits, size_t from)
{
	size_t nwords = nbits / 64, w = from / 64;
	uint64_t m = ~bits[w] & (~(uint64_t)0 << (from % 64));

	for (size_t n = 0; !m && n < nwords; n++) {
		w = (w + 1) % nwords;
		m = ~bits[w];
	}
	return w * 64 + (size_t)__builtin_ctzll(m);
}

/*
 * A free slot, the first from the cursor on (going round): a freed slot
 * comes back only after every free one after it, so a stale malloc(0)
 * pointer names a free slot for as long as it can. The search reads the
 * cursor's word, then zero_full, a bit per word, to the first word with a
 * free slot: at most 1,025 words whatever the range holds, and none when
 * it is full (zero_live), rather than up to the range's 4 Mi bits one by
 * one under the lock, milliseconds a malloc(0) once the range is full
 * (docs/secure-log.md#the-zero-size-ranges-search-2026-12-07-issue-26).
 */
void *zero_size_alloc(size_t align)
{
	size_t i = 0, w;
	bool found;

	if (align > ZERO_SLOT)
		return NULL;
	mh_lock(&zero_lock);
	found = zero_live < ZERO_SLOTS;
	if (found) {
		uint64_t m;

		w = zero_next / 64;
		m = ~zero_used[w] & (~(uint64_t)0 << (zero_next % 64));
		if (m) {
			i = w * 64 + (size_t)__builtin_ctzll(m);
		} else {
			/* The next word with a free slot, going round (the
			 * cursor's own last: its free slots are below it). */
			w = first_clear_round(zero_full, ZERO_WORDS, (w + 1) % ZERO_WORDS);
			i = w * 64 + (size_t)__builtin_ctzll(~zero_used[w]);
		}
		zero_used[i / 64] |= (uint64_t)1 << (i % 64);
		if (zero_used[i / 64] == ~(uint64_t)0)
			zero_full[i / 4096] |= (uint64_t)1 << (i / 64 % 64);
		zero_live++;
		zero_next = (i + 1) % ZERO_SLOTS;
	}
	mh_unlock(&zero_lock);
	return found ? (void *)(zero_base + i * ZERO_SLOT) : NULL;
}

/* fork (fork.c): the lock is taken around it, last, as every allocator
 * lock is (it is never held while another is taken, nor the other way),
 * so that a child forked while another thread holds it does not hang at
 * its first malloc(0). */
void zero_size_fork_prepare(void)
{
	mh_lock(&zero_lock);
}

void zero_size_fork_release(void)
{
	mh_unlock(&zero_lock);
}

/* Abort, naming the call with what ("" or " in realloc"), unless p is a
 * slot given out; with release, the slot is then free again. */
static void slot_check(uintptr_t p, bool release, const char *what)
{
	size_t i = (p - zero_base) / ZERO_SLOT;
	uint64_t bit = (uint64_t)1 << (i % 64);
	bool was;

	if (p % ZERO_SLOT)
		mh_invalid_pointer(p, what, " (inside an object)");
	mh_lock(&zero_lock);
	was = zero_used[i / 64] & bit;
	if (release && was) {
		zero_used[i / 64] &= ~bit;
		zero_full[i / 4096] &= ~((uint64_t)1 << (i / 64 % 64));
		zero_live--;
	}
	mh_unlock(&zero_lock);
	if (!was)
		mh_freed_pointer(p, what);
}

void zero_size_check(uintptr_t p, const char *what)
{
	slot_check(p, false, what);
}

void zero_size_free(uintptr_t p, const char *what)
{
	slot_check(p, true, what);
}
