-- Each change's chain hash, SHA-256(previous chain || seq || change hash): names the whole
-- history up to it, so a cursor anchored on it detects a database restored from a backup.
-- Computed by the server on insert; rows stored before this migration are filled in when the
-- server opens the database (SQL has no portable SHA-256).
ALTER TABLE changes ADD COLUMN chain BLOB;
