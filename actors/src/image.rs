//! Images shared by SHA-256: however many SPs receive an image, the daemon
//! holds one copy, freed when the last update using it is gone.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// SHA-256 of an image.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageHash(pub [u8; 32]);

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageHash({self})")
    }
}

/// An image in memory.
pub struct Image {
    /// SHA-256 of `data`.
    pub hash: ImageHash,
    /// The bytes.
    pub data: Arc<[u8]>,
    /// Host-flash slot hash for this image at some capacity, computed once.
    slot_hash: OnceLock<(u32, [u8; 32])>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("hash", &self.hash)
            .field("len", &self.data.len())
            .finish()
    }
}

impl Image {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
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
        h.update(self.data.get(SECTOR..).unwrap_or(&[]));
        let written = SECTOR.max(self.data.len());
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
}

impl ImageStore {
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
            data: data.into(),
            slot_hash: OnceLock::new(),
        });
        images.insert(hash, Arc::downgrade(&image));
        image
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
