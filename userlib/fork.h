/* SPDX-License-Identifier: MIT */
/*
 * The allocator around fork() (fork.c).
 */
#ifndef MHEAP_FORK_H
#define MHEAP_FORK_H

#include "internal.h"

/* Register the fork handlers; once, from a constructor (pthread_atfork may
 * allocate). */
MH_HIDDEN void fork_handlers_init(void);

#endif
