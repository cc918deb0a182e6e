-- The console's people (dispatchers, department clerks, leaders, operators), their sessions
-- and the audit log of sign-ins and actions. Passwords and session tokens are stored only as
-- hashes (argon2id for passwords, SHA-256 for tokens).
CREATE TABLE console_users (
    login         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    role          TEXT COLLATE "C" NOT NULL,
    dept          TEXT COLLATE "C",
    towns         TEXT COLLATE "C" NOT NULL,
    device_id     TEXT COLLATE "C",
    password_hash TEXT COLLATE "C" NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    failures      BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE console_sessions (
    token_hash TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    login      TEXT COLLATE "C" NOT NULL,
    csrf       TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_login ON console_sessions (login);

CREATE TABLE console_audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    login   TEXT COLLATE "C" NOT NULL,
    action  TEXT COLLATE "C" NOT NULL,
    target  TEXT COLLATE "C" NOT NULL,
    outcome TEXT COLLATE "C" NOT NULL,
    detail  TEXT COLLATE "C" NOT NULL,
    addr    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX console_audit_by_login ON console_audit (login, at);

-- Categories marked, per town, for automatic dispatch to their default departments after
-- registration (自动流转), with who set the rule and when.
CREATE TABLE auto_routes (
    town        TEXT COLLATE "C" NOT NULL,
    subcategory TEXT COLLATE "C" NOT NULL,
    set_by      TEXT COLLATE "C" NOT NULL,
    set_at      BIGINT NOT NULL,
    PRIMARY KEY (town, subcategory)
);

-- One automatic dispatch per registration: the first process to claim (case, the event that
-- registered it) dispatches; any other finds the claim taken.
CREATE TABLE routing_claims (
    doc_id     TEXT COLLATE "C" NOT NULL,
    event      TEXT COLLATE "C" NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (doc_id, event)
);
