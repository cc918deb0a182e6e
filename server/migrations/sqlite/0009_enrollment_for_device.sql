-- A code made for one device (`gridsync-server device enroll --device ID`): only that device
-- may redeem it, and only such a code re-enrolls a revoked device. Without it any fresh code
-- could claim a revoked phone's id and write under its name.
ALTER TABLE enrollments ADD COLUMN for_device TEXT;
