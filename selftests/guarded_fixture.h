/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fixture of the secure mode's tests of guarded blocks after their free
 * (secure_quarantine_test.c, secure_warm_test.c): fixture `blocks`, run
 * once per backend that faults guarded blocks (not kmod: blocks never take
 * the module's memory), with the quarantine's scan off so that
 * mh_quarantine_release() releases every chunk whatever the stack holds.
 */
#ifndef MHEAP_GUARDED_FIXTURE_H
#define MHEAP_GUARDED_FIXTURE_H

#include "kselftest_harness.h"

#include "arena.h"
#include "fault.h"

FIXTURE(blocks)
{
};

FIXTURE_VARIANT(blocks)
{
	const char *backend;
};

FIXTURE_VARIANT_ADD(blocks, guard) { .backend = "guard" };
FIXTURE_VARIANT_ADD(blocks, mprotect) { .backend = "mprotect" };

FIXTURE_SETUP(blocks)
{
	struct arena_config cfg;

	if (!fault_backend_select(variant->backend))
		SKIP(return, "%s backend does not work on this kernel", variant->backend);
	arena_config_get(&cfg);
	cfg.scan = false;
	arena_configure(&cfg);
}

FIXTURE_TEARDOWN(blocks)
{
}

#endif /* MHEAP_GUARDED_FIXTURE_H */
