// SPDX-License-Identifier: GPL-2.0
/*
 * The secure heap's small spans across their lives (MHEAP_SECURE=1): a
 * small span freed whole keeps its pages in the span cache's small list,
 * zeroed, and the next small span of its length takes them for whatever
 * class it serves. Each byte of such pages is checked at the first
 * allocation that covers it: a slot's bytes when the slot is handed out
 * (secure_slot_test, misuse_use_after_free_test), the bytes past the new class's last slot
 * when the span is taken (secure_slot.c, secure_span_reused). Each case runs
 * in a new process (this program again), so that the span its thread
 * freed is the one the next span of its length takes: the test checks
 * how it ended and its report line.
 */
#define _GNU_SOURCE
#include <pthread.h>

#define SECURE_TEST_CASE	span_case
#include "secure_fixture.h"
#include "arenamap.h"
#include "mspan.h"

#define SPAN	((size_t)32 << 10)	/* the 48- and 64-byte classes' spans: 4 pages */
#define BLOCKS	400			/* fewer than either class's span holds */

struct first_life {
	size_t size;		/* the blocks' */
	uintptr_t base;		/* out: their span's */
	bool one_span;		/* out: all of them in it */
};

/* BLOCKS blocks of l->size bytes, freed; the thread's exit gives their
 * span (entirely free) back to the page heap's span cache. */
static void *first_life(void *arg)
{
	struct first_life *l = arg;
	static void *p[BLOCKS];

	l->one_span = true;
	for (int i = 0; i < BLOCKS; i++) {
		p[i] = mh_malloc(l->size);
		if (!p[i])
			_exit(2);
		if (!i)
			l->base = span_of((uintptr_t)p[0])->base;
		l->one_span &= span_of((uintptr_t)p[i])->base == l->base;
	}
	for (int i = 0; i < BLOCKS; i++)
		mh_free(p[i]);
	return NULL;
}

/*
 * The child: a span of blocks of `first` bytes lives and dies in a thread;
 * its byte at offset `at` is written after the free; then blocks of `next`
 * bytes are allocated until a span of theirs takes its pages. Prints the
 * span's range ("span: 0x... 0x..."); ends with status 3 if the pages were
 * taken with no report, 2 if the scene could not be set.
 */
static void reuse_written_span(size_t first, size_t at, size_t next)
{
	struct first_life l = { .size = first };
	pthread_t t;

	if (pthread_create(&t, NULL, first_life, &l) || pthread_join(t, NULL) || !l.one_span ||
	    span_of(l.base))
		_exit(2);
	fprintf(stderr, "span: %#lx %#lx\n", (unsigned long)l.base, (unsigned long)(l.base + SPAN));
	((volatile char *)l.base)[at] = 1;
	for (int i = 0; i < 4 * BLOCKS; i++) {
		if (!mh_malloc(next))
			_exit(2);
		if (span_of(l.base))
			_exit(3);
	}
	_exit(2);
}

/* The report the child's line "span: lo hi" announces, the write at at
 * past the last slot of `room` bytes. */
static void check_report(struct __test_metadata *_metadata, const struct child_result *r,
			 size_t at, unsigned room)
{
	char want[256];
	unsigned long lo = 0, hi = 0;
	const char *line = r->err;

	ASSERT_EQ(2, sscanf(line, "span: %lx %lx\n", &lo, &hi)) TH_LOG("%s", r->err);
	line = strchr(line, '\n') + 1;
	snprintf(want, sizeof(want),
		 "mheap: write after free: span [%#lx, %#lx) written at offset %zu, past its last %u-byte slot, after its free, detected at its reuse\n",
		 lo, hi, at, room);
	EXPECT_TRUE(died_of(r, SIGABRT)) TH_LOG("status %#x: %s", r->status, r->err);
	EXPECT_STREQ(want, line);
}

/* The cases the tests run, each in this program again. */
static void span_case(const char *name)
{
	if (!strcmp(name, "other_class"))
		reuse_written_span(56, SPAN - 1, 40);
	if (!strcmp(name, "same_class"))
		reuse_written_span(40, SPAN - 20, 40);
}

static void exec_case(void *name)
{
	secure_exec_case(name);
}

/*
 * A span of 64-byte slots (56-byte blocks) fills its 32 KiB to the end;
 * one of 48-byte slots (40-byte blocks) leaves 32 bytes past its last. A
 * write after free into the last 64-byte slot's last bytes lies there once
 * the pages serve 48-byte slots, where no slot's check reads it.
 */
TEST(a_write_after_free_left_past_the_next_classs_last_slot_is_reported_at_the_spans_reuse)
{
	struct child_result r;

	run_child(exec_case, "other_class", &r);
	check_report(_metadata, &r, SPAN - 1, 48);
}

/* The same class again: bytes past the last slot stay so, never a slot's. */
TEST(a_write_past_a_spans_last_slot_is_reported_when_its_class_takes_the_pages_again)
{
	struct child_result r;

	run_child(exec_case, "same_class", &r);
	check_report(_metadata, &r, SPAN - 20, 48);
}

TEST_HARNESS_MAIN
