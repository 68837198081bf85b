//! The admin API under 16 concurrent clients, through the real binary: `obleth serve` as
//! a child process on its embedded SQLite control plane, and on Postgres. Hundreds of
//! tenants are created with a key each, then patched, their keys rotated, more keys
//! added and the tenants deleted, every operation on one tenant racing the others on
//! it. No answer may be a server error (a 500 `database is locked` left tenants in
//! place before), and every tenant must be gone with its keys at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use common::*;

/// Long and varied, as the admin token rule asks.
const TOKEN: &str = "store-test-admin-token-0123456789abcdefXYZ";
/// Concurrent admin clients.
const CLIENTS: usize = 16;
/// Tenants created and deleted per run.
const TENANTS: usize = 1000;

type Http = Client<HttpConnector, Full<Bytes>>;

/// What the clients share.
struct Clients {
    http: Http,
    admin_url: String,
    /// Tenant i's first key, once created.
    keys: Vec<Mutex<Option<String>>>,
    tally: Mutex<Tally>,
}

impl Clients {
    /// One admin request; its status and JSON body.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin_url))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Records an answer; true if it is one of `ok`.
    fn note(&self, op: &'static str, answer: &(u16, Value), ok: &[u16], allowed: &[u16]) -> bool {
        self.tally.lock().unwrap().note(op, answer, ok, allowed)
    }

    /// Runs `work(self, i)` for i in 0..n on `CLIENTS` concurrent clients.
    async fn run<F, Fut>(self: &Arc<Self>, n: usize, work: F)
    where
        F: Fn(Arc<Clients>, usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let next = Arc::new(AtomicUsize::new(0));
        let work = Arc::new(work);
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (shared, next, work) = (self.clone(), next.clone(), work.clone());
            clients.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    work(shared.clone(), i).await;
                }
            });
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
    }
}

/// Answers by operation and status, and the unexpected ones in full.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<(&'static str, u16), u32>,
    unexpected: Vec<String>,
    /// Tenants and keys still there at the end.
    tenants_left: Vec<String>,
    keys_left: Vec<String>,
}

impl Tally {
    /// Records an answer; true if it is one of `ok`. A status of 500 or more is always
    /// unexpected; so is any status outside `ok` and `allowed`.
    fn note(&mut self, op: &'static str, (status, body): &(u16, Value), ok: &[u16], allowed: &[u16]) -> bool {
        *self.statuses.entry((op, *status)).or_default() += 1;
        if *status >= 500 || !(ok.contains(status) || allowed.contains(status)) {
            self.unexpected.push(format!("{op}: {status} {body}"));
        }
        ok.contains(status)
    }
}

/// Creates `TENANTS` tenants with a key each, then races a patch, a rotation of that
/// key, a new key and the delete of every tenant across `CLIENTS` clients. Returns the
/// answers and what is left.
async fn create_race_delete(gw: &Gateway) -> Tally {
    let clients = Arc::new(Clients {
        http: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(CLIENTS).build_http(),
        admin_url: gw.admin.admin_url.clone(),
        keys: (0..TENANTS).map(|_| Mutex::new(None)).collect(),
        tally: Mutex::new(Tally::default()),
    });

    // Every tenant with a key; nothing races here, so everything must succeed.
    let started = Instant::now();
    clients
        .run(TENANTS, |c, i| async move {
            let name = format!("race-{i:04}");
            let answer = c.admin("POST", "/api/v1/tenants", Some(json!({"name": name}))).await;
            if !c.note("create tenant", &answer, &[201], &[]) {
                return;
            }
            let answer = c.admin("POST", &format!("/api/v1/tenants/{name}/keys"), Some(json!({}))).await;
            if c.note("create key", &answer, &[201], &[]) {
                *c.keys[i].lock().unwrap() = answer.1["id"].as_str().map(str::to_owned);
            }
        })
        .await;
    let created = started.elapsed();

    // Four operations per tenant, queued next to each other so that different clients
    // run them at the same time: the delete races the patch, the rotation and the new key.
    let started = Instant::now();
    clients
        .run(TENANTS * 4, |c, n| async move {
            let (i, op) = (n / 4, n % 4);
            let tenant = format!("/api/v1/tenants/race-{i:04}");
            match op {
                0 => {
                    let answer = c.admin("PATCH", &tenant, Some(json!({"weight": 3}))).await;
                    c.note("patch tenant", &answer, &[200], &[404]);
                }
                1 => {
                    let Some(key) = c.keys[i].lock().unwrap().clone() else { return };
                    let path = format!("/api/v1/keys/{key}/rotate");
                    let answer = c.admin("POST", &path, Some(json!({"overlap_secs": 60}))).await;
                    c.note("rotate key", &answer, &[201], &[404]);
                }
                2 => {
                    let answer = c.admin("DELETE", &tenant, None).await;
                    c.note("delete tenant", &answer, &[200], &[]);
                }
                _ => {
                    let answer = c.admin("POST", &format!("{tenant}/keys"), Some(json!({}))).await;
                    c.note("create key", &answer, &[201], &[404]);
                }
            }
        })
        .await;
    eprintln!(
        "{TENANTS} tenants created with a key in {created:?}; patched, rotated, keyed and deleted in {:?}",
        started.elapsed()
    );

    // What is left: tenants, and keys (revoked or not) of any tenant.
    let (status, body) = clients.admin("GET", "/api/v1/tenants?limit=1000", None).await;
    assert_eq!(status, 200, "{body}");
    let tenants = body["data"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str().map(str::to_owned));
    let (status, body) = clients.admin("GET", "/api/v1/keys?include_revoked=true&limit=1000", None).await;
    assert_eq!(status, 200, "{body}");
    let keys = body["data"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str().map(str::to_owned));
    let mut tally = std::mem::take(&mut *clients.tally.lock().unwrap());
    tally.tenants_left = tenants.collect();
    tally.keys_left = keys.collect();
    tally
}

/// No server error and no other unexpected answer, every tenant deleted once, nothing left.
fn assert_clean(store: &str, tally: &Tally) {
    eprintln!("{store}: answers by operation and status: {:?}", tally.statuses);
    assert!(
        tally.unexpected.is_empty(),
        "{store}: {} unexpected answers ({:?}); first ones: {:#?}",
        tally.unexpected.len(),
        tally.statuses,
        &tally.unexpected[..tally.unexpected.len().min(10)]
    );
    let deletes = tally.statuses.get(&("delete tenant", 200)).copied().unwrap_or(0);
    assert_eq!(deletes as usize, TENANTS, "{store}: every tenant deleted once");
    assert!(tally.tenants_left.is_empty(), "{store}: tenants left: {:?}", tally.tenants_left);
    assert!(tally.keys_left.is_empty(), "{store}: keys left: {:?}", tally.keys_left);
}

/// A pod with the test's admin token, started; `extra` adds variables.
async fn pod(shutdown: &CancellationToken, extra: &[(&str, String)]) -> Gateway {
    let mut env: Vec<(&str, String)> =
        vec![("OBLETH_ADMIN_TOKEN", TOKEN.to_owned()), ("OBLETH_LOG_LEVEL", "warn".into())];
    env.extend(extra.iter().cloned());
    let mut gw = Gateway::new(mock(shutdown).await, &env);
    gw.admin.admin_token = TOKEN.to_owned();
    gw.start().await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_control_plane_under_16_concurrent_admin_clients() {
    let shutdown = CancellationToken::new();
    let mut gw = pod(&shutdown, &[]).await;
    let tally = create_race_delete(&gw).await;
    gw.stop();
    assert_clean("sqlite", &tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_control_plane_under_16_concurrent_admin_clients() {
    let shutdown = CancellationToken::new();
    let db = PgDb::create();
    let mut gw = pod(&shutdown, &[("OBLETH_DATABASE_URL", db.url())]).await;
    let tally = create_race_delete(&gw).await;
    gw.stop();
    assert_clean("postgres", &tally);
}
