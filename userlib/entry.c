// SPDX-License-Identifier: MIT
/*
 * The table of entry points the mode chooses (entry.h): the default
 * paths until the heap is set up, then the mode's, read-only.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "entry.h"
#include "secure.h"

/* In a section of its own, which the linker places after .data (a section
 * its default script does not name goes beside those of its kind): in
 * .data, its page alignment aligned all of .data and left the page before
 * the table all but empty, one more page of the library's in every
 * process (docs/heap.md, "The library's own pages"). */
struct mh_entries mh_entries __attribute__((section(".mh_entries"))) = {
	.malloc = heap_malloc_default,
	.free = heap_free_default,
	.free_sized = heap_free_sized_default,
};

void mh_entries_set(bool secure)
{
	if (secure) {
		STORE_RELAXED(&mh_entries.malloc, secure_malloc);
		STORE_RELAXED(&mh_entries.free, secure_free);
		STORE_RELAXED(&mh_entries.free_sized, heap_free_sized_secure);
	}
	/* The secure mode's promise includes the table read-only: without
	 * it the mode does not start. The default mode's table holds what it
	 * has held since the library was loaded, and a process whose sandbox
	 * refuses mprotect (a seccomp filter) runs as it did before the table
	 * existed: it is left writable. */
	if (mprotect(&mh_entries, sizeof(mh_entries), PROT_READ) && secure)
		mh_fatal("cannot make the entry table read-only: %s", strerror(errno));
}
