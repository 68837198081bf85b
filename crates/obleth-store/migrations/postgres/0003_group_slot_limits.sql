-- Optional slot limits of a fairshare group (mirrors migrations/sqlite/0005; NULL: none):
-- slots reserved for it while it has requests waiting, and a cap on its requests in
-- flight.
ALTER TABLE groups ADD COLUMN reserved_slots INTEGER CHECK (reserved_slots >= 1);
ALTER TABLE groups ADD COLUMN max_slots INTEGER CHECK (max_slots >= 1);
ALTER TABLE groups ADD CONSTRAINT groups_reserved_within_max CHECK (reserved_slots <= max_slots);
