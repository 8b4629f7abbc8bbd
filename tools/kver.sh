#!/bin/sh
# Print the kernel versions the module is built for and the VM boots: every
# version that has both /boot/vmlinuz-<ver> (an image to boot) and
# /lib/modules/<ver>/build (headers to build against), oldest first, one a
# line; with --newest only the newest of them. Never the running kernel's
# (uname -r): the host cannot load modules. Headers without an image are
# said on stderr, as they mean a kernel that will not be tested.
case ${1-} in
'' | --newest) ;;
*) echo "usage: $0 [--newest]" >&2; exit 2 ;;
esac
for dir in /lib/modules/*/build; do
	[ -d "$dir" ] || continue
	ver=${dir#/lib/modules/}
	ver=${ver%/build}
	if [ -f "/boot/vmlinuz-$ver" ]; then
		echo "$ver"
	else
		echo "kver.sh: $ver has headers but no /boot/vmlinuz-$ver: left out" >&2
	fi
done | sort -V | if [ "${1-}" = --newest ]; then tail -n 1; else cat; fi
