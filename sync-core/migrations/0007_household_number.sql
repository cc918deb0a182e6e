-- The register's household number (户号) and registered address (户籍地址); filled by the
-- projection rebuild that PROJECTION_VERSION 6 triggers.
ALTER TABLE p_households ADD COLUMN number TEXT NOT NULL DEFAULT '';
ALTER TABLE p_households ADD COLUMN registered_address TEXT NOT NULL DEFAULT '';
