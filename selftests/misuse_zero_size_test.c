// SPDX-License-Identifier: GPL-2.0
/*
 * Access through malloc(0)'s pointer, in the misuse tests
 * (misuse_fixture.h): in the secure modes the pointer is a unique address
 * of a range that is never accessible (secure_zero.c), and a read or write
 * through it faults.
 */
#define _GNU_SOURCE
#include "misuse_fixture.h"

static void zero_size_read(void)
{
	char *p = small_block(0);

	sink = p[0];
}
MISUSE_TEST(zero_size_read, NOT_CAUGHT, ZERO_SIZE("read of"), ZERO_SIZE("read of"))

static void zero_size_write(void)
{
	char *p = small_block(0);

	p[0] = 1;
}
MISUSE_TEST(zero_size_write, NOT_CAUGHT, ZERO_SIZE("write to"), ZERO_SIZE("write to"))

TEST_HARNESS_MAIN
