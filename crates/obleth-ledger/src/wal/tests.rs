//! Example-based tests of the log; the model-based property test is in
//! `tests/wal_model.rs`.

use std::sync::Arc;

use super::fs::{Crash, Fs, MemFs};
use super::*;

fn config(segment_bytes: u64, max_bytes: u64) -> WalConfig {
    WalConfig { segment_bytes, max_bytes, fsync: Fsync::Always }
}

fn open(fs: &MemFs, c: WalConfig) -> (Wal, Recovered) {
    Wal::open(Arc::new(fs.clone()), c).unwrap()
}

fn read_all(wal: &Wal) -> Vec<Entry> {
    let mut cursor = wal.cursor();
    let mut out = Vec::new();
    loop {
        let batch = wal.read(&mut cursor, 64).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[test]
fn appended_batches_read_back_in_order_and_acks_delete_segments() {
    let fs = MemFs::new();
    let (mut wal, rec) = open(&fs, config(100, 1 << 20));
    assert_eq!(rec, Recovered::default());
    for i in 0..20u8 {
        assert_eq!(wal.append(&[i; 30]).unwrap(), u64::from(i) + 1);
    }
    let entries = read_all(&wal);
    assert_eq!(entries.len(), 20);
    assert!(entries.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1 && e.payload == vec![i as u8; 30]));
    let segments = wal.stats().segments;
    assert!(segments > 5, "100-byte segments roll over: {segments}");

    wal.ack(10).unwrap();
    assert!(wal.stats().segments < segments);
    assert_eq!(read_all(&wal).first().map(|e| e.seq), Some(11));
    wal.ack(20).unwrap();
    assert_eq!(wal.stats().segments, 1, "only the active segment is left");
    assert!(read_all(&wal).is_empty());
}

#[test]
fn a_restart_replays_exactly_the_unacked_batches() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, config(200, 1 << 20));
    for i in 0..10u8 {
        wal.append(&[i; 20]).unwrap();
    }
    wal.ack(6).unwrap();
    drop(wal);
    let (mut wal, rec) = open(&fs, config(200, 1 << 20));
    assert_eq!(rec.watermark, 6);
    assert_eq!(rec.pending_batches, 4);
    assert_eq!(read_all(&wal).iter().map(|e| e.seq).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    // Numbering continues.
    assert_eq!(wal.append(b"next").unwrap(), 11);
}

#[test]
fn a_torn_tail_is_cut_off_not_fatal() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, WalConfig { fsync: Fsync::Never, ..config(1 << 20, 1 << 20) });
    wal.append(b"one").unwrap();
    wal.sync().unwrap();
    wal.append(b"two").unwrap();
    drop(wal);
    fs.crash(Crash { kept: 0.5, garble: false });
    let (mut wal, rec) = open(&fs, config(1 << 20, 1 << 20));
    assert_eq!(rec.truncated_segments, 1);
    assert!(rec.truncated_bytes > 0);
    assert_eq!(read_all(&wal).iter().map(|e| e.payload.clone()).collect::<Vec<_>>(), vec![b"one".to_vec()]);
    assert_eq!(wal.append(b"three").unwrap(), 2);
    let (wal, rec) = open(&fs, config(1 << 20, 1 << 20));
    assert_eq!(rec.truncated_bytes, 0, "the cut is durable");
    assert_eq!(read_all(&wal).len(), 2);
}

#[test]
fn a_garbled_record_fails_its_checksum() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, WalConfig { fsync: Fsync::Never, ..config(1 << 20, 1 << 20) });
    wal.append(b"one").unwrap();
    wal.sync().unwrap();
    wal.append(b"two").unwrap();
    drop(wal);
    fs.crash(Crash { kept: 1.0, garble: true });
    let (wal, rec) = open(&fs, config(1 << 20, 1 << 20));
    assert_eq!(rec.truncated_segments, 1);
    assert_eq!(read_all(&wal).len(), 1);
}

#[test]
fn a_full_log_refuses_batches_but_takes_acks() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, config(64, 200));
    let mut appended = 0;
    loop {
        match wal.append(&[7; 40]) {
            Ok(_) => appended += 1,
            Err(WalError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(appended >= 2);
    assert!(wal.stats().bytes <= 200 + 64);
    wal.ack(appended).unwrap();
    wal.append(&[8; 40]).expect("room again once shipped batches are deleted");
}

#[test]
fn a_failed_append_leaves_no_partial_record() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, config(1 << 20, 1 << 20));
    wal.append(b"one").unwrap();
    fs.fail_next_append(5);
    assert!(wal.append(b"two").is_err());
    assert_eq!(wal.append(b"three").unwrap(), 2);
    drop(wal);
    let (wal, rec) = open(&fs, config(1 << 20, 1 << 20));
    assert_eq!(rec.truncated_bytes, 0);
    let payloads: Vec<_> = read_all(&wal).into_iter().map(|e| e.payload).collect();
    assert_eq!(payloads, vec![b"one".to_vec(), b"three".to_vec()]);
}

#[test]
fn a_record_larger_than_a_read_is_read_whole() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, config(1 << 20, 1 << 20));
    let big = vec![3u8; 10_000];
    wal.append(&big).unwrap();
    wal.append(b"small").unwrap();
    let mut cursor = wal.cursor();
    let first = wal.read(&mut cursor, 100).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].payload, big);
    assert_eq!(wal.read(&mut cursor, 100).unwrap()[0].payload, b"small");
}

#[test]
fn a_healthy_log_recycles_its_active_segment() {
    let fs = MemFs::new();
    let (mut wal, _) = open(&fs, config(16 << 20, 1 << 30));
    for _ in 0..3 {
        let seq = wal.append(&vec![1; 600 << 10]).unwrap();
        wal.ack(seq).unwrap();
    }
    assert!(fs.total_bytes() < 2 << 20, "shipped data is deleted: {} bytes left", fs.total_bytes());
    let (wal, rec) = open(&fs, config(16 << 20, 1 << 30));
    assert_eq!(rec.pending_batches, 0);
    assert!(read_all(&wal).is_empty());
    assert_eq!(wal.stats().last_seq, 3);
}

#[test]
fn dir_fs_round_trips_on_a_real_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(fs::DirFs::new(dir.path().join("wal")).unwrap());
    let (mut wal, _) = Wal::open(fs.clone(), config(128, 1 << 20)).unwrap();
    for i in 0..10u8 {
        wal.append(&[i; 50]).unwrap();
    }
    wal.ack(4).unwrap();
    drop(wal);
    let (wal, rec) = Wal::open(fs, config(128, 1 << 20)).unwrap();
    assert_eq!(rec.pending_batches, 6);
    assert_eq!(read_all(&wal).iter().map(|e| e.seq).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
}

/// Logs written before the checksum moved to the CPU's instruction must still read: the
/// function is CRC-32C (iSCSI), with its published check value, and a record is encoded
/// byte for byte as an independently computed one.
#[test]
fn the_checksum_is_crc32c_so_older_logs_still_read() {
    assert_eq!(checksum(b"123456789"), 0xE306_9283);
    assert_eq!(checksum(b""), 0);
    // A batch record (seq 7, payload "{}\n") with its CRC-32C computed independently.
    let body = [&[KIND_BATCH][..], &7u64.to_le_bytes(), b"{}\n"].concat();
    let mut record = (body.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&0x600B_0364u32.to_le_bytes());
    record.extend_from_slice(&body);
    assert_eq!(encode(KIND_BATCH, 7, b"{}\n"), record);
}
