// SPDX-License-Identifier: MIT
/*
 * The out-of-line copies of mh_arena_alloc and mh_arena_alloc_noscan: their
 * one definition is the inline fast path in mheap.h, made here into the
 * library's external functions (for calls a compiler does not inline, and
 * for compilers without GNU C's extern inline). See arena.c, "The inline
 * fast path".
 */
#define MH_ARENA_INLINE_	/* external definitions, not inline ones */
#include "mheap.h"
