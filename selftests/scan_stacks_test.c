// SPDX-License-Identifier: GPL-2.0
/*
 * The quarantine scan and the threads' stacks (scan_range.h): what lies
 * below a stopped thread's stack pointer is left out of the roots only
 * where it is that thread's own dead stack, [the stack's low end, the
 * stack pointer), the stack's bounds as the thread library reports them
 * (userlib/scan_stacks.c); everything else a stack pointer falls in is a
 * root: data below a stack given with pthread_attr_setstack in .bss or in
 * a buffer (whether the buffer starts at a guard page or not), a buffer
 * the kernel merged into the mapping of a thread stack above it, the rest
 * of a buffer holding a fiber's stack. A thread the heap never saw (its
 * bounds unknown) has its stack read whole, dead part included; the dead
 * part of a thread the heap knows is not read.
 */
#define _GNU_SOURCE
#include "scan_range.h"

#include <ucontext.h>

#define PAGE ((size_t)4096)

/* ------------------------------------------------------------ threads */

/* A thread blocked in read(2) (struct reader); known: it allocated first,
 * as a thread that holds heap pointers has (the heap then knows its
 * stack), or on a byte 'a' when known_later is set too (it then allocates,
 * sets allocated and blocks again); stale: a pointer, XORed, it left in a
 * frame that has returned, 32 KiB below the frame it blocks in. */
struct blocked {
	struct reader rd;
	bool known, known_later;
	uintptr_t stale;
	_Atomic int allocated;
	pthread_t thread;
};

static void __attribute__((noinline)) leave_in_a_dead_frame(uintptr_t enc)
{
	uintptr_t frame[4096];

	memset(frame, 0, sizeof(frame));
	frame[0] = (enc ^ KEY) + INTERIOR;	/* the frame's lowest word */
	__asm__ volatile("" : : "r"(frame) : "memory");
}

static void *blocked_main(void *arg)
{
	struct blocked *b = arg;

	char c = 0;

	if (b->known && !b->known_later)
		mh_free(mh_malloc(64));
	if (b->stale)
		leave_in_a_dead_frame(b->stale);
	atomic_store(&b->rd.tid, (pid_t)syscall(SYS_gettid));
	while (read(b->rd.fds[0], &c, 1) == 1 && c == 'a') {
		mh_free(mh_malloc(64));
		atomic_store(&b->allocated, 1);
	}
	return NULL;
}

/* Let a known_later thread allocate now, and wait until it blocks again. */
static bool blocked_allocate(struct blocked *b)
{
	if (write(b->rd.fds[1], "a", 1) != 1)
		return false;
	while (!atomic_load(&b->allocated))
		usleep(100);
	return wait_in_syscall(atomic_load(&b->rd.tid), SYS_read);
}

/* Start b's thread with attributes at (NULL: the defaults) and wait until
 * it blocks; false if it could not be made or did not block. */
static bool blocked_start(struct blocked *b, const pthread_attr_t *at)
{
	atomic_store(&b->rd.tid, 0);
	if (pipe(b->rd.fds))
		return false;
	if (pthread_create(&b->thread, at, blocked_main, b))
		return false;
	while (!atomic_load(&b->rd.tid))
		usleep(100);
	return wait_in_syscall(atomic_load(&b->rd.tid), SYS_read);
}

static void blocked_stop(struct blocked *b)
{
	if (write(b->rd.fds[1], "x", 1) == 1)
		pthread_join(b->thread, NULL);
	close(b->rd.fds[0]);
	close(b->rd.fds[1]);
}

/* A thread on [stack, +len) (pthread_attr_setstack). */
static bool blocked_start_on(struct blocked *b, void *stack, size_t len)
{
	pthread_attr_t at;
	bool ok;

	if (pthread_attr_init(&at))
		return false;
	ok = !pthread_attr_setstack(&at, stack, len) && blocked_start(b, &at);
	pthread_attr_destroy(&at);
	return ok;
}

static void __attribute__((noinline)) store_encoded(void *volatile *slot, uintptr_t enc)
{
	*slot = (void *)((enc ^ KEY) + INTERIOR);
}

/* Scan for enc's range with the pointer in *slot; 1 found, 0 not, -1
 * incomplete. */
static int __attribute__((noinline)) scan_with_pointer_in(void *volatile *slot, uintptr_t enc)
{
	int found;

	store_encoded(slot, enc);
	found = scan_one(enc);
	*slot = NULL;
	return found;
}

/* Every test of data below a stack, for a thread the heap knows (its
 * bounds exact) and for one it never saw (its stack read whole). */
FIXTURE(below)
{
	uintptr_t enc;
	struct blocked b;
};

FIXTURE_VARIANT(below)
{
	bool known;
};

FIXTURE_VARIANT_ADD(below, thread_the_heap_knows) { .known = true };
FIXTURE_VARIANT_ADD(below, thread_the_heap_never_saw) { .known = false };

FIXTURE_SETUP(below)
{
	self->enc = range_new();
	ASSERT_NE(0, self->enc);
	self->b.known = variant->known;
}

FIXTURE_TEARDOWN(below)
{
	range_free(self->enc);
}

/* ------------------------------------------------------------ data below a stack */

/*
 * A thread's stack pointer bounds the read of its stack from below: what
 * lies under it is dead stack. But a stack can be part of memory that holds
 * other data below it: a static array in .bss, one end of a larger buffer
 * (a pool of fiber stacks with no guard between them). A pointer stored
 * there, below a thread that runs on the stack above it, is a root.
 */
static struct {
	char below[64 << 10];	/* data, below the stack: one struct fixes the order */
	char stack[2 << 20];	/* room for a sanitizer's static TLS too */
} bss __attribute__((aligned(4096)));

TEST_F(below, a_pointer_in_bss_below_a_thread_stack_there_is_found)
{
	ASSERT_TRUE(blocked_start_on(&self->b, bss.stack, sizeof(bss.stack)));
	EXPECT_EQ(1, scan_with_pointer_in((void *volatile *)bss.below, self->enc));
	blocked_stop(&self->b);
}

TEST_F(below, a_pointer_in_a_buffer_below_a_thread_stack_in_it_is_found)
{
	size_t len = (size_t)2 << 20;
	char *m = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(MAP_FAILED, m);
	/* A read-only page first, so that the buffer is a VMA of its own.
	 * Data in the buffer's first half, a thread's stack in the second. */
	ASSERT_EQ(0, mprotect(m, PAGE, PROT_READ));
	ASSERT_TRUE(blocked_start_on(&self->b, m + PAGE + len / 2, len / 2));
	EXPECT_EQ(1, scan_with_pointer_in((void *volatile *)(m + 2 * PAGE), self->enc));
	blocked_stop(&self->b);
	munmap(m, len + PAGE);
}

/*
 * The same buffer starting at a guard page: a mapping that starts at a
 * guard and holds the thread's control block (at the top of its stack)
 * above its stack pointer, as a stack the thread library made does; the
 * data below the stack is a root all the same.
 */
TEST_F(below, a_pointer_in_a_buffer_that_starts_at_a_guard_below_a_thread_stack_in_it_is_found)
{
	size_t len = (size_t)2 << 20;
	char *m = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, mprotect(m, PAGE, PROT_NONE));
	ASSERT_TRUE(blocked_start_on(&self->b, m + PAGE + len / 2, len / 2));
	EXPECT_EQ(1, scan_with_pointer_in((void *volatile *)(m + 2 * PAGE), self->enc));
	blocked_stop(&self->b);
	munmap(m, len + PAGE);
}

/* The mapping of /proc/self/maps holding address a: [*from, *to). */
static bool mapping_of(uintptr_t a, uintptr_t *from, uintptr_t *to)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%lx-%lx", from, to) == 2 && *from <= a && a < *to;
	fclose(f);
	return found;
}

/*
 * A thread made with no guard page (pthread_attr_setguardsize(0)): its
 * stack is a plain anonymous mapping, and a MAP_STACK buffer mapped right
 * below it, itself above an inaccessible page, merges with it into one
 * mapping that starts at a guard and holds the thread's control block:
 * the buffer is no part of the stack, and a pointer in it is a root.
 */
TEST_F(below, a_pointer_in_a_buffer_merged_below_a_guardless_thread_stack_is_found)
{
	size_t len = (size_t)1 << 20, buf = (size_t)256 << 10;
	uintptr_t lo, from, to;
	pthread_attr_t at, got;
	void *addr;
	size_t size;
	char *guard, *m;

	/* The thread allocates once the buffer is there: memory the heap
	 * maps for it would take the room below its stack. */
	self->b.known_later = true;
	ASSERT_EQ(0, pthread_attr_init(&at));
	ASSERT_EQ(0, pthread_attr_setguardsize(&at, 0));
	ASSERT_EQ(0, pthread_attr_setstacksize(&at, len));
	ASSERT_TRUE(blocked_start(&self->b, &at));
	pthread_attr_destroy(&at);
	ASSERT_EQ(0, pthread_getattr_np(self->b.thread, &got));
	ASSERT_EQ(0, pthread_attr_getstack(&got, &addr, &size));
	pthread_attr_destroy(&got);
	lo = (uintptr_t)addr;
	guard = mmap((void *)(lo - buf - PAGE), PAGE, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	m = mmap((void *)(lo - buf), buf, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_FIXED_NOREPLACE, -1, 0);
	if (guard != (void *)(lo - buf - PAGE) || m != (void *)(lo - buf) ||
	    !mapping_of((uintptr_t)m, &from, &to) || from != (uintptr_t)m || to <= lo) {
		blocked_stop(&self->b);
		SKIP(return, "no room below the thread's stack, or the kernel did not merge the "
		     "buffer into its mapping: the case does not arise here");
	}
	if (variant->known)
		ASSERT_TRUE(blocked_allocate(&self->b));
	EXPECT_EQ(1, scan_with_pointer_in((void *volatile *)(m + PAGE), self->enc));
	blocked_stop(&self->b);
	munmap(guard, PAGE + buf);
}

/* ------------------------------------------------------------ dead stack */

/*
 * The part of a thread's stack below its stack pointer is dead: a pointer
 * left there by a frame that has returned is not a root when the heap
 * knows the stack's bounds, whether the thread library made the stack or
 * the program gave it (here in a buffer after a read-only page, a mapping
 * of its own); a thread the heap never saw has it read (its bounds are
 * not known, and the mapping's shape does not prove them).
 */
/* Under ThreadSanitizer a thread blocked in a system call is left running,
 * its stack read whole (scan_stop.c). */
#ifdef __SANITIZE_THREAD__
#define SKIP_IF_LEFT_RUNNING() \
	SKIP(return, "ThreadSanitizer holds the stop signal back until a system call returns")
#else
#define SKIP_IF_LEFT_RUNNING() do { } while (0)
#endif

TEST_F(below, a_pointer_in_the_dead_part_of_a_thread_stack_is_found_only_if_the_heap_never_saw_it)
{
	SKIP_IF_LEFT_RUNNING();
	self->b.stale = self->enc;
	ASSERT_TRUE(blocked_start(&self->b, NULL));
	EXPECT_EQ(variant->known ? 0 : 1, scan_one(self->enc));
	blocked_stop(&self->b);
}

TEST_F(below, a_pointer_in_the_dead_part_of_a_stack_given_in_a_buffer_is_found_only_if_the_heap_never_saw_it)
{
	size_t len = (size_t)1 << 20;
	char *m;

	SKIP_IF_LEFT_RUNNING();
	m = mmap(NULL, len + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, mprotect(m, PAGE, PROT_READ));
	self->b.stale = self->enc;
	ASSERT_TRUE(blocked_start_on(&self->b, m + PAGE, len));
	EXPECT_EQ(variant->known ? 0 : 1, scan_one(self->enc));
	blocked_stop(&self->b);
	munmap(m, len + PAGE);
}

/* ------------------------------------------------------------ fibers, the scanner */

/* A thread that runs a fiber on a stack at the top of a buffer, the fiber
 * blocked in read(2). */
struct fiber {
	struct reader rd;
	char *stack;
	size_t len;
	ucontext_t main_ctx, fiber_ctx;
};

static __thread struct fiber *this_fiber;

static void fiber_main(void)
{
	struct fiber *f = this_fiber;
	char c;

	atomic_store(&f->rd.tid, (pid_t)syscall(SYS_gettid));
	if (read(f->rd.fds[0], &c, 1) != 1)
		c = 0;
	swapcontext(&f->fiber_ctx, &f->main_ctx);
}

static void *run_fiber(void *arg)
{
	struct fiber *f = arg;

	this_fiber = f;
	if (getcontext(&f->fiber_ctx))
		return (void *)1;
	f->fiber_ctx.uc_stack.ss_sp = f->stack;
	f->fiber_ctx.uc_stack.ss_size = f->len;
	f->fiber_ctx.uc_link = NULL;
	makecontext(&f->fiber_ctx, fiber_main, 0);
	swapcontext(&f->main_ctx, &f->fiber_ctx);
	return NULL;
}

/*
 * A buffer that starts at a guard page, as a thread's stack does, holds a
 * fiber's stack at its top and data below it: the fiber's stack pointer
 * says nothing about the data (the thread's control block is on its own
 * stack, elsewhere).
 */
TEST(a_pointer_in_a_buffer_below_a_fiber_stack_in_it_is_found)
{
	size_t len = (size_t)2 << 20, page = 4096;
	uintptr_t enc = range_new();
	char *m = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fiber f = { .len = len / 2 };
	void *volatile *slot;
	pthread_t th;

	ASSERT_NE(0, enc);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, mprotect(m, page, PROT_NONE));
	f.stack = m + page + len / 2;
	slot = (void *volatile *)(m + 2 * page);
	ASSERT_EQ(0, pipe(f.rd.fds));
	ASSERT_EQ(0, pthread_create(&th, NULL, run_fiber, &f));
	while (!atomic_load(&f.rd.tid))
		usleep(100);
	ASSERT_TRUE(wait_in_syscall(atomic_load(&f.rd.tid), SYS_read));
	store_encoded(slot, enc);
	EXPECT_EQ(1, scan_one(enc));
	*slot = NULL;
	ASSERT_EQ(1, write(f.rd.fds[1], "x", 1));
	pthread_join(th, NULL);
	close(f.rd.fds[0]);
	close(f.rd.fds[1]);
	munmap(m, len + page);
	range_free(enc);
}

/*
 * The scanning thread's own frames below scan_for_pointers' hold the
 * targets' addresses (the filter's bounds, the lookup's): they are the
 * scan's, never roots, also when the thread runs on a stack that is read
 * whole (one given to pthread_attr_setstack in a buffer, a fiber's). A
 * scan from such a thread with nothing pointing into its range finds
 * nothing.
 */
struct own_scan {
	uintptr_t enc;
	int found;
};

static void *scan_from_here(void *arg)
{
	struct own_scan *o = arg;

	o->found = scan_one(o->enc);
	return NULL;
}

TEST(a_scan_from_a_stack_read_whole_does_not_find_its_own_frames)
{
	size_t len = (size_t)2 << 20, page = 4096;
	struct own_scan o = { .enc = range_new(), .found = -2 };
	char *m = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_attr_t at;
	pthread_t th;

	ASSERT_NE(0, o.enc);
	ASSERT_NE(MAP_FAILED, m);
	/* A read-only page first: the buffer is a VMA of its own. */
	ASSERT_EQ(0, mprotect(m, page, PROT_READ));
	ASSERT_EQ(0, pthread_attr_init(&at));
	ASSERT_EQ(0, pthread_attr_setstack(&at, m + page, len));
	ASSERT_EQ(0, pthread_create(&th, &at, scan_from_here, &o));
	pthread_join(th, NULL);
	pthread_attr_destroy(&at);
	EXPECT_EQ(0, o.found);
	munmap(m, len + page);
	range_free(o.enc);
}

TEST_HARNESS_MAIN
