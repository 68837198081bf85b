//! `obleth serve` reaching its stores over TLS, against real servers with certificates
//! the test makes: Redis (`rediss://`, for budgets and the cluster, with a private CA and
//! a client certificate the server requires) and ClickHouse over HTTPS (private CA).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use obleth::client::call;
use obleth_testkit::{OwnClickHouse, OwnRedis};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::*;

/// Redis keys matching `pattern`, read over the server's plain port (the test's own view).
fn keys(redis: &OwnRedis, pattern: &str) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "--scan", "--pattern", pattern])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_the_cluster_run_on_rediss_with_a_client_certificate() {
    let shutdown = CancellationToken::new();
    let redis = OwnRedis::start_tls();
    let mock = mock(&shutdown).await;
    let ca = redis.ca();
    let tls = [
        ("OBLETH_BUDGET_STORE", "redis".to_owned()),
        ("OBLETH_BUDGET_REDIS_URL", redis.tls_url()),
        ("OBLETH_CLUSTER_REDIS_URL", redis.tls_url()),
        ("OBLETH_CLUSTER_CHANNEL", "obleth-tls".to_owned()),
        ("OBLETH_REDIS_TLS_CA_FILE", ca.ca_cert().display().to_string()),
        ("OBLETH_REDIS_TLS_CLIENT_CERT", ca.client_cert().display().to_string()),
        ("OBLETH_REDIS_TLS_CLIENT_KEY", ca.client_key().display().to_string()),
    ];
    let mut pod = Gateway::new(mock, &tls);
    pod.start().await;
    let key = seed(&pod).await;
    call(&pod.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"quota": {"rpm": 3}}))).await.unwrap();

    assert_eq!(send(&pod, &key, 3).await, 3);
    assert_eq!(
        chat_status(&pod, &key).await,
        429,
        "the fourth request in a minute is over the rpm quota held in Redis"
    );

    // What the pod wrote went over TLS: budget counters and the pod's slot claim.
    assert!(!keys(&redis, "obleth:*").is_empty(), "budget keys in Redis: {:?}\n{}", keys(&redis, "*"), pod.log(1));
    let cluster = call(&pod.admin, "GET", "/api/v1/cluster", None).await.unwrap();
    assert_eq!(cluster["pods"].as_array().map(Vec::len), Some(1), "{cluster}");
    assert!(!keys(&redis, "obleth-tls:*").is_empty(), "the cluster's keys went over TLS too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_the_ca_does_not_trust_the_redis_certificate() {
    let shutdown = CancellationToken::new();
    let redis = OwnRedis::start_tls();
    let mock = mock(&shutdown).await;
    // Only the system's roots: the private CA's certificate must be refused.
    let mut pod = Gateway::new(
        mock,
        &[
            ("OBLETH_BUDGET_STORE", "redis".to_owned()),
            ("OBLETH_BUDGET_REDIS_URL", redis.tls_url()),
            ("OBLETH_BUDGET_BREAKER_FAILURES", "1".to_owned()),
        ],
    );
    pod.start().await;
    let key = seed(&pod).await;
    call(
        &pod.admin,
        "PATCH",
        "/api/v1/tenants/t1",
        Some(json!({"quota": {"rpm": 3, "monthly_budget": 100.0, "fail_closed": true}})),
    )
    .await
    .unwrap();
    assert_eq!(
        chat_status(&pod, &key).await,
        503,
        "a fail-closed tenant is refused while its budget store cannot be trusted"
    );
    assert!(keys(&redis, "obleth:*").is_empty(), "nothing reached Redis");
    let log = pod.log(1);
    assert!(log.contains("UnknownIssuer") || log.contains("certificate"), "refused for its certificate:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_reach_clickhouse_over_https() {
    let shutdown = CancellationToken::new();
    let server = OwnClickHouse::start_https();
    let mock = mock(&shutdown).await;
    let mut pod = Gateway::new(
        mock,
        &[
            ("OBLETH_LEDGER_BACKEND", "clickhouse".to_owned()),
            ("OBLETH_LEDGER_CLICKHOUSE_URL", server.https_url()),
            ("OBLETH_LEDGER_CLICKHOUSE_DATABASE", "tls".to_owned()),
            ("OBLETH_LEDGER_CLICKHOUSE_CA_FILE", server.ca().ca_cert().display().to_string()),
        ],
    );
    pod.start().await;
    let key = seed(&pod).await;
    assert_eq!(send(&pod, &key, 5).await, 5);
    pod.wait_ledger("5 rows written", |s| s["rows_written"].as_u64() >= Some(5)).await;
    let count = server.query("SELECT count() FROM tls.obleth_usage");
    assert_eq!(count.trim(), "5");
}

/// The deployment's schema step: `obleth migrate` waits for the database, applies the
/// migrations once, and a pod with `database.migrate = false` refuses an unmigrated
/// database, naming the way out, and serves a migrated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_its_own_step_and_pods_check_the_schema() {
    let shutdown = CancellationToken::new();
    let pg = PgDb::create();
    let mock = mock(&shutdown).await;
    let migrate = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_obleth"))
            .args(["migrate", "--wait", "2s"])
            .env_clear()
            .env("OBLETH_DATABASE_URL", url)
            .output()
            .unwrap()
    };

    let mut pod = Gateway::new(mock, &[("OBLETH_DATABASE_URL", pg.url()), ("OBLETH_DATABASE_MIGRATE", "false".into())]);
    let refused = Command::new(env!("CARGO_BIN_EXE_obleth"))
        .arg("serve")
        .env_clear()
        .envs(pod.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("no schema yet") && stderr.contains("obleth migrate"),
        "{stderr}"
    );

    // A password in the URL (the server's trust auth ignores it) is never printed.
    let with_password = pg.url().replacen("postgres@", "postgres:migrate-s3cret@", 1);
    let first = migrate(&with_password);
    let (out, err) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    let shipped =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../obleth-store/migrations/postgres")).unwrap().count();
    let applied = format!("applied {shipped} migration(s)");
    assert!(first.status.success() && out.contains(&applied), "{applied}: {out}{err}");
    assert!(!out.contains("migrate-s3cret") && !err.contains("migrate-s3cret"), "no credentials printed: {out}{err}");
    let again = migrate(&pg.url());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    pod.start().await;
    let key = seed(&pod).await;
    assert_eq!(send(&pod, &key, 2).await, 2);

    // An unreachable database: retried until --wait, then a clear failure.
    let port = free_port();
    let down = migrate(&format!("postgres://postgres:migrate-s3cret@127.0.0.1:{port}/none"));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(!down.status.success() && err.contains("unavailable") && !err.contains("panicked"), "{err}");
    assert!(!err.contains("migrate-s3cret"), "{err}");
}
