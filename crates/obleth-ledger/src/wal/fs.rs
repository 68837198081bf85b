//! The filesystem seam of the write-ahead log.
//!
//! The log touches the disk only through [`Fs`], so that its recovery logic can be
//! tested against [`MemFs`], a simulated disk that remembers which bytes were synced
//! and can crash (keeping a torn prefix of what was not), fail writes half-way and
//! garble unsynced bytes — the failures a real disk produces too rarely to test.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Segment files, named by their id (the sequence number of their first batch).
pub trait Fs: Send + Sync + 'static {
    /// The ids of the segments present, in any order.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// The segment's length in bytes.
    fn len(&self, id: u64) -> io::Result<u64>;
    /// Up to `max` bytes of the segment from `offset` (fewer at its end).
    fn read_at(&self, id: u64, offset: u64, max: usize) -> io::Result<Vec<u8>>;
    /// Creates an empty segment (durably: its directory entry survives a crash) and
    /// opens it for appending.
    fn create(&self, id: u64) -> io::Result<Box<dyn SegmentFile>>;
    /// Cuts the segment to `len` bytes.
    fn truncate(&self, id: u64, len: u64) -> io::Result<()>;
    /// Deletes the segment.
    fn remove(&self, id: u64) -> io::Result<()>;
    /// Makes the segment's contents durable (one written by an earlier process).
    fn sync(&self, id: u64) -> io::Result<()>;
}

/// An open segment being appended to.
pub trait SegmentFile: Send {
    /// Appends `bytes`. On error an unknown prefix of them may have been written.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
}

// === impl DirFs ===

/// Segments as files `<id>.wal` in one directory.
#[derive(Debug, Clone)]
pub struct DirFs {
    dir: PathBuf,
}

impl DirFs {
    /// Uses `dir`, creating it if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<DirFs> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirFs { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.wal"))
    }

    /// Makes directory entry changes (a new or deleted segment) durable.
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl Fs for DirFs {
    fn list(&self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else { continue };
            if let Ok(id) = stem.parse() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn len(&self, id: u64) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(id))?.len())
    }

    fn read_at(&self, id: u64, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(self.path(id))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn create(&self, id: u64) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().create(true).append(true).open(self.path(id))?;
        self.sync_dir()?;
        Ok(Box::new(DirSegment { file }))
    }

    fn truncate(&self, id: u64, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(id))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync(&self, id: u64) -> io::Result<()> {
        File::open(self.path(id))?.sync_data()
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.sync_dir()
    }
}

struct DirSegment {
    file: File,
}

impl SegmentFile for DirSegment {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

// === impl MemFs ===

/// A simulated disk for tests. Each file keeps its synced bytes apart from the bytes
/// appended since, so that [`MemFs::crash`] can lose (a torn part of) the latter.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    disk: Arc<Mutex<MemDisk>>,
}

#[derive(Debug, Default)]
struct MemDisk {
    files: BTreeMap<u64, MemFile>,
    /// The next append fails after writing this many of its bytes.
    fail_next_append: Option<usize>,
}

#[derive(Debug, Default, Clone)]
struct MemFile {
    synced: Vec<u8>,
    unsynced: Vec<u8>,
}

impl MemFile {
    fn contents(&self) -> Vec<u8> {
        let mut all = self.synced.clone();
        all.extend_from_slice(&self.unsynced);
        all
    }
}

/// How a simulated crash treats each file's unsynced bytes.
#[derive(Debug, Clone, Copy)]
pub struct Crash {
    /// The fraction (0..=1) of each file's unsynced bytes that reached the disk.
    pub kept: f64,
    /// Whether the last kept unsynced byte is garbage (a torn sector).
    pub garble: bool,
}

impl MemFs {
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn disk(&self) -> MutexGuard<'_, MemDisk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process dies: every file keeps its synced bytes and a prefix of the rest.
    /// Open [`SegmentFile`]s must not be used afterwards (the log is reopened).
    pub fn crash(&self, crash: Crash) {
        let mut disk = self.disk();
        disk.fail_next_append = None;
        for file in disk.files.values_mut() {
            let keep = ((file.unsynced.len() as f64) * crash.kept.clamp(0.0, 1.0)) as usize;
            file.unsynced.truncate(keep);
            if crash.garble
                && let Some(last) = file.unsynced.last_mut()
            {
                *last ^= 0x5a;
            }
            let unsynced = std::mem::take(&mut file.unsynced);
            file.synced.extend_from_slice(&unsynced);
        }
    }

    /// The next append writes `written` bytes (at most all of them) and then fails.
    pub fn fail_next_append(&self, written: usize) {
        self.disk().fail_next_append = Some(written);
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.disk().files.values().map(|f| (f.synced.len() + f.unsynced.len()) as u64).sum()
    }
}

impl Fs for MemFs {
    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.disk().files.keys().copied().collect())
    }

    fn len(&self, id: u64) -> io::Result<u64> {
        let disk = self.disk();
        let file = disk.files.get(&id).ok_or_else(not_found)?;
        Ok((file.synced.len() + file.unsynced.len()) as u64)
    }

    fn read_at(&self, id: u64, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let disk = self.disk();
        let all = disk.files.get(&id).ok_or_else(not_found)?.contents();
        let start = (offset as usize).min(all.len());
        let end = start.saturating_add(max).min(all.len());
        Ok(all[start..end].to_vec())
    }

    fn create(&self, id: u64) -> io::Result<Box<dyn SegmentFile>> {
        self.disk().files.entry(id).or_default();
        Ok(Box::new(MemSegment { disk: self.disk.clone(), id }))
    }

    fn truncate(&self, id: u64, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let file = disk.files.get_mut(&id).ok_or_else(not_found)?;
        let mut all = file.contents();
        all.truncate(len as usize);
        *file = MemFile { synced: all, unsynced: Vec::new() };
        Ok(())
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        self.disk().files.remove(&id);
        Ok(())
    }

    fn sync(&self, id: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let file = disk.files.get_mut(&id).ok_or_else(not_found)?;
        let unsynced = std::mem::take(&mut file.unsynced);
        file.synced.extend_from_slice(&unsynced);
        Ok(())
    }
}

struct MemSegment {
    disk: Arc<Mutex<MemDisk>>,
    id: u64,
}

impl SegmentFile for MemSegment {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let fail = disk.fail_next_append.take();
        let file = disk.files.get_mut(&self.id).ok_or_else(not_found)?;
        match fail {
            Some(written) => {
                file.unsynced.extend_from_slice(&bytes[..written.min(bytes.len())]);
                Err(io::Error::new(io::ErrorKind::StorageFull, "simulated write failure"))
            }
            None => {
                file.unsynced.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let file = disk.files.get_mut(&self.id).ok_or_else(not_found)?;
        let unsynced = std::mem::take(&mut file.unsynced);
        file.synced.extend_from_slice(&unsynced);
        Ok(())
    }
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such segment")
}
