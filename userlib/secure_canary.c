// SPDX-License-Identifier: MIT
/*
 * The canary and the trailer of the secure heap's blocks: the secrets, and
 * what is not on the common paths (secure_canary.h): filling and checking
 * canaries of any length (guarded blocks), and the report of a broken one.
 */
#include <sys/random.h>

#include "secure_canary.h"

uint64_t secure_secret;
uint8_t canary_byte;
uint64_t canary_word_all;
const uint64_t canary_mask[9] = {
	0, 0xff, 0xffff, 0xffffff, 0xffffffff, 0xffffffffff, 0xffffffffffff, 0xffffffffffffff,
	~(uint64_t)0,
};

void secure_canary_init(void)
{
	if (getrandom(&secure_secret, sizeof(secure_secret), 0) != sizeof(secure_secret))
		secure_secret = mh_nanotime() * 0x9e3779b97f4a7c15ull;
	secure_secret |= 1;
	canary_byte = (uint8_t)(secure_secret >> 8) | 1;
	canary_word_all = canary_byte * 0x0101010101010101ull;
}

void canary_fill(uint8_t *d, size_t n)
{
	uint64_t w = canary_word();
	size_t i = 0;

	if (n < 8) {
		while (n--)
			*d++ = canary_byte;
		return;
	}
	/* Whole words, the last one overlapping the one before. */
	for (; i + 8 < n; i += 8)
		memcpy(d + i, &w, 8);
	memcpy(d + n - 8, &w, 8);
}

size_t canary_intact(const uint8_t *d, size_t n)
{
	uint64_t w = canary_word(), v;
	size_t i = 0;

	if (n >= 8) {
		/* Whole words (the last overlapping): the common case, all
		 * intact, takes no byte loop. */
		for (; i + 8 < n; i += 8) {
			memcpy(&v, d + i, 8);
			if (v != w)
				goto bytes;
		}
		memcpy(&v, d + n - 8, 8);
		if (v == w)
			return n;
	}
bytes:
	while (i < n && d[i] == canary_byte)
		i++;
	return i;
}

MH_NORETURN __attribute__((noinline, cold)) void canary_broken(uintptr_t p, size_t room,
								const char *what)
{
	/* " in realloc" names realloc; a free says where it was found. */
	const char *at = *what ? what + 1 : "at free";
	uint64_t trailer;
	size_t size;

	memcpy(&trailer, (void *)(p + room - TRAILER), TRAILER);
	size = (uint32_t)trailer;
	if (size <= room - TRAILER && (uint32_t)(trailer >> 32) == trailer_check(size))
		mh_fatal("heap overflow: canary after %zu-byte block %#lx overwritten at offset %zu, detected %s",
			 size, (unsigned long)p,
			 size + canary_intact((const uint8_t *)(p + size), canary_len(size, room)), at);
	if (!trailer && !((const uint8_t *)p)[0])
		mh_freed_pointer(p, what);
	mh_fatal("heap overflow: canary at the end of %zu-byte slot %#lx overwritten, detected %s",
		 room, (unsigned long)p, at);
}
