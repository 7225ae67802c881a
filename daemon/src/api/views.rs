//! What each command answers (the `ok` value of its response line), as
//! types: the server builds them from the actors' state, `mgsctl` reads
//! them back, and the HTTP API's own extensions serve them as they are.
//! Small value types (phases, failure kinds, reset outcomes, the SP's
//! update status) are the actors' own, serialised the same way.

pub use actors::record::{FailureKind, HashForm, Phase, SpUpdateState};
pub use actors::reset::{Activation, Expected, Method, Outcome, ResetOptions};
pub use actors::rollout_state::{After, Counts, Pause, RolloutPhase, TargetState};
pub use actors::sp::FirmwareVersions;
pub use actors::store::AuditEntry;
pub use actors::types::ArtifactInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub daemon: String,
    /// This control protocol's version.
    pub protocol: u32,
    /// The gateway-messages version spoken to SPs.
    pub wire_protocol: u32,
}

/// `health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub uptime_s: u64,
    /// Configured SPs.
    pub sps: usize,
    /// Of those, the ones that answered recently.
    pub reachable: usize,
    pub active_updates: usize,
    /// Where the HTTP API listens (none: it is off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_listeners: Vec<SocketAddr>,
}

/// One row of `list`: what an SP's actor last saw of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpRow {
    pub name: String,
    pub addr: Option<SocketAddr>,
    pub reachable: bool,
    /// For an SP behind an interface: `up`, `down` or `missing`.
    pub link: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub revision: Option<u32>,
    pub power_state: Option<String>,
    pub versions: FirmwareVersions,
    pub last_heard_ms_ago: Option<u64>,
    /// Age of the SP's state (identity, power state).
    pub age_ms: Option<u64>,
    /// Smoothed round trip (µs), once measured.
    pub srtt_us: Option<u64>,
    /// How long a request's first attempt waits (µs).
    pub rto_us: u64,
    /// The update of ours running on it.
    pub active_update: Option<UpdateRecord>,
    /// Updates it holds whose ids mgsd does not know: another client's,
    /// or ours from before a state loss.
    #[serde(default)]
    pub unknown_updates: Vec<UnknownUpdate>,
}

/// An update an SP holds that is none of ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownUpdate {
    pub component: String,
    pub sp_status: SpUpdateState,
}

/// Whose update the SP's status names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    /// One of ours (running, or remembered in the history).
    Ours,
    /// An id mgsd does not know: another gateway's update, or one of ours
    /// from before a state loss. `update abort` takes its id;
    /// `update start --take-over` replaces it.
    UnknownClient,
}

/// `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpStateView {
    pub name: String,
    pub addr: Option<SocketAddr>,
    pub reachable: bool,
    /// How old the state is (ms).
    pub age_ms: u64,
    pub state: SpState,
}

/// What an SP says of itself in its `SpState` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpState {
    pub hubris_archive_id: String,
    pub serial: String,
    pub model: String,
    pub revision: u32,
    pub base_mac_address: String,
    pub power_state: String,
    /// The RoT's running slot (0 = A, 1 = B), when the SP reports it.
    pub rot_active_slot: Option<u16>,
    /// The RoT's boot state, where the SP includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rot: Option<RotState>,
}

/// The RoT's boot state as the SP reports it, or why it could not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RotState {
    Ok {
        active: String,
        persistent_boot_preference: String,
        pending_persistent_boot_preference: Option<String>,
        transient_boot_preference: Option<String>,
        slot_a_sha3_256: Option<String>,
        slot_b_sha3_256: Option<String>,
    },
    Error {
        error: String,
    },
}

/// `caboose`: each key asked, `None` where the caboose lacks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CabooseView {
    pub sp: String,
    pub component: String,
    pub slot: u16,
    pub values: BTreeMap<String, Option<String>>,
}

/// `power_get`, and `power_set` (with `changed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerView {
    /// `A0` or `A2` (and `A1`, as an SP may report it).
    pub power_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

/// `slot_get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotView {
    pub component: String,
    pub active: u16,
    pub persistent: u16,
}

/// `slot_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSetView {
    pub component: String,
    pub slot: u16,
    pub persist: bool,
}

/// `reset`: how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetView {
    #[serde(flatten)]
    pub activation: Activation,
    /// Always true: the reset ran.
    pub reset: bool,
}

/// One update: what it is and where it is. `update_start`, `watch` and
/// `list` answer with it; `update_status` and `history` carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRecord {
    pub id: uuid::Uuid,
    pub sp: String,
    /// The SP's serial when the update started.
    pub sp_serial: Option<String>,
    pub component: String,
    pub slot: u16,
    pub image_sha256: String,
    pub total_bytes: u64,
    pub phase: Phase,
    /// `[current, total]` sectors while the SP erases.
    pub erase_progress: Option<(u32, u32)>,
    /// Bytes the SP has acknowledged.
    pub bytes_acked: u64,
    /// Chunk datagrams sent, resends included.
    pub chunks_sent: u64,
    pub chunks_retransmitted: u64,
    /// Resumes that went back before chunks already sent.
    pub rewinds: u64,
    /// Chunks whose answer did not come in time.
    pub timeouts: u64,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub failure: Option<String>,
    pub failure_kind: Option<FailureKind>,
    /// The latest trouble recovered from.
    pub last_error: Option<String>,
    /// The host-flash hash was read back and matched.
    pub hash_verified: bool,
    /// What the matching hash covered: `slot` (the whole slot, as real
    /// firmware hashes it) or `image` (the bytes written, as some SPs do).
    #[serde(default)]
    pub hash_verified_as: Option<HashForm>,
    /// From the first chunk to the last byte acknowledged.
    pub delivered_in_ms: Option<u64>,
    /// Times taken up again after a daemon restart.
    pub resumed: u32,
    /// Of `total_bytes`, an aux-flash image's (sent first).
    pub aux_flash_bytes: u64,
    pub artifact: Option<ArtifactInfo>,
    /// Reset the SP into the new image once complete.
    pub activate: Option<ResetOptions>,
    pub activation: Option<Activation>,
    /// The unknown client's update this one replaced (`take_over`).
    #[serde(default)]
    pub took_over: Option<uuid::Uuid>,
}

impl From<&actors::UpdateHandle> for UpdateRecord {
    fn from(u: &actors::UpdateHandle) -> Self {
        let (s, p) = (u.spec(), u.progress());
        Self {
            id: s.id,
            sp: s.sp.to_string(),
            sp_serial: s.sp_serial.clone(),
            component: s.component.to_string(),
            slot: s.slot,
            image_sha256: s.image.to_string(),
            total_bytes: s.total_bytes,
            phase: p.phase,
            erase_progress: p.erase_progress,
            bytes_acked: p.bytes_acked,
            chunks_sent: p.chunks_sent,
            chunks_retransmitted: p.chunks_retransmitted,
            rewinds: p.rewinds,
            timeouts: p.timeouts,
            started_unix_ms: s.started_unix_ms,
            finished_unix_ms: p.finished_unix_ms,
            failure: p.failure.as_ref().map(|f| f.reason.clone()),
            failure_kind: p.failure.as_ref().map(|f| f.kind),
            last_error: p.last_error.clone(),
            hash_verified: p.hash_verified,
            hash_verified_as: p.hash_form,
            delivered_in_ms: p.delivered_in_ms,
            resumed: p.resumed,
            aux_flash_bytes: u64::from(s.aux_len()),
            artifact: s.artifact.clone(),
            activate: s.activate,
            activation: p.activation.clone(),
            took_over: s.took_over,
        }
    }
}

impl UpdateRecord {
    /// Percent of the image the SP has acknowledged.
    pub fn percent(&self) -> u64 {
        self.bytes_acked * 100 / self.total_bytes.max(1)
    }
}

/// `update_status`: the SP's own report (the source of truth) and our
/// latest update to the component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatusView {
    pub sp: String,
    pub component: String,
    pub sp_status: SpUpdateState,
    /// How old the SP's report is: 0 when just asked.
    pub sp_status_age_ms: u64,
    /// Whose update the SP's report names, if it names one.
    #[serde(default)]
    pub sp_status_holder: Option<Holder>,
    pub delivery: Option<UpdateRecord>,
}

/// `update_abort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbortView {
    pub id: uuid::Uuid,
    pub aborted: bool,
}

/// One row of `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub record: UpdateRecord,
    /// From start to end.
    pub duration_ms: Option<u64>,
    pub mean_bytes_per_second: Option<u64>,
}

/// One target of a rollout, with how its update goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetView {
    pub sp: String,
    pub component: String,
    pub slot: u16,
    pub image_sha256: String,
    pub total_bytes: u64,
    pub update_id: uuid::Uuid,
    /// 0 is the canary.
    pub wave: usize,
    /// The plan file's line.
    pub line: Option<u32>,
    pub state: TargetState,
    /// Its update's phase, once started (and while remembered).
    pub phase: Option<Phase>,
    pub bytes_acked: u64,
    /// While delivering.
    pub rate_bytes_per_second: Option<u64>,
    /// Seconds left, while delivering; 0 once complete.
    pub eta_s: Option<u64>,
    pub started_unix_ms: Option<u64>,
    pub finished_unix_ms: Option<u64>,
    pub failure: Option<String>,
}

impl TargetView {
    pub fn percent(&self) -> u64 {
        self.bytes_acked * 100 / self.total_bytes.max(1)
    }
}

/// A rollout: its options, where it stands, and its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: uuid::Uuid,
    /// The same id with another plan is a conflict.
    pub plan_sha256: String,
    pub phase: RolloutPhase,
    /// Why it is paused, stopped or aborted.
    pub reason: Option<String>,
    pub max_concurrent: usize,
    pub stop_after_failures: usize,
    pub pause_between_waves: Pause,
    pub after: After,
    pub waves: usize,
    pub current_wave: usize,
    pub resume_at_unix_ms: Option<u64>,
    pub created_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub resumed: u32,
    pub counts: Counts,
    /// Of the running targets together.
    pub rate_bytes_per_second: u64,
    /// Seconds until the whole plan is done at the rate so far.
    pub eta_s: Option<u64>,
    pub targets: Vec<TargetView>,
}

impl RolloutView {
    /// `r` with its targets' updates as `live` gives them.
    pub fn of(
        r: &actors::rollout_state::RolloutRecord,
        live: &std::collections::HashMap<uuid::Uuid, actors::rollout_state::Live>,
    ) -> Self {
        let (rate, eta) = r.rate_and_eta(live);
        let targets = r
            .targets
            .iter()
            .map(|t| {
                let l = live.get(&t.update_id);
                let rate = l.and_then(|l| l.rate).map(|r| r as u64);
                let acked = l.map_or(0, |l| l.bytes_acked);
                let eta_s = match t.state {
                    TargetState::Complete => Some(0),
                    _ => rate
                        .filter(|r| *r > 0)
                        .map(|r| t.total_bytes.saturating_sub(acked).div_ceil(r)),
                };
                TargetView {
                    sp: t.sp.to_string(),
                    component: t.component.clone(),
                    slot: t.slot,
                    image_sha256: t.image_sha256.clone(),
                    total_bytes: t.total_bytes,
                    update_id: t.update_id,
                    wave: t.wave,
                    line: t.line,
                    state: t.state,
                    phase: l.map(|l| l.phase),
                    bytes_acked: acked,
                    rate_bytes_per_second: rate,
                    eta_s,
                    started_unix_ms: t.started_unix_ms,
                    finished_unix_ms: t.finished_unix_ms,
                    failure: t.failure.clone(),
                }
            })
            .collect();
        Self {
            id: r.id,
            plan_sha256: r.plan_sha256.clone(),
            phase: r.phase,
            reason: r.reason.clone(),
            max_concurrent: r.max_concurrent,
            stop_after_failures: r.stop_after_failures,
            pause_between_waves: r.pause_between_waves,
            after: r.after,
            waves: r.waves,
            current_wave: r.current_wave,
            resume_at_unix_ms: r.resume_at_unix_ms,
            created_unix_ms: r.created_unix_ms,
            finished_unix_ms: r.finished_unix_ms,
            resumed: r.resumed,
            counts: r.counts(),
            rate_bytes_per_second: rate,
            eta_s: eta,
            targets,
        }
    }
}

/// `console_attach`'s answer, before the console's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleOpened {
    pub sp: String,
    pub component: String,
    pub session: u64,
    pub read_only: bool,
    /// Output the session starts with (0 with `no_scrollback`).
    pub scrollback_bytes: u64,
    /// Whether mgsd holds the SP's console now (it attaches again by
    /// itself after a reset).
    pub attached: bool,
    pub state: actors::console::LinkState,
}

/// One console stream line (`console_attach`, after its answer). Bytes
/// are base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConsoleLine {
    Output { data: String },
    Lost { bytes: u64 },
    Reattached { reason: String },
    Notice { message: String },
    Ended { reason: String },
}

/// What a console client sends, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConsoleInputLine {
    /// Bytes to type (base64).
    Write(String),
    Break(bool),
    Detach(bool),
}

/// A phase-2 image held for recovering hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase2ImageView {
    /// SHA-256 of the image, hex: its id.
    pub sha256_hash: String,
    pub len: u64,
}

/// An SP's most recent phase-2 request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "progress", rename_all = "snake_case")]
pub enum Phase2ProgressView {
    Available {
        image_id: Phase2Id,
        offset: u64,
        /// The image's size; 0 if mgsd does not hold it.
        total_size: u64,
        age_ms: u64,
    },
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase2Id {
    pub sha256_hash: String,
}
