//! Model-based property test of the write-ahead log (`obleth_ledger::wal`) over its
//! simulated disk ([`MemFs`]), in the spirit of Vector's `disk_v2` model tests.
//!
//! Proptest generates a random history — appends, syncs, shipping (read, insert into a
//! database, ack), shipping that dies before its ack, appends that fail half-way, power
//! losses that keep a torn (and maybe garbled) prefix of every file's unsynced bytes, and
//! clean restarts — with limits small enough that segments roll over and the log fills up
//! all the time, under each fsync policy. A [`Model`] replays the same history and the
//! log is checked against it after every step:
//!
//! 1. Nothing panics, nothing but the injected fault fails, and [`Wal::open`] recovers
//!    whatever the crash left.
//! 2. Reads return batches in strictly increasing seq order, each payload byte-identical
//!    to one that was appended with that seq (never a failed, invented or garbled one),
//!    never one at or below the watermark, never one twice in a lifetime, and never skip
//!    one: what the shipper reads is always the front of what the log holds.
//! 3. Durability: a batch that was durable and not acked survives a power loss; a clean
//!    restart loses nothing at all. What "durable" means per policy is spelled out at
//!    [`Model::durable_on_sync`].
//! 4. At-least-once delivery: at the end every batch that was not lost to a power loss
//!    (so every durable one) is in the database; a batch reaches it twice only when a
//!    restart replayed it — shipped without ack, or acked but the ack record lost with
//!    the power.
//! 5. Batches come back in append order, across restarts too.
//! 6. The log's size accounting matches the disk, an append never takes it past
//!    `max_bytes` (but for the checkpoint record of a new segment), acks can take it
//!    only a segment's worth further, and `Full` is returned only when the next record
//!    really does not fit.
//! 7. Once everything is shipped and acked, at most one segment is left on disk.
//!
//! Run more cases with `PROPTEST_CASES=…`, replay one with `PROPTEST_RNG_SEED=…`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use obleth_ledger::wal::fs::{Crash, Fs, MemFs};
use obleth_ledger::wal::{Cursor, Fsync, Recovered, Wal, WalConfig, WalError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A record's framing (the layout documented in `wal.rs`): `len: u32 | crc: u32 | kind:
/// u8 | seq: u64 | payload`.
const RECORD_OVERHEAD: u64 = 4 + 4 + 1 + 8;
/// An ack record, or the checkpoint that begins every segment: no payload.
const ACK_RECORD: u64 = RECORD_OVERHEAD;
const MAX_PAYLOAD: usize = 200;
/// Enough to read everything the log holds in one call.
const READ_ALL: usize = 1 << 20;

// === the history ===

#[derive(Debug, Clone)]
enum Op {
    /// Appends a batch with a payload of this many bytes.
    Append(usize),
    /// `Wal::sync`, as the writer's timer does under `Fsync::Interval`.
    Sync,
    /// One shipper round: a read of about `max_bytes`, insert, ack of the last seq.
    Ship { max_bytes: usize },
    /// The same, but the process dies between the insert and the ack: no ack.
    ShipNoAck { max_bytes: usize },
    /// The next write to the disk writes `written` bytes and fails; then an append.
    FailingAppend { len: usize, written: usize },
    /// Power loss: every file keeps its synced bytes and a `kept` fraction of the rest.
    Crash { kept: f64, garble: bool },
    /// A clean restart (the process dies, the page cache survives).
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let read_budget = prop_oneof![8 => 1..400usize, 1 => Just(0usize), 1 => Just(READ_ALL)];
    prop_oneof![
        14 => (1..=MAX_PAYLOAD).prop_map(Op::Append),
        2 => Just(Op::Sync),
        3 => read_budget.clone().prop_map(|max_bytes| Op::Ship { max_bytes }),
        1 => read_budget.prop_map(|max_bytes| Op::ShipNoAck { max_bytes }),
        1 => (1..=MAX_PAYLOAD, 0..=MAX_PAYLOAD + 40).prop_map(|(len, written)| Op::FailingAppend { len, written }),
        1 => (prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64], any::<bool>())
            .prop_map(|(kept, garble)| Op::Crash { kept, garble }),
        1 => Just(Op::Reopen),
    ]
}

fn fsync() -> impl Strategy<Value = Fsync> {
    prop_oneof![Just(Fsync::Always), Just(Fsync::Interval), Just(Fsync::Never)]
}

// === payloads ===

/// A payload that names its batch: the id as LEB128, then bytes derived from the id, so
/// that a payload read back identifies its batch and any damage shows.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(10));
    let mut rest = id;
    loop {
        let byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    let mut i = 0u8;
    while out.len() < len {
        out.push((id as u8).wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) ^ 0xa5);
        i = i.wrapping_add(1);
    }
    out
}

/// The id a payload names, if it names one.
fn payload_id(bytes: &[u8]) -> Option<u64> {
    let mut id = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        id |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(id);
        }
    }
    None
}

// === the model ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acked {
    No,
    /// `ack` returned Ok: the ack record is written (in the page cache at least).
    Recorded,
    /// `ack` failed on the injected fault: the watermark moved in memory only.
    Unrecorded,
}

#[derive(Debug)]
struct Batch {
    payload: Vec<u8>,
    /// `None` when the append failed: such a batch must never be read.
    seq: Option<u64>,
    /// The log's lifetime (one per open) that appended it.
    lifetime: u32,
    /// The segment file it was written to (the newest file after the append).
    segment: u64,
    durable: bool,
    acked: Acked,
    /// Not durable and gone after a power loss: must never come back.
    lost: bool,
}

/// What the log must hold, by batch id (ids count up in append order).
#[derive(Debug, Default)]
struct Model {
    fsync: Option<Fsync>,
    batches: Vec<Batch>,
    lifetime: u32,
    /// The batches the log holds above its watermark, in append order.
    pending: Vec<u64>,
    /// The database: deliveries per batch id.
    db: BTreeMap<u64, u32>,
    /// Redeliveries a restart justified, per batch id.
    replays: BTreeMap<u64, u32>,
    /// A `fail_next_append` no write has consumed yet (the append it was set for was
    /// refused as `Full` before writing).
    fault_pending: bool,
    stats: Counters,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    appended: u64,
    full: u64,
    failed: u64,
    crashes: u64,
    lost: u64,
    redelivered: u64,
    max_overshoot: u64,
}

impl Model {
    fn batch(&self, id: u64) -> &Batch {
        &self.batches[id as usize]
    }

    fn batch_mut(&mut self, id: u64) -> &mut Batch {
        &mut self.batches[id as usize]
    }

    /// Which batches a successful `Wal::sync` makes durable — the implementation's
    /// guarantees, as documented and as `sync`/`seal` do them:
    ///
    /// - `Always`: every append is durable when it returns (the model marks it there).
    /// - `Interval`: `sync` syncs the active segment and every earlier segment of this
    ///   lifetime was synced when it was sealed, so every batch this process appended is
    ///   durable. Batches a previous process left unsynced are synced by `Wal::open`
    ///   (modelled in `restarted`).
    /// - `Never`: seals do not sync, so `sync` makes durable only the batches of the
    ///   active segment (as `wal.rs` documents: "the OS decides").
    fn durable_on_sync(&mut self, active: Option<u64>) {
        let (lifetime, fsync) = (self.lifetime, self.fsync);
        for b in self.batches.iter_mut().filter(|b| b.seq.is_some() && b.lifetime == lifetime) {
            match fsync {
                Some(Fsync::Never) => b.durable |= Some(b.segment) == active,
                _ => b.durable = true,
            }
        }
    }

    /// A new segment was started: under `Interval` (and `Always`) the one before it was
    /// synced when it was sealed, and so were all the earlier ones of this lifetime.
    fn rolled(&mut self) {
        if self.fsync != Some(Fsync::Never) {
            self.durable_on_sync(None);
        }
    }

    /// The shipper inserts a batch into the database.
    fn deliver(&mut self, id: u64) -> Result<(), TestCaseError> {
        let count = self.db.entry(id).or_default();
        if *count > 0 {
            let replays = self.replays.entry(id).or_default();
            prop_assert!(
                *replays > 0,
                "batch {id} delivered to the database again ({} times before) without a restart replaying it",
                *count
            );
            *replays -= 1;
            self.stats.redelivered += 1;
        }
        *count += 1;
        Ok(())
    }

    /// The log acked everything up to `seq`.
    fn acked(&mut self, seq: u64, recorded: bool) {
        let pending = std::mem::take(&mut self.pending);
        let (acked, rest): (Vec<u64>, Vec<u64>) =
            pending.into_iter().partition(|&id| self.batches[id as usize].seq.is_some_and(|s| s <= seq));
        self.pending = rest;
        let state = if recorded { Acked::Recorded } else { Acked::Unrecorded };
        for id in acked {
            self.batch_mut(id).acked = state;
        }
        if recorded {
            // A recorded watermark covers the batches of earlier unrecorded acks too.
            for b in &mut self.batches {
                if b.acked == Acked::Unrecorded && b.seq.is_some_and(|s| s <= seq) {
                    b.acked = Acked::Recorded;
                }
            }
        }
    }
}

// === the harness ===

struct Harness {
    fs: MemFs,
    config: WalConfig,
    wal: Option<Wal>,
    /// The shipper's cursor, taken from `Wal::cursor` at every open.
    cursor: Cursor,
    /// The highest seq the shipper has read in this lifetime (the watermark at open).
    shipped: u64,
    model: Model,
}

/// One batch as read back: its id (from the payload) and seq.
type Read = (u64, u64);

impl Harness {
    fn new(config: WalConfig) -> Result<Harness, TestCaseError> {
        let model = Model { fsync: Some(config.fsync), ..Model::default() };
        let mut h = Harness { fs: MemFs::new(), config, wal: None, cursor: Cursor::default(), shipped: 0, model };
        let recovered = h.open()?;
        prop_assert_eq!(recovered, Recovered::default(), "an empty disk recovers nothing");
        Ok(h)
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the log is open between steps")
    }

    fn wal_mut(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("the log is open between steps")
    }

    fn segment_ids(&self) -> BTreeSet<u64> {
        self.fs.list().expect("MemFs lists").into_iter().collect()
    }

    /// Opens the log as the ledger does at start, and takes the shipper's cursor.
    fn open(&mut self) -> Result<Recovered, TestCaseError> {
        let files = self.segment_ids().len();
        let opened = Wal::open(Arc::new(self.fs.clone()), self.config.clone());
        let (wal, recovered) = match opened {
            Ok(opened) => opened,
            Err(e) => return Err(TestCaseError::fail(format!("Wal::open failed on MemFs: {e}"))),
        };
        let stats = wal.stats();
        prop_assert_eq!(recovered.segments, files, "Recovered::segments is not the files found");
        prop_assert_eq!(recovered.watermark, stats.watermark);
        prop_assert_eq!(stats.last_seq, recovered.watermark + recovered.pending_batches, "{:?}", recovered);
        self.cursor = wal.cursor();
        self.shipped = stats.watermark;
        self.wal = Some(wal);
        self.model.lifetime += 1;
        Ok(recovered)
    }

    /// Everything the log holds above its watermark, read with a fresh cursor (reading
    /// changes nothing), checked entry by entry against what was appended (invariants 2
    /// and 5).
    fn probe(&self) -> Result<Vec<Read>, TestCaseError> {
        let wal = self.wal();
        let stats = wal.stats();
        let mut cursor = wal.cursor();
        let mut out: Vec<Read> = Vec::new();
        loop {
            let entries = match wal.read(&mut cursor, READ_ALL) {
                Ok(entries) => entries,
                Err(e) => return Err(TestCaseError::fail(format!("read failed on MemFs: {e}"))),
            };
            if entries.is_empty() {
                return Ok(out);
            }
            for entry in entries {
                let id = payload_id(&entry.payload)
                    .filter(|&id| id < self.model.batches.len() as u64)
                    .ok_or_else(|| TestCaseError::fail(format!("read an invented payload at seq {}", entry.seq)))?;
                let batch = self.model.batch(id);
                prop_assert!(batch.seq.is_some(), "read batch {id}, whose append failed (seq {})", entry.seq);
                prop_assert!(entry.payload == batch.payload, "batch {id} read back garbled (seq {})", entry.seq);
                prop_assert_eq!(Some(entry.seq), batch.seq, "batch {} read back under another seq", id);
                prop_assert!(!batch.lost, "batch {id} (seq {}) came back after it was lost", entry.seq);
                prop_assert!(entry.seq > stats.watermark, "read seq {} at or below the watermark", entry.seq);
                prop_assert!(entry.seq <= stats.last_seq, "read seq {} above last_seq {}", entry.seq, stats.last_seq);
                if let Some(&(prev_id, prev_seq)) = out.last() {
                    prop_assert!(entry.seq > prev_seq, "seq {} read after seq {prev_seq}", entry.seq);
                    prop_assert!(id > prev_id, "batch {id} read after batch {prev_id}: not in append order");
                }
                out.push((id, entry.seq));
            }
        }
    }

    /// After a step without a restart: the log holds exactly what the model says, and
    /// the disk is within bounds (invariants 2 and 6).
    fn check(&mut self) -> Result<(), TestCaseError> {
        let held: Vec<u64> = self.probe()?.into_iter().map(|(id, _)| id).collect();
        prop_assert_eq!(&held, &self.model.pending, "the log holds other batches than were appended and not acked");
        let stats = self.wal().stats();
        let disk = self.fs.total_bytes();
        prop_assert_eq!(stats.bytes, disk, "the log's size accounting is off the disk");
        prop_assert_eq!(stats.segments, self.segment_ids().len(), "the log's segment count is off the disk");
        prop_assert_eq!(stats.corrupt_bytes, 0, "the reader met corruption that recovery let through");
        // Appends stop at max_bytes (plus a new segment's checkpoint). Acks are always
        // taken, but a full log only grows by the acks of the batches of its front segment
        // (fewer ack records than batch records, at most a segment's worth with the
        // checkpoints of the segments they fill) before that segment is deleted.
        let max = self.config.max_bytes;
        let slack = ACK_RECORD + self.segment_cap() + 2 * ACK_RECORD;
        prop_assert!(disk <= max + slack, "{disk} bytes on disk, max_bytes {max} + slack {slack}");
        self.model.stats.max_overshoot = self.model.stats.max_overshoot.max(disk.saturating_sub(max));
        Ok(())
    }

    /// The most a segment holds: `segment_bytes`, or its checkpoint and one record that
    /// alone is larger.
    fn segment_cap(&self) -> u64 {
        self.config.segment_bytes.max(ACK_RECORD + RECORD_OVERHEAD + MAX_PAYLOAD as u64)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Append(len) => self.append(len, None)?,
            Op::FailingAppend { len, written } => self.append(len, Some(written))?,
            Op::Sync => {
                let active = self.segment_ids().last().copied();
                let synced = self.wal_mut().sync();
                prop_assert!(synced.is_ok(), "sync failed on MemFs: {:?}", synced);
                self.model.durable_on_sync(active);
            }
            Op::Ship { max_bytes } => {
                self.ship(max_bytes, true)?;
            }
            Op::ShipNoAck { max_bytes } => {
                self.ship(max_bytes, false)?;
            }
            Op::Crash { kept, garble } => return self.crash(Crash { kept, garble }),
            Op::Reopen => return self.reopen(),
        }
        self.check()
    }

    fn append(&mut self, len: usize, fail_after: Option<usize>) -> Result<(), TestCaseError> {
        if let Some(written) = fail_after {
            self.fs.fail_next_append(written);
            self.model.fault_pending = true;
        }
        let id = self.model.batches.len() as u64;
        let payload = payload(id, len);
        let record = RECORD_OVERHEAD + payload.len() as u64;
        let before = self.wal().stats();
        let segments = self.segment_ids();
        let result = self.wal_mut().append(&payload);
        let after = self.segment_ids();
        if after.difference(&segments).next().is_some() {
            self.model.rolled();
        }
        let mut batch = Batch {
            payload,
            seq: None,
            lifetime: self.model.lifetime,
            segment: after.last().copied().unwrap_or_default(),
            durable: false,
            acked: Acked::No,
            lost: false,
        };
        match result {
            Ok(seq) => {
                prop_assert!(!self.model.fault_pending, "batch {id} appended although its write failed");
                prop_assert_eq!(seq, before.last_seq + 1, "batch {} got a seq out of sequence", id);
                prop_assert!(
                    before.bytes + record <= self.config.max_bytes,
                    "batch {id} of {record} bytes taken with {} of {} bytes used",
                    before.bytes,
                    self.config.max_bytes
                );
                let disk = self.fs.total_bytes();
                prop_assert!(
                    disk <= self.config.max_bytes + ACK_RECORD,
                    "an append took the disk to {disk} bytes, max_bytes {}",
                    self.config.max_bytes
                );
                batch.seq = Some(seq);
                batch.durable = self.config.fsync == Fsync::Always;
                self.model.pending.push(id);
                self.model.stats.appended += 1;
            }
            Err(WalError::Full { bytes, max }) => {
                prop_assert_eq!(max, self.config.max_bytes);
                prop_assert_eq!(bytes, before.bytes, "Full reports other bytes than the log holds");
                prop_assert_eq!(bytes, self.fs.total_bytes(), "Full reports other bytes than the disk holds");
                prop_assert!(bytes + record > max, "Full with {bytes} of {max} bytes used for a {record}-byte record");
                self.model.stats.full += 1;
            }
            Err(WalError::Io(e)) => {
                prop_assert!(self.model.fault_pending, "append failed without an injected fault: {e}");
                self.model.fault_pending = false;
                self.model.stats.failed += 1;
            }
            Err(e @ WalError::TooLarge(_)) => return Err(TestCaseError::fail(format!("append: {e}"))),
        }
        self.model.batches.push(batch);
        Ok(())
    }

    /// One shipper round; returns how many batches it read.
    fn ship(&mut self, max_bytes: usize, ack: bool) -> Result<usize, TestCaseError> {
        let stats = self.wal().stats();
        let unread: Vec<Read> = self.probe()?.into_iter().filter(|&(_, seq)| seq > self.shipped).collect();
        let mut cursor = self.cursor;
        let read = self.wal().read(&mut cursor, max_bytes);
        self.cursor = cursor;
        let entries = match read {
            Ok(entries) => entries,
            Err(e) => return Err(TestCaseError::fail(format!("read failed on MemFs: {e}"))),
        };
        let got: Vec<Read> = entries.iter().map(|e| (payload_id(&e.payload).unwrap_or(u64::MAX), e.seq)).collect();
        prop_assert!(
            unread.starts_with(&got),
            "the shipper read {got:?} (budget {max_bytes}) where the log holds {unread:?} after seq {}",
            self.shipped
        );
        prop_assert!(
            unread.is_empty() || !got.is_empty(),
            "a read of {max_bytes} bytes returned nothing while the log holds {unread:?}"
        );
        if got.len() < unread.len() {
            let total: usize = entries.iter().map(|e| e.payload.len()).sum();
            prop_assert!(total >= max_bytes, "a read of {max_bytes} bytes stopped after {total} with more to read");
        }
        if let Some((_, init)) = entries.split_last() {
            let before_last: usize = init.iter().map(|e| e.payload.len()).sum();
            // The first batch is read whatever the budget (a read returns at least one).
            prop_assert!(
                init.is_empty() || before_last < max_bytes,
                "a read of {max_bytes} bytes went on after {before_last} bytes"
            );
        }
        for (entry, &(id, seq)) in entries.iter().zip(&got) {
            prop_assert!(seq > stats.watermark, "the shipper read seq {seq}, at or below the watermark");
            prop_assert!(entry.payload == self.model.batch(id).payload, "the shipper read batch {id} garbled");
            self.model.deliver(id)?;
        }
        let Some(&(_, last)) = got.last() else { return Ok(0) };
        self.shipped = last;
        if ack {
            let segments = self.segment_ids();
            let result = self.wal_mut().ack(last);
            if self.segment_ids().difference(&segments).next().is_some() {
                self.model.rolled();
            }
            if self.model.fault_pending && last > stats.watermark {
                prop_assert!(result.is_err(), "ack({last}) succeeded although its write failed");
                self.model.fault_pending = false;
                self.model.acked(last, false);
            } else {
                prop_assert!(result.is_ok(), "ack({last}) failed without an injected fault: {:?}", result);
                self.model.acked(last, true);
            }
        }
        Ok(got.len())
    }

    /// Power loss, then the ledger starts again (invariant 3).
    fn crash(&mut self, crash: Crash) -> Result<(), TestCaseError> {
        drop(self.wal.take());
        self.fs.crash(crash);
        self.model.fault_pending = false;
        self.model.stats.crashes += 1;
        let before = std::mem::take(&mut self.model.pending);
        self.open()?;
        let held = self.probe()?;
        let held_ids: BTreeSet<u64> = held.iter().map(|&(id, _)| id).collect();
        for &id in &before {
            if held_ids.contains(&id) {
                continue;
            }
            let b = self.model.batch(id);
            prop_assert!(
                !b.durable,
                "durable batch {id} (seq {:?}, appended in lifetime {}) lost at {crash:?}",
                b.seq,
                b.lifetime
            );
            prop_assert!(
                crash.kept < 1.0 || crash.garble,
                "batch {id} (seq {:?}) lost at a crash that kept every byte",
                b.seq
            );
            self.model.batch_mut(id).lost = true;
            self.model.stats.lost += 1;
        }
        for &id in &held_ids {
            // Beyond what was pending, only acked batches may come back: ack records are
            // never synced, so the power may take them (and replays are deduplicated).
            let b = self.model.batch(id);
            prop_assert!(
                before.contains(&id) || b.acked != Acked::No,
                "batch {id} (seq {:?}) came back from nowhere after a crash",
                b.seq
            );
        }
        // Whatever is on the disk now survived, and is synced.
        for &id in &held_ids {
            self.model.batch_mut(id).durable = true;
        }
        self.restarted(held_ids)
    }

    /// A clean restart: the page cache survives, so nothing at all may be lost, and no
    /// batch whose ack was recorded may come back.
    fn reopen(&mut self) -> Result<(), TestCaseError> {
        drop(self.wal.take());
        let before = std::mem::take(&mut self.model.pending);
        let recovered = self.open()?;
        prop_assert_eq!(recovered.truncated_bytes, 0, "a clean restart found torn records: {:?}", recovered);
        let held = self.probe()?;
        let held_ids: BTreeSet<u64> = held.iter().map(|&(id, _)| id).collect();
        for &id in &before {
            prop_assert!(
                held_ids.contains(&id),
                "batch {id} (seq {:?}) lost at a clean restart",
                self.model.batch(id).seq
            );
        }
        for &id in &held_ids {
            let b = self.model.batch(id);
            prop_assert!(
                before.contains(&id) || b.acked == Acked::Unrecorded,
                "batch {id} (seq {:?}, ack {:?}) came back after a clean restart",
                b.seq,
                b.acked
            );
        }
        self.restarted(held_ids)
    }

    /// After a restart the log holds `held`: those are pending again (and those already
    /// in the database may be delivered once more); acked batches not among them are
    /// settled for good.
    fn restarted(&mut self, held: BTreeSet<u64>) -> Result<(), TestCaseError> {
        for b in &mut self.model.batches {
            if b.acked == Acked::Unrecorded {
                b.acked = Acked::Recorded;
            }
        }
        let synced_at_open = self.model.fsync != Some(Fsync::Never);
        for &id in &held {
            self.model.batch_mut(id).acked = Acked::No;
            // `Wal::open` syncs what it recovers (but under `Never`).
            self.model.batch_mut(id).durable |= synced_at_open;
            if self.model.db.contains_key(&id) {
                *self.model.replays.entry(id).or_default() += 1;
            }
        }
        self.model.pending = held.into_iter().collect();
        self.check()
    }

    /// A last clean restart, then the shipper drains the log (invariants 4 and 7).
    fn finish(&mut self) -> Result<(), TestCaseError> {
        if self.model.fault_pending {
            // Clear the injected fault no write consumed (the only way MemFs has): a power
            // loss that keeps every byte.
            self.crash(Crash { kept: 1.0, garble: false })?;
        }
        self.reopen()?;
        while self.ship(256, true)? > 0 {
            self.check()?;
        }
        prop_assert!(self.model.pending.is_empty(), "the shipper left {:?} in the log", self.model.pending);
        for (id, b) in self.model.batches.iter().enumerate() {
            if b.seq.is_some() && !b.lost {
                prop_assert!(self.model.db.contains_key(&(id as u64)), "batch {id} never reached the database");
            }
        }
        let disk = self.fs.total_bytes();
        let cap = self.segment_cap();
        prop_assert!(disk <= cap, "{disk} bytes left on disk once everything is shipped (one segment: {cap})");
        prop_assert!(self.wal().stats().segments <= 1, "segments left: {:?}", self.wal().stats());
        let recovered = {
            drop(self.wal.take());
            self.open()?
        };
        prop_assert_eq!(recovered.pending_batches, 0, "batches pending after everything was acked");
        prop_assert!(self.probe()?.is_empty());
        Ok(())
    }
}

fn run(segment_bytes: u64, max_bytes: u64, fsync: Fsync, ops: &[Op]) -> Result<Counters, TestCaseError> {
    let mut h = Harness::new(WalConfig { segment_bytes, max_bytes, fsync })?;
    for (i, op) in ops.iter().enumerate() {
        h.step(op).map_err(|e| match e {
            TestCaseError::Fail(why) => TestCaseError::fail(format!("step {i} ({op:?}): {why}")),
            other => other,
        })?;
    }
    h.finish().map_err(|e| match e {
        TestCaseError::Fail(why) => TestCaseError::fail(format!("final drain: {why}")),
        other => other,
    })?;
    Ok(h.model.stats)
}

fn config() -> ProptestConfig {
    // A case takes a few milliseconds: 1024 of them (about 3 s unoptimized) unless
    // PROPTEST_CASES says otherwise. No regression files in the tree.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1024);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_log_keeps_what_it_promises(
        segment_bytes in 64..=512u64,
        max_bytes in 512..=4096u64,
        fsync in fsync(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let stats = run(segment_bytes, max_bytes, fsync, &ops)?;
        if std::env::var_os("WAL_MODEL_STATS").is_some() {
            eprintln!("{fsync:?} seg {segment_bytes} max {max_bytes}: {stats:?}");
        }
    }
}

/// `read` with a budget of `usize::MAX` ("everything") — what the ledger's config lets
/// `ledger.insert_max_bytes` be. The proptest reads "everything" with a large but finite
/// budget ([`READ_ALL`]) so as not to stop at this.
#[test]
fn a_read_budget_of_usize_max_reads_everything() {
    let fs = MemFs::new();
    let config = WalConfig { segment_bytes: 1 << 20, max_bytes: 1 << 20, fsync: Fsync::Always };
    let (mut wal, _) = Wal::open(Arc::new(fs), config).expect("open");
    wal.append(b"one").expect("append");
    wal.append(b"two").expect("append");
    let mut cursor = wal.cursor();
    let entries = wal.read(&mut cursor, usize::MAX).expect("read");
    assert_eq!(entries.into_iter().map(|e| e.payload).collect::<Vec<_>>(), vec![b"one".to_vec(), b"two".to_vec()]);
}
