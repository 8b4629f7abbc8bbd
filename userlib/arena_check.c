// SPDX-License-Identifier: MIT
/*
 * The arena layer's part of the heap check (heapcheck.c, hooks.h): each
 * chunk span the heap's walk finds has its chunk and back, inside it, in a
 * state a span can be in; each chunk is on the list of its state (LIVE ones
 * on none), and the counters are the lists' sums. The walk counts chunk
 * spans by state through check_chunk; check_lists compares the lists with
 * those counts, under arena_lock.
 */
#include "arena_impl.h"
#include "heapcheck.h"

_Static_assert(CHUNK_WARM < sizeof(((struct heapcheck_found *)0)->chunks) / sizeof(uint64_t),
	       "heapcheck_found.chunks has a slot for every chunk state");

int arena_check_chunk(struct heapcheck_found *f, const struct mspan *s)
{
	const struct arena_chunk *c = LOAD_RELAXED(&s->chunk_data);
	unsigned long base = (unsigned long)s->base;

	HEAPCHECK(f, c, "chunk span %#lx has no chunk", base);
	HEAPCHECK(f, c->span == s && c->base == s->base && c->limit == mspan_limit(s),
		  "chunk span %#lx: its chunk is [%#lx, %#lx) of span %p", base,
		  (unsigned long)c->base, (unsigned long)c->limit, (void *)c->span);
	HEAPCHECK(f, c->base <= c->lo && c->lo <= c->hi && c->hi <= c->limit,
		  "chunk %#lx: free space [%#lx, %#lx) outside it", base, (unsigned long)c->lo,
		  (unsigned long)c->hi);
	HEAPCHECK(f, c->state == CHUNK_LIVE || c->state == CHUNK_REUSE ||
		  c->state == CHUNK_QUARANTINED || c->state == CHUNK_READY ||
		  c->state == CHUNK_WARM,
		  "chunk %#lx: state %u", base, c->state);
	f->chunks[c->state]++;
	return 0;
}

/* The chunks of list l, all in state, elsewhere more of them on another
 * list (the two warm lists). */
static int check_chunk_list(struct heapcheck_found *f, const struct list *l,
			    enum chunk_state state, uint64_t elsewhere, const char *name,
			    uint64_t *bytes)
{
	const struct arena_chunk *c, *prev = NULL;
	uint64_t n = 0, max = f->all ? f->chunks[state] : f->spans;

	*bytes = 0;
	list_for_each(c, l, link) {
		HEAPCHECK(f, n++ < max, "%s list: more than %llu chunks", name,
			  (unsigned long long)max);
		HEAPCHECK(f, c->state == state && c->link.prev == (prev ? &prev->link : NULL) &&
			  heapcheck_span_live(c->span) && c->span->chunk_data == c,
			  "%s list: chunk %#lx in state %u", name, (unsigned long)c->base, c->state);
		*bytes += c->limit - c->base;
		prev = c;
	}
	HEAPCHECK(f, chunk_of(l->tail) == prev && l->count == n &&
		  (!f->all || n + elsewhere == f->chunks[state]),
		  "%s list: %llu chunks (counted %llu), %llu in its state", name,
		  (unsigned long long)n, (unsigned long long)l->count,
		  (unsigned long long)f->chunks[state]);
	return 0;
}

static int check_lists_locked(struct heapcheck_found *f)
{
	uint64_t quarantined, warm, blocks, other;

	if (check_chunk_list(f, &reuse_list, CHUNK_REUSE, 0, "reuse", &other) ||
	    check_chunk_list(f, &ready_list, CHUNK_READY, 0, "ready", &other) ||
	    check_chunk_list(f, &quarantine, CHUNK_QUARANTINED, 0, "quarantine", &quarantined) ||
	    check_chunk_list(f, &warm_list, CHUNK_WARM, warm_blocks.count, "warm", &warm) ||
	    check_chunk_list(f, &warm_blocks, CHUNK_WARM, warm_list.count, "warm block", &blocks))
		return -1;
	HEAPCHECK(f, quarantined == quarantined_bytes, "quarantine %llu bytes, counted %llu",
		  (unsigned long long)quarantined, (unsigned long long)quarantined_bytes);
	if (!f->all)
		return 0;
	/* A move under way holds its room in warm_bytes, a chunk being made
	 * or destroyed is live without a state: quiet heaps only. */
	HEAPCHECK(f, warm + blocks == warm_bytes, "warm chunks %llu bytes, counted %llu",
		  (unsigned long long)(warm + blocks), (unsigned long long)warm_bytes);
	HEAPCHECK(f, f->chunks[CHUNK_LIVE] == chunks_live,
		  "%llu chunks live, counted %llu", (unsigned long long)f->chunks[CHUNK_LIVE],
		  (unsigned long long)chunks_live);
	return 0;
}

int arena_check_lists(struct heapcheck_found *f)
{
	int ret;

	mh_lock(&arena_lock);
	ret = check_lists_locked(f);
	mh_unlock(&arena_lock);
	return ret;
}
