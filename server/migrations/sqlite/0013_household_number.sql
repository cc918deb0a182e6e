-- The register's household number (户号) and registered address (户籍地址), projected so a
-- re-import of the register finds its households without loading documents. Filled by the
-- projection rebuild that PROJECTION_VERSION 6 triggers.
ALTER TABLE p_households ADD COLUMN number TEXT NOT NULL DEFAULT '';
ALTER TABLE p_households ADD COLUMN registered_address TEXT NOT NULL DEFAULT '';
CREATE INDEX p_households_by_number ON p_households (number);
CREATE INDEX p_residents_by_id_number ON p_residents (id_number);

-- One row per register import run: who ran which file when, and the actor its changes carry,
-- so every imported change is attributable to a run.
CREATE TABLE imports (
    actor       TEXT PRIMARY KEY NOT NULL,
    device      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    operator    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    rows_total  BIGINT NOT NULL,
    rows_bad    BIGINT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    unchanged   BIGINT NOT NULL
);

-- What the register said when it was last imported, one row per household (member '') and
-- per member: a JSON object of field → value. A re-import writes a field only when the
-- register changed it since, so an old file never undoes what workers recorded on their
-- phones. `key` finds a household without 户号 again (its grid and head's name).
CREATE TABLE import_state (
    doc_id TEXT NOT NULL,
    member TEXT NOT NULL,
    fields TEXT NOT NULL,
    key    TEXT,
    PRIMARY KEY (doc_id, member)
);
CREATE INDEX import_state_by_key ON import_state (key) WHERE key IS NOT NULL;
