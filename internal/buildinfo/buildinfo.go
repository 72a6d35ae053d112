// Package buildinfo describes a build of one of AgentLab's programs: the
// release version, commit and build date the release tooling injects with
// -ldflags "-X main.version=... -X main.commit=... -X main.date=...", and
// the Go version. The reaper and the simulator print it the same way.
package buildinfo

import (
	"fmt"
	"runtime"
)

// Info is one program's build.
type Info struct {
	Program   string `json:"program"`
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"go_version"`
}

// New returns the build of program; empty commit and date mean a local
// build that did not inject them.
func New(program, version, commit, date string) Info {
	return Info{Program: program, Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
}

// String is the one-line form a version subcommand prints, e.g.
// "agentlab-reaper 1.2.3 (commit 1a2b3c4, built 2026-11-30T12:00:00Z, go1.26.8)".
func (i Info) String() string {
	s := i.Program + " " + i.Version + " ("
	if i.Commit != "" {
		s += "commit " + i.Commit + ", "
	}
	if i.Date != "" {
		s += "built " + i.Date + ", "
	}
	return s + i.GoVersion + ")"
}

// UserAgent is the HTTP User-Agent of the program's API calls, e.g.
// "agentlab-reaper/1.2.3".
func (i Info) UserAgent() string {
	return fmt.Sprintf("%s/%s", i.Program, i.Version)
}
