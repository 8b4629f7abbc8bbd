// SPDX-License-Identifier: MIT
/*
 * Built by tools/install-tap.sh against an installed tree as C++ (11 and
 * 20, -Wall -Wextra -Werror -pedantic), with nothing but the flags
 * pkg-config gives: the header's inline arena allocators, MH_STATS_INIT
 * and the statistics, and operator new, which the shared object replaces.
 * Prints the header's version and the library's.
 */
#include <mheap.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

struct node {
	node *next;
	int value;
};

int main()
{
	mh_arena *a = mh_arena_new();
	node *head = nullptr;

	for (int i = 0; i < 1000; i++) {
		node *n = static_cast<node *>(mh_arena_alloc(a, sizeof(node), alignof(node)));
		double *d = static_cast<double *>(mh_arena_alloc_noscan(a, 8 * sizeof(double), 0));

		if (!n || !d || !mh_in_arena(n))
			return 1;
		d[7] = i;
		n->next = head;
		n->value = i;
		head = n;
	}
	mh_arena_free(a);

	std::vector<std::string> v(100, std::string(100, 'x'));
	struct mh_stats st = MH_STATS_INIT;

	if (mh_stats_read(&st) || st.size != sizeof(st) || st.mallocs < 100)
		return 2;
	std::printf("%s %s\n", MH_VERSION, mh_version());
	return std::strcmp(MH_VERSION, mh_version()) != 0;
}
