-- The console's people (dispatchers, department clerks, leaders, operators), their sessions
-- and the audit log of sign-ins and actions. Passwords and session tokens are stored only as
-- hashes (argon2id for passwords, SHA-256 for tokens).
CREATE TABLE console_users (
    login         TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    dept          TEXT,
    towns         TEXT NOT NULL,
    device_id     TEXT,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    login      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_login ON console_sessions (login);

CREATE TABLE console_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    login   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL,
    addr    TEXT NOT NULL
);
CREATE INDEX console_audit_by_login ON console_audit (login, at);

-- Categories marked, per town, for automatic dispatch to their default departments after
-- registration (自动流转), with who set the rule and when.
CREATE TABLE auto_routes (
    town        TEXT NOT NULL,
    subcategory TEXT NOT NULL,
    set_by      TEXT NOT NULL,
    set_at      BIGINT NOT NULL,
    PRIMARY KEY (town, subcategory)
);

-- One automatic dispatch per registration: the first process to claim (case, the event that
-- registered it) dispatches; any other finds the claim taken.
CREATE TABLE routing_claims (
    doc_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (doc_id, event)
);
