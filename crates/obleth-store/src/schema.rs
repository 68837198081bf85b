//! The control-plane schema: who applies migrations, and what a pod that does not apply
//! them checks before it serves.
//!
//! In a cluster, migrations are one step of their own (`obleth migrate`, a Helm hook Job)
//! and pods start with [`Schema::Require`]: they never run DDL, so a rolling upgrade
//! cannot race on it, and a pod refuses to start on a schema older than its own
//! migrations instead of failing later on a missing column. A schema *newer* than the
//! pod's (the migration of the next release ran first) is accepted: migrations only add,
//! so the previous release keeps working during the roll.

use sqlx::migrate::Migrator;

use crate::{Result, StoreError};

/// What opening a store does with its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schema {
    /// Apply pending migrations (the embedded default: one process, nothing to race).
    #[default]
    Migrate,
    /// Apply nothing; refuse a schema that lacks any of this build's migrations.
    Require,
}

/// One row of sqlx's `_sqlx_migrations`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Applied {
    pub version: i64,
    pub checksum: Vec<u8>,
    pub success: bool,
}

/// Where a schema stands against this build (what `obleth migrate` reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration of this build.
    pub latest: i64,
    /// Migrations that were pending and are now applied (empty when checked only).
    pub applied_now: Vec<i64>,
}

/// The migrator of a backend, accepting migrations newer than its own (applied by the
/// next release during a rolling upgrade) instead of refusing to start beside them.
pub(crate) fn lenient(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// The versions in `after` that were not in `before`, in order.
pub(crate) fn newly_applied(before: Option<&[Applied]>, after: Option<&[Applied]>) -> Vec<i64> {
    let had = |v: i64| before.is_some_and(|b| b.iter().any(|a| a.version == v && a.success));
    let mut now: Vec<i64> =
        after.unwrap_or_default().iter().filter(|a| a.success && !had(a.version)).map(|a| a.version).collect();
    now.sort_unstable();
    now
}

pub(crate) fn latest(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Checks that every migration of `migrator` is in `applied`, successfully and
/// unchanged. `applied` is `None` when the migrations table does not exist.
pub(crate) fn check(migrator: &Migrator, applied: Option<&[Applied]>) -> Result<()> {
    let run = "run `obleth migrate` with this release first, or set database.migrate = true";
    let Some(applied) = applied else {
        return Err(StoreError::Backend(format!(
            "the control-plane database has no schema yet (database.migrate is false): {run}"
        )));
    };
    let mut missing = Vec::new();
    for m in migrator.iter() {
        match applied.iter().find(|a| a.version == m.version) {
            None => missing.push(format!("{} ({})", m.version, m.description)),
            Some(a) if !a.success => {
                return Err(StoreError::Backend(format!(
                    "migration {} ({}) failed part-way on this database: repair it, then {run}",
                    m.version, m.description
                )));
            }
            Some(a) if a.checksum != *m.checksum => {
                return Err(StoreError::Backend(format!(
                    "migration {} ({}) on this database differs from this release's: it was changed after \
                     being applied",
                    m.version, m.description
                )));
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let have = applied.iter().filter(|a| a.success).map(|a| a.version).max().unwrap_or(0);
    Err(StoreError::Backend(format!(
        "the control-plane schema is at version {have}, older than this release needs ({}); missing: {}; {run}",
        latest(migrator),
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrator() -> Migrator {
        sqlx::migrate!("./migrations/sqlite")
    }

    fn applied(m: &Migrator, upto: i64) -> Vec<Applied> {
        m.iter()
            .filter(|x| x.version <= upto)
            .map(|x| Applied { version: x.version, checksum: x.checksum.to_vec(), success: true })
            .collect()
    }

    #[test]
    fn a_complete_or_newer_schema_passes() {
        let m = migrator();
        let mut rows = applied(&m, i64::MAX);
        check(&m, Some(&rows)).expect("complete");
        rows.push(Applied { version: latest(&m) + 1, checksum: vec![1], success: true });
        check(&m, Some(&rows)).expect("a newer release's migration is accepted");
    }

    #[test]
    fn an_older_empty_failed_or_edited_schema_is_refused_with_the_way_out() {
        let m = migrator();
        let err = check(&m, None).expect_err("no table").to_string();
        assert!(err.contains("no schema yet") && err.contains("obleth migrate"), "{err}");

        let err = check(&m, Some(&applied(&m, 2))).expect_err("older").to_string();
        assert!(
            err.contains("at version 2") && err.contains("missing: 3 (") && err.contains("obleth migrate"),
            "{err}"
        );

        let mut rows = applied(&m, i64::MAX);
        rows[1].success = false;
        assert!(check(&m, Some(&rows)).expect_err("failed").to_string().contains("failed part-way"));

        let mut rows = applied(&m, i64::MAX);
        rows[0].checksum = vec![0; 48];
        assert!(check(&m, Some(&rows)).expect_err("edited").to_string().contains("changed after being applied"));
    }
}
