#!/bin/sh
# prerm of the agentlab-reaper .deb: stop the daemon before its binary goes
# away on removal (an upgrade restarts it in postinst instead).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop agentlab-reaper || true
fi
