-- The towns an intake key may place cases in (comma-separated town codes). Keys made before
-- this have none recorded and are not limited by town (shown as such; replace them).
ALTER TABLE intake_keys ADD COLUMN towns TEXT;
