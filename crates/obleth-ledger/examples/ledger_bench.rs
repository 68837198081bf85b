//! The usage ledger's benchmark: what recording costs the request path, and how many rows
//! per second the pipeline (queue → appender → write-ahead log → shipper) sustains into
//! ClickHouse and SQLite, next to direct inserts, all in one run.
//!
//! ```sh
//! cargo run --release -p obleth-ledger --example ledger_bench -- [--seconds N] [--rounds N] [--reps N]
//! bench/ledger/run.sh      # the same, saving the output under bench/results/
//! ```
//!
//! It starts a `clickhouse-server` of its own (`obleth_testkit::OwnClickHouse`), puts every
//! write-ahead log and SQLite file in a temporary directory, and prints figures. It asserts
//! nothing: a benchmark measures, the tests check.
//!
//! 1. **Request-path cost.** `Ledger::record` (ClickHouse backend running, fsync "always",
//!    default config) against a no-op `UsageSink` and against building the `UsageRecord`
//!    alone, in bursts that fit the queue (1 and 2 recording threads), and paced at 10,000
//!    calls/s with every call timed (with, as a diagnostic, a bare std `sync_channel` whose
//!    receiver blocks as the appender's does, and one whose receiver polls).
//! 2. **Sustained throughput.** One producer records as fast as the pipeline takes rows
//!    (it backs off while more than [`OUTSTANDING`] rows are recorded but not yet in the
//!    database, so the log never fills and nothing is dropped), for `--seconds`, then the
//!    ledger is closed; next to it, direct `insert`s of 10,000-row batches into the same
//!    backend for the same time, no log. ClickHouse and SQLite, alternating over `--rounds`;
//!    as a diagnostic, the ClickHouse pipeline again with fsync "interval". CPU per thread
//!    and per process is read from /proc over each window.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use obleth_core::{AdmissionClass, Usage, UsageRecord, UsageSink};
use obleth_ledger::clickhouse::{ClickHouse, ClickHouseConfig};
use obleth_ledger::sqlite::SqliteLedger;
use obleth_ledger::wal::fs::DirFs;
use obleth_ledger::{Ledger, LedgerBackend, LedgerConfig, LedgerRow};
use obleth_testkit::OwnClickHouse;

/// Rows per burst in the request-path measurement (the queue holds 65,536).
const BURST: usize = 50_000;
/// Paced measurement: calls per repetition and the gap between calls (10,000 calls/s).
const PACED_CALLS: usize = 5_000;
const PACED_GAP: Duration = Duration::from_micros(100);
/// The sustained producer keeps at most this many rows recorded but not yet written to
/// the database (about 100 MB of log): far more than one insert (8 MiB, ~17k rows), so the
/// shipper is never starved, and far less than the log's 1 GiB, so nothing is dropped.
const OUTSTANDING: u64 = 200_000;
/// Rows per direct insert.
const DIRECT_BATCH: usize = 10_000;

struct Args {
    seconds: u64,
    rounds: usize,
    reps: usize,
}

fn args() -> Args {
    let mut a = Args { seconds: 6, rounds: 2, reps: 7 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value =
            || -> u64 { it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number")) };
        match flag.as_str() {
            "--seconds" => a.seconds = value().max(1),
            "--rounds" => a.rounds = value().max(1) as usize,
            "--reps" => a.reps = value().max(5) as usize,
            other => panic!("unknown argument {other} (--seconds N, --rounds N, --reps N)"),
        }
    }
    a
}

fn main() {
    let args = args();
    metrics::set_global_recorder(Probe).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = rt.enter();

    let ch = OwnClickHouse::start();
    let ch_version = ch.query("SELECT version()").trim().to_owned();
    let tmp = tempfile::Builder::new().prefix("obleth-ledger-bench-").tempdir().unwrap();

    println!("# obleth ledger benchmark\n");
    println!("- machine: {} CPUs, {}; kernel {}; clock source {}", nproc(), cpu_model(), kernel(), clocksource());
    println!("- ClickHouse: clickhouse-server {ch_version} (own server on {}, same machine)", ch.http_url());
    println!("- write-ahead logs and SQLite files under {} ({})", tmp.path().display(), fs_type(tmp.path()));
    let d = LedgerConfig::default();
    println!(
        "- LedgerConfig::default(): queue {} rows, batch {} rows, flush {:?}, insert interval {:?}, insert max {} KiB, fsync {:?}, log max {} MiB",
        d.queue_rows,
        d.batch_rows,
        d.flush_interval,
        d.insert_interval,
        d.insert_max_bytes >> 10,
        d.wal.fsync,
        d.wal.max_bytes >> 20
    );
    println!("- load average at start: {}", loadavg());
    println!("- --seconds {} --rounds {} --reps {}", args.seconds, args.rounds, args.reps);

    request_path(&rt, &ch, tmp.path(), args.reps);
    throughput(&rt, &ch, tmp.path(), args.seconds, args.rounds);

    println!("\n- load average at end: {}", loadavg());
    drop(ch);
}

// === the record ===

static THREAD_IDS: AtomicU64 = AtomicU64::new(1);

/// Makes realistic records with unique ids, without shared state between threads.
struct Gen {
    thread: u64,
    n: u64,
}

impl Gen {
    fn new() -> Gen {
        Gen { thread: THREAD_IDS.fetch_add(1, Ordering::Relaxed), n: 0 }
    }

    /// A finished streamed chat completion, as the gateway records one: a 36-character
    /// request id and seven owned strings.
    fn record(&mut self) -> UsageRecord {
        const TENANTS: [&str; 8] = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"];
        self.n += 1;
        let n = self.n;
        let now = obleth_core::now_millis();
        UsageRecord {
            request_id: format!("{:08x}-bench-{:021x}", self.thread, n),
            received_at: now - 250,
            admitted_at: Some(now - 249),
            first_token_at: Some(now - 180),
            finished_at: now,
            tenant_id: Some(TENANTS[(n % 8) as usize].to_owned()),
            key_prefix: Some("obk_7Hq2xZpL".to_owned()),
            group: Some("default".to_owned()),
            route: "/v1/chat/completions",
            requested_model: Some("gpt-4o-mini".to_owned()),
            model: Some("gpt-4o-mini".to_owned()),
            upstream_model: Some("gpt-4o-mini-2024-07-18".to_owned()),
            usage: Some(Usage { input_tokens: 512 + n % 977, output_tokens: 128 + n % 61, cached_tokens: 0 }),
            tokens_estimated: false,
            cost: 0.000_153_6,
            queue_wait_ms: n % 3,
            admission_class: AdmissionClass::Fast,
            status: 200,
            error_type: None,
            streamed: true,
            client_disconnected: false,
            tool: None,
        }
    }
}

/// The baseline sink: takes the record and drops it (what the gateway's sink did before
/// the ledger: a tracing sink that logged nothing at info level).
struct Noop;

impl UsageSink for Noop {
    fn record(&self, record: UsageRecord) {
        drop(black_box(record));
    }
}

/// A bare bounded std channel (the ledger's queue) with a receiver thread that drops what
/// it receives: either blocked in `recv_timeout` between rows, as the appender is, or
/// polling with `try_recv` every millisecond, so that no sender ever has to wake it.
struct ChannelSink {
    tx: Option<std::sync::mpsc::SyncSender<UsageRecord>>,
    receiver: Option<std::thread::JoinHandle<()>>,
}

impl ChannelSink {
    fn start(polling: bool) -> ChannelSink {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        let (tx, rx) = std::sync::mpsc::sync_channel::<UsageRecord>(LedgerConfig::default().queue_rows);
        let receiver = std::thread::spawn(move || {
            if polling {
                loop {
                    match rx.try_recv() {
                        Ok(r) => drop(black_box(r)),
                        Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
            } else {
                loop {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(r) => drop(black_box(r)),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        });
        ChannelSink { tx: Some(tx), receiver: Some(receiver) }
    }
}

impl UsageSink for ChannelSink {
    fn record(&self, record: UsageRecord) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(record);
        }
    }
}

impl Drop for ChannelSink {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
    }
}

// === 1. request path ===

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Variant {
    Build,
    Noop,
    Ledger,
}

fn request_path(rt: &tokio::runtime::Runtime, ch: &OwnClickHouse, dir: &std::path::Path, reps: usize) {
    println!("\n## 1. Request-path cost of `record()`\n");
    let backend = clickhouse(ch, "bench_request_path");
    let wal = Arc::new(DirFs::new(dir.join("wal-request-path")).unwrap());
    let (ledger, _) = Ledger::start(backend, wal, LedgerConfig::default()).unwrap();
    let noop = Noop;
    let mut recorded = 0u64;
    let cpu_before = CpuSnap::take(clickhouse_pid(ch));

    // Warm-up: the first insert creates the table; the allocator and the channel warm up.
    burst(2, BURST / 2, Some(&ledger));
    recorded += BURST as u64;
    drain(&ledger, recorded);

    let mut results: HashMap<(Variant, usize), Vec<f64>> = HashMap::new();
    let mut ledger_rate: HashMap<usize, Vec<f64>> = HashMap::new();
    let order = [Variant::Build, Variant::Noop, Variant::Ledger];
    for rep in 0..reps {
        for threads in [1, 2] {
            for i in 0..3 {
                let v = order[(rep + i) % 3];
                let sink: Option<&dyn UsageSink> = match v {
                    Variant::Build => None,
                    Variant::Noop => Some(&noop),
                    Variant::Ledger => Some(&ledger),
                };
                let (ns, calls_per_s) = burst(threads, BURST / threads, sink);
                results.entry((v, threads)).or_default().push(ns);
                if v == Variant::Ledger {
                    ledger_rate.entry(threads).or_default().push(calls_per_s);
                    recorded += BURST as u64;
                    drain(&ledger, recorded);
                }
            }
        }
    }

    println!(
        "**Bursts.** {BURST} calls per repetition (split over the threads), each call building a fresh record; the \
         queue is drained (appended and shipped) between repetitions, so no call meets a full queue. ns per call per \
         thread, median [min … max] over {reps} repetitions; variants interleaved.\n"
    );
    println!(
        "| threads | build only | build + no-op sink | build + `Ledger::record` | `record()` alone (ledger − build) | no-op alone (no-op − build) | ledger / no-op | ledger calls/s, all threads |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for threads in [1, 2] {
        let b = &results[&(Variant::Build, threads)];
        let n = &results[&(Variant::Noop, threads)];
        let l = &results[&(Variant::Ledger, threads)];
        let minus = |x: &[f64]| x.iter().zip(b).map(|(x, b)| x - b).collect::<Vec<_>>();
        let ratio: Vec<f64> = l.iter().zip(n).map(|(l, n)| l / n).collect();
        println!(
            "| {threads} | {} | {} | {} | {} | {} | {} | {} |",
            spread(b, 0),
            spread(n, 0),
            spread(l, 0),
            spread(&minus(l), 0),
            spread(&minus(n), 0),
            spread(&ratio, 2),
            thousands(median(&ledger_rate[&threads]))
        );
    }
    let status = ledger.status();
    println!(
        "\nLedger after the bursts: rows recorded {recorded}, appended {}, written {}, dropped {}.",
        status.rows_appended, status.rows_written, status.rows_dropped
    );

    // Paced: one call every 100 µs, each timed on its own. Next to the no-op and the
    // ledger, two bare channels show where the ledger's time goes: the same std
    // `sync_channel` with its receiver blocked in `recv_timeout` (as the appender waits),
    // and with a receiver that polls every millisecond (no sender ever has to wake it).
    let timer = timer_overhead();
    let blocked = ChannelSink::start(false);
    let polling = ChannelSink::start(true);
    let sinks: [(&str, &dyn UsageSink); 4] = [
        ("no-op", &noop),
        ("`Ledger`", &ledger),
        ("diagnostic: bare `sync_channel`, receiver blocked in `recv_timeout`", &blocked),
        ("diagnostic: bare `sync_channel`, receiver polls every 1 ms", &polling),
    ];
    let paced_reps = reps.min(5);
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); sinks.len()];
    let mut per_rep: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); sinks.len()];
    for rep in 0..paced_reps {
        for i in 0..sinks.len() {
            let k = (rep + i) % sinks.len();
            let mut s = paced(sinks[k].1);
            s.sort_unstable();
            per_rep[k].0.push(pct(&s, 50.0) as f64);
            per_rep[k].1.push(pct(&s, 99.0) as f64);
            samples[k].extend(s);
            if k == 1 {
                recorded += PACED_CALLS as u64;
                drain(&ledger, recorded);
            }
        }
    }
    println!(
        "\n**Paced.** One call every {} µs (10,000 calls/s) from one thread that spins between calls; each \
         `record()` timed on its own (the record is built outside the timed region; the no-op sink's time is the \
         record's drop). ns, over all {paced_reps} repetitions of {PACED_CALLS} calls; sinks interleaved; a timer \
         read pair costs {timer} ns and is included.\n",
        PACED_GAP.as_micros()
    );
    println!("| sink | p50 | p90 | p99 | p99.9 | max | calls ≥ 1 ms | p50 per repetition | p99 per repetition |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (k, (name, _)) in sinks.iter().enumerate() {
        let s = &mut samples[k];
        s.sort_unstable();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(pct(s, 50.0) as f64),
            thousands(pct(s, 90.0) as f64),
            thousands(pct(s, 99.0) as f64),
            thousands(pct(s, 99.9) as f64),
            thousands(*s.last().unwrap() as f64),
            s.iter().filter(|ns| **ns >= 1_000_000).count(),
            spread(&per_rep[k].0, 0),
            spread(&per_rep[k].1, 0)
        );
    }
    drop(blocked);
    drop(polling);
    let status = ledger.status();
    println!(
        "\nLedger at the end: rows recorded {recorded}, appended {}, written {}, dropped {}.",
        status.rows_appended, status.rows_written, status.rows_dropped
    );
    let cpu = cpu_before.since(clickhouse_pid(ch));
    let wall = (Instant::now() - cpu_before.at).as_secs_f64();
    let closed = rt.block_on(ledger.close(Duration::from_secs(30)));
    let landed = ch_count(ch, "bench_request_path");
    println!("Closed: {closed}; rows in ClickHouse: {landed}.");
    println!(
        "During this section ({wall:.0} s): other processes used {:.0} % of one CPU, kernel threads {:.0} %; steal {:.1} %.",
        cpu.others / wall * 100.0,
        cpu.kernel / wall * 100.0,
        cpu.steal_pct
    );
}

/// `threads` threads each make `per_thread` calls at once; returns ns per call per thread
/// (the mean of the threads) and the calls per second of all threads together.
fn burst(threads: usize, per_thread: usize, sink: Option<&dyn UsageSink>) -> (f64, f64) {
    let barrier = Barrier::new(threads);
    let started = Mutex::new(None::<Instant>);
    let results: Vec<(f64, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut g = Gen::new();
                    // Only for the build-only variant: keeps the records, so that their drop is
                    // not timed; the vector's pages are touched beforehand, so that page faults
                    // are not timed either.
                    let mut kept: Vec<UsageRecord> = Vec::new();
                    if sink.is_none() {
                        kept.resize_with(per_thread, UsageRecord::default);
                        kept.clear();
                    }
                    let sink = black_box(sink);
                    barrier.wait();
                    let t = Instant::now();
                    started.lock().unwrap().get_or_insert(t);
                    match sink {
                        None => {
                            for _ in 0..per_thread {
                                kept.push(g.record());
                            }
                        }
                        Some(sink) => {
                            for _ in 0..per_thread {
                                sink.record(g.record());
                            }
                        }
                    }
                    let end = Instant::now();
                    black_box(&kept);
                    ((end - t).as_nanos() as f64 / per_thread as f64, end)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = started.lock().unwrap().unwrap();
    let end = results.iter().map(|r| r.1).max().unwrap();
    let ns = results.iter().map(|r| r.0).sum::<f64>() / threads as f64;
    (ns, (threads * per_thread) as f64 / (end - start).as_secs_f64())
}

/// Paced calls with each one timed; returns ns per call.
fn paced(sink: &dyn UsageSink) -> Vec<u64> {
    let mut g = Gen::new();
    let mut out = Vec::with_capacity(PACED_CALLS);
    let mut next = Instant::now();
    for _ in 0..PACED_CALLS {
        next += PACED_GAP;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let r = g.record();
        let t = Instant::now();
        sink.record(r);
        out.push(t.elapsed().as_nanos() as u64);
    }
    out
}

fn timer_overhead() -> u64 {
    let mut s: Vec<u64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    s.sort_unstable();
    pct(&s, 50.0)
}

/// Waits until every recorded row is appended (or dropped) and written.
fn drain(ledger: &Ledger, recorded: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = ledger.status();
        if s.rows_appended + s.rows_dropped >= recorded && s.rows_written >= s.rows_appended {
            return;
        }
        assert!(Instant::now() < deadline, "the ledger did not drain within 60 s: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// === 2. sustained throughput ===

const PIPE_CH: &str = "pipeline → ClickHouse";
const DIRECT_CH: &str = "direct → ClickHouse";
const PIPE_CH_INTERVAL: &str = "diagnostic: pipeline → ClickHouse, fsync interval";
const PIPE_SQLITE: &str = "pipeline → SQLite";
const DIRECT_SQLITE: &str = "direct → SQLite";

struct Phase {
    round: usize,
    target: &'static str,
    /// Rows in the database at the end (counted there).
    landed: u64,
    /// The measurement window (the producer's time, or the direct loop's).
    window: Duration,
    /// Window plus close (pipelines only).
    total: Duration,
    appended: u64,
    written: u64,
    dropped: u64,
    wal_peak: u64,
    inserts: Vec<f64>,
    insert_errors: u64,
    status_wait: Vec<u64>,
    cpu: Cpu,
}

impl Phase {
    /// The headline rate: rows in the database over the time it took to get them there.
    fn rate(&self) -> f64 {
        self.landed as f64 / self.total.as_secs_f64()
    }

    fn is_pipeline(&self) -> bool {
        self.target != DIRECT_CH && self.target != DIRECT_SQLITE
    }
}

fn throughput(rt: &tokio::runtime::Runtime, ch: &OwnClickHouse, dir: &std::path::Path, seconds: u64, rounds: usize) {
    println!("\n## 2. Sustained throughput\n");
    let window = Duration::from_secs(seconds);
    let ch_pid = clickhouse_pid(ch);
    let mut phases = Vec::new();
    for round in 0..rounds {
        let db = format!("bench_pipeline_{round}");
        let wal = dir.join(format!("wal-ch-{round}"));
        let p = pipeline(rt, clickhouse(ch, &db), &wal, LedgerConfig::default(), window, ch_pid, |_| ch_count(ch, &db));
        phases.push(Phase { round, target: PIPE_CH, ..p });

        let db = format!("bench_direct_{round}");
        let p = direct(rt, clickhouse(ch, &db), window, ch_pid);
        phases.push(Phase { round, target: DIRECT_CH, landed: ch_count(ch, &db), ..p });

        // The one change from the defaults, to see what the fsync policy costs: the log is
        // synced once a second instead of after every batch.
        let db = format!("bench_interval_{round}");
        let wal = dir.join(format!("wal-ch-interval-{round}"));
        let mut config = LedgerConfig::default();
        config.wal.fsync = obleth_ledger::wal::Fsync::Interval;
        let p = pipeline(rt, clickhouse(ch, &db), &wal, config, window, ch_pid, |_| ch_count(ch, &db));
        phases.push(Phase { round, target: PIPE_CH_INTERVAL, ..p });

        let url = format!("sqlite://{}", dir.join(format!("pipeline-{round}.db")).display());
        let sqlite = Arc::new(rt.block_on(SqliteLedger::connect(&url)).unwrap());
        let wal = dir.join(format!("wal-sqlite-{round}"));
        let p = pipeline(rt, sqlite, &wal, LedgerConfig::default(), window, ch_pid, |rt| sqlite_count(rt, &url));
        phases.push(Phase { round, target: PIPE_SQLITE, ..p });

        let url = format!("sqlite://{}", dir.join(format!("direct-{round}.db")).display());
        let sqlite = Arc::new(rt.block_on(SqliteLedger::connect(&url)).unwrap());
        let p = direct(rt, sqlite, window, ch_pid);
        phases.push(Phase { round, target: DIRECT_SQLITE, landed: sqlite_count(rt, &url), ..p });
    }

    println!(
        "One producer thread (it backs off while more than {} rows are recorded but not yet in the database); the \
         pipeline phases record for {seconds} s and then `close()`, and their rate counts the close; the direct \
         phases insert {DIRECT_BATCH}-row batches in a loop for {seconds} s, no log. Rows counted in the database at \
         the end. Phases in this order in each round. `status()` wait: how long the producer's `status()` calls \
         took, which is how long they waited for the log's mutex (the appender holds it while it appends and syncs, \
         the shipper while it reads and acknowledges).\n",
        thousands(OUTSTANDING as f64)
    );
    println!(
        "| round | target | rows landed | rows/s landed | close | appended/s, written/s in window | log peak | inserts | rows/insert | insert p50 / max | dropped | `status()` wait p50 / p99 / max |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        let w = p.window.as_secs_f64();
        let mut ins = p.inserts.clone();
        ins.sort_by(f64::total_cmp);
        let mut waits = p.status_wait.clone();
        waits.sort_unstable();
        let pipe = p.is_pipeline();
        let blank = String::new;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} |",
            p.round,
            p.target,
            thousands(p.landed as f64),
            thousands(p.rate()),
            if pipe { format!("{:.2} s", (p.total - p.window).as_secs_f64()) } else { blank() },
            if pipe {
                format!("{} / {}", thousands(p.appended as f64 / w), thousands(p.written as f64 / w))
            } else {
                blank()
            },
            if pipe { format!("{:.1} MiB", p.wal_peak as f64 / (1 << 20) as f64) } else { blank() },
            ins.len(),
            if p.insert_errors > 0 { format!(" ({} failed)", p.insert_errors) } else { blank() },
            if ins.is_empty() { blank() } else { thousands(p.landed as f64 / ins.len() as f64) },
            if ins.is_empty() {
                blank()
            } else {
                format!("{:.0} / {:.0} ms", pct_f(&ins, 50.0) * 1e3, ins.last().unwrap() * 1e3)
            },
            if pipe { p.dropped.to_string() } else { blank() },
            if waits.is_empty() {
                blank()
            } else {
                format!(
                    "{} / {} / {} µs",
                    thousands(pct(&waits, 50.0) as f64 / 1e3),
                    thousands(pct(&waits, 99.0) as f64 / 1e3),
                    thousands(*waits.last().unwrap() as f64 / 1e3)
                )
            }
        );
    }

    // Thread groups that did measurable work anywhere, busiest first.
    let mut names: HashMap<String, f64> = HashMap::new();
    for p in &phases {
        for (n, s) in &p.cpu.threads {
            *names.entry(n.clone()).or_default() += s;
        }
    }
    let mut names: Vec<(String, f64)> = names.into_iter().filter(|(_, s)| *s >= 0.05).collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "\n**Where the CPU went** in each window, in % of one CPU (of {}), by thread name in this process (`main`: \
         the producer or the direct loop; `obleth-ledger`: the appender; `tokio-rt-worker`: the shipper and the HTTP \
         client; `sqlx-sqlite-wor`: SQLite's connection threads), the ClickHouse server, kernel threads (writeback, \
         journal) and every other process; then this process's and the server's CPU per row written in the window.\n",
        nproc() * 100
    );
    print!("| round | target |");
    for (n, _) in &names {
        print!(" `{n}` |");
    }
    println!(" clickhouse | kernel threads | other processes | steal | µs/row: process / clickhouse |");
    println!("|---:|---|{}---:|---:|---:|---:|---:|", "---:|".repeat(names.len() + 1));
    for p in &phases {
        let w = p.window.as_secs_f64();
        let pc = |secs: f64| format!("{:.0} %", secs / w * 100.0);
        print!("| {} | {} |", p.round, p.target);
        for (n, _) in &names {
            print!(" {} |", pc(p.cpu.threads.get(n).copied().unwrap_or(0.0)));
        }
        let rows = p.written.max(1) as f64;
        let process: f64 = p.cpu.threads.values().sum();
        println!(
            " {} | {} | {} | {:.1} % | {:.1} / {:.1} |",
            pc(p.cpu.clickhouse),
            pc(p.cpu.kernel),
            pc(p.cpu.others),
            p.cpu.steal_pct,
            process * 1e6 / rows,
            p.cpu.clickhouse * 1e6 / rows
        );
    }

    println!("\n**Summary** (rows/s landed: median [min … max] over {rounds} rounds; ratios per round):\n");
    let rates = |t: &str| phases.iter().filter(|p| p.target == t).map(Phase::rate).collect::<Vec<_>>();
    let ratio = |a: &str, b: &str| rates(a).iter().zip(rates(b)).map(|(a, b)| a / b).collect::<Vec<_>>();
    println!("| | ClickHouse | SQLite |");
    println!("|---|---:|---:|");
    println!("| pipeline (log, fsync always) | {} | {} |", spread(&rates(PIPE_CH), 0), spread(&rates(PIPE_SQLITE), 0));
    println!(
        "| direct inserts ({} rows) | {} | {} |",
        thousands(DIRECT_BATCH as f64),
        spread(&rates(DIRECT_CH), 0),
        spread(&rates(DIRECT_SQLITE), 0)
    );
    println!(
        "| pipeline / direct | {} | {} |",
        spread(&ratio(PIPE_CH, DIRECT_CH), 2),
        spread(&ratio(PIPE_SQLITE, DIRECT_SQLITE), 2)
    );
    println!("| SQLite pipeline / ClickHouse pipeline | {} | |", spread(&ratio(PIPE_SQLITE, PIPE_CH), 2));
    println!(
        "| diagnostic: pipeline with fsync interval | {} | |\n| diagnostic: fsync interval / fsync always | {} | |",
        spread(&rates(PIPE_CH_INTERVAL), 0),
        spread(&ratio(PIPE_CH_INTERVAL, PIPE_CH), 2)
    );
}

/// One producer records as fast as the pipeline takes rows, for `window`; then closes.
fn pipeline(
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn LedgerBackend>,
    wal_dir: &std::path::Path,
    config: LedgerConfig,
    window: Duration,
    ch_pid: Option<u32>,
    count: impl FnOnce(&tokio::runtime::Runtime) -> u64,
) -> Phase {
    let kind = backend.kind();
    let queue_limit = (config.queue_rows / 2) as u64;
    let (ledger, _) = Ledger::start(backend, Arc::new(DirFs::new(wal_dir).unwrap()), config).unwrap();
    let inserts_before = probe_inserts(kind).len();
    let errors_before = probe_errors(kind);
    let cpu_before = CpuSnap::take(ch_pid);
    let mut g = Gen::new();
    let mut recorded = 0u64;
    let mut wal_peak = 0u64;
    let mut status_wait = Vec::new();
    let start = Instant::now();
    let deadline = start + window;
    'produce: while Instant::now() < deadline {
        for _ in 0..1024 {
            ledger.record(g.record());
        }
        recorded += 1024;
        loop {
            let t = Instant::now();
            let s = ledger.status();
            status_wait.push(t.elapsed().as_nanos() as u64);
            wal_peak = wal_peak.max(s.wal_bytes);
            let queued = recorded.saturating_sub(s.rows_appended + s.rows_dropped);
            let outstanding = recorded.saturating_sub(s.rows_written + s.rows_dropped);
            if queued < queue_limit && outstanding < OUTSTANDING {
                break;
            }
            if Instant::now() >= deadline {
                break 'produce;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let window = start.elapsed();
    let at_window = ledger.status();
    let cpu = cpu_before.since(ch_pid);
    let closed = rt.block_on(ledger.close(Duration::from_secs(60)));
    let total = start.elapsed();
    let end = ledger.status();
    wal_peak = wal_peak.max(end.wal_bytes);
    assert!(closed, "the ledger did not close within 60 s: {end:?}");
    let inserts = probe_inserts(kind)[inserts_before..].to_vec();
    Phase {
        round: 0,
        target: "",
        landed: count(rt),
        window,
        total,
        appended: at_window.rows_appended,
        written: at_window.rows_written,
        dropped: end.rows_dropped,
        wal_peak,
        inserts,
        insert_errors: probe_errors(kind) - errors_before,
        status_wait,
        cpu,
    }
}

/// Direct inserts of fresh 10,000-row batches in a loop for `window`, no log.
fn direct(
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn LedgerBackend>,
    window: Duration,
    ch_pid: Option<u32>,
) -> Phase {
    rt.block_on(backend.prepare()).unwrap();
    let cpu_before = CpuSnap::take(ch_pid);
    let mut g = Gen::new();
    let mut written = 0u64;
    let mut inserts = Vec::new();
    let start = Instant::now();
    while start.elapsed() < window {
        let rows: Vec<LedgerRow> = (0..DIRECT_BATCH).map(|_| LedgerRow::from(g.record())).collect();
        let t = Instant::now();
        rt.block_on(backend.insert(&rows)).unwrap();
        inserts.push(t.elapsed().as_secs_f64());
        written += rows.len() as u64;
    }
    let elapsed = start.elapsed();
    Phase {
        round: 0,
        target: "",
        landed: 0,
        window: elapsed,
        total: elapsed,
        appended: 0,
        written,
        dropped: 0,
        wal_peak: 0,
        inserts,
        insert_errors: 0,
        status_wait: Vec::new(),
        cpu: cpu_before.since(ch_pid),
    }
}

fn clickhouse(ch: &OwnClickHouse, database: &str) -> Arc<dyn LedgerBackend> {
    let config = ClickHouseConfig { url: ch.http_url(), database: database.into(), ..ClickHouseConfig::default() };
    Arc::new(ClickHouse::new(config).unwrap())
}

fn ch_count(ch: &OwnClickHouse, database: &str) -> u64 {
    ch.query(&format!("SELECT count() FROM {database}.obleth_usage")).trim().parse().unwrap()
}

fn sqlite_count(rt: &tokio::runtime::Runtime, url: &str) -> u64 {
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM usage").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n as u64
    })
}

// === the metrics probe: insert durations and failures, from the ledger's own metrics ===

static INSERTS: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());
static INSERT_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn probe_inserts(backend: &str) -> Vec<f64> {
    INSERTS.lock().unwrap().iter().filter(|(b, _)| b == backend).map(|(_, s)| *s).collect()
}

fn probe_errors(backend: &str) -> u64 {
    INSERT_ERRORS.lock().unwrap().iter().filter(|b| *b == backend).count() as u64
}

#[derive(Debug)]
struct Probe;

struct InsertTimes(String);

impl metrics::HistogramFn for InsertTimes {
    fn record(&self, value: f64) {
        INSERTS.lock().unwrap().push((self.0.clone(), value));
    }
}

struct InsertFailures(String);

impl metrics::CounterFn for InsertFailures {
    fn increment(&self, value: u64) {
        for _ in 0..value {
            INSERT_ERRORS.lock().unwrap().push(self.0.clone());
        }
    }

    fn absolute(&self, _: u64) {}
}

fn label(key: &Key, name: &str) -> Option<String> {
    key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned())
}

impl Recorder for Probe {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() == "obleth_ledger_batches_total" && label(key, "outcome").as_deref() == Some("error") {
            return Counter::from_arc(Arc::new(InsertFailures(label(key, "backend").unwrap_or_default())));
        }
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == "obleth_ledger_insert_duration_seconds" {
            return Histogram::from_arc(Arc::new(InsertTimes(label(key, "backend").unwrap_or_default())));
        }
        Histogram::noop()
    }
}

// === CPU accounting from /proc ===

/// Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

#[derive(Default)]
struct Cpu {
    /// CPU seconds per thread name in this process.
    threads: HashMap<String, f64>,
    clickhouse: f64,
    /// Kernel threads (writeback, journal, …), and every other process (the machine's user
    /// and system time less this process, the server and the kernel threads), CPU seconds.
    kernel: f64,
    others: f64,
    /// The hypervisor's steal time, in % of the machine.
    steal_pct: f64,
}

struct CpuSnap {
    at: Instant,
    /// tid → (name, ticks).
    threads: HashMap<u32, (String, u64)>,
    /// This process (threads that ended included).
    process: u64,
    clickhouse: u64,
    /// pid → ticks of every kernel thread.
    kernel: HashMap<u32, u64>,
    /// The machine: user + nice + system ticks, and steal ticks.
    busy: u64,
    steal: u64,
}

impl CpuSnap {
    fn take(ch_pid: Option<u32>) -> CpuSnap {
        let mut threads = HashMap::new();
        let me = std::process::id();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
                let name = if tid == me {
                    "main".to_owned()
                } else {
                    std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim().to_owned()
                };
                if let Some(t) = stat_ticks(&e.path().join("stat")) {
                    threads.insert(tid, (name, t));
                }
            }
        }
        let mut kernel = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
                if std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.is_empty())
                    && let Some(t) = stat_ticks(&e.path().join("stat"))
                {
                    kernel.insert(pid, t);
                }
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu user nice system idle iowait irq softirq steal
        let v: Vec<u64> = stat
            .lines()
            .next()
            .map(|l| l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let field = |i: usize| v.get(i).copied().unwrap_or(0);
        let ticks = |p: &str| stat_ticks(std::path::Path::new(p)).unwrap_or(0);
        CpuSnap {
            at: Instant::now(),
            threads,
            process: ticks("/proc/self/stat"),
            clickhouse: ch_pid.map_or(0, |p| ticks(&format!("/proc/{p}/stat"))),
            kernel,
            busy: field(0) + field(1) + field(2),
            steal: field(7),
        }
    }

    fn since(&self, ch_pid: Option<u32>) -> Cpu {
        let now = CpuSnap::take(ch_pid);
        let mut threads: HashMap<String, f64> = HashMap::new();
        for (tid, (name, t)) in &now.threads {
            let before = self.threads.get(tid).map_or(0, |b| b.1);
            *threads.entry(name.clone()).or_default() += t.saturating_sub(before) as f64 / TICKS;
        }
        let kernel: u64 =
            now.kernel.iter().map(|(pid, t)| t.saturating_sub(self.kernel.get(pid).copied().unwrap_or(0))).sum();
        let process = now.process.saturating_sub(self.process);
        let clickhouse = now.clickhouse.saturating_sub(self.clickhouse);
        let others = now.busy.saturating_sub(self.busy).saturating_sub(process + clickhouse + kernel);
        let wall = (now.at - self.at).as_secs_f64().max(1e-9);
        Cpu {
            threads,
            clickhouse: clickhouse as f64 / TICKS,
            kernel: kernel as f64 / TICKS,
            others: others as f64 / TICKS,
            steal_pct: now.steal.saturating_sub(self.steal) as f64 / TICKS / wall * 100.0 / nproc() as f64,
        }
    }
}

/// utime + stime of a /proc stat file.
fn stat_ticks(path: &std::path::Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The pid of our own clickhouse-server: the process whose command line names its directory.
fn clickhouse_pid(ch: &OwnClickHouse) -> Option<u32> {
    let dir = ch.dir().to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains(&dir).then_some(pid)
    })
}

// === the machine ===

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, m)| m.trim().to_owned())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned()
}

fn clocksource() -> String {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The filesystem type of the mount holding `path`.
fn fs_type(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (mnt, ty) = (*f.get(1)?, *f.get(2)?);
            path.starts_with(mnt).then(|| (mnt.len(), format!("{ty} at {mnt}")))
        })
        .max_by_key(|(n, _)| *n)
        .map_or("unknown filesystem".into(), |(_, t)| t)
}

// === figures ===

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    pct_f(&s, 50.0)
}

/// The nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn pct_f(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    if p == 50.0 && sorted.len().is_multiple_of(2) {
        let m = sorted.len() / 2;
        return (sorted[m - 1] + sorted[m]) / 2.0;
    }
    let i = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `median [min … max]`.
fn spread(v: &[f64], decimals: usize) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let f = |x: f64| if decimals == 0 { thousands(x) } else { format!("{x:.decimals$}") };
    if s.len() == 1 {
        return f(s[0]);
    }
    format!("{} [{} … {}]", f(pct_f(&s, 50.0)), f(s[0]), f(s[s.len() - 1]))
}

/// Rounded, with thousands separators (and a real minus sign).
fn thousands(x: f64) -> String {
    let r = x.round();
    let digits = format!("{}", r.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if r < 0.0 { format!("−{out}") } else { out }
}
