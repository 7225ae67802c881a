//! Each command's fields, declared once: `serde` reads them off the wire
//! (rejecting unknown fields), `clap` makes them `mgsctl`'s arguments.

use super::RolloutSpec;
use clap::Args;
use serde::{Deserialize, Serialize};

fn default_sp_component() -> String {
    "sp".into()
}

/// No fields.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// One SP.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpArgs {
    /// SP name or serial number.
    pub sp: String,
}

/// One component of one SP.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component: sp, host-boot-flash, rot, stage0.
    pub component: String,
}

/// `caboose`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CabooseArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component.
    #[arg(long, default_value = "sp")]
    #[serde(default = "default_sp_component")]
    pub component: String,
    /// Slot (0: the running image).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub slot: u16,
    /// One key (BORD, GITC, NAME, VERS); all four by default.
    #[arg(long)]
    #[serde(default)]
    pub key: Option<String>,
}

/// `power_set`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSetArgs {
    /// SP name or serial number.
    pub sp: String,
    /// A0 (on) or A2 (off).
    pub state: String,
}

/// `slot_set`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSetArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component.
    pub component: String,
    /// Slot.
    pub slot: u16,
    /// Also make it the persistent choice.
    #[arg(long)]
    #[serde(default)]
    pub persist: bool,
}

/// `reset`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component (`sp` reboots the SP; after a completed SP update this
    /// activates it, under the SP's reset watchdog where it has one).
    #[arg(default_value = "sp")]
    #[serde(default = "default_sp_component")]
    pub component: String,
    /// Send the plain reset trigger even after an SP update: a new image
    /// that does not boot is then not rolled back.
    #[arg(long, conflicts_with = "watchdog_ms")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_watchdog: bool,
    /// Watchdog window: the new image must be confirmed within it, or the
    /// SP falls back to the previous one (default 1.5 × per-attempt
    /// timeout × reset attempts: 90000).
    #[arg(long, value_name = "MS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_ms: Option<u32>,
}

/// `update_start`. The image travels as an open file descriptor sent
/// with the request line (`SCM_RIGHTS`), never as a path.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStartArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component: sp, host-boot-flash, rot, stage0.
    pub component: String,
    /// Target slot.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub slot: u16,
    /// Update id (UUID); chosen for you if absent. Starting again with the
    /// same id and image is safe.
    #[arg(long)]
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// The descriptor is a Hubris build archive (`sp`, `rot`, `stage0`),
    /// not a raw image.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive: bool,
    /// Send an archive even if its caboose names another board than the
    /// target runs.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_board: bool,
    /// If the SP holds an update of an unknown client (another gateway's,
    /// or ours from before a state loss), abort it and start this one in
    /// its place (audited).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub take_over: bool,
    /// Once complete, reset the SP into the new image and confirm it runs
    /// (`sp` only; see `reset`). Implies --watch.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub activate: bool,
    /// With --activate: the plain reset trigger, no watchdog.
    #[arg(long, requires = "activate", conflicts_with = "watchdog_ms")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_watchdog: bool,
    /// With --activate: the watchdog window (ms).
    #[arg(long, value_name = "MS", requires = "activate")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_ms: Option<u32>,
}

impl UpdateStartArgs {
    /// The activation asked for, checked: its options go with
    /// `activate` only.
    pub fn activation(&self) -> Result<Option<actors::reset::ResetOptions>, String> {
        match (
            self.activate,
            self.no_watchdog || self.watchdog_ms.is_some(),
        ) {
            (true, _) => reset_options(self.no_watchdog, self.watchdog_ms).map(Some),
            (false, true) => Err("no_watchdog and watchdog_ms go with \"activate\": true".into()),
            (false, false) => Ok(None),
        }
    }
}

/// The reset options of `reset` and `update_start`, checked.
pub fn reset_options(
    no_watchdog: bool,
    watchdog_ms: Option<u32>,
) -> Result<actors::reset::ResetOptions, String> {
    match (no_watchdog, watchdog_ms) {
        (true, Some(_)) => Err("no_watchdog and watchdog_ms exclude each other".into()),
        (_, Some(0)) => Err("watchdog_ms must be more than 0".into()),
        _ => Ok(actors::reset::ResetOptions {
            no_watchdog,
            watchdog_ms,
        }),
    }
}

/// `update_abort`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAbortArgs {
    /// SP name or serial number.
    pub sp: String,
    /// Component.
    pub component: String,
    /// Update id.
    pub id: uuid::Uuid,
}

/// `history`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// Only this SP's (name or serial number).
    #[arg(long)]
    #[serde(default)]
    pub sp: Option<String>,
    /// Only this component's.
    #[arg(long)]
    #[serde(default)]
    pub component: Option<String>,
    /// Only those finished since: a time (2026-11-25T10:00:00Z) or how
    /// long ago (90m, 12h, 7d). On the wire: Unix ms.
    #[arg(long = "since", value_name = "WHEN", value_parser = parse_since)]
    #[serde(default)]
    pub since_unix_ms: Option<u64>,
    /// At most this many.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    #[serde(default = "default_limit")]
    pub limit: usize,
}

/// `audit`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    /// Only entries since: a time (2026-11-25T10:00:00Z) or how long ago
    /// (90m, 12h, 7d). On the wire: Unix ms.
    #[arg(long = "since", value_name = "WHEN", value_parser = parse_since)]
    #[serde(default)]
    pub since_unix_ms: Option<u64>,
    /// At most this many.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    #[serde(default = "default_limit")]
    pub limit: usize,
}

/// `watch`.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchArgs {
    /// Only this update (until it ends); every update if absent.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
}

/// `rollout_start`. The plan's images travel as descriptors sent with
/// the request line, in the order of the indices its targets name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStartArgs {
    /// Rollout id (UUID); chosen for you if absent. Starting again with
    /// the same id and plan is safe.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// The plan.
    pub plan: RolloutSpec<usize>,
}

/// One rollout, by id.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutArgs {
    /// Rollout id.
    pub id: uuid::Uuid,
}

/// Rows `history` and `audit` return unless told.
pub const DEFAULT_LIMIT: usize = 50;

/// Rows `history` and `audit` return at most.
pub const MAX_LIMIT: usize = 10_000;

fn default_limit() -> usize {
    DEFAULT_LIMIT
}

/// A point in time as Unix ms: RFC 3339 (`2026-11-25T10:00:00Z`), or a
/// span ago (`90m`, `12h`, `7d`).
pub fn parse_since(text: &str) -> Result<u64, String> {
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(text).map_err(|_| {
                format!("{text:?}: give a time (2026-11-25T10:00:00Z) or a span ago (12h, 7d)")
            })?;
            std::time::SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| format!("{text:?} is too long ago"))?
        }
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// `console_attach`: the connection becomes the console's stream.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleAttachArgs {
    /// SP name or serial number.
    pub sp: String,
    /// The console's component.
    #[arg(long, default_value = "sp3-host-cpu")]
    #[serde(default = "host_console")]
    pub component: String,
    /// Watch only (read access suffices); typing needs operate access
    /// and is one session at a time.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Start at the newest output, not at the oldest the scrollback holds.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_scrollback: bool,
}

fn host_console() -> String {
    "sp3-host-cpu".into()
}

/// `console_detach`: end the typing session by force.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleDetachArgs {
    /// SP name or serial number.
    pub sp: String,
    /// The console's component.
    #[arg(long, default_value = "sp3-host-cpu")]
    #[serde(default = "host_console")]
    pub component: String,
}

/// `installinator_set`: the ids a recovering sled's installinator uses.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallinatorArgs {
    /// SP name or serial number.
    pub sp: String,
    /// The recovery's update id.
    #[arg(long)]
    pub update_id: uuid::Uuid,
    /// SHA-256 of the host phase-2 image (hex).
    #[arg(long)]
    pub host_phase_2: String,
    /// SHA-256 of the control-plane image (hex).
    #[arg(long)]
    pub control_plane: String,
}
