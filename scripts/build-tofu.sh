#!/usr/bin/env bash
# make tofu: builds OpenTofu from its Go module into bin/tofu, for running the acceptance tests
# with OpenTofu (make test-tofu) on a machine without it. Needs only Go and the Go module proxy
# (or a module cache that already holds the module); takes a few minutes on two cores.
# Usage: build-tofu.sh [VERSION [OUTDIR]]   (defaults: 1.11.6, ./bin)
set -euo pipefail

version=${1:-1.11.6}
version=${version#v}
out=$(realpath -m "${2:-bin}")
mod=github.com/opentofu/opentofu

# The module cache is read-only and go build refuses a module path as a main package from
# outside a module, so build from a writable copy of the module's source.
src=$(go mod download -json "$mod@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -n "$src" ] && [ -d "$src" ] || { echo "build-tofu: go mod download $mod@v$version gave no source directory" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"

mkdir -p "$out"
# version.dev=no: a release build, so "tofu version" prints "OpenTofu v1.11.6", not "-dev".
(cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $mod/version.dev=no" -o "$out/tofu" ./cmd/tofu)
"$out/tofu" version
