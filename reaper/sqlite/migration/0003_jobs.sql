-- Jobs, their logs and their artifacts. 0001 reserved two tables for them
-- that nothing ever wrote; they are replaced.
DROP TABLE artifacts;
DROP TABLE jobs;

CREATE TABLE jobs (
	id                TEXT PRIMARY KEY,
	repo              TEXT    NOT NULL,
	ref               TEXT    NOT NULL,
	task              TEXT    NOT NULL,
	timeout           INTEGER NOT NULL,            -- nanoseconds
	artifact_globs    TEXT    NOT NULL DEFAULT '[]', -- JSON array
	env               TEXT    NOT NULL DEFAULT '{}', -- JSON object
	keep_sandbox      INTEGER NOT NULL DEFAULT 0,
	owner             TEXT    NOT NULL DEFAULT '',
	status            TEXT    NOT NULL,
	reason            TEXT    NOT NULL DEFAULT '',
	exit_code         INTEGER,                     -- NULL until the task's end is known
	node              TEXT    NOT NULL DEFAULT '',
	vmid              INTEGER NOT NULL DEFAULT 0,
	workspace         TEXT    NOT NULL DEFAULT '',
	bootstrap_sha256  TEXT    NOT NULL,
	bootstrap_used    INTEGER NOT NULL DEFAULT 0,
	token_sha256      TEXT    NOT NULL DEFAULT '',
	created_at        INTEGER NOT NULL,            -- unix milliseconds
	started_at        INTEGER,
	finished_at       INTEGER,
	last_seen         INTEGER NOT NULL,
	sandbox_seen      INTEGER NOT NULL DEFAULT 0,
	sandbox_fate      TEXT    NOT NULL DEFAULT '',
	log_size          INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_bootstrap ON jobs (bootstrap_sha256);
CREATE INDEX jobs_token ON jobs (token_sha256) WHERE token_sha256 != '';
CREATE INDEX jobs_status ON jobs (status);

-- A job's log as the runner sent it, chunk by chunk; offset is the position
-- of the chunk's first byte in the whole log.
CREATE TABLE job_logs (
	job_id  TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	offset  INTEGER NOT NULL,
	data    BLOB    NOT NULL,
	PRIMARY KEY (job_id, offset)
);

-- Uploaded artifacts; the bytes are in the file at path.
CREATE TABLE artifacts (
	job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	size        INTEGER NOT NULL,
	sha256      TEXT    NOT NULL,
	path        TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (job_id, name)
);
