#!/usr/bin/env bash
# TAP checks of what libmheap.a shows a program that links it:
#   archive-tap.sh LIBMHEAP_A TOP WORKDIR
# 1. it defines no global symbol but mh_*;
# 2. those are exactly the MHEAP_API functions and variables of
#    userlib/include/mheap.h;
# 3. tools/archive_clash.c, which defines names the library uses internally
#    (sys_alloc, pa_free, fault_backend, ...) with other types, links with it
#    and runs;
# 4. the library's constructors and destructors run in it (MHEAP_STATS=1
#    prints the statistics at exit);
# 5. tools/archive_medium.c, built with -mcmodel=medium and more than 2 GiB
#    of its own .lbss, links with it and runs (the library's variables are
#    reached with 32-bit offsets: none may lie in .lbss).
set -u
lib=$1 top=$2 work=$3
mkdir -p "$work"
# shellcheck source=tools/tap-result.sh
. "$(dirname "$0")/tap-result.sh"

exported=$(nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u)
others=$(grep -v '^mh_' <<<"$exported")
result "$([ -n "$exported" ] && [ -z "$others" ]; echo $?)" "libmheap.a exports only mh_*" \
	"$(head -20 <<<"$others")"

# A function is declared up to its '(', a variable (MHEAP_API extern) up
# to its '[' or ';'.
header=$top/userlib/include/mheap.h
declared=$( {
	grep -o 'MHEAP_API[^(;]*(' "$header" | grep -o 'mh_[a-z0-9_]*($'
	grep -o 'MHEAP_API extern[^[(;]*[[;]' "$header" | grep -o 'mh_[a-z0-9_]*[[;]$'
} | tr -d '([;' | sort -u)
diff=$(diff <(echo "$declared") <(echo "$exported"))
result "$([ -z "$diff" ]; echo $?)" "libmheap.a exports the MHEAP_API functions and variables of mheap.h, no more" \
	"$diff"

exe=$work/archive_clash
rm -f "$exe"
gcc -std=gnu11 -Wall -Wextra -Werror -O2 -I"$top/userlib/include" -o "$exe" \
	"$top/tools/archive_clash.c" "$lib" -pthread > "$work/archive_clash.log" 2>&1 &&
	"$exe" >> "$work/archive_clash.log" 2>&1
result $? "a program defining sys_alloc, pa_free, fault_backend, ... links with libmheap.a and runs" \
	"$(tail -5 "$work/archive_clash.log")"

desc="libmheap.a's constructors and destructors run (MHEAP_STATS=1)"
if [ -x "$exe" ]; then
	out=$(MHEAP_STATS=1 "$exe" 2>&1)
	result "$(grep -q mallocs <<<"$out"; echo $?)" "$desc" "$out"
else
	skip "$desc" "the program did not build"
fi

exe=$work/archive_medium
rm -f "$exe"
gcc -std=gnu11 -Wall -Wextra -Werror -O2 -mcmodel=medium -I"$top/userlib/include" -o "$exe" \
	"$top/tools/archive_medium.c" "$lib" -pthread > "$work/archive_medium.log" 2>&1 &&
	"$exe" >> "$work/archive_medium.log" 2>&1
result $? "a program built with -mcmodel=medium and over 2 GiB of .lbss links with libmheap.a and runs" \
	"$(tail -5 "$work/archive_medium.log")"
