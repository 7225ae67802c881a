//! The image spool: `images/<sha256>` in the state directory, each image
//! written whole under a temporary name (`O_EXCL | O_NOFOLLOW`, 0600),
//! synced, renamed into place, and verified whenever it is read or found
//! there already. A file that is not a plain file of the expected size,
//! owned by the daemon, holding the image its name says, is moved aside
//! and named; it is never read past the size the image has.

use super::{aside, check_owned, create_new, StoreError};
use crate::image::{Image, ImageHash, ImageStore};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// No spooled image is larger (the largest host-flash slot is 32 MiB).
const MAX_IMAGE: u64 = 256 * 1024 * 1024;

/// The image spool. See the module docs.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Held while an image is written or the spool pruned: many clients
    /// starting updates of one new image write it once, and pruning never
    /// takes a file being written.
    busy: Arc<std::sync::Mutex<()>>,
}

/// Whether `name` is a temporary file of a write that did not finish.
fn is_leftover(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

impl Spool {
    /// The spool in state directory `dir` (created 0700 if missing; one
    /// another user could write is refused). Leftovers of writes that did
    /// not finish are removed.
    pub fn open(dir: &Path) -> Result<Spool, StoreError> {
        let dir = dir.join("images");
        super::own_dir(&dir)?;
        let spool = Spool {
            dir,
            busy: Arc::default(),
        };
        for entry in std::fs::read_dir(&spool.dir).map_err(StoreError::io(&spool.dir))? {
            let path = entry.map_err(StoreError::io(&spool.dir))?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_leftover)
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(spool)
    }

    /// Where the image with `hash` lives.
    pub fn path(&self, hash: &ImageHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    /// Keep `image`: a file already there is compared with it (a damaged
    /// one is moved aside and written again).
    pub fn put(&self, image: &Image) -> Result<(), StoreError> {
        let _alone = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(&image.hash);
        if std::fs::symlink_metadata(&path).is_ok() {
            match self.same_as(image) {
                Ok(()) => return Ok(()),
                // Moved aside as it was checked: write it anew.
                Err(_) if std::fs::symlink_metadata(&path).is_err() => {}
                Err(e) => return Err(e),
            }
        }
        let tmp = self
            .dir
            .join(format!(".{}.tmp-{}", image.hash, std::process::id()));
        let written = (|| {
            let mut file = create_new(&tmp)?;
            let mut wrote = Ok(());
            image
                .pieces(0, |piece| {
                    if wrote.is_ok() {
                        wrote = file.write_all(piece);
                    }
                })
                .and(wrote)
                .map_err(StoreError::io(&tmp))?;
            file.sync_all().map_err(StoreError::io(&tmp))?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io(&self.dir))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Read the image with `hash`, of `len` bytes, into `images` (or find
    /// it there), verifying it. A file that is not what it should be is
    /// moved aside.
    pub fn get(
        &self,
        hash: &ImageHash,
        len: u64,
        images: &ImageStore,
    ) -> Result<Arc<Image>, StoreError> {
        if let Some(held) = images.get(hash) {
            return Ok(held);
        }
        Ok(images.insert(self.read(hash, len)?))
    }

    /// The verified bytes of the image with `hash` and `len`.
    fn read(&self, hash: &ImageHash, len: u64) -> Result<Vec<u8>, StoreError> {
        let (file, path) = self.open_checked(hash, len)?;
        let mut data = Vec::with_capacity(len as usize);
        file.take(len)
            .read_to_end(&mut data)
            .map_err(StoreError::io(&path))?;
        let found = ImageHash(Sha256::digest(&data).into());
        if found != *hash || data.len() as u64 != len {
            return Err(StoreError::SpoolMismatch {
                moved: aside(&path),
                path,
                found,
            });
        }
        Ok(data)
    }

    /// Check that the spooled copy of `image` holds its bytes. Compared a
    /// piece at a time with the bytes in memory (already hashed): no second
    /// copy of the image, no second hash on every start.
    fn same_as(&self, image: &Image) -> Result<(), StoreError> {
        let len = image.len() as u64;
        let (file, path) = self.open_checked(&image.hash, len)?;
        let mut file = file.take(len);
        let mut piece = vec![0u8; 64 * 1024];
        let mut ours = Vec::new();
        let mut at = 0;
        loop {
            let n = file.read(&mut piece).map_err(StoreError::io(&path))?;
            if n == 0 {
                break;
            }
            let same = (at + n <= image.len())
                && image
                    .slice(at..at + n, &mut ours)
                    .map_err(StoreError::io(&path))?
                    == &piece[..n];
            if !same {
                return Err(StoreError::SpoolBad {
                    moved: aside(&path),
                    path,
                    why: format!("differs from the image from byte {at} on"),
                });
            }
            at += n;
        }
        if at != image.len() {
            return Err(StoreError::SpoolBad {
                moved: aside(&path),
                path,
                why: format!("ends after {at} bytes; the image has {len}"),
            });
        }
        Ok(())
    }

    /// The spooled file for `hash`, opened without blocking or following
    /// a link, and checked to be a plain file of ours of `len` bytes.
    fn open_checked(
        &self,
        hash: &ImageHash,
        len: u64,
    ) -> Result<(std::fs::File, PathBuf), StoreError> {
        let path = self.path(hash);
        let bad = |why: String| StoreError::SpoolBad {
            moved: aside(&path),
            path: path.clone(),
            why,
        };
        // Never blocks (a FIFO put in its place), never follows a link.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::SpoolMissing { path })
            }
            Err(e) => return Err(bad(format!("cannot be opened as a plain file: {e}"))),
        };
        let meta = file.metadata().map_err(StoreError::io(&path))?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        if let Err(e) = check_owned(&path, &meta, false) {
            return Err(bad(e.to_string()));
        }
        if meta.len() != len || len > MAX_IMAGE {
            return Err(bad(format!("is {} bytes; the image has {len}", meta.len())));
        }
        Ok((file, path))
    }

    /// Remove every spooled image but those in `keep` (and leave files
    /// moved aside alone); the paths removed.
    pub fn retain(&self, keep: &HashSet<ImageHash>) -> Result<Vec<PathBuf>, StoreError> {
        let _alone = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let io = StoreError::io(&self.dir);
        let entries = std::fs::read_dir(&self.dir).map_err(io)?;
        let mut removed = Vec::new();
        for entry in entries {
            let path = entry.map_err(StoreError::io(&self.dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kept = keep.iter().any(|h| h.to_string() == name);
            // Only whole images and our own leftovers.
            let ours = (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                || is_leftover(name);
            if ours && !kept {
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }
}
