// SPDX-License-Identifier: MIT
/*
 * Built by tools/install-tap.sh against an installed tree, with nothing but
 * the flags pkg-config gives: allocates, frees, and prints the version of
 * the header it was compiled with and that of the library it runs with.
 */
#include <mheap.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	char *p = mh_malloc(100);

	if (!p)
		return 1;
	memset(p, 0x5a, 100);
	mh_free(p);
	printf("%s %s\n", MH_VERSION, mh_version());
	return strcmp(MH_VERSION, mh_version()) != 0;
}
