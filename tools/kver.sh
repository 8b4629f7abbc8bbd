#!/bin/sh
# Print the kernel version the module is built for and the VM boots: the
# newest version that has both /boot/vmlinuz-<ver> and /lib/modules/<ver>/build.
# Never the running kernel's (uname -r): the host cannot load modules.
for dir in /lib/modules/*/build; do
	[ -d "$dir" ] || continue
	ver=${dir#/lib/modules/}
	ver=${ver%/build}
	[ -f "/boot/vmlinuz-$ver" ] && echo "$ver"
done | sort -V | tail -n 1
