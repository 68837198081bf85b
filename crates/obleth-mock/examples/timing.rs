//! Measures how faithfully the mock keeps its configured timing, over real HTTP.
//!
//! Starts the mock in-process on 127.0.0.1:0 for each scenario, runs concurrent streamed
//! chat requests against it, and prints configured vs measured time to first token,
//! inter-token latency, concurrency and throughput. Client-side TTFT includes the HTTP round
//! trip and, when the pool is saturated, queueing.
//!
//! Run with `cargo run --release -p obleth-mock --example timing`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth_mock::{MockConfig, StatsSnapshot};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Scenario {
    name: &'static str,
    ttft_ms: u64,
    itl_ms: u64,
    max_num_seqs: usize,
    clients: usize,
    requests_per_client: usize,
    tokens: u32,
}

/// What one streamed request saw, in client time.
struct Sample {
    ttft: Duration,
    gaps: Vec<Duration>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ttft 20ms / itl 10ms",
        ttft_ms: 20,
        itl_ms: 10,
        max_num_seqs: 64,
        clients: 8,
        requests_per_client: 5,
        tokens: 32,
    },
    Scenario {
        name: "ttft 50ms / itl 5ms",
        ttft_ms: 50,
        itl_ms: 5,
        max_num_seqs: 64,
        clients: 8,
        requests_per_client: 5,
        tokens: 32,
    },
    Scenario {
        name: "saturated: 4 seqs, 16 clients",
        ttft_ms: 20,
        itl_ms: 10,
        max_num_seqs: 4,
        clients: 16,
        requests_per_client: 2,
        tokens: 32,
    },
    Scenario {
        name: "zero latency (overhead)",
        ttft_ms: 0,
        itl_ms: 0,
        max_num_seqs: 0,
        clients: 8,
        requests_per_client: 250,
        tokens: 64,
    },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "{:<30} {:>4} {:>6} | {:>8} {:>8} {:>8} | {:>6} {:>7} {:>7} {:>7} | {:>5} {:>6} | {:>8} {:>8} | {:>7} {:>7}",
        "scenario",
        "seqs",
        "client",
        "ttft cfg",
        "p50",
        "p99",
        "itl cfg",
        "mean",
        "p50",
        "p99",
        "peak",
        "mean",
        "tok/s exp",
        "tok/s",
        "span exp",
        "span"
    );
    for s in SCENARIOS {
        run(s).await?;
    }
    println!(
        "\nttft/itl in ms, measured at the client over HTTP. peak/mean = sequences running in the \
         mock (peak from /mock/stats, mean sampled every 5 ms). exp = ideal from the config; \
         span = wall time of the whole scenario in ms."
    );
    Ok(())
}

async fn run(s: &Scenario) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(obleth_mock::serve(
        listener,
        MockConfig {
            max_num_seqs: s.max_num_seqs,
            ttft: Duration::from_millis(s.ttft_ms),
            itl: Duration::from_millis(s.itl_ms),
            ..MockConfig::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{addr}");

    // Warm up connections and code paths so the first sample is not an outlier.
    for _ in 0..s.clients.min(4) {
        stream_once(&client, &base, 2).await?;
    }
    get_json::<StatsSnapshot>(&client, &format!("{base}/mock/reset"), "POST").await?;

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(sample_running(client.clone(), base.clone(), Arc::clone(&sampling)));

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.clients {
        let (client, base, n, tokens) = (client.clone(), base.clone(), s.requests_per_client, s.tokens);
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(stream_once(&client, &base, tokens).await?);
            }
            anyhow::Ok(out)
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r??);
    }
    let span = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let running_samples = sampler.await?;
    let stats: StatsSnapshot = get_json(&client, &format!("{base}/mock/stats"), "GET").await?;
    let _ = stop.send(());
    server.await??;

    let mut ttfts: Vec<Duration> = samples.iter().map(|x| x.ttft).collect();
    let mut gaps: Vec<Duration> = samples.iter().flat_map(|x| x.gaps.iter().copied()).collect();
    let requests = samples.len();
    let total_tokens = requests as f64 * f64::from(s.tokens);

    // Ideal schedule: each request holds a slot for ttft + (tokens - 1) × itl; the slots
    // (or clients, if fewer) work in parallel with no gaps.
    let service = Duration::from_millis(s.ttft_ms + (u64::from(s.tokens) - 1) * s.itl_ms);
    let lanes = if s.max_num_seqs == 0 { s.clients } else { s.clients.min(s.max_num_seqs) };
    let waves = requests.div_ceil(lanes);
    let span_exp = service * u32::try_from(waves)?;
    let tps_exp =
        if service.is_zero() { f64::INFINITY } else { lanes as f64 * f64::from(s.tokens) / service.as_secs_f64() };
    let mean_running = if running_samples.is_empty() {
        0.0
    } else {
        running_samples.iter().sum::<u64>() as f64 / running_samples.len() as f64
    };
    let gap_mean = gaps.iter().sum::<Duration>() / u32::try_from(gaps.len().max(1))?;
    println!(
        "{:<30} {:>4} {:>6} | {:>8} {:>8.2} {:>8.2} | {:>6} {:>7.3} {:>7.2} {:>7.2} | {:>5} {:>6.2} | {:>8.0} {:>8.0} | {:>7} {:>7.0}",
        s.name,
        if s.max_num_seqs == 0 { "inf".to_owned() } else { s.max_num_seqs.to_string() },
        s.clients,
        s.ttft_ms,
        ms(pct(&mut ttfts, 0.50)),
        ms(pct(&mut ttfts, 0.99)),
        s.itl_ms,
        ms(gap_mean),
        ms(pct(&mut gaps, 0.50)),
        ms(pct(&mut gaps, 0.99)),
        stats.peak_running,
        mean_running,
        tps_exp,
        total_tokens / span.as_secs_f64(),
        span_exp.as_millis(),
        ms(span),
    );
    anyhow::ensure!(stats.completed as usize == requests, "not every request completed: {stats:?}");
    Ok(())
}

/// One streamed chat request; timestamps every token event as it arrives.
async fn stream_once(client: &HttpClient, base: &str, tokens: u32) -> anyhow::Result<Sample> {
    let body = serde_json::json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": "measure me"}],
        "max_tokens": tokens,
        "stream": true,
    });
    let req = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let t0 = Instant::now();
    let mut body = client.request(req).await?.into_body();
    let mut buf = Vec::new();
    let mut stamps = Vec::with_capacity(tokens as usize);
    while let Some(frame) = body.frame().await {
        let now = Instant::now();
        if let Some(data) = frame?.data_ref() {
            buf.extend_from_slice(data);
        }
        // Events end with a blank line; stamp each complete token event on arrival.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let needle: &[u8] = br#""delta":{"content":"#;
            if event.windows(needle.len()).any(|w| w == needle) {
                stamps.push(now);
            }
        }
    }
    anyhow::ensure!(stamps.len() == tokens as usize, "got {} of {tokens} tokens", stamps.len());
    let ttft = stamps.first().map_or(Duration::ZERO, |t| *t - t0);
    let gaps = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    Ok(Sample { ttft, gaps })
}

async fn sample_running(client: HttpClient, base: String, on: Arc<AtomicBool>) -> Vec<u64> {
    let mut out = Vec::new();
    let url = format!("{base}/mock/stats");
    while on.load(Ordering::Relaxed) {
        if let Ok(s) = get_json::<StatsSnapshot>(&client, &url, "GET").await {
            out.push(s.running);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

async fn get_json<T: serde::de::DeserializeOwned>(client: &HttpClient, url: &str, method: &str) -> anyhow::Result<T> {
    let req = http::Request::builder().method(method).uri(url).body(Full::new(Bytes::new()))?;
    let body = client.request(req).await?.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
