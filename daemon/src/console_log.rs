//! Console log files (`[console]`): each sled's console output appended to
//! `<log_dir>/<sp>.log`, rotated at `log_max_kib` to `<sp>.log.1` … `.N`
//! (`log_keep`). A log writer is one more reader of the SP's scrollback:
//! if the disk is slower than the console, it falls behind the ring and
//! writes a line saying how much it lost.
//!
//! The directory is the daemon's (created 0700; an existing one must be
//! ours and writable by no one else); log files are created 0600 with
//! `O_EXCL | O_NOFOLLOW`, and an existing one is appended to only through
//! `O_NOFOLLOW`.

use actors::{Gateway, SpHandle};
use serde::Deserialize;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleLogConfig {
    /// Where console logs go; empty (the default): no logs.
    pub log_dir: PathBuf,
    /// Rotate a log at this size (KiB).
    pub log_max_kib: u64,
    /// Rotated logs kept per SP.
    pub log_keep: u32,
}

impl Default for ConsoleLogConfig {
    fn default() -> Self {
        Self {
            log_dir: PathBuf::new(),
            log_max_kib: 10 * 1024,
            log_keep: 3,
        }
    }
}

/// Start a log writer for every SP with a console; they run until the SP's
/// actor stops. Nothing if `log_dir` is empty.
pub async fn start(gw: &Gateway, config: &ConsoleLogConfig) -> std::io::Result<()> {
    if config.log_dir.as_os_str().is_empty() {
        return Ok(());
    }
    actors::store::own_dir(&config.log_dir).map_err(std::io::Error::other)?;
    let sps = gw
        .registry
        .list()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for sp in sps {
        let Ok(handle) = gw.registry.sp(sp.info.name.as_str()).await else {
            continue;
        };
        if handle.console_status().is_none() {
            continue;
        }
        let path = config.log_dir.join(format!("{}.log", handle.name()));
        let writer = Writer {
            path,
            max: config.log_max_kib.max(1) * 1024,
            keep: config.log_keep,
        };
        tokio::spawn(async move {
            if let Err(e) = writer.run(handle).await {
                tracing::warn!(error = %e, "console log stopped");
            }
        });
    }
    Ok(())
}

struct Writer {
    path: PathBuf,
    max: u64,
    keep: u32,
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

impl Writer {
    /// `<sp>.log` → `.1` → … → `.keep` (the oldest goes).
    fn rotate(&self) -> std::io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        std::fs::rename(&self.path, name(1))
    }

    async fn run(self, sp: SpHandle) -> std::io::Result<()> {
        let session = sp
            .console_open(false, "console log".into())
            .await
            .map_err(std::io::Error::other)?;
        let mut ring = session.scrollback.clone();
        let mut cursor = ring.bounds().0;
        let mut file = tokio::fs::File::from_std(open(&self.path)?);
        let mut size = file.metadata().await?.len();
        while ring.wait_past(cursor).await {
            let read = ring.read(cursor, 64 * 1024);
            cursor = read.at + read.data.len() as u64;
            let mut out = read.data;
            if read.lost > 0 {
                let note = format!("\n[mgsd: {} bytes of console output lost]\n", read.lost);
                out.splice(0..0, note.into_bytes());
            }
            // Split at the size bound: no log grows past it.
            let mut rest = &out[..];
            while !rest.is_empty() {
                if size >= self.max {
                    file.flush().await?;
                    self.rotate()?;
                    file = tokio::fs::File::from_std(open(&self.path)?);
                    size = 0;
                }
                let n = rest.len().min((self.max - size) as usize);
                file.write_all(&rest[..n]).await?;
                size += n as u64;
                rest = &rest[n..];
            }
            // (A tokio file holds what it was given until flushed.)
            file.flush().await?;
        }
        file.flush().await
    }
}
