#!/usr/bin/env bash
# Count TAP results in LOGDIR/*.tap (or a given glob) and print the closing
#   N passed, N failed, N skipped
# line. Only top-level result lines count (`ok`/`not ok` at column 0); a
# `# SKIP` directive counts as skipped, never as passed. Exit 1 on any failure
# or when nothing ran at all.
set -u
logs=$1 glob=${2:-*.tap}
shopt -s nullglob
files=("$logs"/$glob)
pass=0 fail=0 skip=0
for f in "${files[@]}"; do
	p=$(grep -cE '^ok [0-9]+' "$f" | head -1)
	s=$(grep -cE '^ok [0-9]+.*# *SKIP' "$f" | head -1)
	n=$(grep -cE '^not ok [0-9]+' "$f" | head -1)
	pass=$((pass + p - s)) skip=$((skip + s)) fail=$((fail + n))
	[ "$n" -gt 0 ] && grep -E '^not ok' "$f" | sed "s|^|FAIL $(basename "$f" .tap): |"
done
if [ $((pass + fail + skip)) -eq 0 ]; then
	echo "no test results found in $logs/$glob" >&2
	fail=1
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
