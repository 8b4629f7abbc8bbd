/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests of the library's kmod backend on /dev/mheap
 * (userlib/fault_kmod.c; kmod_lib_*_test.c) share: selecting the backend
 * with the FIFO quarantine, the report of an access to memory lost in
 * fork, and fixture `lib`, which only needs the device.
 * Without the module every test reports SKIP with the reason; the VM's
 * "kmod" suite runs them with it loaded.
 */
#ifndef MHEAP_KMOD_LIB_FIXTURE_H
#define MHEAP_KMOD_LIB_FIXTURE_H

#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kmod_util.h"

#include "mheap.h"
#include "arena.h"
#include "arenamap.h"
#include "fault.h"
#include "secure.h"

/* ------------------------------------------------------------ the library */

/* The kmod backend, with the FIFO quarantine (quarantine_scan_test.c tests
 * the scan) and a freed arena's active chunk reused or not; false if the
 * backend does not work here. */
static inline bool kmod_fifo(struct arena_config *cfg, bool reuse)
{
	if (!fault_backend_select("kmod"))
		return false;
	arena_config_get(cfg);
	cfg->reuse = reuse;
	cfg->scan = false;
	arena_configure(cfg);
	return true;
}

/* The line a child must print for an access to p, a chunk of the parent. */
static inline void lost_line(char *buf, size_t size, const char *p, bool write)
{
	const struct mspan *s = span_of((uintptr_t)p);
	const struct arena_chunk *c = s ? s->chunk_data : NULL;

	if (!c) {
		snprintf(buf, size, "(%p is in no chunk)", (const void *)p);
		return;
	}
	snprintf(buf, size,
		 "mheap: arena memory lost in fork: %s %#lx in arena #%llu, %schunk [%#lx, %#lx), "
		 "live in the parent: " DEV_PATH " memory is not inherited across fork "
		 "(kmod backend)\n",
		 write ? "write to" : "read of", (unsigned long)(uintptr_t)p,
		 (unsigned long long)c->arena_id, c->large ? "large " : "", (unsigned long)c->base,
		 (unsigned long)c->limit);
}

/* The tests that need nothing but the device (and cfg for kmod_fifo). */
FIXTURE(lib) {
	struct arena_config cfg;
};

FIXTURE_SETUP(lib)
{
	if (!device_present())
		SKIP_SETUP(NO_DEVICE);
}

FIXTURE_TEARDOWN(lib)
{
}

#endif /* MHEAP_KMOD_LIB_FIXTURE_H */
