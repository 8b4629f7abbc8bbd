// SPDX-License-Identifier: MIT
/* See fixalloc.h. */
#include <string.h>

#include "fixalloc.h"
#include "sysmem.h"

void fixalloc_init(struct fixalloc *f, size_t size, size_t keep, size_t zeroed)
{
	memset(f, 0, sizeof(*f));
	f->slab = &f->own;
	/* The free-list link lives after the kept bytes. Objects start a
	 * sharing block of their own (slabs are page-aligned). */
	f->size = ALIGN_UP(size < keep + sizeof(void *) ? keep + sizeof(void *) : size,
			   MH_SHARING_BLOCK);
	f->keep = keep;
	f->zeroed = zeroed && zeroed < f->size ? zeroed : f->size;
	if (f->zeroed < keep + sizeof(void *))
		f->zeroed = keep + sizeof(void *);
}

void fixalloc_share(struct fixalloc *f, struct fixalloc *owner)
{
	f->slab = owner->slab;
}

void *fixalloc_alloc(struct fixalloc *f)
{
	struct fixalloc_slab *sl = f->slab;
	char *p;

	if (f->free) {
		p = f->free;
		memcpy(&f->free, p + f->keep, sizeof(void *));
		memset(p + f->keep, 0, f->zeroed - f->keep);
	} else {
		if (sl->nchunk < f->size) {
			size_t slab = f->size > FIXALLOC_SLAB ? f->size : FIXALLOC_SLAB;
			char *c = sys_alloc(slab);

			if (!c)
				return NULL;
			sl->chunk = c;
			sl->nchunk = slab;
		}
		p = sl->chunk;	/* fresh from mmap: already zero */
		sl->chunk += f->size;
		sl->nchunk -= f->size;
	}
	f->inuse += f->size;
	return p;
}

/* Give run at least size bytes: more of the slab after it when they follow
 * it, else a run of its own (from a new slab if this one is too short; the
 * rest of the old run, and of the old slab, stay unused). */
static bool run_take(struct fixalloc_slab *sl, struct fixalloc_run *run, size_t size)
{
	size_t grow;

	if (run->next && run->next + run->left == sl->chunk) {
		grow = ALIGN_UP(size - run->left, FIXALLOC_RUN);
		if (sl->nchunk >= grow) {
			sl->chunk += grow;
			sl->nchunk -= grow;
			run->left += grow;
			return true;
		}
	}
	grow = ALIGN_UP(size, FIXALLOC_RUN);
	if (sl->nchunk < grow) {
		size_t slab = grow > FIXALLOC_SLAB ? grow : FIXALLOC_SLAB;
		char *c = sys_alloc(slab);

		if (!c)
			return false;
		sl->chunk = c;
		sl->nchunk = slab;
	}
	run->next = sl->chunk;
	run->left = grow;
	sl->chunk += grow;
	sl->nchunk -= grow;
	return true;
}

void *fixalloc_alloc_run(struct fixalloc *f, struct fixalloc_run *run)
{
	char *p;

	if (f->free)
		return fixalloc_alloc(f);
	if (run->left < f->size && !run_take(f->slab, run, f->size))
		return NULL;
	p = run->next;	/* fresh from mmap: already zero */
	run->next += f->size;
	run->left -= f->size;
	f->inuse += f->size;
	return p;
}

void fixalloc_free(struct fixalloc *f, void *p)
{
	memcpy((char *)p + f->keep, &f->free, sizeof(void *));
	f->free = p;
	f->inuse -= f->size;
}
