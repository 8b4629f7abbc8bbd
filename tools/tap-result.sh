# shellcheck shell=bash
# Sourced by the tools/*-tap.sh checks: numbered TAP lines.
n=0
result() {	# result STATUS DESCRIPTION [DETAILS]: DETAILS as comments on failure
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n $2"
	else
		[ -n "${3:-}" ] && sed 's/^/# /' <<<"$3"
		echo "not ok $n $2"
	fi
}
skip() {	# skip DESCRIPTION REASON: a result that could not be checked here
	n=$((n + 1))
	echo "ok $n $1 # SKIP $2"
}
