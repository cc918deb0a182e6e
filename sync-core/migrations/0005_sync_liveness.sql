-- Liveness of the phone's sync: nothing the server refuses or the phone cannot read may stop
-- the rest from syncing.
--   retry_at:  a refused document is set aside until then (ms), retried with backoff.
--   attempts:  how many times in a row the server refused it (drives the backoff).
ALTER TABLE doc_sync ADD COLUMN retry_at INTEGER;
ALTER TABLE doc_sync ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- Pulled documents this build could not read (a newer schema, an unknown value, a projection
-- error). Their changes are kept as bytes, shown, and applied once a build can read them; the
-- sync cursor moves on so the rest of the pull is never held back.
CREATE TABLE quarantine (
    doc_id    TEXT PRIMARY KEY NOT NULL,
    reason    TEXT NOT NULL,
    reader    TEXT NOT NULL,
    first_at  INTEGER NOT NULL,
    last_at   INTEGER NOT NULL
);
CREATE TABLE quarantine_changes (
    doc_id TEXT NOT NULL REFERENCES quarantine (doc_id),
    n      INTEGER NOT NULL,
    bytes  BLOB NOT NULL,
    PRIMARY KEY (doc_id, n)
);

-- What a rebase replaced: the local copy of a diverged document before its unsynced edits
-- were re-applied under a fresh actor. Kept so that nothing recorded is ever lost.
CREATE TABLE superseded (
    doc_id TEXT NOT NULL,
    at     INTEGER NOT NULL,
    reason TEXT NOT NULL,
    bytes  BLOB NOT NULL
);
