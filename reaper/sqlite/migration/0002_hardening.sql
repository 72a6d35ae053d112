-- The lease as the operator's policy.max_lease cuts it: the expiry the reaper
-- acts on when it is earlier than the metadata's (NULL: not capped).
ALTER TABLE leases ADD COLUMN policy_expires_at INTEGER;

-- Identical repeated outcomes (a sandbox retrying a refused heartbeat every
-- minute) are one row: count is how many times it happened, last_time the
-- last (unix milliseconds; NULL when it happened once).
ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN last_time INTEGER;

-- VMs the operator kept with `agentlab-reaper keep VMID`: with
-- policy.user_keep false, only their agentlab-keep tag is honoured.
CREATE TABLE keeps (
	vmid   INTEGER PRIMARY KEY,
	time   INTEGER NOT NULL,
	actor  TEXT    NOT NULL
);

-- Volumes to delete once their VM is gone (a sandbox's seed ISO): recorded
-- before the VM's destroy starts, removed when the volume is gone, so a
-- restart finishes what a crash interrupted.
CREATE TABLE volume_deletions (
	volid  TEXT    PRIMARY KEY,
	node   TEXT    NOT NULL,
	vmid   INTEGER NOT NULL,
	since  INTEGER NOT NULL
);

-- Orphans the reaper found: VMs with AgentLab metadata but no agentlab tag,
-- clone placeholders and seed ISOs whose VM is gone. id is "vm/<vmid>" or
-- "iso/<volid>"; first_seen starts the grace period before a prune.
CREATE TABLE orphans (
	id          TEXT    PRIMARY KEY,
	kind        TEXT    NOT NULL,
	vmid        INTEGER NOT NULL,
	node        TEXT    NOT NULL DEFAULT '',
	volid       TEXT    NOT NULL DEFAULT '',
	reason      TEXT    NOT NULL DEFAULT '',
	first_seen  INTEGER NOT NULL,
	last_seen   INTEGER NOT NULL
);
