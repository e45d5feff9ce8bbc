#!/usr/bin/env bash
# Build the Java peers the tests run against (see tests/peers/README.md).
#
#     bash tests/peers/build.sh               install what is missing (as root), then compile
#     bash tests/peers/build.sh --no-install  compile only if javac and the jars are already there
#
# Quick and silent when the build is up to date; then tests/peers/netty/build/classpath holds
# the java class path. When the packages are missing and cannot be installed (not root, no
# apt-get, apt-get failed) it says why on stderr and exits 0, so that "make test" goes on: the
# tests ask again with --no-install, which exits 3 with the reason, and skip (fail under
# CI=true). A compile error exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$here/netty/HttpReceiver.java"
out="$here/netty/build"
jars=/usr/share/java
# what the receiver loads: Debian's libnetty-java is split into one jar per module, and its
# netty-common uses the separately packaged JCTools
modules=(netty-common netty-buffer netty-transport netty-resolver netty-codec netty-codec-http
         netty-handler jctools-core)
install=yes
[ "${1:-}" = "--no-install" ] && install=no

classpath() {
    local cp="" m
    for m in "${modules[@]}"; do
        [ -f "$jars/$m.jar" ] || return 1
        cp="${cp:+$cp:}$jars/$m.jar"
    done
    printf '%s\n' "$cp"
}

unavailable() {
    rm -f "$out/classpath"
    echo "tests/peers/build.sh: $1" >&2
    if [ "$install" = no ]; then exit 3; fi
    exit 0
}

apt_install() {
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 install --no-install-recommends "$@")
    echo "tests/peers/build.sh: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null \
        || { apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null \
             && DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null; }
}

missing=()
{ command -v javac && command -v java; } >/dev/null || missing+=(default-jdk-headless)
classpath >/dev/null || missing+=(libnetty-java)
if [ "${#missing[@]}" -gt 0 ]; then
    why="the Netty peer needs the Debian packages ${missing[*]}"
    [ "$install" = yes ] || unavailable "$why; as root, bash tests/peers/build.sh installs them"
    [ "$(id -u)" = 0 ] || unavailable "$why, and only root can install them"
    command -v apt-get >/dev/null || unavailable "$why, and there is no apt-get to install them"
    apt_install "${missing[@]}" || unavailable "$why: apt-get install ${missing[*]} failed"
    classpath >/dev/null || unavailable "$why: still missing after apt-get install"
fi
cp="$out:$(classpath)"

if [ -f "$out/HttpReceiver.class" ] && [ "$out/HttpReceiver.class" -nt "$src" ] \
    && [ "$(cat "$out/classpath" 2>/dev/null)" = "$cp" ]; then
    exit 0
fi
rm -rf "$out"
mkdir -p "$out"
javac -nowarn -d "$out" -cp "$cp" "$src"
printf '%s\n' "$cp" > "$out/classpath"
