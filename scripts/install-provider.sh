#!/usr/bin/env bash
# make install: puts the provider binary where Terraform and OpenTofu both look for providers in
# a local filesystem mirror, under each one's registry address, so that `terraform init` and
# `tofu init` install agentlab/agentlab offline:
#   <plugins>/registry.terraform.io/agentlab/agentlab/<version>/<os>_<arch>/terraform-provider-agentlab_v<version>
#   <plugins>/registry.opentofu.org/agentlab/agentlab/<version>/<os>_<arch>/terraform-provider-agentlab_v<version>
# <plugins> is ~/.terraform.d/plugins, which both CLIs search on Linux, macOS and the BSDs;
# PLUGINS_DIR puts the mirror elsewhere (then name it in a provider_installation block).
# Usage: install-provider.sh BINARY VERSION   (a semantic version other than 0.0.0)
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BINARY VERSION" >&2; exit 2; }
bin=$1
version=${2#v}
# Terraform reads 0.0.0 as "no version" and never installs it, not even for version = "0.0.0".
if [ "$version" = dev ] || [ "$version" = 0.0.0 ]; then
  echo "install: VERSION=$2: terraform and tofu install a provider only under a real version;" \
    "name the one configurations will see, e.g. make install VERSION=0.1.0" >&2
  exit 1
fi
# The CLIs read the directory name as the version; a prerelease is only chosen when pinned exactly.
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "install: VERSION=$2 is not a semantic version; use e.g. make install VERSION=0.3.0" >&2
  exit 1
fi
[ -x "$bin" ] || { echo "install: no provider binary at $bin; run make build" >&2; exit 1; }

plugins=${PLUGINS_DIR:-$HOME/.terraform.d/plugins}
target="$(go env GOOS)_$(go env GOARCH)"
for host in registry.terraform.io registry.opentofu.org; do
  dir="$plugins/$host/agentlab/agentlab/$version/$target"
  install -d "$dir"
  install -m 0755 "$bin" "$dir/terraform-provider-agentlab_v$version"
  echo "installed $dir/terraform-provider-agentlab_v$version"
done
echo "agentlab/agentlab $version is installed for terraform and tofu; in a working directory that"
echo "already locked another build of $version, run init -upgrade to accept this one."
