//! The state directory, as plain blocking code: a SQLite database of
//! update records (`mgsd.db`) and a content-addressed image spool
//! (`images/<sha256>`). The journal actor owns the database on
//! its own thread; the spool is only files, written where images are
//! loaded and read back where updates resume.
//!
//! Nothing here deletes what it could not read: a database or spool file
//! that is corrupt is renamed aside (`….corrupt-<unix seconds>`) and the
//! problem reported with its path.

use crate::image::{Image, ImageHash, ImageStore};
use crate::record::UpdateRow;
use crate::rollout_state::RolloutRecord;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What went wrong with the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// What.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database refused.
    #[error("{path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// SQLite's word.
        source: rusqlite::Error,
    },
    /// A spool file is not the image its name promises.
    #[error("{path}: holds an image with SHA-256 {found}, not the one its name says (moved aside to {moved})")]
    SpoolMismatch {
        /// The file.
        path: PathBuf,
        /// What its content hashes to.
        found: ImageHash,
        /// Where it went.
        moved: String,
    },
    /// An image the journal needs is not in the spool.
    #[error("{path}: missing")]
    SpoolMissing {
        /// Where it should be.
        path: PathBuf,
    },
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

/// The update records. See the module docs.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Schema version in `PRAGMA user_version`.
const SCHEMA: i64 = 2;

impl Store {
    /// Open (or create) `dir/mgsd.db`. A database SQLite cannot use is
    /// moved aside and a fresh one made; the problem is returned with it.
    pub fn open(dir: &Path) -> Result<(Store, Option<String>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
        let path = dir.join("mgsd.db");
        match Self::open_at(&path) {
            Ok(store) => Ok((store, None)),
            Err(e) if path.exists() => {
                let aside = move_aside(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                let problem = format!(
                    "{e}; moved it aside to {} and started a new one",
                    aside.display()
                );
                Ok((Self::open_at(&path)?, Some(problem)))
            }
            Err(e) => Err(e),
        }
    }

    fn open_at(path: &Path) -> Result<Store, StoreError> {
        let db = |source| StoreError::Db {
            path: path.into(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        // WAL with NORMAL sync survives a crash of the process (every
        // commit is in the log); a power loss may cost the last commits,
        // which the SPs' own status then makes good.
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;",
        )
        .map_err(db)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db)?;
        if check != "ok" {
            return Err(db(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(check),
            )));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA {
            return Err(db(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!(
                    "written by a newer mgsd (schema {version}, this one knows {SCHEMA})"
                )),
            )));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS updates (
                 id TEXT PRIMARY KEY NOT NULL,
                 sp TEXT NOT NULL,
                 component TEXT NOT NULL,
                 image_sha256 TEXT NOT NULL,
                 phase TEXT NOT NULL,
                 started_unix_ms INTEGER NOT NULL,
                 finished_unix_ms INTEGER,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS updates_finished ON updates(finished_unix_ms);
             CREATE TABLE IF NOT EXISTS audit (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 time_unix_ms INTEGER NOT NULL,
                 entry TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS audit_time ON audit(time_unix_ms);
             CREATE TABLE IF NOT EXISTS rollouts (
                 id TEXT PRIMARY KEY NOT NULL,
                 created_unix_ms INTEGER NOT NULL,
                 finished_unix_ms INTEGER,
                 record TEXT NOT NULL
             );
             PRAGMA user_version = 2;",
        )
        .map_err(db)?;
        Ok(Store {
            conn,
            path: path.into(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Write (or replace) an update's row.
    pub fn put(&self, r: &UpdateRow) -> Result<(), StoreError> {
        let json = serde_json::to_string(r).expect("rows serialise");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO updates
                 (id, sp, component, image_sha256, phase, started_unix_ms, finished_unix_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.id.to_string(),
                    r.sp.as_str(),
                    r.component,
                    r.image_sha256,
                    r.phase.as_str(),
                    r.started_unix_ms as i64,
                    r.finished_unix_ms.map(|t| t as i64),
                    json
                ],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    /// Every update's row, oldest first; the rows that do not parse are
    /// left where they are and named with the reason.
    pub fn load(&self) -> Result<(Vec<UpdateRow>, Vec<String>), StoreError> {
        self.load_json(
            "SELECT id, record FROM updates ORDER BY started_unix_ms",
            "record",
        )
    }

    /// The `(id, JSON)` rows `query` selects, parsed; rows that do not
    /// parse are left where they are and named (as `what <id>`).
    fn load_json<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        what: &str,
    ) -> Result<(Vec<T>, Vec<String>), StoreError> {
        let mut stmt = self.conn.prepare(query).map_err(self.db())?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(self.db())?;
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        for row in rows {
            let (id, json) = row.map_err(self.db())?;
            match serde_json::from_str(&json) {
                Ok(r) => records.push(r),
                Err(e) => bad.push(format!(
                    "{}: {what} {id} does not parse ({e}); left in place",
                    self.path.display()
                )),
            }
        }
        Ok((records, bad))
    }

    /// Forget the rows of updates `ids`.
    pub fn remove(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        for id in ids {
            self.conn
                .execute("DELETE FROM updates WHERE id = ?1", [id.to_string()])
                .map_err(self.db())?;
        }
        Ok(())
    }
}

impl Store {
    /// Write (or replace) a rollout's record.
    pub fn put_rollout(&self, r: &RolloutRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(r).expect("records serialise");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rollouts (id, created_unix_ms, finished_unix_ms, record)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    r.id.to_string(),
                    r.created_unix_ms as i64,
                    r.finished_unix_ms.map(|t| t as i64),
                    json
                ],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    /// Every rollout, oldest first; rows that do not parse are left where
    /// they are and named.
    pub fn load_rollouts(&self) -> Result<(Vec<RolloutRecord>, Vec<String>), StoreError> {
        self.load_json(
            "SELECT id, record FROM rollouts ORDER BY created_unix_ms",
            "rollout",
        )
    }

    /// Forget rollouts that ended before `before_unix_ms`.
    pub fn prune_rollouts(&self, before_unix_ms: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM rollouts WHERE finished_unix_ms < ?1",
                [before_unix_ms.min(i64::MAX as u64) as i64],
            )
            .map(|_| ())
            .map_err(self.db())
    }
}

/// Audit entries kept at most, whatever their age.
pub const AUDIT_KEEP: i64 = 100_000;

impl Store {
    /// Append an audit entry.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).expect("entries serialise");
        self.conn
            .execute(
                "INSERT INTO audit (time_unix_ms, entry) VALUES (?1, ?2)",
                params![entry.time_unix_ms as i64, json],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    /// Audit entries at or after `since_unix_ms`, newest first, at most
    /// `limit`.
    pub fn audit_log(
        &self,
        since_unix_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT entry FROM audit WHERE time_unix_ms >= ?1 ORDER BY seq DESC LIMIT ?2")
            .map_err(self.db())?;
        let rows = stmt
            .query_map(
                params![
                    since_unix_ms.min(i64::MAX as u64) as i64,
                    limit.min(i64::MAX as usize) as i64
                ],
                |row| row.get::<_, String>(0),
            )
            .map_err(self.db())?;
        let mut entries = Vec::new();
        for row in rows {
            // An entry that does not parse is skipped, not deleted.
            if let Ok(e) = serde_json::from_str(&row.map_err(self.db())?) {
                entries.push(e);
            }
        }
        Ok(entries)
    }

    /// Forget audit entries older than `before_unix_ms`, and all but the
    /// newest [`AUDIT_KEEP`].
    pub fn prune_audit(&self, before_unix_ms: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM audit WHERE time_unix_ms < ?1
                 OR seq <= (SELECT MAX(seq) FROM audit) - ?2",
                params![before_unix_ms.min(i64::MAX as u64) as i64, AUDIT_KEEP],
            )
            .map(|_| ())
            .map_err(self.db())
    }
}

/// One operate command, or one refusal, on the control socket: who asked
/// (the peer's credentials from the kernel), what, and what came of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// When it was answered.
    pub time_unix_ms: u64,
    /// The peer's user id.
    pub uid: u32,
    /// The peer's primary group id.
    pub gid: u32,
    /// The peer's process id (at connect time).
    pub pid: Option<i32>,
    /// The command (`update_start`, …; `connect` for a refused connection).
    pub command: String,
    /// The SP as the client named it.
    pub sp: Option<String>,
    /// The component.
    pub component: Option<String>,
    /// The update's id.
    pub update_id: Option<uuid::Uuid>,
    /// The image's SHA-256 (hex), once read.
    pub image_sha256: Option<String>,
    /// `ok`, or the error code.
    pub result: String,
    /// The error message, if any.
    pub message: Option<String>,
}

/// The image spool: `dir/images/<sha256>`, each written atomically and
/// verified when read.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Held while an image is written or the spool pruned: many clients
    /// starting updates of one new image write it once, and pruning never
    /// takes a file being written.
    busy: Arc<std::sync::Mutex<()>>,
}

impl Spool {
    /// The spool in state directory `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Spool, StoreError> {
        let dir = dir.join("images");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Spool {
            dir,
            busy: Arc::default(),
        })
    }

    /// Where the image with `hash` lives.
    pub fn path(&self, hash: &ImageHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    /// Keep `image`, unless it is kept already: written to a temporary
    /// name, synced, renamed into place, the directory synced.
    pub fn put(&self, image: &Image) -> Result<(), StoreError> {
        let _alone = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(&image.hash);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == image.len() as u64) {
            return Ok(());
        }
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StoreError::Io { path: p, source }
        };
        let tmp = self
            .dir
            .join(format!(".{}.tmp-{}", image.hash, std::process::id()));
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&image.data).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// Read the image with `hash` into `images` (or find it there),
    /// verifying its content. A file that does not match is moved aside.
    pub fn get(&self, hash: &ImageHash, images: &ImageStore) -> Result<Arc<Image>, StoreError> {
        if let Some(held) = images.get(hash) {
            return Ok(held);
        }
        let path = self.path(hash);
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::SpoolMissing { path: path.clone() }
            } else {
                StoreError::Io {
                    path: path.clone(),
                    source,
                }
            }
        };
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io)?;
        let found = ImageHash(Sha256::digest(&data).into());
        if found != *hash {
            let moved = match move_aside(&path) {
                Ok(aside) => aside.display().to_string(),
                Err(e) => format!("nowhere: {e}"),
            };
            return Err(StoreError::SpoolMismatch { path, found, moved });
        }
        Ok(images.insert(data))
    }

    /// Remove every spooled image but those in `keep` (and leave files
    /// moved aside alone); the paths removed.
    pub fn retain(&self, keep: &HashSet<ImageHash>) -> Result<Vec<PathBuf>, StoreError> {
        let _alone = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let io = |source| StoreError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kept = keep.iter().any(|h| h.to_string() == name);
            // Only whole images and our own leftovers: `<sha256>` names
            // and `.<sha256>.tmp-<pid>` files of crashed writes.
            let ours = (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                || (name.starts_with('.') && name.contains(".tmp-"));
            if ours && !kept {
                std::fs::remove_file(&path).map_err(io)?;
                removed.push(path);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Phase, Progress, UpdateSpec};

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mgsd-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record(n: u128, phase: Phase) -> UpdateRow {
        let spec = UpdateSpec {
            id: uuid::Uuid::from_u128(n),
            sp: "sled-0".into(),
            sp_serial: None,
            component: gateway_messages::SpComponent::HOST_CPU_BOOT_FLASH,
            slot: 1,
            image: ImageHash([0xab; 32]),
            total_bytes: 1000,
            aux: None,
            artifact: None,
            activate: None,
            started_unix_ms: crate::types::unix_ms(),
        };
        let mut p = Progress::new(tokio::time::Instant::now());
        p.phase = phase;
        p.bytes_acked = 500;
        UpdateRow::of(&spec, &p)
    }

    #[test]
    fn records_round_trip_and_bad_rows_are_reported_not_dropped() {
        let dir = tmp("round");
        let (store, problem) = Store::open(&dir).unwrap();
        assert!(problem.is_none());
        store.put(&record(1, Phase::Delivering)).unwrap();
        let mut r = record(2, Phase::Complete);
        r.finished_unix_ms = Some(r.started_unix_ms + 10);
        store.put(&r).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO updates VALUES ('x', 'sp', 'c', 'h', 'p', 0, NULL, '{oops')",
                [],
            )
            .unwrap();
        drop(store);
        let (store, _) = Store::open(&dir).unwrap();
        let (records, bad) = store.load().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].bytes_acked, 500);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("record x does not parse"), "{bad:?}");
        store.remove(&[uuid::Uuid::from_u128(1)]).unwrap();
        assert_eq!(store.load().unwrap().0.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_database_is_moved_aside_and_a_new_one_started() {
        let dir = tmp("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("mgsd.db"),
            b"this is no database at all, not even close",
        )
        .unwrap();
        let (store, problem) = Store::open(&dir).unwrap();
        let problem = problem.unwrap();
        assert!(
            problem.contains("mgsd.db") && problem.contains("moved it aside"),
            "{problem}"
        );
        store.put(&record(3, Phase::Preparing)).unwrap();
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read(aside[0].path()).unwrap(),
            b"this is no database at all, not even close"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_spool_keeps_verifies_and_prunes_images() {
        let dir = tmp("spool");
        let spool = Spool::open(&dir).unwrap();
        let images = ImageStore::default();
        let a = images.insert(vec![1; 5000]);
        let b = images.insert(vec![2; 7000]);
        // Many starts of one new image at once: one file, no clash.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| spool.put(&a).unwrap());
            }
        });
        spool.put(&b).unwrap();
        let (ha, hb) = (a.hash, b.hash);
        drop((a, b));
        let fresh = ImageStore::default();
        assert_eq!(spool.get(&ha, &fresh).unwrap().data, vec![1; 5000]);
        // A file whose content is not its name is moved aside.
        std::fs::write(spool.path(&hb), [9u8; 10]).unwrap();
        let e = spool.get(&hb, &fresh).unwrap_err();
        assert!(matches!(e, StoreError::SpoolMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&hb.to_string()), "{e}");
        assert!(matches!(
            spool.get(&hb, &fresh).unwrap_err(),
            StoreError::SpoolMissing { .. }
        ));
        let removed = spool.retain(&HashSet::new()).unwrap();
        assert_eq!(removed, [spool.path(&ha)]);
        let left: Vec<_> = std::fs::read_dir(dir.join("images")).unwrap().collect();
        assert_eq!(left.len(), 1, "the corrupt file stays, aside");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
