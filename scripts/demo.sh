#!/usr/bin/env bash
# make demo: build everything, start the Proxmox VE simulator with the realistic latency model and
# the reaper next to it, apply examples/lease (one sandbox with a one-minute lease) and
# examples/quickstart (three sandboxes from a profile), print the outputs, destroy the quickstart,
# then watch the reaper destroy the one-minute sandbox on its own. As root (the simulator's
# --guest-exec needs it), it also runs examples/job: a job on a small local git repository, served by
# git daemon on loopback, whose runner really runs in a simulated guest; it prints the artifacts.
# Terraform's full output goes to .demo/*.log; the screen shows a summary (one line per planned
# change, progress and results), the full log only when a command fails.
# Leaves no process behind: the simulator and the reaper are stopped on every exit path.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.demo"
tf=${TERRAFORM:-$(command -v terraform || command -v tofu || true)}
if [ -z "$tf" ]; then
  echo "demo: terraform (>= 1.11) or tofu must be on PATH" >&2
  exit 1
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)

# What the screen shows of terraform's output: the plan's one-line summaries, progress, results.
# (-compact-warnings lists each warning as one "- " line under "Warnings:".)
summary='^ *# .* (will be|must be)|^Plan:|: (Creating|Destroying|Modifying|Still|Creation complete|Destruction complete|Modifications complete)|^(Apply|Destroy) complete|^Warnings?:|^- |^Error'
# tf_run LOG ARGS...: runs terraform (or tofu), keeps its full output in LOG and shows the summary;
# on failure it prints the full output and stops the demo.
tf_run() {
  local log=$1 status
  shift
  set +e
  "$tf" "$@" -input=false -compact-warnings -no-color 2>&1 | tee "$log" | { grep --line-buffered -E "$summary" || true; }
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "demo: $(basename "$tf") $1 failed; its full output ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
}
# lease_vmids: the VMIDs the reaper lists as leases now (its table's first column).
lease_vmids() { reaper leases | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }'; }

step "building the provider, the reaper and the simulator"
make -C "$root" --no-print-directory build

rm -rf "$work"
mkdir -p "$work"
cp -r "$root/examples/quickstart" "$work/quickstart"
cp -r "$root/examples/lease" "$work/lease"
cp -r "$root/examples/job" "$work/job"

# Jobs need real guests: agentlab-pvesim --guest-exec, which needs root.
guest_exec=()
run_job=false
if [ "$(id -u)" = 0 ]; then
  guest_exec=(--guest-exec)
  run_job=true
fi
guest_port=${DEMO_GUEST_PORT:-18846}
git_port=${DEMO_GIT_PORT:-19418}

step "starting agentlab-pvesim (latency model: realistic, but guests boot in 8 s instead of 20-60 s)"
# The simulator prints "agentlab-pvesim: endpoint=URL token=TOKEN" as its first line.
# --boot 8s keeps the demo short; real cloud images take 20-60 s to report an address.
exec 3< <(exec "$root/bin/agentlab-pvesim" --listen 127.0.0.1:0 --latency realistic --boot 8s "${guest_exec[@]}" \
  --template 9000:debian-12-cloud 2>"$work/pvesim.log")
sim_pid=$!
reaper_pid=""
git_pid=""
cleanup() {
  [ -n "$git_pid" ] && kill "$git_pid" 2>/dev/null || true
  [ -n "$reaper_pid" ] && kill "$reaper_pid" 2>/dev/null || true
  kill "$sim_pid" 2>/dev/null || true
  wait 2>/dev/null || true
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
export AGENTLAB_REAPER_URL="unix://$work/reaper.sock"
export AGENTLAB_REAPER_GUEST_URL="http://127.0.0.1:$guest_port"

step "starting agentlab-reaper (interval 5s)"
umask 077
printf '%s\n' "$token" >"$work/pve-token"
cat >"$work/reaper.yaml" <<CFG
proxmox:
  endpoint: $endpoint
  api_token_file: $work/pve-token
  insecure: true            # the simulator's certificate is self-signed
database: $work/reaper.db
interval: 5s
warn_before: 30s
control:
  socket: $work/reaper.sock
guest:
  listen: 127.0.0.1:$guest_port
artifacts:
  dir: $work/artifacts      # the default, /var/lib/agentlab/artifacts, is the host's
metrics:
  listen: ""
CFG
umask 022
"$root/bin/agentlab-reaper" serve --config "$work/reaper.yaml" >"$work/reaper.log" 2>&1 &
reaper_pid=$!
reaper() { "$root/bin/agentlab-reaper" "$@" --config "$work/reaper.yaml"; }
for _ in $(seq 100); do [ -S "$work/reaper.sock" ] && break; sleep 0.1; done
[ -S "$work/reaper.sock" ] || { echo "demo: the reaper did not start; its log:" >&2; cat "$work/reaper.log" >&2; exit 1; }

cd "$work/lease"
step "$(basename "$tf") apply examples/lease (one sandbox, ttl = 1m)"
tf_run "$work/apply-lease.log" apply -auto-approve
short_vmid=$("$tf" output -raw vmid)
short_expiry=$("$tf" output -raw lease_expires_at)

cd "$work/quickstart"
step "$(basename "$tf") apply examples/quickstart"
tf_run "$work/apply-quickstart.log" apply -auto-approve
step "outputs"
"$tf" output -no-color
qs_vmids=$(echo 'join(" ", [for s in agentlab_sandbox.agent : tostring(s.vmid)])' | "$tf" console | tr -d '"')
step "$(basename "$tf") destroy examples/quickstart (VMs $qs_vmids)"
tf_run "$work/destroy-quickstart.log" destroy -auto-approve
destroyed=$qs_vmids # VMs terraform destroyed, which the reaper's leases must no longer list

if $run_job; then
  step "a job: a small git repository served by git daemon on 127.0.0.1:$git_port"
  mkdir -p "$work/repo" "$work/git"
  printf 'payload from the repository\n' >"$work/repo/data.txt"
  printf '#!/bin/sh\nset -e\nmkdir -p out\ncp data.txt out/copy.txt\necho "$GREETING" > out/greeting.txt\necho built\n' >"$work/repo/build.sh"
  chmod +x "$work/repo/build.sh"
  git -C "$work/repo" init -q -b main
  git -C "$work/repo" add .
  git -C "$work/repo" -c user.name=demo -c user.email=demo@example.com commit -q -m demo
  git clone -q --bare "$work/repo" "$work/git/demo.git"
  git daemon --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" --base-path="$work/git" "$work/git" \
    >"$work/git-daemon.log" 2>&1 &
  git_pid=$!
  cd "$work/job"
  step "$(basename "$tf") apply examples/job"
  tf_run "$work/apply-job.log" apply -auto-approve -var "repo=git://127.0.0.1:$git_port/demo.git"
  step "the job's outputs"
  "$tf" output -no-color
  destroyed="$destroyed $(echo 'agentlab_job.demo.vmid' | "$tf" console | tr -d '"')"
  step "its artifacts, downloaded and verified"
  (cd "$work/job/artifacts" && sha256sum $(find . -type f | sort))
  step "agentlab-reaper jobs"
  reaper jobs
  step "$(basename "$tf") destroy examples/job"
  tf_run "$work/destroy-job.log" destroy -auto-approve -var "repo=git://127.0.0.1:$git_port/demo.git"
else
  step "skipping the job: agentlab-pvesim --guest-exec needs root (run make demo as root to see one)"
fi

# The reaper lists what it saw at its last tick (every 5s here); wait until it has seen the
# destroy, so that the table below is the current view, not the one from before the destroy.
step "agentlab-reaper leases (after its next tick has seen the destroy)"
deadline=$(( $(date +%s) + 30 ))
while :; do
  listed=$(lease_vmids)
  stale=""
  for id in $destroyed; do
    if grep -qx "$id" <<<"$listed"; then stale="$stale $id"; fi
  done
  [ -z "$stale" ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "demo: the reaper still lists VMs$stale 30s after terraform destroyed them; its log:" >&2
    cat "$work/reaper.log" >&2
    exit 1
  fi
  sleep 0.5
done
reaper leases
step "waiting for the reaper to destroy VM $short_vmid when its one-minute lease ends ($short_expiry)"
deadline=$(( $(date +%s) + 120 ))
next_note=0
until reaper events --vmid "$short_vmid" | grep -Eq 'destroy +done'; do
  now=$(date +%s)
  if [ "$now" -gt "$deadline" ]; then
    echo "demo: VM $short_vmid was not reaped in time; the reaper's log:" >&2
    cat "$work/reaper.log" >&2
    exit 1
  fi
  if [ "$now" -ge "$next_note" ]; then
    left=$(( $(date -d "$short_expiry" +%s) - now ))
    state=$(reaper leases | awk -v id="$short_vmid" '$1 == id { print $4 }')
    if [ "$left" -gt 0 ]; then
      printf '  %s  VM %s is %s; its lease ends in %ss\n' "$(date +%T)" "$short_vmid" "${state:-listed}" "$left"
    else
      printf '  %s  VM %s is %s; the lease ended %ss ago, the reaper acts at its next tick\n' \
        "$(date +%T)" "$short_vmid" "${state:-gone}" "$(( -left ))"
    fi
    next_note=$(( now + 10 ))
  fi
  sleep 1
done
reaper events --vmid "$short_vmid"
step "agentlab-reaper leases, after: nothing is left (reaped, or destroyed by terraform)"
reaper leases

cd "$work/lease"
step "$(basename "$tf") plan examples/lease: the reaped sandbox left state, so the next apply recreates it"
"$tf" plan -input=false -compact-warnings -no-color | grep -E '^Plan:|will be created'

step "done in $(( $(date +%s) - started ))s; simulator and reaper stopped"
