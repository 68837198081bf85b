-- Optional slot limits of a fairshare group (NULL: none): slots reserved for it while it
-- has requests waiting, and a cap on its requests in flight. The admin API checks
-- 1 <= reserved_slots <= max_slots.
ALTER TABLE groups ADD COLUMN reserved_slots INTEGER CHECK (reserved_slots >= 1);
ALTER TABLE groups ADD COLUMN max_slots INTEGER CHECK (max_slots >= 1);
