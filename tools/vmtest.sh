#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Run the selftests inside a VM, with and without the mheap module.
#   vmtest.sh --kver KVER --ko MODULE.ko --tests DIR --work DIR --logs DIR
#             [--bench FILE | --bench-only FILE] [--demo FILE]
# --bench also runs the static benchmark FILE with the module loaded, after
# the tests; --bench-only runs just that (no --tests needed). Its output
# lines come back as TAP diagnostics of LOGS/vm-bench-<name>.tap and are
# printed as they arrive. --demo runs no tests either: the static program
# FILE once with MHEAP_BACKEND=mprotect before the module is loaded and once
# with MHEAP_BACKEND=kmod after (LOGS/vm-demo-*.tap).
#
# The host cannot load modules, so this boots /boot/vmlinuz-KVER (the kernel
# the module was built for) under qemu with pure software emulation (TCG, no
# KVM) and an initramfs made here: busybox, the static test binaries of DIR,
# the module and tools/vm-init.sh as /init. The guest runs every test twice
# (suite "nomod", then suite "kmod" with the module loaded), checks that the
# module loads and unloads and that the kernel log stayed clean, and prints
# everything on its serial console, which qemu hands to us on stdout.
#
# The console carries a small line protocol, described in tools/vm-init.sh:
# guest lines start with "@@mheap <type>", everything else is the kernel's or
# the firmware's and is only shown. From it this writes, every name starting
# with the kernel's version so that runs on several kernels can share LOGS,
#   LOGS/vm-KVER-<suite>-<test>.tap   one TAP file per test binary and suite
#   LOGS/vm-KVER-kmod-insmod.tap, vm-KVER-kmod-rmmod.tap, vm-KVER-dmesg.tap
#   LOGS/vm-KVER-boot.tap        whether the guest, running KVER, ran to the end
#   LOGS/vm-KVER-console.log, vm-KVER-dmesg.log   the raw console, the kernel log
# and prints `vmtest KVER <suite>: N passed, N failed, N skipped` per suite.
#
# Exit status: the guest's own (from its final marker), or 1 when the marker
# never came (boot failure, panic, timeout) or the host noticed lost output.
# qemu's exit code says nothing about the tests, so it is never used as one.
#
# Environment: MHEAP_VM_TIMEOUT (whole VM, seconds, default 900),
# MHEAP_VM_TEST_TIMEOUT (per test binary in the guest, default 300),
# MHEAP_VM_APPEND (more guest kernel parameters, appended to qemu's -append
# line, e.g. "slub_debug=FZPU page_poison=1" to hunt memory corruption;
# empty by default).
set -u
shopt -s extglob nullglob

top=$(cd "$(dirname "$0")/.." && pwd)
VM_TIMEOUT=${MHEAP_VM_TIMEOUT:-900}
TEST_TIMEOUT=${MHEAP_VM_TEST_TIMEOUT:-300}

usage() {
	echo "usage: $0 --kver KVER --ko MODULE.ko --tests DIR --work DIR --logs DIR" \
		"[--bench FILE | --bench-only FILE] [--demo FILE]" >&2
	exit 2
}

kver='' ko='' tests='' work='' logs='' bench='' bench_mode='' demo=''
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case $1 in
	--kver) kver=$2 ;;
	--ko) ko=$2 ;;
	--tests) tests=$2 ;;
	--bench) bench=$2 bench_mode=after ;;
	--bench-only) bench=$2 bench_mode=only ;;
	--demo) demo=$2 ;;
	--work) work=$2 ;;
	--logs) logs=$2 ;;
	*) usage ;;
	esac
	shift 2
done
only=''
if [ "$bench_mode" = only ] || [ -n "$demo" ]; then
	only=1
	[ -z "$tests" ] && tests=-
fi
for arg in "$kver" "$ko" "$tests" "$work" "$logs"; do
	[ -n "$arg" ] || usage
done

mkdir -p "$work" "$logs" || exit 1
# This script owns LOGS/vm-KVER-*: results of an earlier run on this kernel
# must not be counted (other kernels' results stay).
pfx=$logs/vm-$kver
rm -f "$pfx"-*.tap "$pfx"-*.log
console_log=$pfx-console.log
: >"$console_log"

# Microseconds since the epoch, and a microsecond count as seconds.
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
secs() { printf '%d.%d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }

# The run cannot even start: record it where the TAP summary will see it.
fail_boot() {
	printf '1..1\nnot ok 1 vm boot: %s: %s\n' "$kver" "$1" >"$pfx-boot.tap"
	echo "vmtest: $kver: $1" >&2
	exit 1
}

kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || fail_boot "cannot read $kernel"
[ -r "$ko" ] || fail_boot "no module at $ko (make module)"
[ -n "$only" ] || [ -d "$tests" ] ||
	fail_boot "no test directory $tests (make selftests-static)"
[ -z "$bench" ] || [ -x "$bench" ] || fail_boot "no benchmark at $bench"
[ -z "$demo" ] || [ -x "$demo" ] || fail_boot "no demo program at $demo"
command -v qemu-system-x86_64 >/dev/null || fail_boot "qemu-system-x86_64 not installed"
[ -x /bin/busybox ] || fail_boot "/bin/busybox (busybox-static) not installed"

# ---------------------------------------------------------------- initramfs
build_initramfs() {
	local root=$work/root t applet

	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,tests,mheap} || return 1
	cp /bin/busybox "$root/bin/busybox" || return 1
	for applet in $("$root/bin/busybox" --list); do
		[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
	done
	ln -s bin "$root/sbin"
	install -m 0755 "$top/tools/vm-init.sh" "$root/init" || return 1
	install -m 0644 "$ko" "$root/mheap/mheap.ko" || return 1
	# The loop driver, for the O_DIRECT tests of kmod_access_test (Debian
	# builds it as a module); optional: without it those tests skip.
	loop_ko=$(find "/lib/modules/$kver/kernel/drivers/block" -name 'loop.ko*' 2>/dev/null | head -n 1)
	case $loop_ko in
	*.ko) install -m 0644 "$loop_ko" "$root/mheap/loop.ko" ;;
	*.ko.xz) xz -dc "$loop_ko" >"$root/mheap/loop.ko" ;;
	*.ko.zst) zstd -dcq "$loop_ko" >"$root/mheap/loop.ko" ;;
	esac
	if [ -n "$bench" ]; then
		mkdir -p "$root/bench" || return 1
		objcopy --strip-debug "$bench" "$root/bench/${bench##*/}" 2>/dev/null ||
			cp "$bench" "$root/bench/${bench##*/}" || return 1
	fi
	if [ -n "$demo" ]; then
		mkdir -p "$root/demo" || return 1
		objcopy --strip-debug "$demo" "$root/demo/demo" 2>/dev/null ||
			cp "$demo" "$root/demo/demo" || return 1
	fi
	[ -n "$only" ] && tests=/nonexistent
	for t in "$tests"/*_test; do
		if ! [ -f "$t" ] || ! [ -x "$t" ]; then
			continue
		fi
		# Debug info only slows down unpacking in the emulated guest;
		# the host keeps the full binaries for addr2line.
		objcopy --strip-debug "$t" "$root/tests/${t##*/}" 2>/dev/null ||
			cp "$t" "$root/tests/${t##*/}" || return 1
	done
	# The kernel's built-in initramfs has /dev/console too; this is in case
	# it does not, and needs root (the runner is root; ignore otherwise).
	mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null
	# Sorted names and fixed owners: the same inputs give the same archive.
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$work/initramfs.cpio.gz"
	local rcs=("${PIPESTATUS[@]}")
	[ "${rcs[0]}" -eq 0 ] && [ "${rcs[1]}" -eq 0 ]
}

build_initramfs || fail_boot "could not build the initramfs in $work"
ntests=$(find "$work/root/tests" -type f | wc -l)

# ---------------------------------------------------------------- console
declare -A open_keys=()	# TAP files begun and not yet ended
seen_init=0 seen_done=0 guest_status=1 host_fail=0
start_us=0 init_us=0 done_us=0 guest_uptime='?' guest_kernel='?'

tap_file() { echo "$pfx-${1//\//-}.tap"; }

# tap_counts FILE: "pass fail skip", counted as tools/tap-summary.sh does.
tap_counts() {
	local p s n
	p=$(grep -cE '^ok [0-9]+' "$1")
	s=$(grep -cE '^ok [0-9]+.*# *SKIP' "$1")
	n=$(grep -cE '^not ok [0-9]+' "$1")
	echo "$((p - s)) $n $s"
}

# add_failure KEY TEXT: a host-side verdict appended to KEY's TAP file.
add_failure() {
	local key=$1
	shift
	printf 'not ok 1 %s: %s\n' "$key" "$*" | tee -a "$(tap_file "$key")"
	host_fail=1
}

# One console line. Guest records may be preceded by a fragment of a kernel
# message that interleaved, so the prefix is searched, not anchored.
handle_line() {
	local line=$1 kind rest key text file
	local -a got want

	if ! [[ $line =~ @@mheap\ ([a-z]+)\ ?(.*)$ ]]; then
		# Kernel or firmware output: show it without terminal escapes.
		line=${line//$'\e'[[(]*([0-9;?])[A-Za-z]/}
		line=${line//$'\e'c/}
		[ -n "${line//[[:space:]]/}" ] && echo "vm console: $line"
		return
	fi
	kind=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]}
	key=${rest%% *}
	text=${rest#"$key"}
	text=${text# }
	case $kind in
	init)
		seen_init=1 init_us=$(now_us)
		[[ $rest =~ uptime=([^ ]*) ]] && guest_uptime=${BASH_REMATCH[1]}
		[[ $rest =~ kernel=([^ ]*) ]] && guest_kernel=${BASH_REMATCH[1]}
		echo "vmtest: guest /init started $(secs $((init_us - start_us))) s" \
			"after qemu started (kernel $guest_kernel, uptime ${guest_uptime} s)"
		;;
	begin)
		[[ $key =~ ^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)?$ ]] || return
		: >"$(tap_file "$key")"
		open_keys[$key]=1
		echo "# ---- vm $key"
		;;
	tap)
		[ -n "${open_keys[$key]+set}" ] || return
		printf '%s\n' "$text" >>"$(tap_file "$key")"
		printf '%s\n' "$text"
		;;
	end)
		[ -n "${open_keys[$key]+set}" ] || return
		unset "open_keys[$key]"
		# The guest counted its own copy; a difference means lines were
		# lost or garbled on the way, and a lost line may be a failure.
		[[ $text =~ pass=([0-9]+)\ fail=([0-9]+)\ skip=([0-9]+) ]] || {
			add_failure "$key" "garbled end marker: $text"
			return
		}
		want=("${BASH_REMATCH[@]:1}")
		file=$(tap_file "$key")
		read -r -a got <<<"$(tap_counts "$file")"
		if [ "${got[*]}" != "${want[*]}" ]; then
			add_failure "$key" "TAP lines lost on the console (guest" \
				"pass/fail/skip ${want[*]}, host ${got[*]})"
		fi
		;;
	log)
		[[ $key =~ ^[A-Za-z0-9_-]+$ ]] &&
			printf '%s\n' "$text" >>"$pfx-$key.log"
		;;
	done)
		seen_done=1 done_us=$(now_us)
		[[ $rest =~ ^status=([0-9]+) ]] && guest_status=${BASH_REMATCH[1]}
		echo "vmtest: guest finished with status $guest_status"
		;;
	esac
}

# ---------------------------------------------------------------- boot
# quiet + loglevel=4: only errors and worse reach the console during boot;
# /init lowers it further before the first test. init=/init: should /init
# fail to run, the kernel panics (and qemu stops) instead of falling back to
# busybox's own init and sitting there until the timeout. MHEAP_* are unknown
# to the kernel and become /init's environment. panic_print=0x20: a panic
# replays the whole kernel log on the console, so that what came before an
# oops (a warning, a slab report) is kept although /init lets only
# emergencies through to the console and the final dmesg never comes.
# page_poison=1: freed pages are poisoned and checked when next allocated,
# so a page the module frees while it is still mapped or written shows as
# "pagealloc: memory corruption", which /init's scan fails on.
append="console=ttyS0 panic=-1 quiet loglevel=4 init=/init panic_print=0x20 page_poison=1"
append+=" MHEAP_TEST_TIMEOUT=$TEST_TIMEOUT"
[ -n "$bench_mode" ] && append+=" MHEAP_VM_BENCH=$bench_mode"
[ -n "$demo" ] && append+=" MHEAP_VM_DEMO=1"
[ -n "${MHEAP_VM_APPEND:-}" ] && append+=" $MHEAP_VM_APPEND"
qemu=(qemu-system-x86_64 -nographic -no-reboot -m 1G -smp 2 -cpu max
	-accel tcg -nic none
	-kernel "$kernel" -initrd "$work/initramfs.cpio.gz" -append "$append")

echo "vmtest: booting $kver with $ntests test binaries (TCG, timeout ${VM_TIMEOUT} s)"
echo "vmtest: ${qemu[*]}"
start_us=$(now_us)
# qemu runs in a process substitution so that its pid is known: if this
# script is interrupted, the trap stops the VM rather than leaving it to run
# into the timeout. --foreground keeps it in our process group, so a Ctrl-C
# on the terminal reaches it too. stdin from /dev/null: with -nographic qemu
# would otherwise put a terminal into raw mode and read monitor commands.
exec 3< <(exec timeout --foreground -k 10 "$VM_TIMEOUT" "${qemu[@]}" \
	</dev/null 2>&1)
qemu_pid=$!
# shellcheck disable=SC2317 # called from the trap
interrupted() {
	kill "$qemu_pid" 2>/dev/null
	printf '1..1\nnot ok 1 vm boot: %s: vmtest was interrupted\n' "$kver" >"$pfx-boot.tap"
	exit 130
}
trap interrupted INT TERM HUP
while IFS= read -r line <&3 || [ -n "$line" ]; do
	line=${line%$'\r'}
	printf '%s\n' "$line" >>"$console_log"
	handle_line "$line"
done
wait "$qemu_pid"
qemu_rc=$?
trap - INT TERM HUP
exec 3<&-
end_us=$(now_us)

# ---------------------------------------------------------------- verdict
# diag: console lines as TAP diagnostics, minus terminal escapes.
diag() { sed -e 's/\x1b[[(][0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/^/# /'; }

for key in "${!open_keys[@]}"; do
	add_failure "$key" "did not finish: the guest stopped (crash, panic or timeout)"
done

if [ "$seen_done" -eq 1 ] && [ "$guest_kernel" != "$kver" ]; then
	# Results from some other kernel must not pass for this one's.
	printf '1..1\nnot ok 1 vm boot: %s: the guest ran kernel %s\n' \
		"$kver" "$guest_kernel" >"$pfx-boot.tap"
	echo "vmtest: booted $kver but the guest says it runs $guest_kernel" >&2
	host_fail=1
elif [ "$seen_done" -eq 1 ]; then
	printf '1..1\nok 1 vm boot: %s: /init after %s s, all done after %s s\n' \
		"$kver" "$(secs $((init_us - start_us)))" \
		"$(secs $((done_us - start_us)))" >"$pfx-boot.tap"
else
	if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
		why="timed out after $VM_TIMEOUT s"
	elif [ "$seen_init" -eq 0 ]; then
		why="the kernel never started /init"
	else
		why="the guest stopped before its end marker"
	fi
	{
		printf '1..1\nnot ok 1 vm boot: %s: %s (qemu exit status %s)\n' \
			"$kver" "$why" "$qemu_rc"
		echo "# kernel trouble on the console, if any:"
		grep -E 'Kernel panic|BUG:|Oops|WARNING:|general protection|RIP:' \
			"$console_log" | head -n 20 | diag
		echo "# last console lines:"
		tail -n 20 "$console_log" | diag
	} >"$pfx-boot.tap"
	echo "vmtest: $kver: no end marker from the guest: $why" >&2
fi

# summary LABEL FILE...: one line per suite, saying which kernel ran it.
summary() {
	local label=$1 f p=0 n=0 s=0 c
	shift
	for f in "$@"; do
		[ -f "$f" ] || continue
		read -r -a c <<<"$(tap_counts "$f")"
		p=$((p + c[0])) n=$((n + c[1])) s=$((s + c[2]))
	done
	echo "vmtest $kver $label: $p passed, $n failed, $s skipped"
}
summary nomod "$pfx"-nomod-*.tap
summary kmod "$pfx"-kmod-*.tap
summary guest "$pfx-boot.tap" "$pfx-dmesg.tap"
if [ "$seen_init" -eq 1 ]; then
	echo "vmtest: qemu ran $(secs $((end_us - start_us))) s; boot to /init" \
		"took $(secs $((init_us - start_us))) s (kernel uptime $guest_uptime s)"
else
	echo "vmtest: qemu ran $(secs $((end_us - start_us))) s; /init never started"
fi

if [ "$seen_done" -ne 1 ]; then
	exit 1
elif [ "$guest_status" -ne 0 ]; then
	exit "$guest_status"
elif [ "$host_fail" -ne 0 ]; then
	exit 1
fi
exit 0
