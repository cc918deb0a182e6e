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

-- The value each field had in the register when it was last imported (member '' is the
-- household): a re-import writes a field only when the register changed it since, so an
-- old file never undoes what workers recorded on their phones.
CREATE TABLE import_state (
    doc_id TEXT NOT NULL,
    member TEXT NOT NULL,
    field  TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (doc_id, member, field)
);
CREATE INDEX import_state_by_value ON import_state (field, value);
