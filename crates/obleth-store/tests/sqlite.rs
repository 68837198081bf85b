//! The conformance suite against the embedded SQLite store, on a real file.

use obleth_store::{ControlPlaneStore, SqliteStore, conformance};

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    conformance::run(&store).await;
}

#[tokio::test]
async fn sqlite_reopens_existing_file_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    {
        let store = SqliteStore::connect(&url).await.expect("connect");
        store.create_tenant(serde_json::from_str(r#"{"name":"kept"}"#).expect("json")).await.expect("create");
    }
    let store = SqliteStore::connect(&url).await.expect("reopen runs migrations idempotently");
    assert_eq!(store.get_tenant("kept").await.expect("kept").weight, 1);
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("connect");
    conformance::run(&store).await;
}

#[tokio::test]
async fn connect_picks_sqlite_for_sqlite_urls() {
    let store = obleth_store::connect("sqlite::memory:").await.expect("connect");
    conformance::run(store.as_ref()).await;
}

#[tokio::test]
async fn connect_rejects_unknown_schemes_without_echoing_them() {
    for url in ["mysql://root:hunter2@db/x", "/var/lib/obleth/cp.db", "", "hunter2-password-with-colon:x"] {
        match obleth_store::connect(url).await {
            Err(obleth_store::StoreError::Invalid { field: "database.url", message }) => {
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("{url}: {:?}", other.map(|_| "a store")),
        }
    }
}

/// Another connection holding SQLite's write lock: a delete waits for it (the store's
/// busy timeout), and if it is held past that, answers unavailable (503), never a server
/// error, and changes nothing.
#[tokio::test]
async fn a_held_write_lock_is_waited_for_then_unavailable() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let store = std::sync::Arc::new(SqliteStore::connect(&url).await.expect("connect"));
    for name in ["waits", "held"] {
        store
            .create_tenant(serde_json::from_value(serde_json::json!({ "name": name })).expect("json"))
            .await
            .expect("create");
    }
    let mut other = sqlx::SqliteConnection::connect(&url).await.expect("second connection");

    // Released within the busy timeout: the delete waits, then goes through.
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut other).await.expect("lock");
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete_tenant("waits").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::raw_sql("COMMIT").execute(&mut other).await.expect("unlock");
    delete.await.expect("join").expect("the delete waited for the lock");

    // Held past it (5 s): unavailable, and the tenant is still there.
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut other).await.expect("lock");
    match store.delete_tenant("held").await {
        Err(obleth_store::StoreError::Unavailable(m)) => assert!(m.contains("busy"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.expect("unlock");
    store.delete_tenant("held").await.expect("once the lock is free");
}

/// With `Schema::Require` nothing is migrated: an empty database, or one missing a
/// migration, is refused; a database a newer release migrated further is served.
#[tokio::test]
async fn require_checks_the_schema_without_changing_it() {
    use obleth_store::Schema;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let err = SqliteStore::open(&url, Schema::Require).await.expect_err("no file").to_string();
    assert!(err.contains("run `obleth migrate` first"), "{err}");
    assert!(!dir.path().join("cp.db").exists(), "checking the schema creates no file");
    // A file with no schema in it (another program's).
    let empty = url.replace("cp.db", "other.db");
    let pool = sqlx::SqlitePool::connect(&format!("{empty}?mode=rwc")).await.expect("pool");
    sqlx::query("CREATE TABLE unrelated (x INTEGER)").execute(&pool).await.expect("create");
    pool.close().await;
    let err = SqliteStore::open(&empty, Schema::Require).await.expect_err("no schema").to_string();
    assert!(err.contains("no schema yet"), "{err}");

    let (_, status) = SqliteStore::open(&url, Schema::Migrate).await.expect("migrate");
    assert_eq!(status.applied_now.len() as i64, status.latest, "every migration applied once");
    let (store, status) = SqliteStore::open(&url, Schema::Require).await.expect("migrated");
    assert!(status.applied_now.is_empty());
    store.create_tenant(serde_json::from_str(r#"{"name":"t"}"#).expect("json")).await.expect("usable");

    // A newer release's migration, applied first during a rolling upgrade.
    let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (999, 'next release', 1, x'00', 0)")
        .execute(&pool)
        .await
        .expect("insert");
    SqliteStore::open(&url, Schema::Require).await.expect("a newer schema is served");
    SqliteStore::open(&url, Schema::Migrate).await.expect("and migrating beside it is a no-op, not an error");

    // A migration missing (an older schema).
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations WHERE version < 999)",
    )
    .execute(&pool)
    .await
    .expect("delete");
    let err = SqliteStore::open(&url, Schema::Require).await.expect_err("older").to_string();
    assert!(err.contains("older than this release needs") && err.contains("obleth migrate"), "{err}");
}
