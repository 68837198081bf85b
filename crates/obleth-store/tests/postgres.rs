//! The conformance suite and Postgres-specific behaviour against a real server.
//!
//! The server is `OBLETH_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may create databases). Each test works in its own freshly created database,
//! dropped afterwards even when the test fails. Without a reachable server these tests
//! fail: they are never skipped.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use obleth_core::{ApiKey, key, now_millis};
use obleth_store::{ControlPlaneStore, NewTenant, PostgresStore, StoreError, TenantPatch, conformance};
use sqlx::{Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn server_url() -> String {
    std::env::var("OBLETH_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database (the path) replaced by `db`, query parameters kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{db}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn server_connection(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "Postgres is not reachable at {url}: {e}. These tests need a real server: start one \
             (trust auth, a role that may CREATE DATABASE) or point OBLETH_TEST_POSTGRES_URL at one."
        ),
        Err(_) => panic!("connecting to Postgres at {url} timed out after 10 s (set OBLETH_TEST_POSTGRES_URL)"),
    }
}

fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// A database of its own for one test; dropped (best effort) when the guard is, panics included.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        TestDb::create_with("").await
    }

    /// `options` is appended to `CREATE DATABASE <name>`.
    async fn create_with(options: &str) -> TestDb {
        let name = format!("obleth_test_{}", random_suffix());
        let server = server_url();
        let mut conn = server_connection(&server).await;
        let sql = format!("CREATE DATABASE {name}{options}");
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        TestDb { url: with_database(&server, &name), name }
    }

    /// Rows of `_sqlx_migrations`: (version, success).
    async fn migrations(&self) -> Vec<(i64, bool)> {
        let mut conn = server_connection(&self.url).await;
        let rows = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("read _sqlx_migrations");
        let _ = conn.close().await;
        rows
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be unwinding: use a runtime of
        // our own on a thread of our own, and never panic here.
        let (server, name) = (server_url(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return false;
            };
            rt.block_on(async {
                let drop = async {
                    let mut conn = PgConnection::connect(&server).await.ok()?;
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::raw_sql(&sql).execute(&mut conn).await.ok()?;
                    conn.close().await.ok()
                };
                matches!(tokio::time::timeout(Duration::from_secs(15), drop).await, Ok(Some(())))
            })
        });
        if !dropper.join().unwrap_or(false) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

fn tenant(name: &str) -> NewTenant {
    serde_json::from_value(serde_json::json!({ "name": name })).expect("tenant json")
}

#[tokio::test]
async fn postgres_conformance() {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url).await.expect("connect");
    conformance::run(&store).await;
    store.close().await;
}

/// Under a linguistic default collation (ICU en-US sorts `x_1` before `x-1` before `x.1`),
/// the schema's `COLLATE "C"` keeps lookups, uniqueness and ordering identical to SQLite.
#[tokio::test]
async fn postgres_conformance_on_an_icu_collated_database() {
    let db = TestDb::create_with(" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'").await;
    let store = PostgresStore::connect(&db.url).await.expect("connect");
    conformance::run(&store).await;
    store.close().await;
}

#[tokio::test]
async fn reconnect_keeps_data_and_migrations_are_idempotent() {
    let db = TestDb::create().await;
    {
        // Through the URL dispatcher, as the binary opens it.
        let store = obleth_store::connect(&db.url).await.expect("connect");
        store.create_tenant(tenant("kept")).await.expect("create");
    }
    let applied = db.migrations().await;
    assert!(!applied.is_empty() && applied.iter().all(|(_, ok)| *ok), "{applied:?}");
    for _ in 0..2 {
        let store = PostgresStore::connect(&db.url).await.expect("reconnect runs migrations idempotently");
        assert_eq!(store.get_tenant("kept").await.expect("kept").weight, 1);
        store.close().await;
    }
    assert_eq!(db.migrations().await, applied, "nothing applied twice");
    // postgresql:// is accepted too.
    let alias = db.url.replacen("postgres://", "postgresql://", 1);
    let store = obleth_store::connect(&alias).await.expect("postgresql:// URL");
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
}

/// Replicas starting together on an empty database: the migrator's advisory lock lets
/// exactly one apply the schema and the others find it done.
#[tokio::test]
async fn concurrent_first_start_migrates_once() {
    let db = TestDb::create().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for c in connects {
        c.await.expect("join").expect("connect").close().await;
    }
    let applied = db.migrations().await;
    let unique: std::collections::BTreeSet<_> = applied.iter().map(|(v, _)| v).collect();
    assert_eq!(unique.len(), applied.len(), "{applied:?}");
}

#[tokio::test]
async fn unreachable_server_fails_fast_as_unavailable() {
    // Nothing listens on port 1: every attempt is refused, and the pool retries until its
    // acquire timeout.
    for url in ["postgres://postgres@127.0.0.1:1/postgres", "postgresql://u:secret@127.0.0.1:1/x"] {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(20), obleth_store::connect(url)).await;
        let elapsed = started.elapsed();
        match result {
            Ok(Err(StoreError::Unavailable(message))) => {
                assert!(message.contains("127.0.0.1:1"), "says where: {message}");
                assert!(!message.contains("secret"), "never echoes the password: {message}");
            }
            Ok(other) => panic!("{url}: expected Unavailable, got {:?}", other.map(|_| "a store")),
            Err(_) => panic!("{url}: connect still hanging after 20 s"),
        }
        assert!(elapsed < Duration::from_secs(10), "{url}: took {elapsed:?}");
    }
}

#[tokio::test]
async fn concurrent_creates_of_one_name_admit_exactly_one() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.expect("connect"));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_tenant(tenant("contested")).await })
        })
        .collect();
    let (mut created, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => created += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("expected Ok or Conflict, got {other:?}"),
        }
    }
    assert_eq!((created, conflicts), (1, 15));
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
    store.close().await;
}

/// Patches of different fields from several replicas at once all land: each one reads
/// and writes the row under its lock, so none overwrites another with a stale copy.
#[tokio::test]
async fn concurrent_patches_of_different_fields_all_apply() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.expect("connect"));
    store.create_tenant(tenant("busy")).await.expect("create");
    let patches = [
        TenantPatch { weight: Some(9), ..Default::default() },
        TenantPatch { group: Some("batch".into()), ..Default::default() },
        TenantPatch { disabled: Some(true), ..Default::default() },
        TenantPatch { never_degrade: Some(true), ..Default::default() },
        TenantPatch { allowed_models: Some(vec!["m1".into()]), ..Default::default() },
    ];
    let tasks: Vec<_> = patches
        .into_iter()
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move { store.update_tenant("busy", p).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("patch");
    }
    let t = store.get_tenant("busy").await.expect("get");
    assert_eq!((t.weight, t.group.as_str(), t.disabled, t.never_degrade), (9, "batch", true, true));
    assert_eq!(t.allowed_models, ["m1"]);
    store.close().await;
}

/// A delete picked as a deadlock's victim (40P01) is run again and succeeds. Another
/// session holds the tenant's key, the delete locks the tenant and waits for the key,
/// then the other session asks for the tenant: a deadlock, which Postgres breaks by
/// aborting the delete (the other session looks for deadlocks only after 20 s).
#[tokio::test]
async fn a_deadlock_victim_is_run_again() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.expect("connect"));
    let t = store.create_tenant(tenant("deadlocked")).await.expect("create");
    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: t.id.clone(),
        name: None,
        prefix: generated.prefix,
        created_at: now_millis(),
        expires_at: None,
        revoked_at: None,
    };
    store.insert_key(&record, generated.hash).await.expect("key");

    let mut other = server_connection(&db.url).await;
    sqlx::raw_sql("SET deadlock_timeout = '20s'; BEGIN").execute(&mut other).await.expect("begin");
    sqlx::query("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE")
        .bind(&record.id)
        .execute(&mut other)
        .await
        .expect("lock the key");
    let delete = tokio::spawn({
        let (store, id) = (store.clone(), t.id.clone());
        async move { store.delete_tenant(&id).await }
    });
    // Until the delete waits for the key's lock.
    let mut watcher = server_connection(&db.url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the delete never waited for the key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE")
        .bind(&t.id)
        .execute(&mut other)
        .await
        .expect("the delete, not this session, is the deadlock's victim");
    sqlx::raw_sql("COMMIT").execute(&mut other).await.expect("commit");
    let (deleted, hashes) = delete.await.expect("join").expect("the delete, run again after the deadlock");
    assert_eq!((deleted.id, hashes), (t.id, vec![generated.hash]));
    store.close().await;
}

/// Postgres text cannot hold NUL; such input is refused as invalid, not a server error.
#[tokio::test]
async fn nul_characters_are_invalid_input() {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url).await.expect("connect");
    let t = store.create_tenant(tenant("nul")).await.expect("create");
    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: t.id,
        name: Some("a\0b".into()),
        prefix: generated.prefix,
        created_at: now_millis(),
        expires_at: None,
        revoked_at: None,
    };
    match store.insert_key(&record, generated.hash).await {
        Err(StoreError::Invalid { field: "name", .. }) => {}
        other => panic!("NUL in key name: {other:?}"),
    }
    let model = serde_json::from_value(serde_json::json!({ "model_name": "m", "api_key": "sk-\u{0}" })).expect("json");
    match store.create_model(model).await {
        Err(StoreError::Invalid { field: "api_key", .. }) => {}
        other => panic!("NUL in api_key: {other:?}"),
    }
    store.close().await;
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/postgres?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
}

/// TLS to Postgres, against a server of the test's own that refuses plaintext TCP:
/// `sslmode=require` connects encrypted; `verify-full` connects with the CA that signed
/// the server's certificate and refuses the server without it (no trusted CA signed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections() {
    let pg = obleth_testkit::OwnPostgres::start_tls();
    let url = pg.url();
    match PostgresStore::connect(&format!("{url}?sslmode=disable")).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("no encryption") || m.contains("pg_hba"), "{m}"),
        other => panic!("plaintext must be refused by this server: {other:?}"),
    }

    let store = PostgresStore::connect(&format!("{url}?sslmode=require")).await.expect("TLS with sslmode=require");
    store.ping().await.expect("ping");
    let t = store.create_tenant(tenant("over-tls")).await.expect("create");
    assert_eq!(store.get_tenant("over-tls").await.expect("get"), t);
    let mut conn = PgConnection::connect(&format!("{url}?sslmode=require")).await.expect("connect");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl, "the session is encrypted");
    store.close().await;

    let localhost = url.replace("127.0.0.1", "localhost");
    let ca = pg.ca_cert().display().to_string();
    let verified = PostgresStore::connect(&format!("{localhost}?sslmode=verify-full&sslrootcert={ca}")).await;
    verified.expect("verify-full with the server's CA").close().await;
    assert!(
        PostgresStore::connect(&format!("{localhost}?sslmode=verify-full")).await.is_err(),
        "verify-full refuses a certificate no trusted CA signed"
    );
}
