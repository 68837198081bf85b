-- The audit trail of admin changes, and indexes for keyset pagination of the listings.
-- Entries are appended only. `before`/`after` are JSON snapshots without secrets.

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: the trail's order
    at             INTEGER NOT NULL,                    -- Unix milliseconds
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    resource_kind  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    before         TEXT,                                -- JSON, or NULL when there was none
    after          TEXT
);
CREATE INDEX audit_log_resource ON audit_log(resource_kind, resource_id, id);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_at ON audit_log(at);

-- Keys are listed by (created_at, id); rotation sets expires_at on the old key.
CREATE INDEX api_keys_created ON api_keys(created_at, id);
