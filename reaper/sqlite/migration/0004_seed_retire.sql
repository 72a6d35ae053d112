-- A seed ISO is also deleted while its VM lives on, once the guest has made
-- its first contact: retire = 1 says so (eject from the CD-ROM, then delete).
ALTER TABLE volume_deletions ADD COLUMN retire INTEGER NOT NULL DEFAULT 0;
