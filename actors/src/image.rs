//! Images shared by SHA-256: however many SPs receive an image, the daemon
//! holds one copy, freed when the last update using it is gone. Loading a
//! file hashes it as it streams first, so a client naming an image that is
//! already held costs no second copy, and concurrent loads of a new image
//! read it once.

use crate::error::ImageError;
pub use crate::types::ImageHash;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Read `len` bytes of `file` from its start, a buffer at a time, each to
/// `take`.
fn read_exactly(
    file: &std::fs::File,
    len: u64,
    buf: &mut [u8],
    mut take: impl FnMut(&[u8]),
) -> Result<(), LoadError> {
    let mut at = 0u64;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        let n = match read_at(file, &mut buf[..want], at) {
            Ok(0) => {
                return Err(ImageError::Short { len, got: at }.into());
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(ImageError::WouldBlock.into())
            }
            Err(e) => return Err(LoadError::read(e)),
        };
        take(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// `pread`, retried when interrupted.
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An image, in memory or in a file only the daemon writes.
pub struct Image {
    /// SHA-256 of its bytes.
    pub hash: ImageHash,
    bytes: Bytes,
    /// Host-flash slot hash for this image at some capacity, computed once.
    slot_hash: OnceLock<(u32, [u8; 32])>,
}

/// Where an image's bytes are.
enum Bytes {
    /// Shared as a whole (`Arc<Image>`): the loaded `Vec` taken as it is.
    Mem(Vec<u8>),
    /// An unlinked file of the daemon's own (an HTTP upload), read a
    /// chunk at a time as it is delivered: no copy in memory.
    File { file: std::fs::File, len: usize },
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("hash", &self.hash)
            .field("len", &self.len())
            .finish()
    }
}

/// Bytes read from an image's file at a time.
const PIECE: usize = 64 * 1024;

impl Image {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.bytes {
            Bytes::Mem(d) => d.len(),
            Bytes::File { len, .. } => *len,
        }
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All the bytes, if the image is held in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.bytes {
            Bytes::Mem(d) => Some(d),
            Bytes::File { .. } => None,
        }
    }

    /// Bytes `range`: borrowed from memory, or read from the file into
    /// `buf`.
    pub fn slice<'a>(
        &'a self,
        range: std::ops::Range<usize>,
        buf: &'a mut Vec<u8>,
    ) -> std::io::Result<&'a [u8]> {
        match &self.bytes {
            Bytes::Mem(d) => d.get(range).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the image's end")
            }),
            Bytes::File { file, len } => {
                if range.end > *len || range.start > range.end {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.resize(range.len(), 0);
                use std::os::unix::fs::FileExt;
                file.read_exact_at(buf, range.start as u64)?;
                Ok(buf)
            }
        }
    }

    /// Feed the bytes from `from` on to `take`, a piece at a time.
    pub fn pieces(&self, from: usize, mut take: impl FnMut(&[u8])) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut at = from;
        while at < self.len() {
            let end = (at + PIECE).min(self.len());
            take(self.slice(at..end, &mut buf)?);
            at = end;
        }
        Ok(())
    }

    /// What an SP's host-flash hash of a `capacity`-byte device holding this
    /// image must be: SHA-256 of the whole device, the first 64 KiB sector
    /// read as 0xFF and everything after the image erased (0xFF).
    /// Expensive (hashes the whole device): call it off the actor threads.
    pub fn host_flash_slot_hash(&self, capacity: u32) -> [u8; 32] {
        if let Some((cap, hash)) = self.slot_hash.get() {
            if *cap == capacity {
                return *hash;
            }
        }
        const SECTOR: usize = 64 * 1024;
        let mut h = Sha256::new();
        let ff = [0xFFu8; 4096];
        let feed_ff = |h: &mut Sha256, mut n: usize| {
            while n > 0 {
                let k = n.min(ff.len());
                h.update(&ff[..k]);
                n -= k;
            }
        };
        feed_ff(&mut h, SECTOR);
        // A file that cannot be read gives a hash no SP reports: the
        // verification then fails, naming both hashes.
        let _ = self.pieces(SECTOR, |piece| h.update(piece));
        let written = SECTOR.max(self.len());
        feed_ff(&mut h, (capacity as usize).saturating_sub(written));
        let hash: [u8; 32] = h.finalize().into();
        let _ = self.slot_hash.set((capacity, hash));
        hash
    }
}

/// Images by hash; entries die with their last user.
#[derive(Debug, Default, Clone)]
pub struct ImageStore {
    images: Arc<Mutex<HashMap<ImageHash, Weak<Image>>>>,
    /// Held while a file is read in: one new image in memory at a time.
    loading: Arc<Mutex<()>>,
    /// Loads under way, by file identity, for overlapping loads to share.
    loads: Arc<Mutex<HashMap<FileKey, SharedLoad>>>,
}

/// Device, inode, size and modification time (s, ns) of a file.
type FileKey = (u64, u64, u64, i64, i64);

/// One load's outcome, for every caller that asked meanwhile.
type SharedLoad = Arc<OnceLock<Result<Arc<Image>, LoadError>>>;

/// Why an image file could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// Not an image that can be sent (checked before it is read).
    #[error(transparent)]
    Bad(#[from] ImageError),
    /// Larger than the component takes; `max` is filled in by the caller
    /// that knows the component.
    #[error("the image is {len} bytes; at most {max} fit")]
    TooLarge { len: u64, max: u64 },
    /// Reading the descriptor failed (e.g. not opened for reading).
    #[error("cannot read the image: {0}")]
    Read(#[source] Arc<std::io::Error>),
}

impl LoadError {
    fn read(e: std::io::Error) -> Self {
        LoadError::Read(Arc::new(e))
    }
}

impl ImageStore {
    /// The image with `hash`, if held.
    pub fn get(&self, hash: &ImageHash) -> Option<Arc<Image>> {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images.get(hash).and_then(Weak::upgrade)
    }

    /// Load the image in the open `file` (a descriptor a client passed):
    /// a regular file of at most `max_len` bytes, else refused saying why
    /// before anything is read. Reads at offsets, so the sender's file
    /// position does not matter. Blocking: call it off the actor threads.
    /// Loads of the same file (device, inode, size, modification time)
    /// that overlap share one reading.
    pub fn load(&self, file: &std::fs::File, max_len: u64) -> Result<Arc<Image>, LoadError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = file.metadata().map_err(LoadError::read)?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(ImageError::NotRegularFile(what).into());
        }
        if meta.len() > max_len {
            return Err(LoadError::TooLarge {
                len: meta.len(),
                max: max_len,
            });
        }
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let shared = {
            let mut loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
            loads.entry(key).or_default().clone()
        };
        let loaded = shared
            .get_or_init(|| self.read(file, meta.len(), max_len))
            .clone();
        let mut loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        if loads.get(&key).is_some_and(|l| Arc::ptr_eq(l, &shared)) {
            loads.remove(&key);
        }
        loaded
    }

    /// Hash `file` as it streams; read it into memory only if no image
    /// with that hash is held. Exactly `len` bytes, its size: a file
    /// that gives fewer, or whose reads would block (no ordinary file),
    /// is refused.
    fn read(&self, file: &std::fs::File, len: u64, max_len: u64) -> Result<Arc<Image>, LoadError> {
        // A file a client passed may be anything that stats as regular
        // (a /proc file blocks): never wait for it.
        let flags = rustix::fs::fcntl_getfl(file).map_err(|e| LoadError::read(e.into()))?;
        rustix::fs::fcntl_setfl(file, flags | rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| LoadError::read(e.into()))?;
        let len = len.min(max_len);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        read_exactly(file, len, &mut buf, |chunk| h.update(chunk))?;
        let hash = ImageHash(h.finalize().into());
        if let Some(held) = self.get(&hash) {
            return Ok(held);
        }
        let _one_at_a_time = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        // Another load of the same image may have finished meanwhile.
        if let Some(held) = self.get(&hash) {
            return Ok(held);
        }
        let mut data = Vec::with_capacity(len as usize);
        read_exactly(file, len, &mut buf, |chunk| data.extend_from_slice(chunk))?;
        // Hashed again as read: if the file changed since the first pass,
        // what was read is what counts.
        Ok(self.insert(data))
    }

    /// Hash `data` and return the shared copy (an existing one if present).
    pub fn insert(&self, data: Vec<u8>) -> Arc<Image> {
        let hash = ImageHash(Sha256::digest(&data).into());
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = images.get(&hash).and_then(Weak::upgrade) {
            return existing;
        }
        let image = Arc::new(Image {
            hash,
            bytes: Bytes::Mem(data),
            slot_hash: OnceLock::new(),
        });
        images.insert(hash, Arc::downgrade(&image));
        image
    }

    /// The image in `file`, a file of the daemon's own that no one else
    /// writes (an HTTP upload, unlinked): hashed as it streams, then read
    /// from as it is delivered rather than into memory. At most `max_len`
    /// bytes. Blocking: call it off the actor threads.
    pub fn keep_file(&self, file: std::fs::File, max_len: u64) -> Result<Arc<Image>, LoadError> {
        let len = file.metadata().map_err(LoadError::read)?.len();
        if len > max_len {
            return Err(LoadError::TooLarge { len, max: max_len });
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; PIECE];
        read_exactly(&file, len, &mut buf, |chunk| h.update(chunk))?;
        let hash = ImageHash(h.finalize().into());
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = images.get(&hash).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let image = Arc::new(Image {
            hash,
            bytes: Bytes::File {
                file,
                len: len as usize,
            },
            slot_hash: OnceLock::new(),
        });
        images.insert(hash, Arc::downgrade(&image));
        Ok(image)
    }

    /// The hashes of the images held now.
    pub fn held(&self) -> Vec<ImageHash> {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(h, _)| *h)
            .collect()
    }

    /// Images currently held.
    pub fn len(&self) -> usize {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Whether no image is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_copy_per_image_freed_with_its_last_user() {
        let store = ImageStore::default();
        let a = store.insert(vec![1, 2, 3]);
        let b = store.insert(vec![1, 2, 3]);
        assert!(Arc::ptr_eq(&a, &b));
        let c = store.insert(vec![4]);
        assert_eq!(store.len(), 2);
        drop((a, b));
        assert_eq!(store.len(), 1);
        drop(c);
        assert!(store.is_empty());
    }

    #[test]
    fn files_load_once_and_only_regular_small_enough_ones() {
        let store = ImageStore::default();
        let dir = std::env::temp_dir().join(format!("mgsd-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.img");
        std::fs::write(&path, [5u8; 1000]).unwrap();
        let open = |p: &std::path::Path| std::fs::File::open(p).unwrap();
        let a = store.load(&open(&path), 1000).unwrap();
        let b = store.load(&open(&path), 1000).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.hash, store.insert(vec![5; 1000]).hash);
        let e = store.load(&open(&path), 999).unwrap_err();
        assert!(e.to_string().contains("at most 999"), "{e}");
        assert!(matches!(
            e,
            LoadError::TooLarge {
                len: 1000,
                max: 999
            }
        ));
        let e = store.load(&open(&dir), 1000).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = store
            .load(&open(Path::new("/dev/zero")), u64::MAX)
            .unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        // A FIFO: refused at once, not read.
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let e = store.load(&rw, 1000).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        // Descriptor's position does not matter.
        let mut moved = open(&path);
        std::io::Seek::seek(&mut moved, std::io::SeekFrom::Start(500)).unwrap();
        assert!(Arc::ptr_eq(&store.load(&moved, 1000).unwrap(), &a));
        // Many clients naming one new image at once: one copy.
        let big = dir.join("b.img");
        std::fs::write(&big, vec![9u8; 4 << 20]).unwrap();
        let loaded: Vec<_> = std::thread::scope(|s| {
            let loads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| store.load(&open(&big), 8 << 20).unwrap()))
                .collect();
            loads.into_iter().map(|l| l.join().unwrap()).collect()
        });
        assert!(loaded.iter().all(|l| Arc::ptr_eq(l, &loaded[0])));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slot_hash_pads_with_erased_flash() {
        let store = ImageStore::default();
        let mut data = vec![0xFF; 64 * 1024];
        data.extend_from_slice(b"hello");
        let img = store.insert(data.clone());
        let mut whole = vec![0xFF; 1024 * 1024];
        whole[64 * 1024..64 * 1024 + 5].copy_from_slice(b"hello");
        let want: [u8; 32] = Sha256::digest(&whole).into();
        assert_eq!(img.host_flash_slot_hash(1024 * 1024), want);
        assert_eq!(img.host_flash_slot_hash(1024 * 1024), want, "cached");
    }
}
