//! Host boot flash: two slots (devices) of 64 KiB sectors, their content
//! hashes, and the SP's host-flash hash cache.
//!
//! Images are not kept in memory: a slot's content is summarised by its
//! SHA-256, computed as data is written, exactly as the SP defines it (the
//! whole device, sector 0 read as `0xFF`). Optionally the written bytes go
//! to a file so pages can be read back.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use tokio::time::{Duration, Instant};

/// Bytes in a host-flash sector; sector 0 is reserved for the SP.
pub const SECTOR_SIZE: u32 = 64 * 1024;

/// The SP's knowledge of a slot's hash (spec §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCache {
    /// No hash was ever started since boot.
    Uncalculated,
    /// A write, erase or mux switch invalidated the cached hash.
    Recalculate,
    /// Hashing runs until the given time.
    InProgress(Instant),
    /// The cached hash.
    Valid([u8; 32]),
}

/// One flash device.
#[derive(Debug)]
pub struct Slot {
    /// SHA-256 of the slot's current content (sector 0 as 0xFF).
    pub content_hash: [u8; 32],
    /// What the SP has cached.
    pub cache: HashCache,
    /// Bytes of the last image written (0 before any update).
    pub written_len: u32,
    /// SHA-256 of just the bytes the last update wrote (what another SP
    /// implementation reports as the slot hash); `None` before any update.
    pub written_hash: Option<[u8; 32]>,
    store: Option<PathBuf>,
}

/// Streams an image into a slot, hashing as it goes.
#[derive(Debug)]
pub struct SlotWriter {
    hasher: Sha256,
    written: u32,
    capacity: u32,
    file: Option<File>,
}

impl SlotWriter {
    /// Append the next bytes of the image.
    pub fn write(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.written += data.len() as u32;
        if let Some(f) = self.file.as_mut() {
            // The store is a debugging aid: a failed write only loses it.
            if f.write_all(data).is_err() {
                self.file = None;
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u32 {
        self.written
    }

    /// The slot hash (what was written, then erased (0xFF) to capacity),
    /// the bytes written and their own hash.
    pub fn finish(mut self) -> ([u8; 32], u32, [u8; 32]) {
        // The slot's hash goes on over the erased rest: the state so far is
        // the hash of the written bytes alone, without hashing them twice.
        let written: [u8; 32] = self.hasher.clone().finalize().into();
        let ff = [0xFFu8; 4096];
        let mut left = self.capacity.saturating_sub(self.written) as usize;
        while left > 0 {
            let n = left.min(ff.len());
            self.hasher.update(&ff[..n]);
            left -= n;
        }
        (self.hasher.finalize().into(), self.written, written)
    }
}

/// Both host-flash devices and the SP's view of them.
#[derive(Debug)]
pub struct HostFlash {
    /// Bytes per device (a multiple of [`SECTOR_SIZE`]).
    pub capacity: u32,
    /// The two devices.
    pub slots: [Slot; 2],
    /// Currently selected device.
    pub active: u16,
    /// Device saved in persistent data.
    pub persistent: u16,
    /// Whether the SP (rather than the host) drives the flash mux.
    pub muxed_to_sp: bool,
    /// Time one hash takes.
    pub hash_time: Duration,
    store_dir: Option<PathBuf>,
}

impl HostFlash {
    /// A flash whose slots hold an initial image identified by `seed`.
    pub fn new(capacity: u32, seed: &str, store_dir: Option<PathBuf>) -> Self {
        let slot = |n: u16| {
            let store = store_dir
                .as_ref()
                .map(|d| d.join(format!("{seed}-host-flash-{n}.bin")));
            Slot {
                content_hash: Sha256::digest(format!("{seed} factory host image {n}")).into(),
                cache: HashCache::Uncalculated,
                written_len: 0,
                written_hash: None,
                store,
            }
        };
        Self {
            capacity,
            slots: [slot(0), slot(1)],
            active: 0,
            persistent: 0,
            muxed_to_sp: true,
            hash_time: Duration::from_millis(50),
            store_dir,
        }
    }

    /// Sectors per device.
    pub fn sectors(&self) -> u32 {
        self.capacity / SECTOR_SIZE
    }

    /// The device was erased or written: its cached hash is stale.
    pub fn invalidate(&mut self, slot: u16) {
        let cache = &mut self.slots[usize::from(slot)].cache;
        if *cache != HashCache::Uncalculated {
            *cache = HashCache::Recalculate;
        }
    }

    /// Start writing a freshly erased slot.
    pub fn writer(&mut self, slot: u16) -> SlotWriter {
        self.invalidate(slot);
        let s = &self.slots[usize::from(slot)];
        let file = match (&self.store_dir, &s.store) {
            (Some(dir), Some(path)) => std::fs::create_dir_all(dir)
                .ok()
                .and_then(|()| File::create(path).ok()),
            _ => None,
        };
        SlotWriter {
            hasher: Sha256::new(),
            written: 0,
            capacity: self.capacity,
            file,
        }
    }

    /// Record what a finished (or abandoned) writer left in the slot.
    pub fn commit(&mut self, slot: u16, writer: SlotWriter) {
        let (hash, len, written) = writer.finish();
        let s = &mut self.slots[usize::from(slot)];
        s.content_hash = hash;
        s.written_len = len;
        s.written_hash = Some(written);
    }

    /// Settle a finished background hash.
    pub fn poll_hash(&mut self, now: Instant) {
        for s in &mut self.slots {
            if let HashCache::InProgress(until) = s.cache {
                if now >= until {
                    s.cache = HashCache::Valid(s.content_hash);
                }
            }
        }
    }

    /// Whether any hash is running.
    pub fn hashing(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s.cache, HashCache::InProgress(_)))
    }

    /// One 256-byte page of a slot; only available with a store directory
    /// (sector 0 and never-written regions read as erased).
    pub fn read_page(&self, slot: u16, addr: u32, out: &mut [u8]) -> std::io::Result<()> {
        let s = &self.slots[usize::from(slot)];
        out.fill(0xFF);
        if addr < SECTOR_SIZE || addr >= s.written_len {
            return Ok(());
        }
        let path = s.store.as_ref().ok_or(std::io::ErrorKind::NotFound)?;
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(u64::from(addr)))?;
        let want = out.len().min((s.written_len - addr) as usize);
        f.read_exact(&mut out[..want])
    }
}

/// The hash the SP reports for a slot after `image` was written to a device
/// of `capacity` bytes: SHA-256 over the whole device, sector 0 as 0xFF.
pub fn expected_slot_hash(image: &[u8], capacity: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    let sector0 = image.len().min(SECTOR_SIZE as usize);
    h.update(vec![0xFF; SECTOR_SIZE as usize]);
    h.update(&image[sector0..]);
    let written = SECTOR_SIZE as usize + image.len().saturating_sub(SECTOR_SIZE as usize);
    h.update(vec![0xFF; (capacity as usize).saturating_sub(written)]);
    h.finalize().into()
}
