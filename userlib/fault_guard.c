// SPDX-License-Identifier: MIT
/*
 * The guard backend: MADV_GUARD_INSTALL turns a range into guard pages in
 * place (Linux 6.13+). Any access faults, the pages' memory is freed, and
 * the VMA is neither split nor changed, so there is no vm.max_map_count
 * limit to run into. MADV_GUARD_REMOVE makes the range ordinary zero-fill
 * memory again. Support is probed at run time on a scratch mapping.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fault.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

static int guard_probe(void)
{
	long page = 4096;
	void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int err = 0;

	if (p == MAP_FAILED)
		return -errno;
	if (madvise(p, (size_t)page, MADV_GUARD_INSTALL))
		err = -errno;
	munmap(p, (size_t)page);
	return err;
}

static unsigned guard_fault(const struct fault_range *r, unsigned n, int *err)
{
	for (unsigned i = 0; i < n; i++)
		if (madvise(r[i].base, r[i].len, MADV_GUARD_INSTALL)) {
			*err = -errno;
			return i;
		}
	return n;
}

static void guard_release(const struct fault_range *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (madvise(r[i].base, r[i].len, MADV_GUARD_REMOVE))
			mh_fatal("MADV_GUARD_REMOVE(%p, %zu): %s", r[i].base, r[i].len,
				 strerror(errno));
}

const struct fault_backend fault_backend_guard = {
	.name = "guard",
	.probe = guard_probe,
	.prepare = fault_prepare_nothing,
	.unprepare = fault_unprepare_nothing,
	.fault = guard_fault,
	.release = guard_release,
	.faults = true,
};
