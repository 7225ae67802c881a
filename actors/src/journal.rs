//! `Journal`: owns the update database ([`Store`]) on a thread of its own
//! (an actix `SyncArbiter`), so SQLite never blocks the actors that talk
//! to SPs. Update actors send it their records at every phase change and
//! every few seconds of progress; the registry tells it what history to
//! forget; shutdown waits for it to be done. Messages are handled in the
//! order sent, so a `Flush` answered means every earlier write is in.

use crate::record::{Progress, UpdateRow, UpdateSpec};
use crate::rollout_state::RolloutRecord;
use crate::store::{AuditEntry, Store, StoreError};
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::error;

/// The journal actor. See the module docs.
pub struct Journal {
    store: Store,
}

impl Actor for Journal {
    type Context = SyncContext<Self>;
}

/// Write (or replace) an update's row; answered with how it went.
#[derive(Message)]
#[rtype(result = "Result<(), Arc<StoreError>>")]
struct Write(Arc<UpdateSpec>, Progress);

/// Forget these records.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub Vec<uuid::Uuid>);

/// Write (or replace) a rollout's record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteRollout(pub RolloutRecord);

impl Handler<WriteRollout> for Journal {
    type Result = ();
    fn handle(&mut self, msg: WriteRollout, _: &mut SyncContext<Self>) {
        let t = Instant::now();
        match self.store.put_rollout(&msg.0) {
            Ok(()) => written(t),
            Err(e) => error!(rollout = %msg.0.id, error = %e, "could not journal the rollout"),
        }
    }
}

/// Append an audit entry.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Audit(pub AuditEntry);

/// Audit entries since a time (Unix ms), newest first, at most so many.
#[derive(Message)]
#[rtype(result = "Vec<AuditEntry>")]
pub struct AuditLog {
    /// Only entries at or after this (Unix ms).
    pub since_unix_ms: u64,
    /// At most this many.
    pub limit: usize,
}

/// Forget audit entries and ended rollouts older than this (Unix ms), and
/// the oldest audit entries beyond [`crate::store::AUDIT_KEEP`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct PruneAudit(pub u64);

impl Handler<Audit> for Journal {
    type Result = ();
    fn handle(&mut self, msg: Audit, _: &mut SyncContext<Self>) {
        if let Err(e) = self.store.audit(&msg.0) {
            error!(error = %e, "could not store the audit entry");
        }
    }
}

impl Handler<AuditLog> for Journal {
    type Result = MessageResult<AuditLog>;
    fn handle(&mut self, msg: AuditLog, _: &mut SyncContext<Self>) -> Self::Result {
        MessageResult(
            self.store
                .audit_log(msg.since_unix_ms, msg.limit)
                .unwrap_or_else(|e| {
                    error!(error = %e, "could not read the audit log");
                    Vec::new()
                }),
        )
    }
}

impl Handler<PruneAudit> for Journal {
    type Result = ();
    fn handle(&mut self, msg: PruneAudit, _: &mut SyncContext<Self>) {
        if let Err(e) = self.store.prune_audit(msg.0) {
            error!(error = %e, "could not prune the audit log");
        }
        if let Err(e) = self.store.prune_rollouts(msg.0) {
            error!(error = %e, "could not prune old rollouts");
        }
    }
}

/// Answered once every earlier message is handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Write> for Journal {
    type Result = Result<(), Arc<StoreError>>;
    fn handle(&mut self, msg: Write, _: &mut SyncContext<Self>) -> Self::Result {
        let t = Instant::now();
        match self.store.put(&UpdateRow::of(&msg.0, &msg.1)) {
            Ok(()) => {
                written(t);
                Ok(())
            }
            Err(e) => {
                error!(update = %msg.0.id, error = %e, "could not journal the update");
                Err(Arc::new(e))
            }
        }
    }
}

/// A journal write took since `t`.
fn written(t: Instant) {
    metrics::histogram!(crate::metrics::JOURNAL_WRITE).record(t.elapsed().as_secs_f64());
}

impl Handler<Forget> for Journal {
    type Result = ();
    fn handle(&mut self, msg: Forget, _: &mut SyncContext<Self>) {
        if let Err(e) = self.store.remove(&msg.0) {
            error!(error = %e, "could not remove old updates from the journal");
        }
    }
}

impl Handler<Flush> for Journal {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut SyncContext<Self>) {}
}

/// A typed handle on the journal.
#[derive(Clone)]
pub struct JournalHandle {
    addr: Addr<Journal>,
}

impl JournalHandle {
    /// Start the journal's thread with `store`.
    pub fn start(store: Store) -> Self {
        let store = Mutex::new(Some(store));
        let addr = SyncArbiter::start(1, move || Journal {
            store: store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("one journal thread"),
        });
        Self { addr }
    }

    /// Journal an update's progress (in the background; a failure is
    /// logged).
    pub fn write(&self, spec: Arc<UpdateSpec>, progress: Progress) {
        self.addr.do_send(Write(spec, progress));
    }

    /// Journal an update's progress and wait until it is written.
    pub async fn write_now(
        &self,
        spec: Arc<UpdateSpec>,
        progress: Progress,
    ) -> Result<(), Arc<dyn std::error::Error + Send + Sync>> {
        match self.addr.send(Write(spec, progress)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Arc::new(e)),
        }
    }

    /// Forget the rows of updates `ids` and wait until they are gone.
    pub async fn forget_now(&self, ids: Vec<uuid::Uuid>) {
        let _ = self.addr.send(Forget(ids)).await;
    }

    /// Forget the rows of updates `ids` (in the background).
    pub fn forget(&self, ids: Vec<uuid::Uuid>) {
        if !ids.is_empty() {
            self.addr.do_send(Forget(ids));
        }
    }

    /// Journal a rollout's record (in the background).
    pub fn write_rollout(&self, record: RolloutRecord) {
        self.addr.do_send(WriteRollout(record));
    }

    /// Journal a rollout's record and wait until it is written.
    pub async fn write_rollout_now(&self, record: RolloutRecord) {
        let _ = self.addr.send(WriteRollout(record)).await;
    }

    /// Store an audit entry (in the background).
    pub fn audit(&self, entry: AuditEntry) {
        self.addr.do_send(Audit(entry));
    }

    /// Audit entries at or after `since_unix_ms`, newest first.
    pub async fn audit_log(&self, since_unix_ms: u64, limit: usize) -> Vec<AuditEntry> {
        self.addr
            .send(AuditLog {
                since_unix_ms,
                limit,
            })
            .await
            .unwrap_or_default()
    }

    /// Forget audit entries older than `before_unix_ms` (in the background).
    pub fn prune_audit(&self, before_unix_ms: u64) {
        self.addr.do_send(PruneAudit(before_unix_ms));
    }

    /// Wait until everything sent so far is written.
    pub async fn flush(&self) {
        let _ = self.addr.send(Flush).await;
    }
}
