#!/usr/bin/env bash
# make generate: renders docs/ from templates/ and examples/ with tfplugindocs, offline.
# The provider schema comes from the locally built provider through a dev_overrides CLI config,
# so neither tfplugindocs nor terraform downloads anything.
# DOCS_DIR renders elsewhere than docs/ (the docs-are-current test compares the two).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tf=${TERRAFORM:-$(command -v terraform || command -v tofu || true)}
[ -n "$tf" ] || { echo "generate: terraform (>= 1.11) or tofu must be on PATH" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/bin"
(cd "$root" && CGO_ENABLED=0 go build -o "$tmp/bin/terraform-provider-agentlab" .)

cat >"$tmp/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/agentlab/agentlab" = "$tmp/bin"
    "registry.opentofu.org/agentlab/agentlab" = "$tmp/bin"
  }
  direct {}
}
CFG
mkdir -p "$tmp/cfg"
cat >"$tmp/cfg/main.tf" <<'TF'
terraform {
  required_providers {
    agentlab = { source = "agentlab/agentlab" }
  }
}
TF
# tfplugindocs looks the schema up by the provider's short name; terraform keys it by address.
TF_CLI_CONFIG_FILE="$tmp/cli.tfrc" "$tf" -chdir="$tmp/cfg" providers schema -json |
  sed -E 's#"registry\.(terraform\.io|opentofu\.org)/agentlab/agentlab"#"agentlab"#' >"$tmp/schema.json"

cd "$root"
# tfplugindocs takes the output directory relative to the provider's directory.
out=$(realpath -m --relative-to="$root" "${DOCS_DIR:-$root/docs}")
go tool tfplugindocs generate \
  --provider-name agentlab \
  --rendered-provider-name AgentLab \
  --providers-schema "$tmp/schema.json" \
  --rendered-website-dir "$out"
