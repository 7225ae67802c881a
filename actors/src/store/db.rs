//! The database (`mgsd.db`, SQLite): a row per update, a row per
//! rollout, and the audit, where operate commands and refusals are kept
//! apart: refusals come aggregated (one row per peer, reason and interval,
//! with a count) and have their own cap, so however many a stranger
//! causes, no operate entry is ever evicted by them.

use super::{check_owned, move_aside, StoreError};
use crate::record::UpdateRow;
use crate::rollout_state::RolloutRecord;
use rusqlite::{params, Connection};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The update records. See the module docs.
pub struct Store {
    pub(super) conn: Connection,
    path: PathBuf,
}

/// Schema version in `PRAGMA user_version` (3: the `refusals` table).
const SCHEMA: i64 = 3;

impl Store {
    /// Open (or create) `dir/mgsd.db`. A database SQLite cannot use is
    /// moved aside and a fresh one made; the problem is returned with it.
    pub fn open(dir: &Path) -> Result<(Store, Option<String>), StoreError> {
        super::own_dir(dir)?;
        let path = dir.join("mgsd.db");
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() || meta.file_type().is_symlink() => {
                check_owned(&path, &meta, false)?
            }
            _ => {}
        }
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
        // SQLite makes its files as the umask says: ours are 0600.
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
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
             CREATE TABLE IF NOT EXISTS refusals (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 time_unix_ms INTEGER NOT NULL,
                 entry TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS refusals_time ON refusals(time_unix_ms);
             CREATE TABLE IF NOT EXISTS rollouts (
                 id TEXT PRIMARY KEY NOT NULL,
                 created_unix_ms INTEGER NOT NULL,
                 finished_unix_ms INTEGER,
                 record TEXT NOT NULL
             );
             PRAGMA user_version = 3;",
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

/// Operate entries kept at most, whatever their age.
pub const AUDIT_KEEP: i64 = 100_000;

/// Refusal rows kept at most, apart from operate entries.
pub const REFUSALS_KEEP: i64 = 10_000;

impl Store {
    /// Append an audit entry: an operate command, or (with `count`) an
    /// aggregate of refusals.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).expect("entries serialise");
        let table = if entry.count.is_some() {
            "INSERT INTO refusals (time_unix_ms, entry) VALUES (?1, ?2)"
        } else {
            "INSERT INTO audit (time_unix_ms, entry) VALUES (?1, ?2)"
        };
        self.conn
            .execute(table, params![entry.time_unix_ms as i64, json])
            .map(|_| ())
            .map_err(self.db())
    }

    /// Audit entries (operate commands and refusal aggregates) at or
    /// after `since_unix_ms`, newest first, at most `limit`.
    pub fn audit_log(
        &self,
        since_unix_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT entry FROM (
                     SELECT time_unix_ms, seq, entry FROM audit WHERE time_unix_ms >= ?1
                     UNION ALL
                     SELECT time_unix_ms, seq, entry FROM refusals WHERE time_unix_ms >= ?1
                 ) ORDER BY time_unix_ms DESC, seq DESC LIMIT ?2",
            )
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

    /// Forget audit entries older than `before_unix_ms`; keep at most the
    /// newest [`AUDIT_KEEP`] operate entries and, apart from them, the
    /// newest [`REFUSALS_KEEP`] refusal rows.
    pub fn prune_audit(&self, before_unix_ms: u64) -> Result<(), StoreError> {
        let before = before_unix_ms.min(i64::MAX as u64) as i64;
        for (table, keep) in [("audit", AUDIT_KEEP), ("refusals", REFUSALS_KEEP)] {
            self.conn
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE time_unix_ms < ?1
                         OR seq <= (SELECT MAX(seq) FROM {table}) - ?2"
                    ),
                    params![before, keep],
                )
                .map_err(self.db())?;
        }
        Ok(())
    }
}

/// One operate command, or refusals, on the control socket: who asked
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
    /// A client of the HTTP API (`http CN=nexus (10.0.0.2:51234)`); its
    /// `uid` and `gid` are then 4294967295 (no local user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// For refusals: how many like this one (same peer, reason and
    /// command) came in the interval up to `time_unix_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}
