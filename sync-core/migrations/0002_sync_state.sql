-- Per-document sync state of the phone.
--   synced_heads: heads the server is known to have (concatenated 32-byte hashes).
--   dirty:        this device wrote changes the server has not acknowledged yet.
--   need_sync:    the server asked for the Automerge sync protocol on this document.
--   rejected:     why the server last refused this document's changes (shown to the worker).
CREATE TABLE doc_sync (
    doc_id       TEXT PRIMARY KEY NOT NULL REFERENCES docs (doc_id),
    synced_heads BLOB NOT NULL DEFAULT x'',
    dirty        INTEGER NOT NULL DEFAULT 1,
    need_sync    INTEGER NOT NULL DEFAULT 0,
    rejected     TEXT
);
CREATE INDEX doc_sync_dirty ON doc_sync (dirty);
INSERT INTO doc_sync (doc_id) SELECT doc_id FROM docs;
