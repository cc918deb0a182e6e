-- Department clerks and leaders; cases entering and leaving departments' scope; intake from
-- the 12345 hotline and residents' mini-programs; grid boundaries for placing cases by point.

ALTER TABLE devices ADD COLUMN department TEXT;
ALTER TABLE enrollments ADD COLUMN department TEXT;

-- A feed row with `full_doc` set means "this whole document entered the scope here": the pull
-- sends every change of the document, not one change.
ALTER TABLE scope_feed ADD COLUMN full_doc TEXT;

-- Which departments a case is currently dispatched to (lead and co-departments).
CREATE TABLE case_departments (
    doc_id TEXT NOT NULL,
    dept   TEXT NOT NULL,
    PRIMARY KEY (doc_id, dept)
);
CREATE INDEX case_departments_by_dept ON case_departments (dept);

CREATE TABLE intake_keys (
    key_hash   TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Idempotency: one case per (intake system, caller's order number).
CREATE TABLE intake_orders (
    source   TEXT NOT NULL,
    order_no TEXT NOT NULL,
    doc_id   TEXT NOT NULL,
    PRIMARY KEY (source, order_no)
);

ALTER TABLE p_grids ADD COLUMN boundary TEXT NOT NULL DEFAULT '[]';
