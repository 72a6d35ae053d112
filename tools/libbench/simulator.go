package main

import (
	"fmt"
	"log/slog"

	"github.com/agentlab/terraform-provider-agentlab/internal/pvesim"
)

const simToken = "root@pam!bench=libbench-secret"

// simulator is a fresh pvesim server answering over TLS on a loopback port.
type simulator struct {
	srv      *pvesim.Server
	endpoint string // https://127.0.0.1:PORT
	token    string // USER@REALM!ID=SECRET
}

// startSimulator starts a one-node simulator ("pve", template 9000) with the
// latency model.
func startSimulator(model pvesim.Latency) (*simulator, error) {
	srv, err := pvesim.New(pvesim.Options{
		Tokens:  []string{simToken},
		Latency: model,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, fmt.Errorf("new simulator: %w", err)
	}
	addr, _, _, err := srv.ServeLoopback()
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	return &simulator{srv: srv, endpoint: "https://" + addr, token: simToken}, nil
}

// stop closes the simulator and its connections. Callers stop it once their
// requests are done: a graceful Shutdown would wait 5 s for connections a
// client transport opened but never used.
func (s *simulator) stop() error { return s.srv.Close() }
