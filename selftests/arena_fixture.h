/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fixture of the user-arena tests (arena_*_test.c): fixture `arena`,
 * run once per fault backend that works on this machine (variants
 * mprotect, guard, kmod, none), with the FIFO quarantine
 * (MHEAP_QUARANTINE_SCAN=0): these tests keep stale pointers on their
 * stacks on purpose; the scan's policy is quarantine_scan_test.c's. And
 * the helpers more than one of those files uses: filling an arena, pages
 * resident, a child that must exit 0 or die with the
 * use-after-free report, the chunk of an address, warm chunks.
 */
#ifndef MHEAP_ARENA_FIXTURE_H
#define MHEAP_ARENA_FIXTURE_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "sysmem.h"

FIXTURE(arena)
{
	struct arena_config cfg;
};

FIXTURE_VARIANT(arena)
{
	const char *backend;
};

FIXTURE_VARIANT_ADD(arena, mprotect) { .backend = "mprotect" };
FIXTURE_VARIANT_ADD(arena, guard) { .backend = "guard" };
FIXTURE_VARIANT_ADD(arena, kmod) { .backend = "kmod" };
FIXTURE_VARIANT_ADD(arena, none) { .backend = "none" };

FIXTURE_SETUP(arena)
{
	if (!fault_backend_select(variant->backend)) {
		if (!strcmp(variant->backend, "kmod"))
			SKIP(return, "kmod backend unavailable: needs /dev/mheap with fault commands");
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	}
	arena_config_get(&self->cfg);
	self->cfg.scan = false;
	arena_configure(&self->cfg);
}

FIXTURE_TEARDOWN(arena)
{
}

static inline bool faults(const FIXTURE_VARIANT(arena) *variant)
{
	return strcmp(variant->backend, "none") != 0;
}

/* Allocate `bytes` of arena a in 64 KiB pieces, each filled with `fill`. */
static inline void fill_arena(mh_arena *a, size_t bytes, int fill)
{
	for (size_t n = 0; n < bytes; n += 65536)
		memset(mh_arena_alloc(a, 65536, 0), fill, 65536);
}

/* Pages of [lo, hi) resident, by mincore (both page aligned). */
static inline size_t resident_pages(uintptr_t lo, uintptr_t hi)
{
	unsigned char vec[4096];
	size_t n = 0;

	for (; lo < hi; lo += sizeof(vec) * 4096) {
		size_t len = hi - lo < sizeof(vec) * 4096 ? hi - lo : sizeof(vec) * 4096;

		if (mincore((void *)lo, len, vec))
			return SIZE_MAX;
		for (size_t i = 0; i < len / 4096; i++)
			n += vec[i] & 1;
	}
	return n;
}

/* Run fn(arg) in a child, which must exit with status 0. */
static inline void expect_child_ok(struct __test_metadata *_metadata, void (*fn)(void *), void *arg)
{
	struct child_result r;

	run_child(fn, arg, &r);
	ASSERT_TRUE(WIFEXITED(r.status)) TH_LOG("status %#x: %s", r.status, r.err);
	EXPECT_EQ(0, WEXITSTATUS(r.status)) TH_LOG("%s", r.err);
}
static char *stale;
static bool stale_write;

static inline void touch_stale(void *arg)
{
	(void)arg;
	if (stale_write)
		*stale = 1;
	else
		*(volatile char *)stale;
}

/* Touch stale in a child; it must die of SIGSEGV with the report. */
static inline void expect_uaf(struct __test_metadata *_metadata, char *p, bool write)
{
	struct child_result r;
	char want[64];

	stale = p;
	stale_write = write;
	run_child(touch_stale, NULL, &r);
	ASSERT_TRUE(died_of(&r, SIGSEGV)) TH_LOG("child status %#x, stderr: %s", r.status, r.err);
	snprintf(want, sizeof(want), "mheap: use-after-free: %s %#lx in freed arena #",
		 write ? "write to" : "read of", (unsigned long)(uintptr_t)p);
	EXPECT_NE(NULL, strstr(r.err, want)) TH_LOG("want \"%s\", got \"%s\"", want, r.err);
	EXPECT_NE(NULL, strstr(r.err, " ms ago ("));
}
/* The chunk holding p, which must be arena memory. */
static inline struct arena_chunk *chunk_at(const void *p)
{
	return span_of((uintptr_t)p)->chunk_data;
}
/* Huge page size when this backend's chunks take huge pages, else 0. */
static inline size_t arena_thp(const FIXTURE_VARIANT(arena) *variant)
{
	(void)variant;
	return sys_thp_size();
}
static inline uint64_t warm_chunks(void)
{
	struct mh_stats st = MH_STATS_INIT;

	mh_stats_read(&st);
	return st.arena_chunks_warm;
}

#endif /* MHEAP_ARENA_FIXTURE_H */
