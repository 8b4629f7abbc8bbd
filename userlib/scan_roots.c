// SPDX-License-Identifier: MIT
/*
 * The roots of the quarantine scan (scan.c) and how each is read: every
 * word a C program can hold a pointer in goes through scan_words().
 *
 * Roots, and how each is read:
 *  - threads: every task of /proc/self/task, those that never called the
 *    allocator too, is stopped (scan_stop.c); its registers are then in the
 *    signal frame on its stack (general registers and the FP/SIMD state the
 *    kernel saves), and its stack is read from the stop handler's frame (or
 *    the interrupted stack pointer minus the 128-byte red zone, when the
 *    handler ran on an alternate stack) up, which takes in glibc's static
 *    TLS and struct pthread at the top of a thread stack: the part below,
 *    down to the stack's low end, is left out only where the thread's
 *    stack bounds are known exactly (scan_stacks.c; dead_stacks_find),
 *    and everything else in the mapping is read (data below a stack in
 *    .bss or in a buffer, a mapping merged with the stack). The scanning
 *    thread reads its own callee-saved registers, spilled, and its stack
 *    from the frame of scan_for_pointers' caller: the scan's own frames
 *    hold the targets and are left out.
 *  - loaded objects and every other writable mapping: /proc/self/maps, read
 *    with read(2) into mapped memory. Every private or shared mapping that
 *    is readable and writable is a root (.data and .bss of every object,
 *    glibc's heap, mmaped buffers, shared memory, dead thread stacks glibc
 *    keeps), except: the heap's own address space (read below), the
 *    allocator's metadata (sysmem.h's registry: span and chunk structs hold
 *    target addresses by design), the scan's scratch and its targets, and
 *    mappings that are not plain memory: [vvar], [vsyscall], [uprobes],
 *    anon_inode: mappings (io_uring rings, perf buffers, DMA buffers) and
 *    device files under /dev/ (reading some has side effects; /dev/zero and
 *    /dev/shm/ are memory and are read). dl_iterate_phdr is not used: it
 *    takes the loader's lock, which a stopped thread may hold (in dlopen,
 *    in the unwinder), and /proc/self/maps names the same segments.
 *  - the heap: every in-use span through the arena map, with the heap lock
 *    held. Small spans: the allocated objects only (what mspan.h defines as
 *    allocated, exact with the world stopped). Free slots are not roots:
 *    their data is dead, a freed object is not a place the program may
 *    keep a pointer, and reading them would keep chunks for as long as
 *    stale data sits in recycled memory. Large spans: the whole span.
 *    Arena chunks: what chunk_roots says (arena_scan.c: live chunks whole;
 *    freed, reused, warm and ready chunks hold dead data or zeros).
 *
 * Never faulting. Memory the program mapped may hold guard pages
 * (MADV_GUARD_INSTALL, invisible in /proc/self/maps), be a truncated file
 * (SIGBUS) or be PROT_NONE (left out by its permissions), and a live chunk
 * may be faulting already (a free faults it before it changes state). So
 * such memory is read with process_vm_readv(2) on our own pid, one iovec
 * per page: a page that cannot be read ends the transfer there, the scan
 * skips it and goes on. Only the heap's small and large spans, which are
 * the allocator's own and always readable, are read in place. Pages that
 * are not resident (mincore) are not read: a page never touched holds
 * nothing, and reading it would map it (or, for sanitizer shadows and
 * sparse reservations, take hours). Swapped-out pages are not resident
 * either, so when the process has swap in use (VmSwap) the filter is off
 * for anonymous memory and everything is read.
 *
 * Units. With every thread stopped, the roots are cut into units of at
 * most UNIT_BYTES (4 MiB): each heap arena in 16 pieces of its pages, then
 * each mapping's part to read (less the exclusions and the dead parts of
 * stacks) in pieces. The readers (scan_helpers.c) take units in turn
 * through one atomic cursor, so a reader that got a dense unit takes fewer;
 * a unit of the heap reads the small spans that start in it, whole, and the
 * part inside it of each large or chunk span, so every page is read once
 * however the units are shared out. Once every target is found, every
 * reader stops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arenamap.h"
#include "mheap_impl.h"
#include "mspan.h"
#include "scan_impl.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZER_SHADOW_MIN ((uintptr_t)1 << 40)
#endif
/*
 * ThreadSanitizer reserves its shadow and meta shadow as ranges of several
 * TiB each, then splits them into pieces (mprotect, madvise, the read-only
 * shadow file it maps over parts of them), some hundreds of GiB yet under
 * SANITIZER_SHADOW_MIN: asking mincore about every page of them took most
 * of a minute per scan. The pieces of a reservation stay side by side, so
 * under TSan a whole run of readable mappings that follow each other with
 * no gap is left out when one of them is readable, writable and at least
 * SANITIZER_SHADOW_MIN (shadow_runs_find): the shadow is found from the
 * mappings, whatever the layout (GCC's libtsan and newer LLVM's differ, and
 * so do architectures). The program's memory is never in such a run: the
 * runtime keeps it in other ranges, fenced from the shadow by PROT_NONE
 * reservations, which end a run. AddressSanitizer's shadow is left out by
 * the size of its pieces alone (one rule: SANITIZER_SHADOW_MIN).
 */
#if defined(__SANITIZE_THREAD__)
#define SHADOW_RUNS_MAX 8
#endif

/* ------------------------------------------------------------ exclusions */

static void range_sort(struct sys_range *r, size_t n)
{
	/* Shell sort: a few thousand ranges, mostly sorted already. */
	for (size_t gap = n / 2; gap; gap /= 2)
		for (size_t i = gap; i < n; i++) {
			struct sys_range x = r[i];
			size_t j = i;

			for (; j >= gap && r[j - gap].base > x.base; j -= gap)
				r[j] = r[j - gap];
			r[j] = x;
		}
}

void excl_add(struct scan *sc, uintptr_t base, uintptr_t limit)
{
	if (limit > base)
		sc->excl[sc->nexcl++] = (struct sys_range){ base, limit };
}

void excl_finish(struct scan *sc)
{
	size_t out = 0;

	range_sort(sc->excl, sc->nexcl);
	for (size_t i = 0; i < sc->nexcl; i++) {
		if (out && sc->excl[i].base <= sc->excl[out - 1].limit) {
			if (sc->excl[i].limit > sc->excl[out - 1].limit)
				sc->excl[out - 1].limit = sc->excl[i].limit;
			continue;
		}
		sc->excl[out++] = sc->excl[i];
	}
	sc->nexcl = out;
}

/* ------------------------------------------------------------ reading */

/* Whether the page at p may be read: resident, or anything with swap. */
static size_t resident_window(struct scan *sc, uintptr_t a, uintptr_t b)
{
	size_t pages = (b - a) / OS_PAGE;

	if (!sc->resident_only || mincore((void *)a, b - a, sc->vec))
		memset(sc->vec, 1, pages);
	return pages;
}

/*
 * Read [a, b) of memory that may not be readable, through process_vm_readv
 * one page per iovec (a page that fails ends a transfer: it is skipped and
 * the next transfer starts after it), resident pages only, and scan it.
 */
static void read_safe(struct scan *sc, uintptr_t a, uintptr_t b)
{
	uintptr_t pa = ALIGN_DOWN(a, OS_PAGE), pb = ALIGN_UP(b, OS_PAGE);

	for (uintptr_t w = pa; w < pb && !scan_all_found(sc) && !sc->read_failed;) {
		uintptr_t we = pb - w > MINCORE_WINDOW ? w + MINCORE_WINDOW : pb;
		size_t pages = resident_window(sc, w, we);

		for (size_t i = 0; i < pages && !scan_all_found(sc);) {
			size_t k = 0;

			if (!(sc->vec[i] & 1)) {
				i++;
				continue;
			}
			for (; i + k < pages && k < READ_PAGES && (sc->vec[i + k] & 1); k++) {
				sc->iov[k].iov_base = (void *)(w + (i + k) * OS_PAGE);
				sc->iov[k].iov_len = OS_PAGE;
			}
			struct iovec local = { sc->buf, k * OS_PAGE };
			ssize_t got = process_vm_readv(sc->pid, &local, 1, sc->iov, k, 0);

			/* EFAULT: the first page cannot be read, and is skipped.
			 * Anything else (ENOSYS, EPERM; ENOMEM: the kernel had
			 * no memory for its copy of the iovecs) says nothing of
			 * the pages, which may hold pointers: incomplete. */
			if (got < 0 && errno != EFAULT) {
				sc->read_failed = true;
				return;
			}
			size_t ok = got > 0 ? (size_t)got / OS_PAGE : 0;

			for (size_t m = 0; m < ok; m++) {
				uintptr_t s = w + (i + m) * OS_PAGE, e = s + OS_PAGE;
				uintptr_t from = s < a ? a : s, to = e > b ? b : e;
				uintptr_t copy = (uintptr_t)sc->buf + m * OS_PAGE;

				scan_words(sc, copy + (from - s), copy + (to - s));
			}
			i += ok < k ? ok + 1 : k;
		}
		w = we;
	}
}

/* Read [a, b), memory of the heap's own that is always readable, in place:
 * resident pages only. */
static void read_direct(struct scan *sc, uintptr_t a, uintptr_t b)
{
	uintptr_t pa = ALIGN_DOWN(a, OS_PAGE), pb = ALIGN_UP(b, OS_PAGE);

	for (uintptr_t w = pa; w < pb && !scan_all_found(sc);) {
		uintptr_t we = pb - w > MINCORE_WINDOW ? w + MINCORE_WINDOW : pb;
		size_t pages = resident_window(sc, w, we);

		for (size_t i = 0; i < pages; i++) {
			uintptr_t s = w + i * OS_PAGE, e = s + OS_PAGE;

			if (sc->vec[i] & 1)
				scan_words(sc, s < a ? a : s, e > b ? b : e);
		}
		w = we;
	}
}

/* ------------------------------------------------------------ roots */

/* The allocated objects of a small span (mspan.h's definition). */
static void scan_small_span(struct scan *sc, const struct mspan *s)
{
	uint32_t n = s->nelems, size = s->elemsize;

	/* A span being set up by a stopped thread may not be complete. */
	if (!size || !n || n > MH_MAX_OBJS_PER_SPAN ||
	    (uint64_t)n * size > (uint64_t)s->npages << MH_PAGE_SHIFT)
		return;
	for (uint32_t w = 0; w < mspan_bitmap_words(n) && !scan_all_found(sc); w++) {
		uint64_t live = LOAD_RELAXED(&s->bits[w].alloc);

		live &= ~(LOAD_RELAXED(&s->bits[w].local) | LOAD_RELAXED(&s->bits[w].remote));
		if (n < (w + 1) * 64)
			live &= ((uint64_t)1 << (n - w * 64)) - 1;
		/* Runs of neighbouring live objects are read in one stream. */
		while (live) {
			unsigned first = (unsigned)__builtin_ctzll(live);
			uint64_t rest = ~(live >> first);
			unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - first;
			uintptr_t o = s->base + (uintptr_t)(w * 64 + first) * size;

			scan_words(sc, o, o + (uintptr_t)len * size);
			live &= len + first >= 64 ? 0 : ~(uint64_t)0 << (first + len);
		}
	}
}

/*
 * The in-use spans of a heap arena's pages [a, b) (a unit). A small span
 * is read by the unit holding its first page; a large or chunk span is read
 * in the part of it inside the unit, so a span longer than a unit (or
 * running into the next arena) is shared out among units, each page read
 * once.
 */
static void scan_heap_unit(struct scan *sc, const struct heap_arena *ha, uintptr_t a, uintptr_t b)
{
	uintptr_t i = (a - ha->base) >> MH_PAGE_SHIFT, end = (b - ha->base) >> MH_PAGE_SHIFT;

	while (i < end && !scan_all_found(sc)) {
		const struct mspan *s = LOAD_RELAXED(&ha->spans[i]);
		uintptr_t p = ha->base + (i << MH_PAGE_SHIFT), limit, to;
		struct sys_range r;

		/* A span being set up by a stopped thread may not cover p. */
		if (!s || !s->npages || s->base > p || (limit = mspan_limit(s)) <= p) {
			i++;
			continue;
		}
		to = limit < b ? limit : b;
		switch (LOAD_RELAXED(&s->state)) {
		case MSPAN_SMALL:
			if (s->base == p)
				scan_small_span(sc, s);
			break;
		case MSPAN_LARGE:
			read_direct(sc, p, to);
			break;
		case MSPAN_CHUNK:
			if (sc->chunk_roots && sc->chunk_roots(s, &r) && r.base >= s->base &&
			    r.limit <= limit && r.base < r.limit) {
				uintptr_t from = r.base > p ? r.base : p, until = r.limit < to ? r.limit : to;

				if (from < until)
					read_safe(sc, from, until);
			}
			break;
		default:
			break;
		}
		i += (to - p) >> MH_PAGE_SHIFT;
	}
}

/* Read /proc/self/maps whole into sc->maps (mapped, grown by mremap). */
bool maps_read(struct scan *sc)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	sc->maps_len = 0;
	for (;;) {
		if (sc->maps_cap - sc->maps_len < 4096) {
			void *p = mremap(sc->maps, sc->maps_cap, sc->maps_cap * 2, MREMAP_MAYMOVE);

			if (p == MAP_FAILED) {
				close(fd);
				return false;
			}
			sc->maps = p;
			sc->maps_cap *= 2;
		}
		ssize_t n = read(fd, sc->maps + sc->maps_len, sc->maps_cap - sc->maps_len - 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		sc->maps_len += (size_t)n;
	}
	close(fd);
	sc->maps[sc->maps_len] = '\0';
	return true;
}

static uintptr_t parse_hex(const char **c)
{
	uintptr_t v = 0;

	for (;; (*c)++) {
		char ch = **c;

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uintptr_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uintptr_t)(ch - 'a' + 10);
		else
			return v;
	}
}

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* Whether a mapping named path is plain memory (see the top). */
static bool memory_mapping(const char *path)
{
	if (path[0] == '[')
		return starts(path, "[stack") || starts(path, "[heap") || starts(path, "[anon");
	if (starts(path, "anon_inode:"))
		return false;
	if (starts(path, "/dev/"))
		return starts(path, "/dev/zero") || starts(path, "/dev/shm/");
	return true;
}

/*
 * The units of [a, b), a mapping's part to read: what the exclusions leave
 * of it, cut into pieces of at most UNIT_BYTES; stored in out unless it is
 * NULL; how many.
 */
static size_t mapping_units(const struct scan *sc, uintptr_t a, uintptr_t b, struct scan_unit *out)
{
	size_t lo = 0, hi = sc->nexcl, n = 0;

	/* The first exclusion ending after a. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sc->excl[mid].limit <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; a < b; i++) {
		uintptr_t e = i < sc->nexcl && sc->excl[i].base < b ? sc->excl[i].base : b;

		for (; a < e; a = a + UNIT_BYTES < e ? a + UNIT_BYTES : e, n++)
			if (out)
				out[n] = (struct scan_unit){ a, a + UNIT_BYTES < e ? a + UNIT_BYTES : e, NULL };
		if (i >= sc->nexcl)
			break;
		if (sc->excl[i].limit > a)
			a = sc->excl[i].limit;
	}
	return n;
}

/* One line of /proc/self/maps. */
struct mapping {
	uintptr_t a, b;
	const char *perm, *path;	/* in the text; the path ends at '\n' */
};

/* Parse the line at *c into m and move *c to the next; false at the end. */
static bool mapping_next(const char **c, struct mapping *m)
{
	if (!**c)
		return false;
	m->a = parse_hex(c);
	(*c)++;	/* '-' */
	m->b = parse_hex(c);
	m->perm = ++(*c);
	/* offset, device, inode, then the path (maybe none). */
	for (int field = 0; field < 4 && **c && **c != '\n'; field++) {
		while (**c && **c != ' ' && **c != '\n')
			(*c)++;
		while (**c == ' ')
			(*c)++;
	}
	m->path = *c;
	while (**c && **c != '\n')
		(*c)++;
	if (**c)
		(*c)++;
	return true;
}

#ifdef SHADOW_RUNS_MAX
/* The runs of ThreadSanitizer's reservations (above), into runs: how many. */
static size_t shadow_runs_find(const char *maps, struct sys_range *runs)
{
	struct sys_range cur = { 0, 0 };
	bool big = false;
	size_t n = 0;
	struct mapping m;

	for (const char *c = maps;;) {
		bool more = mapping_next(&c, &m);

		if (!more || m.perm[0] != 'r' || m.a != cur.limit) {
			if (big && n < SHADOW_RUNS_MAX)
				runs[n++] = cur;
			if (!more)
				return n;
			cur.base = m.a;
			big = false;
		}
		cur.limit = m.b;
		if (m.perm[0] != 'r') {
			cur.limit = 0;	/* a run starts after it */
			continue;
		}
		big |= m.perm[1] == 'w' && m.b - m.a >= SANITIZER_SHADOW_MIN;
	}
}
#endif

/*
 * The dead part of each stopped thread's stack (scan_stacks.c): [lo, the
 * lowest of its stack pointers in [lo, hi)), where [lo, hi) is its stack
 * as its thread library reported it, or for the main thread with none
 * recorded the kernel's [stack] mapping. None for a thread whose bounds are
 * unknown, or none of whose stack pointers is on that stack (it runs on a
 * fiber's or a signal's alternate stack: what it left on its own is not
 * known dead). None either when another thread's stack pointer lies in
 * that part: stacks of live threads do not overlap, and where they seem
 * to, nothing is assumed. Sorted by base.
 */
void dead_stacks_find(struct scan *sc)
{
	uintptr_t stack_a = 0, stack_b = 0;
	struct mapping m;

	for (const char *c = sc->maps; mapping_next(&c, &m);)
		if (starts(m.path, "[stack]")) {
			stack_a = m.a;
			stack_b = m.b;
		}
	sc->ndead = 0;
	for (size_t i = 0; i < sc->nmarks; i++) {
		const struct stack_mark *k = &sc->marks[i];
		uintptr_t lo = k->lo, hi = k->hi, low = 0;
		bool overlap = false;

		if (hi <= lo && k->main) {
			lo = stack_a;
			hi = stack_b;
		}
		if (hi <= lo)
			continue;
		if (k->sp >= lo && k->sp < hi)
			low = k->sp;
		if (k->sp_alt >= lo && k->sp_alt < hi && (!low || k->sp_alt < low))
			low = k->sp_alt;
		if (low <= lo)
			continue;
		for (size_t j = 0; j < sc->nmarks && !overlap; j++) {
			const struct stack_mark *o = &sc->marks[j];

			overlap = j != i && ((o->sp >= lo && o->sp < low) ||
					     (o->sp_alt >= lo && o->sp_alt < low));
		}
		lo = ALIGN_UP(lo, sizeof(uintptr_t));
		low = ALIGN_DOWN(low, sizeof(uintptr_t));
		if (!overlap && lo < low)
			sc->dead[sc->ndead++] = (struct sys_range){ lo, low };
	}
	range_sort(sc->dead, sc->ndead);
}

/*
 * The units of [a, b), part of one mapping, but for the scanning thread's
 * own frames below its mark (marks[0], scan_for_pointers' frame): they
 * hold the targets' addresses (the filter's bounds, the lookup's words),
 * and where its stack is read whole (its bounds unknown, or it runs on a
 * fiber's stack: dead_stacks_find) they would count. They lie within SCAN_SCRUB_BYTES below
 * the mark, stack the scan itself has reached (scan_for_pointers scrubs
 * it first); what is below that is read.
 */
static size_t stack_units(const struct scan *sc, uintptr_t a, uintptr_t b, struct scan_unit *out)
{
	uintptr_t own = sc->nmarks ? sc->marks[0].sp : 0, low = own - SCAN_SCRUB_BYTES;
	size_t n = 0;

	if (!own || own <= a || own >= b)
		return mapping_units(sc, a, b, out);
	if (low > a && low < own)
		n = mapping_units(sc, a, low, out);
	return n + mapping_units(sc, own, b, out ? out + n : NULL);
}

/* The units of [a, b), a mapping, less the dead parts of stacks in it
 * (dead_stacks_find); stored in out unless it is NULL; how many. */
static size_t live_units(const struct scan *sc, uintptr_t a, uintptr_t b, struct scan_unit *out)
{
	size_t n = 0;

	for (size_t i = 0; i < sc->ndead && a < b; i++) {
		const struct sys_range *d = &sc->dead[i];

		if (d->limit <= a || d->base >= b)
			continue;
		if (d->base > a)
			n += stack_units(sc, a, d->base, out ? out + n : NULL);
		a = d->limit;
	}
	if (a < b)
		n += stack_units(sc, a, b, out ? out + n : NULL);
	return n;
}

/* The units of every readable, writable mapping that is memory, less the
 * dead parts of stacks; stored in out unless it is NULL; how many. */
static size_t mappings_units(const struct scan *sc, struct scan_unit *out)
{
	struct mapping m;
	size_t n = 0;
#ifdef SHADOW_RUNS_MAX
	struct sys_range runs[SHADOW_RUNS_MAX];
	size_t nruns = shadow_runs_find(sc->maps, runs);
#endif

	for (const char *c = sc->maps; mapping_next(&c, &m);) {
		uintptr_t a = m.a, b = m.b;
		bool shadow = false;

		if (m.perm[0] != 'r' || m.perm[1] != 'w' || !memory_mapping(m.path))
			continue;
#ifdef SANITIZER_SHADOW_MIN
		/* A sanitizer's shadow: no program data (see the top). */
		shadow = b - a >= SANITIZER_SHADOW_MIN;
#endif
#ifdef SHADOW_RUNS_MAX
		for (size_t i = 0; i < nruns; i++)
			shadow |= a >= runs[i].base && b <= runs[i].limit;
#endif
		if (shadow)
			continue;
		n += live_units(sc, a, b, out ? out + n : NULL);
	}
	return n;
}

/* ------------------------------------------------------------ units */

static size_t units_map_len(size_t n)
{
	return ALIGN_UP(n * sizeof(struct scan_unit) + sizeof(uint64_t), OS_PAGE);
}

bool scan_units_build(struct scan *sc)
{
	size_t nheap = 0, n;
	struct scan_unit *u;

	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		nheap += MH_ARENA_SIZE / UNIT_BYTES;
	n = nheap + mappings_units(sc, NULL);
	u = map_scratch(units_map_len(n));
	if (!u)
		return false;
	n = 0;
	for (struct heap_arena *ha = arenamap_first(); ha; ha = ha->next)
		for (uintptr_t a = ha->base; a < ha->base + MH_ARENA_SIZE; a += UNIT_BYTES)
			u[n++] = (struct scan_unit){ a, a + UNIT_BYTES, ha };
	n += mappings_units(sc, u + n);
	sc->units = u;
	sc->nunits = n;
	/* The cursor lives after the units, in the same mapping. */
	sc->next_unit = (size_t *)ALIGN_UP((uintptr_t)(u + n), sizeof(uint64_t));
	return true;
}

void scan_units_free(struct scan *sc)
{
	if (sc->units)
		munmap((void *)sc->units, units_map_len(sc->nunits));
	sc->units = NULL;
}

void scan_units_read(struct scan *sc)
{
	for (;;) {
		size_t i = __atomic_fetch_add(sc->next_unit, 1, __ATOMIC_RELAXED);

		if (i >= sc->nunits || scan_all_found(sc) || sc->read_failed)
			return;
		const struct scan_unit *u = &sc->units[i];

		if (u->ha)
			scan_heap_unit(sc, u->ha, u->a, u->b);
		else
			read_safe(sc, u->a, u->b);
	}
}

/* Swap in use (VmSwap of /proc/self/status above 0 kB). */
bool swap_in_use(void)
{
	char buf[4096];
	const char *p;

	if (!sys_read_file("/proc/self/status", buf, sizeof(buf)))
		return true;
	p = strstr(buf, "VmSwap:");
	if (!p)
		return false;	/* no swap accounting: no swap */
	for (p += 7; *p == ' ' || *p == '\t'; p++)
		;
	return *p != '0';
}
