// SPDX-License-Identifier: GPL-2.0
/*
 * The standard functions of libmheap.so against glibc's, case by case
 * (fixture `wrappers`): each variant calls one function (malloc, realloc,
 * reallocarray, the aligned allocations, malloc_usable_size, mallopt,
 * malloc_info, malloc_stats, mallinfo2, mallinfo, malloc_trim) the same way
 * through glibc (this process's own malloc) and through libmheap.so
 * (dlopen'ed, so both run side by side), and the two must agree on success
 * or failure and on errno (on posix_memalign's return value: it need not
 * keep or set errno). A block must also have the alignment and the usable
 * size the contract promises, and malloc_usable_size(NULL) must be 0. Sizes
 * assume 4 KiB pages, as on x86-64.
 */
#define _GNU_SOURCE
#include "preload_lib.h"

#define PAGE 4096

/* What one call did: whether it returned a block, and its error if not. */
struct outcome {
	bool ok;
	int err;
	bool aligned;	/* a block has the alignment asked for */
	bool fits;	/* its usable size covers the size asked for; 0 for NULL */
};

FIXTURE(wrappers)
{
	void *lib;
	struct family glibc, mheap;
};

/* One case: call a function of f, return the block (NULL if none) and its
 * error (0 on success); or, for a function that returns a number (or a
 * property of the heap that both must have, as 1), that number and the
 * error. */
FIXTURE_VARIANT(wrappers)
{
	void *(*call)(const struct family *f, int *err);
	long (*number)(const struct family *f, int *err);
	bool property;		/* the number must be 1, glibc's included */
	size_t align, size;	/* what a block must have */
	/* C17 (DR 460) and glibc from 2.38 fail with EINVAL; glibc 2.36
	 * rounds the alignment up as memalign does. */
	bool einval_since_glibc_2_38;
};

FIXTURE_SETUP(wrappers)
{
	const char *why;
	void *libc;

	if (!open_mheap(&self->lib, &self->mheap, &why)) {
		ASSERT_NE(NULL, why);
		SKIP(return, "%s", why);
	}
	ASSERT_EQ(PAGE, sysconf(_SC_PAGESIZE));
	libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		SKIP(return, "no shared glibc in this process to compare with (static build)");
	ASSERT_TRUE(load_family(libc, &self->glibc));
}

FIXTURE_TEARDOWN(wrappers)
{
	if (self->lib)
		dlclose(self->lib);
}

static struct outcome call(const struct family *f, const FIXTURE_VARIANT(wrappers) *v)
{
	struct outcome o;
	void *p;

	errno = 0;
	p = v->call(f, &o.err);
	o.ok = p != NULL;
	o.aligned = (uintptr_t)p % v->align == 0;
	o.fits = p ? f->malloc_usable_size(p) >= v->size : f->malloc_usable_size(p) == 0;
	f->free(p);
	return o;
}

TEST_F(wrappers, behave_as_glibc)
{
	struct outcome want, got;

	RETURN_IF_SETUP_SKIPPED();
	if (variant->number) {
		int want_err = 0, got_err = 0;
		long want_n, got_n;

		errno = 0;
		want_n = variant->number(&self->glibc, &want_err);
		errno = 0;
		got_n = variant->number(&self->mheap, &got_err);
		if (variant->property)
			ASSERT_EQ(1, want_n) TH_LOG("glibc breaks the case's own contract");
		EXPECT_EQ(want_n, got_n);
		EXPECT_EQ(want_err, got_err);
		return;
	}
	want = call(&self->glibc, variant);
	got = call(&self->mheap, variant);
	if (variant->einval_since_glibc_2_38)
		want = (struct outcome){ .err = EINVAL, .aligned = true, .fits = true };
	ASSERT_TRUE(want.aligned && want.fits) TH_LOG("glibc breaks the case's own contract");
	EXPECT_EQ(want.ok, got.ok);
	EXPECT_EQ(want.err, got.err) TH_LOG("errno %d (%s), glibc %d (%s)",
		got.err, strerror(got.err), want.err, strerror(want.err));
	EXPECT_TRUE(got.aligned);
	EXPECT_TRUE(got.fits);
}

/* The error of a call that returns a block or NULL with errno. */
static void *block(void *p, int *err)
{
	*err = p ? 0 : errno;
	return p;
}

#define CASE(name, expr, ...) \
	static void *name(const struct family *f, int *err) { return block(expr, err); } \
	FIXTURE_VARIANT_ADD(wrappers, name) { .call = name, __VA_ARGS__ }

CASE(valloc_returns_a_page_aligned_block, f->valloc(100), .align = PAGE, .size = 100);
CASE(valloc_of_0_returns_a_page_aligned_block, f->valloc(0), .align = PAGE, .size = 0);
CASE(valloc_of_SIZE_MAX_fails_with_ENOMEM, f->valloc(SIZE_MAX), .align = 1);
CASE(pvalloc_of_0_returns_a_page, f->pvalloc(0), .align = PAGE, .size = 0);
CASE(pvalloc_rounds_the_size_up_to_whole_pages, f->pvalloc(1), .align = PAGE, .size = PAGE);
CASE(pvalloc_of_SIZE_MAX_fails_with_ENOMEM, f->pvalloc(SIZE_MAX), .align = 1);
CASE(pvalloc_of_a_size_whose_rounding_wraps_fails_with_ENOMEM, f->pvalloc(SIZE_MAX - PAGE + 2),
     .align = 1);
CASE(memalign_returns_a_block_so_aligned, f->memalign(256, 100), .align = 256, .size = 100);
CASE(memalign_of_alignment_0_is_malloc, f->memalign(0, 100), .align = 1, .size = 100);
CASE(memalign_rounds_alignment_3_up_to_4, f->memalign(3, 100), .align = 4, .size = 100);
CASE(memalign_rounds_alignment_24_up_to_32, f->memalign(24, 100), .align = 32, .size = 100);
CASE(memalign_of_size_0_rounds_the_alignment_up_too, f->memalign(24, 0), .align = 32, .size = 0);
CASE(memalign_of_SIZE_MAX_fails_with_ENOMEM, f->memalign(64, SIZE_MAX), .align = 1);
CASE(memalign_of_the_largest_power_of_two_alignment_fails_with_ENOMEM,
     f->memalign(SIZE_MAX / 2 + 1, 1), .align = 1);
CASE(memalign_above_the_largest_power_of_two_fails_with_EINVAL, f->memalign(SIZE_MAX / 2 + 2, 1),
     .align = 1);
CASE(aligned_alloc_returns_a_block_so_aligned, f->aligned_alloc(64, 100), .align = 64, .size = 100);
CASE(aligned_alloc_of_size_0_returns_a_block, f->aligned_alloc(64, 0), .align = 64, .size = 0);
CASE(aligned_alloc_of_SIZE_MAX_fails_with_ENOMEM, f->aligned_alloc(64, SIZE_MAX), .align = 1);
CASE(aligned_alloc_of_alignment_24_fails_with_EINVAL, f->aligned_alloc(24, 100), .align = 1,
     .einval_since_glibc_2_38 = true);
CASE(aligned_alloc_of_alignment_0_fails_with_EINVAL, f->aligned_alloc(0, 100), .align = 1,
     .einval_since_glibc_2_38 = true);
CASE(reallocarray_allocates_n_times_size, f->reallocarray(NULL, 10, 10), .align = 1, .size = 100);
CASE(reallocarray_whose_product_overflows_fails_with_ENOMEM, f->reallocarray(NULL, SIZE_MAX, 2),
     .align = 1);
CASE(reallocarray_to_0_elements_returns_NULL_without_error, f->reallocarray(f->malloc(10), 0, 10),
     .align = 1);
CASE(realloc_to_0_returns_NULL_without_error, f->realloc(f->malloc(10), 0), .align = 1);
CASE(realloc_of_NULL_to_0_returns_a_block, f->realloc(NULL, 0), .align = 1, .size = 0);
CASE(realloc_to_SIZE_MAX_fails_with_ENOMEM, f->realloc(NULL, SIZE_MAX), .align = 1);

/* posix_memalign's error is its return value; *out is set only on success. */
#define POSIX_MEMALIGN_CASE(name, al, sz, ...) \
	static void *name(const struct family *f, int *err) \
	{ \
		void *p = NULL; \
		*err = f->posix_memalign(&p, al, sz); \
		return p; \
	} \
	FIXTURE_VARIANT_ADD(wrappers, name) { .call = name, __VA_ARGS__ }

POSIX_MEMALIGN_CASE(posix_memalign_returns_a_block_so_aligned, 64, 100, .align = 64, .size = 100);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_0_fails_with_EINVAL, 0, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_not_a_multiple_of_a_pointer_fails_with_EINVAL,
		    4, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_alignment_24_fails_with_EINVAL, 24, 100, .align = 1);
POSIX_MEMALIGN_CASE(posix_memalign_of_SIZE_MAX_fails_with_ENOMEM, 64, SIZE_MAX, .align = 1);

/* A case of a function that returns a number: expr, with no error. */
#define NUMBER_CASE(name, expr, ...) \
	static long name(const struct family *f, int *err) { *err = 0; return (expr); } \
	FIXTURE_VARIANT_ADD(wrappers, name) { .number = name, __VA_ARGS__ }

/* mallopt: 1 for every parameter, known or not, but for an M_MXFAST out of
 * glibc's range [0, 160]. (Each test runs in a child of its own: what glibc
 * does with a value does not outlive it.) */
NUMBER_CASE(mallopt_M_MXFAST_in_range_returns_1, f->mallopt(M_MXFAST, 64));
NUMBER_CASE(mallopt_M_MXFAST_above_160_returns_0, f->mallopt(M_MXFAST, 161));
NUMBER_CASE(mallopt_M_MXFAST_negative_returns_0, f->mallopt(M_MXFAST, -1));
NUMBER_CASE(mallopt_M_TRIM_THRESHOLD_returns_1, f->mallopt(M_TRIM_THRESHOLD, 128 << 10));
NUMBER_CASE(mallopt_M_TOP_PAD_returns_1, f->mallopt(M_TOP_PAD, 0));
NUMBER_CASE(mallopt_M_MMAP_THRESHOLD_returns_1, f->mallopt(M_MMAP_THRESHOLD, 1 << 30));
NUMBER_CASE(mallopt_M_MMAP_MAX_returns_1, f->mallopt(M_MMAP_MAX, 65536));
NUMBER_CASE(mallopt_M_CHECK_ACTION_returns_1, f->mallopt(M_CHECK_ACTION, 3));
NUMBER_CASE(mallopt_M_PERTURB_returns_1, f->mallopt(M_PERTURB, 0));
NUMBER_CASE(mallopt_M_ARENA_TEST_returns_1, f->mallopt(M_ARENA_TEST, 8));
NUMBER_CASE(mallopt_M_ARENA_MAX_of_0_returns_1, f->mallopt(M_ARENA_MAX, 0));
NUMBER_CASE(mallopt_M_KEEP_returns_1, f->mallopt(M_KEEP, 0));
NUMBER_CASE(mallopt_of_an_unknown_parameter_returns_1, f->mallopt(12345, 1));

/* malloc_info's error is its return value: EINVAL for options other than 0. */
static long malloc_info_to_dev_null(const struct family *f, int options)
{
	FILE *fp = fopen("/dev/null", "w");
	int ret = f->malloc_info(options, fp);

	fclose(fp);
	return ret;
}

NUMBER_CASE(malloc_info_with_options_0_returns_0, malloc_info_to_dev_null(f, 0));
NUMBER_CASE(malloc_info_with_options_1_returns_EINVAL, malloc_info_to_dev_null(f, 1));

/* Whether xml is the document malloc_info writes: it starts with
 * <malloc version="1">, ends with </malloc> and a newline, and every
 * element is closed, in order. */
static bool malloc_xml_well_formed(const char *xml)
{
	static const char head[] = "<malloc version=\"1\">\n", tail[] = "</malloc>\n";
	char open[8][16];
	size_t len = strlen(xml);
	int depth = 0;

	if (strncmp(xml, head, strlen(head)) || len < strlen(tail) ||
	    strcmp(xml + len - strlen(tail), tail))
		return false;
	for (const char *p = strchr(xml, '<'); p; p = strchr(p, '<')) {
		const char *end = strchr(p, '>');
		size_t n;

		if (!end)
			return false;
		if (p[1] == '/') {		/* </name> closes the innermost */
			n = (size_t)(end - p - 2);
			if (!depth || strlen(open[depth - 1]) != n || strncmp(open[depth - 1], p + 2, n))
				return false;
			depth--;
		} else if (end[-1] != '/') {	/* <name ...> opens one */
			n = strcspn(p + 1, " >");
			if (depth == 8 || n >= sizeof(open[0]))
				return false;
			memcpy(open[depth], p + 1, n);
			open[depth++][n] = '\0';
		}
		p = end + 1;
	}
	return depth == 0;
}

static long malloc_info_writes_its_xml(const struct family *f)
{
	char *xml = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&xml, &len);
	bool ok;

	ok = f->malloc_info(0, fp) == 0;
	fclose(fp);
	ok = ok && malloc_xml_well_formed(xml);
	if (!ok)
		fprintf(stderr, "# malloc_info wrote:\n%s", xml);
	free(xml);
	return ok;
}

NUMBER_CASE(malloc_info_writes_well_formed_xml, malloc_info_writes_its_xml(f), .property = true);

/* What malloc_stats prints on stderr: glibc's lines, in glibc's order, each
 * number right-aligned in 10 columns. */
static long malloc_stats_lines_are_glibcs(const struct family *f)
{
	static const char *const lines[] = {
		"Arena 0:", "system bytes     = ", "in use bytes     = ", "Total (incl. mmap):",
		"system bytes     = ", "in use bytes     = ", "max mmap regions = ",
		"max mmap bytes   = ",
	};
	char out[1024], *line, *save;
	int saved = dup(STDERR_FILENO), fd = fileno(tmpfile());
	unsigned i = 0;
	ssize_t n;

	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	f->malloc_stats();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		const char *num = line + strlen(lines[i < 8 ? i : 0]);

		if (i == 8 || strncmp(line, lines[i], strlen(lines[i])))
			return 0;
		if (num[0] && (strlen(num) < 10 || strspn(num, " 0123456789") != strlen(num) ||
			       num[strlen(num) - 1] == ' '))
			return 0;
	}
	return i == 8;
}

NUMBER_CASE(malloc_stats_prints_glibc_lines, malloc_stats_lines_are_glibcs(f), .property = true);

/* Bytes in use, per mallinfo2, grow by at least the size of a block and
 * shrink again when it is freed. 100,000 bytes: for glibc, above its
 * thread cache (whose blocks count as in use) and below its mmap threshold
 * (whose blocks do not count). */
static long mallinfo2_counts_a_block(const struct family *f)
{
	size_t before = f->mallinfo2().uordblks, during, after;
	char *p = f->malloc(100000);

	memset(p, 1, 100000);
	during = f->mallinfo2().uordblks;
	f->free(p);
	after = f->mallinfo2().uordblks;
	return during >= before + 100000 && after <= during - 100000;
}

NUMBER_CASE(mallinfo2_counts_a_block_in_use_then_not, mallinfo2_counts_a_block(f),
	    .property = true);

/* mallinfo is mallinfo2 truncated to int. */
static long mallinfo_is_mallinfo2_as_int(const struct family *f)
{
	struct mallinfo2 m2 = f->mallinfo2();
	struct mallinfo m = f->mallinfo();

	return m.arena == (int)m2.arena && m.uordblks == (int)m2.uordblks &&
	       m.fordblks == (int)m2.fordblks && m.hblkhd == (int)m2.hblkhd &&
	       m.hblks == (int)m2.hblks && m.keepcost == (int)m2.keepcost;
}

NUMBER_CASE(mallinfo_is_mallinfo2_truncated_to_int, mallinfo_is_mallinfo2_as_int(f),
	    .property = true);

/* malloc_trim returns 1 when it released memory, else 0. */
NUMBER_CASE(malloc_trim_returns_0_or_1, f->malloc_trim(0) <= 1, .property = true);

TEST_HARNESS_MAIN
