-- The MCP gateway (issue 15): mirrors migrations/sqlite/0007 column for column, with the
-- types of 0001 (BIGINT times, BOOLEAN flags, TEXT COLLATE "C" ids and names for bytewise
-- order). args, redact_fields and tool_weights are JSONB, checked to be an array or an
-- object, written as `$n::jsonb` and read as `::text`. Tool definitions are TEXT, not
-- JSONB: they are canonical JSON whose hash is over their exact bytes, and JSONB would
-- reorder keys and rewrite numbers.

CREATE TABLE mcp_servers (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL CONSTRAINT mcp_servers_name_key UNIQUE,
    transport          TEXT NOT NULL CHECK (transport IN ('http', 'stdio')),
    url                TEXT,
    command            TEXT COLLATE "C",
    args               JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    credential         TEXT,
    credential_header  TEXT NOT NULL DEFAULT 'authorization',
    call_timeout_ms    INTEGER NOT NULL DEFAULT 60000 CHECK (call_timeout_ms > 0),
    list_timeout_ms    INTEGER NOT NULL DEFAULT 2000 CHECK (list_timeout_ms > 0),
    max_concurrency    INTEGER NOT NULL DEFAULT 16 CHECK (max_concurrency > 0),
    require_approval   BOOLEAN NOT NULL DEFAULT FALSE,
    capture            BOOLEAN NOT NULL DEFAULT FALSE,
    redact_fields      JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(redact_fields) = 'array'),
    tool_weights       JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tool_weights) = 'object'),
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    CHECK ((transport = 'http' AND url IS NOT NULL AND command IS NULL)
        OR (transport = 'stdio' AND command IS NOT NULL AND url IS NULL))
);

-- A key grant's key must be a key of the grant's tenant: held by the database too.
CREATE UNIQUE INDEX api_keys_id_tenant ON api_keys(id, tenant_id);

CREATE TABLE mcp_grants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_id      TEXT COLLATE "C",
    server_id   TEXT COLLATE "C" NOT NULL REFERENCES mcp_servers(id) ON DELETE CASCADE,
    tool        TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    FOREIGN KEY (key_id, tenant_id) REFERENCES api_keys(id, tenant_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX mcp_grants_unique ON mcp_grants (tenant_id, COALESCE(key_id, ''), server_id, COALESCE(tool, ''));
CREATE INDEX mcp_grants_server ON mcp_grants (server_id);
CREATE INDEX mcp_grants_key ON mcp_grants (key_id);

-- Keys narrowed to their own grants (kept when their grants are revoked).
CREATE TABLE mcp_restricted_keys (
    key_id     TEXT COLLATE "C" PRIMARY KEY,
    tenant_id  TEXT COLLATE "C" NOT NULL,
    FOREIGN KEY (key_id, tenant_id) REFERENCES api_keys(id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX mcp_restricted_keys_tenant ON mcp_restricted_keys (tenant_id);

CREATE TABLE mcp_tool_pins (
    server_id      TEXT COLLATE "C" NOT NULL REFERENCES mcp_servers(id) ON DELETE CASCADE,
    tool           TEXT COLLATE "C" NOT NULL,
    approved_hash  TEXT,
    approved_def   TEXT,
    pending_hash   TEXT,
    pending_def    TEXT,
    first_seen_at  BIGINT NOT NULL,
    changed_at     BIGINT,
    approved_at    BIGINT,
    approved_by    TEXT,
    PRIMARY KEY (server_id, tool),
    CHECK ((approved_hash IS NULL) = (approved_def IS NULL)),
    CHECK ((pending_hash IS NULL) = (pending_def IS NULL)),
    CHECK (approved_hash IS NOT NULL OR pending_hash IS NOT NULL)
);
