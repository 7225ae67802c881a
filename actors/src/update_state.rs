//! What the daemon knows about one update, as plain types with unit tests:
//! the [`UpdateRecord`] its update actor owns and publishes, and the pure
//! decisions that actor takes on what the SP answers ([`prepare_outcome`],
//! [`read_status`]).

use crate::delivery::ChunkCounts;
use crate::rpc::RpcError;
use crate::{SpName, UpdateError};
use gateway_messages::{SpError, SpResponse, UpdateId, UpdateStatus};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Where an update is, from the daemon's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The prepare is on its way; the SP has not accepted it yet.
    Starting,
    /// Prepared; the SP is erasing.
    Preparing,
    /// Sending chunks.
    Delivering,
    /// All bytes acknowledged; confirming with the SP and checking the hash.
    Verifying,
    /// Complete on the SP; resetting it so the new image runs (asked for
    /// with the start), see `activation`.
    Activating,
    /// The SP reports it complete (and the hash matched where checked).
    Complete,
    /// Failed; see `failure`.
    Failed,
    /// Aborted on request.
    Aborted,
}

impl Phase {
    /// Every phase, in order (metric label sets).
    pub const ALL: [Phase; 8] = [
        Phase::Starting,
        Phase::Preparing,
        Phase::Delivering,
        Phase::Verifying,
        Phase::Activating,
        Phase::Complete,
        Phase::Failed,
        Phase::Aborted,
    ];

    /// No more change will come.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Complete | Phase::Failed | Phase::Aborted)
    }

    /// Stable lowercase name (metrics labels, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Preparing => "preparing",
            Phase::Delivering => "delivering",
            Phase::Verifying => "verifying",
            Phase::Activating => "activating",
            Phase::Complete => "complete",
            Phase::Failed => "failed",
            Phase::Aborted => "aborted",
        }
    }
}

/// Why an update failed (a closed set, for metrics and scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The SP forgot the update: reset, power loss, or replaced by another.
    SpReset,
    /// The SP stopped answering.
    SpUnreachable,
    /// The SP refused (failed the write, ...).
    SpRefused,
    /// The host-flash hash read back did not match the image.
    HashMismatch,
    /// Delivered, but after the reset the SP ran its previous image.
    RolledBack,
    /// Anything else (the SP was removed from the configuration, ...).
    Other,
}

impl FailureKind {
    /// Every kind (metric label sets).
    pub const ALL: [FailureKind; 6] = [
        FailureKind::SpReset,
        FailureKind::SpUnreachable,
        FailureKind::SpRefused,
        FailureKind::HashMismatch,
        FailureKind::RolledBack,
        FailureKind::Other,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::SpReset => "sp_reset",
            FailureKind::SpUnreachable => "sp_unreachable",
            FailureKind::SpRefused => "sp_refused",
            FailureKind::HashMismatch => "hash_mismatch",
            FailureKind::RolledBack => "rolled_back",
            FailureKind::Other => "other",
        }
    }

    /// The class of an RPC failure.
    pub fn of(e: &RpcError) -> Self {
        match e {
            RpcError::Timeout { .. } | RpcError::NotDiscovered { .. } | RpcError::Io { .. } => {
                FailureKind::SpUnreachable
            }
            RpcError::Sp { .. } | RpcError::Busy { .. } => FailureKind::SpRefused,
            RpcError::Unexpected { .. } | RpcError::Stopped { .. } => FailureKind::Other,
        }
    }
}

/// An archive's caboose and image name, shown with its update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Caboose `NAME`.
    pub name: Option<String>,
    /// Caboose `VERS`.
    pub vers: Option<String>,
    /// Caboose `GITC`.
    pub gitc: Option<String>,
    /// Caboose `BORD`.
    pub bord: Option<String>,
    /// `image-name` (`a`/`b` for RoT images).
    pub image_name: Option<String>,
}

/// One update as the daemon delivers it. Its update actor holds the only
/// copy, publishes it and journals it; everyone else reads the published
/// value. What is not serialised exists only while the daemon runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// Client-chosen id.
    pub id: uuid::Uuid,
    /// SP name.
    pub sp: SpName,
    /// The SP's serial number when the update started (a resumed update
    /// goes on only with the same SP).
    #[serde(default)]
    pub sp_serial: Option<String>,
    /// Component name.
    pub component: String,
    /// Target slot.
    pub slot: u16,
    /// SHA-256 of the image, hex.
    pub image_sha256: String,
    /// Image size.
    pub total_bytes: u64,
    /// Phase.
    pub phase: Phase,
    /// Erase progress `(current, total)` while preparing.
    pub erase_progress: Option<(u32, u32)>,
    /// Bytes the SP has acknowledged (its `bytes_received`).
    pub bytes_acked: u64,
    /// Chunk datagrams sent, resends included.
    pub chunks_sent: u64,
    /// Chunks sent again after a rewind.
    pub chunks_retransmitted: u64,
    /// Times delivery went back to the SP's `bytes_received`, before
    /// chunks already sent.
    pub rewinds: u64,
    /// Chunks that got no answer in time.
    pub timeouts: u64,
    /// When the update started (Unix ms).
    pub started_unix_ms: u64,
    /// When it ended (Unix ms).
    pub finished_unix_ms: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The failure's class.
    pub failure_kind: Option<FailureKind>,
    /// Most recent transient problem (recovered from).
    pub last_error: Option<String>,
    /// Whether the host-flash hash was read back and matched.
    pub hash_verified: bool,
    /// From the first chunk to the last byte acknowledged (ms).
    pub delivered_in_ms: Option<u64>,
    /// Times the update was taken up again after a daemon restart.
    #[serde(default)]
    pub resumed: u32,
    /// Of `total_bytes`, those of an aux-flash image sent first (an SP
    /// image from an archive with `img/auxi.tlvc`).
    #[serde(default)]
    pub aux_flash_bytes: u64,
    /// What the archive the image came from says of itself.
    #[serde(default)]
    pub artifact: Option<ArtifactInfo>,
    /// Reset the SP once complete, so the new image runs (`sp` only).
    #[serde(default)]
    pub activate: Option<crate::activate::ResetOptions>,
    /// How that reset went.
    #[serde(default)]
    pub activation: Option<crate::activate::Activation>,
    /// The SP's own status as last read, and when.
    #[serde(skip)]
    pub sp_status: Option<(SpUpdateState, Instant)>,
    /// Why the SP did not accept the prepare: nothing was started, and
    /// the id stays free.
    #[serde(skip)]
    pub start_error: Option<UpdateError>,
    #[serde(skip, default = "Instant::now")]
    started: Instant,
    #[serde(skip)]
    delivery_started: Option<(Instant, u64)>,
    #[serde(skip)]
    finished: Option<Instant>,
}

/// Wall-clock time now, Unix ms (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl UpdateRecord {
    /// An update whose prepare is about to go out.
    pub fn new(
        id: uuid::Uuid,
        sp: SpName,
        component: String,
        slot: u16,
        image_sha256: String,
        total_bytes: u64,
        now: Instant,
    ) -> Self {
        Self {
            id,
            sp,
            component,
            slot,
            image_sha256,
            total_bytes,
            sp_serial: None,
            phase: Phase::Starting,
            erase_progress: None,
            bytes_acked: 0,
            chunks_sent: 0,
            chunks_retransmitted: 0,
            rewinds: 0,
            timeouts: 0,
            started_unix_ms: unix_ms(),
            finished_unix_ms: None,
            failure: None,
            failure_kind: None,
            last_error: None,
            hash_verified: false,
            delivered_in_ms: None,
            resumed: 0,
            aux_flash_bytes: 0,
            artifact: None,
            activate: None,
            activation: None,
            sp_status: None,
            start_error: None,
            started: now,
            delivery_started: None,
            finished: None,
        }
    }

    /// A record read back from the journal: its monotonic clock readings
    /// are rebuilt from the wall-clock ones, as seen `now`.
    pub fn restored(mut self, now: Instant) -> Self {
        let now_unix = unix_ms();
        let ago = |t: u64| Duration::from_millis(now_unix.saturating_sub(t));
        self.started = now.checked_sub(ago(self.started_unix_ms)).unwrap_or(now);
        self.finished = self
            .finished_unix_ms
            .map(|t| now.checked_sub(ago(t)).unwrap_or(now));
        self
    }

    /// The SP accepted the prepare.
    pub fn prepared(&mut self) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Preparing;
        }
    }

    /// The SP reported erase progress.
    pub fn erase(&mut self, current: u32, total: u32) {
        self.erase_progress = Some((current, total));
    }

    /// The SP accepts data from `offset` on.
    pub fn delivering(&mut self, offset: u64, now: Instant) {
        if self.delivery_started.is_none() {
            self.delivery_started = Some((now, offset));
        }
        if let Some((_, total)) = self.erase_progress {
            self.erase_progress = Some((total, total));
        }
        self.phase = Phase::Delivering;
        self.bytes_acked = offset;
    }

    /// The SP has proven it holds `end` bytes; chunk counters since the
    /// last report.
    pub fn progress(&mut self, end: u64, counts: ChunkCounts) {
        self.bytes_acked = self.bytes_acked.max(end);
        self.chunks_sent += counts.sent;
        self.chunks_retransmitted += counts.resent;
        self.timeouts += counts.timeouts;
        self.rewinds += counts.rewinds;
    }

    /// Every byte is in (at `now`); confirming.
    pub fn verifying(&mut self, now: Instant) {
        if let (Some((since, _)), None) = (self.delivery_started, self.delivered_in_ms) {
            self.delivered_in_ms = Some((now - since).as_millis() as u64);
        }
        self.phase = Phase::Verifying;
        self.bytes_acked = self.total_bytes;
    }

    /// Done.
    pub fn complete(&mut self, now: Instant) {
        self.bytes_acked = self.total_bytes;
        self.end(Phase::Complete, now);
    }

    /// Failed for `reason`.
    pub fn fail(&mut self, kind: FailureKind, reason: String, now: Instant) {
        if !self.phase.is_terminal() {
            self.failure = Some(reason);
            self.failure_kind = Some(kind);
        }
        self.end(Phase::Failed, now);
    }

    /// Aborted.
    pub fn abort(&mut self, now: Instant) {
        self.end(Phase::Aborted, now);
    }

    fn end(&mut self, phase: Phase, now: Instant) {
        if !self.phase.is_terminal() {
            self.phase = phase;
            self.finished = Some(now);
            self.finished_unix_ms = Some(unix_ms());
        }
    }

    /// Time since start (or until the end).
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.finished
            .unwrap_or(now)
            .saturating_duration_since(self.started)
    }

    /// Delivery rate in bytes/s since delivery began.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let (since, from) = self.delivery_started?;
        let secs = self
            .finished
            .unwrap_or(now)
            .saturating_duration_since(since)
            .as_secs_f64();
        (secs > 0.0).then(|| self.bytes_acked.saturating_sub(from) as f64 / secs)
    }

    /// Estimated time left while delivering.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        if self.phase != Phase::Delivering {
            return None;
        }
        let rate = self.rate(now).filter(|r| *r > 0.0)?;
        let left = self.total_bytes.saturating_sub(self.bytes_acked) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// The SP's own update status, in a form for JSON and humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SpUpdateState {
    /// No update since the SP booted.
    None,
    /// Erasing.
    Preparing {
        /// Update id.
        id: uuid::Uuid,
        /// Sectors: next to erase.
        erase_current: Option<u32>,
        /// Sectors in all.
        erase_total: Option<u32>,
    },
    /// SP image with aux flash: scan done.
    AuxFlashScanned {
        /// Update id.
        id: uuid::Uuid,
        /// Aux image already present.
        found_match: bool,
        /// Total size.
        total_size: u32,
    },
    /// Receiving data.
    InProgress {
        /// Update id.
        id: uuid::Uuid,
        /// Bytes received.
        bytes_received: u32,
        /// Image size.
        total_size: u32,
    },
    /// Complete.
    Complete {
        /// Update id.
        id: uuid::Uuid,
    },
    /// Aborted.
    Aborted {
        /// Update id.
        id: uuid::Uuid,
    },
    /// Failed with an SP-internal code.
    Failed {
        /// Update id.
        id: uuid::Uuid,
        /// Code.
        code: u32,
    },
    /// RoT failure.
    RotError {
        /// Update id.
        id: uuid::Uuid,
        /// The RoT's error.
        error: String,
    },
}

impl From<UpdateStatus> for SpUpdateState {
    fn from(s: UpdateStatus) -> Self {
        use UpdateStatus as U;
        match s {
            U::None => Self::None,
            U::Preparing(p) => Self::Preparing {
                id: p.id.as_uuid(),
                erase_current: p.progress.map(|p| p.current),
                erase_total: p.progress.map(|p| p.total),
            },
            U::SpUpdateAuxFlashChckScan {
                id,
                found_match,
                total_size,
            } => Self::AuxFlashScanned {
                id: id.as_uuid(),
                found_match,
                total_size,
            },
            U::InProgress(p) => Self::InProgress {
                id: p.id.as_uuid(),
                bytes_received: p.bytes_received,
                total_size: p.total_size,
            },
            U::Complete(id) => Self::Complete { id: id.as_uuid() },
            U::Aborted(id) => Self::Aborted { id: id.as_uuid() },
            U::Failed { id, code } => Self::Failed {
                id: id.as_uuid(),
                code,
            },
            U::RotError { id, error } => Self::RotError {
                id: id.as_uuid(),
                error: format!("{error:?}"),
            },
        }
    }
}

/// What became of a prepare.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The SP holds the update: it acknowledged, or a resent prepare found
    /// the update already there under our own id (the first ack was lost).
    Accepted,
    /// No answer: the SP may or may not hold it; ask its status.
    Unknown(RpcError),
    /// The SP refused; nothing was started.
    Refused(RpcError),
}

/// Classify the answer to the prepare of update `id`.
pub fn prepare_outcome(
    answer: Result<SpResponse, RpcError>,
    id: UpdateId,
    sp: &SpName,
) -> Prepared {
    match answer {
        Ok(SpResponse::ComponentUpdatePrepareAck | SpResponse::SpUpdatePrepareAck) => {
            Prepared::Accepted
        }
        Err(RpcError::Sp {
            error: SpError::UpdateInProgress(status),
            ..
        }) if status_id(&status) == Some(id) => Prepared::Accepted,
        Ok(other) => Prepared::Refused(RpcError::Unexpected {
            sp: sp.clone(),
            response: format!("{other:?}"),
        }),
        Err(e @ RpcError::Timeout { .. }) => Prepared::Unknown(e),
        Err(e) => Prepared::Refused(e),
    }
}

/// The update id a status names.
pub fn status_id(status: &UpdateStatus) -> Option<UpdateId> {
    use UpdateStatus as U;
    match *status {
        U::None => None,
        U::Preparing(p) => Some(p.id),
        U::SpUpdateAuxFlashChckScan { id, .. } => Some(id),
        U::InProgress(p) => Some(p.id),
        U::Complete(id) | U::Aborted(id) => Some(id),
        U::Failed { id, .. } | U::RotError { id, .. } => Some(id),
    }
}

/// What the SP's status means for update `id` of `total` bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum SpView {
    /// Still erasing: `(next sector, sectors)` where the SP says.
    Erasing(Option<(u32, u32)>),
    /// Accepting data from this offset.
    Accepting(u32),
    /// Every byte is in.
    Complete,
    /// Aborted (by us or by someone else).
    Aborted,
    /// The update cannot go on.
    Gone(FailureKind, String),
}

/// Read the SP's status of our update of `total` bytes, the first
/// `aux_len` of which are an aux-flash image (an SP image from an archive).
pub fn read_status(status: UpdateStatus, id: UpdateId, total: u32, aux_len: u32) -> SpView {
    use UpdateStatus as U;
    if status_id(&status) != Some(id) {
        return SpView::Gone(
            FailureKind::SpReset,
            format!(
                "the SP no longer has this update (it reports {:?}): it was reset, lost power, or the update was replaced",
                SpUpdateState::from(status)
            ),
        );
    }
    match status {
        U::Preparing(p) => SpView::Erasing(p.progress.map(|p| (p.current, p.total))),
        U::InProgress(p) if p.total_size != total => SpView::Gone(
            FailureKind::Other,
            format!(
                "the SP expects {} bytes, the image has {total}",
                p.total_size
            ),
        ),
        U::InProgress(p) => SpView::Accepting(p.bytes_received),
        U::SpUpdateAuxFlashChckScan { total_size, .. } if aux_len > 0 && total_size != total => {
            SpView::Gone(
                FailureKind::Other,
                format!("the SP expects {total_size} bytes, the images have {total}"),
            )
        }
        // The SP scanned its aux-flash slots: one holds our aux image
        // already (send only the SP image, after it), or none does.
        U::SpUpdateAuxFlashChckScan { found_match, .. } if aux_len > 0 => {
            SpView::Accepting(if found_match { aux_len } else { 0 })
        }
        U::Complete(_) => SpView::Complete,
        U::Aborted(_) => SpView::Aborted,
        U::Failed { code, .. } => SpView::Gone(
            FailureKind::SpRefused,
            format!("the SP failed the update (code {code:#x})"),
        ),
        U::RotError { error, .. } => SpView::Gone(
            FailureKind::SpRefused,
            format!("the RoT failed the update: {error:?}"),
        ),
        U::SpUpdateAuxFlashChckScan { .. } => SpView::Gone(
            FailureKind::Other,
            "the SP expects an aux-flash image, which this update does not have".into(),
        ),
        U::None => unreachable!("None names no id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_messages::{
        UpdateInProgressStatus, UpdatePreparationProgress, UpdatePreparationStatus,
    };

    fn record(now: Instant) -> UpdateRecord {
        UpdateRecord::new(
            uuid::Uuid::nil(),
            "sled-0".into(),
            "host-boot-flash".into(),
            1,
            "ab".into(),
            10_000,
            now,
        )
    }

    #[test]
    fn lifecycle_and_figures() {
        let t0 = Instant::now();
        let mut r = record(t0);
        assert_eq!(r.phase, Phase::Starting);
        r.prepared();
        assert_eq!(r.phase, Phase::Preparing);
        r.erase(3, 16);
        r.delivering(0, t0 + Duration::from_secs(1));
        assert_eq!(r.erase_progress, Some((16, 16)));
        let sent = ChunkCounts {
            sent: 4,
            ..ChunkCounts::default()
        };
        r.progress(4000, sent);
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(r.rate(t3), Some(2000.0));
        assert_eq!(r.eta(t3), Some(Duration::from_secs(3)));
        r.delivering(3000, t3);
        let again = ChunkCounts {
            sent: 1,
            resent: 1,
            timeouts: 1,
            rewinds: 1,
        };
        r.progress(3000, again);
        assert_eq!(
            (
                r.chunks_sent,
                r.chunks_retransmitted,
                r.bytes_acked,
                r.timeouts
            ),
            (5, 1, 3000, 1)
        );
        assert_eq!(r.rewinds, 1);
        r.verifying(t3);
        assert_eq!(r.eta(t3), None);
        assert_eq!(r.delivered_in_ms, Some(2000));
        r.complete(t3);
        assert_eq!(r.phase, Phase::Complete);
        assert_eq!(
            r.elapsed(t3 + Duration::from_secs(9)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn terminal_phases_stick() {
        let t0 = Instant::now();
        let mut r = record(t0);
        r.fail(FailureKind::SpReset, "SP was reset".into(), t0);
        r.complete(t0);
        r.abort(t0);
        assert_eq!(r.phase, Phase::Failed);
        assert_eq!(r.failure.as_deref(), Some("SP was reset"));
    }

    const ID: UpdateId = UpdateId([9; 16]);
    const OTHER: UpdateId = UpdateId([8; 16]);

    fn timeout() -> RpcError {
        RpcError::Timeout {
            sp: "sled-0".into(),
            attempts: 5,
        }
    }

    fn sp(error: SpError) -> RpcError {
        RpcError::Sp {
            sp: "sled-0".into(),
            error,
        }
    }

    fn in_progress(id: UpdateId, bytes: u32) -> UpdateStatus {
        UpdateStatus::InProgress(UpdateInProgressStatus {
            id,
            bytes_received: bytes,
            total_size: 1000,
        })
    }

    #[test]
    fn a_resent_prepare_that_finds_our_own_update_is_accepted() {
        let name = SpName::from("sled-0");
        let erasing = UpdateStatus::Preparing(UpdatePreparationStatus {
            id: ID,
            progress: Some(UpdatePreparationProgress {
                current: 3,
                total: 512,
            }),
        });
        assert_eq!(
            prepare_outcome(Ok(SpResponse::ComponentUpdatePrepareAck), ID, &name),
            Prepared::Accepted
        );
        for status in [erasing, in_progress(ID, 0), UpdateStatus::Complete(ID)] {
            let answer = Err(sp(SpError::UpdateInProgress(status)));
            assert_eq!(prepare_outcome(answer, ID, &name), Prepared::Accepted);
        }
        // Someone else's update: refused, and the error names it.
        let theirs = Err(sp(SpError::UpdateInProgress(in_progress(OTHER, 5))));
        assert!(matches!(
            prepare_outcome(theirs, ID, &name),
            Prepared::Refused(_)
        ));
        assert_eq!(
            prepare_outcome(Err(timeout()), ID, &name),
            Prepared::Unknown(timeout())
        );
        assert_eq!(
            prepare_outcome(Err(sp(SpError::InvalidSlotForComponent)), ID, &name),
            Prepared::Refused(sp(SpError::InvalidSlotForComponent))
        );
    }

    #[test]
    fn status_readings() {
        assert_eq!(
            read_status(in_progress(ID, 500), ID, 1000, 0),
            SpView::Accepting(500)
        );
        assert_eq!(
            read_status(UpdateStatus::Complete(ID), ID, 1000, 0),
            SpView::Complete
        );
        assert_eq!(
            read_status(UpdateStatus::Aborted(ID), ID, 1000, 0),
            SpView::Aborted
        );
        let SpView::Gone(kind, why) = read_status(UpdateStatus::None, ID, 1000, 0) else {
            panic!()
        };
        assert_eq!(kind, FailureKind::SpReset);
        assert!(
            why.contains("no longer has this update") && why.contains("None"),
            "{why}"
        );
        assert!(matches!(
            read_status(in_progress(OTHER, 5), ID, 1000, 0),
            SpView::Gone(FailureKind::SpReset, _)
        ));
        assert!(matches!(
            read_status(in_progress(ID, 5), ID, 999, 0),
            SpView::Gone(FailureKind::Other, _)
        ));
        assert!(matches!(
            read_status(UpdateStatus::Failed { id: ID, code: 6 }, ID, 1000, 0),
            SpView::Gone(FailureKind::SpRefused, _)
        ));
    }
}
