-- The control plane's first schema: tenants, their API keys, the model registry.
-- Timestamps are Unix milliseconds (INTEGER); lists and quotas are typed columns so that
-- the Postgres schema can mirror this one column for column.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    weight          INTEGER NOT NULL CHECK (weight >= 1),
    group_name      TEXT NOT NULL,
    allowed_models  TEXT NOT NULL DEFAULT '[]',   -- JSON array of model names
    disabled        INTEGER NOT NULL DEFAULT 0,
    never_degrade   INTEGER NOT NULL DEFAULT 0,
    quota_tpm              INTEGER,
    quota_rpm              INTEGER,
    quota_max_in_flight    INTEGER,
    quota_monthly_budget   REAL,
    quota_lifetime_budget  REAL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT,
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the secret; the secret is never stored
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE models (
    model_name             TEXT PRIMARY KEY,
    upstream_model         TEXT NOT NULL,
    api_base               TEXT,
    api_key                TEXT,
    input_cost_per_token   REAL NOT NULL DEFAULT 0,
    output_cost_per_token  REAL NOT NULL DEFAULT 0,
    context_window         INTEGER,
    enabled                INTEGER NOT NULL DEFAULT 1,
    admission_weight       REAL NOT NULL DEFAULT 1 CHECK (admission_weight > 0),
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
