#!/usr/bin/env bash
# Enables and starts agentlab-reaper on a Proxmox VE host once it is
# installed (the .deb or `make install-reaper`) and has its PVE API token
# (setup-tokens.sh --apply writes it). Idempotent. Dry run by default;
# --apply to change the host.
#
#   scripts/host/setup-reaper.sh [--apply] [--config /etc/agentlab/reaper.yaml]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

config=/etc/agentlab/reaper.yaml
parse_mode "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
	case "$1" in
	--config) config=${2:?--config needs the reaper configuration file}; shift 2 ;;
	-h | --help) sed -n '2,7p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

missing=()
have agentlab-reaper || missing+=("the agentlab-reaper binary (install the agentlab-reaper .deb or run make install-reaper)")
[ -f "$config" ] || missing+=("$config (the package installs it; else copy deploy/reaper.example.yaml)")
token=$(sed -n 's/^[[:space:]]*api_token_file:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$config" 2>/dev/null | head -n1 || true)
token=${token:-/etc/agentlab/pve-token}
[ -s "$token" ] || missing+=("the PVE API token in $token (run scripts/host/setup-tokens.sh --apply)")
if [ ${#missing[@]} -gt 0 ]; then
	for m in "${missing[@]}"; do echo "missing: $m" >&2; done
	[ "$APPLY" = 1 ] && die "cannot start the reaper before these are in place"
fi

if have agentlab-reaper && [ -f "$config" ]; then
	run agentlab-reaper serve --check --config "$config"
fi
if have systemctl && systemctl is-enabled --quiet agentlab-reaper 2>/dev/null && systemctl is-active --quiet agentlab-reaper; then
	echo "ok: agentlab-reaper is enabled and running"
else
	run systemctl daemon-reload
	run systemctl enable --now agentlab-reaper
fi
finish
