#!/usr/bin/env bash
# TAP checks of building and installing the library:
#   install-tap.sh TOP WORKDIR
# 1. `make -n` and `make -n lib` in a build folder without the deps stamp
#    compile the library and run no apt-get, no tar, no `make deps`;
# 2. `make install DESTDIR=... PREFIX=/usr` installs exactly the expected
#    files, with the symlinks libmheap.so -> libmheap.so.MAJOR ->
#    libmheap.so.VERSION, VERSION being mheap.pc's;
# 3. the shared object's SONAME is libmheap.so.MAJOR;
# 4. a program built with `pkg-config --define-prefix --cflags --libs mheap`
#    against that tree needs libmheap.so.MAJOR, loads it from the tree and
#    prints mh_version() equal to the header's MH_VERSION and to mheap.pc's;
# 5. the same statically, with `pkg-config --static` and -static;
# 6. a C++ program (tools/install_check_cxx.cc) built with pkg-config's
#    flags as C++11 and C++20, -Wall -Wextra -Werror -pedantic, runs: the
#    header is usable from C++;
# 7. PREFIX, LIBDIR and INCLUDEDIR put the files where they say, and
#    mheap.pc's paths follow;
# 8. `make uninstall` with the same variables leaves no file behind.
set -u
top=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
# shellcheck source=tools/tap-result.sh
. "$(dirname "$0")/tap-result.sh"
mk() { make -C "$top" --no-print-directory "$@"; }
files() { (cd "$1" && find . ! -type d -printf '%P %l\n' | sort); }

# 1
out=$( { mk -n BUILD="$work/nodeps"; mk -n BUILD="$work/nodeps" lib; } 2>&1)
bad=$(grep -nE 'apt-get|dpkg|\btar\b|\.deps-done|(make|MAKE).* deps' <<<"$out")
result "$([ -z "$bad" ] && grep -q -- '-c .*/userlib/malloc.c' <<<"$out" &&
	[ "$(grep -c -- '-shared .*libmheap.so' <<<"$out")" -eq 2 ] ; echo $?)" \
	"make and make lib without the deps stamp compile the library and install no deps" \
	"${bad:-$out}"

# 2
dest=$work/usr-tree
mk install DESTDIR="$dest" PREFIX=/usr > "$work/install.log" 2>&1
export PKG_CONFIG_PATH=$dest/usr/lib/pkgconfig
ver=$(pkg-config --modversion mheap 2>>"$work/install.log")
major=${ver%%.*}
want="usr/include/linux/mheap.h 
usr/include/mheap.h 
usr/lib/libmheap.a 
usr/lib/libmheap.so libmheap.so.$major
usr/lib/libmheap.so.$major libmheap.so.$ver
usr/lib/libmheap.so.$ver 
usr/lib/pkgconfig/mheap.pc "
diff=$(diff <(echo "$want") <(files "$dest") 2>&1)
result "$([[ $ver =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && [ -z "$diff" ]; echo $?)" \
	"make install DESTDIR=... PREFIX=/usr installs exactly the library $ver, its links, headers and mheap.pc" \
	"$(tail -5 "$work/install.log"; echo "version '$ver'"; echo "$diff")"

# 3
soname=$(readelf -d "$dest/usr/lib/libmheap.so.$ver" 2>&1 | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
result "$([ "$soname" = "libmheap.so.$major" ]; echo $?)" \
	"the installed shared object's SONAME is libmheap.so.$major" "SONAME '$soname'"

# 4, 5
src=$top/tools/install_check.c
dyn=$work/install_check
flags=$(pkg-config --define-prefix --cflags --libs mheap 2>&1)
# shellcheck disable=SC2086 # flags are words
gcc -std=gnu11 -Wall -Wextra -Werror -o "$dyn" "$src" $flags > "$work/dyn.log" 2>&1 &&
	readelf -d "$dyn" | grep -q "NEEDED.*\[libmheap.so.$major\]" &&
	LD_LIBRARY_PATH=$dest/usr/lib ldd "$dyn" | grep -q "libmheap.so.$major => $dest/usr/lib/libmheap.so.$major" &&
	LD_LIBRARY_PATH=$dest/usr/lib "$dyn" > "$work/dyn.out" 2>> "$work/dyn.log" &&
	[ "$(cat "$work/dyn.out")" = "$ver $ver" ]
result $? "a program built with pkg-config's flags links libmheap.so.$major from the tree, mh_version() = MH_VERSION = $ver" \
	"$(echo "flags: $flags"; tail -5 "$work/dyn.log"; cat "$work/dyn.out" 2>/dev/null)"

static=$work/install_check_static
flags=$(pkg-config --define-prefix --static --cflags --libs mheap 2>&1)
# shellcheck disable=SC2086
gcc -std=gnu11 -Wall -Wextra -Werror -static -o "$static" "$src" $flags > "$work/static.log" 2>&1 &&
	! readelf -d "$static" | grep -q NEEDED &&
	"$static" > "$work/static.out" 2>> "$work/static.log" &&
	[ "$(cat "$work/static.out")" = "$ver $ver" ]
result $? "the same program links statically with pkg-config --static and runs" \
	"$(echo "flags: $flags"; tail -5 "$work/static.log"; cat "$work/static.out" 2>/dev/null)"

# 6
cxx=$work/install_check_cxx
flags=$(pkg-config --define-prefix --cflags --libs mheap 2>&1)
: > "$work/cxx.log"
for std in c++11 c++20; do
	# shellcheck disable=SC2086
	g++ -std=$std -Wall -Wextra -Werror -pedantic -o "$cxx-$std" "$top/tools/install_check_cxx.cc" \
		$flags >> "$work/cxx.log" 2>&1 &&
		LD_LIBRARY_PATH=$dest/usr/lib "$cxx-$std" > "$work/cxx-$std.out" 2>> "$work/cxx.log" &&
		[ "$(cat "$work/cxx-$std.out")" = "$ver $ver" ] || echo "$std: failed" >> "$work/cxx.log"
done
result "$(! grep -q failed "$work/cxx.log"; echo $?)" \
	"a C++11 and a C++20 program built with pkg-config's flags, -Wall -Wextra -Werror -pedantic, run" \
	"$(echo "flags: $flags"; head -20 "$work/cxx.log")"

# 7
opt=$work/opt-tree
vars=(PREFIX=/opt/mh LIBDIR=/opt/mh/lib64 INCLUDEDIR=/opt/mh/inc)
mk install DESTDIR="$opt" "${vars[@]}" > "$work/install-opt.log" 2>&1
want="opt/mh/inc/linux/mheap.h 
opt/mh/inc/mheap.h 
opt/mh/lib64/libmheap.a 
opt/mh/lib64/libmheap.so libmheap.so.$major
opt/mh/lib64/libmheap.so.$major libmheap.so.$ver
opt/mh/lib64/libmheap.so.$ver 
opt/mh/lib64/pkgconfig/mheap.pc "
diff=$(diff <(echo "$want") <(files "$opt") 2>&1)
pc=$(grep -E '^(prefix|libdir|includedir)=' "$opt/opt/mh/lib64/pkgconfig/mheap.pc" 2>&1)
# shellcheck disable=SC2016 # ${prefix} is mheap.pc's, not the shell's
wantpc='prefix=/opt/mh
libdir=${prefix}/lib64
includedir=${prefix}/inc'
result "$([ -z "$diff" ] && [ "$pc" = "$wantpc" ]; echo $?)" \
	"PREFIX, LIBDIR and INCLUDEDIR place the files and mheap.pc's paths" \
	"$(tail -5 "$work/install-opt.log"; echo "$diff"; echo "$pc")"

# 8
mk uninstall DESTDIR="$dest" PREFIX=/usr > "$work/uninstall.log" 2>&1
mk uninstall DESTDIR="$opt" "${vars[@]}" >> "$work/uninstall.log" 2>&1
left=$(files "$dest"; files "$opt")
result "$([ -z "$left" ] && [ -d "$dest/usr/lib" ]; echo $?)" \
	"make uninstall with the same variables leaves no file behind" \
	"$(tail -5 "$work/uninstall.log"; echo "$left")"
