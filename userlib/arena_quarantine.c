// SPDX-License-Identifier: MIT
/*
 * Quarantine of freed arena chunks (arena_impl.h has the map of the arena
 * files; arena_chunk.c the lifecycle this is a part of).
 *
 * Freeing an arena faults its chunks (fault.h: the backend makes every
 * access trap and returns the memory to the OS) and puts them here, on a
 * FIFO under arena_lock, so that a stale pointer into a freed arena crashes
 * with a report (uaf.c) instead of reading or writing someone else's data.
 *
 * Go releases quarantined chunks once a GC cycle has proved no pointer to
 * them remains; so does arena_scan.c, by a conservative scan of the
 * process, when MHEAP_QUARANTINE_SCAN is on (the default): enforce_budget
 * and mh_quarantine_release() hand over to it. Without it the quarantine
 * is a FIFO under a budget of address space (MHEAP_QUARANTINE_MAX). The
 * memory itself is returned to the OS when a chunk is faulted, so only
 * address space and, for mprotect, VMAs are held. The longer a chunk
 * stays, the later its address range can be reused for new data, and the
 * longer a stale pointer into it is still caught; when the budget is
 * exceeded the oldest chunks are released first (enforce_budget). If the
 * kernel refuses a fault (mprotect out of VMAs, the module over its limit)
 * the oldest chunks are released and the fault is retried; with nothing
 * left to release, the chunk goes back to the page heap unfaulted: a free
 * never fails.
 *
 * Releasing can need a VMA too: quarantined chunks side by side merge into
 * one protected VMA (mprotect, and guard's whole and moved-from chunks), and opening
 * one of them alone splits it. When the kernel refuses that, the chunk
 * stays quarantined, still faulting, and the whole run of protected
 * quarantined chunks around it (its "island", found through the arena map)
 * is opened at once: that changes whole VMAs and ends at memory that is
 * not protected, so it needs no new VMA. Its younger chunks leave
 * quarantine early; nothing that still faults is ever handed out, and a
 * refusal of any kind (a race with a neighbour being faulted) leaves the
 * chunks quarantined for a later try.
 *
 * The interface (arena_impl.h) is the set of quarantined chunks (the list
 * and its bytes, under arena_lock), taking chunks out of it (one named
 * chunk, or the oldest), releasing taken chunks, and the budget check: a
 * policy that decides which chunks may leave (oldest first today) takes
 * them and releases them; the release handles refusals by itself.
 */
#include <errno.h>
#include <string.h>

#include "arena_impl.h"
#include "arenamap.h"
#include "fault.h"
#include "testhooks.h"

#ifdef MH_TEST_HOOKS
void (*mh_test_release_window)(uintptr_t base);
#endif

struct list quarantine;
uint64_t quarantined_bytes;
uint64_t releases_budget, releases_enomem;

/*
 * The secure heap's small guarded blocks (the sampled ones, small and
 * middle: secure_large.c) in quarantine, oldest first: at most SECURE_SMALL_BLOCKS_QUARANTINED of
 * them stay, the oldest released past that, whatever the scan would say
 * (as GWP-ASan recycles its oldest slot). The budget counts address space,
 * two pages for such a block, but each also keeps its span and chunk
 * structures (with its stacks, about 500 bytes) and the page tables of its
 * guard entries while it is quarantined: under the default 4 GiB budget up
 * to 262,144 of them, 128 MiB of structures. Measured: docs/heap.md,
 * "Guarded blocks".
 */
static struct list quarantined_small;

static void small_block_quarantined(struct arena_chunk *c, bool oldest)
{
	if (!c->block.small)
		return;
	if (oldest)
		list_push_head(&quarantined_small, &c->block.small_link);
	else
		list_push_tail(&quarantined_small, &c->block.small_link);
}

/* Put chunks whose release was refused back at the head of the quarantine,
 * in order (arena_lock held): they still fault, and they stay the oldest. */
static void requeue(struct arena_chunk **cs, unsigned n)
{
	while (n--) {
		STORE_RELAXED(&cs[n]->state, CHUNK_QUARANTINED);
		list_push_head(&quarantine, &cs[n]->link);
		small_block_quarantined(cs[n], true);
		quarantined_bytes += chunk_bytes(cs[n]);
	}
}

/* Whether c's range is protected with mprotect while it is quarantined. */
static bool chunk_protected(const struct arena_chunk *c)
{
	struct fault_range r = { (void *)c->base, chunk_bytes(c), c->moved };

	return c->backend->protects(&r);
}

/* The quarantined chunk right below c (dir < 0) or above it whose range is
 * protected as c's is, or NULL (arena_lock held: a quarantined chunk leaves
 * the state only under it). */
static struct arena_chunk *island_neighbour(const struct arena_chunk *c, int dir)
{
	struct mspan *s = span_of(dir < 0 ? c->base - 1 : c->limit);
	struct arena_chunk *n;

	if (!s || LOAD_RELAXED(&s->state) != MSPAN_CHUNK)
		return NULL;
	n = LOAD_ACQUIRE(&s->chunk_data);
	if (!n || LOAD_RELAXED(&n->state) != CHUNK_QUARANTINED ||
	    (dir < 0 ? n->limit != c->base : n->base != c->limit) ||
	    n->backend != c->backend || !chunk_protected(n))
		return NULL;
	return n;
}

/*
 * The kernel refused to open c alone (quarantined again, at the head): it
 * lies inside a protected VMA with its quarantined neighbours, and the
 * split ran out of VMAs. Opening the whole run of protected quarantined
 * chunks around it needs none: every VMA it touches is changed whole, and
 * the run ends at memory that is not protected. Returns how many chunks
 * were released (0: refused again, they all stay quarantined, faulting).
 * The run's younger chunks leave quarantine early: that is the price.
 */
static unsigned release_island(struct arena_chunk *c, bool ready)
{
	const struct fault_backend *b = c->backend;
	struct arena_chunk *lo = c, *n;
	struct list island = { 0 };
	struct fault_range r;
	unsigned total;
	int err = 0;

	mh_lock(&arena_lock);
	if (c->state != CHUNK_QUARANTINED || !chunk_protected(c)) {
		mh_unlock(&arena_lock);
		return 0;
	}
	while ((n = island_neighbour(lo, -1)))
		lo = n;
	r.base = (void *)lo->base;
	r.moved = c->moved;
	/* Out of quarantine, lowest first, onto the island's list. */
	for (n = lo; n; n = island_neighbour(n, 1)) {
		quarantine_take(n);
		list_push_tail(&island, &n->link);
		r.len = n->limit - lo->base;
	}
	mh_unlock(&arena_lock);
	if (!b->release(&r, 1, &err)) {
		mh_lock(&arena_lock);
		while ((n = chunk_of(list_pop_head(&island))))
			requeue(&n, 1);
		mh_unlock(&arena_lock);
		return 0;
	}
	total = (unsigned)island.count;
	while ((n = chunk_of(list_pop_head(&island))))
		chunk_released(n, ready);
	return total;
}

/*
 * Release chunks of one backend from quarantine (arena_lock not held; they
 * are in state CHUNK_RELEASING and off every list) to the ready list
 * (ready) or the page heap. When the kernel refuses one for want of a VMA,
 * that one and the rest go back to quarantine, still faulting, and the
 * refused one's island is released whole instead. Returns how many chunks
 * were released.
 */
static unsigned release_run(struct arena_chunk **cs, unsigned n, bool ready)
{
	struct fault_range r[ARENA_BATCH] = { 0 };
	const struct fault_backend *b = cs[0]->backend;
	unsigned done;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		r[i].base = (void *)cs[i]->base;
		r[i].len = chunk_bytes(cs[i]);
		r[i].moved = cs[i]->moved;
	}
	test_hook_release_window(cs[0]->base);
	done = b->release(r, n, &err);
	for (unsigned i = 0; i < done; i++)
		chunk_released(cs[i], ready);
	if (done == n)
		return n;
	if (err != -ENOMEM)
		mh_fatal("cannot release arena chunk %p (%s backend): %s", r[done].base,
			 b->name, strerror(-err));
	mh_lock(&arena_lock);
	requeue(cs + done, n - done);
	mh_unlock(&arena_lock);
	return done + release_island(cs[done], ready);
}

/* Release chunks as release_run does, a run of chunks of one backend at a
 * time: with kmod, guarded heap blocks' chunks are anonymous memory
 * (fault_block_backend), and quarantine holds them with the arenas'. */
unsigned release_chunks(struct arena_chunk **cs, unsigned n, bool ready)
{
	unsigned done = 0, released = 0;

	while (done < n) {
		unsigned k = 1;

		while (done + k < n && cs[done + k]->backend == cs[done]->backend)
			k++;
		released += release_run(cs + done, k, ready);
		done += k;
	}
	return released;
}

/* Take quarantined chunk c out (arena_lock held); the caller releases it
 * after unlocking (release_chunks). */
void quarantine_take(struct arena_chunk *c)
{
	list_remove(&quarantine, &c->link);
	quarantined_bytes -= chunk_bytes(c);
	if (c->block.small)
		list_remove(&quarantined_small, &c->block.small_link);
	STORE_RELAXED(&c->state, CHUNK_RELEASING);
}

/* Take up to max of the oldest quarantined chunks out (arena_lock held)
 * into cs; the caller releases them after unlocking. */
unsigned quarantine_take_oldest(struct arena_chunk **cs, unsigned max)
{
	unsigned n = 0;

	while (n < max && quarantine.head) {
		struct arena_chunk *c = chunk_of(quarantine.head);

		quarantine_take(c);
		cs[n++] = c;
	}
	return n;
}

/* Release up to max of the oldest quarantined chunks because the system
 * refused something (arena_lock not held); returns how many were. */
unsigned release_oldest(unsigned max, bool ready)
{
	struct arena_chunk *cs[ARENA_BATCH];
	unsigned n;

	mh_lock(&arena_lock);
	n = quarantine_take_oldest(cs, max);
	releases_enomem += n;
	mh_unlock(&arena_lock);
	return n ? release_chunks(cs, n, ready) : 0;
}

/* The FIFO's budget: the oldest chunks go. A batch the kernel refused
 * whole stays for a later free to try again. */
static __attribute__((noinline)) void enforce_budget_fifo(void)
{
	struct arena_chunk *cs[ARENA_BATCH];

	for (;;) {
		unsigned n = 0;

		mh_lock(&arena_lock);
		while (n < ARENA_BATCH && quarantined_bytes > arena_cfg.quarantine_max && quarantine.head)
			n += quarantine_take_oldest(cs + n, 1);
		releases_budget += n;
		mh_unlock(&arena_lock);
		if (!n || !release_chunks(cs, n, true))
			return;
	}
}

/* Release quarantine beyond the budget (arena_lock not held): by the scan
 * (arena_scan.c) or, with it off, the FIFO. Neither frame is a scan's root:
 * the FIFO's batch array (chunk addresses left over) lives in its own. */
void enforce_budget(bool in_free)
{
	if (!quarantine_scan_budget(in_free))
		enforce_budget_fifo();
}

/* Release the oldest small guarded blocks past their cap (arena_lock not
 * held). */
static void release_small_blocks_over_cap(void)
{
	struct arena_chunk *cs[ARENA_BATCH];
	unsigned n = 0;

	mh_lock(&arena_lock);
	while (n < ARENA_BATCH && quarantined_small.count > SECURE_SMALL_BLOCKS_QUARANTINED) {
		cs[n] = list_entry(quarantined_small.head, struct arena_chunk, block.small_link);
		quarantine_take(cs[n++]);
	}
	releases_budget += n;
	mh_unlock(&arena_lock);
	if (n)
		release_chunks(cs, n, true);
}

/*
 * Fault chunks and put them in quarantine. When the kernel refuses (out of
 * VMAs, or the module's limit), release the oldest quarantined chunks and
 * try again; with nothing left that can be released, the chunk goes back to
 * the page heap unfaulted (its pages dirty) rather than failing the free.
 */
void quarantine_chunks(struct arena_chunk **cs, unsigned n, uint64_t arena_id)
{
	/* One arena's chunks, or one guarded block's: one backend. */
	const struct fault_backend *b = n ? cs[0]->backend : fault_backend();
	struct fault_range r[ARENA_BATCH];
	unsigned done = 0;
	bool scanned = false;

	if (!b->faults) {
		/* Nothing faults: nothing to hold back either. */
		for (unsigned i = 0; i < n; i++)
			STORE_RELAXED(&cs[i]->state, CHUNK_RELEASING);
		release_chunks(cs, n, true);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		r[i].base = (void *)cs[i]->base;
		r[i].len = chunk_bytes(cs[i]);
		r[i].moved = cs[i]->moved;
	}
	while (done < n) {
		int err = 0;
		unsigned k = b->fault(r + done, n - done, &err);
		uint64_t now = mh_nanotime();

		mh_lock(&arena_lock);
		for (unsigned i = done; i < done + k; i++) {
			cs[i]->arena_id = arena_id;
			cs[i]->freed_ns = now;
			STORE_RELEASE(&cs[i]->state, CHUNK_QUARANTINED);
			list_push_tail(&quarantine, &cs[i]->link);
			quarantined_bytes += chunk_bytes(cs[i]);
			small_block_quarantined(cs[i], false);
		}
		done += k;
		mh_unlock(&arena_lock);
		if (done == n)
			break;
		if (err != -ENOMEM && err != -EDQUOT)
			mh_fatal("cannot fault arena chunk %p (%s backend): %s", r[done].base,
				 b->name, strerror(-err));
		/* Out of VMAs or over the limit: make room, with the scan
		 * what nobody points into first (its scratch needs VMAs too,
		 * so out of them it may not run), then oldest first. One
		 * scan a call: what it found referenced still is at the next
		 * try, and a refusal that lasts would otherwise scan again
		 * for every batch of the oldest. */
		bool room = false;

		if (!scanned) {
			scanned = true;
			room = quarantine_scan_for_room(!arena_id);
		}
		if (room || release_oldest(8, true))
			continue;
		/* Nothing could be released: give up faulting this one. Its
		 * pages were not dropped, so they go back dirty. */
		mh_lock(&arena_lock);
		releases_enomem++;
		mh_unlock(&arena_lock);
		chunk_destroy(cs[done++], false);
	}
	if (!arena_id)
		release_small_blocks_over_cap();
	/* arena_id 0: a guarded block's, freed by free(). */
	enforce_budget(!arena_id);
}

/* Every quarantined chunk, oldest first (MHEAP_QUARANTINE_SCAN=0). */
static __attribute__((noinline)) void release_all_fifo(void)
{
	struct arena_chunk *cs[ARENA_BATCH];

	for (;;) {
		mh_lock(&arena_lock);
		unsigned n = quarantine_take_oldest(cs, ARENA_BATCH);
		mh_unlock(&arena_lock);
		/* A batch the kernel refused whole stays quarantined. */
		if (!n || !release_chunks(cs, n, true))
			return;
	}
}

/* With the scan, only the chunks no pointer points into leave. */
void mh_quarantine_release(void)
{
	/* A caller who gives back quarantine wants the arenas' memory back:
	 * warm chunks and the reuse list's dead data are the resident part. */
	arena_release_idle();
	if (arena_cfg.scan && fault_backend()->faults)
		quarantine_scan_all();
	else
		release_all_fifo();
}
