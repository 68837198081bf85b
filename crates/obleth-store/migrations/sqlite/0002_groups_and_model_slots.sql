-- Fairshare groups (weights for hierarchical admission) and per-model slot caps.

CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    weight      INTEGER NOT NULL CHECK (weight >= 1),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

ALTER TABLE models ADD COLUMN max_in_flight INTEGER;
