-- A tenant with a hard spend budget may choose to be refused rather than admitted on a
-- pod's local share while the shared budget store (Redis) is unreachable.
ALTER TABLE tenants ADD COLUMN quota_fail_closed INTEGER NOT NULL DEFAULT 0;
