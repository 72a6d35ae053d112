package cloudinit

import (
	"fmt"
	"net/url"
	"regexp"
)

// Paths the heartbeat files are written to in the guest.
const (
	// HeartbeatEnvFile holds AGENTLAB_HEARTBEAT_URL and AGENTLAB_HEARTBEAT_TOKEN,
	// readable by the sandbox's user only (0600).
	HeartbeatEnvFile = "/etc/agentlab/heartbeat.env"
	// HeartbeatCommand extends the sandbox's lease when run inside the guest.
	HeartbeatCommand = "/usr/local/bin/agentlab-heartbeat"
)

// Heartbeat lets the agent inside a sandbox extend its own lease: the reaper's
// guest listener accepts POST /v1/heartbeat with the token as a bearer
// credential and extends the lease by its TTL, never past max_ttl. The VM's
// metadata keeps only the token's sha256.
type Heartbeat struct {
	// URL is the reaper's guest listener as the sandbox reaches it, e.g.
	// "http://10.77.0.1:8846".
	URL string
	// Token is the sandbox's heartbeat token (random, URL-safe).
	Token string
	// ReportBoot makes cloud-init run "agentlab-heartbeat --booted" once,
	// last in runcmd at the first boot: the guest's report that it no longer
	// needs its seed ISO, which the reaper then ejects and deletes (the
	// lease is left as it is). The provider always sets it.
	ReportBoot bool
}

// heartbeatToken keeps the token to characters that need no quoting in a
// shell environment file or an HTTP header.
var heartbeatToken = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

func (h *Heartbeat) validate() error {
	if h == nil {
		return nil
	}
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("heartbeat url %q: want the reaper's guest listener as http(s)://HOST:PORT", h.URL)
	}
	if !heartbeatToken.MatchString(h.Token) {
		return fmt.Errorf("heartbeat token: want 16 to 128 letters, digits, '_' or '-'")
	}
	return nil
}

// heartbeatScript POSTs one heartbeat and prints the reaper's answer (the
// lease). It exits non-zero when the lease was not extended, so an agent
// can tell; a lease capped by max_ttl answers 409 and says so. With
// --booted it reports the first boot instead (POST /v1/booted), which
// leaves the lease alone; it tries for about five minutes, since the reaper
// may be restarting, or may not know the sandbox yet (it learns of new
// ones at its next tick) and answer 401 meanwhile. The answer to a report
// made with the seed's token carries a fresh heartbeat token, which
// replaces the seed's in HeartbeatEnvFile (the seed's token sat in the ISO
// on PVE storage; once the guest has heartbeated with the new one, it is
// worth nothing).
const heartbeatScript = `#!/bin/sh
# agentlab-heartbeat: extend this sandbox's lease (written by AgentLab).
# agentlab-heartbeat --booted: report the first boot instead, after which the
# reaper deletes the sandbox's seed ISO; the lease is left as it is.
set -eu
. ` + HeartbeatEnvFile + `
post() {
	curl --silent --show-error --fail-with-body --connect-timeout 5 --max-time 10 \
		--request POST --header "Authorization: Bearer ${AGENTLAB_HEARTBEAT_TOKEN}" \
		"${AGENTLAB_HEARTBEAT_URL%/}$1"
}
case "${1:-}" in
"")
	post /v1/heartbeat
	;;
--booted)
	tries=1
	until answer=$(post /v1/booted); do
		if [ "$tries" -ge ` + bootReportTries + ` ]; then
			echo "agentlab: the boot report did not reach the reaper; the seed ISO is deleted at the first heartbeat instead" >&2
			exit 1
		fi
		tries=$((tries + 1))
		sleep 5
	done
	# The reaper answers a report made with the seed's token with a fresh
	# heartbeat token: it replaces the seed's, which no longer counts. The
	# file keeps its owner and mode (cp -p); the token is never printed.
	token=$(printf '%s\n' "$answer" | sed -n 's/.*"heartbeat_token":"\([A-Za-z0-9_-]*\)".*/\1/p')
	if [ -n "$token" ]; then
		cp -p ` + HeartbeatEnvFile + ` ` + HeartbeatEnvFile + `.new
		printf 'AGENTLAB_HEARTBEAT_URL=%s\nAGENTLAB_HEARTBEAT_TOKEN=%s\n' "$AGENTLAB_HEARTBEAT_URL" "$token" >` + HeartbeatEnvFile + `.new
		mv -f ` + HeartbeatEnvFile + `.new ` + HeartbeatEnvFile + `
		echo "agentlab: boot reported; heartbeat token replaced"
	else
		echo "agentlab: boot reported"
	fi
	;;
*)
	echo "usage: agentlab-heartbeat [--booted]" >&2
	exit 2
	;;
esac
`

// bootReportTries bounds the boot report's attempts, 5 s apart.
const bootReportTries = "60"

// BootReportLog is where the boot report, which runs in the background,
// writes what it has to say.
const BootReportLog = "/var/log/agentlab-boot-report.log"

// heartbeatCommands is the runcmd entry of the boot report, when asked
// for: started in the background, last, so that nothing waits for it.
func (c Config) heartbeatCommands() [][]string {
	if c.Heartbeat == nil || !c.Heartbeat.ReportBoot {
		return nil
	}
	return [][]string{{"sh", "-c", "nohup " + HeartbeatCommand + " --booted >" + BootReportLog + " 2>&1 &"}}
}

// heartbeatFiles are the write_files entries that deliver h; deferred, so the
// sandbox's user exists when its files are chowned.
func (c Config) heartbeatFiles() []writeFile {
	if c.Heartbeat == nil {
		return nil
	}
	user := c.userName()
	return []writeFile{
		{
			Path:        HeartbeatEnvFile,
			Owner:       user + ":" + user,
			Permissions: "0600",
			Content:     fmt.Sprintf("AGENTLAB_HEARTBEAT_URL=%s\nAGENTLAB_HEARTBEAT_TOKEN=%s\n", c.Heartbeat.URL, c.Heartbeat.Token),
			Defer:       true,
		},
		{
			Path:        HeartbeatCommand,
			Owner:       "root:root",
			Permissions: "0755",
			Content:     heartbeatScript,
			Defer:       true,
		},
	}
}
