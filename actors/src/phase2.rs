//! Host phase-2 recovery images: the cache the SP actors answer a
//! recovering host's `HostPhase2Data` requests from, and what each SP last
//! asked for.
//!
//! Images are kept by SHA-256 of the whole uploaded file (the id the
//! upload answers). The cache holds at most `max_images` images and
//! `max_bytes` bytes; an upload that does not fit evicts the least
//! recently requested (an upload counts as a request), never the one just
//! uploaded. The images themselves are [`Image`]s: an upload stays in its
//! file, read a chunk at a time.

use crate::image::Image;
use crate::types::ImageHash;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Cache bounds (`[recovery]` in the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Phase2Settings {
    /// Images held at most.
    pub max_images: usize,
    /// Bytes held at most, all images together (MiB); also the largest
    /// image.
    pub max_mib: u64,
}

impl Default for Phase2Settings {
    fn default() -> Self {
        Self {
            max_images: 4,
            max_mib: 1024,
        }
    }
}

impl Phase2Settings {
    pub fn max_bytes(&self) -> u64 {
        self.max_mib.saturating_mul(1024 * 1024)
    }
}

struct Entry {
    image: Arc<Image>,
    /// Bumped at every request: the smallest is evicted first.
    used: u64,
}

/// The cache. Cheap to share (`Arc`); every SP actor reads it.
#[derive(Default)]
pub struct Phase2Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    settings: Phase2Settings,
    entries: Vec<Entry>,
    clock: u64,
}

/// Why an image was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Phase2Error {
    #[error(
        "the phase-2 image is {len} bytes; the cache holds at most {max} bytes (recovery.max_mib)"
    )]
    TooLarge { len: u64, max: u64 },
    #[error("the phase-2 image is empty")]
    Empty,
}

/// What a cached image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedImage {
    pub hash: ImageHash,
    pub len: u64,
}

/// The answer to a `HostPhase2Data` request.
#[derive(Debug)]
pub enum Lookup {
    /// The bytes from the offset (up to what one datagram carries) and the
    /// image's size.
    Data {
        image: Arc<Image>,
        len: u64,
    },
    Unavailable,
    /// Past the end of an image of this size.
    BadOffset {
        len: u64,
    },
}

impl Phase2Cache {
    pub fn new(settings: Phase2Settings) -> Self {
        Self {
            inner: Mutex::new(Inner {
                settings,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("phase-2 cache lock")
    }

    /// New bounds (a config reload); applied at the next insert.
    pub fn set_settings(&self, settings: Phase2Settings) {
        self.lock().settings = settings;
    }

    pub fn settings(&self) -> Phase2Settings {
        self.lock().settings.clone()
    }

    /// Largest image taken.
    pub fn max_bytes(&self) -> u64 {
        self.lock().settings.max_bytes()
    }

    /// Keep `image`, evicting the least recently requested as needed;
    /// the hashes evicted.
    pub fn insert(&self, image: Arc<Image>) -> Result<Vec<ImageHash>, Phase2Error> {
        let mut inner = self.lock();
        let len = image.len() as u64;
        let max = inner.settings.max_bytes();
        if len == 0 {
            return Err(Phase2Error::Empty);
        }
        if len > max {
            return Err(Phase2Error::TooLarge { len, max });
        }
        inner.clock += 1;
        let used = inner.clock;
        if let Some(e) = inner
            .entries
            .iter_mut()
            .find(|e| e.image.hash == image.hash)
        {
            e.used = used;
            return Ok(Vec::new());
        }
        let mut evicted = Vec::new();
        let max_images = inner.settings.max_images.max(1);
        loop {
            let held: u64 = inner.entries.iter().map(|e| e.image.len() as u64).sum();
            if inner.entries.len() < max_images && held + len <= max {
                break;
            }
            let oldest = inner
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
                .expect("a full cache has entries");
            evicted.push(inner.entries.remove(oldest).image.hash);
        }
        inner.entries.push(Entry { image, used });
        metrics::gauge!("mgsd_recovery_images").set(inner.entries.len() as f64);
        Ok(evicted)
    }

    /// The image for a request of `hash` at `offset` (counted as its use).
    pub fn lookup(&self, hash: &[u8; 32], offset: u64) -> Lookup {
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        let Some(e) = inner.entries.iter_mut().find(|e| e.image.hash.0 == *hash) else {
            return Lookup::Unavailable;
        };
        e.used = used;
        let len = e.image.len() as u64;
        if offset >= len {
            return Lookup::BadOffset { len };
        }
        Lookup::Data {
            image: e.image.clone(),
            len,
        }
    }

    /// The images held, most recently requested first.
    pub fn list(&self) -> Vec<CachedImage> {
        let inner = self.lock();
        let mut all: Vec<(u64, CachedImage)> = inner
            .entries
            .iter()
            .map(|e| {
                (
                    e.used,
                    CachedImage {
                        hash: e.image.hash,
                        len: e.image.len() as u64,
                    },
                )
            })
            .collect();
        all.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        all.into_iter().map(|(_, c)| c).collect()
    }
}

/// The most recent `HostPhase2Data` request an SP sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase2Seen {
    pub hash: [u8; 32],
    pub offset: u64,
    /// The image's size, if we hold it.
    pub total: Option<u64>,
    pub at: Instant,
}

impl Phase2Seen {
    pub fn age(&self) -> Duration {
        self.at.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(byte: u8, len: usize) -> Arc<Image> {
        crate::image::ImageStore::default().insert(vec![byte; len])
    }

    #[test]
    fn evicts_the_least_recently_requested() {
        let cache = Phase2Cache::new(Phase2Settings {
            max_images: 2,
            max_mib: 1,
        });
        let (a, b, c) = (image(1, 100), image(2, 100), image(3, 100));
        cache.insert(a.clone()).unwrap();
        cache.insert(b.clone()).unwrap();
        // A request makes `a` the most recent: `b` goes.
        assert!(matches!(cache.lookup(&a.hash.0, 0), Lookup::Data { .. }));
        assert_eq!(cache.insert(c.clone()).unwrap(), vec![b.hash]);
        assert!(matches!(cache.lookup(&b.hash.0, 0), Lookup::Unavailable));
        assert!(matches!(
            cache.lookup(&c.hash.0, 100),
            Lookup::BadOffset { len: 100 }
        ));
        assert_eq!(cache.list().len(), 2);
    }

    #[test]
    fn byte_bound_holds_and_too_large_is_refused() {
        let cache = Phase2Cache::new(Phase2Settings {
            max_images: 10,
            max_mib: 1,
        });
        let big = 700 * 1024;
        let a = image(1, big);
        cache.insert(a.clone()).unwrap();
        let b = image(2, big);
        assert_eq!(cache.insert(b).unwrap(), vec![a.hash]);
        let huge = image(3, 2 * 1024 * 1024);
        assert!(matches!(
            cache.insert(huge),
            Err(Phase2Error::TooLarge { .. })
        ));
        assert_eq!(cache.list().len(), 1);
    }
}
