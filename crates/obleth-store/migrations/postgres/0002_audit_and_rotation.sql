-- The audit trail of admin changes (mirrors migrations/sqlite/0004), and an index for
-- keyset pagination of key listings.
--
-- The id is an identity column: it orders the trail (newest first) and is the pagination
-- key. `before`/`after` are JSONB snapshots without secrets, written as `$n::jsonb` and
-- read as `::text`, like tenants.allowed_models.

CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT NOT NULL,
    actor          TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    resource_kind  TEXT COLLATE "C" NOT NULL,
    resource_id    TEXT COLLATE "C" NOT NULL,
    before         JSONB,
    after          JSONB
);
CREATE INDEX audit_log_resource ON audit_log(resource_kind, resource_id, id);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_at ON audit_log(at);

CREATE INDEX api_keys_created ON api_keys(created_at, id);
