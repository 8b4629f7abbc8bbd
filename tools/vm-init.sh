#!/bin/sh
# SPDX-License-Identifier: MIT
#
# PID 1 of the vmtest guest (busybox sh). tools/vmtest.sh copies it into the
# initramfs as /init together with busybox, the static test binaries in
# /tests and the module in /mheap/mheap.ko.
#
# What it does, in order:
#   1. suite "nomod": every /tests/*_test without the module loaded;
#   2. insmod mheap.ko (a TAP result: kmod/insmod);
#   3. suite "kmod": every test again with the module loaded;
#   4. with MHEAP_VM_BENCH=after or only (vmtest.sh --bench/--bench-only),
#      every /bench/* binary, module still loaded (result: bench/<name>,
#      its output as diagnostics); "only" skips steps 1 and 3;
#      with MHEAP_VM_DEMO=1 (vmtest.sh --demo) steps 1 and 3 are skipped
#      too: /demo/demo runs with MHEAP_BACKEND=mprotect before step 2 and
#      with MHEAP_BACKEND=kmod after it (results: demo/mprotect, demo/kmod),
#      followed by the module's counters (demo/counters);
#   5. rmmod mheap (a TAP result: kmod/rmmod);
#   6. dmesg scan for BUG/WARNING/Oops/general protection (result: dmesg);
#   7. the end marker with the overall status, then power off.
#
# Everything goes to the serial console, which the host demultiplexes. Every
# line this script means for the host starts with "@@mheap " followed by a
# record type; anything else on the console (kernel messages) is ignored:
#   @@mheap init uptime=<s> kernel=<release>
#                                     /init started (boot time), on which kernel
#   @@mheap begin <key>               a TAP file starts; <key> is suite/test
#                                     or a single word, the host writes it to
#                                     $LOGS/vm-<key with / as ->.tap
#   @@mheap tap <key> <text>          one line of that file, verbatim
#   @@mheap end <key> rc=<n> pass=<n> fail=<n> skip=<n>
#                                     the file is complete; the counts let the
#                                     host notice lines lost on the console
#   @@mheap log <name> <text>         a line for $LOGS/vm-<name>.log
#   @@mheap done status=<n>           all finished; n=0 only if all passed
# The host treats a missing "done" as a failed run, so dying anywhere in
# here (a panic, a hang) can never read as a pass.
#
# Settings come from the kernel command line (unknown name=value parameters
# end up in init's environment): MHEAP_TEST_TIMEOUT, seconds per binary;
# MHEAP_VM_BENCH and MHEAP_VM_DEMO, see step 4; MHEAP_VM_SUITES, the suites
# of steps 1 and 3 to run ("nomod kmod" by default; "kmod" alone halves a
# run that hunts a module bug, given through vmtest.sh's MHEAP_VM_APPEND).
#
# For shellcheck, file-wide: functions run through check() are not dead code.
# shellcheck disable=SC2317
set -u
PATH=/bin
export PATH

TESTS=/tests
KO=/mheap/mheap.ko
TEST_TIMEOUT=${MHEAP_TEST_TIMEOUT:-300}
BENCH=${MHEAP_VM_BENCH:-}
DEMO=${MHEAP_VM_DEMO:-}
SUITES=1
if [ "$BENCH" = only ] || [ -n "$DEMO" ]; then
	SUITES=
fi
RUN_SUITES=${MHEAP_VM_SUITES:-nomod kmod}
status=0

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /dev/shm
mount -t tmpfs tmpfs /dev/shm
cd /tmp || exit 1
# The console is the protocol channel: from here on only emergencies may
# interleave with it. The whole kernel log is read with dmesg at the end.
dmesg -n 1
exec </dev/null >/dev/console 2>&1

echo "@@mheap init uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

# count ERE FILE: how many lines of FILE match (0 if none).
count() {
	n=$(grep -cE "$1" "$2" 2>/dev/null)
	echo "${n:-0}"
}

# end KEY RC FILE: close the host's file KEY after checking FILE, the guest's
# copy of it. A binary that failed without saying so, or said nothing, gets
# a "not ok" line of its own here, as tools/run-selftests.sh does on the host
# (kselftest status: 0 pass, 4 skip, anything else is a failure).
end() {
	key=$1 rc=$2 file=$3
	fail=$(count '^not ok [0-9]+' "$file")
	ok=$(count '^ok [0-9]+' "$file")
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ] && [ "$fail" -eq 0 ]; then
		line="not ok 1 $key exited with status $rc"
	elif [ $((ok + fail)) -eq 0 ] && [ "$rc" -eq 4 ]; then
		# ksft_exit_skip() before any test: "1..0 # SKIP why" and
		# status 4. Count it as one skip so it shows, never as a pass.
		why=$(sed -n 's/^1\.\.0 *# *SKIP *//p' "$file" | head -n 1)
		line="ok 1 # SKIP $key: ${why:-skipped as a whole}"
	elif [ $((ok + fail)) -eq 0 ]; then
		line="not ok 1 $key printed no TAP result (status $rc)"
	else
		line=
	fi
	if [ -n "$line" ]; then
		echo "$line" >>"$file"
		echo "@@mheap tap $key $line"
	fi
	fail=$(count '^not ok [0-9]+' "$file")
	skip=$(count '^ok [0-9]+.*# *SKIP' "$file")
	pass=$(($(count '^ok [0-9]+' "$file") - skip))
	[ "$fail" -eq 0 ] || status=1
	echo "@@mheap end $key rc=$rc pass=$pass fail=$fail skip=$skip"
}

# emit KEY FILE: send a finished TAP file to the host.
emit() {
	echo "@@mheap begin $1"
	awk -v p="@@mheap tap $1 " '{ print p $0 }' "$2"
	end "$1" 0 "$2"
}

# run_test SUITE BINARY: run one test binary, streaming its output live.
run_test() {
	key=$1/${2##*/}
	out=/tmp/$1-${2##*/}.out
	echo "@@mheap begin $key"
	# The status travels through a file: in a pipeline $? is the last
	# command's. SIGKILL on timeout: a hung binary must not stop the run.
	{
		timeout -s KILL "$TEST_TIMEOUT" "$2" </dev/null 2>&1
		echo "$?" >/tmp/rc
	} | tee "$out" | awk -v p="@@mheap tap $key " '{ print p $0; fflush() }'
	rc=$(cat /tmp/rc 2>/dev/null)
	rm -f /tmp/rc
	end "$key" "${rc:-255}" "$out"
}

run_suite() {
	export MHEAP_TEST_FLAVOUR="vm-$1"
	found=0
	for t in "$TESTS"/*_test; do
		[ -x "$t" ] || continue
		found=1
		run_test "$1" "$t"
	done
	if [ "$found" -eq 0 ]; then
		echo "not ok 1 no test binaries in $TESTS" >/tmp/none.out
		emit "$1/none" /tmp/none.out
	fi
}

# wait_node PATH present|absent: devtmpfs updates are quick but let them settle.
wait_node() {
	i=0
	while [ "$i" -lt 50 ]; do
		if [ -e "$1" ]; then
			[ "$2" = present ] && return 0
		else
			[ "$2" = absent ] && return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# check KEY DESCRIPTION COMMAND...: a one-result TAP file, ok if COMMAND
# succeeds; its output follows as diagnostics.
check() {
	key=$1 desc=$2
	shift 2
	out=/tmp/check.out
	if "$@" >/tmp/cmd.out 2>&1; then
		printf '1..1\nok 1 %s\n' "$desc" >"$out"
	else
		printf '1..1\nnot ok 1 %s\n' "$desc" >"$out"
	fi
	sed 's/^/# /' /tmp/cmd.out >>"$out"
	emit "$key" "$out"
}

load_module() {
	insmod "$KO" || return 1
	wait_node /dev/mheap present || { echo "/dev/mheap did not appear"; return 1; }
}

unload_module() {
	rmmod mheap || return 1
	wait_node /dev/mheap absent || { echo "/dev/mheap is still there"; return 1; }
	[ ! -e /sys/module/mheap ] || { echo "/sys/module/mheap is still there"; return 1; }
}

export MHEAP_VM=1
unset MHEAP_KO

# Block devices for O_DIRECT tests (kmod_access_test): not the module under
# test, just the loop driver, if the host had one to copy.
[ -f /mheap/loop.ko ] && insmod /mheap/loop.ko max_loop=4 2>/dev/null

# run_bench: every benchmark once, its lines as diagnostics of one result.
run_bench() {
	for b in /bench/*; do
		[ -x "$b" ] || continue
		check "bench/${b##*/}" "${b##*/} ran to the end" \
			timeout -s KILL "$TEST_TIMEOUT" "$b"
	done
}

# counters: the module's global counters, one "name value" line each.
counters() {
	for f in /sys/class/misc/mheap/*; do
		[ -f "$f" ] && [ "${f##*/}" != dev ] && [ "${f##*/}" != uevent ] &&
			echo "${f##*/} $(cat "$f")"
	done
	return 0
}

# want_suite NAME: whether MHEAP_VM_SUITES asks for suite NAME.
want_suite() {
	[ -n "$SUITES" ] || return 1
	case " $RUN_SUITES " in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

want_suite nomod && run_suite nomod
[ -n "$DEMO" ] && check demo/mprotect "demo with the userspace fallback" \
	env MHEAP_BACKEND=mprotect timeout -s KILL "$TEST_TIMEOUT" /demo/demo

loaded=0
check kmod/insmod "insmod mheap.ko creates /dev/mheap" load_module
grep -q '^ok' /tmp/check.out && loaded=1

export MHEAP_KO="$KO"
want_suite kmod && run_suite kmod
unset MHEAP_KO
[ -n "$BENCH" ] && run_bench
if [ -n "$DEMO" ]; then
	check demo/kmod "demo with the module" \
		env MHEAP_BACKEND=kmod timeout -s KILL "$TEST_TIMEOUT" /demo/demo
	check demo/counters "the module's counters" counters
fi

if [ "$loaded" -eq 1 ]; then
	check kmod/rmmod "rmmod mheap removes /dev/mheap" unload_module
else
	printf '1..1\nok 1 # SKIP rmmod: the module never loaded\n' >/tmp/skip.out
	emit kmod/rmmod /tmp/skip.out
fi

# Any kernel splat during the run is a failure, whichever test caused it.
# Besides BUG:, WARNING:, Oops and GPFs: SLUB's own reports ("BUG <cache>
# (<taint>): ...", with slub_debug) and page poisoning's ("pagealloc:
# memory corruption", with page_poison=1), which tools/vmtest.sh's
# MHEAP_VM_APPEND can switch on.
dmesg >/tmp/dmesg.txt
awk '{ print "@@mheap log dmesg " $0 }' /tmp/dmesg.txt
pattern='BUG:|BUG [^ ]+ \(|WARNING:|Oops|general protection|pagealloc: (memory corruption|single bit error)'
if grep -qE "$pattern" /tmp/dmesg.txt; then
	printf '1..1\nnot ok 1 kernel log has no BUG/WARNING/Oops/GPF\n' >/tmp/scan.out
	grep -E "$pattern" /tmp/dmesg.txt | sed 's/^/# /' >>/tmp/scan.out
else
	printf '1..1\nok 1 kernel log has no BUG/WARNING/Oops/GPF\n' >/tmp/scan.out
fi
emit dmesg /tmp/scan.out

echo "@@mheap done status=$status"
# Let the UART drain the last line before the machine goes away.
sleep 1
poweroff -f
# Not reached; if it is, ending PID 1 panics the kernel, and with panic=-1
# and qemu's -no-reboot that stops the VM as well.
exit "$status"
