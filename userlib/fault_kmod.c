// SPDX-License-Identifier: MIT
/*
 * The kmod backend: arena chunks mapped from /dev/mheap, faulted and
 * released by the module (kmod/). Until the module's fault commands exist,
 * the backend reports itself unavailable, so auto passes over it and
 * MHEAP_BACKEND=kmod fails at start-up with a clear message.
 */
#include <errno.h>

#include "fault.h"

static int kmod_probe(void)
{
	return -ENODEV;
}

static int kmod_prepare(void *base, size_t len)
{
	(void)base;
	(void)len;
	return -ENODEV;
}

static void kmod_unprepare(void *base, size_t len)
{
	(void)base;
	(void)len;
}

static unsigned kmod_fault(const struct fault_range *r, unsigned n, int *err)
{
	(void)r;
	(void)n;
	*err = -ENODEV;
	return 0;
}

static void kmod_release(const struct fault_range *r, unsigned n)
{
	(void)r;
	(void)n;
}

const struct fault_backend fault_backend_kmod = {
	.name = "kmod",
	.probe = kmod_probe,
	.prepare = kmod_prepare,
	.unprepare = kmod_unprepare,
	.fault = kmod_fault,
	.release = kmod_release,
	.faults = true,
};
