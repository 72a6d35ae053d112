#!/bin/sh
# postinst of the agentlab-reaper .deb: make systemd see the new unit. The
# daemon is not enabled here: it needs its PVE API token first (see
# docs/operator-guide.md or scripts/host/setup-reaper.sh).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if systemctl is-active --quiet agentlab-reaper; then
		systemctl restart agentlab-reaper || true
	fi
fi
