// SPDX-License-Identifier: MIT
/*
 * The scavenger: when free pages are returned to the OS (Go's
 * mgcscavenge.go, without its background goroutine).
 *
 * Releasing memory is cheap (one madvise per run) but getting it back is
 * not: each 4 KiB page faults in again on first touch, about 3 us here, so an
 * allocator that releases eagerly and then grows again pays twice. The
 * policy keeps a reserve of free, resident pages and releases only what
 * exceeds it:
 *
 *   reserve = max(MHEAP_SCAVENGE_RESERVE,
 *                 in-use * MHEAP_SCAVENGE_PERCENT / 100,
 *                 recent peak of in-use - in-use)
 *
 * The recent peak is the highest in-use page count seen. It is held for
 * the window of reuse (below) after it was last renewed, then decays
 * towards the current count by half every MHEAP_SCAVENGE_DECAY_MS; it is
 * renewed (its hold restarted) whenever the heap is back within an eighth
 * of it: a program that frees its working set and builds it again keeps
 * its memory and never faults twice, however long it goes on doing so,
 * while memory that stays unused is released within about ten periods.
 * Decaying from the peak on, a peak freed and built again 150 ms later (a
 * period and a half) lost half its pages at one period and faulted them in
 * again, until the refault had grown the window; held for the window
 * first, a freed peak keeps its pages for a window and a period, and
 * longer as the window grows (scavenge_excess). The policy runs when a
 * span's pages come back to the heap (no background thread: none is safe
 * to start inside a malloc drop-in), and acts only when the excess is at
 * least 1 MiB, so frees do not turn into a stream of small madvise calls.
 *
 * Which pages: only those of chunks (512 pages, 4 MiB) that nobody
 * allocated from or freed into within the window of reuse (Go releases only
 * chunks that were not densely used in the last GC cycle, for the same
 * reason): a block freed now is likely to be replaced at once, and a churn
 * of large blocks whose count stays level (the in-use figure never moves,
 * so the recent peak does not help) would otherwise see its holes released
 * and faulted in again step after step. The window adapts to the program:
 * it starts at the decay period and doubles each time an allocation takes
 * pages the scavenger released within a few windows before (it was about to
 * be reused: a refault), and halves again after a long calm. Among the
 * pages of idle chunks the highest go first: first fit packs small spans at
 * the bottom, so the free pages at the top are the heap's unused end and
 * the holes of freed large objects, released in long runs. mh_scavenge()
 * releases everything free at once, whatever its chunk's age.
 *
 * Growth is paid for at once: a large block that faults pages in releases
 * as many free resident ones, whatever their age, while the reserve stays
 * (scavenge_note_growth below); else the holes the window keeps and the
 * new, larger blocks beside them ratchet the resident set up.
 *
 * The heap lock is not held over madvise (Go's scavengeOne): the pages to
 * release are taken out of the free set under the lock (marked in use, so
 * nobody allocates them meanwhile), released without it, and put back as
 * free and released under it again (pagealloc.h, pa_scavenge_take). The
 * policy runs under the lock on the free path and returns how much to
 * release; the caller releases it after unlocking (scavenge_after_unlock).
 * A fork while pages are being released leaves them in use in the child:
 * a few MiB of address space, never handed out twice.
 *
 * The defaults are in options.c; the measurements behind them in
 * docs/heap.md#scavenger.
 */
#include "hooks.h"
#include "mheap_impl.h"
#include "mcache.h"
#include "pagealloc.h"

/*
 * The window of reuse: how long a chunk stays after its last use. It starts
 * at the decay period and doubles when at least 1/REFAULT_SHARE of the
 * pages the scavenger released since the window last moved (and at least
 * REFAULT_MIN_PAGES) were allocated again within REFAULT_HORIZON windows
 * of their release (refaults: they were about to be reused), up to
 * REUSE_WINDOW_MAX_SHIFT doublings; it halves again after
 * REUSE_WINDOW_CALM windows without that.
 */
#define REUSE_WINDOW_MAX_SHIFT	6
#define REUSE_WINDOW_CALM	16
#define REFAULT_HORIZON		8
#define REFAULT_SHARE		4
#define REFAULT_MIN_PAGES	(((uintptr_t)1 << 20) >> MH_PAGE_SHIFT)

#define SCAVENGE_MIN_BATCH (((uintptr_t)1 << 20) >> MH_PAGE_SHIFT)

static uintptr_t reserve_pages;
static uintptr_t reserve_percent;
static uint64_t decay_ns;
static uintptr_t peak_pages;	/* recent peak of in-use pages */
static uint64_t peak_time;	/* when the peak last moved */
static uint64_t retry_at;	/* no idle page is in a chunk idle enough before */
static uint64_t reuse_ns;	/* the window of reuse (below) */
static uint64_t window_moved;	/* when it last changed */
static uint64_t refaults_base;	/* pa_refault_pages when the window moved */
static uint64_t released_base;	/* mh_heap.scavenged_pages then */

void scavenge_init(void)
{
	reserve_pages = (uintptr_t)(mh_option(MH_OPT_SCAVENGE_RESERVE) >> MH_PAGE_SHIFT);
	reserve_percent = (uintptr_t)mh_option(MH_OPT_SCAVENGE_PERCENT);
	decay_ns = mh_option(MH_OPT_SCAVENGE_DECAY_MS) * 1000000u;
	reuse_ns = decay_ns;
	pa_refault_horizon_ns = REFAULT_HORIZON * reuse_ns;
}

void scavenge_note_alloc(void)
{
	uintptr_t inuse = pa_total_pages - pa_free_pages;

	/* Back within an eighth of the recent peak: the working set is being
	 * rebuilt, so the peak is current again and its decay starts over
	 * (else a program that frees and rebuilds the same working set every
	 * 40 ms would see it decay after 100 ms and refault it for ever). */
	if (inuse >= peak_pages - peak_pages / 8) {
		if (inuse > peak_pages)
			peak_pages = inuse;
		peak_time = mh_nanotime();
	}
}

/*
 * A large block that took released (or never touched) pages makes the
 * resident set grow by as many pages, while the free resident pages that
 * could not hold it stay: a churn of large blocks of varied sizes ratchets
 * its resident set up that way, each new largest block on fresh pages, the
 * holes too short for it kept because they were used within the window of
 * reuse. So growth is paid for at once (Go's mheap.grow scavenges what the
 * heap grew by beyond its retained goal, in-use plus a margin): as many
 * free resident pages as the block faulted in are released, whatever their
 * chunk's age, as long as more than the reserve without its recent-peak
 * term (the larger of MHEAP_SCAVENGE_RESERVE and MHEAP_SCAVENGE_PERCENT of
 * in-use) stays. Down to MHEAP_SCAVENGE_RESERVE alone, bigchurn took up to
 * twice glibc's page faults (docs/heap.md#scavenger). Under the heap lock; the
 * caller releases them after unlocking (scavenge_grown).
 */
static uintptr_t grown_pages;

void scavenge_note_growth(uintptr_t faulted)
{
	grown_pages += faulted;
}

uintptr_t scavenge_take_growth(void)
{
	uintptr_t idle = pa_free_pages - pa_released_pages - pa_scavenging_pages;
	uintptr_t inuse = pa_total_pages - pa_free_pages;
	uintptr_t reserve = inuse * reserve_percent / 100, n = grown_pages;

	if (!n)
		return 0;
	grown_pages = 0;
	if (reserve < reserve_pages)
		reserve = reserve_pages;
	if (idle < reserve + SCAVENGE_MIN_BATCH || n < SCAVENGE_MIN_BATCH)
		return 0;
	return n < idle - reserve ? n : idle - reserve;
}

uint64_t scavenge_adapt_window(uint64_t now)
{
	uint64_t refaulted = pa_refault_pages - refaults_base;
	uint64_t released = mh_heap.scavenged_pages - released_base;

	if (!decay_ns)
		return reuse_ns;
	if (refaulted >= REFAULT_MIN_PAGES && refaulted * REFAULT_SHARE >= released) {
		if (reuse_ns < decay_ns << REUSE_WINDOW_MAX_SHIFT) {
			reuse_ns *= 2;
			retry_at = 0;
		}
	} else if (!(reuse_ns > decay_ns && now - window_moved >= REUSE_WINDOW_CALM * reuse_ns)) {
		return reuse_ns;
	} else {
		reuse_ns /= 2;
	}
	window_moved = now;
	refaults_base = pa_refault_pages;
	released_base = mh_heap.scavenged_pages;
	pa_refault_horizon_ns = REFAULT_HORIZON * reuse_ns;
	return reuse_ns;
}

/* The recent peak decayed to now, and how many idle pages exceed the
 * reserve (module comment). */
uintptr_t scavenge_excess(uint64_t now)
{
	uintptr_t idle = pa_free_pages - pa_released_pages - pa_scavenging_pages;
	uintptr_t inuse = pa_total_pages - pa_free_pages;
	uint64_t hold = reuse_ns + decay_ns;	/* the first halving's age */
	uintptr_t reserve;

	if (peak_pages > inuse) {
		if (!decay_ns) {
			peak_pages = inuse;
		} else {
			while (now - peak_time >= hold && peak_pages > inuse) {
				peak_pages = inuse + (peak_pages - inuse) / 2;
				peak_time += decay_ns;
			}
			if (now - peak_time >= hold)
				peak_time = now;
		}
	}
	reserve = inuse * reserve_percent / 100;
	if (reserve < reserve_pages)
		reserve = reserve_pages;
	if (peak_pages > inuse && reserve < peak_pages - inuse)
		reserve = peak_pages - inuse;
	return idle < reserve + SCAVENGE_MIN_BATCH ? 0 : idle - reserve;
}

uintptr_t scavenge_after_free(void)
{
	uintptr_t idle = pa_free_pages - pa_released_pages - pa_scavenging_pages;
	uintptr_t excess;
	uint64_t now;

	if (idle < reserve_pages + SCAVENGE_MIN_BATCH)
		return 0;
	now = mh_nanotime();
	scavenge_adapt_window(now);
	if (now < retry_at)
		return 0;	/* every idle page is in a chunk used lately */
	excess = scavenge_excess(now);
	if (excess)
		mheap_flush_caches();	/* cached pages are idle too */
	return excess;
}

/* Release up to npages free pages, the heap lock not held, in batches: the
 * lock is dropped around each batch's madvise (pagealloc.h). With
 * keep_recent the pages of chunks used within the window of reuse stay;
 * flush first gives back the cached ones. */
static void scavenge_release(uintptr_t npages, bool keep_recent, bool flush)
{
	struct pa_scav_batch b;

	while (npages) {
		mh_lock(&mh_heap.lock);
		if (flush)
			mheap_flush_caches();
		pa_scavenge_take(npages, keep_recent ? reuse_ns : 0, &b);
		if (b.retry_at && b.pages < npages)
			retry_at = b.retry_at;
		mh_unlock(&mh_heap.lock);
		if (!b.pages)
			return;
		pa_scavenge_release(&b);
		mh_lock(&mh_heap.lock);
		pa_scavenge_return(&b);
		mh_heap.scavenged_pages += b.pages;
		mh_unlock(&mh_heap.lock);
		npages = npages > b.pages ? npages - b.pages : 0;
	}
}

static uint64_t last_idle_trim;	/* when idle threads' caches were trimmed */

void scavenge_after_unlock(uintptr_t npages)
{
	uint64_t now, last;

	if (!npages)
		return;
	/* Idle threads' empty spans are idle memory too (mcache.h,
	 * "trimming"): at most once per decay period. */
	now = mh_nanotime();
	last = LOAD_RELAXED(&last_idle_trim);
	if (now - last >= decay_ns &&
	    __atomic_compare_exchange_n(&last_idle_trim, &last, now, false,
					__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		mcache_trim(true);
	scavenge_release(npages, true, false);
}

void scavenge_grown(uintptr_t npages)
{
	if (npages)
		scavenge_release(npages, false, false);
}

void scavenge_all(void)
{
	scavenge_release(UINTPTR_MAX, false, true);
}

/* mh_scavenge: everything idle goes back to the OS now, whatever the
 * policy would keep. */
void mh_scavenge(void)
{
	mheap_init();
	/* Arenas first (hooks.h): warm chunks are resident memory nobody
	 * uses right now, which then goes out with the rest of the free
	 * pages, and the reuse list's chunks hold dead data. */
	heap_hooks()->release_idle();
	/* Then the empty spans threads keep, idle threads' too. */
	mcache_trim(false);
	scavenge_all();
}
