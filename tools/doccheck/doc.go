// Package doccheck holds the tests that keep the hand-written pages under
// docs/ (and README.md) true to the code: every agentlab-reaper subcommand
// and flag they show exists in the binary, and every message the
// troubleshooting page quotes is still a string of the program that prints
// it. It has no code of its own.
//
// The metrics reference and the configuration table have their tests next
// to what they describe (reaper/metrics, reaper/config).
package doccheck
