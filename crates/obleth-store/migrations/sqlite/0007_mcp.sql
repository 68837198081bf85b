-- The MCP gateway (issue 15): upstream MCP servers, grants of their tools to tenants and
-- keys, the keys restricted to their own grants, and pins of tool definitions.
-- Lists and maps are JSON text, as tenants.allowed_models; the store validates every
-- field (rules/mcp.rs) and these CHECKs hold what a row must never break.

CREATE TABLE mcp_servers (
    id                 TEXT PRIMARY KEY,                  -- mcp_…
    name               TEXT NOT NULL UNIQUE,              -- [a-z0-9._-]: the prefix of its tools' names
    transport          TEXT NOT NULL CHECK (transport IN ('http', 'stdio')),
    url                TEXT,                              -- http: the Streamable HTTP endpoint
    command            TEXT,                              -- stdio: a name of [mcp.stdio.commands]
    args               TEXT NOT NULL DEFAULT '[]' CHECK (json_type(args) = 'array'),
    credential         TEXT,                              -- write-only, like models.api_key
    credential_header  TEXT NOT NULL DEFAULT 'authorization',
    call_timeout_ms    INTEGER NOT NULL DEFAULT 60000 CHECK (call_timeout_ms > 0),
    list_timeout_ms    INTEGER NOT NULL DEFAULT 2000 CHECK (list_timeout_ms > 0),
    max_concurrency    INTEGER NOT NULL DEFAULT 16 CHECK (max_concurrency > 0),
    require_approval   INTEGER NOT NULL DEFAULT 0,
    capture            INTEGER NOT NULL DEFAULT 0,
    redact_fields      TEXT NOT NULL DEFAULT '[]' CHECK (json_type(redact_fields) = 'array'),
    tool_weights       TEXT NOT NULL DEFAULT '{}' CHECK (json_type(tool_weights) = 'object'),
    enabled            INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    CHECK ((transport = 'http' AND url IS NOT NULL AND command IS NULL)
        OR (transport = 'stdio' AND command IS NOT NULL AND url IS NULL))
);

-- What the composite foreign keys below refer to: a key grant's key must be a key of the
-- grant's tenant, which the database then holds too, not only the store's rules.
CREATE UNIQUE INDEX api_keys_id_tenant ON api_keys(id, tenant_id);

CREATE TABLE mcp_grants (
    id          TEXT PRIMARY KEY,                                          -- mgr_…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_id      TEXT,                                                      -- NULL: the whole tenant
    server_id   TEXT NOT NULL REFERENCES mcp_servers(id) ON DELETE CASCADE,
    tool        TEXT,                                                      -- the upstream's name; NULL: every tool
    created_at  INTEGER NOT NULL,
    FOREIGN KEY (key_id, tenant_id) REFERENCES api_keys(id, tenant_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX mcp_grants_unique ON mcp_grants (tenant_id, COALESCE(key_id, ''), server_id, COALESCE(tool, ''));
CREATE INDEX mcp_grants_server ON mcp_grants (server_id);
CREATE INDEX mcp_grants_key ON mcp_grants (key_id);

-- Keys narrowed to their own grants: marked by their first key grant and kept when those
-- grants are revoked, so that revoking a key's last grant never widens it to its tenant's.
CREATE TABLE mcp_restricted_keys (
    key_id     TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    FOREIGN KEY (key_id, tenant_id) REFERENCES api_keys(id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX mcp_restricted_keys_tenant ON mcp_restricted_keys (tenant_id);

-- Definitions are canonical JSON text, kept byte for byte (their hashes are over it).
CREATE TABLE mcp_tool_pins (
    server_id      TEXT NOT NULL REFERENCES mcp_servers(id) ON DELETE CASCADE,
    tool           TEXT NOT NULL,
    approved_hash  TEXT,                  -- NULL: never approved (a server requiring approval)
    approved_def   TEXT,
    pending_hash   TEXT,                  -- set while the served definition differs: quarantined
    pending_def    TEXT,
    first_seen_at  INTEGER NOT NULL,
    changed_at     INTEGER,
    approved_at    INTEGER,
    approved_by    TEXT,
    PRIMARY KEY (server_id, tool),
    CHECK ((approved_hash IS NULL) = (approved_def IS NULL)),
    CHECK ((pending_hash IS NULL) = (pending_def IS NULL)),
    CHECK (approved_hash IS NOT NULL OR pending_hash IS NOT NULL)
) WITHOUT ROWID;
