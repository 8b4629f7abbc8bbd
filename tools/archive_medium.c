// SPDX-License-Identifier: MIT
/*
 * A program built with -mcmodel=medium whose own large data lies in .lbss
 * and spans more than 2 GiB, linked with libmheap.a (tools/archive-tap.sh).
 * The medium model puts every array over 64 KiB in .lbss, which the linker
 * places after .bss and may place far from the code; the library's code is
 * of the small model and reaches its variables with 32-bit offsets, so the
 * archive must keep all of them in .bss (internal.h, MH_LARGE_ZERO): one
 * of them in .lbss lands after this program's 2 GiB and the link fails
 * ("relocation truncated to fit"). Exit 0 when the heap works.
 */
#include <stdio.h>

#include "mheap.h"

/* More than 2 GiB of zero pages: address space only, but for the two
 * bytes written. External, so that the compiler keeps it whole. */
char far_data[(2UL << 30) + (64UL << 20)];

int main(void)
{
	char *p = mh_malloc(100);
	char *q = mh_malloc(1 << 20);

	if (!p || !q)
		return 1;
	far_data[0] = 1;
	far_data[sizeof(far_data) - 1] = 2;
	p[99] = q[(1 << 20) - 1] = 3;
	mh_free(q);
	mh_free(p);
	printf("far_data at %p, %zu bytes\n", (void *)far_data, sizeof(far_data));
	return far_data[0] + far_data[sizeof(far_data) - 1] == 3 ? 0 : 1;
}
