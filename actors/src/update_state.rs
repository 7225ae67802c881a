//! What the daemon knows about one update: a plain struct, changed only by
//! the update driver's events, with the derived figures (rate, ETA) the
//! status command reports.

use crate::SpName;
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where an update is, from the daemon's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Prepared; the SP is erasing.
    Preparing,
    /// Sending chunks.
    Delivering,
    /// All bytes acknowledged; confirming with the SP and checking the hash.
    Verifying,
    /// The SP reports it complete (and the hash matched where checked).
    Complete,
    /// Failed; see `failure`.
    Failed,
    /// Aborted on request.
    Aborted,
}

impl Phase {
    /// No more change will come.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Complete | Phase::Failed | Phase::Aborted)
    }

    /// Stable lowercase name (metrics labels, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preparing => "preparing",
            Phase::Delivering => "delivering",
            Phase::Verifying => "verifying",
            Phase::Complete => "complete",
            Phase::Failed => "failed",
            Phase::Aborted => "aborted",
        }
    }
}

/// Why an update failed (a closed set, for metrics and scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The SP forgot the update: reset or power loss.
    SpReset,
    /// The SP stopped answering.
    SpUnreachable,
    /// The SP refused (failed the write, another update replaced it, ...).
    SpRefused,
    /// The host-flash hash read back did not match the image.
    HashMismatch,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::SpReset => "sp_reset",
            FailureKind::SpUnreachable => "sp_unreachable",
            FailureKind::SpRefused => "sp_refused",
            FailureKind::HashMismatch => "hash_mismatch",
            FailureKind::Other => "other",
        }
    }
}

/// One update as the daemon delivers it.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateRecord {
    /// Client-chosen id.
    pub id: uuid::Uuid,
    /// SP name.
    pub sp: SpName,
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
    /// Chunk datagrams sent, retransmissions included.
    pub chunks_sent: u64,
    /// Chunks sent again after a rewind.
    pub chunks_retransmitted: u64,
    /// Times delivery went back to the SP's `bytes_received`.
    pub rewinds: u64,
    /// Chunk or status requests that timed out.
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
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    delivery_started: Option<(Instant, u64)>,
    #[serde(skip)]
    finished: Option<Instant>,
    /// Highest offset ever sent, to tell retransmissions apart.
    #[serde(skip)]
    high_water: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl UpdateRecord {
    /// A freshly prepared update.
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
            phase: Phase::Preparing,
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
            started: now,
            delivery_started: None,
            finished: None,
            high_water: 0,
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

    /// A chunk at `offset` went out.
    pub fn chunk_sent(&mut self, offset: u64, len: u64) {
        self.chunks_sent += 1;
        if offset < self.high_water {
            self.chunks_retransmitted += 1;
        }
        self.high_water = self.high_water.max(offset + len);
    }

    /// The SP acknowledged everything up to `end`.
    pub fn acked(&mut self, end: u64) {
        self.bytes_acked = self.bytes_acked.max(end);
    }

    /// Delivery will go back to what the SP says it has (see
    /// [`UpdateRecord::delivering`]).
    pub fn rewind(&mut self, reason: String) {
        self.rewinds += 1;
        self.last_error = Some(reason);
    }

    /// A request timed out (and will be recovered from).
    pub fn timeout(&mut self) {
        self.timeouts += 1;
    }

    /// Every byte is in; confirming.
    pub fn verifying(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(r.phase, Phase::Preparing);
        r.erase(3, 16);
        r.delivering(0, t0 + Duration::from_secs(1));
        assert_eq!(r.erase_progress, Some((16, 16)));
        for off in (0..4000).step_by(1000) {
            r.chunk_sent(off, 1000);
            r.acked(off + 1000);
        }
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(r.rate(t3), Some(2000.0));
        assert_eq!(r.eta(t3), Some(Duration::from_secs(3)));
        r.rewind("chunk timed out".into());
        r.delivering(3000, t3);
        r.chunk_sent(3000, 1000);
        assert_eq!(
            (r.chunks_sent, r.chunks_retransmitted, r.bytes_acked),
            (5, 1, 3000)
        );
        assert_eq!(r.rewinds, 1);
        r.verifying();
        assert_eq!(r.eta(t3), None);
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

impl From<gateway_messages::UpdateStatus> for SpUpdateState {
    fn from(s: gateway_messages::UpdateStatus) -> Self {
        use gateway_messages::UpdateStatus as U;
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
