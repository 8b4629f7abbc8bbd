// SPDX-License-Identifier: GPL-2.0
/*
 * Mappings of /dev/mheap: zero-fill memory whose ranges can be put in
 * quarantine (MHEAP_IOC_FAULT) and taken out again (MHEAP_IOC_RELEASE)
 * without ever splitting the VMA. This file has the mapping's life and its
 * page faults; the two commands are in mheap_range.c.
 *
 * Memory model. Every mmap() gets a struct mheap_map holding the mapping's
 * state by page offset: an xarray of the pages the module allocated, and a
 * bitmap of the quarantined pages. The page-fault handler looks a page up,
 * allocates it on first touch (zeroed, GFP_HIGHUSER | __GFP_ACCOUNT: charged
 * as kernel memory to the memory cgroup of the task that touches it) and
 * maps it with vm_insert_page() - or, for a quarantined page, records a
 * fault event and returns VM_FAULT_SIGSEGV, which user space receives as
 * SIGSEGV and the kernel's own user accesses as EFAULT. Quarantine lives in
 * the bitmap, not in the VMA, so a mapping stays one VMA however many
 * ranges are faulted.
 *
 * The pages are ordinary reference-counted pages in a VM_MIXEDMAP mapping:
 * each page-table entry holds a reference, and so does every get_user_pages()
 * pin (O_DIRECT, vmsplice, process_vm_readv, ptrace). FAULT zaps the page
 * table entries and drops the module's reference, so a page is freed by the
 * page allocator exactly when its last user lets go: the kernel can never
 * reach a freed page through this module, whatever pins are outstanding.
 * The alternatives were weighed: a VM_PFNMAP mapping (vmf_insert_pfn) refuses
 * get_user_pages() altogether, which breaks O_DIRECT and debuggers on arena
 * memory, and its uncounted entries would make any copied page table (fork
 * after MADV_DOFORK) a use-after-free; a shmem file per mapping would bring
 * page cache, swap and truncation machinery that quarantine does not need.
 * The pages are not __GFP_MOVABLE: they are not on the LRU and have no
 * migration callbacks, so in a movable pageblock they would only get in the
 * way of compaction.
 *
 * Huge pages. A used-up arena chunk is freed as fast as the kernel frees
 * anonymous memory in transparent huge pages only if it is mapped and freed
 * the same way, a PMD at a time: zapping 512 page-table entries and freeing
 * 512 pages costs many times more. So in a mapping advised MADV_HUGEPAGE,
 * where a block (the pages one PMD maps, 2 MiB on x86-64, at a 2 MiB-aligned
 * address: mmap() aligns the mappings of 2 MiB or more with
 * thp_get_unmapped_area()) is touched while it has no page and no
 * quarantine, the fault handler allocates one compound page of the block's
 * size (zeroed, accounted, without reclaim: if none is free right away,
 * small pages serve the block) and maps it with one PMD,
 * vmf_insert_pfn_pmd(). In the xarray it is one multi-index entry (order
 * HPAGE_PMD_ORDER, the head page) holding one page reference per page of the
 * block, so the reference counts add up as for small pages: a FAULT of the
 * whole block zaps one PMD, erases one entry and drops its 512 references
 * with one folio_put_refs(). Huge pages are asked for, not given by
 * default, as in the "madvise" mode of transparent huge pages: a 2 MiB page
 * for every block that a small arena touches would make a thousand small
 * arenas cost gigabytes (the library keeps small arenas in small pages, see
 * userlib/arena.c). MADV_NOHUGEPAGE undoes the advice for blocks touched
 * afterwards; PR_SET_THP_DISABLE overrides it.
 *
 * The fault handler installs the PMD itself, from ->fault: neither kernel
 * calls ->huge_fault for a VM_MIXEDMAP mapping (6.1 only ever for DAX), and
 * the core handles a fault where a huge PMD is present without us. Such a
 * PMD is a "special huge" one (vma_is_special_huge(): a file VMA with
 * VM_MIXEDMAP): it holds no page reference and no mapcount, which is why
 * the module's own references must, and do, outlive it; zap_huge_pmd()
 * clears it without touching the page, and splitting it (a zap or mprotect
 * of part of it) only clears it too, so the block faults again, page by
 * page. fork() does not copy it (6.1's copy_huge_pmd() skips huge PMDs of
 * file VMAs; 6.12's copies special ones, which the MADV_DOFORK handling
 * below keeps from the child as it does page-table entries).
 * get_user_pages() on it (follow_trans_huge_pmd() in 6.1, follow_huge_pmd()
 * in 6.12; gup-fast leaves 6.12's special PMDs to them) takes references on
 * the compound page, so a pin keeps the whole 2 MiB page, never less.
 *
 * A PMD and a page table are never installed for the same block at once:
 * the PMD only where the PMD slot is empty, vm_insert_page() only where it
 * is not a huge PMD (a page table left from earlier use of the block means
 * page by page again, a PMD installed meanwhile means retry), and a block
 * changes from one entry to many only under the map lock held for writing,
 * after which no PMD is installed for it any more. (One installed before
 * may stay, if the FAULT that split the block then failed with EDQUOT: it
 * maps pages that are all still live, and the zap that drops any of them
 * clears it.)
 *
 * Locking. mheap_map::lock is a rw_semaphore taken inside mmap_lock. Page
 * faults take it for reading, so they run in parallel and install pages
 * with xa_cmpxchg(); FAULT and RELEASE take it for writing, so a page fault
 * either completes before them (and FAULT zaps the entry it installed) or
 * starts after them (and sees the quarantine bit). FAULT and RELEASE hold
 * mmap_lock for reading, as MADV_DONTNEED does, to find the VMA and zap.
 * Page faults hold mmap_lock too, on 6.12 as on 6.1: from 6.7 the kernel
 * calls ->fault under the per-VMA lock alone only for VMAs whose
 * operations have ->map_pages (vmf_can_call_fault()), which these have
 * not, and retries the others under mmap_lock.
 *
 * VMA life: the mapping is VM_DONTEXPAND and VM_DONTCOPY (a child of fork()
 * does not inherit it), VM_DONTDUMP (a core dump would otherwise allocate
 * every untouched page and record every quarantined one as a stale access),
 * never executable, and cannot be split: may_split refuses partial munmap()
 * and mprotect(), and mremap() fails (VM_DONTEXPAND refuses growth, the
 * split check refuses shrinking, the mremap callback refuses a move). The
 * map is freed by the last vm_ops->close(), after the core has zapped the
 * page tables, so no page-table entry outlives it.
 *
 * fork() after MADV_DOFORK. MADV_DOFORK clears VM_DONTCOPY without asking
 * the driver, and then dup_mmap() copies the VMA into the child and calls
 * vm_ops->open() on the copy. The child's copy must not reach the parent's
 * pages: it is given no state (so every access there raises SIGBUS and
 * commands on it fail), and it must end up with no page-table entries. A
 * VM_MIXEDMAP mapping is one whose entries copy_page_range() always copies
 * (vma_needs_copy() in mm/memory.c, 6.1 and 6.12 alike: VM_PFNMAP or
 * VM_MIXEDMAP means copy), unless the copy has VM_WIPEONFORK. Where open()
 * runs relative to that copy is up to the kernel: the dup_mmap() of 6.1 and
 * of 6.12.95 calls open() first and copies afterwards, if the copy lacks
 * VM_WIPEONFORK; a dup_mmap() that copies first and calls open() afterwards
 * (the order has moved in stable kernels before) leaves open() too late to
 * keep entries out. So mheap_vm_open() does both: it sets VM_WIPEONFORK on
 * the copy, which stops a copy still to come, and zaps the copy's whole
 * range, which removes entries copied already (nothing, where the copy is
 * still to come). The child's mm is write-locked and not yet visible to
 * anyone while this happens, so nobody can use the copied entries in
 * between. Flags alone could not do it: VM_WIPEONFORK set on the parent's
 * VMA can be cleared with MADV_KEEPONFORK, and VM_IO (which makes
 * MADV_DOFORK fail) would also make get_user_pages() fail.
 */
#include <linux/bitmap.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pfn_t.h>
#include <linux/refcount.h>
#include <linux/rwsem.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/userfaultfd_k.h>
#include <linux/xarray.h>

#include "mheap_compat.h"
#include "mheap_internal.h"
#include "mheap_map.h"

#define MHEAP_GFP	(GFP_HIGHUSER | __GFP_ZERO | __GFP_ACCOUNT)

/*
 * A block (MHEAP_BLOCK_PAGES, the pages one PMD maps): its compound page is
 * allocated without reclaim or compaction (as transparent huge pages are by
 * default): when none is free, small pages serve the block at once.
 */
#define MHEAP_BLOCK_GFP		((MHEAP_GFP | __GFP_COMP | __GFP_NOWARN | \
				  __GFP_NOMEMALLOC) & ~__GFP_RECLAIM)

static void mheap_map_free(struct mheap_map *map)
{
	struct mheap_ctx *ctx = map->ctx;
	unsigned long idx, entries = 0, resident = 0;
	struct page *page;

	xa_for_each(&map->pages, idx, page) {
		/* A whole block's entry holds a reference per page. */
		unsigned long refs = 1;

		if (PageHead(page))
			refs <<= xa_get_order(&map->pages, idx);
		folio_put_refs(page_folio(page), refs);
		resident += refs;
		if (++entries % XA_CHECK_SCHED == 0)
			cond_resched();
	}
	xa_destroy(&map->pages);
	mheap_count(ctx, MHEAP_C_RESIDENT, -(s64)(resident << PAGE_SHIFT));
	mheap_quarantine_unreserve(ctx, (u64)map->nr_quarantined << PAGE_SHIFT);
	mheap_count(ctx, MHEAP_C_RANGES, -(s64)map->nr_ranges);
	mheap_count(ctx, MHEAP_C_MAPPED, -(s64)(map->npages << PAGE_SHIFT));
	mheap_count(ctx, MHEAP_C_MAPPINGS, -1);
	kvfree(map->quarantine);
	kfree(map);
}

/* ------------------------------------------------------------ vm_ops */

static void mheap_vm_open(struct vm_area_struct *vma)
{
	struct mheap_map *map = vma->vm_private_data;

	/* fork() write-locks the child's mm, mremap() the caller's. */
	mmap_assert_write_locked(vma->vm_mm);
	if (!map)
		return;
	if (vma->vm_mm != map->mm) {
		/*
		 * fork() of a mapping that MADV_DOFORK made inheritable: the
		 * child's copy gets no state and no page-table entries,
		 * whether dup_mmap() copies them before calling us or after
		 * (see "fork() after MADV_DOFORK" at the top of this file).
		 */
		vma->vm_private_data = NULL;
		mheap_vm_flags_set(vma, VM_WIPEONFORK);
		mheap_zap_range(vma, vma->vm_start, vma->vm_end - vma->vm_start);
		return;
	}
	/* The copy mremap() makes before mheap_vm_mremap() refuses it. */
	refcount_inc(&map->refs);
}

static void mheap_vm_close(struct vm_area_struct *vma)
{
	struct mheap_map *map = vma->vm_private_data;

	if (map && refcount_dec_and_test(&map->refs))
		mheap_map_free(map);
}

static int mheap_vm_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	return -EINVAL;
}

static int mheap_vm_mremap(struct vm_area_struct *new_vma)
{
	return -EINVAL;
}

/*
 * Whether the fault came through a page-table entry that is there but maps
 * nothing: a marker that userfaultfd's write protection leaves on a page
 * with no entry (from 6.7 its asynchronous mode protects any memory, these
 * mappings included, for any user). Protecting a block mapped with a PMD
 * drops the PMD and leaves a marker on each of its pages, so the page
 * behind a marker may hold the program's data. vm_insert_page() cannot
 * put a page over a marker (-EBUSY, which otherwise means a racing fault
 * mapped the page), and VM_FAULT_NOPAGE alone would send the access
 * straight back here, for ever: in the kernel (read() into the page) not
 * even SIGKILL would end it.
 */
static bool fault_through_marker(const struct vm_fault *vmf)
{
	return (vmf->flags & FAULT_FLAG_ORIG_PTE_VALID) &&
	       !pte_none(vmf->orig_pte);
}

struct marker_clear {
	struct mm_struct *mm;
	pte_t orig;
};

/* Under the page-table lock: the marker goes if it is still the entry. */
static int marker_clear_pte(pte_t *pte, unsigned long addr, void *data)
{
	struct marker_clear *mc = data;

	if (pte_same(ptep_get(pte), mc->orig))
		pte_clear(mc->mm, addr, pte);
	return 0;
}

/*
 * Take away the marker the fault came through, as the kernel itself does
 * with a marker left in a mapping no longer registered, so that the
 * access, tried again, maps the page. The page is then mapped without
 * write protection: the asynchronous mode counts it as written
 * (PAGEMAP_SCAN's PAGE_IS_WRITTEN), which for write tracking is the safe
 * side. A marker that is gone already (the protection lifted, a racing
 * fault's page in its place) is left alone.
 */
static vm_fault_t marker_clear(struct vm_fault *vmf)
{
	struct marker_clear mc = { vmf->vma->vm_mm, vmf->orig_pte };

	if (apply_to_page_range(mc.mm, vmf->address & PAGE_MASK, PAGE_SIZE,
				marker_clear_pte, &mc))
		return VM_FAULT_SIGBUS;
	return VM_FAULT_NOPAGE;
}

static u32 fault_event_flags(const struct vm_fault *vmf)
{
	u32 flags = 0;

	if (vmf->flags & FAULT_FLAG_WRITE)
		flags |= MHEAP_EVENT_WRITE;
	if (!(vmf->flags & FAULT_FLAG_USER))
		flags |= MHEAP_EVENT_KERNEL;
	if (vmf->flags & FAULT_FLAG_REMOTE)
		flags |= MHEAP_EVENT_REMOTE;
	return flags;
}

/*
 * Whether the block that starts at page offset first may get a compound
 * page: it lies wholly in the mapping at a PMD-aligned address, the mapping
 * asked for huge pages (MADV_HUGEPAGE) and its process did not refuse them,
 * and the block has no page and no quarantine.
 */
static bool block_may_be_huge(struct vm_area_struct *vma,
			      struct mheap_map *map, pgoff_t first)
{
	pgoff_t end = first + MHEAP_BLOCK_PAGES;
	unsigned long i = first;

	lockdep_assert_held(&map->lock);
	return IS_ALIGNED(vma->vm_start, PMD_SIZE) && end <= map->npages &&
	       (vma->vm_flags & VM_HUGEPAGE) &&
	       !test_bit(MMF_DISABLE_THP, &vma->vm_mm->flags) &&
	       find_next_bit(map->quarantine, end, first) >= end &&
	       !xa_find(&map->pages, &i, end - 1, XA_PRESENT);
}

/*
 * Allocate the compound page of the block that starts at first and store
 * it as one entry. Return it, or NULL where small pages must do: none is
 * free, or a racing fault put a page in the block first.
 */
static struct page *block_alloc(struct mheap_map *map, pgoff_t first)
{
	XA_STATE_ORDER(xas, &map->pages, first, MHEAP_BLOCK_ORDER);
	struct page *head, *old;

	lockdep_assert_held(&map->lock);
	head = alloc_pages(MHEAP_BLOCK_GFP, MHEAP_BLOCK_ORDER);
	if (!head)
		return NULL;
	/* One reference for each page of the block (see struct mheap_map). */
	folio_ref_add(page_folio(head), MHEAP_BLOCK_PAGES - 1);
	do {
		xas_lock(&xas);
		old = xas_find_conflict(&xas);
		if (!old)
			xas_store(&xas, head);
		xas_unlock(&xas);
	} while (xas_nomem(&xas, GFP_KERNEL));
	if (old || xas_error(&xas)) {
		folio_put_refs(page_folio(head), MHEAP_BLOCK_PAGES);
		return NULL;
	}
	mheap_count(map->ctx, MHEAP_C_RESIDENT,
		    MHEAP_BLOCK_PAGES << PAGE_SHIFT);
	return head;
}

/* Allocate the small page for page offset idx, or find a racing fault's. */
static struct page *page_alloc(struct mheap_map *map, pgoff_t idx)
{
	struct page *page, *old;

	lockdep_assert_held(&map->lock);
	page = alloc_page(MHEAP_GFP);
	if (!page)
		return NULL;
	old = xa_cmpxchg(&map->pages, idx, NULL, page, GFP_KERNEL);
	if (old) {
		put_page(page);
		return xa_is_err(old) ? NULL : old;
	}
	mheap_count(map->ctx, MHEAP_C_RESIDENT, PAGE_SIZE);
	return page;
}

/*
 * Map the resident page (or compound page) at vmf->pgoff: a whole block's
 * entry with a PMD where the PMD slot is empty, otherwise the page itself
 * with a page-table entry, unless a PMD was installed meanwhile, through
 * which the access is simply tried again.
 *
 * Never a PMD in a mapping registered for userfaultfd write protection
 * (6.7+, see fault_through_marker()), which also keeps marker_clear()'s
 * walk of the page tables from meeting one: protecting it fills empty PMD slots
 * with page tables of markers under mmap_lock held for reading only, so
 * one could appear between our look at the slot and vmf_insert_pfn_pmd(),
 * which WARNs when a write fault finds anything but its own PMD there.
 * The registration changes only under mmap_lock held for writing, which
 * a page fault excludes.
 */
static vm_fault_t map_page(struct vm_fault *vmf, struct mheap_map *map,
			   struct page *page)
{
	pmd_t pmd = READ_ONCE(*vmf->pmd);
	pgoff_t idx = vmf->pgoff;
	int err;

	lockdep_assert_held(&map->lock);
	if (pmd_trans_huge(pmd))
		return VM_FAULT_NOPAGE;
	if (PageHead(page)) {
		if (pmd_none(pmd) && !userfaultfd_wp(vmf->vma) &&
		    xa_get_order(&map->pages, idx) == MHEAP_BLOCK_ORDER)
			return vmf_insert_pfn_pmd(vmf, page_to_pfn_t(page),
						  vmf->flags & FAULT_FLAG_WRITE);
		page += idx & (MHEAP_BLOCK_PAGES - 1);
	}
	err = vm_insert_page(vmf->vma, vmf->address, page);
	/* -EBUSY: the entry is there, a racing fault's page or a marker. */
	if (err == -EBUSY && fault_through_marker(vmf))
		return marker_clear(vmf);
	if (err && err != -EBUSY)
		return vmf_error(err);
	return VM_FAULT_NOPAGE;
}

static vm_fault_t mheap_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct mheap_map *map = vma->vm_private_data;
	pgoff_t idx = vmf->pgoff;
	struct page *page;
	vm_fault_t ret;

	if (!map || idx >= map->npages)
		return VM_FAULT_SIGBUS;

	down_read(&map->lock);
	if (test_bit(idx, map->quarantine)) {
		up_read(&map->lock);
		mheap_event_record(map->ctx, vmf->real_address,
				   fault_event_flags(vmf));
		return VM_FAULT_SIGSEGV;
	}
	page = xa_load(&map->pages, idx);
	if (!page && block_may_be_huge(vma, map, block_first(idx)))
		page = block_alloc(map, block_first(idx));
	/* Another thread may be faulting the same page in. */
	if (!page)
		page = xa_load(&map->pages, idx) ?: page_alloc(map, idx);
	ret = page ? map_page(vmf, map, page) : VM_FAULT_OOM;
	up_read(&map->lock);
	return ret;
}

const struct vm_operations_struct mheap_vm_ops = {
	.open		= mheap_vm_open,
	.close		= mheap_vm_close,
	.may_split	= mheap_vm_may_split,
	.mremap		= mheap_vm_mremap,
	.fault		= mheap_vm_fault,
};

int mheap_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct mheap_ctx *ctx = file->private_data;
	unsigned long npages = vma_pages(vma);
	struct mheap_map *map;

	/* MAP_SHARED (VM_SHARED too unless the descriptor is read-only). */
	if (!(vma->vm_flags & VM_MAYSHARE) || vma->vm_pgoff)
		return -EINVAL;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	if (npages > (MHEAP_MAP_MAX >> PAGE_SHIFT))
		return -ENOMEM;

	map = kzalloc(sizeof(*map), GFP_KERNEL_ACCOUNT);
	if (!map)
		return -ENOMEM;
	map->quarantine = kvcalloc(BITS_TO_LONGS(npages), sizeof(long),
				   GFP_KERNEL_ACCOUNT);
	if (!map->quarantine) {
		kfree(map);
		return -ENOMEM;
	}
	refcount_set(&map->refs, 1);
	map->ctx = ctx;
	map->mm = vma->vm_mm;
	map->npages = npages;
	init_rwsem(&map->lock);
	xa_init_flags(&map->pages, XA_FLAGS_ACCOUNT);

	mheap_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTCOPY |
			   VM_DONTDUMP);
	mheap_vm_flags_clear(vma, VM_MAYEXEC);
	vma->vm_ops = &mheap_vm_ops;
	vma->vm_private_data = map;

	mheap_count(ctx, MHEAP_C_MAPPED, npages << PAGE_SHIFT);
	mheap_count(ctx, MHEAP_C_MAPPINGS, 1);
	return 0;
}
