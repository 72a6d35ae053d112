// Command agentlab-reaper is the AgentLab lease daemon: it destroys (or
// stops) sandboxes whose lease has expired, accepts heartbeats from inside
// sandboxes and keeps an audit log of every decision.
//
// Usage:
//
//	agentlab-reaper serve   --config FILE          run the daemon
//	agentlab-reaper leases  [--all] [--json]       list leases
//	agentlab-reaper renew   VMID DURATION [--force] [--json]  renew a lease
//	agentlab-reaper keep    VMID [--remove] [--json]  keep a sandbox (or stop keeping it)
//	agentlab-reaper orphans [--json]                  list orphans
//	agentlab-reaper events  [--vmid N] [--since T] [--limit N] [--json]
//	agentlab-reaper jobs    [--json]               list jobs
//	agentlab-reaper job     JOB [--json]           show a job
//	agentlab-reaper artifacts JOB | artifacts download JOB DIR
//	agentlab-reaper logs    JOB [--follow]         print a job's log
//	agentlab-reaper ssh     VMID [--user U] [-- ARGS]  ssh to a sandbox
//	agentlab-reaper version
//
// Every subcommand takes --config FILE (default /etc/agentlab/reaper.yaml);
// the operator subcommands read only control.socket from it and talk to the
// running daemon through that socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agentlab/terraform-provider-agentlab/internal/buildinfo"
	"github.com/agentlab/terraform-provider-agentlab/internal/printable"
)

// version, commit and date are set at build time with -ldflags
// "-X main.version=1.2.3 -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// build describes this binary.
func build() buildinfo.Info { return buildinfo.New("agentlab-reaper", version, commit, date) }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a usage error; the message has been printed.
var errUsage = errors.New("usage")

// run dispatches to a subcommand and returns the process exit status: 0
// success, 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, stdout, stderr)
	case "leases":
		err = newOpCommand(stdout, stderr).leases(ctx, args)
	case "renew":
		err = newOpCommand(stdout, stderr).renew(ctx, args)
	case "events":
		err = newOpCommand(stdout, stderr).events(ctx, args)
	case "keep":
		err = newOpCommand(stdout, stderr).keep(ctx, args)
	case "orphans":
		err = newOpCommand(stdout, stderr).orphans(ctx, args)
	case "version":
		err = newOpCommand(stdout, stderr).version(ctx, args)
	case "jobs":
		err = newOpCommand(stdout, stderr).jobs(ctx, args)
	case "job":
		err = newOpCommand(stdout, stderr).job(ctx, args)
	case "artifacts":
		err = newOpCommand(stdout, stderr).artifacts(ctx, args)
	case "logs":
		err = newOpCommand(stdout, stderr).logs(ctx, args)
	case "ssh":
		err = newOpCommand(stdout, stderr).ssh(ctx, args)
	case "egress":
		err = newOpCommand(stdout, stderr).egress(ctx, args)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "agentlab-reaper: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "agentlab-reaper %s: %s\n", cmd, printable.EscapeLines(err.Error()))
	return 1
}

func usage(w io.Writer) {
	fmt.Fprint(w, strings.TrimLeft(`
agentlab-reaper destroys AgentLab sandboxes whose lease has expired.

Usage:

	agentlab-reaper <command> [arguments]

Commands:

	serve      run the daemon (--config FILE, --check, --log-level, --log-format)
	leases     list the sandboxes' leases (--all, --json)
	renew      renew a lease: renew VMID DURATION (--force under 1m, --json)
	keep       keep a sandbox from the reaper: keep VMID (--remove to undo, --json)
	orphans    list what AgentLab made that nothing owns (--json)
	events     show the audit log (--vmid N, --since 1h|RFC3339, --limit N, --json)
	version    print the version (and the running daemon's)
	jobs       list jobs (--json)
	job        show a job: job JOB (--json)
	artifacts  list a job's artifacts: artifacts JOB; fetch them, sha256-checked:
	           artifacts download JOB DIR
	logs       print a job's log: logs JOB (--follow)
	ssh        ssh to a sandbox as its user: ssh VMID (--user NAME, -- SSH ARGS)
	egress     print the egress filter's nftables ruleset: egress --print (--json)

Every command takes --config FILE (default /etc/agentlab/reaper.yaml); the
operator commands use its control.socket, or --socket PATH.
`, "\n"))
}
