/* SPDX-License-Identifier: MIT */
/*
 * The heap checker's own state, shared by its parts: heapcheck.c (arenas,
 * spans, the span cache, the totals) and heapcheck_caches.c (the
 * mcentrals' lists and the threads' caches). What is checked and why:
 * heapcheck.c.
 */
#ifndef MHEAP_HEAPCHECK_IMPL_H
#define MHEAP_HEAPCHECK_IMPL_H

#include "heapcheck.h"
#include "mcache.h"
#include "mheap_impl.h"

struct cache_info {
	struct mcache *c;
	uint64_t owned;		/* small spans naming c their owner */
	uint64_t held;		/* c's current spans and listed spans */
};

struct check {
	struct heapcheck_found f;	/* the report, and what hooks are told */
	/* Scratch, mapped. */
	void *scratch;
	size_t scratch_len;
	struct heap_arena **arenas;	/* address order */
	uint64_t *claimed;		/* PA_WORDS per arena: page held */
	size_t narenas;
	struct cache_info *caches;
	size_t ncaches;
	/* Found on the way. */
	uint64_t spans;				/* in use */
	uint64_t span_pages, cached_pages, pc_pages;
	uint64_t structs[SPAN_BUCKETS];		/* span structs in use */
	uint64_t large_spans, large_pages, large_cacheable_pages;
	/* Freed large objects kept by threads: found in the arena map, and
	 * on the caches' lists (largecache.c). */
	uint64_t thread_cached_spans, thread_listed_spans;
	uint64_t allocated[MH_NUM_CLASSES];	/* objects, from the bitmaps */
	uint64_t unowned[MH_NUM_CLASSES];	/* spans of the mcentrals */
};

#define CHECK(ck, cond, ...) HEAPCHECK(&(ck)->f, cond, __VA_ARGS__)
#define TRY(x) do { if ((x) < 0) return -1; } while (0)

/*
 * Pages [p, p + npages) are held by `what`: each must lie in a heap arena,
 * be in use to the page allocator, held by nothing else, and map to span
 * s (NULL: to none); scavenged only if scav_ok (a page cache's).
 */
MH_HIDDEN int heapcheck_claim(struct check *ck, uintptr_t p, uintptr_t npages,
			      const struct mspan *s, bool scav_ok, const char *what);
/* The mcentrals' lists, and every thread's cache (heapcheck_caches.c):
 * after the spans' walk, whose findings they are checked against. */
MH_HIDDEN int heapcheck_mcentrals(struct check *ck);
MH_HIDDEN int heapcheck_caches(struct check *ck);

#endif
