//! The ledger's moving parts: the sink the request path calls, the appender thread that
//! batches rows into the write-ahead log, and the shipper task that moves batches from
//! the log into the database.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use obleth_core::ledger::{Filter, GroupBy, LedgerStatus, QueryError, SeriesPoint, SeriesQuery, Totals, UsageLedger};
use obleth_core::{UsageRecord, UsageSink};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::pace::Pacer;
use crate::telemetry;
use crate::wal::{Cursor, Fsync, Recovered, Wal, WalConfig, WalError, WalStats, fs::Fs};
use crate::{LedgerBackend, LedgerError, LedgerRow};

/// What happens to new rows when the write-ahead log is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Keep serving; the rows are dropped and counted (`reason="wal_full"`).
    #[default]
    Drop,
    /// Refuse new requests (503 `ledger_unavailable`) while the log is over 90% full,
    /// so that the rows of requests already admitted still fit. The refusals' own rows
    /// are kept while there is room, and dropped (counted) after.
    Reject,
}

/// Tuning of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Rows the in-process queue holds before dropping.
    pub queue_rows: usize,
    /// Rows per log batch.
    pub batch_rows: usize,
    /// How long a row waits for its batch to fill before the batch is appended anyway
    /// (also the most a killed process can lose: rows not yet in the log).
    pub flush_interval: Duration,
    /// The shortest time between inserts while the shipper is not behind (ClickHouse
    /// prefers few large inserts).
    pub insert_interval: Duration,
    /// Payload bytes per insert.
    pub insert_max_bytes: usize,
    /// The longest wait between retries while the database is down.
    pub retry_max: Duration,
    /// How often the log is synced under `Fsync::Interval`.
    pub fsync_interval: Duration,
    pub wal: WalConfig,
    pub on_full: OnFull,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            queue_rows: 65_536,
            // Rows wait here as whole `LedgerRow`s (~1.8 KiB each with their strings):
            // 1,000 of them held 1.8 MiB at the peak of a heap profile under load, 256 hold
            // under 0.5 MiB, and a batch is then ~0.2 ms of work instead of ~1 ms.
            batch_rows: 256,
            flush_interval: Duration::from_millis(200),
            insert_interval: Duration::from_secs(1),
            // The shipper holds an insert about four times over while it runs (the log's
            // bytes, the parsed rows, the bound arguments, the database's copy): 8 MiB
            // inserts made the ledger the largest user of memory under load after the
            // tokenizer, and 1 MiB ones still ~3.5 MiB with 10,000 tenants
            // (docs/benchmarks.md). 512 KiB is still ~1,000 rows, the size ClickHouse
            // asks inserts to be; a shipper that is behind inserts again at once rather
            // than waiting for `insert_interval`.
            insert_max_bytes: 512 << 10,
            retry_max: Duration::from_secs(10),
            fsync_interval: Duration::from_secs(1),
            wal: WalConfig::default(),
            on_full: OnFull::Drop,
        }
    }
}

/// Shared between the sink, the appender and the shipper.
struct Shared {
    wal: Mutex<Wal>,
    backend: Arc<dyn LedgerBackend>,
    config: LedgerConfig,
    /// New batches in the log.
    appended: Notify,
    closing: AtomicBool,
    wal_full: AtomicBool,
    /// Over the high watermark (90%): `OnFull::Reject` refuses new requests.
    nearly_full: AtomicBool,
    backend_up: AtomicBool,
    last_error: Mutex<Option<String>>,
    rows_appended: AtomicU64,
    rows_written: AtomicU64,
    rows_dropped: AtomicU64,
    /// Records sent and not yet taken by the appender (the queue's bound is on this).
    queued: AtomicUsize,
}

impl Shared {
    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dropped(&self, rows: u64, reason: &'static str) {
        self.rows_dropped.fetch_add(rows, Ordering::Relaxed);
        telemetry::rows_dropped(rows, reason);
    }

    fn publish(&self, stats: WalStats) {
        let nearly_full = stats.bytes.saturating_mul(10) >= self.config.wal.max_bytes.saturating_mul(9);
        self.nearly_full.store(nearly_full, Ordering::Relaxed);
        if !nearly_full {
            // Shipped batches made room (there may be no append to notice it: a pod that
            // refuses requests gets no traffic).
            self.wal_full.store(false, Ordering::Relaxed);
        }
        telemetry::wal(&stats);
    }
}

/// The ledger's handle: the gateway's usage sink, and its status and shutdown.
#[derive(Clone)]
pub struct Ledger {
    tx: Sender<UsageRecord>,
    shared: Arc<Shared>,
    appender_done: watch::Receiver<bool>,
    shipper_done: watch::Receiver<bool>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("backend", &self.shared.backend.kind()).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens the log on `fs` (recovering what a previous process left), and starts the
    /// appender thread and the shipper task (on the current tokio runtime).
    pub fn start(
        backend: Arc<dyn LedgerBackend>,
        fs: Arc<dyn Fs>,
        config: LedgerConfig,
    ) -> Result<(Ledger, Recovered), LedgerError> {
        let (wal, recovered) = Wal::open(fs, config.wal.clone())?;
        telemetry::declare();
        if recovered.truncated_bytes > 0 {
            tracing::warn!(
                bytes = recovered.truncated_bytes,
                segments = recovered.truncated_segments,
                "the ledger's write-ahead log had a torn tail (the process died while writing); it was cut off"
            );
            telemetry::wal_truncated(recovered.truncated_bytes);
        }
        if recovered.pending_batches > 0 {
            tracing::info!(
                batches = recovered.pending_batches,
                "the ledger's write-ahead log holds batches not yet in the database; replaying them"
            );
        }
        let cursor = wal.cursor();
        let stats = wal.stats();
        // An unbounded channel with the bound kept by `queued`: a bounded std channel
        // allocates all of its slots up front (65,536 records, about 20 MiB), where this
        // one allocates as rows arrive and frees them as the appender takes them.
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            wal: Mutex::new(wal),
            backend,
            config,
            appended: Notify::new(),
            closing: AtomicBool::new(false),
            wal_full: AtomicBool::new(false),
            nearly_full: AtomicBool::new(false),
            backend_up: AtomicBool::new(false),
            last_error: Mutex::new(None),
            rows_appended: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            rows_dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        });
        shared.publish(stats);
        let (appender_tx, appender_done) = watch::channel(false);
        std::thread::Builder::new().name("obleth-ledger".into()).spawn({
            let shared = shared.clone();
            move || {
                append_loop(&shared, rx);
                let _ = appender_tx.send(true);
            }
        })?;
        let (shipper_tx, shipper_done) = watch::channel(false);
        tokio::spawn({
            let shared = shared.clone();
            let appender_done = appender_done.clone();
            async move {
                ship_loop(&shared, cursor, recovered.watermark + recovered.pending_batches, appender_done).await;
                let _ = shipper_tx.send(true);
            }
        });
        Ok((Ledger { tx, shared, appender_done, shipper_done }, recovered))
    }

    pub fn status(&self) -> LedgerStatus {
        let stats = self.shared.wal().stats();
        LedgerStatus {
            backend: self.shared.backend.kind(),
            backend_up: self.shared.backend_up.load(Ordering::Relaxed),
            last_error: self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            wal_bytes: stats.bytes,
            wal_max_bytes: self.shared.config.wal.max_bytes,
            wal_segments: stats.segments,
            pending_batches: stats.pending_batches(),
            rows_appended: self.shared.rows_appended.load(Ordering::Relaxed),
            rows_written: self.shared.rows_written.load(Ordering::Relaxed),
            rows_dropped: self.shared.rows_dropped.load(Ordering::Relaxed),
            wal_full: self.shared.wal_full.load(Ordering::Relaxed),
            refusing: !self.accepting(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn LedgerBackend> {
        &self.shared.backend
    }

    /// Flushes: appends what is queued, then ships the log until it is empty or
    /// `timeout` passes. Rows still in the log then are replayed at the next start.
    /// Call after the data plane has drained (rows recorded later are dropped, counted).
    pub async fn close(&self, timeout: Duration) -> bool {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.appended.notify_one();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut appender = self.appender_done.clone();
        let mut shipper = self.shipper_done.clone();
        let done = async {
            let _ = appender.wait_for(|d| *d).await;
            self.shared.appended.notify_one();
            let _ = shipper.wait_for(|d| *d).await;
        };
        let finished = tokio::time::timeout_at(deadline, done).await.is_ok();
        let stats = self.shared.wal().stats();
        if stats.pending_batches() > 0 {
            tracing::warn!(
                batches = stats.pending_batches(),
                "ledger batches not yet in the database stay in the write-ahead log; they are replayed at the next start"
            );
        }
        finished && stats.pending_batches() == 0
    }
}

impl UsageSink for Ledger {
    fn record(&self, record: UsageRecord) {
        let queued = &self.shared.queued;
        if queued.fetch_add(1, Ordering::Relaxed) >= self.shared.config.queue_rows.max(1) {
            queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.dropped(1, "queue_full");
            return;
        }
        if self.tx.send(record).is_err() {
            queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.dropped(1, "closed");
        }
    }

    fn accepting(&self) -> bool {
        self.shared.config.on_full == OnFull::Drop
            || !(self.shared.nearly_full.load(Ordering::Relaxed) || self.shared.wal_full.load(Ordering::Relaxed))
    }
}

/// The read side the admin API holds: the backend's queries and the ledger's status.
#[async_trait]
impl UsageLedger for Ledger {
    fn kind(&self) -> &'static str {
        self.shared.backend.kind()
    }

    fn status(&self) -> LedgerStatus {
        Ledger::status(self)
    }

    async fn totals(&self, filter: &Filter, group_by: GroupBy) -> Result<Vec<Totals>, QueryError> {
        Ok(self.shared.backend.totals(filter, group_by).await?)
    }

    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(self.shared.backend.series(query).await?)
    }

    async fn recent(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>, QueryError> {
        Ok(self.shared.backend.recent(filter, limit).await?)
    }
}

// === appender ===

/// How often the appender looks at the queue.
const APPEND_TICK: Duration = Duration::from_millis(5);

/// Batches rows and appends them to the log until the ledger closes.
///
/// The appender polls the queue on a short tick rather than blocking on it: a sender
/// that finds the receiver asleep in the channel must wake it (a futex wake, an
/// inter-processor interrupt in a VM), which measured ~10 µs per `record()` at a
/// gateway's pace; with a polling receiver `try_send` costs ~0.2 µs. The tick adds at
/// most 5 ms before a row is on disk.
fn append_loop(shared: &Shared, rx: mpsc::Receiver<UsageRecord>) {
    let config = &shared.config;
    let mut batch: Vec<LedgerRow> = Vec::with_capacity(config.batch_rows);
    let mut deadline: Option<Instant> = None;
    let mut last_sync = Instant::now();
    loop {
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(record) => {
                    shared.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(LedgerRow::from(record));
                    deadline.get_or_insert_with(|| Instant::now() + config.flush_interval);
                    if batch.len() >= config.batch_rows.max(1) {
                        append(shared, &batch);
                        batch.clear();
                        deadline = None;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let closing = disconnected || shared.closing.load(Ordering::Relaxed);
        if closing {
            while let Ok(record) = rx.try_recv() {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(LedgerRow::from(record));
            }
        }
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if !batch.is_empty() && (due || closing) {
            for chunk in batch.chunks(config.batch_rows.max(1)) {
                append(shared, chunk);
            }
            batch.clear();
            deadline = None;
        }
        if config.wal.fsync == Fsync::Interval && last_sync.elapsed() >= config.fsync_interval {
            let _ = shared.wal().sync();
            last_sync = Instant::now();
        }
        if closing {
            let _ = shared.wal().sync();
            return;
        }
        std::thread::sleep(APPEND_TICK);
    }
}

fn append(shared: &Shared, rows: &[LedgerRow]) {
    let mut payload = Vec::with_capacity(rows.len() * 512);
    let mut pacer = Pacer::start();
    for row in rows {
        row.write_json_line(&mut payload);
        pacer.pace();
    }
    let (result, stats) = {
        let mut wal = shared.wal();
        let result = wal.append(&payload);
        (result, wal.stats())
    };
    match result {
        Ok(_) => {
            shared.wal_full.store(false, Ordering::Relaxed);
            shared.rows_appended.fetch_add(rows.len() as u64, Ordering::Relaxed);
            telemetry::appended(rows.len() as u64);
            shared.appended.notify_one();
        }
        Err(WalError::Full { bytes, max }) => {
            if !shared.wal_full.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    bytes,
                    max,
                    "the ledger's write-ahead log is full (the database has been away too long): new usage rows are dropped{}",
                    if shared.config.on_full == OnFull::Reject { " and new requests refused" } else { "" }
                );
            }
            shared.dropped(rows.len() as u64, "wal_full");
        }
        Err(e) => {
            tracing::error!(error = %e, rows = rows.len(), "cannot append usage rows to the write-ahead log; dropped");
            shared.dropped(rows.len() as u64, "wal_error");
        }
    }
    shared.publish(stats);
}

// === shipper ===

/// Ships batches from the log to the database, in order, until the ledger closes and
/// the log is empty (or the close times out).
async fn ship_loop(shared: &Shared, mut cursor: Cursor, recovered_up_to: u64, appender_done: watch::Receiver<bool>) {
    let config = &shared.config;
    let mut backoff = Duration::from_millis(100);
    let mut last_insert: Option<tokio::time::Instant> = None;
    // Prepared now rather than at the first insert, so that the status says whether the
    // database is there before any traffic (and a bad configuration shows at start).
    let mut prepared = match tokio::time::timeout(Duration::from_secs(10), shared.backend.prepare()).await {
        Ok(Ok(())) => {
            shared.backend_up.store(true, Ordering::Relaxed);
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(backend = shared.backend.kind(), error = %e, "the ledger database is not available yet; usage rows wait in the write-ahead log");
            *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            false
        }
        Err(_) => false,
    };
    loop {
        // Read from a snapshot, not under the log's lock: a read of megabytes must not
        // hold up the appender or a status query.
        let reader = shared.wal().reader();
        let entries = reader.read(&mut cursor, config.insert_max_bytes);
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the ledger's write-ahead log");
                tokio::time::sleep(config.retry_max).await;
                continue;
            }
        };
        let closing = shared.closing.load(Ordering::Relaxed);
        if entries.is_empty() {
            if closing && *appender_done.borrow() {
                return;
            }
            // Woken by the appender, or by the close.
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.appended.notified()).await;
            continue;
        }
        let behind = entries.iter().map(|e| e.payload.len()).sum::<usize>() >= config.insert_max_bytes / 2;
        if !behind
            && !closing
            && let Some(last) = last_insert
        {
            tokio::time::sleep_until(last + config.insert_interval).await;
            // Rows that arrived meanwhile go into this insert too.
            let reader = shared.wal().reader();
            let more = reader.read(&mut cursor, config.insert_max_bytes);
            let entries = match more {
                Ok(mut more) => {
                    let mut all = entries;
                    all.append(&mut more);
                    all
                }
                Err(_) => entries,
            };
            if !ship(shared, entries, recovered_up_to, &mut prepared, &mut backoff).await {
                return;
            }
        } else if !ship(shared, entries, recovered_up_to, &mut prepared, &mut backoff).await {
            return;
        }
        last_insert = Some(tokio::time::Instant::now());
    }
}

/// Inserts the entries' rows, retrying until it succeeds, then acknowledges them.
/// Returns false if it gave up because the ledger is closing: the entries stay in the
/// log, and nothing after them may be shipped (the watermark would pass them).
async fn ship(
    shared: &Shared,
    entries: Vec<crate::wal::Entry>,
    recovered_up_to: u64,
    prepared: &mut bool,
    backoff: &mut Duration,
) -> bool {
    let Some(last_seq) = entries.last().map(|e| e.seq) else { return true };
    let first_seq = entries.first().map_or(0, |e| e.seq);
    let mut rows = Vec::new();
    let mut bad = 0;
    let mut pacer = Pacer::start();
    for line in entries.iter().flat_map(|e| LedgerRow::json_lines(&e.payload)) {
        match line {
            Ok(row) => rows.push(row),
            Err(_) => bad += 1,
        }
        // A blocking call on the main runtime's thread, but a short one: it returns at
        // once unless another thread is waiting for this CPU, which then runs first
        // (the data plane's, most often). The admin API's tasks on this runtime wait no
        // longer than they would for the parse itself.
        pacer.pace();
    }
    if bad > 0 {
        shared.dropped(bad as u64, "corrupt");
    }
    // Batches a previous process left may already be in the database (it may have died
    // between insert and ack): check before inserting them.
    let mut verify = first_seq <= recovered_up_to;
    let replay = verify;
    loop {
        match insert(shared, &rows, verify, prepared).await {
            Ok(written) => {
                shared.rows_written.fetch_add(written, Ordering::Relaxed);
                if replay {
                    telemetry::replayed(rows.len() as u64);
                }
                if !shared.backend_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        backend = shared.backend.kind(),
                        "the ledger database is reachable; shipping usage rows"
                    );
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                *backoff = Duration::from_millis(100);
                break;
            }
            Err(e) => {
                telemetry::insert_failed(shared.backend.kind());
                if shared.backend_up.swap(false, Ordering::Relaxed) || !*prepared {
                    tracing::warn!(
                        backend = shared.backend.kind(),
                        error = %e,
                        "the ledger database is unavailable; usage rows stay in the write-ahead log until it returns"
                    );
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                // Whether that insert landed is unknown.
                verify = true;
                *prepared = false;
                if shared.closing.load(Ordering::Relaxed) {
                    // Left in the log for the next start.
                    return false;
                }
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(shared.config.retry_max);
            }
        }
    }
    let stats = {
        let mut wal = shared.wal();
        if let Err(e) = wal.ack(last_seq) {
            tracing::warn!(error = %e, "cannot record shipped batches in the write-ahead log; they will be checked again");
        }
        wal.stats()
    };
    shared.publish(stats);
    true
}

/// One insert attempt; returns the rows written.
async fn insert(shared: &Shared, rows: &[LedgerRow], verify: bool, prepared: &mut bool) -> Result<u64, LedgerError> {
    let backend = &shared.backend;
    if !*prepared {
        backend.prepare().await?;
        *prepared = true;
    }
    let started = Instant::now();
    let written = if verify {
        let present = backend.existing(rows).await?;
        let missing: Vec<LedgerRow> = rows.iter().filter(|r| !present.contains(&r.request_id)).cloned().collect();
        if !present.is_empty() {
            telemetry::duplicates_skipped(present.len() as u64);
        }
        backend.insert(&missing).await?;
        missing.len() as u64
    } else {
        backend.insert(rows).await?;
        rows.len() as u64
    };
    telemetry::inserted(backend.kind(), written, started.elapsed());
    Ok(written)
}
