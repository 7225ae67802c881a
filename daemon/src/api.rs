//! The control protocol, shared by the server and `mgsctl`: one JSON object
//! per line each way. See `docs/control-protocol.md`.

pub use actors::rollout_state::{RolloutSpec, TargetSpec, WaveSize};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of this protocol; requests may carry `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

// Each command's fields are declared once, here: `serde` reads them off
// the wire (rejecting unknown fields), `clap` makes them `mgsctl`'s
// arguments.

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

/// The reset options of `reset` and `update_start`, checked.
pub fn reset_options(
    no_watchdog: bool,
    watchdog_ms: Option<u32>,
) -> Result<actors::activate::ResetOptions, String> {
    match (no_watchdog, watchdog_ms) {
        (true, Some(_)) => Err("no_watchdog and watchdog_ms exclude each other".into()),
        (_, Some(0)) => Err("watchdog_ms must be more than 0".into()),
        _ => Ok(actors::activate::ResetOptions {
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

/// A request: `{"cmd": "...", ...fields}`, plus optional `"v"` and
/// `"request_id"` (any JSON value, echoed in the response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Daemon and protocol versions.
    Version(NoArgs),
    /// Liveness and a summary.
    Health(NoArgs),
    /// Every SP with reachability, identity and firmware versions.
    List(NoArgs),
    /// One SP's state, as its actor last read it.
    State(SpArgs),
    /// Caboose values of a component slot.
    Caboose(CabooseArgs),
    /// Host power state.
    PowerGet(SpArgs),
    /// Set the host power state.
    PowerSet(PowerSetArgs),
    /// Active and persistent slot of a component.
    SlotGet(ComponentArgs),
    /// Set the active slot.
    SlotSet(SlotSetArgs),
    /// Reset a component.
    Reset(ResetArgs),
    /// Start an update; returns once the SP accepted the prepare.
    UpdateStart(UpdateStartArgs),
    /// The SP's update status merged with the daemon's delivery view.
    UpdateStatus(ComponentArgs),
    /// Abort an update (the SP aborts only its current update).
    UpdateAbort(UpdateAbortArgs),
    /// Finished updates, newest first.
    History(HistoryArgs),
    /// Operate commands and refusals, newest first.
    Audit(AuditArgs),
    /// Stream progress events of one update (until it ends) or of all.
    Watch(WatchArgs),
    /// Start a rollout of a plan; returns once it is checked and started.
    RolloutStart(RolloutStartArgs),
    /// A rollout's record, counts, rate and ETA.
    RolloutStatus(RolloutArgs),
    /// Stream a rollout's records until it ends.
    RolloutWatch(RolloutArgs),
    /// Start no new target until resumed.
    RolloutPause(RolloutArgs),
    /// Go on after a pause.
    RolloutResume(RolloutArgs),
    /// Abort: no new target, running target updates aborted on their SPs.
    RolloutAbort(RolloutArgs),
    /// Every rollout, oldest first.
    RolloutList(NoArgs),
}

/// Who may send a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Looks only.
    Read,
    /// Changes an SP (and is audited).
    Operate,
}

impl Command {
    /// Stable name (the wire's `cmd`, metric label, audit).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Version(_) => "version",
            Command::Health(_) => "health",
            Command::List(_) => "list",
            Command::State(_) => "state",
            Command::Caboose(_) => "caboose",
            Command::PowerGet(_) => "power_get",
            Command::PowerSet(_) => "power_set",
            Command::SlotGet(_) => "slot_get",
            Command::SlotSet(_) => "slot_set",
            Command::Reset(_) => "reset",
            Command::UpdateStart(_) => "update_start",
            Command::UpdateStatus(_) => "update_status",
            Command::UpdateAbort(_) => "update_abort",
            Command::History(_) => "history",
            Command::Audit(_) => "audit",
            Command::Watch(_) => "watch",
            Command::RolloutStart(_) => "rollout_start",
            Command::RolloutStatus(_) => "rollout_status",
            Command::RolloutWatch(_) => "rollout_watch",
            Command::RolloutPause(_) => "rollout_pause",
            Command::RolloutResume(_) => "rollout_resume",
            Command::RolloutAbort(_) => "rollout_abort",
            Command::RolloutList(_) => "rollout_list",
        }
    }

    /// Which peers may send it.
    pub fn class(&self) -> Class {
        match self {
            Command::PowerSet(_)
            | Command::SlotSet(_)
            | Command::Reset(_)
            | Command::UpdateStart(_)
            | Command::UpdateAbort(_)
            | Command::RolloutStart(_)
            | Command::RolloutPause(_)
            | Command::RolloutResume(_)
            | Command::RolloutAbort(_) => Class::Operate,
            _ => Class::Read,
        }
    }

    /// The SP, component and update id it names (for the audit).
    pub fn target(&self) -> (Option<&str>, Option<&str>, Option<uuid::Uuid>) {
        match self {
            Command::PowerSet(a) => (Some(&a.sp), None, None),
            Command::SlotSet(a) => (Some(&a.sp), Some(&a.component), None),
            Command::Reset(a) => (Some(&a.sp), Some(&a.component), None),
            Command::UpdateStart(a) => (Some(&a.sp), Some(&a.component), a.id),
            Command::UpdateAbort(a) => (Some(&a.sp), Some(&a.component), Some(a.id)),
            Command::State(a) | Command::PowerGet(a) => (Some(&a.sp), None, None),
            Command::Caboose(a) => (Some(&a.sp), Some(&a.component), None),
            Command::SlotGet(a) | Command::UpdateStatus(a) => {
                (Some(&a.sp), Some(&a.component), None)
            }
            Command::Watch(a) => (None, None, a.id),
            Command::RolloutStart(a) => (None, None, a.id),
            Command::RolloutStatus(a)
            | Command::RolloutWatch(a)
            | Command::RolloutPause(a)
            | Command::RolloutResume(a)
            | Command::RolloutAbort(a) => (None, None, Some(a.id)),
            _ => (None, None, None),
        }
    }
}

fn default_sp_component() -> String {
    "sp".into()
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed back in the response as `request_id`.
    pub request_id: Option<Value>,
    /// What to do.
    pub command: Command,
}

/// Stable error codes (see the protocol document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown command or field, bad value.
    BadRequest,
    /// The line exceeded the size limit.
    RequestTooLarge,
    /// A `v` this daemon does not speak.
    UnsupportedVersion,
    /// No SP by that name or serial.
    UnknownSp,
    /// Not a valid component for the command.
    BadComponent,
    /// The SP has no such slot for that component.
    BadSlot,
    /// No update by that id.
    UnknownUpdate,
    /// The image file cannot be read.
    ImageUnreadable,
    /// The image cannot be sent (empty, too large).
    BadImage,
    /// The update id is used for a different image or target.
    UpdateConflict,
    /// Another update is running on that SP.
    UpdateRunning,
    /// The SP refused to abort.
    AbortRefused,
    /// The SP answered with an error.
    SpError,
    /// The SP did not answer (or was never found).
    SpUnreachable,
    /// The daemon is stopping.
    ShuttingDown,
    /// The peer's user and groups may not send this command.
    PermissionDenied,
    /// Too many connections: try again shortly.
    Busy,
    /// A rollout plan names unknown SPs, a target twice, an image too
    /// large for its component… (every problem, each with its line).
    BadPlan,
    /// No rollout by that id.
    UnknownRollout,
    /// The rollout cannot do that now (resume when not paused, abort
    /// when ended).
    RolloutState,
    /// Anything else.
    Internal,
}

/// An error response's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Human explanation.
    pub message: String,
}

/// One response line. Exactly one of `ok`, `error`, `event` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version.
    pub v: u32,
    /// The request's `request_id`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Value>,
    /// Result of a successful command (for `watch`: the final record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    /// Why the command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// A `watch` progress event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

impl Response {
    /// A success.
    pub fn ok(id: Option<Value>, value: Value) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            request_id: id,
            ok: Some(value),
            error: None,
            event: None,
        }
    }

    /// A failure.
    pub fn error(id: Option<Value>, code: ErrorCode, message: impl Into<String>) -> Self {
        let error = ErrorBody {
            code,
            message: message.into(),
        };
        Self {
            v: PROTOCOL_VERSION,
            request_id: id,
            ok: None,
            error: Some(error),
            event: None,
        }
    }

    /// A watch event.
    pub fn event(id: Option<Value>, value: Value) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            request_id: id,
            ok: None,
            error: None,
            event: Some(value),
        }
    }
}

/// A JSON object whose keys are all different (`serde_json` alone lets
/// the last of two equal keys win, silently).
struct UniqueKeys(serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    map.insert(k, v);
                }
                Ok(UniqueKeys(map))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Parse one request line; on failure, the error response to send.
pub fn parse_request(line: &str) -> Result<Request, Box<Response>> {
    let bad = |id: Option<Value>, code, msg: String| Box::new(Response::error(id, code, msg));
    if line.trim().is_empty() {
        return Err(bad(
            None,
            ErrorCode::BadRequest,
            "empty request line".into(),
        ));
    }
    let UniqueKeys(mut map) = serde_json::from_str(line).map_err(|e| {
        let what = if e.is_data() {
            "request must be a JSON object with distinct keys"
        } else {
            "request is not valid JSON"
        };
        bad(None, ErrorCode::BadRequest, format!("{what}: {e}"))
    })?;
    let id = map.remove("request_id");
    match map.remove("v") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(other) => {
            return Err(bad(
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                "protocol version {other} is not supported (this daemon speaks {PROTOCOL_VERSION})"
            ),
            ))
        }
    }
    if !map.contains_key("cmd") {
        return Err(bad(
            id,
            ErrorCode::BadRequest,
            "request has no \"cmd\"".into(),
        ));
    }
    if map.get("cmd") == Some(&Value::from("update_start")) && map.contains_key("image") {
        return Err(bad(
            id,
            ErrorCode::BadRequest,
            "update_start takes no \"image\" path: mgsd never opens files clients name. \
             Send the open image file's descriptor with the request line (SCM_RIGHTS); \
             see docs/control-protocol.md"
                .into(),
        ));
    }
    let command = serde_json::from_value(Value::Object(map)).map_err(|e| {
        bad(
            id.clone(),
            ErrorCode::BadRequest,
            format!("invalid request: {e}"),
        )
    })?;
    Ok(Request {
        request_id: id,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_reject_clearly() {
        let r = parse_request(
            r#"{"v":1,"request_id":7,"cmd":"update_status","sp":"sled-0","component":"rot"}"#,
        )
        .unwrap();
        assert_eq!(r.request_id, Some(Value::from(7)));
        let id = uuid::Uuid::new_v4();
        let w = parse_request(&format!(r#"{{"cmd":"watch","id":"{id}"}}"#)).unwrap();
        assert_eq!(w.command, Command::Watch(WatchArgs { id: Some(id) }));
        assert_eq!(
            r.command,
            Command::UpdateStatus(ComponentArgs {
                sp: "sled-0".into(),
                component: "rot".into()
            })
        );
        let e = |line: &str| parse_request(line).unwrap_err().error.unwrap();
        assert_eq!(e("{").code, ErrorCode::BadRequest);
        assert_eq!(e("[1]").code, ErrorCode::BadRequest);
        assert_eq!(
            e(r#"{"v":2,"cmd":"list"}"#).code,
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(e(r#"{"cmd":"frobnicate"}"#).code, ErrorCode::BadRequest);
        let unknown = e(r#"{"cmd":"state","sp":"x","colour":"red"}"#);
        assert_eq!(unknown.code, ErrorCode::BadRequest);
        assert!(unknown.message.contains("colour"), "{}", unknown.message);
        // Commands without fields reject unknown ones too.
        for cmd in ["version", "health", "list"] {
            let e = e(&format!(r#"{{"cmd":"{cmd}","verbose":true}}"#));
            assert!(e.message.contains("verbose"), "{}", e.message);
        }
        let dup = e(r#"{"cmd":"list","cmd":"version"}"#);
        assert!(
            dup.message.contains("duplicate key \"cmd\""),
            "{}",
            dup.message
        );
        assert_eq!(e("  \t").code, ErrorCode::BadRequest);
        let path = e(r#"{"cmd":"update_start","sp":"a","component":"sp","image":"/etc/shadow"}"#);
        assert!(path.message.contains("descriptor"), "{}", path.message);
    }

    #[test]
    fn reset_options_are_checked() {
        assert!(reset_options(true, Some(1000)).is_err());
        assert!(reset_options(false, Some(0)).is_err());
        let o = reset_options(false, Some(5000)).unwrap();
        assert_eq!((o.no_watchdog, o.watchdog_ms), (false, Some(5000)));
        assert!(reset_options(true, None).unwrap().no_watchdog);
        // On the wire, as mgsctl sends them.
        let r = parse_request(r#"{"cmd":"reset","sp":"sled-0","watchdog_ms":120000}"#).unwrap();
        let Command::Reset(a) = r.command else {
            panic!("{r:?}")
        };
        assert_eq!((a.component.as_str(), a.watchdog_ms), ("sp", Some(120000)));
    }

    #[test]
    fn every_command_round_trips_and_is_classed() {
        let start = Command::UpdateStart(UpdateStartArgs {
            sp: "sled-0".into(),
            component: "sp".into(),
            slot: 1,
            id: None,
            archive: true,
            force_board: false,
            activate: true,
            no_watchdog: false,
            watchdog_ms: Some(5000),
        });
        let line = serde_json::to_string(&start).unwrap();
        assert_eq!(parse_request(&line).unwrap().command, start);
        assert_eq!(start.class(), Class::Operate);
        let list = parse_request(r#"{"cmd":"list"}"#).unwrap().command;
        assert_eq!(list, Command::List(NoArgs {}));
        assert_eq!(list.class(), Class::Read);
        assert_eq!(serde_json::to_string(&list).unwrap(), r#"{"cmd":"list"}"#);
    }
}
