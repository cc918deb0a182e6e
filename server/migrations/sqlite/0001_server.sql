-- The merge server's store. SQL kept portable (BIGINT, BLOB/BYTEA aside) so the PostgreSQL
-- migration differs only in types.

-- One row: the global change sequence. Every merge transaction updates it first, which
-- serialises writers (so sequence order is commit order and a cursor never skips a change).
CREATE TABLE seq_counter (
    id    INTEGER PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO seq_counter (id, value) VALUES (1, 0);

-- Enrollment codes waiting to be redeemed by a phone (only their hashes are kept).
CREATE TABLE enrollments (
    code_hash  TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by    TEXT,
    used_at    BIGINT
);

-- Enrolled devices. The device id is also the Automerge actor id its changes carry.
CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT,
    last_seen   BIGINT
);

-- Documents: the latest compacted snapshot plus everything after it in `changes`.
CREATE TABLE docs (
    doc_id       TEXT PRIMARY KEY NOT NULL,
    doc_type     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    creator      TEXT NOT NULL,
    snapshot     BLOB,
    snapshot_seq BIGINT NOT NULL,
    heads        BLOB NOT NULL,
    last_seq     BIGINT NOT NULL,
    pending      INTEGER NOT NULL
);
CREATE INDEX docs_by_scope ON docs (scope);

-- Every change ever accepted, append-only, in commit order. Never deleted: it is the history
-- and the feed devices pull from.
CREATE TABLE changes (
    seq    BIGINT PRIMARY KEY NOT NULL,
    doc_id TEXT NOT NULL,
    hash   BLOB NOT NULL,
    device TEXT NOT NULL,
    bytes  BLOB NOT NULL,
    UNIQUE (doc_id, hash)
);
CREATE INDEX changes_by_doc ON changes (doc_id, seq);

-- The per-scope index that feeds cursors: one row per change and per level of its document's
-- scope (town, district, village, grid, micro-grid), so a device's pull is an index range on
-- (its scope, seq) whatever the level it was granted.
CREATE TABLE scope_feed (
    scope TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (scope, seq)
);

CREATE TABLE p_grids (
    doc_id      TEXT PRIMARY KEY NOT NULL,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL,
    parent      TEXT,
    roster_size BIGINT NOT NULL
);

CREATE TABLE p_households (
    doc_id         TEXT PRIMARY KEY NOT NULL,
    grid           TEXT NOT NULL,
    address        TEXT NOT NULL,
    residence      TEXT NOT NULL,
    flags          TEXT NOT NULL,
    head_name      TEXT,
    member_count   BIGINT NOT NULL,
    visit_count    BIGINT NOT NULL,
    last_visit_at  BIGINT,
    conflict_count BIGINT NOT NULL
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

CREATE TABLE p_visits (
    visit_id     TEXT NOT NULL,
    household_id TEXT NOT NULL,
    worker       TEXT NOT NULL,
    at           BIGINT NOT NULL,
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
    reported_at    BIGINT NOT NULL,
    address        TEXT NOT NULL,
    conflict_count BIGINT NOT NULL
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
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    track_points BIGINT NOT NULL,
    findings     BIGINT NOT NULL
);
