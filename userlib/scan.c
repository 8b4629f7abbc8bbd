// SPDX-License-Identifier: MIT
/*
 * The quarantine scan: which of a set of address ranges (quarantined arena
 * chunks) does some word of the program still point into?
 *
 * Go releases a quarantined chunk once a GC cycle has found no pointer into
 * it. C has no GC, so this does what conservative collectors (Boehm) and
 * MarkUs/MineSweeper do: read every word of every root and take any word
 * whose value lies in [base, limit) of a target as a pointer to it,
 * interior pointers included. A word that only looks like a pointer keeps
 * its chunk: the error is always on the side of keeping. A pointer one past
 * the end is not counted: it is the address of whatever follows (the next
 * span, or a mapping that points to its own start, as sanitizer allocators
 * do), and counting it kept chunks for every pointer to their neighbours;
 * a stale pointer is dereferenced inside its chunk or not at all.
 *
 * The scan is four files: this one (the targets, the lookup, one scan
 * from start to end, its statistics), scan_stop.c (stopping every other
 * thread: the protocol, the signal, its effects on the program),
 * scan_roots.c (which roots there are, how each is read without ever
 * faulting, how they are cut into units of work) and scan_helpers.c (the
 * threads that read units alongside the scanning one, so that a pause
 * lasts about 1/N as long on N CPUs).
 *
 * The target lookup: a word is first compared with [lowest base, highest
 * limit), then looked up in a bitmap with one bit per granule of that span
 * (at least 64 KiB, more when the span is wide, so the bitmap stays within
 * 128 KiB), set where a target overlaps; only words that pass both are
 * binary-searched. Random data and pointers to the rest of the heap
 * mostly stop at the first or second test. Once every target is found the
 * scan stops reading.
 *
 * What no scan sees: pointers held only by the kernel (epoll_event.data,
 * io_uring user_data, sigevent values, a pending write's buffer), pointers
 * hidden by the program (XOR-linked, tagged in high bits, stored
 * misaligned, compressed), and other processes' copies. Those chunks
 * leave quarantine as if nobody pointed into them.
 * With kmod, live chunks are device memory read through process_vm_readv
 * too: a page the kernel will not pin is skipped like a guard page.
 *
 * fork(): fork.c's prepare handler takes the scan lock first, so a fork
 * waits for a scan to end; the child starts with no scan in progress.
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arenamap.h"
#include "mheap_impl.h"
#include "scan_impl.h"
#include "sysmem.h"

static mh_lock_t scan_lock = MH_LOCK_INIT;
static struct scan_totals totals;	/* under scan_lock */
static bool warned_incomplete;

/* ------------------------------------------------------------ lookup */

/* Readers may find the same target at once: the exchange decides which of
 * them counts it. */
static void mark(struct scan *sc, size_t i)
{
	if (!LOAD_RELAXED(&sc->ref[i]) && !__atomic_exchange_n(&sc->ref[i], 1, __ATOMIC_RELAXED))
		__atomic_fetch_sub(sc->left, 1, __ATOMIC_RELAXED);
}

/* w passed the filter: find the target holding it, [base, limit). */
void scan_hit(struct scan *sc, uintptr_t w)
{
	size_t lo = 0, hi = sc->n;

	/* The last target whose base is <= w. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (sc->t[mid].base <= w)
			lo = mid;
		else
			hi = mid;
	}
	if (sc->t[lo].base > w)
		return;

	if (w < sc->t[lo].limit)
		mark(sc, lo);
}

/* The filter over the targets. */
static void filter_build(struct scan *sc)
{
	uintptr_t lo = sc->t[0].base, hi = sc->t[sc->n - 1].limit;
	unsigned shift = GRANULE_SHIFT_MIN;

	while (((hi - lo) >> shift) + 1 > FILTER_BITS_MAX)
		shift++;
	sc->lo = lo;
	sc->span = hi - lo;
	sc->shift = shift;
	for (size_t i = 0; i < sc->n; i++) {
		uintptr_t g0 = (sc->t[i].base - lo) >> shift, g1 = (sc->t[i].limit - 1 - lo) >> shift;

		for (uintptr_t g = g0; g <= g1; g++)
			sc->bitmap[g >> 6] |= (uint64_t)1 << (g & 63);
	}
}

/* ------------------------------------------------------------ the scan */

/* Scratch for the filter, this thread's reading, nexcl exclusions: one
 * mapping. */
static size_t scratch_len(size_t nexcl)
{
	return ALIGN_UP(FILTER_BITS_MAX / 8 + READER_SCRATCH + nexcl * sizeof(struct sys_range) +
			(size_t)4 * OS_PAGE, OS_PAGE);
}

/*
 * The scan proper, with the other threads stopped: the stacks' extents, the
 * roots cut into units, and the units read by this thread and the helpers
 * together (scan_helpers.c), each taking the next one until none is left.
 */
static void scan_with_world_stopped(struct scan *sc, uintptr_t own_sp, const uintptr_t *own_regs,
				    struct scan_result *res)
{
	uint64_t t0 = mh_nanotime();

	size_t marks_len = 0;

	res->complete = world_stop() && maps_read(sc);
	if (res->complete) {
		/* A mark and a dead range for this thread and each other one. */
		size_t n = (size_t)world_threads() + 1;

		marks_len = ALIGN_UP(n * (sizeof(struct stack_mark) + sizeof(struct sys_range)),
				     OS_PAGE);
		sc->marks = map_scratch(marks_len);
		sc->dead = sc->marks ? (struct sys_range *)(sc->marks + n) : NULL;
		res->complete = sc->marks != NULL;
	}
	if (res->complete) {
		struct stack_mark *own = &sc->marks[sc->nmarks++];

		*own = (struct stack_mark){
			.sp = own_sp, .main = getpid() == (pid_t)syscall(SYS_gettid),
		};
		if (!scan_stack_own(&own->lo, &own->hi))
			own->lo = own->hi = 0;
		res->threads = world_stacks(sc->marks, &sc->nmarks);
		dead_stacks_find(sc);
		res->complete = scan_units_build(sc);
	}
	if (res->complete) {
		scan_words(sc, (uintptr_t)own_regs, (uintptr_t)(own_regs + SAVED_REGS));
		helpers_run(sc);
		scan_units_read(sc);
		helpers_wait(sc, &res->cpu_ns);
		if (sc->read_failed)
			res->complete = false;
	}
	world_start();
	res->pause_ns = mh_nanotime() - t0;
	scan_units_free(sc);
	if (sc->marks)
		munmap(sc->marks, marks_len);
}

__attribute__((noinline))
void scan_for_pointers(const struct sys_range *targets, size_t n, uint8_t *referenced,
		       scan_chunk_roots_fn chunk_roots, unsigned threads, bool in_free,
		       struct scan_result *res)
{
	uintptr_t own_sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t regs_here[SAVED_REGS];
	uint64_t t0 = mh_nanotime(), cpu0 = thread_cpu_ns();
	size_t left = n;
	struct scan sc = {
		.t = targets, .n = n, .ref = referenced, .left = &left,
		.chunk_roots = chunk_roots,
		.pid = getpid(),
	};
	const struct sys_range *meta;
	size_t nmeta, len = 0;
	unsigned char *scratch = NULL;
	int32_t tids[SCAN_THREADS_MAX];
	unsigned nhelpers;

	spill_registers(regs_here);
	/* The dead stack below this frame, where the scan's own frames will
	 * hold the targets' addresses, zeroed: from here on, that much below
	 * own_sp is this thread's stack, whatever mapping it is in
	 * (scan_roots.c leaves it out where it reads a stack whole). */
	scan_scrub_stack();
	memset(res, 0, sizeof(*res));
	memset(referenced, 0, n);
	if (!n) {
		res->complete = true;
		return;
	}
	mheap_init();
	if (!in_free) {
		mh_lock(&scan_lock);
	} else if (!mh_trylock(&scan_lock)) {
		memset(referenced, 1, n);
		res->skipped = true;
		return;
	}
	sc.resident_only = !swap_in_use();
	/* Before the heap lock: making a thread allocates. */
	helpers_start(in_free ? 1 : threads);
	nhelpers = helpers_tids(tids);
	mh_lock(&mh_heap.lock);
	nmeta = sys_metadata_lock(&meta);

	size_t nha = 0;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		nha++;
	len = scratch_len(nmeta + nha + SCAN_THREADS_MAX + 8);
	scratch = map_scratch(len);
	sc.maps_cap = 1 << 20;
	sc.maps = map_scratch(sc.maps_cap);
	if (!scratch || !sc.maps || !world_prepare(tids, nhelpers)) {
		/* Incomplete: every target stays referenced. */
		memset(referenced, 1, n);
		goto out;
	}
	sc.bitmap = (uint64_t *)scratch;
	reader_buffers(&sc, scratch + FILTER_BITS_MAX / 8);
	sc.excl = (struct sys_range *)(scratch + FILTER_BITS_MAX / 8 + READER_SCRATCH);
	filter_build(&sc);

	for (size_t i = 0; i < nmeta; i++)
		excl_add(&sc, meta[i].base, meta[i].limit);
	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		excl_add(&sc, ha->base, ha->base + MH_ARENA_SIZE);
	excl_add(&sc, (uintptr_t)scratch, (uintptr_t)scratch + len);
	excl_add(&sc, (uintptr_t)targets, (uintptr_t)(targets + n));
	excl_add(&sc, ALIGN_DOWN((uintptr_t)referenced, 8), ALIGN_UP((uintptr_t)(referenced + n), 8));
	helpers_exclude(&sc);
	excl_finish(&sc);

	scan_with_world_stopped(&sc, own_sp, regs_here, res);
	if (!res->complete)
		memset(referenced, 1, n);
out:
	sys_metadata_unlock();
	mh_unlock(&mh_heap.lock);
	helpers_finish();
	if (scratch)
		munmap(scratch, len);
	if (sc.maps)
		munmap(sc.maps, sc.maps_cap);
	res->bytes = sc.bytes;
	res->ns = mh_nanotime() - t0;
	res->cpu_ns += thread_cpu_ns() - cpu0;
	totals.scans++;
	totals.incomplete += !res->complete;
	totals.bytes += res->bytes;
	totals.ns += res->ns;
	if (res->pause_ns > totals.max_pause_ns)
		totals.max_pause_ns = res->pause_ns;
	if (!res->complete && !warned_incomplete) {
		warned_incomplete = true;
		mh_print(STDERR_FILENO, "mheap: a quarantine scan could not stop every thread or "
			 "read every root: its chunks stay quarantined");
	}
	mh_unlock(&scan_lock);
}

__attribute__((noinline)) void scan_scrub_stack(void)
{
	char dead[SCAN_SCRUB_BYTES];

	explicit_bzero(dead, sizeof(dead));
	__asm__ volatile("" : : "r"(dead) : "memory");
}

void scan_totals(struct scan_totals *t)
{
	mh_lock(&scan_lock);
	*t = totals;
	mh_unlock(&scan_lock);
}

MH_DEFAULT_TEXT void scan_fork_prepare(void)
{
	mh_lock(&scan_lock);
}

MH_DEFAULT_TEXT void scan_fork_parent(void)
{
	mh_unlock(&scan_lock);
}

void scan_fork_child(void)
{
	world_fork_child();
	helpers_fork_child();
	mh_unlock(&scan_lock);
}
