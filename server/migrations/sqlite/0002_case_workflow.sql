-- The case workflow's derived fields, for dashboards and indicators; intake orders; and
-- department membership of cases. Projections are rebuilt on start (projection version 2).
ALTER TABLE p_cases ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE p_cases ADD COLUMN lead TEXT;
ALTER TABLE p_cases ADD COLUMN co TEXT NOT NULL DEFAULT '';
ALTER TABLE p_cases ADD COLUMN dispatched_at BIGINT;
ALTER TABLE p_cases ADD COLUMN deadline BIGINT;
ALTER TABLE p_cases ADD COLUMN amber_at BIGINT;
ALTER TABLE p_cases ADD COLUMN handled_at BIGINT;
ALTER TABLE p_cases ADD COLUMN closed_at BIGINT;
ALTER TABLE p_cases ADD COLUMN self_closed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE p_cases ADD COLUMN reworks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE p_cases ADD COLUMN extensions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE p_cases ADD COLUMN ever_suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE p_cases ADD COLUMN satisfaction TEXT;
ALTER TABLE p_cases ADD COLUMN supervisions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE p_cases ADD COLUMN event_conflicts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX p_cases_by_lead ON p_cases (lead, status);
CREATE INDEX p_cases_by_grid ON p_cases (grid, reported_at);

CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
