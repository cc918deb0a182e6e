-- Photos: the references each document holds (a projection, rebuilt like the others), and the
-- upload state of each stored file. The upload queue is the referenced files not yet
-- uploaded, so a photo committed with its document is queued by that same transaction.
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

-- What the server last said it holds of each file being uploaded (`upload_offset`), and
-- when it confirmed the whole file (hash verified; `done_at`).
CREATE TABLE photo_uploads (
    sha256        TEXT PRIMARY KEY NOT NULL,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    done_at       BIGINT
);
