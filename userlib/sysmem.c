// SPDX-License-Identifier: MIT
/*
 * Thin wrappers over mmap/madvise (see sysmem.h for the states). The heap
 * reserves whole 64 MiB heap arenas and maps them ready at once with
 * MAP_NORESERVE: untouched pages cost no memory, and the page heap tracks
 * which pages were released so it never has to ask the kernel.
 *
 * Transparent huge pages are used only where a caller asks for them, and
 * only arena chunks do (arena_hugepages.c says when and why). Whether
 * asking works is found out once, at run time: the kernel must have THP
 * at all (madvise MADV_HUGEPAGE on a scratch mapping does not fail with
 * EINVAL), the sysfs mode must not be "never", and the PMD size must be
 * readable. In mode "always" every range nobody advised is huge already;
 * callers who want a range in small pages must then say MADV_NOHUGEPAGE,
 * so that is reported too. Anything unexpected (no /sys, a refused
 * madvise) turns THP off: the heap then behaves exactly as without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sysmem.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t metadata_bytes;

/*
 * The metadata registry: every range sys_alloc maps (and the few the fault
 * backends map for themselves, sys_metadata_note), so that the quarantine
 * scan (scan.c) can leave the allocator's own memory out of its roots: span
 * and chunk structs hold the addresses of quarantined chunks by design, and
 * would keep every one of them. A sorted array of ranges, itself mapped
 * (and not in the registry: it holds addresses, never data), grown by
 * doubling; under meta_lock, a leaf lock taken after any other.
 */
static mh_lock_t meta_lock = MH_LOCK_INIT;
static struct sys_range *meta;
static size_t meta_n, meta_cap;

void sys_metadata_note(void *p, size_t size)
{
	uintptr_t b = (uintptr_t)p;
	size_t i;

	mh_lock(&meta_lock);
	if (meta_n == meta_cap) {
		size_t cap = meta_cap ? meta_cap * 2 : 512;
		struct sys_range *t = mmap(NULL, cap * sizeof(*t), PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (t == MAP_FAILED) {
			/* Left out: the scan sees this range as a root, which
			 * keeps chunks longer, never shorter. */
			mh_unlock(&meta_lock);
			return;
		}
		if (meta) {
			memcpy(t, meta, meta_n * sizeof(*t));
			munmap(meta, meta_cap * sizeof(*t));
		}
		meta = t;
		meta_cap = cap;
	}
	for (i = meta_n; i > 0 && meta[i - 1].base > b; i--)
		meta[i] = meta[i - 1];
	meta[i] = (struct sys_range){ b, b + size };
	meta_n++;
	mh_unlock(&meta_lock);
}

void sys_metadata_forget(void *p, size_t size)
{
	uintptr_t b = (uintptr_t)p;

	(void)size;
	mh_lock(&meta_lock);
	for (size_t i = 0; i < meta_n; i++) {
		if (meta[i].base != b)
			continue;
		memmove(&meta[i], &meta[i + 1], (meta_n - i - 1) * sizeof(*meta));
		meta_n--;
		break;
	}
	mh_unlock(&meta_lock);
}

size_t sys_metadata_lock(const struct sys_range **ranges)
{
	mh_lock(&meta_lock);
	*ranges = meta;
	return meta_n;
}

void sys_metadata_unlock(void)
{
	mh_unlock(&meta_lock);
}

void *sys_reserve_at(void *hint, size_t size)
{
	void *p = mmap(hint, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
		       -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (p != hint) {	/* kernels before 4.17 treat the flag as a hint */
		munmap(p, size);
		errno = EEXIST;
		return NULL;
	}
	return p;
}

void *sys_reserve_aligned(size_t size, size_t align)
{
	size_t len = size + align;
	char *p = mmap(NULL, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *a = (char *)ALIGN_UP((uintptr_t)p, align);
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + size < p + len)
		munmap(a + size, (size_t)(p + len - (a + size)));
	return a;
}

bool sys_map(void *p, size_t size)
{
	return mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
}

/*
 * The heap's mappings are MAP_NORESERVE, which the kernel's overcommit
 * policy does not count: without asking it, a malloc of 1 TiB on a
 * machine of 24 GiB went on to register 16,384 heap arenas and write a
 * span pointer per page (1 GiB), for minutes, where glibc's malloc, whose
 * mmap the policy counts, returns NULL at once. A mapping of the same size
 * that counts, made and unmapped, asks the policy the question glibc's
 * mmap does (heuristic: not more than RAM and swap; strict: the commit
 * limit; "always": yes). Two system calls, for a growth of the heap by
 * more than one arena only (arenamap_grow).
 */
bool sys_could_commit(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return false;
	munmap(p, size);
	return true;
}

bool sys_map_over(void *p, size_t size)
{
	return mmap(p, size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED;
}

void *sys_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	__atomic_add_fetch(&metadata_bytes, size, __ATOMIC_RELAXED);
	sys_metadata_note(p, size);
	return p;
}

void sys_release(void *p, size_t size)
{
	/* MADV_DONTNEED rather than MADV_FREE: RSS drops at once, and the
	 * pages read as zero afterwards, which calloc relies on. */
	madvise(p, size, MADV_DONTNEED);
}

bool sys_resident_at_least(const void *p, size_t size, size_t enough)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), found = 0;
	unsigned char vec[256];

	/* A window of pages at a time, stopping once enough are found. */
	for (size_t off = 0; off < size && found < enough; off += sizeof(vec) * page) {
		size_t len = size - off < sizeof(vec) * page ? size - off : sizeof(vec) * page;

		if (mincore((char *)p + off, len, vec))
			return false;
		for (size_t i = 0; i < (len + page - 1) / page; i++)
			found += (vec[i] & 1) * page;
	}
	return found >= enough;
}

void sys_free(void *p, size_t size)
{
	sys_metadata_forget(p, size);
	munmap(p, size);
}

/* ------------------------------------------------------------ THP */

#define THP_SYSFS "/sys/kernel/mm/transparent_hugepage/"

/* 0 not known yet, 1 off, 2 on (default small pages), 3 on (mode always). */
static int thp_state;
static size_t thp_size;

bool sys_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

static int thp_probe(size_t *size)
{
	char buf[128];
	size_t sz = 0;
	bool always;
	void *p;
	int err;

	/* "always [madvise] never": the bracketed one is in force. */
	if (!sys_read_file(THP_SYSFS "enabled", buf, sizeof(buf)) || strstr(buf, "[never]"))
		return 1;
	always = strstr(buf, "[always]") != NULL;
	if (!sys_read_file(THP_SYSFS "hpage_pmd_size", buf, sizeof(buf)))
		return 1;
	for (const char *c = buf; *c >= '0' && *c <= '9'; c++)
		sz = sz * 10 + (size_t)(*c - '0');
	if (!IS_POW2(sz) || sz < MH_PAGE_SIZE || sz > ((size_t)1 << 30))
		return 1;
	/* The flag on a scratch mapping: EINVAL without CONFIG_TRANSPARENT_HUGEPAGE. */
	p = mmap(NULL, sz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return 0;	/* out of memory or VMAs for now: ask again later */
	err = madvise(p, sz, MADV_HUGEPAGE);
	munmap(p, sz);
	if (err)
		return 1;
	*size = sz;
	return always ? 3 : 2;
}

static int thp(void)
{
	int st = LOAD_ACQUIRE(&thp_state);

	if (likely(st))
		return st;
	/* Two first callers may both probe; they find the same answer. The
	 * size is published before the state that makes it valid. */
	size_t sz = 0;

	st = thp_probe(&sz);
	if (!st)
		return 1;
	STORE_RELAXED(&thp_size, sz);
	STORE_RELEASE(&thp_state, st);
	return st;
}

size_t sys_thp_size(void)
{
	return thp() > 1 ? LOAD_RELAXED(&thp_size) : 0;
}

bool sys_thp_default(void)
{
	return thp() == 3;
}

bool sys_thp_advise(void *p, size_t len, bool huge)
{
	if (thp() < 2)
		return false;
	if (madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0)
		return true;
	/* EINVAL cannot come from a range we own unless the kernel does not
	 * know the advice after all: stop asking. ENOMEM (out of VMAs) or
	 * EAGAIN are passing. */
	if (errno == EINVAL)
		STORE_RELEASE(&thp_state, 1);
	return false;
}

uint64_t sys_metadata_bytes(void)
{
	return __atomic_load_n(&metadata_bytes, __ATOMIC_RELAXED);
}
