// Package pvesim simulates the Proxmox VE HTTP API (/api2/json) closely
// enough that clients cannot tell it from PVE 9 for the calls AgentLab
// and other common Proxmox clients make: the same paths, parameters, JSON
// types, status codes, error texts (on the status line and in the body),
// tasks (UPIDs, status, logs), config locks (kept across restarts), pending
// changes and storage volumes. Its realistic model is no kinder than a real
// node: bounded API workers, per-call service times, cloud-image boot times. It is a test double the
// project's tests run in-process, and users can run it as agentlab-pvesim.
//
// # Use in tests
//
// Package pvesimtest starts a simulator on an HTTPS port for one test:
//
//	sim := pvesimtest.Start(t)                  // zero latency, node "pve", template 9000
//	sim.URL       // "https://127.0.0.1:PORT/api2/json"
//	sim.Token     // "root@pam!test=SECRET" (Authorization: PVEAPIToken=<Token>)
//	sim.Client    // *http.Client trusting the self-signed certificate
//	sim.Server    // *pvesim.Server: Stats, VM, VMConfig, Volume, Tasks, ...
//
// # Exported API
//
//	New(Options) (*Server, error)
//	(*Server).Handler() http.Handler          // status line carries Go's reason phrase
//	(*Server).Serve(net.Listener, *tls.Config) error  // PVE's message on the status line
//	(*Server).Shutdown(ctx) error; (*Server).Close() error
//	(*Server).Stats() Stats                    // requests by route, status and kind, faults, tasks, peak queue
//	(*Server).PeakQueueDepth() int; ResetPeakQueueDepth()
//	(*Server).VM(vmid) (VM, bool); VMConfig(vmid); VMIDs(); Volumes(node); Volume(storage, volid)
//	(*Server).Tasks(); WaitTask(ctx, upid); SetLock(vmid, lock); HoldConfigLock(ctx, vmid)
//	Routes() []Route                           // the route table: method, path, params
//	Options, Template, ParseTemplate, DefaultTemplate
//	Latency, ZeroLatency(), RealisticLatency(), ParseLatency(name), (Latency).Scaled(f)
//	Workers, Service, ParseWorkers(v), WithBoot(l, v), LostAnswers, ParseLostCalls(v)
//	SelfSignedTLS(hosts...) (*tls.Config, *x509.CertPool, error)
//	GuestIPv4(vmid) netip.Addr                 // the IP the guest agent reports
//
// # Routes
//
// All under /api2/json: POST /access/ticket; GET /version; GET /pools,
// /pools/{poolid}; GET /access/users, /access/permissions; GET /cluster/nextid;
// GET /cluster/resources; GET /cluster/ha/resources/{sid}; GET /nodes;
// GET,POST /nodes/{node}/qemu; DELETE /nodes/{node}/qemu/{vmid};
// POST .../{vmid}/clone; GET,PUT,POST .../{vmid}/config; GET .../{vmid}/pending;
// GET .../status/current; POST .../status/start|stop|shutdown|reboot;
// PUT .../resize; PUT .../cloudinit; GET .../agent/network-get-interfaces;
// GET /nodes/{node}/tasks, .../tasks/{upid}/status, .../tasks/{upid}/log;
// GET /nodes/{node}/storage; GET,POST .../storage/{storage}/content;
// GET,DELETE .../content/{volume}; POST .../storage/{storage}/upload.
// Anything else answers 501 "Method 'GET /x' not implemented", like PVE.
//
// # Behaviour worth knowing
//
//   - Auth: API tokens (Authorization: PVEAPIToken=USER@REALM!ID=SECRET, "=" or
//     a space), tickets from POST /access/ticket in the PVEAuthCookie cookie or
//     Authorization header; CSRFPreventionToken required on non-GET calls with
//     a ticket. Failures are 401 with an empty body after AuthFailureDelay.
//   - Parameters are validated against PVE's schema for each route: unknown
//     ones, bad types, formats, enums and bounds give 400 "Parameter
//     verification failed." with an errors object. Root-only parameters
//     (skiplock, ...) are refused for tokens as PVE does.
//   - Tasks: with ZeroLatency a task has finished when the call that started
//     it returns; otherwise it runs for its Latency duration in a goroutine.
//   - Capacity: with Latency.Workers set, calls queue for 3 pveproxy and 3
//     pvedaemon workers (protected calls take pvedaemon) and hold one for a
//     service time by kind of call (capacity.go).
//   - The guest agent answers once the VM's boot time (GuestAgentIP, spread
//     by BootMin and BootMax; boot.go) has passed since it started (by
//     Options.Clock), reporting ipconfig0's address or 10.77.X.Y (GuestIPv4).
//   - Linked clones on local-lvm are named like PVE's LVM-thin plugin names
//     them: local-lvm:vm-101-disk-0 (the base is recorded as the volume's
//     parent); full clones copy the size; destroying a VM frees only volumes
//     named for its VMID.
//   - A config change to a running VM goes to the pending section, except
//     name, description, tags, onboot, protection and other options PVE
//     changes live; start applies pending changes.
//   - Fault injection, lost answers and persistence: see Options.FaultRate,
//     Options.LostAnswers and Options.StateDir (faults.go, lostanswer.go and
//     persist.go describe the details). Answers wait until the state they
//     reflect is on disk, so an answered change survives kill -9.
//   - Options.GuestExec (agentlab-pvesim --guest-exec, root only) runs a
//     started VM's NoCloud user-data as a guest in its own mount and PID
//     namespaces; workspace volumes are directories (guest*.go;
//     docs/simulator.md "Running guests").
package pvesim
