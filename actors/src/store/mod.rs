//! The state directory, as plain blocking code: a SQLite database of
//! update records, rollouts and the audit ([`db`], `mgsd.db`) and a
//! content-addressed image spool ([`spool`], `images/<sha256>`). The
//! journal actor owns the database on its own thread; the spool is only
//! files, written where images are loaded and read back where updates
//! resume.
//!
//! The directory is the daemon's alone. It is created 0700 and its files
//! 0600 whatever the umask; one that exists must be owned by the daemon's
//! user and writable by no one else, or nothing in it is used
//! ([`StoreError::Unsafe`]). Files are created with `O_EXCL |
//! O_NOFOLLOW`, so a name another user planted is never written through.
//!
//! Nothing here deletes what it could not read: a database or spool file
//! that is corrupt is renamed aside (`….corrupt-<unix seconds>`) and the
//! problem reported with its path.

pub mod db;
pub mod spool;
#[cfg(test)]
mod tests;

pub use db::{AuditEntry, Store, AUDIT_KEEP, REFUSALS_KEEP};
pub use spool::Spool;

use crate::image::ImageHash;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What went wrong with the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database refused.
    #[error("{path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A directory (or file) another user could change: nothing in it is
    /// trusted.
    #[error("{path}: {why}; mgsd keeps its state only where no other user can change it (fix the owner or mode, or choose another [state] dir)")]
    Unsafe { path: PathBuf, why: String },
    /// A spool file is not the image its name promises.
    #[error("{path}: holds an image with SHA-256 {found}, not the one its name says (moved aside to {moved})")]
    SpoolMismatch {
        path: PathBuf,
        found: ImageHash,
        moved: String,
    },
    /// A spool file that is no plain file of the image's size and ours.
    #[error("{path}: {why} (moved aside to {moved})")]
    SpoolBad {
        path: PathBuf,
        why: String,
        moved: String,
    },
    /// An image the journal needs is not in the spool.
    #[error("{path}: missing")]
    SpoolMissing { path: PathBuf },
}

impl StoreError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Rename `path` aside (with `-wal`/`-shm` companions for a database);
/// the new name, or why it failed.
fn move_aside(path: &Path) -> Result<PathBuf, std::io::Error> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", unix_secs()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for companion in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(companion);
        let mut to = aside.as_os_str().to_owned();
        to.push(companion);
        let _ = std::fs::rename(from, to);
    }
    Ok(aside)
}

/// Where `path` went when moved aside, in words.
fn aside(path: &Path) -> String {
    match move_aside(path) {
        Ok(aside) => aside.display().to_string(),
        Err(e) => format!("nowhere: {e}"),
    }
}

/// Make `dir` the daemon's own: created 0700 if missing (parents too,
/// as the system makes them); if it exists, a directory owned by the
/// daemon's user that no one else may write, then tightened to 0700.
pub fn own_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(StoreError::io(dir))?;
        }
        Err(e) => return Err(StoreError::io(dir)(e)),
        Ok(meta) => check_owned(dir, &meta, true)?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(StoreError::io(dir))
}

/// Refuse `path` unless it is ours, not a symlink, of the expected kind,
/// and writable by no one else.
fn check_owned(path: &Path, meta: &std::fs::Metadata, dir: bool) -> Result<(), StoreError> {
    let unsafe_ = |why: String| {
        Err(StoreError::Unsafe {
            path: path.into(),
            why,
        })
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return unsafe_("is a symbolic link".into());
    }
    if dir && !kind.is_dir() {
        return unsafe_("is not a directory".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return unsafe_(format!(
            "is owned by uid {}, not by mgsd's user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return unsafe_(format!(
            "has mode {:04o}: its group or other users may write to it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Create `path` new (never through a name someone planted: `O_EXCL`,
/// `O_NOFOLLOW`), mode 0600 whatever the umask.
fn create_new(path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(StoreError::io(path))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(StoreError::io(path))?;
    Ok(file)
}
