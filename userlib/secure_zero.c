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

static uintptr_t zero_base;	/* the range, ZERO_SLOTS slots */
static uint64_t zero_used[ZERO_SLOTS / 64] MH_LARGE_ZERO(zero_used);
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

void *zero_size_alloc(size_t align)
{
	size_t i = zero_next, n;

	if (align > ZERO_SLOT)
		return NULL;
	mh_lock(&zero_lock);
	for (n = 0; n < ZERO_SLOTS; n++, i = (i + 1) % ZERO_SLOTS)
		if (!(zero_used[i / 64] >> (i % 64) & 1))
			break;
	if (n < ZERO_SLOTS) {
		zero_used[i / 64] |= (uint64_t)1 << (i % 64);
		zero_next = (i + 1) % ZERO_SLOTS;
	}
	mh_unlock(&zero_lock);
	return n < ZERO_SLOTS ? (void *)(zero_base + i * ZERO_SLOT) : NULL;
}

/* fork (fork.c): the lock is taken around it, last, as every allocator
 * lock is (it is never held while another is taken, nor the other way);
 * until 2026-12-07 it was not, and a child forked while another thread
 * held it (a malloc(0) scanning a full range holds it for milliseconds)
 * hung at its first malloc(0). */
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
	if (release)
		zero_used[i / 64] &= ~bit;
	mh_unlock(&zero_lock);
	if (!was)
		mh_freed_pointer(p, what);
}

void zero_size_check(uintptr_t p, const char *what)
{
	slot_check(p, false, what);
}

void zero_size_free(uintptr_t p)
{
	slot_check(p, true, "");
}
