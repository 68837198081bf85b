-- The tool-call columns, schema version 3 (`{db}` and `{table}` substituted;
-- statements run one by one). Empty or zero for every request that is not an MCP tool
-- call, and for every row from before them.
--
-- Debian's 18.16 has no `ADD COLUMN IF NOT EXISTS`: obleth runs each statement only
-- when its table lacks the column (a table from schema.sql already has them all, and a
-- start that died half-way leaves some added), so each is one column, named right
-- after `ADD COLUMN`. Adding a column with a default rewrites no part; the hourly sums'
-- view names its columns and goes on as before.
ALTER TABLE {db}.{table} ADD COLUMN mcp_server String DEFAULT '';
ALTER TABLE {db}.{table} ADD COLUMN args_sha256 String DEFAULT '';
ALTER TABLE {db}.{table} ADD COLUMN result_bytes UInt64 DEFAULT 0;
ALTER TABLE {db}.{table} ADD COLUMN upstream_error String DEFAULT '';
ALTER TABLE {db}.{table} ADD COLUMN capture String DEFAULT '';
