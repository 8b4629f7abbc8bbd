/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests of libmheap.so as a drop-in malloc (preload_*_test.c)
 * share: which libmheap.so to test (MHEAP_PRELOAD_LIB; none under a
 * sanitizer, whose runtime must come first in every process), its standard
 * functions loaded with dlopen beside this process's glibc (struct family),
 * and MHEAP_FIXTURE, a fixture with libmheap.so's functions only.
 */
#ifndef MHEAP_PRELOAD_LIB_H
#define MHEAP_PRELOAD_LIB_H

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

/* The libmheap.so to test, or NULL with *why saying why there is none. */
static inline const char *preload_lib(const char **why)
{
	const char *lib = getenv("MHEAP_PRELOAD_LIB");
	const char *flavour = getenv("MHEAP_TEST_FLAVOUR");

	if (flavour && (!strcmp(flavour, "asan") || !strcmp(flavour, "tsan"))) {
		*why = "the sanitizer runtime must come first in every process: preloading is tested in the plain build";
		return NULL;
	}
	if (!lib || access(lib, R_OK)) {
		*why = "no libmheap.so to preload here (MHEAP_PRELOAD_LIB unset or missing; static VM tests)";
		return NULL;
	}
	return lib;
}

/* One malloc's standard functions, glibc's or libmheap.so's (own_sym). */
struct family {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*realloc)(void *, size_t);
	void *(*reallocarray)(void *, size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	void *(*memalign)(size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	size_t (*malloc_usable_size)(void *);
	/* glibc's <malloc.h> introspection and tuning */
	struct mallinfo2 (*mallinfo2)(void);
	struct mallinfo (*mallinfo)(void);
	int (*malloc_info)(int, FILE *);
	void (*malloc_stats)(void);
	int (*malloc_trim)(size_t);
	int (*mallopt)(int, int);
	/* C23, which glibc 2.36 lacks: loaded apart (load_sized_frees) */
	void (*free_sized)(void *, size_t);
	void (*free_aligned_sized)(void *, size_t, size_t);
	void *(*calloc)(size_t, size_t);
};

/* dlsym, but only a definition in h itself: dlsym searches h's
 * dependencies too, where libc's function would stand in for one missing
 * from libmheap.so. */
static inline void *own_sym(void *h, const char *name)
{
	void *p = dlsym(h, name);
	struct link_map *map;
	Dl_info info;

	if (!p || dlinfo(h, RTLD_DI_LINKMAP, &map) || !dladdr(p, &info) ||
	    strcmp(info.dli_fname, map->l_name))
		return NULL;
	return p;
}

static inline bool load_family(void *h, struct family *f)
{
#define LOAD(name) (f->name = (__typeof(f->name))own_sym(h, #name)) != NULL
	return LOAD(malloc) && LOAD(free) && LOAD(realloc) && LOAD(reallocarray) &&
	       LOAD(valloc) && LOAD(pvalloc) && LOAD(memalign) && LOAD(posix_memalign) &&
	       LOAD(aligned_alloc) && LOAD(malloc_usable_size) && LOAD(mallinfo2) &&
	       LOAD(mallinfo) && LOAD(malloc_info) && LOAD(malloc_stats) && LOAD(malloc_trim) &&
	       LOAD(mallopt);
#undef LOAD
}

/* libmheap.so's C23 sized frees and calloc, which the cases of the
 * sized_frees fixture need besides its family. */
static inline bool load_sized_frees(void *h, struct family *f)
{
#define LOAD(name) (f->name = (__typeof(f->name))own_sym(h, #name)) != NULL
	return LOAD(free_sized) && LOAD(free_aligned_sized) && LOAD(calloc);
#undef LOAD
}

/*
 * Set up a fixture that calls libmheap.so beside this process's glibc
 * malloc: *lib is the shared object dlopen'ed, *mheap its functions. False
 * when there is none to test here (a skip, *why says why) or when it does
 * not load (*why is NULL: a failure).
 */
static inline bool open_mheap(void **lib, struct family *mheap, const char **why)
{
	const char *path = preload_lib(why);

	if (!path)
		return false;
	*why = NULL;
	*lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*lib)
		fprintf(stderr, "# dlopen: %s\n", dlerror());
	return *lib && load_family(*lib, mheap) && load_sized_frees(*lib, mheap);
}

/* A fixture with libmheap.so's functions only, in self->m: no glibc to
 * compare with. */
#define MHEAP_FIXTURE(name) \
	FIXTURE(name) \
	{ \
		void *lib; \
		struct family m; \
	}; \
	FIXTURE_SETUP(name) \
	{ \
		const char *why; \
		if (!open_mheap(&self->lib, &self->m, &why)) { \
			ASSERT_NE(NULL, why); \
			SKIP(return, "%s", why); \
		} \
	} \
	FIXTURE_TEARDOWN(name) \
	{ \
		if (self->lib) \
			dlclose(self->lib); \
	}

#endif /* MHEAP_PRELOAD_LIB_H */
