-- The control plane's schema on Postgres: the final state of migrations/sqlite/0001..0003
-- (tenants with quota_fail_closed, api_keys, models with max_in_flight, groups) in one step.
--
-- Column names, meanings and constraints mirror the SQLite schema one for one; only the
-- types are Postgres' own:
--   * timestamps are Unix milliseconds (BIGINT), as everywhere in obleth;
--   * weights are INTEGER (the store caps them at 1 000 000); u32 caps and the context
--     window are BIGINT (a u32 does not fit INTEGER), u64 rates are BIGINT;
--   * flags are BOOLEAN and money is DOUBLE PRECISION (the f64 the code uses, exactly);
--   * allowed_models is JSONB, not TEXT: the database then guarantees it is a JSON array
--     (CHECK below), keeps its order and duplicates like the SQLite text does, and it can
--     be queried later (`allowed_models ? 'm1'`: which tenants name a model) without
--     parsing text. It is written as `$n::jsonb` and read as `allowed_models::text`, so
--     sqlx needs no `json` feature;
--   * names and ids are TEXT COLLATE "C": comparisons, uniqueness and ORDER BY are bytewise
--     like SQLite's BINARY collation, whatever the database's default locale (under an
--     ICU or glibc locale, `x-1`, `x.1` and `x_1` would sort differently than on SQLite);
--   * the model `api_key` is stored as given, like on SQLite (protect the database).

CREATE TABLE tenants (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    name                   TEXT COLLATE "C" NOT NULL CONSTRAINT tenants_name_key UNIQUE,
    weight                 INTEGER NOT NULL CHECK (weight >= 1),
    group_name             TEXT COLLATE "C" NOT NULL,
    allowed_models         JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(allowed_models) = 'array'),
    disabled               BOOLEAN NOT NULL DEFAULT FALSE,
    never_degrade          BOOLEAN NOT NULL DEFAULT FALSE,
    quota_tpm              BIGINT,
    quota_rpm              BIGINT,
    quota_max_in_flight    BIGINT,
    quota_monthly_budget   DOUBLE PRECISION,
    quota_lifetime_budget  DOUBLE PRECISION,
    -- Refuse (503) rather than admit on a local share while the shared budget store is down.
    quota_fail_closed      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT,
    prefix      TEXT COLLATE "C" NOT NULL,
    key_hash    TEXT COLLATE "C" NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,   -- hex SHA-256; the secret is never stored
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE models (
    model_name             TEXT COLLATE "C" PRIMARY KEY,
    upstream_model         TEXT NOT NULL,
    api_base               TEXT,
    api_key                TEXT,
    input_cost_per_token   DOUBLE PRECISION NOT NULL DEFAULT 0,
    output_cost_per_token  DOUBLE PRECISION NOT NULL DEFAULT 0,
    context_window         BIGINT,
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    admission_weight       DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (admission_weight > 0),
    max_in_flight          BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

-- Fairshare groups (weights for hierarchical admission).
CREATE TABLE groups (
    name        TEXT COLLATE "C" PRIMARY KEY,
    weight      INTEGER NOT NULL CHECK (weight >= 1),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
