-- Phone clocks: each device's skew as measured at its last sync with pushes, and the entry
-- times flagged as implausible (see gridsync_core::time_flags).
ALTER TABLE devices ADD COLUMN skew_ms BIGINT;
ALTER TABLE devices ADD COLUMN skew_at BIGINT;

CREATE TABLE time_flags (
    doc_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    device      TEXT NOT NULL,
    skew_ms     BIGINT,
    reason      TEXT NOT NULL,
    PRIMARY KEY (doc_id, path)
);
