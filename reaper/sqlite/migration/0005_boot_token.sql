-- A sandbox's seed carries a boot token; the reaper swaps it for a fresh
-- heartbeat token at the guest's boot report. Until the first heartbeat with
-- the new token, the boot token may ask for it again (an answer lost on its
-- way): boot_token_sha256 finds the sandbox by it.
ALTER TABLE leases ADD COLUMN boot_token_sha256 TEXT NOT NULL DEFAULT '';
CREATE INDEX leases_boot_token ON leases (boot_token_sha256) WHERE boot_token_sha256 != '';
