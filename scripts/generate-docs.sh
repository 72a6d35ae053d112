#!/usr/bin/env bash
# make generate: renders docs/ from templates/ and examples/ with tfplugindocs, offline.
# The provider schema comes from the locally built provider through a dev_overrides CLI config,
# so neither tfplugindocs nor terraform downloads anything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tf=$(command -v terraform || command -v tofu || true)
[ -n "$tf" ] || { echo "generate: terraform (>= 1.11) or tofu must be on PATH" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$root/bin"
(cd "$root" && CGO_ENABLED=0 go build -o "$root/bin/terraform-provider-agentlab" .)

cat >"$tmp/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/agentlab/agentlab" = "$root/bin"
    "registry.opentofu.org/agentlab/agentlab" = "$root/bin"
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
  sed -E 's#"registry\.(terraform|opentofu)\.io/agentlab/agentlab"#"agentlab"#' >"$tmp/schema.json"

cd "$root"
go tool tfplugindocs generate \
  --provider-name agentlab \
  --rendered-provider-name AgentLab \
  --providers-schema "$tmp/schema.json"
