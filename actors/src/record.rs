//! An update as data: its [`UpdateSpec`] (what it is, fixed at intake and
//! shared as `Arc`) and its [`Progress`] (where it is; written only by its
//! update actor and published on that actor's `watch`). The SP's own view
//! of an update is [`SpUpdateState`].

use crate::delivery::ChunkCounts;
use crate::reset::{Activation, ResetOptions};
use crate::types::{unix_ms, ArtifactInfo, AuxFlash, ImageHash, SpName};
use gateway_messages::{SpComponent, UpdateStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where an update is, from the daemon's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The prepare is on its way; the SP has not accepted it yet.
    Starting,
    /// Prepared; the SP is erasing.
    Preparing,
    Delivering,
    /// All bytes acknowledged; confirming with the SP and checking the hash.
    Verifying,
    /// Complete on the SP; resetting it so the new image runs (asked for
    /// with the start), see `activation`.
    Activating,
    /// The SP reports it complete (and the hash matched where checked).
    Complete,
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

    /// Stable lowercase name (metric labels, JSON).
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
    SpUnreachable,
    /// The SP refused (failed the write, ...).
    SpRefused,
    /// The host-flash hash read back did not match the image.
    HashMismatch,
    /// Delivered, but after the reset the SP ran its previous image.
    RolledBack,
    /// Anything else.
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

    /// The class of a request's failure.
    pub fn of(e: &crate::error::RpcError) -> Self {
        use crate::error::RpcError;
        match e {
            e if e.is_silence() => FailureKind::SpUnreachable,
            RpcError::Sp { .. } | RpcError::Busy { .. } => FailureKind::SpRefused,
            _ => FailureKind::Other,
        }
    }
}

/// What the SP's host-flash hash was found to cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashForm {
    /// The whole slot, its first 64 KiB read as 0xFF (real firmware).
    Slot,
    /// Just the image's bytes (SPs that hash what was written).
    Image,
}

/// Why an update failed: its class, the sentence shown, and (while the
/// daemon runs) the error it came from. A failure read back from the
/// journal has no source.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Failure {
    /// A failure described by `reason` alone.
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            source: None,
        }
    }

    /// A failure caused by `error`: `context`, then the error's text.
    pub fn caused(
        kind: FailureKind,
        context: &str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            reason: format!("{context}: {error}"),
            source: Some(Arc::new(error)),
        }
    }
}

/// What an update is. Created once at intake, shared immutable: the
/// registry's binding, the journal row's identity and a rollout target's
/// update are all this one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSpec {
    /// Client-chosen.
    pub id: uuid::Uuid,
    pub sp: SpName,
    /// The SP's serial number when the update started: a resumed update
    /// goes on only with the same SP.
    pub sp_serial: Option<String>,
    pub component: SpComponent,
    pub slot: u16,
    pub image: ImageHash,
    /// The image's size (the aux-flash image included).
    pub total_bytes: u64,
    /// An SP image from an archive with `img/auxi.tlvc`: the aux-flash
    /// image is the first bytes of the image, sent first (as component
    /// `sp-aux-flash`), each part from its offset 0.
    pub aux: Option<AuxFlash>,
    /// What the image says of itself.
    pub artifact: Option<ArtifactInfo>,
    /// Reset the SP once complete, so the new image runs (`sp` only).
    pub activate: Option<ResetOptions>,
    pub started_unix_ms: u64,
    /// The unknown client's update this one replaced (`--take-over`).
    pub took_over: Option<uuid::Uuid>,
}

impl UpdateSpec {
    /// Whether `other` binds its id to the same target and image: the same
    /// id and binding is the same update; anything else is a conflict.
    pub fn binds_as(&self, other: &UpdateSpec) -> bool {
        (&self.sp, self.component, self.slot, self.image)
            == (&other.sp, other.component, other.slot, other.image)
    }

    /// Bytes of the image that are an aux-flash image.
    pub fn aux_len(&self) -> u32 {
        self.aux.map_or(0, |a| a.len)
    }

    /// Whether this update names `sp` (by name, or by the serial it had).
    pub fn is_on(&self, sp: &SpName, serial: Option<&str>) -> bool {
        self.sp == *sp || (serial.is_some() && self.sp_serial.as_deref() == serial)
    }
}

/// Where an update is. Its update actor is the only writer; everyone else
/// reads the value it published. Clock readings exist only while the
/// daemon runs (a record read back from the journal rebuilds them from
/// the wall-clock times, see [`Progress::restored`]).
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: Phase,
    /// Erase progress `(current, total)` sectors while preparing.
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
    pub finished_unix_ms: Option<u64>,
    pub failure: Option<Failure>,
    /// Most recent transient problem (recovered from).
    pub last_error: Option<String>,
    /// Whether the host-flash hash was read back and matched.
    pub hash_verified: bool,
    /// Which form of the hash matched.
    pub hash_form: Option<HashForm>,
    /// From the first chunk to the last byte acknowledged (ms).
    pub delivered_in_ms: Option<u64>,
    /// Times the update was taken up again after a daemon restart.
    pub resumed: u32,
    /// How the reset after completion went (`activate`).
    pub activation: Option<Activation>,
    started: Instant,
    /// When delivery began, and from which byte (for the rate).
    delivery_started: Option<(Instant, u64)>,
    finished: Option<Instant>,
}

impl Progress {
    /// An update whose prepare is about to go out at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            phase: Phase::Starting,
            erase_progress: None,
            bytes_acked: 0,
            chunks_sent: 0,
            chunks_retransmitted: 0,
            rewinds: 0,
            timeouts: 0,
            finished_unix_ms: None,
            failure: None,
            last_error: None,
            hash_verified: false,
            hash_form: None,
            delivered_in_ms: None,
            resumed: 0,
            activation: None,
            started: now,
            delivery_started: None,
            finished: None,
        }
    }

    /// Progress read back from the journal: its clock readings are
    /// rebuilt from the spec's and its own wall-clock times, as seen `now`.
    pub fn restored(mut self, spec: &UpdateSpec, now: Instant) -> Self {
        let now_unix = unix_ms();
        let ago = |t: u64| Duration::from_millis(now_unix.saturating_sub(t));
        self.started = now.checked_sub(ago(spec.started_unix_ms)).unwrap_or(now);
        self.finished = self
            .finished_unix_ms
            .map(|t| now.checked_sub(ago(t)).unwrap_or(now));
        self
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

    /// Every one of `total` bytes is in (at `now`).
    pub fn delivered(&mut self, total: u64, now: Instant) {
        if let (Some((since, _)), None) = (self.delivery_started, self.delivered_in_ms) {
            self.delivered_in_ms = Some((now - since).as_millis() as u64);
        }
        self.bytes_acked = total;
    }

    /// The update ended in `phase` (terminal) at `now`; a first end
    /// sticks.
    pub fn end(&mut self, phase: Phase, failure: Option<Failure>, now: Instant) {
        debug_assert!(phase.is_terminal());
        if self.phase.is_terminal() {
            return;
        }
        self.phase = phase;
        self.failure = failure;
        self.finished = Some(now);
        self.finished_unix_ms = Some(unix_ms());
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

    /// Estimated time left of `total` bytes while delivering.
    pub fn eta(&self, total: u64, now: Instant) -> Option<Duration> {
        if self.phase != Phase::Delivering {
            return None;
        }
        let rate = self.rate(now).filter(|r| *r > 0.0)?;
        let left = total.saturating_sub(self.bytes_acked) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// An update as the journal keeps it: one JSON row, its spec and its
/// progress side by side (the fields of earlier versions' rows, read
/// with their defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRow {
    pub id: uuid::Uuid,
    pub sp: SpName,
    #[serde(default)]
    pub sp_serial: Option<String>,
    pub component: String,
    pub slot: u16,
    pub image_sha256: String,
    pub total_bytes: u64,
    #[serde(default)]
    pub aux_flash_bytes: u64,
    #[serde(default)]
    pub aux_flash_chck: Option<String>,
    #[serde(default)]
    pub artifact: Option<ArtifactInfo>,
    #[serde(default)]
    pub activate: Option<ResetOptions>,
    pub started_unix_ms: u64,
    #[serde(default)]
    pub took_over: Option<uuid::Uuid>,
    pub phase: Phase,
    #[serde(default)]
    pub erase_progress: Option<(u32, u32)>,
    pub bytes_acked: u64,
    #[serde(default)]
    pub chunks_sent: u64,
    #[serde(default)]
    pub chunks_retransmitted: u64,
    #[serde(default)]
    pub rewinds: u64,
    #[serde(default)]
    pub timeouts: u64,
    pub finished_unix_ms: Option<u64>,
    #[serde(default)]
    pub failure: Option<String>,
    #[serde(default)]
    pub failure_kind: Option<FailureKind>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub hash_verified: bool,
    #[serde(default)]
    pub hash_verified_as: Option<HashForm>,
    #[serde(default)]
    pub delivered_in_ms: Option<u64>,
    #[serde(default)]
    pub resumed: u32,
    #[serde(default)]
    pub activation: Option<Activation>,
}

impl UpdateRow {
    pub fn of(spec: &UpdateSpec, p: &Progress) -> Self {
        Self {
            id: spec.id,
            sp: spec.sp.clone(),
            sp_serial: spec.sp_serial.clone(),
            component: spec.component.to_string(),
            slot: spec.slot,
            image_sha256: spec.image.to_string(),
            total_bytes: spec.total_bytes,
            aux_flash_bytes: spec.aux.map_or(0, |a| u64::from(a.len)),
            aux_flash_chck: spec.aux.map(|a| crate::types::hex(&a.chck)),
            artifact: spec.artifact.clone(),
            activate: spec.activate,
            started_unix_ms: spec.started_unix_ms,
            took_over: spec.took_over,
            phase: p.phase,
            erase_progress: p.erase_progress,
            bytes_acked: p.bytes_acked,
            chunks_sent: p.chunks_sent,
            chunks_retransmitted: p.chunks_retransmitted,
            rewinds: p.rewinds,
            timeouts: p.timeouts,
            finished_unix_ms: p.finished_unix_ms,
            failure: p.failure.as_ref().map(|f| f.reason.clone()),
            failure_kind: p.failure.as_ref().map(|f| f.kind),
            last_error: p.last_error.clone(),
            hash_verified: p.hash_verified,
            hash_verified_as: p.hash_form,
            delivered_in_ms: p.delivered_in_ms,
            resumed: p.resumed,
            activation: p.activation.clone(),
        }
    }

    /// The spec and progress again, as seen `now`; `Err` names what in
    /// the row cannot be an update.
    pub fn into_parts(self, now: Instant) -> Result<(UpdateSpec, Progress), String> {
        let component =
            crate::types::parse_updatable(&self.component).map_err(|e| e.to_string())?;
        let image = ImageHash::from_hex(&self.image_sha256)
            .ok_or_else(|| format!("image {:?} is not a SHA-256", self.image_sha256))?;
        let chck = match &self.aux_flash_chck {
            Some(hex) => {
                ImageHash::from_hex(hex)
                    .ok_or_else(|| format!("aux-flash CHCK {hex:?} is not 32 bytes of hex"))?
                    .0
            }
            None => [0; 32],
        };
        let spec = UpdateSpec {
            id: self.id,
            sp: self.sp,
            sp_serial: self.sp_serial,
            component,
            slot: self.slot,
            image,
            total_bytes: self.total_bytes,
            aux: (self.aux_flash_bytes > 0).then_some(AuxFlash {
                len: self.aux_flash_bytes as u32,
                chck,
            }),
            artifact: self.artifact,
            activate: self.activate,
            started_unix_ms: self.started_unix_ms,
            took_over: self.took_over,
        };
        let failure = self.failure.map(|reason| Failure {
            kind: self.failure_kind.unwrap_or(FailureKind::Other),
            reason,
            source: None,
        });
        let progress = Progress {
            phase: self.phase,
            erase_progress: self.erase_progress,
            bytes_acked: self.bytes_acked,
            chunks_sent: self.chunks_sent,
            chunks_retransmitted: self.chunks_retransmitted,
            rewinds: self.rewinds,
            timeouts: self.timeouts,
            finished_unix_ms: self.finished_unix_ms,
            failure,
            last_error: self.last_error,
            hash_verified: self.hash_verified,
            hash_form: self.hash_verified_as,
            delivered_in_ms: self.delivered_in_ms,
            resumed: self.resumed,
            activation: self.activation,
            ..Progress::new(now)
        }
        .restored(&spec, now);
        Ok((spec, progress))
    }
}

/// The SP's own update status, in a form for JSON and humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SpUpdateState {
    /// No update since the SP booted.
    None,
    /// Erasing: next sector to erase, of so many.
    Preparing {
        id: uuid::Uuid,
        erase_current: Option<u32>,
        erase_total: Option<u32>,
    },
    /// SP image with aux flash: the scan of its aux-flash slots is done.
    AuxFlashScanned {
        id: uuid::Uuid,
        /// A slot holds the aux image already.
        found_match: bool,
        total_size: u32,
    },
    InProgress {
        id: uuid::Uuid,
        bytes_received: u32,
        total_size: u32,
    },
    Complete {
        id: uuid::Uuid,
    },
    Aborted {
        id: uuid::Uuid,
    },
    /// Failed with an SP-internal code.
    Failed {
        id: uuid::Uuid,
        code: u32,
    },
    RotError {
        id: uuid::Uuid,
        error: String,
    },
}

impl SpUpdateState {
    /// The update id the SP names, if any.
    pub fn id(&self) -> Option<uuid::Uuid> {
        match self {
            SpUpdateState::None => None,
            SpUpdateState::Preparing { id, .. }
            | SpUpdateState::AuxFlashScanned { id, .. }
            | SpUpdateState::InProgress { id, .. }
            | SpUpdateState::Complete { id }
            | SpUpdateState::Aborted { id }
            | SpUpdateState::Failed { id, .. }
            | SpUpdateState::RotError { id, .. } => Some(*id),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_figures() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        p.phase = Phase::Preparing;
        p.erase(3, 16);
        p.phase = Phase::Delivering;
        p.delivering(0, t0 + Duration::from_secs(1));
        assert_eq!(p.erase_progress, Some((16, 16)));
        let sent = ChunkCounts {
            sent: 4,
            ..ChunkCounts::default()
        };
        p.progress(4000, sent);
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(p.rate(t3), Some(2000.0));
        assert_eq!(p.eta(10_000, t3), Some(Duration::from_secs(3)));
        p.delivering(3000, t3);
        let again = ChunkCounts {
            sent: 1,
            resent: 1,
            timeouts: 1,
            rewinds: 1,
        };
        p.progress(3000, again);
        assert_eq!(
            (
                p.chunks_sent,
                p.chunks_retransmitted,
                p.bytes_acked,
                p.timeouts
            ),
            (5, 1, 3000, 1)
        );
        assert_eq!(p.rewinds, 1);
        p.delivered(10_000, t3);
        p.phase = Phase::Verifying;
        assert_eq!(p.eta(10_000, t3), None);
        assert_eq!(p.delivered_in_ms, Some(2000));
        p.end(Phase::Complete, None, t3);
        assert_eq!(p.phase, Phase::Complete);
        assert_eq!(
            p.elapsed(t3 + Duration::from_secs(9)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn the_first_end_sticks() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        p.end(
            Phase::Failed,
            Some(Failure::new(FailureKind::SpReset, "SP was reset")),
            t0,
        );
        p.end(Phase::Complete, None, t0);
        p.end(Phase::Aborted, None, t0);
        assert_eq!(p.phase, Phase::Failed);
        assert_eq!(p.failure.unwrap().reason, "SP was reset");
    }
}
