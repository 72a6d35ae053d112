-- Leases as the reaper last saw them. The VM's Proxmox config is the source of
-- truth; this table lets the reaper remember what it decided across restarts
-- (warned once, destroy under way) and answer the control API.
CREATE TABLE leases (
	vmid            INTEGER PRIMARY KEY,
	node            TEXT    NOT NULL DEFAULT '',
	name            TEXT    NOT NULL DEFAULT '',
	status          TEXT    NOT NULL DEFAULT '',
	tags            TEXT    NOT NULL DEFAULT '',
	state           TEXT    NOT NULL,
	reason          TEXT    NOT NULL DEFAULT '',
	created_at      INTEGER,            -- unix milliseconds, NULL when unknown
	expires_at      INTEGER,
	max_expires_at  INTEGER,
	ttl             INTEGER NOT NULL DEFAULT 0, -- nanoseconds
	on_expiry       TEXT    NOT NULL DEFAULT '',
	owner           TEXT    NOT NULL DEFAULT '',
	profile         TEXT    NOT NULL DEFAULT '',
	job_id          TEXT    NOT NULL DEFAULT '',
	workspace       TEXT    NOT NULL DEFAULT '',
	token_sha256    TEXT    NOT NULL DEFAULT '',
	warned_for      INTEGER,
	first_seen      INTEGER NOT NULL,
	last_seen       INTEGER NOT NULL
);
CREATE INDEX leases_token ON leases (token_sha256) WHERE token_sha256 != '';
CREATE INDEX leases_state ON leases (state);

-- Small facts about the reaper itself, such as the end of the last tick
-- (key 'last_tick', unix milliseconds): a present lease was last seen then.
CREATE TABLE meta (
	key    TEXT PRIMARY KEY,
	value  INTEGER NOT NULL
);

-- The audit log: every decision the reaper takes, in order.
CREATE TABLE events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,        -- unix milliseconds
	vmid      INTEGER NOT NULL,
	node      TEXT    NOT NULL DEFAULT '',
	kind      TEXT    NOT NULL,
	decision  TEXT    NOT NULL,
	reason    TEXT    NOT NULL DEFAULT '',
	actor     TEXT    NOT NULL,
	dry_run   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_vmid ON events (vmid, id);
CREATE INDEX events_time ON events (time);

-- Reserved for jobs and their artifacts (a later feature).
CREATE TABLE jobs (
	id                      TEXT PRIMARY KEY,
	repo                    TEXT    NOT NULL DEFAULT '',
	ref                     TEXT    NOT NULL DEFAULT '',
	task                    TEXT    NOT NULL DEFAULT '',
	vmid                    INTEGER,
	status                  TEXT    NOT NULL DEFAULT 'pending',
	exit_code               INTEGER,
	log_tail                TEXT    NOT NULL DEFAULT '',
	bootstrap_token_sha256  TEXT    NOT NULL DEFAULT '',
	created_at              INTEGER NOT NULL,
	updated_at              INTEGER NOT NULL
);

CREATE TABLE artifacts (
	job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	size        INTEGER NOT NULL,
	sha256      TEXT    NOT NULL,
	path        TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (job_id, name)
);
