-- The server's schema on PostgreSQL: the same tables, columns and indexes as the SQLite
-- migrations up to 0013 arrive at, so the shared SQL runs unchanged. Every text column sorts
-- byte-wise (COLLATE "C"), as SQLite's do: grid codes are compared as ranges ("under this
-- unit" is `code >= unit AND code < unit || ':'`), which a language collation would break.

CREATE TABLE seq_counter (
    id    BIGINT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO seq_counter (id, value) VALUES (1, 0);

CREATE TABLE enrollments (
    code_hash  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    role       TEXT COLLATE "C" NOT NULL,
    scopes     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by    TEXT COLLATE "C",
    used_at    BIGINT,
    department TEXT COLLATE "C",
    for_device TEXT COLLATE "C"
);

CREATE TABLE devices (
    device_id   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    role        TEXT COLLATE "C" NOT NULL,
    scopes      TEXT COLLATE "C" NOT NULL,
    token_hash  TEXT COLLATE "C" NOT NULL UNIQUE,
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT,
    last_seen   BIGINT,
    department TEXT COLLATE "C",
    reenrolled_at BIGINT,
    skew_ms BIGINT,
    skew_at BIGINT
);

CREATE TABLE docs (
    doc_id       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    doc_type     TEXT COLLATE "C" NOT NULL,
    scope        TEXT COLLATE "C" NOT NULL,
    creator      TEXT COLLATE "C" NOT NULL,
    snapshot     BYTEA,
    snapshot_seq BIGINT NOT NULL,
    heads        BYTEA NOT NULL,
    last_seq     BIGINT NOT NULL,
    pending      BIGINT NOT NULL
);

CREATE INDEX docs_by_scope ON docs (scope);

CREATE TABLE changes (
    seq    BIGINT PRIMARY KEY NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    hash   BYTEA NOT NULL,
    device TEXT COLLATE "C" NOT NULL,
    bytes  BYTEA NOT NULL,
    size   BIGINT NOT NULL DEFAULT 0,
    chain  BYTEA,
    actor  TEXT COLLATE "C",
    UNIQUE (doc_id, hash)
);

CREATE TABLE scope_feed (
    scope TEXT COLLATE "C" NOT NULL,
    seq   BIGINT NOT NULL,
    full_doc TEXT COLLATE "C",
    PRIMARY KEY (scope, seq)
);

CREATE TABLE p_grids (
    doc_id      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    code        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    level       TEXT COLLATE "C" NOT NULL,
    parent      TEXT COLLATE "C",
    roster_size BIGINT NOT NULL,
    boundary TEXT COLLATE "C" NOT NULL DEFAULT '[]'
);

CREATE TABLE p_households (
    doc_id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    grid           TEXT COLLATE "C" NOT NULL,
    address        TEXT COLLATE "C" NOT NULL,
    residence      TEXT COLLATE "C" NOT NULL,
    flags          TEXT COLLATE "C" NOT NULL,
    head_name      TEXT COLLATE "C",
    member_count   BIGINT NOT NULL,
    visit_count    BIGINT NOT NULL,
    last_visit_at  BIGINT,
    conflict_count BIGINT NOT NULL,
    number TEXT COLLATE "C" NOT NULL DEFAULT '',
    registered_address TEXT COLLATE "C" NOT NULL DEFAULT ''
);

CREATE INDEX p_households_by_grid ON p_households (grid, address);

CREATE TABLE p_residents (
    resident_id  TEXT COLLATE "C" NOT NULL,
    household_id TEXT COLLATE "C" NOT NULL,
    grid         TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    id_number    TEXT COLLATE "C",
    gender       TEXT COLLATE "C",
    birth_date   TEXT COLLATE "C",
    relation     TEXT COLLATE "C" NOT NULL,
    phones       TEXT COLLATE "C" NOT NULL,
    work         TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    categories   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (household_id, resident_id)
);

CREATE INDEX p_residents_by_name ON p_residents (name);

CREATE TABLE p_visits (
    visit_id     TEXT COLLATE "C" NOT NULL,
    household_id TEXT COLLATE "C" NOT NULL,
    worker       TEXT COLLATE "C" NOT NULL,
    at           BIGINT NOT NULL,
    purpose      TEXT COLLATE "C" NOT NULL,
    findings     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (household_id, visit_id)
);

CREATE TABLE p_cases (
    doc_id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    grid           TEXT COLLATE "C" NOT NULL,
    title          TEXT COLLATE "C" NOT NULL,
    status         TEXT COLLATE "C" NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    subcategory    TEXT COLLATE "C" NOT NULL,
    urgency        TEXT COLLATE "C" NOT NULL,
    reported_at    BIGINT NOT NULL,
    address        TEXT COLLATE "C" NOT NULL,
    conflict_count BIGINT NOT NULL,
    category TEXT COLLATE "C" NOT NULL DEFAULT '',
    lead TEXT COLLATE "C",
    co TEXT COLLATE "C" NOT NULL DEFAULT '',
    dispatched_at BIGINT,
    deadline BIGINT,
    amber_at BIGINT,
    handled_at BIGINT,
    closed_at BIGINT,
    self_closed BIGINT NOT NULL DEFAULT 0,
    reworks BIGINT NOT NULL DEFAULT 0,
    extensions BIGINT NOT NULL DEFAULT 0,
    ever_suspended BIGINT NOT NULL DEFAULT 0,
    satisfaction TEXT COLLATE "C",
    supervisions BIGINT NOT NULL DEFAULT 0,
    event_conflicts BIGINT NOT NULL DEFAULT 0,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION
);

CREATE INDEX p_cases_by_status ON p_cases (status, reported_at);

CREATE TABLE p_case_links (
    case_id      TEXT COLLATE "C" NOT NULL,
    household_id TEXT COLLATE "C" NOT NULL,
    resident_id  TEXT COLLATE "C"
);

CREATE INDEX p_case_links_by_household ON p_case_links (household_id);

CREATE INDEX p_case_links_by_case ON p_case_links (case_id);

CREATE TABLE p_inspections (
    doc_id       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    grid         TEXT COLLATE "C" NOT NULL,
    worker       TEXT COLLATE "C" NOT NULL,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    track_points BIGINT NOT NULL,
    findings     BIGINT NOT NULL
);

CREATE INDEX p_cases_by_lead ON p_cases (lead, status);

CREATE INDEX p_cases_by_grid ON p_cases (grid, reported_at);

CREATE TABLE server_meta (
    key   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    value TEXT COLLATE "C" NOT NULL
);

CREATE TABLE case_departments (
    doc_id TEXT COLLATE "C" NOT NULL,
    dept   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (doc_id, dept)
);

CREATE INDEX case_departments_by_dept ON case_departments (dept);

CREATE TABLE intake_keys (
    key_hash   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    towns TEXT COLLATE "C"
);

CREATE TABLE intake_orders (
    source   TEXT COLLATE "C" NOT NULL,
    order_no TEXT COLLATE "C" NOT NULL,
    doc_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, order_no)
);

CREATE INDEX changes_meta_by_seq ON changes (seq, doc_id, device, size);

CREATE INDEX changes_size_by_doc ON changes (doc_id, seq, size);

CREATE TABLE retired_actors (
    actor      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    device     TEXT COLLATE "C" NOT NULL,
    retired_at BIGINT NOT NULL
);

CREATE TABLE time_flags (
    doc_id      TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    at          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    device      TEXT COLLATE "C" NOT NULL,
    skew_ms     BIGINT,
    reason      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (doc_id, path)
);

CREATE TABLE p_photos (
    doc_id       TEXT COLLATE "C" NOT NULL,
    photo_id     TEXT COLLATE "C" NOT NULL,
    doc_type     TEXT COLLATE "C" NOT NULL,
    grid         TEXT COLLATE "C" NOT NULL,
    entry        TEXT COLLATE "C" NOT NULL,
    stage        TEXT COLLATE "C" NOT NULL,
    sha256       TEXT COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL,
    thumb_sha256 TEXT COLLATE "C",
    thumb_size   BIGINT,
    mime         TEXT COLLATE "C" NOT NULL,
    taken_at     BIGINT NOT NULL,
    lat          DOUBLE PRECISION,
    lon          DOUBLE PRECISION,
    PRIMARY KEY (doc_id, photo_id)
);

CREATE INDEX p_photos_by_sha ON p_photos (sha256);

CREATE INDEX p_photos_by_thumb ON p_photos (thumb_sha256);

CREATE TABLE blobs (
    sha256    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    size      BIGINT NOT NULL,
    mime      TEXT COLLATE "C" NOT NULL,
    phash     TEXT COLLATE "C",
    stored_at BIGINT NOT NULL,
    device    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE uploads (
    sha256     TEXT COLLATE "C" NOT NULL,
    device     TEXT COLLATE "C" NOT NULL,
    length     BIGINT NOT NULL,
    upload_offset BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, device)
);

CREATE INDEX uploads_by_age ON uploads (created_at);

CREATE INDEX p_households_by_number ON p_households (number);

CREATE INDEX p_residents_by_id_number ON p_residents (id_number);

CREATE TABLE imports (
    actor       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    device      TEXT COLLATE "C" NOT NULL,
    file_name   TEXT COLLATE "C" NOT NULL,
    file_sha256 TEXT COLLATE "C" NOT NULL,
    operator    TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    rows_total  BIGINT NOT NULL,
    rows_bad    BIGINT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    unchanged   BIGINT NOT NULL
);

CREATE TABLE import_state (
    doc_id TEXT COLLATE "C" NOT NULL,
    member TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C",
    PRIMARY KEY (doc_id, member)
);

CREATE INDEX import_state_by_key ON import_state (key) WHERE key IS NOT NULL;
