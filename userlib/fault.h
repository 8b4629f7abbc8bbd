/* SPDX-License-Identifier: MIT */
/*
 * Fault backends: how a freed arena chunk is made to fault on access and
 * later made usable again. One small interface, four implementations:
 *
 *   kmod      /dev/mheap (kmod/): chunks are mapped from the device, which
 *             can fault page ranges without splitting VMAs and keeps
 *             quarantine accounting in the kernel.
 *   guard     madvise(MADV_GUARD_INSTALL / MADV_GUARD_REMOVE), Linux 6.13+:
 *             no VMA split, the pages are freed by the install; ranges
 *             that own page tables (whole arena chunks) are protected
 *             as under mprotect, which frees the tables too.
 *   mprotect  mprotect(PROT_NONE) + madvise(MADV_DONTNEED): works on every
 *             kernel; each protected range can split a VMA, and
 *             vm.max_map_count bounds them.
 *   none      no faulting at all (benchmarks and comparisons).
 *
 * MHEAP_BACKEND=auto|kmod|guard|mprotect|none chooses; auto takes the first
 * of kmod, guard, mprotect that works. A backend named explicitly that does
 * not work is a fatal error at start-up, never a silent fallback.
 */
#ifndef MHEAP_FAULT_H
#define MHEAP_FAULT_H

#include "internal.h"

struct fault_range {
	void *base;
	size_t len;
	/* The range's pages were moved away (warm chunks, arena_warm.c): it is
	 * empty and already a VMA of its own, or two when only its huge tail
	 * moved. Release gets the same value fault got. */
	bool moved;
};

/* How a backend's chunks take transparent huge page advice
 * (arena_hugepages.c applies it). */
enum fault_thp {
	FAULT_THP_NONE,		/* chunks are never advised */
	/* Ordinary anonymous memory: any part of a chunk may be advised
	 * (MADV_HUGEPAGE / MADV_NOHUGEPAGE), and under THP "always" what
	 * nobody advised is huge too. */
	FAULT_THP_RANGES,
	/* A chunk is one mapping that cannot be split (kmod's device
	 * mappings): only the whole chunk is advised, what nobody advised is
	 * small, and a 2 MiB block already holding a page stays in small
	 * pages whatever the advice (the module's per-block rule). */
	FAULT_THP_MAPPING,
};

struct fault_backend {
	const char *name;
	/* 0 when usable on this system, else a negative errno. */
	int (*probe)(void);
	/* A chunk was taken from the page heap for arenas (kmod maps the
	 * device over it) / goes back to it. */
	int (*prepare)(void *base, size_t len);
	void (*unprepare)(void *base, size_t len);
	/* Make n ranges fault and drop their pages. Returns how many of the
	 * leading ranges were done; on a shortfall, *err says why (-ENOMEM:
	 * out of VMAs, -EDQUOT: over the device's quarantine limit), and the
	 * caller releases old quarantine and retries the rest. */
	unsigned (*fault)(const struct fault_range *r, unsigned n, int *err);
	/* Make ranges usable again; they read as zero afterwards. Returns
	 * how many of the leading ranges were done, as fault does; on a
	 * shortfall the rest still fault and *err says why (-ENOMEM: opening
	 * a range in the middle of a protected VMA needs a split, and the
	 * VMAs ran out: arena_quarantine.c then releases the range's whole
	 * island). */
	unsigned (*release)(const struct fault_range *r, unsigned n, int *err);
	/* Whether fault protects this range with mprotect (every range under
	 * mprotect; under guard the moved ones and those that own page
	 * tables; none under kmod and none): protected ranges side by side
	 * merge into one VMA, which opening one of them alone must split. */
	bool (*protects)(const struct fault_range *r);
	/* Whether faulting drops the memory (none keeps it resident). */
	bool faults;
	/* How chunks take huge page advice (enum fault_thp). */
	uint8_t thp;
	/* Whether a chunk's pages may be moved away with mremap(
	 * MREMAP_DONTUNMAP) before it is faulted: ordinary private anonymous
	 * memory (not kmod's device mappings, which refuse it). */
	bool remap;
};

MH_HIDDEN extern const struct fault_backend fault_backend_kmod;
MH_HIDDEN extern const struct fault_backend fault_backend_guard;
MH_HIDDEN extern const struct fault_backend fault_backend_mprotect;
MH_HIDDEN extern const struct fault_backend fault_backend_none;

/* The mprotect backend's fault and release, which guard uses for moved
 * ranges: PROT_NONE and the pages dropped; read/write again. */
MH_HIDDEN unsigned fault_protect(const struct fault_range *r, unsigned n, int *err);
MH_HIDDEN unsigned fault_unprotect(const struct fault_range *r, unsigned n, int *err);
/* For backends that protect every faulted range / none with mprotect. */
MH_HIDDEN bool fault_protects_all(const struct fault_range *r);
MH_HIDDEN bool fault_protects_none(const struct fault_range *r);
/* For backends whose chunks need nothing when taken from the heap. */
MH_HIDDEN int fault_prepare_nothing(void *base, size_t len);
MH_HIDDEN void fault_unprepare_nothing(void *base, size_t len);

/* The backend in use: chosen from MHEAP_BACKEND on first call. */
MH_HIDDEN const struct fault_backend *fault_backend(void);
/* The backend for the secure heap's guarded blocks (secure_large.c): the
 * one in use, but where that is kmod, guard or else mprotect. A child of
 * fork() does not inherit the module's memory (fault_kmod.c), and malloc's
 * blocks, unlike arenas, must be the child's too: private anonymous memory
 * is. */
MH_HIDDEN const struct fault_backend *fault_block_backend(void);
/* The kmod backend's fork handlers, which fault.c's call in the order of
 * the fault layer's locks (fault.c, "fork"). */
MH_HIDDEN void kmod_fork_prepare(void);
MH_HIDDEN void kmod_fork_parent(void);
MH_HIDDEN void kmod_fork_child(void);
/* Choose by name ("auto" included); for tests. Returns NULL (and leaves the
 * choice alone) when that backend does not work here. */
MH_HIDDEN const struct fault_backend *fault_backend_select(const char *name);

#endif
