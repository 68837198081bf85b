//! Operators' one-shot commands: `obleth migrate` (the schema step of a deployment) and
//! `obleth health` (a container's health check, for images without curl).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use humantime_serde::re::humantime;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use obleth_store::{Schema, StoreError};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// How long to wait for the database to accept connections (it may be starting
    /// beside this job).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `obleth migrate`: applies the control-plane migrations and exits. Retries while the
/// database is unreachable, up to `--wait`; any other failure (a refused login, a
/// missing database, a failed migration) ends it at once.
pub async fn migrate(config: &Config, args: &MigrateArgs) -> anyhow::Result<()> {
    let target = obleth_core::redact_url(&config.database_url);
    let deadline = Instant::now() + args.wait;
    let mut pause = Duration::from_millis(250);
    let status = loop {
        match obleth_store::open(&config.database_url, Schema::Migrate).await {
            Ok((_, status)) => break status,
            Err(StoreError::Unavailable(why)) if Instant::now() + pause < deadline => {
                eprintln!("migrate: {target} not reachable yet ({why}); retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e).with_context(|| format!("migrating the control-plane database {target}")),
        }
    };
    match status.applied_now.as_slice() {
        [] => println!("migrate: {target} is up to date (schema version {})", status.latest),
        applied => println!(
            "migrate: applied {} migration(s) to {target} ({}); schema version {}",
            applied.len(),
            applied.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
            status.latest
        ),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The endpoint to probe: `/readyz` (serving) or `/healthz` (alive) on the admin port.
    #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
    pub url: String,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `obleth health`: exits 0 when `url` answers 200 within the timeout.
pub async fn health(args: &HealthArgs) -> anyhow::Result<()> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = args.url.parse().with_context(|| format!("invalid --url {}", args.url))?;
    let probe = async {
        let res = client.get(uri).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(args.timeout, probe)
        .await
        .with_context(|| format!("{} did not answer within {:?}", args.url, args.timeout))?
        .with_context(|| format!("cannot reach {}", args.url))?;
    if !status.is_success() {
        bail!("{} answered {status}: {}", args.url, String::from_utf8_lossy(&body).trim());
    }
    Ok(())
}
