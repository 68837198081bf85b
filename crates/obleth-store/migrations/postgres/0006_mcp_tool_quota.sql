-- Per-tenant limits on MCP tool calls (mirrors migrations/sqlite/0008; NULL: no limit):
-- calls per minute and calls in flight, each pod enforcing them on its own. The store's
-- rules bound them (rules.rs); the CHECKs hold only what a row must never break, so that
-- a later release may raise the maxima without a migration.
ALTER TABLE tenants ADD COLUMN quota_tool_calls_per_minute BIGINT CHECK (quota_tool_calls_per_minute >= 1);
ALTER TABLE tenants ADD COLUMN quota_tool_calls_in_flight BIGINT CHECK (quota_tool_calls_in_flight >= 1);
