// Package pvesim simulates the Proxmox VE HTTP API (/api2/json) closely
// enough that clients cannot tell it from PVE 8/9 for the calls AgentLab
// makes: the same paths, parameters, JSON types, status codes, error texts
// (on the status line and in the body), tasks (UPIDs, status, logs), config
// locks, pending changes and storage volumes. It is a test double the
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
//	(*Server).Stats() Stats                    // requests by route and status, faults, tasks
//	(*Server).VM(vmid) (VM, bool); VMConfig(vmid); VMIDs(); Volumes(node); Volume(storage, volid)
//	(*Server).Tasks(); WaitTask(ctx, upid); SetLock(vmid, lock); HoldConfigLock(ctx, vmid)
//	Routes() []Route                           // the route table: method, path, params
//	Options, Template, ParseTemplate, DefaultTemplate
//	Latency, ZeroLatency(), RealisticLatency(), ParseLatency(name), (Latency).Scaled(f)
//	SelfSignedTLS(hosts...) (*tls.Config, *x509.CertPool, error)
//	GuestIPv4(vmid) netip.Addr                 // the IP the guest agent reports
//
// # Routes
//
// All under /api2/json: POST /access/ticket; GET /version; GET /cluster/nextid;
// GET /cluster/resources; GET /cluster/ha/resources/{sid}; GET /nodes;
// GET,POST /nodes/{node}/qemu; DELETE /nodes/{node}/qemu/{vmid};
// POST .../{vmid}/clone; GET,PUT,POST .../{vmid}/config; GET .../{vmid}/pending;
// GET .../status/current; POST .../status/start|stop|shutdown|reboot;
// PUT .../resize; GET .../agent/network-get-interfaces;
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
//   - The guest agent answers once GuestAgentIP has passed since the VM
//     started (by Options.Clock), reporting 10.77.X.Y (GuestIPv4) on ens18.
//   - Linked clones on local-lvm are named like PVE's LVM-thin plugin names
//     them: local-lvm:vm-101-disk-0 (the base is recorded as the volume's
//     parent); full clones copy the size; destroying a VM frees only volumes
//     named for its VMID.
//   - A config change to a running VM goes to the pending section, except
//     name, description, tags, onboot, protection and other options PVE
//     changes live; start applies pending changes.
//   - Fault injection and persistence: see Options.FaultRate and
//     Options.StateDir (faults.go and persist.go describe the details).
package pvesim
