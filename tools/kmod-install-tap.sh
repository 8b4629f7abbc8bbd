#!/usr/bin/env bash
# TAP checks of the module's install targets, into a staging tree (no
# loadable kernel needed; tools/install-tap.sh checks the library's):
#   kmod-install-tap.sh TOP WORKDIR KVER [KVERS...]
# 1. make modules_install DESTDIR=<tree> KVER=<KVER> succeeds;
# 2. it puts mheap.ko (compressed where the kernel compresses its modules)
#    under <tree>/lib/modules/<KVER>/, and depmod lists it;
# 3. the udev rule is tools/99-mheap.rules, its lines are udev syntax, and
#    it gives /dev/mheap the mode the module asks for (0666);
# 4. /etc/modules-load.d/mheap.conf names the module, and nothing else;
# 5. make dkms-install DESTDIR=<tree> copies the sources, and no build
#    output, to <tree>/usr/src/mheap-<version>/ with dkms.conf at the top;
# 6. dkms.conf's PACKAGE_VERSION is the ABI version of uapi/linux/mheap.h,
#    and docs/kmod.md and README.md name the same mheap-<version>;
# 7. BUILD_EXCLUSIVE_KERNEL matches every kernel of KVERS, and no other
#    series;
# 8. DKMS's MAKE[0], run as DKMS runs it (on a copy of the staged tree),
#    builds mheap.ko for KVER where BUILT_MODULE_LOCATION says;
# 9. the real dkms, if installed, takes the staged tree (dkms is not a
#    dependency: skipped without it).
set -u
top=$1 work=$2 kver=$3
shift 3
kvers=("$@")
[ ${#kvers[@]} -gt 0 ] || kvers=("$kver")
# shellcheck source=tools/tap-result.sh
. "$(dirname "$0")/tap-result.sh"

rm -rf "$work"
mkdir -p "$work"
root=$work/root
version=$(sed -n 's/^#define MHEAP_VERSION_[A-Z]*[[:space:]]*\([0-9]*\)$/\1/p' \
	"$top/uapi/linux/mheap.h" | paste -sd.)

log=$work/modules_install.log
make -C "$top" --no-print-directory modules_install DESTDIR="$root" KVER="$kver" \
	KVERS="${kvers[*]}" >"$log" 2>&1
result $? "make modules_install DESTDIR=... KVER=$kver" "$(tail -20 "$log")"

ko=$(find "$root/lib/modules/$kver" -name 'mheap.ko*' 2>/dev/null | head -1)
dep=$(grep -s 'mheap\.ko' "$root/lib/modules/$kver/modules.dep")
result "$([ -n "$ko" ] && [ -n "$dep" ]; echo $?)" \
	"mheap.ko under lib/modules/$kver/ (${ko#"$root"}), listed by depmod" \
	"$(find "$root" -type f | head -20)"

rules=$root/etc/udev/rules.d/99-mheap.rules
# A rule line: KEY=="v", KEY="v", ... (udev(7): comparisons and assignments).
pair='[A-Z_]+(\{[^}]*\})?(==|!=|=|\+=|-=|:=)"[^"]*"'
bad=$(grep -vE '^[[:space:]]*(#|$)' "$rules" 2>/dev/null |
	grep -vE "^$pair(, *$pair)*$")
mode=$(sed -n 's/^[[:space:]]*\.mode[[:space:]]*=[[:space:]]*\(0[0-7]*\),$/\1/p' \
	"$top/kmod/mheap_dev.c")
result "$(cmp -s "$rules" "$top/tools/99-mheap.rules" && [ -z "$bad" ] &&
	grep -qE '^KERNEL=="mheap", SUBSYSTEM=="misc", .*MODE="'"$mode"'"' "$rules"; echo $?)" \
	"udev rule installed, valid, and gives /dev/mheap mode $mode as the module does" \
	"${bad:-$(cat "$rules" 2>&1)}"

load=$(grep -vE '^[[:space:]]*([#;]|$)' "$root/etc/modules-load.d/mheap.conf" 2>&1)
result "$([ "$load" = mheap ]; echo $?)" "/etc/modules-load.d/mheap.conf loads mheap at boot" \
	"$load"

log=$work/dkms-install.log
src=$root/usr/src/mheap-$version
make -C "$top" --no-print-directory dkms-install DESTDIR="$root" >"$log" 2>&1
st=$?
want=$(cd "$top" && { echo Kbuild; echo dkms.conf; echo kmod/Kbuild;
	printf '%s\n' kmod/*.[ch] uapi/linux/*.h | grep -v '\.mod\.c$'; } | sort)
got=$(cd "$src" 2>/dev/null && find . -type f | sed 's|^\./||' | sort)
result "$([ $st -eq 0 ] && [ "$want" = "$got" ]; echo $?)" \
	"make dkms-install DESTDIR=... stages the sources alone in /usr/src/mheap-$version/" \
	"$(tail -5 "$log"; diff <(echo "$want") <(echo "$got"))"

conf=$top/kmod/dkms.conf
pkgver=$(bash -c 'source "$1" && echo "$PACKAGE_VERSION"' _ "$conf" 2>&1)
result "$([ "$pkgver" = "$version" ] &&
	grep -qF "mheap-$version" "$top/docs/kmod.md" &&
	grep -qF "mheap-$version" "$top/README.md"; echo $?)" \
	"dkms.conf, docs/kmod.md and README.md say version $version (uapi/linux/mheap.h)" \
	"dkms.conf: $pkgver"

regex=$(bash -c 'source "$1" && echo "$BUILD_EXCLUSIVE_KERNEL"' _ "$conf" 2>&1)
wrong=
for k in "${kvers[@]}"; do [[ $k =~ $regex ]] || wrong+=" $k (not matched)"; done
for k in 5.10.0-30-amd64 6.10.11+bpo-amd64 6.13.0 6.18.44 7.1.0; do
	[[ $k =~ $regex ]] && wrong+=" $k (matched)"
done
result "$([ -n "$regex" ] && [ -z "$wrong" ]; echo $?)" \
	"BUILD_EXCLUSIVE_KERNEL ($regex) matches ${kvers[*]} and no other series" "$wrong"

# DKMS copies the source tree to $dkms_tree/<name>/<version>/build and runs
# MAKE[0] there with kernel_source_dir set.
tree=$work/dkms
mkdir -p "$tree/mheap/$version"
cp -a "$src" "$tree/mheap/$version/build" 2>/dev/null
log=$work/dkms-make.log
built=$(kernel_source_dir=/lib/modules/$kver/build dkms_tree=$tree \
	bash -c 'source "$1" && cd "$dkms_tree/mheap/$2/build" && eval "${MAKE[0]}" >&2 &&
		echo "$PWD/${BUILT_MODULE_LOCATION[0]}${BUILT_MODULE_NAME[0]}.ko"' \
	_ "$conf" "$version" 2>"$log")
result "$([ -n "$built" ] && [ -f "$built" ]; echo $?)" \
	"dkms.conf's MAKE[0] builds mheap.ko for $kver from the staged sources" "$(tail -10 "$log")"

if command -v dkms >/dev/null; then
	out=$(dkms status --dkmstree "$tree" --sourcetree "$root/usr/src" mheap/"$version" 2>&1)
	result $? "dkms reads the staged tree" "$out"
else
	skip "dkms reads the staged tree" "dkms is not installed"
fi
echo "1..$n"
