# SPDX-License-Identifier: MIT
#
# mheap top-level Makefile. The module itself is built by Kbuild (see ./Kbuild);
# everything else is here. `make` (or `make lib`) builds the library and
# `make install` installs it, with nothing but a C compiler and make. Every
# target that needs more (the module, the selftests, the VM, the benchmarks)
# first runs `make deps` once (through a stamp file), so on a bare Debian 12
# machine `make check` and `make demo` are the only commands a newcomer needs.

SHELL := /bin/bash
.DEFAULT_GOAL := lib
.DELETE_ON_ERROR:

TOP    := $(CURDIR)
BUILD  := $(TOP)/build
LOGS   := $(BUILD)/logs

# Kernels the module is built for and the VM boots: every one installed with
# both headers and an image, oldest first (tools/kver.sh; never `uname -r`:
# the host cannot load modules). `make deps` installs two, Debian 12's 6.1
# and the 6.12 of bookworm-backports; `make module vmtest KVERS=<version>`
# takes just one. KVER, the newest, is the one for modules_install and
# demo-vm; bench-vm runs on all of KVERS. Each kernel's module is built in
# its own directory.
KVERS  ?= $(shell $(TOP)/tools/kver.sh)
KVER   ?= $(lastword $(KVERS))
kdir    = /lib/modules/$(1)/build
kmod_dir = $(BUILD)/kmod-$(1)
kmod_ko  = $(BUILD)/kmod-$(1)/kmod/mheap.ko

# Files extracted from Debian's linux-source-6.1 tarball by `make deps`.
KSRC_TAR := /usr/src/linux-source-6.1.tar.xz
KTREE    := $(BUILD)/linux
KSFT_DIR := $(KTREE)/tools/testing/selftests
CHECKPATCH := $(KTREE)/scripts/checkpatch.pl
DEPS_STAMP := $(BUILD)/.deps-done

# The second kernel: a fixed release of the 6.12 series that Debian's
# bookworm-backports suite carries (built there with Debian 12's gcc-12),
# named exactly so that every machine tests the same kernel; the suite's
# metapackages would follow newer releases, and linux-image-amd64 from it
# would replace 6.1's. Change BPO_KVER to move on to a newer one.
BPO_KVER    := 6.12.95+deb12-amd64
BPO_SOURCES := /etc/apt/sources.list.d/debian-backports.sources

DEB_PACKAGES := build-essential linux-headers-amd64 linux-image-amd64 \
	linux-headers-$(BPO_KVER) linux-image-$(BPO_KVER) \
	linux-source-6.1 qemu-system-x86 busybox-static cpio liburing-dev \
	libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev libclang-rt-14-dev gnuplot-nox \
	pkgconf

KSRC_FILES := tools/testing/selftests/kselftest.h \
	tools/testing/selftests/kselftest_harness.h \
	tools/testing/selftests/lib.mk \
	tools/testing/selftests/kselftest \
	scripts/checkpatch.pl scripts/spelling.txt \
	scripts/const_structs.checkpatch

CC      := gcc
WARN    := -Wall -Wextra -Werror
# -fno-semantic-interposition here and -Bsymbolic-functions at link time:
# calls between the library's own exported functions (malloc -> mh_malloc,
# mh_realloc -> mh_free) bind directly instead of through the PLT, one
# indirect jump less per call (nobody interposes mh_* under the library).
LIB_CFLAGS := -std=gnu11 $(WARN) -O2 -g -fPIC -pthread \
	-fvisibility=hidden -ftls-model=initial-exec -fno-semantic-interposition \
	-I$(TOP)/userlib/include -I$(TOP)/userlib -I$(TOP)/uapi

# userlib/preload*.c define the standard names (malloc_trim, operator new,
# ...): they are in the shared object only.
PRELOAD_SRCS := $(wildcard $(TOP)/userlib/preload*.c)
# The library's code in two groups, linked in this order (the archive's
# object and the shared object alike): the sources a default-mode program
# runs, then COLD_SRCS, the features it never runs (the secure mode, user
# arenas with their fault backends, use-after-free handler and quarantine
# scan, the heap check, the statistics' reports). The kernel maps a file's
# cached pages 64 KiB at a time around each page fault, so code of the two
# groups in one 64 KiB block would make every process keep the cold code's
# pages too. The few functions of COLD_SRCS that a default-mode process
# runs (fork handlers) carry MH_DEFAULT_TEXT (internal.h); constructors and
# destructors go to .text.startup and .text.exit, which the linker puts
# ahead of both groups (their order is internal.h's MH_CTOR_*, not the
# link's). Why and what it saves: docs/heap.md, "The library's own pages";
# selftests/preload_footprint_test.c checks it.
COLD_SRCS  := $(wildcard $(addprefix $(TOP)/userlib/,secure*.c arena.c arena_*.c \
	scan*.c fault*.c uaf.c heapcheck*.c stats.c))
LIB_SRCS   := $(filter-out $(PRELOAD_SRCS),$(wildcard $(TOP)/userlib/*.c))
LIB_SRCS   := $(filter-out $(COLD_SRCS),$(LIB_SRCS)) $(filter $(COLD_SRCS),$(LIB_SRCS))
LIB_OBJS   := $(patsubst $(TOP)/userlib/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
COLD_OBJS  := $(patsubst $(TOP)/userlib/%.c,$(BUILD)/obj/%.o,$(COLD_SRCS))
LIB_HDRS   := $(wildcard $(TOP)/userlib/*.h $(TOP)/userlib/include/*.h $(TOP)/uapi/linux/*.h)
# The shared object's malloc.o defines the standard names too (MH_PRELOAD).
PRELOAD_OBJS := $(patsubst $(TOP)/userlib/%.c,$(BUILD)/obj/%.o,$(PRELOAD_SRCS)) \
	$(BUILD)/obj/malloc-preload.o
# The sources with large zero arrays (MH_LARGE_ZERO, internal.h) are built
# twice: for the shared object with the arrays in .lbss, for the archive
# without (a program built -mcmodel=medium may put its own .lbss between
# the library's code and them, more than 2 GiB: tools/archive_medium.c).
LARGE_ZERO_SRCS := $(shell grep -l 'MH_LARGE_ZERO.[a-z]' $(LIB_SRCS))
LARGE_ZERO_OBJS := $(patsubst $(TOP)/userlib/%.c,$(BUILD)/obj/%.o,$(LARGE_ZERO_SRCS))
# The shared object's objects in the order of the two groups: its
# standard names (PRELOAD_OBJS) run in every program, and go with the first.
so_obj      = $(if $(filter $(1),$(LARGE_ZERO_OBJS)),$(BUILD)/obj/so/$(notdir $(1)),$(1))
COLD_SO_OBJS := $(foreach o,$(COLD_OBJS),$(call so_obj,$(o)))
SO_OBJS    := $(foreach o,$(filter-out $(BUILD)/obj/malloc.o $(COLD_OBJS),$(LIB_OBJS)), \
	$(call so_obj,$(o))) $(PRELOAD_OBJS) $(COLD_SO_OBJS)
FAULT_BENCH := $(BUILD)/bench/fault_bench

# The library's version, from MH_VERSION_* in mheap.h (its one place); the
# SONAME changes with the major number only.
MH_VERSION := $(shell awk '/^.define MH_VERSION_(MAJOR|MINOR|PATCH) / { v[$$2] = $$3 } \
	END { print v["MH_VERSION_MAJOR"] "." v["MH_VERSION_MINOR"] "." v["MH_VERSION_PATCH"] }' \
	$(TOP)/userlib/include/mheap.h)
ifneq ($(words $(subst ., ,$(MH_VERSION))),3)
$(error cannot read MH_VERSION_MAJOR, _MINOR and _PATCH from userlib/include/mheap.h)
endif
SONAME     := libmheap.so.$(firstword $(subst ., ,$(MH_VERSION)))

# Where `make install` puts the library, its headers and mheap.pc.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR := $(LIBDIR)/pkgconfig
INSTALLED  := $(LIBDIR)/libmheap.a $(LIBDIR)/libmheap.so.$(MH_VERSION) \
	$(LIBDIR)/$(SONAME) $(LIBDIR)/libmheap.so $(PKGCONFIGDIR)/mheap.pc \
	$(INCLUDEDIR)/mheap.h $(INCLUDEDIR)/linux/mheap.h

.PHONY: all deps lib module check vmtest demo demo-vm bench bench-quick bench-vm bench-faults selftests \
	checkpatch module-w1 module-w1-tap archive-tap bench-smoke-tap vmtest-run clean \
	modules_install dkms-install install uninstall install-tap kmod-install-tap doc-links-tap

# `make` builds the library only; `make all` adds the module, which needs
# kernel headers and so `make deps`.
all: lib module

# ---------------------------------------------------------------- deps
deps: $(DEPS_STAMP)

# Idempotent: apt-get runs only when a package is missing; the kernel files
# are extracted only when the stamp is older than the tarball. The backports
# suite is added to apt's sources once, with the archive and key of the
# machine's debian.sources (Debian's defaults without one); apt gives it a
# low priority, so it only provides what is asked for by name.
$(DEPS_STAMP): $(TOP)/Makefile
	@if [ ! -f $(BPO_SOURCES) ]; then \
		main=/etc/apt/sources.list.d/debian.sources; \
		uri=$$(sed -n 's/^URIs: *//p' $$main 2>/dev/null | head -n 1); \
		key=$$(sed -n 's/^Signed-By: *//p' $$main 2>/dev/null | head -n 1); \
		echo "deps: adding bookworm-backports to apt's sources ($(BPO_SOURCES))"; \
		printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
			"$${uri:-http://deb.debian.org/debian}" \
			"$${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" \
			> $(BPO_SOURCES); \
	fi
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$(echo $$missing | sed 's/^/ /')"; \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@rm -rf $(KTREE) && mkdir -p $(KTREE)
	@echo "deps: extracting kselftest harness and checkpatch from $(KSRC_TAR)"
	@tar -xJf $(KSRC_TAR) -C $(KTREE) --strip-components=1 \
		$(addprefix linux-source-6.1/,$(KSRC_FILES))
	@touch $@

# ---------------------------------------------------------------- library
lib: $(BUILD)/libmheap.a $(BUILD)/libmheap.so

$(BUILD)/obj/%.o: $(TOP)/userlib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/obj/so/%.o: $(TOP)/userlib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -DMH_LARGE_ZERO_SECTIONS -c $< -o $@

$(BUILD)/obj/malloc-preload.o: $(TOP)/userlib/malloc.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -DMH_PRELOAD -c $< -o $@

# The archive holds one object: every library object linked into one (-r),
# then every hidden symbol made local. Hidden visibility alone does not keep
# a static link from seeing the library's internal names (sys_alloc,
# pa_free, ...), which would clash with a program's own; after
# --localize-hidden only the default-visibility functions of mheap.h (mh_*)
# are global. tools/archive-tap.sh checks it.
$(BUILD)/obj/libmheap.o: $(LIB_OBJS)
	$(CC) -r -nostdlib -o $@.tmp $^
	objcopy --localize-hidden $@.tmp $@
	@rm -f $@.tmp

$(BUILD)/libmheap.a: $(BUILD)/obj/libmheap.o
	@rm -f $@
	ar rcs $@ $^

# How the shared object's pages are laid out, for the pages every process
# keeps resident (docs/heap.md, "The library's own pages"):
# - 64 KiB segment alignment (max-page-size): the kernel maps a cached
#   file's pages in 64 KiB blocks around a fault (fault-around, and the
#   page cache's 64 KiB folios); with the code segment starting on a
#   block, its first block holds the first of the two code groups above
#   and the blocks after it cold code only, wherever the loader maps the
#   object. The padding is in the file, never mapped.
# - -lc before the cold objects: what the library takes from
#   libc_nonshared.a (pthread_atfork, called at start-up) is linked after
#   the first group rather than at the end of the code.
# - No DT_FINI (-fini names no symbol): crti.o's _fini does nothing (the
#   destructors are in .fini_array) and lies at the very end of the code,
#   where calling it at exit would map the cold code's last block.
# - Packed relative relocations (DT_RELR), where the linker and libc have
#   them (binutils 2.38, glibc 2.36; the object then needs a glibc with
#   them, which it names, GLIBC_ABI_DT_RELR): the pointers in the static
#   data (360, mh_no_cache's 200 and the option table's 82) took 8.6 kB of
#   RELA entries, in the pages before the code that the loader reads;
#   packed, 136 bytes, and those pages 20 -> 12 kB.
SO_LDFLAGS := -Wl,-soname,$(SONAME) -Wl,-z,defs -Wl,-Bsymbolic-functions \
	-Wl,-z,max-page-size=0x10000 -Wl,-fini=mh_no_dt_fini \
	$(shell $(CC) -shared -Wl,-z,pack-relative-relocs -o /dev/null -x c /dev/null \
		2>/dev/null && echo -Wl,-z,pack-relative-relocs)

# The shared object adds the malloc-family symbols (userlib/preload*.c, and
# aliases in malloc.c built with MH_PRELOAD) so it can be used with
# LD_PRELOAD; the archive exports only mh_*.
$(BUILD)/libmheap.so: $(SO_OBJS)
	$(CC) -shared $(SO_LDFLAGS) -pthread -o $@ $(filter-out $(COLD_SO_OBJS),$^) -lc $(COLD_SO_OBJS)
	ln -sf libmheap.so $(BUILD)/$(SONAME)

# ---------------------------------------------------------------- module
# kbuild puts the objects next to the sources (M= is both), so each kernel
# builds its own copy of them: kmod_tree DIR copies the sources to DIR,
# keeping their times, so that an unchanged file is not rebuilt.
KMOD_SRCS := $(filter-out %.mod.c,$(wildcard $(TOP)/kmod/*.[ch]))
kmod_tree = mkdir -p $(1)/kmod $(1)/uapi/linux && \
	cp -p $(TOP)/Kbuild $(1)/ && \
	cp -p $(TOP)/kmod/Kbuild $(KMOD_SRCS) $(1)/kmod/ && \
	cp -p $(TOP)/uapi/linux/*.h $(1)/uapi/linux/

# build/kmod-<version>/kmod/mheap.ko for every kernel of KVERS.
module: | $(DEPS_STAMP)
	@[ -n "$(strip $(KVERS))" ] || \
		{ echo "module: no kernel with both headers and an image (make deps)" >&2; exit 1; }
	+@set -e; for v in $(KVERS); do \
		echo "module: building for $$v in $(call kmod_dir,$$v)"; \
		$(call kmod_tree,$(call kmod_dir,$$v)); \
		$(MAKE) -C $(call kdir,$$v) M=$(call kmod_dir,$$v) modules; \
	done

# Warnings at W=1 are errors for us: build a fresh copy of the module
# sources with W=1 for every kernel and fail on any compiler diagnostic.
# ($(LOGS)/module-w1-<version>.log, one per kernel.)
module-w1: | $(DEPS_STAMP)
	@mkdir -p $(LOGS)
	+@bad=; for v in $(KVERS); do \
		dir=$(BUILD)/kmod-w1-$$v log=$(LOGS)/module-w1-$$v.log; \
		rm -rf $$dir; \
		$(call kmod_tree,$$dir) || exit 1; \
		echo "module-w1: $$v"; \
		$(MAKE) -C $(call kdir,$$v) M=$$dir W=1 modules 2>&1 | tee $$log; \
		if grep -qE 'warning:|error:' $$log || ! [ -f $$dir/kmod/mheap.ko ]; then \
			bad="$$bad $$v"; fi; \
	done; \
	[ -n "$(strip $(KVERS))" ] || bad=" (no kernel)"; \
	[ -z "$$bad" ] || { echo "module-w1: not clean for$$bad" >&2; exit 1; }

# Installing the module, for KVER (modules_install) or with DKMS for every
# kernel it supports (dkms-install). DESTDIR, when given, is a staging tree
# (a package, tools/kmod-install-tap.sh): everything goes under it, and udev
# and dkms, which act on the running system, are left alone. Both also
# install the udev rule that keeps /dev/mheap 0666 and
# /etc/modules-load.d/mheap.conf, which loads the module at boot.
MHEAP_KVERSION := $(shell sed -n 's/^\#define MHEAP_VERSION_[A-Z]*[[:space:]]*\([0-9]*\)$$/\1/p' \
	$(TOP)/uapi/linux/mheap.h | paste -sd.)
DKMS_SRC := $(DESTDIR)/usr/src/mheap-$(MHEAP_KVERSION)
define install_boot_files
	install -D -m 0644 $(TOP)/tools/99-mheap.rules $(DESTDIR)/etc/udev/rules.d/99-mheap.rules
	install -D -m 0644 $(TOP)/tools/mheap-modules-load.conf $(DESTDIR)/etc/modules-load.d/mheap.conf
	@if [ -z "$(DESTDIR)" ] && command -v udevadm >/dev/null; then \
		udevadm control --reload-rules && \
		udevadm trigger --subsystem-match=misc --sysname-match=mheap || \
		echo "$@: udev did not reload; the rule applies from the next boot" >&2; \
	fi
endef

modules_install: module
	$(MAKE) -C $(call kdir,$(KVER)) M=$(call kmod_dir,$(KVER)) \
		$(if $(DESTDIR),INSTALL_MOD_PATH=$(DESTDIR)) modules_install
	depmod $(if $(DESTDIR),-b $(DESTDIR)) -a $(KVER)
	$(install_boot_files)

# The sources only, no build output, to /usr/src/mheap-<version>/ with
# kmod/dkms.conf at the top, then dkms add, and dkms install for each of
# KVERS (DKMS builds for later kernels by itself: AUTOINSTALL).
dkms-install:
	@[ -n "$(MHEAP_KVERSION)" ] || { echo "$@: no version in uapi/linux/mheap.h" >&2; exit 1; }
	@[ -n "$(DESTDIR)" ] || command -v dkms >/dev/null || \
		{ echo "$@: dkms is not installed (apt-get install dkms)" >&2; exit 1; }
	@[ -n "$(DESTDIR)" ] || [ -n "$(KVERS)" ] || \
		{ echo "$@: no kernel with headers under /lib/modules (apt-get install linux-headers-\$$(uname -r))" >&2; exit 1; }
	rm -rf $(DKMS_SRC)
	$(call kmod_tree,$(DKMS_SRC))
	install -m 0644 $(TOP)/kmod/dkms.conf $(DKMS_SRC)/dkms.conf
	@if [ -z "$(DESTDIR)" ]; then set -e; \
		dkms status mheap/$(MHEAP_KVERSION) | grep -q . || dkms add mheap/$(MHEAP_KVERSION); \
		for v in $(KVERS); do dkms install mheap/$(MHEAP_KVERSION) -k $$v; done; \
	fi
	$(install_boot_files)

# The files are $(INSTALLED), under DESTDIR; uninstall removes them and
# nothing else. mheap.pc gets the paths under PREFIX as ${prefix}/..., so
# that pkg-config --define-prefix can move it with the tree.
install: lib
	sed -e 's|@PREFIX@|$(PREFIX)|' \
		-e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
		-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
		-e 's|@VERSION@|$(MH_VERSION)|' $(TOP)/mheap.pc.in > $(BUILD)/mheap.pc
	install -D -m 0644 $(BUILD)/libmheap.a $(DESTDIR)$(LIBDIR)/libmheap.a
	install -D -m 0755 $(BUILD)/libmheap.so $(DESTDIR)$(LIBDIR)/libmheap.so.$(MH_VERSION)
	ln -sfn libmheap.so.$(MH_VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libmheap.so
	install -D -m 0644 $(BUILD)/mheap.pc $(DESTDIR)$(PKGCONFIGDIR)/mheap.pc
	install -D -m 0644 $(TOP)/userlib/include/mheap.h $(DESTDIR)$(INCLUDEDIR)/mheap.h
	install -D -m 0644 $(TOP)/uapi/linux/mheap.h $(DESTDIR)$(INCLUDEDIR)/linux/mheap.h

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# ---------------------------------------------------------------- selftests
# The selftests build through selftests/Makefile, which includes the kernel's
# lib.mk exactly as it does inside a kernel tree. One build per flavour:
#   host   plain build, run on the host
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan   ThreadSanitizer
#   static statically linked, run inside the VM
SAN_asan   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DMHEAP_SANITIZER=1
SAN_tsan   := -fsanitize=thread -DMHEAP_SANITIZER=1
SAN_host   :=
SAN_static :=
LDF_static := -static
FLAVOURS   := host asan tsan static

# The runners run every *_test binary in the folder (tools/run-selftests.sh,
# tools/vmtest.sh), so a binary whose source was renamed or split away is
# removed first: it would run again, stale, beside its successors.
define selftest_flavour
.PHONY: selftests-$(1)
selftests-$(1): | $(DEPS_STAMP)
	@for t in $$(BUILD)/selftests/$(1)/*_test; do \
		[ -f "$$$$t" ] && [ ! -f "$$(TOP)/selftests/$$$${t##*/}.c" ] || continue; \
		echo "selftests-$(1): removing $$$$t (no selftests/$$$${t##*/}.c)"; rm -f "$$$$t"; \
	done
	$$(MAKE) -C $$(TOP)/selftests KSFT_DIR=$$(KSFT_DIR) MHEAP_DIR=$$(TOP) \
		OUTPUT=$$(BUILD)/selftests/$(1) \
		USERCFLAGS="-Werror $$(SAN_$(1))" USERLDFLAGS="$$(SAN_$(1)) $$(LDF_$(1))"
endef
$(foreach f,$(FLAVOURS),$(eval $(call selftest_flavour,$(f))))

selftests: $(addprefix selftests-,$(FLAVOURS))

# ---------------------------------------------------------------- check
# Every result is a TAP line in $(LOGS)/*.tap; tools/tap-summary.sh counts
# them all and prints the closing `N passed, N failed, N skipped` line.
HOST_RUN := $(TOP)/tools/run-selftests.sh

check: all selftests
	@rm -rf $(LOGS) && mkdir -p $(LOGS)
	-$(HOST_RUN) host $(BUILD)/selftests/host $(LOGS)
	-$(HOST_RUN) asan $(BUILD)/selftests/asan $(LOGS)
	-$(HOST_RUN) tsan $(BUILD)/selftests/tsan $(LOGS)
	-$(MAKE) --no-print-directory vmtest-run
	-$(MAKE) --no-print-directory checkpatch
	-$(MAKE) --no-print-directory doc-links-tap
	-$(MAKE) --no-print-directory module-w1-tap
	-$(MAKE) --no-print-directory archive-tap
	-$(MAKE) --no-print-directory install-tap
	-$(MAKE) --no-print-directory kmod-install-tap
	-$(MAKE) --no-print-directory bench-smoke-tap
	@$(TOP)/tools/tap-summary.sh $(LOGS)

checkpatch: | $(DEPS_STAMP)
	@mkdir -p $(LOGS)
	@files=$$(ls $(TOP)/kmod/*.[ch] $(TOP)/uapi/linux/*.h | grep -v -e '\.mod\.c$$'); \
	if perl $(CHECKPATCH) --no-tree --strict --terse -f $$files \
		> $(LOGS)/checkpatch.out 2>&1 && \
		! grep -qE 'ERROR|WARNING|CHECK' $(LOGS)/checkpatch.out; then \
		echo "ok 1 checkpatch --strict kmod/ uapi/" > $(LOGS)/checkpatch.tap; \
	else \
		cat $(LOGS)/checkpatch.out; \
		echo "not ok 1 checkpatch --strict kmod/ uapi/" > $(LOGS)/checkpatch.tap; \
	fi; cat $(LOGS)/checkpatch.tap

# Every docs/*.md reference in the tree and every relative link in README.md
# and docs/ resolves, anchors included (tools/check-doc-links.py).
doc-links-tap:
	@mkdir -p $(LOGS)
	@if python3 $(TOP)/tools/check-doc-links.py $(TOP) > $(LOGS)/doc-links.out 2>&1; then \
		echo "ok 1 doc links: every docs/ reference and anchor resolves" > $(LOGS)/doc-links.tap; \
	else \
		cat $(LOGS)/doc-links.out; \
		echo "not ok 1 doc links: every docs/ reference and anchor resolves" > $(LOGS)/doc-links.tap; \
	fi; cat $(LOGS)/doc-links.tap

# One result per kernel.
module-w1-tap:
	@mkdir -p $(LOGS)
	@$(MAKE) --no-print-directory module-w1 >/dev/null 2>&1; \
	n=0; for v in $(KVERS); do \
		n=$$((n + 1)); log=$(LOGS)/module-w1-$$v.log; \
		if [ -f $(BUILD)/kmod-w1-$$v/kmod/mheap.ko ] && \
			! grep -qE 'warning:|error:' $$log; then \
			echo "ok $$n module builds clean with W=1 for $$v"; \
		else \
			grep -E 'warning:|error:' $$log >&2; \
			echo "not ok $$n module builds clean with W=1 for $$v"; \
		fi; \
	done > $(LOGS)/module-w1.tap; \
	[ -s $(LOGS)/module-w1.tap ] || \
		echo "not ok 1 module builds clean with W=1: no kernel" > $(LOGS)/module-w1.tap; \
	cat $(LOGS)/module-w1.tap

# What libmheap.a shows a program that links it: only mh_* (tools/archive-tap.sh).
archive-tap: $(BUILD)/libmheap.a
	@mkdir -p $(LOGS)
	@$(TOP)/tools/archive-tap.sh $< $(TOP) $(BUILD)/archive-tap > $(LOGS)/archive.tap; \
	cat $(LOGS)/archive.tap

# make install and uninstall into scratch trees, programs built with
# pkg-config's flags, make lib needing no deps (tools/install-tap.sh).
install-tap: lib | $(DEPS_STAMP)
	@mkdir -p $(LOGS)
	@$(TOP)/tools/install-tap.sh $(TOP) $(BUILD)/install-tap > $(LOGS)/install.tap; \
	cat $(LOGS)/install.tap

# modules_install and dkms-install into a staging tree, and DKMS's own build
# command on the staged sources (tools/kmod-install-tap.sh); needs no
# loadable kernel.
kmod-install-tap: module
	@mkdir -p $(LOGS)
	@$(TOP)/tools/kmod-install-tap.sh $(TOP) $(BUILD)/kmod-install-tap $(KVER) $(KVERS) \
		> $(LOGS)/kmod-install.tap; cat $(LOGS)/kmod-install.tap

# Every benchmark once, asserting only that each produced numbers.
bench-smoke-tap:
	@mkdir -p $(LOGS)
	@if $(MAKE) --no-print-directory -C $(TOP)/bench TOP=$(TOP) BUILD=$(BUILD) smoke \
		> $(LOGS)/bench-smoke.log 2>&1; then \
		echo "ok 1 bench smoke: every benchmark ran and produced numbers" > $(LOGS)/bench-smoke.tap; \
	else \
		tail -20 $(LOGS)/bench-smoke.log; \
		echo "not ok 1 bench smoke: a benchmark failed or produced no number" > $(LOGS)/bench-smoke.tap; \
	fi; cat $(LOGS)/bench-smoke.tap

# ---------------------------------------------------------------- VM
# One VM per kernel, one after the other, each with that kernel's module and
# the same static test binaries; results in $(LOGS)/vm-<version>-*.tap.
vm_dir = $(BUILD)/vm-$(1)

vmtest: all selftests-static
	@rm -f $(LOGS)/vm-*.tap
	$(MAKE) --no-print-directory vmtest-run
	@$(TOP)/tools/tap-summary.sh $(LOGS) 'vm-*.tap'

vmtest-run:
	@mkdir -p $(LOGS)
	@[ -n "$(strip $(KVERS))" ] || \
		{ echo "vmtest: no kernel with both headers and an image (make deps)" >&2; exit 1; }
	@rc=0; for v in $(KVERS); do \
		$(TOP)/tools/vmtest.sh --kver $$v --ko $(call kmod_ko,$$v) \
			--tests $(BUILD)/selftests/static --work $(call vm_dir,$$v) \
			--logs $(LOGS) || rc=1; \
	done; exit $$rc

# ---------------------------------------------------------------- demo
demo: all
	$(CC) -std=gnu11 $(WARN) -O2 -I$(TOP)/userlib/include -o $(BUILD)/demo \
		$(TOP)/tools/demo.c $(BUILD)/libmheap.a -pthread
	$(BUILD)/demo
	$(MAKE) --no-print-directory demo-vm

# The same demo in the VM: with the userspace fallback (mprotect), then with
# the module loaded (kmod), then the module's counters.
demo-vm: all
	$(CC) -std=gnu11 $(WARN) -O2 -I$(TOP)/userlib/include -o $(BUILD)/demo-static \
		$(TOP)/tools/demo.c $(BUILD)/libmheap.a -pthread -static
	@mkdir -p $(LOGS)
	$(TOP)/tools/vmtest.sh --kver $(KVER) --ko $(call kmod_ko,$(KVER)) \
		--demo $(BUILD)/demo-static --work $(call vm_dir,$(KVER)) --logs $(LOGS)

# ---------------------------------------------------------------- bench
bench: all $(FAULT_BENCH)
	$(MAKE) -C $(TOP)/bench TOP=$(TOP) BUILD=$(BUILD) full
	$(MAKE) --no-print-directory bench-faults

# The fault backends: on the host (none, guard, mprotect) and in the VM with
# the module (kmod, mprotect) on every kernel, rendered into
# bench/results/faults.md.
bench-faults: $(FAULT_BENCH)
	$(FAULT_BENCH) | tee $(BUILD)/bench/faults-host.txt
	-$(MAKE) --no-print-directory bench-vm
	python3 $(TOP)/bench/render_faults.py $(TOP)/bench/results/faults.md \
		$(BUILD)/bench/faults-host.txt \
		$(foreach v,$(KVERS),$(LOGS)/vm-$(v)-bench-fault_bench.tap)
	@cat $(TOP)/bench/results/faults.md

bench-quick: all
	$(MAKE) -C $(TOP)/bench TOP=$(TOP) BUILD=$(BUILD) quick

# The fault backends inside the VM with the module loaded (kmod by ioctl and
# by io_uring against mprotect): bench/fault_bench.c, static, run by
# tools/vmtest.sh --bench-only on every kernel of KVERS in turn; its lines
# end up in $(LOGS)/vm-<version>-bench-*.tap.
$(FAULT_BENCH): $(TOP)/bench/fault_bench.c $(TOP)/uapi/linux/mheap.h $(BUILD)/libmheap.a \
		| $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARN) -O2 -I$(TOP)/uapi -I$(TOP)/userlib/include -o $@ $< \
		$(BUILD)/libmheap.a -static -luring -pthread

bench-vm: module $(FAULT_BENCH)
	@mkdir -p $(LOGS)
	@rc=0; for v in $(KVERS); do \
		$(TOP)/tools/vmtest.sh --kver $$v --ko $(call kmod_ko,$$v) \
			--bench-only $(FAULT_BENCH) --work $(call vm_dir,$$v) --logs $(LOGS) || rc=1; \
	done; exit $$rc

clean:
	-$(MAKE) -C $(call kdir,$(KVER)) M=$(TOP) clean
	rm -rf $(BUILD)/obj $(BUILD)/selftests $(BUILD)/logs $(BUILD)/vm \
		$(BUILD)/vm-* $(BUILD)/kmod-* $(BUILD)/libmheap.* $(BUILD)/demo $(BUILD)/archive-tap \
		$(BUILD)/install-tap $(BUILD)/mheap.pc
