// SPDX-License-Identifier: MIT
/* See fixalloc.h. */
#include <string.h>

#include "fixalloc.h"
#include "sysmem.h"

#define FIXALLOC_SLAB (64 * 1024)

void fixalloc_init(struct fixalloc *f, size_t size, size_t keep, size_t zeroed)
{
	memset(f, 0, sizeof(*f));
	/* The free-list link lives after the kept bytes. Objects start a
	 * sharing block of their own (slabs are page-aligned). */
	f->size = ALIGN_UP(size < keep + sizeof(void *) ? keep + sizeof(void *) : size,
			   MH_SHARING_BLOCK);
	f->keep = keep;
	f->zeroed = zeroed && zeroed < f->size ? zeroed : f->size;
	if (f->zeroed < keep + sizeof(void *))
		f->zeroed = keep + sizeof(void *);
}

void *fixalloc_alloc(struct fixalloc *f)
{
	char *p;

	if (f->free) {
		p = f->free;
		memcpy(&f->free, p + f->keep, sizeof(void *));
		memset(p + f->keep, 0, f->zeroed - f->keep);
	} else {
		if (f->nchunk < f->size) {
			size_t slab = f->size > FIXALLOC_SLAB ? f->size : FIXALLOC_SLAB;
			f->chunk = sys_alloc(slab);
			if (!f->chunk)
				return NULL;
			f->nchunk = slab;
		}
		p = f->chunk;	/* fresh from mmap: already zero */
		f->chunk += f->size;
		f->nchunk -= f->size;
	}
	f->inuse += f->size;
	return p;
}

void *fixalloc_alloc_apart(struct fixalloc *f, const void *caller)
{
	void *p;

	if (f->free)
		return fixalloc_alloc(f);
	/* The gap, in whole sharing blocks no object takes (so the next
	 * object still starts one); where the slab has no room for the gap
	 * and the object, a new slab (the rest of this one stays unused, as
	 * a rest shorter than an object does). */
	if (f->last && f->last != caller) {
		if (f->nchunk >= f->size + FIXALLOC_APART) {
			f->chunk += FIXALLOC_APART;
			f->nchunk -= FIXALLOC_APART;
		} else {
			f->nchunk = 0;
		}
	}
	p = fixalloc_alloc(f);
	if (p)
		f->last = caller;
	return p;
}

void fixalloc_free(struct fixalloc *f, void *p)
{
	memcpy((char *)p + f->keep, &f->free, sizeof(void *));
	f->free = p;
	f->inuse -= f->size;
}
