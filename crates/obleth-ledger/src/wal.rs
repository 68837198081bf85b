//! The write-ahead log: every batch of usage rows is on local disk before any database
//! sees it, and stays there until the database has it.
//!
//! # Layout
//!
//! The log is a directory of segment files `<id>.wal`, where `id` is the sequence number
//! of the first batch the segment may hold. A segment is a run of records:
//!
//! ```text
//! record = len: u32 LE | crc32c(body): u32 LE | body          (len = body length)
//! body   = kind: u8 | seq: u64 LE | payload
//! kind 1 = batch: seq is the batch's sequence number, payload its rows
//! kind 2 = ack:   seq is the watermark — every batch up to it is in the database
//! ```
//!
//! Batch sequence numbers increase by one across segments. Only the newest segment is
//! appended to; it is sealed (synced) and a new one started when the next record would
//! make it larger than `segment_bytes`. Every new segment begins with an ack record
//! holding the current watermark, so the newest segment always knows it.
//!
//! # Shipping and deletion
//!
//! The shipper reads batches after the watermark in order ([`Wal::read`]), inserts them,
//! then [`Wal::ack`]s the last one. Acks move the watermark and delete sealed segments
//! from the front while every batch in them is at or below it — never one out of order,
//! so a surviving segment never lacks the ack records before it. When everything is
//! acked and the active segment has grown past a small threshold, it is sealed too, so
//! a healthy ledger keeps about one small segment on disk.
//!
//! # Durability (the fsync policy)
//!
//! - `always` (the default): an append returns after `fdatasync`. A batch the writer
//!   appended survives a power loss.
//! - `interval`: the writer syncs on a timer; a power loss can lose the batches of the
//!   last interval. A killed process loses nothing written (the page cache survives it),
//!   and the next process syncs what it recovers.
//! - `never`: the OS decides; only [`Wal::sync`] (which the writer calls at shutdown)
//!   syncs, and only the active segment.
//!
//! Ack records are never synced: losing one only replays batches the database already
//! has, which the shipper's duplicate check (and the ledger's deduplicating schema)
//! absorbs. Segment creation and deletion sync the directory.
//!
//! # Bounded size
//!
//! The log never holds more than `max_bytes` of segments. An append that would exceed it
//! fails with [`WalError::Full`] and the writer counts the batch's rows as dropped
//! (`obleth_ledger_rows_dropped_total{reason="wal_full"}`) — explicit, never silent. Ack
//! records are always accepted: refusing them would keep the log full forever.
//!
//! # Recovery
//!
//! [`Wal::open`] scans every segment. Each segment keeps its longest valid prefix of
//! records: at the first record that is incomplete, fails its checksum or breaks the
//! sequence, the segment is truncated (a torn tail after a crash, or a write that failed
//! half-way) and the scan goes on with the next segment. Recovery never fails on bad
//! data — only on an I/O error — so a damaged log cannot cause a crash loop. The
//! watermark is the highest ack found; batches above it are replayed. Writing resumes in
//! a new segment.
//!
//! A failed append cuts the segment back to its last good record; if even that fails,
//! the segment is sealed and the next append starts a new one, so a partial record is
//! never followed by good ones in the same segment.

pub mod fs;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use self::fs::{Fs, SegmentFile};

/// CRC-32C with the CPU's own instruction where there is one (SSE 4.2, chosen at run
/// time): every record is checksummed when written and again when read back, and the
/// slicing-by-16 tables used before kept the appender on a CPU ~0.25 ms for a batch of
/// 1,000 rows, long enough to hold up a data-plane thread woken behind it.
fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

const HEADER: usize = 8;
const BODY_HEADER: usize = 9;
const KIND_BATCH: u8 = 1;
const KIND_ACK: u8 = 2;
/// Larger records than this are taken for corruption (a garbled length).
pub const MAX_RECORD: usize = 256 << 20;
/// A fully acked active segment larger than this is sealed, so that it can be deleted.
const RECYCLE_BYTES: u64 = 1 << 20;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The log holds `max_bytes` already; the batch was not written.
    #[error("the write-ahead log is full ({bytes} of {max} bytes)")]
    Full { bytes: u64, max: u64 },
    /// A batch larger than a record may be.
    #[error("a batch of {0} bytes is larger than a log record may be")]
    TooLarge(usize),
    /// The disk failed.
    #[error("write-ahead log I/O: {0}")]
    Io(#[from] io::Error),
}

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every append.
    Always,
    /// When the writer calls [`Wal::sync`] on its timer.
    Interval,
    /// Never explicitly.
    Never,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub fsync: Fsync,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig { segment_bytes: 16 << 20, max_bytes: 1 << 30, fsync: Fsync::Always }
    }
}

/// One batch read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Segments found (before deleting fully acked ones).
    pub segments: usize,
    /// Batches above the watermark, to be replayed.
    pub pending_batches: u64,
    /// Bytes cut from segments whose tail was torn or corrupt.
    pub truncated_bytes: u64,
    /// Segments that had such a tail.
    pub truncated_segments: usize,
    pub watermark: u64,
}

/// A reading position: the next record to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    segment: u64,
    offset: u64,
    /// Batches up to this one have been returned.
    seq: u64,
}

/// Sizes and positions, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub bytes: u64,
    pub segments: usize,
    pub watermark: u64,
    pub last_seq: u64,
    /// Bytes skipped by the reader as corrupt since the log was opened.
    pub corrupt_bytes: u64,
    pub sync_failures: u64,
}

impl WalStats {
    pub fn pending_batches(&self) -> u64 {
        self.last_seq.saturating_sub(self.watermark)
    }
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// The highest batch seq in it, if any.
    last_batch: Option<u64>,
}

/// The log. Not internally synchronized: the writer keeps it behind a mutex.
pub struct Wal {
    fs: Arc<dyn Fs>,
    config: WalConfig,
    /// Oldest first; the last one is the active segment when `active` is `Some`.
    segments: VecDeque<Segment>,
    active: Option<Box<dyn SegmentFile>>,
    last_seq: u64,
    watermark: u64,
    bytes: u64,
    /// Bytes the reader skipped as corrupt, and syncs that failed (for metrics).
    corrupt_bytes: Arc<AtomicU64>,
    sync_failures: AtomicU64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the log on `fs`, recovering what a previous process left.
    pub fn open(fs: Arc<dyn Fs>, config: WalConfig) -> io::Result<(Wal, Recovered)> {
        let mut ids = fs.list()?;
        ids.sort_unstable();
        let mut recovered = Recovered { segments: ids.len(), ..Recovered::default() };
        let mut segments = VecDeque::new();
        let mut last_seq = 0;
        let mut watermark = 0;
        for id in ids {
            let scan = scan(fs.as_ref(), id, last_seq)?;
            if scan.valid_len < scan.file_len {
                fs.truncate(id, scan.valid_len)?;
                recovered.truncated_bytes += scan.file_len - scan.valid_len;
                recovered.truncated_segments += 1;
            }
            if let Some(seq) = scan.last_batch {
                last_seq = seq;
            }
            watermark = watermark.max(scan.watermark);
            if config.fsync != Fsync::Never {
                // A previous process may have left batches unsynced (`interval`); they are
                // to be replayed, so make them as durable as new ones.
                fs.sync(id)?;
            }
            segments.push_back(Segment { id, bytes: scan.valid_len, last_batch: scan.last_batch });
        }
        // New batches must be numbered above every shipped one, or the reader would take
        // them for shipped: an ack can outlive its batches when their segment is deleted.
        let last_seq = last_seq.max(watermark);
        recovered.watermark = watermark;
        recovered.pending_batches = last_seq.saturating_sub(watermark);
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let mut wal = Wal {
            fs,
            config,
            segments,
            active: None,
            last_seq,
            watermark,
            bytes,
            corrupt_bytes: Arc::new(AtomicU64::new(0)),
            sync_failures: AtomicU64::new(0),
        };
        wal.delete_shipped()?;
        Ok((wal, recovered))
    }

    /// Appends a batch; returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        let len = BODY_HEADER + payload.len();
        if len > MAX_RECORD {
            return Err(WalError::TooLarge(payload.len()));
        }
        let record_len = (HEADER + len) as u64;
        if self.bytes + record_len > self.config.max_bytes {
            return Err(WalError::Full { bytes: self.bytes, max: self.config.max_bytes });
        }
        let seq = self.last_seq + 1;
        self.write(KIND_BATCH, seq, payload)?;
        if let Some(active) = self.segments.back_mut() {
            active.last_batch = Some(seq);
        }
        self.last_seq = seq;
        if self.config.fsync == Fsync::Always {
            // The batch is in the log either way (the reader ships it from the page cache);
            // what failed is only the promise to survive a power loss. Counted, not fatal.
            let _ = self.sync();
        }
        Ok(seq)
    }

    /// Makes every append so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        let result = match &mut self.active {
            Some(file) => file.sync(),
            None => Ok(()),
        };
        if result.is_err() {
            self.sync_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Every batch up to `seq` is in the database: moves the watermark and deletes the
    /// segments that holds nothing else.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let seq = seq.min(self.last_seq);
        if seq <= self.watermark {
            return Ok(());
        }
        self.watermark = seq;
        match self.write(KIND_ACK, seq, &[]) {
            Ok(()) => {}
            Err(WalError::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        let active_bytes = if self.active.is_some() { self.segments.back().map_or(0, |s| s.bytes) } else { 0 };
        if self.watermark == self.last_seq && active_bytes > RECYCLE_BYTES {
            self.seal();
        }
        self.delete_shipped()
    }

    /// A cursor at the first batch not yet shipped.
    pub fn cursor(&self) -> Cursor {
        Cursor { segment: self.segments.front().map_or(0, |s| s.id), offset: 0, seq: self.watermark }
    }

    /// Reads batches after the cursor (and after the watermark), about `max_bytes` of
    /// them (at least one, if there is one), and advances the cursor past them.
    pub fn read(&self, cursor: &mut Cursor, max_bytes: usize) -> io::Result<Vec<Entry>> {
        self.reader().read(cursor, max_bytes)
    }

    /// A view of the log as it is now, to read from without holding the log (appends
    /// only add after it; only the reader's own acks delete segments it has passed).
    pub fn reader(&self) -> WalReader {
        WalReader {
            fs: self.fs.clone(),
            segments: self.segments.iter().map(|s| (s.id, s.bytes)).collect(),
            watermark: self.watermark,
            corrupt_bytes: self.corrupt_bytes.clone(),
        }
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            bytes: self.bytes,
            segments: self.segments.len(),
            watermark: self.watermark,
            last_seq: self.last_seq,
            corrupt_bytes: self.corrupt_bytes.load(Ordering::Relaxed),
            sync_failures: self.sync_failures.load(Ordering::Relaxed),
        }
    }

    /// Writes one record to the active segment, rolling over first when it is full.
    fn write(&mut self, kind: u8, seq: u64, payload: &[u8]) -> Result<(), WalError> {
        let record = encode(kind, seq, payload);
        let active_bytes = if self.active.is_some() { self.segments.back().map_or(0, |s| s.bytes) } else { 0 };
        if self.active.is_none() || (active_bytes > 0 && active_bytes + record.len() as u64 > self.config.segment_bytes)
        {
            self.roll(seq)?;
        }
        let (Some(file), Some(segment)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(WalError::Io(io::Error::other("no active segment")));
        };
        if let Err(e) = file.append(&record) {
            // Cut the partial record away, or, if that fails too, leave the segment so
            // that nothing good follows it.
            if self.fs.truncate(segment.id, segment.bytes).is_err() {
                self.active = None;
            }
            return Err(WalError::Io(e));
        }
        segment.bytes += record.len() as u64;
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_seq`, beginning with the
    /// watermark.
    fn roll(&mut self, next_seq: u64) -> io::Result<()> {
        self.seal();
        let id = next_seq.max(self.last_seq + 1).max(self.segments.back().map_or(0, |s| s.id + 1));
        let file = self.fs.create(id)?;
        self.segments.push_back(Segment { id, bytes: 0, last_batch: None });
        self.active = Some(file);
        let checkpoint = encode(KIND_ACK, self.watermark, &[]);
        let (Some(file), Some(segment)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = file.append(&checkpoint) {
            let _ = self.fs.truncate(id, 0);
            return Err(e);
        }
        segment.bytes += checkpoint.len() as u64;
        self.bytes += checkpoint.len() as u64;
        Ok(())
    }

    fn seal(&mut self) {
        if let Some(mut file) = self.active.take()
            && self.config.fsync != Fsync::Never
            && file.sync().is_err()
        {
            self.sync_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deletes sealed segments from the front while all their batches are shipped.
    fn delete_shipped(&mut self) -> io::Result<()> {
        while let Some(front) = self.segments.front() {
            let is_active = self.active.is_some() && self.segments.len() == 1;
            let shipped = front.last_batch.is_none_or(|s| s <= self.watermark);
            if is_active || !shipped {
                break;
            }
            self.fs.remove(front.id)?;
            self.bytes -= front.bytes;
            self.segments.pop_front();
        }
        Ok(())
    }
}

/// A snapshot of the log's segments, read without holding the log: the shipper reads
/// megabytes at a time, and the appender (and status queries) must not wait for that.
pub struct WalReader {
    fs: Arc<dyn Fs>,
    segments: Vec<(u64, u64)>,
    watermark: u64,
    corrupt_bytes: Arc<AtomicU64>,
}

impl WalReader {
    /// Reads batches after the cursor (and after the watermark), about `max_bytes` of
    /// them (at least one, if there is one), and advances the cursor past them.
    pub fn read(&self, cursor: &mut Cursor, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut total = 0usize;
        cursor.seq = cursor.seq.max(self.watermark);
        let mut index = match self.segments.iter().position(|&(id, _)| id >= cursor.segment) {
            Some(i) => i,
            None => return Ok(entries),
        };
        if self.segments[index].0 != cursor.segment {
            // The cursor's segment was deleted (everything in it was shipped).
            cursor.segment = self.segments[index].0;
            cursor.offset = 0;
        }
        while total < max_bytes || entries.is_empty() {
            let (segment_id, segment_bytes) = self.segments[index];
            if cursor.offset >= segment_bytes {
                if index + 1 == self.segments.len() {
                    break;
                }
                index += 1;
                cursor.segment = self.segments[index].0;
                cursor.offset = 0;
                continue;
            }
            let want = (segment_bytes - cursor.offset) as usize;
            let budget = max_bytes.saturating_sub(total).saturating_add(HEADER);
            let buf = self.fs.read_at(segment_id, cursor.offset, want.min(budget))?;
            let mut at = 0;
            loop {
                match parse(&buf[at..]) {
                    Parsed::Record { kind, seq, payload, len } => {
                        at += len;
                        if kind == KIND_BATCH && seq > cursor.seq {
                            cursor.seq = seq;
                            total += payload.len();
                            entries.push(Entry { seq, payload: payload.to_vec() });
                        }
                        if total >= max_bytes && !entries.is_empty() {
                            break;
                        }
                    }
                    Parsed::Incomplete { needed } if at == 0 => {
                        // One record larger than what was read: read exactly it.
                        let buf = self.fs.read_at(segment_id, cursor.offset, needed)?;
                        match parse(&buf) {
                            Parsed::Record { kind, seq, payload, len } => {
                                at = len;
                                if kind == KIND_BATCH && seq > cursor.seq {
                                    cursor.seq = seq;
                                    total += payload.len();
                                    entries.push(Entry { seq, payload: payload.to_vec() });
                                }
                            }
                            _ => return Err(io::Error::other("write-ahead log segment changed under its reader")),
                        }
                        break;
                    }
                    Parsed::Incomplete { .. } => break,
                    Parsed::Corrupt => {
                        // Damaged after recovery checked it (the disk): skip the rest of
                        // the segment rather than stall the shipper on it forever.
                        let skipped = segment_bytes - cursor.offset - at as u64;
                        self.corrupt_bytes.fetch_add(skipped, Ordering::Relaxed);
                        at += skipped as usize;
                        break;
                    }
                }
            }
            cursor.offset += at as u64;
        }
        Ok(entries)
    }
}

fn encode(kind: u8, seq: u64, payload: &[u8]) -> Vec<u8> {
    let body_len = BODY_HEADER + payload.len();
    let mut record = Vec::with_capacity(HEADER + body_len);
    record.extend_from_slice(&(body_len as u32).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.push(kind);
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(payload);
    let crc = checksum(&record[HEADER..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record
}

enum Parsed<'a> {
    Record {
        kind: u8,
        seq: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// The buffer ends inside a record of `needed` bytes.
    Incomplete {
        needed: usize,
    },
    Corrupt,
}

fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER {
        return Parsed::Incomplete { needed: HEADER };
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(BODY_HEADER..=MAX_RECORD).contains(&body_len) {
        return Parsed::Corrupt;
    }
    if buf.len() < HEADER + body_len {
        return Parsed::Incomplete { needed: HEADER + body_len };
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[HEADER..HEADER + body_len];
    if checksum(body) != crc {
        return Parsed::Corrupt;
    }
    let kind = body[0];
    if kind != KIND_BATCH && kind != KIND_ACK {
        return Parsed::Corrupt;
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&body[1..9]);
    Parsed::Record { kind, seq: u64::from_le_bytes(seq), payload: &body[BODY_HEADER..], len: HEADER + body_len }
}

struct Scan {
    file_len: u64,
    valid_len: u64,
    last_batch: Option<u64>,
    watermark: u64,
}

/// The valid prefix of a segment whose batches must follow `prev_seq`.
fn scan(fs: &dyn Fs, id: u64, prev_seq: u64) -> io::Result<Scan> {
    let file_len = fs.len(id)?;
    let buf = fs.read_at(id, 0, file_len as usize)?;
    let mut at = 0;
    let mut last = prev_seq;
    let mut last_batch = None;
    let mut watermark = 0;
    while let Parsed::Record { kind, seq, len, .. } = parse(&buf[at..]) {
        if kind == KIND_BATCH {
            // Batches are numbered consecutively; anything else is not ours to trust.
            if seq != last + 1 && !(last == prev_seq && last_batch.is_none() && seq > last) {
                break;
            }
            last = seq;
            last_batch = Some(seq);
        } else {
            watermark = watermark.max(seq);
        }
        at += len;
    }
    Ok(Scan { file_len, valid_len: at as u64, last_batch, watermark })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
