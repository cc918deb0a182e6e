-- Photos: the references documents hold (a projection: scoping of downloads and uploads,
-- evidence checks), the stored files, and uploads under way (tus), one per file and device.
CREATE TABLE p_photos (
    doc_id       TEXT NOT NULL,
    photo_id     TEXT NOT NULL,
    doc_type     TEXT NOT NULL,
    grid         TEXT NOT NULL,
    entry        TEXT NOT NULL,
    stage        TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    thumb_sha256 TEXT,
    thumb_size   BIGINT,
    mime         TEXT NOT NULL,
    taken_at     BIGINT NOT NULL,
    lat          DOUBLE PRECISION,
    lon          DOUBLE PRECISION,
    PRIMARY KEY (doc_id, photo_id)
);
CREATE INDEX p_photos_by_sha ON p_photos (sha256);
CREATE INDEX p_photos_by_thumb ON p_photos (thumb_sha256);

ALTER TABLE p_cases ADD COLUMN lat DOUBLE PRECISION;
ALTER TABLE p_cases ADD COLUMN lon DOUBLE PRECISION;

-- A file the server holds in its object store, hash verified. `phash` is the perceptual
-- hash (hex) the near-duplicate check compares.
CREATE TABLE blobs (
    sha256    TEXT PRIMARY KEY NOT NULL,
    size      BIGINT NOT NULL,
    mime      TEXT NOT NULL,
    phash     TEXT,
    stored_at BIGINT NOT NULL,
    device    TEXT NOT NULL
);

-- An upload under way: its chunks are objects `partial/<sha>/<device>/<offset>`.
CREATE TABLE uploads (
    sha256     TEXT NOT NULL,
    device     TEXT NOT NULL,
    length     BIGINT NOT NULL,
    upload_offset BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, device)
);
CREATE INDEX uploads_by_age ON uploads (created_at);
