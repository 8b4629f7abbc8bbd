// SPDX-License-Identifier: MIT
/* See fixalloc.h. */
#include <string.h>

#include "fixalloc.h"
#include "sysmem.h"

#define FIXALLOC_SLAB (64 * 1024)

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

void *fixalloc_alloc_apart(struct fixalloc *f, const void *caller)
{
	struct fixalloc_slab *sl = f->slab;
	void *p;

	if (f->free)
		return fixalloc_alloc(f);
	/* The gap, in whole sharing blocks no object takes (so the next
	 * object still starts one); where the slab has no room for the gap
	 * and the object, a new slab (the rest of this one stays unused, as
	 * a rest shorter than an object does). */
	if (sl->last && sl->last != caller) {
		if (sl->nchunk >= f->size + FIXALLOC_APART) {
			sl->chunk += FIXALLOC_APART;
			sl->nchunk -= FIXALLOC_APART;
		} else {
			sl->nchunk = 0;
		}
	}
	p = fixalloc_alloc(f);
	if (p)
		sl->last = caller;
	return p;
}

void fixalloc_free(struct fixalloc *f, void *p)
{
	memcpy((char *)p + f->keep, &f->free, sizeof(void *));
	f->free = p;
	f->inuse -= f->size;
}
