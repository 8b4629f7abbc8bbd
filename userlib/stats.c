// SPDX-License-Identifier: MIT
/*
 * Statistics (Go's mstats.go): a snapshot summed from the page heap's exact
 * counters and the threads' caches, and the MHEAP_STATS report at exit: text
 * (1) or one line of JSON (json).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "arenamap.h"
#include "hooks.h"
#include "mcache.h"
#include "mheap_impl.h"
#include "pagealloc.h"
#include "sizeclass.h"
#include "sysmem.h"

/* The version this library was built as, whatever header its caller had. */
const char *mh_version(void)
{
	return MH_VERSION;
}

/*
 * Layouts before 0.4.0 had 68 classes, without 40 and 56 bytes (sizeclass.c):
 * by_class was OLD_CLASS_BYTES shorter and every field after it that much
 * nearer. The layouts only grew at their end until then, so a caller whose
 * size is at most the last of them, 0.3.0's OLD_LAYOUT_MAX, was built
 * against one of them, and gets it: the two classes' counts in the next
 * class's entry (48 and 64 bytes, where those requests went then). The
 * 0.2.0 layout ends with arena_chunks_warm. From 0.4.0 on the structure
 * grows at its end again, so any larger size is a prefix of the present
 * layout (not "below the present size": that would hand 0.4.0's callers
 * the old layout once a field is appended).
 */
#define OLD_NUM_CLASSES 68
#define OLD_CLASS_BYTES ((MH_NUM_SIZE_CLASSES - OLD_NUM_CLASSES) * sizeof(struct mh_size_class_stats))
#define OLD_LAYOUT_MAX 1872
_Static_assert(offsetof(struct mh_stats, arena_chunks_warm) + sizeof(uint64_t) - OLD_CLASS_BYTES ==
	       MH_STATS_SIZE_V1, "struct mh_stats: the 0.2.0 layout changed");
_Static_assert(offsetof(struct mh_stats, arena_releases_referenced) + sizeof(uint64_t) -
	       OLD_CLASS_BYTES == OLD_LAYOUT_MAX, "struct mh_stats: the 0.3.0 layout changed");

static void stats_fill(struct mh_stats *st)
{
	struct mcache *c;
	uint64_t large_cached = 0;	/* freed, kept by threads (largecache.c) */

	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	mheap_init();

	mh_lock(&mh_caches_lock);
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		st->by_class[cls].mallocs = mh_dead_nmalloc[cls];
		st->by_class[cls].frees = mh_dead_nfree[cls];
	}
	list_for_each(c, &mh_caches, link) {
		for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
			st->by_class[cls].mallocs += mcache_nmalloc(c, cls);
			st->by_class[cls].frees += LOAD_RELAXED(&c->nfree[cls]);
		}
		large_cached += LOAD_RELAXED(&c->large_bytes);
		st->threads_cached++;
	}
	mh_unlock(&mh_caches_lock);

	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		struct mh_size_class_stats *cs = &st->by_class[cls];

		cs->size = mh_class[cls].size;
		st->mallocs += cs->mallocs;
		st->frees += cs->frees;
		if (cls && cs->mallocs > cs->frees)
			st->heap_alloc += (cs->mallocs - cs->frees) * cs->size;
	}

	mh_lock(&mh_heap.lock);
	st->heap_sys = pa_total_pages << MH_PAGE_SHIFT;
	/* Thread-kept large objects are freed memory (a snapshot: one may
	 * have come back to the page heap since the caches were read). */
	st->heap_idle = (pa_free_pages << MH_PAGE_SHIFT) + large_cached;
	if (st->heap_idle > st->heap_sys)
		st->heap_idle = st->heap_sys;
	st->heap_inuse = st->heap_sys - st->heap_idle;
	st->heap_released = pa_released_pages << MH_PAGE_SHIFT;
	/* The page heap counts them live until they come back to it; one
	 * may have come back since the caches were read. */
	st->heap_alloc += mh_heap.large_live_bytes -
			  (large_cached < mh_heap.large_live_bytes ? large_cached : mh_heap.large_live_bytes);
	st->scavenged_bytes = mh_heap.scavenged_pages << MH_PAGE_SHIFT;
	st->heap_arenas = arenamap_count();
	mh_unlock(&mh_heap.lock);
	st->metadata_sys = sys_metadata_bytes();

	heap_hooks()->stats(st);	/* the arenas' fields */
}

/* The snapshot in the layout before 0.4.0 (above), into out; its size. */
static size_t stats_old_layout(const struct mh_stats *all, unsigned char *out)
{
	const size_t head = offsetof(struct mh_stats, by_class);
	const size_t tail = sizeof(*all) - offsetof(struct mh_stats, arenas_live);
	struct mh_size_class_stats old[OLD_NUM_CLASSES], carry = { 0 };
	unsigned n = 0;

	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++) {
		struct mh_size_class_stats cs = all->by_class[cls];

		cs.mallocs += carry.mallocs;
		cs.frees += carry.frees;
		carry = (struct mh_size_class_stats){ 0 };
		if (cs.size > 32 && cs.size % 16)	/* 40 and 56 */
			carry = cs;
		else if (n < OLD_NUM_CLASSES)
			old[n++] = cs;
	}
	memcpy(out, all, head);
	memcpy(out + head, old, sizeof(old));
	memcpy(out + head + sizeof(old), &all->arenas_live, tail);
	return head + sizeof(old) + tail;
}

int mh_stats_read(struct mh_stats *st)
{
	union {
		struct mh_stats st;
		unsigned char b[sizeof(struct mh_stats)];
	} all;
	size_t size;

	if (!st || st->size < MH_STATS_SIZE_V1) {
		errno = EINVAL;
		return -1;
	}
	stats_fill(&all.st);
	size = sizeof(all.st);
	if (st->size <= OLD_LAYOUT_MAX) {
		struct mh_stats now = all.st;

		size = stats_old_layout(&now, all.b);
	}
	if (size > st->size)
		size = st->size;
	all.st.size = size;
	memcpy(st, all.b, size);
	return 0;
}

/* The uint64_t fields of struct mh_stats, in order, by_class aside. */
#define STATS_FIELDS(F) \
	F(heap_sys) F(heap_inuse) F(heap_idle) F(heap_released) \
	F(heap_alloc) F(mallocs) F(frees) F(metadata_sys) F(heap_arenas) \
	F(scavenged_bytes) F(threads_cached) \
	F(arenas_live) F(arena_chunks_live) F(arena_chunks_reuse) \
	F(arena_chunks_quarantined) F(arena_chunks_ready) \
	F(arena_quarantined_bytes) F(arena_faults_caught) \
	F(arena_releases_budget) F(arena_releases_enomem) \
	F(arena_chunks_warm) \
	F(quarantine_scans) F(quarantine_scans_incomplete) F(quarantine_scan_bytes) \
	F(quarantine_scan_ns) F(quarantine_scan_max_pause_ns) F(arena_chunks_kept) \
	F(arena_releases_scan) F(arena_releases_referenced)

void mh_stats_print(int fd)
{
	struct mh_stats st;

	stats_fill(&st);
	mh_print(fd, "mheap stats (pid %d):", (int)getpid());
#define F(name) mh_print(fd, "  %-26s %llu", #name, (unsigned long long)st.name);
	STATS_FIELDS(F)
#undef F
	mh_print(fd, "  %5s %8s %14s %14s", "class", "size", "mallocs", "frees");
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++)
		if (st.by_class[cls].mallocs)
			mh_print(fd, "  %5u %8llu %14llu %14llu", cls,
				 (unsigned long long)st.by_class[cls].size,
				 (unsigned long long)st.by_class[cls].mallocs,
				 (unsigned long long)st.by_class[cls].frees);
}

/* A line built in a buffer that never overflows: ample for every field. */
struct line {
	char buf[16384];
	size_t n;
};

static void line_add(struct line *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int m = vsnprintf(l->buf + l->n, sizeof(l->buf) - l->n, fmt, ap);
	va_end(ap);
	if (m > 0)
		l->n += (size_t)m < sizeof(l->buf) - l->n ? (size_t)m : sizeof(l->buf) - l->n - 1;
}

/* The snapshot as one JSON object on one line, every field of struct
 * mh_stats by its name and the pid; by_class an array indexed by class. */
static void stats_print_json(int fd)
{
	struct line l;
	struct mh_stats st;

	stats_fill(&st);
	l.n = 0;
	line_add(&l, "{\"pid\":%d,\"size\":%zu", (int)getpid(), st.size);
#define F(name) line_add(&l, ",\"" #name "\":%llu", (unsigned long long)st.name);
	STATS_FIELDS(F)
#undef F
	line_add(&l, ",\"by_class\":[");
	for (unsigned cls = 0; cls < MH_NUM_CLASSES; cls++)
		line_add(&l, "%s{\"size\":%llu,\"mallocs\":%llu,\"frees\":%llu}", cls ? "," : "",
			 (unsigned long long)st.by_class[cls].size,
			 (unsigned long long)st.by_class[cls].mallocs,
			 (unsigned long long)st.by_class[cls].frees);
	line_add(&l, "]}\n");
	mh_write_all(fd, l.buf, l.n);
}

/*
 * MHEAP_STATS=1 prints the statistics on stderr at exit, =json as JSON.
 * Some programs close stderr in an atexit handler before destructors run
 * (coreutils does), so the descriptor is duplicated at start-up, only when
 * the variable is set.
 */
static int stats_fd = -1;
static uint64_t stats_form;

__attribute__((constructor(MH_CTOR_STATS))) static void stats_init(void)
{
	stats_form = mh_option(MH_OPT_STATS);
	if (stats_form != MH_STATS_OFF)
		stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
}

__attribute__((destructor)) static void stats_at_exit(void)
{
	if (stats_fd >= 0 && stats_form == MH_STATS_JSON)
		stats_print_json(stats_fd);
	else if (stats_fd >= 0)
		mh_stats_print(stats_fd);
}
