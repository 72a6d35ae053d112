#!/usr/bin/env bash
# make demo: build everything, start the Proxmox VE simulator with the realistic latency model,
# apply examples/quickstart (three sandboxes from a profile), print the outputs, destroy them.
# Leaves no process behind: the simulator is stopped on every exit path.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.demo"
tf=$(command -v terraform || command -v tofu || true)
if [ -z "$tf" ]; then
  echo "demo: terraform (>= 1.11) or tofu must be on PATH" >&2
  exit 1
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)

step "building the provider and the simulator"
make -C "$root" --no-print-directory build

rm -rf "$work"
mkdir -p "$work"
cp -r "$root/examples/quickstart" "$work/quickstart"

step "starting agentlab-pvesim (latency model: realistic)"
# The simulator prints "agentlab-pvesim: endpoint=URL token=TOKEN" as its first line.
exec 3< <(exec "$root/bin/agentlab-pvesim" --listen 127.0.0.1:0 --latency realistic \
  --template 9000:debian-12-cloud 2>"$work/pvesim.log")
sim_pid=$!
cleanup() {
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
if ! IFS= read -r -t 30 first <&3; then
  echo "demo: the simulator did not start; its log:" >&2
  cat "$work/pvesim.log" >&2
  exit 1
fi
cat <&3 >"$work/pvesim.out" &
echo "$first"
endpoint=${first#*endpoint=}; endpoint=${endpoint%% *}
token=${first#*token=}; token=${token%% *}

# Point Terraform (or OpenTofu) at the freshly built provider; no registry, no init.
cat >"$work/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/agentlab/agentlab" = "$root/bin"
    "registry.opentofu.org/agentlab/agentlab" = "$root/bin"
  }
  direct {}
}
CFG
export TF_CLI_CONFIG_FILE="$work/cli.tfrc"
export TF_IN_AUTOMATION=1
export PROXMOX_VE_ENDPOINT="$endpoint"
export PROXMOX_VE_API_TOKEN="$token"
export PROXMOX_VE_INSECURE=true
export AGENTLAB_PROFILES_DIR="$work/quickstart/profiles"

cd "$work/quickstart"
step "$(basename "$tf") apply examples/quickstart"
"$tf" apply -auto-approve -input=false -compact-warnings
step "outputs"
"$tf" output
step "$(basename "$tf") destroy"
"$tf" destroy -auto-approve -input=false -compact-warnings

step "done in $(( $(date +%s) - started ))s; simulator stopped"
