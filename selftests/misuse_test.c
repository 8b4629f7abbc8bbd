// SPDX-License-Identifier: GPL-2.0
/*
 * Heap misuse, one small program per kind, in the manner of hardened_malloc's
 * own test suite: each runs as this very program started again with the
 * misuse's name (MISUSE=name) and the mode's environment, and the test checks
 * how it ended - the signal, or that it ran to its end - and the exact first
 * line of its report.
 *
 * The expectation of every misuse in every mode is one row of the table
 * below: what the default mode does not catch is stated there (the program
 * survives, silent), not skipped. Modes:
 *   default   no MHEAP_SECURE;
 *   secure    MHEAP_SECURE=1, sampling off (MHEAP_SECURE_SAMPLE=0 and
 *             MHEAP_SECURE_MIDDLE_SAMPLE=0) so that the outcome does not
 *             depend on which allocation is sampled;
 *   sampled   MHEAP_SECURE=1 with every small and middle allocation
 *             sampled (both 1): the guarded page each one gets.
 * The secure modes run on every fault backend that can fault here (kmod
 * only with /dev/mheap: SKIP otherwise).
 *
 * A guarded block's report must go on with the stacks that allocated
 * and freed it.
 *
 * A misuse program prints the addresses its report line will name on
 * stderr, one per line, before the misuse; the line is the row's format
 * with them filled in (%s in order), '#' standing for the time since the
 * free (digits and a point) and '@' for the name of the backend that
 * faults guarded blocks (with kmod, guard or mprotect: their memory must
 * survive fork, blocks_across_fork).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "fault.h"
#include "mheap_impl.h"

#define LARGE	((size_t)2 << 20)	/* a large block, guarded (MHEAP_SECURE_LARGE) */
#define MIDDLE	((size_t)64 << 10)	/* a middle block: secure_middle.c */

/* ------------------------------------------------------------ the misuses */

/* Print an address the report will name ($1, $2, ... in the table), on
 * stderr before the report, as "misuse: 0x...". */
#define SAY "misuse: "
static void say(const void *p)
{
	fprintf(stderr, SAY "%#lx\n", (unsigned long)(uintptr_t)p);
}

static volatile char sink;

/* $1 the block, $2 its end. */
static char *small_block(size_t size)
{
	char *p = mh_malloc(size);

	say(p);
	say(p + size);
	return p;
}

static void small_read_after_free(void)
{
	char *p = small_block(32);

	memset(p, 1, 32);
	mh_free(p);
	sink = p[0];
}

/* In the secure mode the write is found when the slot is handed out
 * again: allocate (and free) blocks of its size until it is. */
static void small_write_after_free(void)
{
	char *p = small_block(32);

	mh_free(p);
	p[0] = 1;
	for (int i = 0; i < 100000; i++)
		mh_free(mh_malloc(32));
}

/* A write after free at offset at of a 1000-byte block (a 1024-byte slot
 * in the secure mode), then blocks of its size from malloc (or calloc)
 * until its slot is handed out again. $3 the byte written. */
static void write_after_free_at(size_t at, bool by_calloc)
{
	char *p = small_block(1000);

	say(p + at);
	mh_free(p);
	p[at] = 1;
	for (int i = 0; i < 100000; i++)
		mh_free(by_calloc ? mh_calloc(1, 1000) : mh_malloc(1000));
}

/* In the secure mode a slot's last 64 bytes are checked at every reuse. */
static void small_write_after_free_near_end(void)
{
	write_after_free_at(999, false);
}

/* A slot's middle is checked at reuse by calloc (and by malloc at random). */
static void small_write_after_free_middle_calloc(void)
{
	write_after_free_at(500, true);
}

static void large_read_after_free(void)
{
	char *p = small_block(LARGE);

	memset(p, 1, LARGE);
	mh_free(p);
	sink = p[0];
}

static void large_write_after_free(void)
{
	char *p = small_block(LARGE);

	mh_free(p);
	p[0] = 1;
}

/* The freed block's pages serve the next block (arena_warm.c): the old
 * address faults all the same. */
static void large_read_after_free_pages_reused(void)
{
	char *p = small_block(LARGE), *q;

	memset(p, 1, LARGE);
	mh_free(p);
	q = mh_malloc(LARGE);
	if (!q)
		_exit(2);
	memset(q, 2, LARGE);
	sink = p[0];
}

/* Overflow by n bytes past a 32-byte block, then free it. */
static void small_overflow(size_t n)
{
	char *p = small_block(32);

	memset(p + 32, 'x', n);
	mh_free(p);
}

static void small_overflow_1(void)
{
	small_overflow(1);
}

/* Middle blocks (secure mode: between the small classes and
 * MHEAP_SECURE_LARGE; sampled mode: every one guarded). */
static void middle_read_after_free(void)
{
	char *p = small_block(MIDDLE);

	memset(p, 1, MIDDLE);
	mh_free(p);
	sink = p[0];
}

/* A write after free at offset at of a block of size bytes, then frees of
 * middle blocks until its delay is over (secure_middle.c: at most 8
 * blocks). $3 the byte. */
static void middle_write_after_free_at(size_t size, size_t at)
{
	char *p = small_block(size);

	say(p + at);
	mh_free(p);
	p[at] = 1;
	for (int i = 0; i < 16; i++)
		mh_free(mh_malloc(MIDDLE));
}

static void middle_write_after_free(void)
{
	middle_write_after_free_at(MIDDLE, 0);
}

/* The block's last 64 bytes are checked too. */
static void middle_write_after_free_near_end(void)
{
	middle_write_after_free_at(MIDDLE, MIDDLE - 1);
}

/* Up to its last byte, whatever its length: 65,541 bytes end 5 bytes into
 * a word. */
static void middle_write_after_free_at_an_odd_end(void)
{
	middle_write_after_free_at(MIDDLE + 5, MIDDLE + 4);
}

static void middle_overflow_1(void)
{
	char *p = small_block(MIDDLE);

	p[MIDDLE] = 'x';
	mh_free(p);
}

/* A block whose canary and trailer end its pages (65,512 + 16 + 8 bytes:
 * 8 pages), overflowed by 24 bytes up to its pages' end, a byte at a time:
 * the trailer that holds its size is hit, and the report names the pages.
 * Guarded, the block ends 8 bytes (of canary) short of the guard page: $3
 * is where the ninth byte faults. */
static void middle_overflow_trailer(void)
{
	size_t n = (64 << 10) - 24;
	volatile char *p = small_block(n);

	say((char *)p + n + 8);
	for (size_t i = 0; i < 24; i++)
		p[n + i] = 'x';
	mh_free((char *)p);
}

static void double_free_middle(void)
{
	void *p = small_block(MIDDLE);

	mh_free(p);
	mh_free(p);
}

static void small_overflow_32(void)
{
	small_overflow(32);
}

/* A write at offset at past the end of a block of from bytes, every byte
 * written, that realloc grew or shrank to to bytes in place. The canary
 * must have moved to the block's new end: where it has not, the report
 * names a lower offset (a stale byte of the old block or of the slot).
 * $1 the block, $2 its end, $3 the byte written. */
static void realloc_overflow(size_t from, size_t to, size_t at)
{
	char *p = mh_malloc(from);

	memset(p, 'a', from);
	p = mh_realloc(p, to);
	say(p);
	say(p + to);
	say(p + at);
	p[at] = 'x';
	mh_free(p);
}

static void small_overflow_after_realloc_grow(void)
{
	realloc_overflow(260, 270, 278);
}

static void small_overflow_after_realloc_shrink(void)
{
	realloc_overflow(100, 60, 68);
}

static void large_overflow(void)
{
	char *p = small_block(LARGE);

	memset(p + LARGE, 'x', LARGE);
	mh_free(p);
}

static void zero_size_read(void)
{
	char *p = small_block(0);

	sink = p[0];
}

static void zero_size_write(void)
{
	char *p = small_block(0);

	p[0] = 1;
}

/* Ends with status 3 when the next malloc of the size returns the block
 * just freed, for a small, a middle and a large block. */
static void immediate_reuse(void)
{
	const size_t sizes[] = { 32, MIDDLE, LARGE };

	for (unsigned i = 0; i < 3; i++) {
		void *p = mh_malloc(sizes[i]);

		mh_free(p);
		if (mh_malloc(sizes[i]) == p)
			_exit(3);
	}
}

static void double_free(void)
{
	void *p = small_block(32);

	mh_free(p);
	mh_free(p);
}

static void double_free_large(void)
{
	void *p = small_block(LARGE);

	mh_free(p);
	mh_free(p);
}

/* realloc of a block already freed: a double free, named as realloc's. */
static void realloc_after_free_of(size_t size)
{
	void *p = small_block(size);

	mh_free(p);
	(void)mh_realloc(p, size + 100);
}

static void realloc_after_free(void)
{
	realloc_after_free_of(32);
}

static void realloc_after_free_middle(void)
{
	realloc_after_free_of(MIDDLE);
}

static void realloc_after_free_large(void)
{
	realloc_after_free_of(LARGE);
}

/* malloc(0)'s block: by default a small one, in the secure modes an
 * address of the zero-size range (secure_zero.c). */
static void realloc_after_free_zero_size(void)
{
	realloc_after_free_of(0);
}

/* malloc_usable_size of a block already freed: named as that call's,
 * which frees nothing. */
static void usable_size_after_free_of(size_t size)
{
	void *p = small_block(size);

	mh_free(p);
	(void)mh_usable_size(p);
}

static void usable_size_after_free(void)
{
	usable_size_after_free_of(32);
}

static void usable_size_after_free_middle(void)
{
	usable_size_after_free_of(MIDDLE);
}

static void usable_size_after_free_large(void)
{
	usable_size_after_free_of(LARGE);
}

/* free_sized of a block already freed, with its size. */
static void free_sized_after_free(void)
{
	void *p = small_block(32);

	mh_free(p);
	mh_free_sized_checked(p, SIZED_FREE, false, 1, 32);
}

/* free_sized of memory malloc never gave (a static buffer). */
static void free_sized_not_from_malloc(void)
{
	static char buf[64];

	say(buf);
	mh_free_sized_checked(buf, SIZED_FREE, false, 1, 64);
}

/* A byte past a 20-byte block written, then realloc to 28 bytes: in
 * place (its slot, or its guarded block's room before the guard), over the
 * written byte, which realloc must check first as free would. */
static void small_overflow_then_realloc(void)
{
	char *p = small_block(20);

	p[20] = 'x';
	p = mh_realloc(p, 28);
	mh_free(p);
}

static void invalid_free(void)
{
	char *p = small_block(32);

	say(p + 8);
	mh_free(p + 8);
}

/* No misuse at all: random sizes up to 256 KiB (small, middle and
 * guarded), through malloc, calloc, aligned_alloc and realloc, every byte
 * written, freed in random order (run with MHEAP_SECURE_LARGE=128K, so that
 * blocks from 128 KiB are guarded, those below middle blocks). Nothing may be reported: a slot that
 * comes back with data the program never wrote after its free (a span of
 * dirty pages taken as clean) would be a false "write after free". */
static void no_misuse(void)
{
	enum { SLOTS = 1024 };
	static char *slot[SLOTS];
	uint64_t x = 88172645463325252ull;

	/* Every allocation is guarded in the sampled mode: a few seconds. */
	for (int i = 0; i < 40000; i++) {
		unsigned j, k;
		size_t size;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (unsigned)(x % SLOTS);
		k = (unsigned)(x >> 20) % 100;
		size = k < 70 ? 1 + (x >> 32) % 512 : k < 96 ? (x >> 32) % 32768 : (x >> 32) % (256 << 10);
		if (slot[j] && k % 4 == 0) {
			slot[j] = mh_realloc(slot[j], size + 1);
		} else {
			mh_free(slot[j]);
			slot[j] = k % 8 == 1 ? mh_calloc(1, size + 1)
				: k % 8 == 2 ? mh_aligned_alloc((size_t)64 << (x >> 40) % 9, size + 1)
				: mh_malloc(size + 1);
		}
		if (!slot[j])
			_exit(2);
		memset(slot[j], 'x', size + 1);
	}
	for (unsigned j = 0; j < SLOTS; j++)
		mh_free(slot[j]);
}

/* No misuse either: blocks allocated before fork() are the child's too,
 * whatever memory they live in (sampled, the small one is guarded; in the
 * secure modes the large one is): the child reads the parent's contents,
 * writes over them and frees them, and the parent's stay its own. */
static void blocks_across_fork(void)
{
	char *small = mh_malloc(32), *large = mh_malloc(LARGE);
	int status = 0;
	pid_t pid;

	if (!small || !large)
		_exit(2);
	memset(small, 's', 32);
	memset(large, 'l', LARGE);
	pid = fork();
	if (pid == 0) {
		if (small[0] != 's' || small[31] != 's' || large[0] != 'l' ||
		    large[LARGE - 1] != 'l')
			_exit(4);
		memset(small, 'c', 32);
		memset(large, 'c', LARGE);
		mh_free(small);
		mh_free(large);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		_exit(2);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "blocks_across_fork: child status %#x\n", status);
		_exit(4);
	}
	if (small[31] != 's' || large[LARGE - 1] != 'l')
		_exit(5);
	mh_free(small);
	mh_free(large);
}

static const struct misuse {
	const char *name;
	void (*run)(void);
} misuses[] = {
#define M(f) { #f, f }
	M(small_read_after_free), M(small_write_after_free), M(small_write_after_free_near_end),
	M(small_write_after_free_middle_calloc), M(large_read_after_free),
	M(large_write_after_free), M(large_read_after_free_pages_reused), M(small_overflow_1),
	M(small_overflow_32), M(small_overflow_after_realloc_grow),
	M(small_overflow_after_realloc_shrink),
	M(middle_read_after_free), M(middle_write_after_free),
	M(middle_write_after_free_near_end), M(middle_write_after_free_at_an_odd_end),
	M(middle_overflow_1), M(middle_overflow_trailer),
	M(double_free_middle),
	M(large_overflow), M(zero_size_read), M(zero_size_write), M(immediate_reuse),
	M(double_free), M(double_free_large), M(realloc_after_free), M(realloc_after_free_middle),
	M(realloc_after_free_large), M(realloc_after_free_zero_size), M(usable_size_after_free),
	M(usable_size_after_free_middle), M(usable_size_after_free_large), M(free_sized_after_free),
	M(free_sized_not_from_malloc), M(small_overflow_then_realloc), M(invalid_free), M(no_misuse),
	M(blocks_across_fork),
#undef M
};

/* ------------------------------------------------------------ the table */

enum mode { DEFAULT, SECURE, SAMPLED, MODES };

/* How a misuse program ends. */
enum end {
	SURVIVES,	/* runs to its end, silent: not caught */
	REUSED,		/* status 3: the freed block came back at once */
	ABORTS,		/* SIGABRT after its report line */
	FAULTS,		/* SIGSEGV after its report line */
	CRASHES,	/* SIGSEGV, silent: it ran off the heap's mapped end */
};

struct expect {
	enum end end;
	const char *line;	/* the report's first line: $N, # and @ as at the top */
};

#define NOT_CAUGHT { SURVIVES, NULL }
/* An access at the start of a block freed and faulted. */
#define UAF(access, n) { FAULTS, "mheap: use-after-free: " access " $1 at offset 0 of freed " \
			 n "-byte block [$1, $2), freed # ms ago (@ backend)" }
/* An access at offset off ($3) of a block freed and faulted. */
#define UAF_AT(access, off, n) { FAULTS, "mheap: use-after-free: " access " $3 at offset " off \
				 " of freed " n "-byte block [$1, $2), freed # ms ago (@ backend)" }
/* A write just past the end of a guarded block. */
#define PAST_END(n) { FAULTS, "mheap: heap overflow: write to $2, 0 bytes past the end of " \
		      n "-byte block [$1, $2) (@ backend)" }
#define CANARY { ABORTS, "mheap: heap overflow: canary after 32-byte block $1 overwritten " \
		 "at offset 32, detected at free" }
/* A write at offset at of an n-byte block's canary. */
#define CANARY_AT(n, at) { ABORTS, "mheap: heap overflow: canary after " n "-byte block $1 " \
			   "overwritten at offset " at ", detected at free" }
#define USABLE_AFTER_FREE { ABORTS, "mheap: use after free of $1 in malloc_usable_size" }
#define CANARY_IN_REALLOC { ABORTS, "mheap: heap overflow: canary after 20-byte block $1 " \
			    "overwritten at offset 20, detected in realloc" }
#define ZERO_SIZE(access) { FAULTS, "mheap: zero-size access: " access \
			    " $1 through malloc(0)'s pointer $1" }
#define ALL_MODES(...) { [DEFAULT] = __VA_ARGS__, [SECURE] = __VA_ARGS__, [SAMPLED] = __VA_ARGS__ }

static const struct row {
	const char *misuse;
	struct expect in[MODES];
} table[] = {
	/* A small block faults only when sampled. */
	{ "small_read_after_free", { NOT_CAUGHT, NOT_CAUGHT, UAF("read of", "32") } },
	{ "small_write_after_free", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 48-byte slot $1 written at offset 0 "
			  "after its free, detected at its reuse" },
		UAF("write to", "32") } },
	{ "small_write_after_free_near_end", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 1024-byte slot $1 written at offset 999 "
			  "after its free, detected at its reuse" },
		UAF_AT("write to", "999", "1000") } },
	{ "small_write_after_free_middle_calloc", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 1024-byte slot $1 written at offset 500 "
			  "after its free, detected at its reuse" },
		UAF_AT("write to", "500", "1000") } },
	{ "large_read_after_free", { NOT_CAUGHT, UAF("read of", "2097152"), UAF("read of", "2097152") } },
	{ "large_write_after_free", { NOT_CAUGHT, UAF("write to", "2097152"), UAF("write to", "2097152") } },
	/* By default the next block is the freed one, read back. */
	{ "large_read_after_free_pages_reused", { NOT_CAUGHT, UAF("read of", "2097152"),
						  UAF("read of", "2097152") } },
	{ "small_overflow_1", { NOT_CAUGHT, CANARY, PAST_END("32") } },
	/* 32 bytes reach the trailer that holds the block's size: the
	 * report names the slot. */
	{ "small_overflow_32", { NOT_CAUGHT,
		{ ABORTS, "mheap: heap overflow: canary at the end of 48-byte slot $1 overwritten, "
			  "detected at free" },
		PAST_END("32") } },
	/* By default nothing is caught; in the secure mode the canary has
	 * moved with the block's end (grown in its 288-byte slot, shrunk in
	 * its 112-byte one). Sampled, the grown block moves to a guarded
	 * block of its own, against the guard page; the shrunk one stays. */
	{ "small_overflow_after_realloc_grow", { NOT_CAUGHT, CANARY_AT("270", "278"),
		{ FAULTS, "mheap: heap overflow: write to $3, 8 bytes past the end of "
			  "270-byte block [$1, $2) (@ backend)" } } },
	{ "small_overflow_after_realloc_shrink", { NOT_CAUGHT, CANARY_AT("60", "68"),
						   CANARY_AT("60", "68") } },
	/* A middle block faults only when sampled (guarded); a write after
	 * free is found when its delay ends, an overflow at free. */
	{ "middle_read_after_free", { NOT_CAUGHT, NOT_CAUGHT, UAF("read of", "65536") } },
	{ "middle_write_after_free", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 65536-byte block $1 written at offset 0 "
			  "after its free, detected at its release" },
		UAF("write to", "65536") } },
	{ "middle_write_after_free_near_end", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 65536-byte block $1 written at offset 65535 "
			  "after its free, detected at its release" },
		UAF_AT("write to", "65535", "65536") } },
	{ "middle_write_after_free_at_an_odd_end", { NOT_CAUGHT,
		{ ABORTS, "mheap: write after free: 65541-byte block $1 written at offset 65540 "
			  "after its free, detected at its release" },
		UAF_AT("write to", "65540", "65541") } },
	{ "middle_overflow_1", { NOT_CAUGHT, CANARY_AT("65536", "65536"), PAST_END("65536") } },
	{ "middle_overflow_trailer", { NOT_CAUGHT,
		{ ABORTS, "mheap: heap overflow: canary at the end of 65536-byte slot $1 "
			  "overwritten, detected at free" },
		{ FAULTS, "mheap: heap overflow: write to $3, 8 bytes past the end of "
			  "65512-byte block [$1, $2) (@ backend)" } } },
	{ "double_free_middle", ALL_MODES({ ABORTS, "mheap: double free of $1" }) },
	/* By default a large block sits at the top of the heap: running
	 * as far again past it leaves the heap's mapping, with no report. */
	{ "large_overflow", { { CRASHES, NULL }, PAST_END("2097152"), PAST_END("2097152") } },
	{ "zero_size_read", { NOT_CAUGHT, ZERO_SIZE("read of"), ZERO_SIZE("read of") } },
	{ "zero_size_write", { NOT_CAUGHT, ZERO_SIZE("write to"), ZERO_SIZE("write to") } },
	/* By default the middle block comes back; in the secure modes none. */
	{ "immediate_reuse", { { REUSED, NULL }, NOT_CAUGHT, NOT_CAUGHT } },
	{ "double_free", ALL_MODES({ ABORTS, "mheap: double free of $1" }) },
	{ "double_free_large", ALL_MODES({ ABORTS, "mheap: double free of $1" }) },
	/* realloc names itself; by default a small block says more. */
	{ "realloc_after_free", { { ABORTS, "mheap: double free of $1 in realloc (pointer already freed)" },
		{ ABORTS, "mheap: double free of $1 in realloc" },
		{ ABORTS, "mheap: double free of $1 in realloc" } } },
	{ "realloc_after_free_middle", ALL_MODES({ ABORTS, "mheap: double free of $1 in realloc" }) },
	{ "realloc_after_free_large", ALL_MODES({ ABORTS, "mheap: double free of $1 in realloc" }) },
	{ "realloc_after_free_zero_size", { { ABORTS, "mheap: double free of $1 in realloc (pointer already freed)" },
		{ ABORTS, "mheap: double free of $1 in realloc" },
		{ ABORTS, "mheap: double free of $1 in realloc" } } },
	/* By default malloc_usable_size checks nothing; in the secure modes it
	 * checks a block as free does, and names itself. */
	{ "usable_size_after_free", { NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE } },
	{ "usable_size_after_free_middle", { NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE } },
	{ "usable_size_after_free_large", { NOT_CAUGHT, USABLE_AFTER_FREE, USABLE_AFTER_FREE } },
	/* By default a small block's double free does not name the call. */
	{ "free_sized_after_free", { { ABORTS, "mheap: double free of $1" },
		{ ABORTS, "mheap: double free of $1 in free_sized" },
		{ ABORTS, "mheap: double free of $1 in free_sized" } } },
	{ "free_sized_not_from_malloc", ALL_MODES({ ABORTS, "mheap: invalid free of $1 in free_sized" }) },
	/* Sampled, the block is guarded, with 12 canary bytes before its
	 * guard: realloc grows it in place over them. */
	{ "small_overflow_then_realloc", { NOT_CAUGHT, CANARY_IN_REALLOC, CANARY_IN_REALLOC } },
	{ "invalid_free", ALL_MODES({ ABORTS, "mheap: invalid free of $3 (inside an object)" }) },
	{ "no_misuse", ALL_MODES(NOT_CAUGHT) },
	{ "blocks_across_fork", ALL_MODES(NOT_CAUGHT) },
};

/* ------------------------------------------------------------ running them */

/* How a misuse program ended, the addresses it printed, and the rest of
 * what it wrote on stderr: its report. */
struct run {
	struct child_result child;
	char values[9][24];	/* $1..$9 */
	const char *err;
};

/* The child: this program again, as misuse name, with the "NAME=value"
 * strings of env (NULL-ended) added to the environment. */
static const char *const *exec_env;

static void exec_misuse(void *name)
{
	setenv("MISUSE", name, 1);
	for (const char *const *e = exec_env; *e; e++)
		putenv((char *)*e);
	execl("/proc/self/exe", "misuse_test", (char *)NULL);
	_exit(127);
}

static void run_misuse(const char *name, const char *const *env, struct run *r)
{
	unsigned n = 0;

	memset(r, 0, sizeof(*r));
	exec_env = env;
	run_child(exec_misuse, (void *)name, &r->child);
	r->err = r->child.err;
	while (!strncmp(r->err, SAY, strlen(SAY))) {
		const char *v = r->err + strlen(SAY), *end = strchr(v, '\n');

		if (!end)
			break;
		if (n < 9)
			snprintf(r->values[n++], sizeof(r->values[0]), "%.*s", (int)(end - v), v);
		r->err = end + 1;
	}
}

/* Whether text starts with the line fmt describes, filled in from r (see
 * the top); *want gets fmt filled in, for the log. */
static bool line_matches(const char *fmt, const struct run *r, const char *backend,
			 const char *text, char *want, size_t size)
{
	size_t n = 0;
	bool ok = true;

	for (const char *f = fmt; *f && n < size - 1; f++) {
		const char *put = NULL;

		if (*f == '$' && f[1] >= '1' && f[1] <= '9') {
			put = r->values[*++f - '1'];
		} else if (*f == '@') {
			put = backend;
		} else if (*f == '#') {
			want[n++] = '#';
			if (ok && (*text < '0' || *text > '9'))
				ok = false;
			while (ok && ((*text >= '0' && *text <= '9') || *text == '.'))
				text++;
			continue;
		} else {
			want[n++] = *f;
			if (ok && *text++ != *f)
				ok = false;
			continue;
		}
		for (; *put && n < size - 1; put++) {
			want[n++] = *put;
			if (ok && *text++ != *put)
				ok = false;
		}
	}
	want[n] = '\0';
	return ok && (*text == '\n');
}

FIXTURE(misuse) {};

FIXTURE_VARIANT(misuse)
{
	enum mode mode;
	const char *backend;	/* NULL: the default (auto) */
};

FIXTURE_VARIANT_ADD(misuse, default) { .mode = DEFAULT };
FIXTURE_VARIANT_ADD(misuse, secure_guard) { .mode = SECURE, .backend = "guard" };
FIXTURE_VARIANT_ADD(misuse, secure_mprotect) { .mode = SECURE, .backend = "mprotect" };
FIXTURE_VARIANT_ADD(misuse, secure_kmod) { .mode = SECURE, .backend = "kmod" };
FIXTURE_VARIANT_ADD(misuse, sampled_guard) { .mode = SAMPLED, .backend = "guard" };
FIXTURE_VARIANT_ADD(misuse, sampled_mprotect) { .mode = SAMPLED, .backend = "mprotect" };
FIXTURE_VARIANT_ADD(misuse, sampled_kmod) { .mode = SAMPLED, .backend = "kmod" };

FIXTURE_SETUP(misuse)
{
	if (variant->backend && !fault_backend_select(variant->backend)) {
		if (!strcmp(variant->backend, "kmod"))
			SKIP(return, "kmod backend unavailable: needs /dev/mheap with fault commands");
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	}
}

FIXTURE_TEARDOWN(misuse) {}

static const struct row *row_of(const char *misuse)
{
	for (unsigned i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!strcmp(table[i].misuse, misuse))
			return &table[i];
	return NULL;
}

/* Run the misuse in the variant's mode and check it against its row. */
static void check_misuse(struct __test_metadata *_metadata, const FIXTURE_VARIANT(misuse) *variant,
			 const char *misuse)
{
	static const char *const modes[MODES][4] = {
		[DEFAULT] = { NULL },
		[SECURE] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=0",
			     "MHEAP_SECURE_MIDDLE_SAMPLE=0", NULL },
		[SAMPLED] = { "MHEAP_SECURE=1", "MHEAP_SECURE_SAMPLE=1",
			      "MHEAP_SECURE_MIDDLE_SAMPLE=1", NULL },
	};
	const struct row *row = row_of(misuse);
	const char *env[8] = { NULL };
	char backend_env[64], want[512];
	const struct expect *e;
	const char *backend;
	struct run r;
	unsigned n = 0;

	ASSERT_NE(NULL, row) TH_LOG("%s: not in the table", misuse);
	RETURN_IF_SETUP_SKIPPED();
	e = &row->in[variant->mode];
	for (const char *const *m = modes[variant->mode]; *m; m++)
		env[n++] = *m;
	backend = variant->backend ? variant->backend : fault_backend()->name;
	snprintf(backend_env, sizeof(backend_env), "MHEAP_BACKEND=%s", backend);
	env[n++] = backend_env;
	/* Blocks between 32 KiB and 128 KiB middle ones: their pages come
	 * back dirty, and must not be taken for clean slots. */
	if (!strcmp(misuse, "no_misuse"))
		env[n++] = "MHEAP_SECURE_LARGE=128K";
	run_misuse(misuse, env, &r);

	switch (e->end) {
	case SURVIVES:
		EXPECT_TRUE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0)
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		EXPECT_STREQ("", r.err);
		return;
	case REUSED:
		EXPECT_TRUE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 3)
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		return;
	case CRASHES:
		/* A sanitizer's runtime takes the SIGSEGV and reports it. */
		if (UNDER_SANITIZER) {
			EXPECT_FALSE(WIFEXITED(r.child.status) && WEXITSTATUS(r.child.status) == 0);
			EXPECT_EQ(NULL, strstr(r.err, "mheap:")) TH_LOG("%s", r.err);
			return;
		}
		EXPECT_TRUE(died_of(&r.child, SIGSEGV))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		EXPECT_STREQ("", r.err);
		return;
	case ABORTS:
		EXPECT_TRUE(died_of(&r.child, SIGABRT))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		break;
	case FAULTS:
		EXPECT_TRUE(died_of(&r.child, SIGSEGV))
			TH_LOG("%s: status %#x, stderr: %s", misuse, r.child.status, r.err);
		break;
	}
	EXPECT_TRUE(line_matches(e->line, &r, fault_block_backend()->name, r.err, want,
				 sizeof(want)))
		TH_LOG("%s: want \"%s\", got \"%s\"", misuse, want, r.err);
	/* A guarded block's report goes on with the stacks that allocated
	 * it and, once freed, freed it. */
	if (e->end == FAULTS && strstr(e->line, "-byte block [")) {
		EXPECT_NE(NULL, strstr(r.err, "\nmheap: allocated by:\n")) TH_LOG("%s", r.err);
		if (strstr(e->line, "use-after-free"))
			EXPECT_NE(NULL, strstr(r.err, "\nmheap: freed by:\n")) TH_LOG("%s", r.err);
	}
}

#define MISUSE_TEST(name) TEST_F(misuse, name) { check_misuse(_metadata, variant, #name); }

MISUSE_TEST(small_read_after_free)
MISUSE_TEST(small_write_after_free)
MISUSE_TEST(small_write_after_free_near_end)
MISUSE_TEST(small_write_after_free_middle_calloc)
MISUSE_TEST(large_read_after_free)
MISUSE_TEST(large_write_after_free)
MISUSE_TEST(large_read_after_free_pages_reused)
MISUSE_TEST(small_overflow_1)
MISUSE_TEST(small_overflow_32)
MISUSE_TEST(small_overflow_after_realloc_grow)
MISUSE_TEST(small_overflow_after_realloc_shrink)
MISUSE_TEST(middle_read_after_free)
MISUSE_TEST(middle_write_after_free)
MISUSE_TEST(middle_write_after_free_near_end)
MISUSE_TEST(middle_write_after_free_at_an_odd_end)
MISUSE_TEST(middle_overflow_1)
MISUSE_TEST(middle_overflow_trailer)
MISUSE_TEST(double_free_middle)
MISUSE_TEST(large_overflow)
MISUSE_TEST(zero_size_read)
MISUSE_TEST(zero_size_write)
MISUSE_TEST(immediate_reuse)
MISUSE_TEST(double_free)
MISUSE_TEST(double_free_large)
MISUSE_TEST(realloc_after_free)
MISUSE_TEST(realloc_after_free_middle)
MISUSE_TEST(realloc_after_free_large)
MISUSE_TEST(realloc_after_free_zero_size)
MISUSE_TEST(usable_size_after_free)
MISUSE_TEST(usable_size_after_free_middle)
MISUSE_TEST(usable_size_after_free_large)
MISUSE_TEST(free_sized_after_free)
MISUSE_TEST(free_sized_not_from_malloc)
MISUSE_TEST(small_overflow_then_realloc)
MISUSE_TEST(invalid_free)
MISUSE_TEST(no_misuse)
MISUSE_TEST(blocks_across_fork)

/* The harness's main, under another name: main comes first. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	const char *name = getenv("MISUSE");

	if (name) {
		for (unsigned i = 0; i < sizeof(misuses) / sizeof(misuses[0]); i++) {
			if (!strcmp(misuses[i].name, name)) {
				misuses[i].run();
				return 0;
			}
		}
		fprintf(stderr, "misuse_test: no misuse %s\n", name);
		return 2;
	}
	return harness_main(argc, argv);
}
