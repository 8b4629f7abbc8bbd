// SPDX-License-Identifier: MIT
/*
 * When quarantined chunks leave: only once no pointer into them is found
 * (MHEAP_QUARANTINE_SCAN=1, the default), Go's rule for its arenas, made
 * possible in C by a conservative scan of the whole process (scan.c).
 *
 * When the quarantine goes over its budget (MHEAP_QUARANTINE_MAX), and on
 * mh_quarantine_release(), the quarantined chunks are listed under
 * arena_lock (base, limit, and when each was faulted), the scan looks for
 * words pointing into them with arena_lock not held (the chunks stay
 * quarantined and faulting meanwhile), and then, under the lock again, each
 * chunk that no word pointed into and that is still the same quarantined
 * chunk (same state, same time of fault) is taken out and released to the
 * ready list. A chunk something points into stays, faulting: an access
 * through that pointer is still reported. Its address space is only ever
 * used by arenas afterwards (arenas_keep_released), never by malloc.
 *
 * Pacing. A scan reads every root, so it costs time in proportion to the
 * process's memory (about 9 GB/s per reading thread here, with up to one
 * reader per CPU: see docs/arenas.md), whatever it releases. Two rules space
 * scans out:
 *  - growth: a scan that finds every chunk referenced would otherwise be
 *    repeated at every later free; the next one waits until the quarantine
 *    has grown by a quarter of its budget past what the last one left.
 *  - time (MHEAP_QUARANTINE_SCAN_SHARE, 3%): scans take at most that share
 *    of the time (3%, not more: the rest of what a larger quarantine costs
 *    comes on top, and the whole should stay under MineSweeper's 5.4%;
 *    docs/arenas.md). A scan's cost d is its CPU time, every reader's
 *    together (its length if the stop took longer): readers on other CPUs
 *    shorten the pause, not what the scan takes from the machine. The
 *    next one waits until d * (100 - share) / share has passed since the
 *    last ended; meanwhile the quarantine goes on growing past its budget,
 *    up to the cap. Go's GC
 *    pacer makes the same trade (GOGC): a collector that runs less often
 *    costs less time and holds more memory. Here what is held is mostly
 *    address space: a quarantined chunk's pages and page tables are gone
 *    (fault_guard.c says why guard protects whole chunks as mprotect
 *    does), but its span-map entries stay (8 KiB per 8 MiB chunk), and
 *    VMAs (two per chunk measured with guard and mprotect alike, split by
 *    the huge-page window's madvise: 4,124 mappings at the default cap,
 *    against vm.max_map_count's 65,530). The cap bounds all of it,
 *    and over the cap a scan runs whatever the time rule says, before the
 *    cap may release anything still referenced. A program whose scans are
 *    cheap (a small heap) scans at its budget, as before; one with a large
 *    heap trades address space for time.
 *
 * The hard cap (MHEAP_QUARANTINE_CAP): a program that keeps stale pointers
 * for ever (or words that look like them) would fill the address space.
 * Past the cap the oldest chunks are released whether pointed into or not,
 * counted in arena_releases_referenced, with a one-line warning each time.
 * This is the one way the guarantee breaks, and the statistics show it.
 *
 * A scan that could not look at every root (scan_stop.c: a thread that
 * did not stop) keeps every chunk; only the cap releases then.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena_impl.h"
#include "scan.h"
#include "sysmem.h"

uint64_t chunks_kept, releases_scan, releases_referenced;
/* The quarantine's bytes at which the budget next triggers a scan; when
 * the last scan ended and how long it took (mh_nanotime). arena_lock. */
static uint64_t next_scan_bytes, last_scan_end, last_scan_ns;

/* A scan's list of chunks (mapped: it holds their addresses, and is left
 * out of the roots by the scan). */
struct scan_list {
	struct sys_range *ranges;	/* sorted by base */
	struct arena_chunk **chunks;
	struct arena_chunk **batch;	/* ARENA_BATCH, to release */
	uint64_t *freed_ns;
	uint8_t *refs;
	size_t n, cap;
	void *map;
	size_t map_len;
};

static bool scan_list_reserve(struct scan_list *l, size_t cap)
{
	size_t per = sizeof(struct sys_range) + sizeof(void *) + sizeof(uint64_t) + 1;
	size_t len = ALIGN_UP(cap * per + ARENA_BATCH * sizeof(void *) + 64, 4096);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return false;
	l->map = p;
	l->map_len = len;
	l->cap = cap;
	l->ranges = (struct sys_range *)p;
	l->chunks = (struct arena_chunk **)(l->ranges + cap);
	l->freed_ns = (uint64_t *)(l->chunks + cap);
	l->batch = (struct arena_chunk **)(l->freed_ns + cap);
	l->refs = (uint8_t *)(l->batch + ARENA_BATCH);
	return true;
}

/* List the quarantined chunks (arena_lock held), at most l->cap, sorted. */
static void scan_list_fill(struct scan_list *l)
{
	size_t n = 0;

	for (struct list_node *e = quarantine.head; e && n < l->cap; e = e->next) {
		struct arena_chunk *c = chunk_of(e);
		size_t i = n++;

		/* Insertion by base: the FIFO is mostly in address order. */
		for (; i > 0 && l->ranges[i - 1].base > c->base; i--) {
			l->ranges[i] = l->ranges[i - 1];
			l->chunks[i] = l->chunks[i - 1];
			l->freed_ns[i] = l->freed_ns[i - 1];
		}
		l->ranges[i] = (struct sys_range){ c->base, c->limit };
		l->chunks[i] = c;
		l->freed_ns[i] = c->freed_ns;
	}
	l->n = n;
}

/* The roots of a chunk span (scan.h): a live chunk, whole (its resident
 * pages: the scan skips the others). The bump pointers of the active
 * chunk live in the arena's slot (mh_arena_alloc is inline, mheap.h), not
 * in the chunk, so the chunk cannot say how far it is used; noscan data is
 * read too. Lock-free reads: the world is stopped, and the struct is never
 * unmapped. */
static bool chunk_roots(const struct mspan *s, struct sys_range *r)
{
	const struct arena_chunk *c = LOAD_ACQUIRE(&s->chunk_data);

	if (!c || LOAD_RELAXED(&c->state) != CHUNK_LIVE)
		return false;
	r->base = c->base;
	r->limit = c->limit;
	return true;
}

/* Release the oldest chunks while over the cap (arena_lock not held). */
static void enforce_cap(void)
{
	struct arena_chunk *cs[ARENA_BATCH];
	uint64_t total = 0;

	for (;;) {
		unsigned n = 0;

		mh_lock(&arena_lock);
		while (n < ARENA_BATCH && quarantined_bytes > arena_cfg.quarantine_cap &&
		       quarantine.head)
			n += quarantine_take_oldest(cs + n, 1);
		releases_referenced += n;
		mh_unlock(&arena_lock);
		total += n;
		if (!n || !release_chunks(cs, n, true))
			break;
	}
	if (total)
		mh_print(STDERR_FILENO, "mheap: quarantine over its cap of %llu MiB: released "
			 "%llu %s that may still be pointed into (MHEAP_QUARANTINE_CAP)",
			 (unsigned long long)(arena_cfg.quarantine_cap >> 20),
			 (unsigned long long)total, total == 1 ? "chunk" : "chunks");
}

/* Scan for pointers into every quarantined chunk and release those no
 * pointer points into (arena_lock not held; in_free: scan_for_pointers').
 * What this frame holds is a root of the scan it makes: chunk addresses
 * stay in the mapped list. */
static void scan_and_release(bool in_free)
{
	struct scan_list l = { 0 };
	struct scan_result res;
	struct arena_chunk **cs;
	size_t count, kept = 0;
	unsigned n = 0;

	mh_lock(&arena_lock);
	count = quarantine.count;
	mh_unlock(&arena_lock);
	/* Room for chunks quarantined meanwhile; those left out wait. */
	if (!count || !scan_list_reserve(&l, count + count / 4 + 16))
		return;
	cs = l.batch;
	mh_lock(&arena_lock);
	scan_list_fill(&l);
	mh_unlock(&arena_lock);
	scan_scrub_stack();

	scan_for_pointers(l.ranges, l.n, l.refs, chunk_roots, arena_cfg.scan_threads, in_free, &res);
	if (res.skipped) {
		munmap(l.map, l.map_len);
		return;
	}

	for (size_t i = 0; i < l.n; i++) {
		struct arena_chunk *c = l.chunks[i];

		mh_lock(&arena_lock);
		if (l.refs[i]) {
			kept++;
		} else if (LOAD_RELAXED(&c->state) == CHUNK_QUARANTINED &&
			   c->base == l.ranges[i].base && c->freed_ns == l.freed_ns[i]) {
			quarantine_take(c);
			cs[n++] = c;
			releases_scan++;
		}
		mh_unlock(&arena_lock);
		if (n == ARENA_BATCH || (n && i + 1 == l.n)) {
			release_chunks(cs, n, true);
			n = 0;
		}
	}
	mh_lock(&arena_lock);
	chunks_kept += kept;
	next_scan_bytes = quarantined_bytes + arena_cfg.quarantine_max / 4;
	/* What the scan cost: its CPU time (every reader's), or its length
	 * when the stop took longer than the reading. */
	last_scan_ns = res.cpu_ns > res.ns ? res.cpu_ns : res.ns;
	last_scan_end = mh_nanotime();
	mh_unlock(&arena_lock);
	munmap(l.map, l.map_len);
}

/* The time rule of the pacing (top): whether scans have taken little enough
 * of the time since the last one for another to run now (arena_lock held). */
static bool scan_time_allowed(void)
{
	unsigned share = arena_cfg.scan_share;

	if (!share)
		return false;
	if (share >= 100 || !last_scan_end)
		return true;
	return mh_nanotime() - last_scan_end >= last_scan_ns / share * (100 - share);
}

bool quarantine_scan_budget(bool in_free)
{
	bool due;

	if (!arena_cfg.scan)
		return false;
	mh_lock(&arena_lock);
	due = quarantined_bytes > arena_cfg.quarantine_max && quarantined_bytes >= next_scan_bytes &&
	      (quarantined_bytes > arena_cfg.quarantine_cap || scan_time_allowed());
	mh_unlock(&arena_lock);
	if (due)
		scan_and_release(in_free);
	enforce_cap();
	return true;
}

void quarantine_scan_all(void)
{
	scan_and_release(false);
	enforce_cap();
}

bool quarantine_scan_for_room(bool in_free)
{
	uint64_t before, after;

	if (!arena_cfg.scan)
		return false;
	mh_lock(&arena_lock);
	before = releases_scan;
	mh_unlock(&arena_lock);
	scan_and_release(in_free);
	mh_lock(&arena_lock);
	after = releases_scan;
	mh_unlock(&arena_lock);
	return after != before;
}

void quarantine_scan_stats(struct mh_stats *st)
{
	struct scan_totals t;

	scan_totals(&t);
	st->quarantine_scans = t.scans;
	st->quarantine_scans_incomplete = t.incomplete;
	st->quarantine_scan_bytes = t.bytes;
	st->quarantine_scan_ns = t.ns;
	st->quarantine_scan_max_pause_ns = t.max_pause_ns;
}
