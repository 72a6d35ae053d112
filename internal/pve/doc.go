// Package pve is AgentLab's Proxmox VE operations layer: VMID allocation,
// clone, configure, resize, power, destroy, guest-agent IP discovery, ISO
// uploads and storage volumes, with task waits and retries done right.
//
// Task waits are shared: one watcher per node polls the node's task list
// (the running tasks and the exit status of those that ended) for every task
// the client waits on there, paced to the durations it has seen
// (taskwatch.go); guest agent polls are paced to the boot times it has seen,
// and the polls that hold a pvedaemon worker for 3 s are limited per node
// (agent.go). A sandbox created with WaitForIP and destroyed costs about 31
// requests (docs/performance.md), against about 140 with one status poll
// loop per task.
//
// It builds on github.com/Telmate/proxmox-api-go for what that library does
// well (API token parsing and validation, and a ready *proxmox.Client sharing
// this package's HTTP client and token, see [Client.Library]), and uses its
// own small request path for every call it makes itself, because the library
//   - polls tasks every 2 s and cannot return a task's UPID to the caller,
//   - serialises auto-ID clones behind one mutex held for the whole clone,
//   - reads error texts only from the JSON body, so older PVE versions (whose
//     error bodies are just {"data":null}) lose the message, and
//   - sleeps between its own retries without honouring the context.
//
// Errors from PVE are *APIError values carrying the HTTP status and PVE's
// message; failed tasks are *TaskError values. Callers test them with
// [IsNotFound], [IsTransient] and errors.Is against the sentinel errors
// (ErrUnauthorized, ErrUntrustedCertificate, ErrUnreachable, ...).
//
// A sandbox is created like this (errors elided):
//
//	c, _ := pve.New(ctx, pve.Config{Endpoint: "https://pve:8006", APIToken: "root@pam!agentlab=SECRET"})
//	_, _ = c.Ping(ctx) // clear errors for a bad endpoint, certificate or token
//	ref, err := c.Clone(ctx, pve.CloneRequest{Node: "pve", SourceVMID: 9000, Name: "sbx-1",
//		Description: meta, Nonce: jobID})
//	if err != nil && !ref.IsZero() { _ = c.Destroy(ctx, ref) } // never an orphan
//	cfg, _ := c.Config(ctx, ref)
//	_ = c.UpdateConfig(ctx, ref, pve.ConfigUpdate{Set: map[string]string{"cores": "2"}, Digest: cfg.Digest()})
//	_ = c.Resize(ctx, ref, cfg.BootDisk(), "20G")
//	_ = c.Start(ctx, ref)
//	ip, _ := c.WaitForIP(ctx, ref)
//
// The package knows nothing of Terraform.
package pve
