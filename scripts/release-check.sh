#!/usr/bin/env bash
# make release-check: validates .goreleaser.yml and builds a linux/amd64 snapshot of the
# release offline, then installs the snapshot's .deb packages into a scratch root
# (dpkg -x) and checks every file lands where docs/release.md says.
# goreleaser is built from the Go module proxy (tools/release/go.mod pins it), not downloaded
# as a binary; the first run builds it (a few minutes), later runs reuse bin/goreleaser.
#
# Usage: release-check.sh [--if-buildable]
# --if-buildable (make test): skip, saying why and exiting 0, when goreleaser cannot be had (it is
# not built yet and its modules can neither be found in the module cache nor downloaded) or
# unzip or dpkg-deb is missing; any other failure still fails.
set -euo pipefail

optional=false
case "${1:-}" in
--if-buildable) optional=true ;;
"") ;;
*) echo "usage: $0 [--if-buildable]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/bin
gr=$bin/goreleaser

fail() { echo "release-check: $*" >&2; exit 1; }
# skip REASON: what --if-buildable does where the check cannot run; otherwise a failure.
skip() {
	if $optional; then
		echo "release-check: skipped: $*" >&2
		exit 0
	fi
	fail "$*"
}

for tool in unzip dpkg-deb; do
	command -v "$tool" >/dev/null || skip "it needs $tool (Debian: apt-get install unzip dpkg)"
done

# bin/goreleaser is kept between runs, keyed by the module files that pin it.
want=$(cat tools/release/go.mod tools/release/go.sum | sha256sum)
if [ ! -x "$gr" ] || [ "$(cat "$gr.version" 2>/dev/null)" != "$want" ]; then
	if ! (cd tools/release && go mod download) >/dev/null 2>&1; then
		skip "goreleaser's modules (tools/release/go.mod) are neither in the module cache nor downloadable (GOPROXY=$(go env GOPROXY))"
	fi
	echo "release-check: building goreleaser from tools/release/go.mod (a few minutes the first time)"
	mkdir -p "$bin"
	(cd tools/release && CGO_ENABLED=0 go build -trimpath -o "$gr.tmp" github.com/goreleaser/goreleaser/v2)
	mv "$gr.tmp" "$gr"
	echo "$want" >"$gr.version"
fi

# 1. The real configuration is valid.
"$gr" check --config .goreleaser.yml

# 2. A snapshot for linux/amd64 only: the same configuration with each build's platforms cut down.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e 's/^    goos: \[.*\]$/    goos: [linux]/' -e 's/^    goarch: \[.*\]$/    goarch: [amd64]/' .goreleaser.yml >"$tmp/snapshot.yml"
grep -q 'goos: \[linux\]' "$tmp/snapshot.yml" || fail "could not restrict the snapshot to linux/amd64"
dist=$root/dist
GOPROXY=off "$gr" release --snapshot --clean --skip=sign,publish,announce --config "$tmp/snapshot.yml" ||
	fail "snapshot failed"

# 3. The artifacts are there, in the registry's layout.
shopt -s nullglob
zips=("$dist"/terraform-provider-agentlab_*_linux_amd64.zip)
[ ${#zips[@]} -eq 1 ] || fail "want one provider zip for linux_amd64 in dist/, found ${#zips[@]}"
sums=("$dist"/terraform-provider-agentlab_*_SHA256SUMS)
[ ${#sums[@]} -eq 1 ] || fail "want one SHA256SUMS file in dist/"
grep -q "_manifest.json\$" "${sums[0]}" || fail "${sums[0]} does not cover the registry manifest"
grep -q "$(basename "${zips[0]}")\$" "${sums[0]}" || fail "${sums[0]} does not cover the provider zip"
! grep -q '\.deb$' "${sums[0]}" || fail "${sums[0]} lists .deb packages: the registry reads only the provider's files"
# The manifest is uploaded from the tree under its release name (release.extra_files).
cp terraform-registry-manifest.json "${sums[0]%_SHA256SUMS}_manifest.json"
(cd "$dist" && sha256sum --quiet -c "$(basename "${sums[0]}")") || fail "SHA256SUMS does not match the files"
entries=$(unzip -Z1 "${zips[0]}")
[[ $entries =~ ^terraform-provider-agentlab_v[^/]+$ ]] || fail "the zip must hold only the provider binary, it holds: $entries"

# 4. The .deb packages install where the docs say.
for pkg in agentlab-reaper agentlab-pvesim; do
	debs=("$dist"/"$pkg"_*_amd64.deb)
	[ ${#debs[@]} -eq 1 ] || fail "want one $pkg .deb, found ${#debs[@]}"
	scratch=$tmp/root-$pkg
	dpkg -x "${debs[0]}" "$scratch"
	[ -x "$scratch/usr/bin/$pkg" ] || fail "$pkg: no /usr/bin/$pkg"
	out=$("$scratch/usr/bin/$pkg" version)
	[[ $out == "$pkg "*"(commit "* ]] || fail "$pkg version printed $out; want the version and the commit"
	echo "release-check: $(basename "${debs[0]}"): $out"
done
r=$tmp/root-agentlab-reaper
for f in usr/lib/systemd/system/agentlab-reaper.service usr/lib/systemd/system/agentlab-reaper.service.d/deb.conf etc/agentlab/reaper.yaml; do
	[ -f "$r/$f" ] || fail "agentlab-reaper .deb lacks /$f"
done
cmp -s "$r/usr/lib/systemd/system/agentlab-reaper.service" deploy/systemd/agentlab-reaper.service || fail "the packaged unit differs from deploy/systemd"
cmp -s "$r/etc/agentlab/reaper.yaml" deploy/reaper.example.yaml || fail "the packaged config differs from deploy/reaper.example.yaml"
grep -qx 'ExecStart=/usr/bin/agentlab-reaper serve --config /etc/agentlab/reaper.yaml' "$r/usr/lib/systemd/system/agentlab-reaper.service.d/deb.conf" ||
	fail "the drop-in does not start /usr/bin/agentlab-reaper"
[ "$(stat -c %a "$r/var/lib/agentlab")" = 700 ] || fail "/var/lib/agentlab is not mode 0700"
[ "$(stat -c %a "$r/etc/agentlab")" = 750 ] || fail "/etc/agentlab is not mode 0750"
dpkg-deb -I "$dist"/agentlab-reaper_*_amd64.deb conffiles 2>/dev/null | grep -qx /etc/agentlab/reaper.yaml ||
	fail "/etc/agentlab/reaper.yaml is not a conffile (an upgrade would overwrite the operator's edits)"
echo "release-check: ok (dist/ holds the linux/amd64 snapshot)"
