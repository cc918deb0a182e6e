-- A revoked device may enroll again under the same id with a new code: `enrolled_at` keeps the
-- first enrollment, this records the latest re-enrollment (NULL: never re-enrolled).
ALTER TABLE devices ADD COLUMN reenrolled_at BIGINT;
