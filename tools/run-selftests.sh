#!/usr/bin/env bash
# Run every selftest binary in a folder and keep its TAP output.
#   run-selftests.sh LABEL DIR LOGDIR
# Writes LOGDIR/LABEL-<test>.tap per binary. A binary that dies or exits with
# a failure status without printing a `not ok` line gets one added, so a crash
# can never read as a pass. Environment for the tests:
#   MHEAP_TEST_FLAVOUR=LABEL, MHEAP_PRELOAD_LIB=<top>/build/libmheap.so
set -u
label=$1 dir=$2 logs=$3
top=$(cd "$(dirname "$0")/.." && pwd)
export MHEAP_TEST_FLAVOUR=$label
export MHEAP_PRELOAD_LIB=$top/build/libmheap.so
# Sanitizer runtimes: fail hard on the first report, keep going otherwise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=0:handle_segv=0:allow_user_segv_handler=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# TSan's lock-order checker tracks at most 64 locks held at once; the fork
# handlers hold every mcentral lock (70, one a size class) by design, so it is off.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:detect_deadlocks=0}
mkdir -p "$logs"
status=0
for t in "$dir"/*_test; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	out="$logs/$label-$name.tap"
	echo "# ---- $label: $name"
	timeout -k 10 600 "$t" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	# kselftest exit codes: 0 pass, 4 skip; anything else is a failure.
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ] && ! grep -q '^not ok' "$out"; then
		echo "not ok 1 $label/$name exited with status $rc" | tee -a "$out"
	fi
	[ "$rc" -eq 0 ] || [ "$rc" -eq 4 ] || status=1
done
exit $status
