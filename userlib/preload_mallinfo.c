// SPDX-License-Identifier: MIT
/*
 * glibc's <malloc.h> introspection and tuning calls, for programs that make
 * them under LD_PRELOAD=libmheap.so: mallinfo2, mallinfo, malloc_stats,
 * malloc_info, malloc_trim and mallopt. Their return values are glibc's
 * (selftests/preload_wrappers_test.c compares them); the numbers are
 * mheap's, from mh_stats_read, put into glibc's fields as below
 * (selftests/preload_contract_test.c). In the shared object only, as
 * preload.c.
 *
 * glibc's arena is the heap of small chunks; blocks above the mmap
 * threshold are mapped on their own and counted apart (hblks, hblkhd).
 * mheap has one page heap for both; its large objects (above 32 KiB, a
 * span each) stand for glibc's mmapped blocks:
 *
 *   arena     heap_sys: every byte the page heap holds, in use or free
 *   ordblks   0: the page heap counts free pages, not free runs
 *   smblks    0: no fastbins
 *   hblks     large objects live now
 *   hblkhd    their bytes (whole pages), also part of uordblks and arena
 *   usmblks   0, as glibc (no longer maintained there)
 *   fsmblks   0: no fastbins
 *   uordblks  heap_alloc: bytes of live objects, small (their class size)
 *             and large (their pages)
 *   fordblks  arena - uordblks: free pages and free slots in small spans,
 *             so that, as in glibc, uordblks + fordblks = arena
 *   keepcost  heap_idle - heap_released: free pages still resident, what
 *             malloc_trim would give back now
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))

/* glibc's largest M_MXFAST on 64-bit (80 * sizeof(size_t) / 4). */
#define GLIBC_MAX_FAST_SIZE 160

/* The heap in glibc's terms (mapping above), and what else malloc_stats
 * and malloc_info print. */
struct glibc_view {
	struct mallinfo2 mi;
	size_t idle;		/* free pages, resident or not */
	size_t mapped;		/* heap and metadata: all the library maps */
	size_t heap_arenas;	/* 64 MiB reservations, never unmapped */
	size_t scavenged;	/* bytes released to the OS, cumulative */
};

/* The only read of the statistics here. */
static void glibc_view(struct glibc_view *v)
{
	struct mh_stats st = MH_STATS_INIT;
	uint64_t small = 0;

	mh_stats_read(&st);
	for (unsigned cls = 1; cls < MH_NUM_SIZE_CLASSES; cls++) {
		const struct mh_size_class_stats *cs = &st.by_class[cls];

		if (cs->mallocs > cs->frees)
			small += (cs->mallocs - cs->frees) * cs->size;
	}
	*v = (struct glibc_view){
		.mi = {
			.arena = st.heap_sys,
			.hblks = st.by_class[0].mallocs > st.by_class[0].frees ?
				 st.by_class[0].mallocs - st.by_class[0].frees : 0,
			.hblkhd = st.heap_alloc - small,
			.uordblks = st.heap_alloc,
			.fordblks = st.heap_sys - st.heap_alloc,
			.keepcost = st.heap_idle - st.heap_released,
		},
		.idle = st.heap_idle,
		.mapped = st.heap_sys + st.metadata_sys,
		.heap_arenas = st.heap_arenas,
		.scavenged = st.scavenged_bytes,
	};
}

EXPORT struct mallinfo2 mallinfo2(void)
{
	struct glibc_view v;

	glibc_view(&v);
	return v.mi;
}

/* The same truncated to int, as glibc's (deprecated there for that). */
EXPORT struct mallinfo mallinfo(void)
{
	struct mallinfo2 m = mallinfo2();

	return (struct mallinfo){
		.arena = (int)m.arena, .ordblks = (int)m.ordblks, .smblks = (int)m.smblks,
		.hblks = (int)m.hblks, .hblkhd = (int)m.hblkhd, .usmblks = (int)m.usmblks,
		.fsmblks = (int)m.fsmblks, .uordblks = (int)m.uordblks,
		.fordblks = (int)m.fordblks, .keepcost = (int)m.keepcost,
	};
}

/*
 * On stderr, in glibc's layout: one arena, the heap; the total adds the
 * allocator's metadata mappings. glibc's "max mmap regions/bytes" are the
 * peak count and bytes of its mmapped blocks; mheap's mappings are its
 * 64 MiB heap arenas, which are never unmapped, so now is their peak.
 */
EXPORT void malloc_stats(void)
{
	struct glibc_view v;

	glibc_view(&v);
	mh_print(STDERR_FILENO,
		 "Arena 0:\n"
		 "system bytes     = %10zu\n"
		 "in use bytes     = %10zu\n"
		 "Total (incl. mmap):\n"
		 "system bytes     = %10zu\n"
		 "in use bytes     = %10zu\n"
		 "max mmap regions = %10zu\n"
		 "max mmap bytes   = %10zu\n",
		 v.mi.arena, v.mi.uordblks, v.mapped, v.mi.uordblks,
		 v.heap_arenas, v.heap_arenas * MH_ARENA_SIZE);
}

/*
 * XML in glibc's shape, <malloc version="1"> with one <heap nr="0">; the
 * counts a program or a tool reads from it:
 *   <sizes>                 empty: glibc lists its free chunks by size
 *                           there, and mheap keeps no such list
 *   <total type="fast">     0: no fastbins
 *   <total type="rest">     the free pages: count in pages, size in bytes
 *   <total type="mmap">     the large objects (hblks, hblkhd)
 *   <system type="current"> and type="max": arena (the page heap never
 *                           shrinks its address space, so it is its max)
 *   <aspace type="total">   arena; type="mprotect": arena less the pages
 *                           released to the OS (keepcost's complement)
 * Only options 0 is defined; anything else is EINVAL, returned, as glibc.
 */
/* The totals malloc_info prints for the heap and again for the process. */
static void info_totals(FILE *fp, const struct glibc_view *v, bool process)
{
	size_t released = v->idle - v->mi.keepcost;

	fputs("<total type=\"fast\" count=\"0\" size=\"0\"/>\n", fp);
	fprintf(fp, "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n",
		v->idle / MH_PAGE_SIZE, v->idle);
	if (process)
		fprintf(fp, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n",
			v->mi.hblks, v->mi.hblkhd);
	fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n"
		"<system type=\"max\" size=\"%zu\"/>\n"
		"<aspace type=\"total\" size=\"%zu\"/>\n"
		"<aspace type=\"mprotect\" size=\"%zu\"/>\n",
		v->mi.arena, v->mi.arena, v->mi.arena, v->mi.arena - released);
}

EXPORT int malloc_info(int options, FILE *fp)
{
	struct glibc_view v;

	if (options != 0)
		return EINVAL;
	glibc_view(&v);
	fputs("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n", fp);
	info_totals(fp, &v, false);
	fputs("</heap>\n", fp);
	info_totals(fp, &v, true);
	fputs("</malloc>\n", fp);
	return 0;
}

/*
 * Release every free page to the OS now (mh_scavenge). pad is glibc's
 * amount to keep at the top of its heap: mheap keeps none. Returns 1 if
 * pages were released, else 0, as glibc.
 */
EXPORT int malloc_trim(size_t pad)
{
	struct glibc_view before, after;

	(void)pad;
	glibc_view(&before);
	mh_scavenge();
	glibc_view(&after);
	return after.scavenged > before.scavenged;
}

/*
 * Every parameter glibc defines, and any other, is accepted and ignored,
 * with glibc's return value: 1, but 0 for an M_MXFAST outside glibc's
 * range. None has a meaning in mheap: M_MXFAST (no fastbins),
 * M_TRIM_THRESHOLD and M_TOP_PAD (the scavenger's reserve is
 * MHEAP_SCAVENGE_RESERVE, README.md), M_MMAP_THRESHOLD and M_MMAP_MAX
 * (objects above 32 KiB always get their own span), M_CHECK_ACTION (a bad
 * free always aborts), M_PERTURB (no fill bytes), M_ARENA_TEST and
 * M_ARENA_MAX (one heap, with a cache per thread), and the SVID ones glibc
 * ignores too (M_NLBLKS, M_GRAIN, M_KEEP).
 */
EXPORT int mallopt(int param, int value)
{
	if (param == M_MXFAST)
		return value >= 0 && value <= GLIBC_MAX_FAST_SIZE;
	return 1;
}
