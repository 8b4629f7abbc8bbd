// SPDX-License-Identifier: GPL-2.0
/*
 * The public API's compatibility contract (userlib/include/mheap.h): the
 * version the library reports.
 */
#include <stdio.h>
#include <string.h>

#include "kselftest_harness.h"
#include "mheap.h"

TEST(mh_version_is_the_headers_version)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", MH_VERSION_MAJOR,
		 MH_VERSION_MINOR, MH_VERSION_PATCH);
	EXPECT_STREQ(want, MH_VERSION);
	EXPECT_STREQ(MH_VERSION, mh_version());
	EXPECT_EQ(MH_VERSION_MAJOR * 10000 + MH_VERSION_MINOR * 100 + MH_VERSION_PATCH,
		  MH_VERSION_NUMBER);
}

TEST_HARNESS_MAIN
