#!/usr/bin/env bash
# Build ljpeer (tests/peers/golumber/ljpeer.go) on Beats' own Lumberjack library, go-lumber.
#
#     GO_LUMBER_SRC=/path/to/go-lumber bash tests/peers/golumber/build.sh
#
# go-lumber is not in Debian, PyPI or npm, the only registries CI reaches, so it cannot be
# fetched here: point GO_LUMBER_SRC at a checkout of github.com/elastic/go-lumber (v0.2.x).
# Its one dependency, klauspost/compress, is Debian's golang-github-klauspost-compress-dev; Go
# is golang-go. Prints the binary's path on stdout; exits 3 with the reason on stderr when
# something is missing (the tests then skip), non-zero on a compile error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/build"
compress=/usr/share/gocode/src/github.com/klauspost/compress
[ -n "${GO_LUMBER_SRC:-}" ] || { echo "GO_LUMBER_SRC is not set (a checkout of github.com/elastic/go-lumber)" >&2; exit 3; }
[ -f "$GO_LUMBER_SRC/client/v2/client.go" ] || { echo "GO_LUMBER_SRC=$GO_LUMBER_SRC is not a go-lumber checkout" >&2; exit 3; }
command -v go >/dev/null || { echo "no go: apt-get install golang-go" >&2; exit 3; }
[ -d "$compress" ] || { echo "no $compress: apt-get install golang-github-klauspost-compress-dev" >&2; exit 3; }
mkdir -p "$out"
if [ ! -x "$out/ljpeer" ] || [ "$here/ljpeer.go" -nt "$out/ljpeer" ]; then
    cp "$here/ljpeer.go" "$out/main.go"
    cat > "$out/go.mod" <<MOD
module ljpeer

go 1.19

require (
	github.com/elastic/go-lumber v0.2.0
	github.com/klauspost/compress v1.15.9
)

replace github.com/elastic/go-lumber => $GO_LUMBER_SRC

replace github.com/klauspost/compress => $compress
MOD
    (cd "$out" && GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GOCACHE="$out/.cache" go build -o ljpeer . >&2)
fi
echo "$out/ljpeer"
