-- The phone's local store: documents as a compacted snapshot plus incremental change chunks,
-- and the relational projections lists and search read. Projections are derived data:
-- `Store::rebuild_projections` recomputes them from the documents.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE docs (
    doc_id      TEXT PRIMARY KEY NOT NULL,
    doc_type    TEXT NOT NULL,
    scope       TEXT NOT NULL,
    creator     TEXT NOT NULL,
    snapshot    BLOB NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX docs_by_type_scope ON docs (doc_type, scope);

-- Changes written since the snapshot, in order. Loading = snapshot + every chunk.
CREATE TABLE doc_chunks (
    doc_id TEXT NOT NULL REFERENCES docs (doc_id),
    seq    INTEGER NOT NULL,
    bytes  BLOB NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE p_grids (
    doc_id      TEXT PRIMARY KEY NOT NULL,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL,
    parent      TEXT,
    roster_size INTEGER NOT NULL
);
CREATE INDEX p_grids_by_code ON p_grids (code);

CREATE TABLE p_households (
    doc_id         TEXT PRIMARY KEY NOT NULL,
    grid           TEXT NOT NULL,
    address        TEXT NOT NULL,
    residence      TEXT NOT NULL,
    flags          TEXT NOT NULL,
    head_name      TEXT,
    member_count   INTEGER NOT NULL,
    visit_count    INTEGER NOT NULL,
    last_visit_at  INTEGER,
    conflict_count INTEGER NOT NULL
);
CREATE INDEX p_households_by_grid ON p_households (grid, address);

CREATE TABLE p_residents (
    resident_id  TEXT NOT NULL,
    household_id TEXT NOT NULL,
    grid         TEXT NOT NULL,
    name         TEXT NOT NULL,
    id_number    TEXT,
    gender       TEXT,
    birth_date   TEXT,
    relation     TEXT NOT NULL,
    phones       TEXT NOT NULL,
    work         TEXT NOT NULL,
    status       TEXT NOT NULL,
    categories   TEXT NOT NULL,
    PRIMARY KEY (household_id, resident_id)
);
CREATE INDEX p_residents_by_name ON p_residents (name);
CREATE INDEX p_residents_by_id_number ON p_residents (id_number);

CREATE TABLE p_visits (
    visit_id     TEXT NOT NULL,
    household_id TEXT NOT NULL,
    worker       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    purpose      TEXT NOT NULL,
    findings     TEXT NOT NULL,
    PRIMARY KEY (household_id, visit_id)
);

CREATE TABLE p_cases (
    doc_id         TEXT PRIMARY KEY NOT NULL,
    grid           TEXT NOT NULL,
    title          TEXT NOT NULL,
    status         TEXT NOT NULL,
    source         TEXT NOT NULL,
    subcategory    TEXT NOT NULL,
    urgency        TEXT NOT NULL,
    reported_at    INTEGER NOT NULL,
    address        TEXT NOT NULL,
    conflict_count INTEGER NOT NULL
);
CREATE INDEX p_cases_by_status ON p_cases (status, reported_at);

CREATE TABLE p_case_links (
    case_id      TEXT NOT NULL,
    household_id TEXT NOT NULL,
    resident_id  TEXT
);
CREATE INDEX p_case_links_by_household ON p_case_links (household_id);
CREATE INDEX p_case_links_by_case ON p_case_links (case_id);

CREATE TABLE p_inspections (
    doc_id       TEXT PRIMARY KEY NOT NULL,
    grid         TEXT NOT NULL,
    worker       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    track_points INTEGER NOT NULL,
    findings     INTEGER NOT NULL
);
CREATE INDEX p_inspections_by_grid ON p_inspections (grid, started_at);
