// SPDX-License-Identifier: MIT
/*
 * C++'s replaceable operator new and delete, every form, so that a C++
 * program preloaded with libmheap.so allocates from mheap and has its frees
 * checked - a sized delete too: its size must fit the block, as for
 * free_sized (malloc.c, mh_free_sized_checked), so a delete[] with the
 * size of another size class aborts with one "mheap: operator delete[] of
 * 0x... with size N: the object is M bytes (size mismatch)" line.
 *
 * Written in C under the Itanium C++ ABI's names (x86-64: size_t is "m"),
 * so the library still needs only a C compiler:
 *   new       _Znwm  _Znam                         (new, new[])
 *             _ZnwmRKSt9nothrow_t  _ZnamRKSt9nothrow_t
 *             _ZnwmSt11align_val_t  _ZnamSt11align_val_t
 *             _ZnwmSt11align_val_tRKSt9nothrow_t  _ZnamSt11align_val_tRKSt9nothrow_t
 *   delete    _ZdlPv  _ZdaPv                       (delete, delete[]: malloc.c)
 *             _ZdlPvm  _ZdaPvm                     (sized)
 *             _ZdlPvSt11align_val_t  _ZdaPvSt11align_val_t
 *             _ZdlPvmSt11align_val_t  _ZdaPvmSt11align_val_t
 *             _ZdlPvRKSt9nothrow_t  _ZdaPvRKSt9nothrow_t
 *             _ZdlPvSt11align_val_tRKSt9nothrow_t  _ZdaPvSt11align_val_tRKSt9nothrow_t
 * std::align_val_t is an enum class over size_t, std::nothrow_t an empty
 * struct passed by reference: a size_t and a pointer to C.
 *
 * On failure the throwing forms do what the standard asks: call the
 * new-handler (std::get_new_handler) and try again, until there is no
 * handler; then throw std::bad_alloc (std::__throw_bad_alloc). Both come
 * from libstdc++ through weak references: a process that calls operator
 * new is a C++ one and has it loaded, and the library links without it.
 * The exception unwinds through these C frames with their .eh_frame
 * (x86-64 builds have unwind tables by default). With no C++ runtime to
 * throw, the failure aborts with one "mheap: ..." line. The nothrow forms
 * return NULL at once, without calling the new-handler: a handler may
 * throw, and C cannot catch that to return NULL as the standard requires.
 */
#include <stddef.h>

#include "internal.h"
#include "mheap_impl.h"
#include "secure.h"

#define EXPORT __attribute__((visibility("default")))

typedef void (*new_handler)(void);

/* std::get_new_handler() and std::__throw_bad_alloc(), from libstdc++. */
extern new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern MH_NORETURN void _ZSt17__throw_bad_allocv(void) __attribute__((weak));

/* The block of operator new(size[, align]); align 0 for the plain forms,
 * 16-aligned from 16 bytes on (cxx_new_request): in the secure mode, whose
 * blocks keep their exact size, by asking for the alignment. The heap is
 * set up before the mode is read: a new may be the process's first
 * allocation (another preloaded library's constructor, run before this
 * one's), and with mh_secure read as 0 there its block would be the
 * rounded request, which a sized delete of the size given then reports
 * as a size mismatch. */
static void *new_block(size_t size, size_t align)
{
	if (align)
		return mh_aligned_alloc(align, size);
	if (size >= 16) {
		mheap_init();
		if (unlikely(mh_secure))
			return mh_aligned_alloc(16, size);
	}
	return mh_malloc(cxx_new_request(size));
}

/* The throwing forms once new_block has failed: the new-handler loop. */
static __attribute__((noinline)) void *new_failed(size_t size, size_t align)
{
	for (;;) {
		new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
		void *p;

		if (!h) {
			if (_ZSt17__throw_bad_allocv)
				_ZSt17__throw_bad_allocv();
			mh_fatal("operator new of %zu bytes: out of memory, and no C++ runtime to throw std::bad_alloc",
				 size);
		}
		h();
		p = new_block(size, align);
		if (p)
			return p;
	}
}

static inline void *new_throwing(size_t size, size_t align)
{
	void *p = new_block(size, align);

	return likely(p != NULL) ? p : new_failed(size, align);
}

/*
 * Each array form is its single-object form under a second name, but for
 * the sized deletes, whose messages name delete[]. Plain delete and
 * delete[] (_ZdlPv, _ZdaPv) have free's contract: they are mh_free itself,
 * among malloc.c's standard names.
 */
#define SAME_AS(name, impl) \
	extern __typeof(impl) name __attribute__((alias(#impl), visibility("default")))

/* ------------------------------------------------------------ new */

EXPORT void *_Znwm(size_t size)
{
	return new_throwing(size, 0);
}

EXPORT void *_ZnwmRKSt9nothrow_t(size_t size, const void *nothrow)
{
	(void)nothrow;
	return new_block(size, 0);
}

EXPORT void *_ZnwmSt11align_val_t(size_t size, size_t align)
{
	return new_throwing(size, align);
}

EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const void *nothrow)
{
	(void)nothrow;
	return mh_aligned_alloc(align, size);
}

SAME_AS(_Znam, _Znwm);
SAME_AS(_ZnamRKSt9nothrow_t, _ZnwmRKSt9nothrow_t);
SAME_AS(_ZnamSt11align_val_t, _ZnwmSt11align_val_t);
SAME_AS(_ZnamSt11align_val_tRKSt9nothrow_t, _ZnwmSt11align_val_tRKSt9nothrow_t);

/* ------------------------------------------------------------ delete */

EXPORT void _ZdlPvm(void *p, size_t size)
{
	mh_free_sized_checked(p, SIZED_DELETE, false, 0, size);
}

EXPORT void _ZdaPvm(void *p, size_t size)
{
	mh_free_sized_checked(p, SIZED_DELETE_ARRAY, false, 0, size);
}

EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	mh_free_sized_checked(p, SIZED_DELETE, true, align, size);
}

EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	mh_free_sized_checked(p, SIZED_DELETE_ARRAY, true, align, size);
}

/* Aligned without a size: the block is checked as by any free. */
EXPORT void _ZdlPvSt11align_val_t(void *p, size_t align)
{
	(void)align;
	mh_free(p);
}

/* The nothrow forms, which a nothrow new-expression calls when the
 * constructor throws. */
EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nothrow)
{
	(void)nothrow;
	mh_free(p);
}

EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nothrow)
{
	(void)align;
	(void)nothrow;
	mh_free(p);
}

SAME_AS(_ZdaPvSt11align_val_t, _ZdlPvSt11align_val_t);
SAME_AS(_ZdaPvRKSt9nothrow_t, _ZdlPvRKSt9nothrow_t);
SAME_AS(_ZdaPvSt11align_val_tRKSt9nothrow_t, _ZdlPvSt11align_val_tRKSt9nothrow_t);
