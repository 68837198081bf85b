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
