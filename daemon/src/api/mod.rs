//! The control protocol's types, once, for the server, `mgsctl` and the
//! HTTP API: requests ([`Command`], their fields in [`args`]), the
//! response envelope and its error codes (here), and every answer's shape
//! ([`views`]). On the socket it is one JSON object per line each way;
//! see `docs/control-protocol.md`.

mod args;
pub mod views;

pub use actors::rollout_state::{RolloutSpec, TargetSpec, WaveSize};
pub use args::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of this protocol; requests may carry `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

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
    /// Attach to a serial console: after the answer the connection carries
    /// the console (see the protocol document).
    ConsoleAttach(ConsoleAttachArgs),
    /// End a console's typing session by force.
    ConsoleDetach(ConsoleDetachArgs),
    /// Keep a host phase-2 recovery image (the descriptor sent with the
    /// request) for recovering hosts; answers its id.
    RecoveryUpload(NoArgs),
    /// The phase-2 images held, most recently requested first.
    RecoveryImages(NoArgs),
    /// The SP's most recent phase-2 request (a recovering host's progress).
    RecoveryStatus(SpArgs),
    /// Forget the SP's most recent phase-2 request.
    RecoveryClear(SpArgs),
    /// Set the installinator image ids a recovering sled reads over IPCC.
    InstallinatorSet(InstallinatorArgs),
    /// Clear them.
    InstallinatorClear(SpArgs),
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
            Command::ConsoleAttach(_) => "console_attach",
            Command::ConsoleDetach(_) => "console_detach",
            Command::RecoveryUpload(_) => "recovery_upload",
            Command::RecoveryImages(_) => "recovery_images",
            Command::RecoveryStatus(_) => "recovery_status",
            Command::RecoveryClear(_) => "recovery_clear",
            Command::InstallinatorSet(_) => "installinator_set",
            Command::InstallinatorClear(_) => "installinator_clear",
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
            | Command::RolloutAbort(_)
            | Command::ConsoleDetach(_)
            | Command::RecoveryUpload(_)
            | Command::RecoveryClear(_)
            | Command::InstallinatorSet(_)
            | Command::InstallinatorClear(_) => Class::Operate,
            Command::ConsoleAttach(a) if !a.read_only => Class::Operate,
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
            Command::ConsoleAttach(a) => (Some(&a.sp), Some(&a.component), None),
            Command::ConsoleDetach(a) => (Some(&a.sp), Some(&a.component), None),
            Command::RecoveryStatus(a)
            | Command::RecoveryClear(a)
            | Command::InstallinatorClear(a) => (Some(&a.sp), None, None),
            Command::InstallinatorSet(a) => (Some(&a.sp), None, Some(a.update_id)),
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
    /// The state directory cannot be written (disk full, ...): an update
    /// that could not be journalled is not started.
    StateUnwritable,
    /// The SP has no serial console mgsd can attach to (not a sled, or
    /// consoles are off in the config).
    ConsoleUnavailable,
    /// Another session types on that console (the message names it).
    ConsoleHeld,
    /// No phase-2 image by that id is held.
    UnknownImage,
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

/// A JSON object whose keys are all different, at every depth
/// (`serde_json` alone lets the last of two equal keys win, silently).
struct UniqueKeys(serde_json::Map<String, Value>);

/// Any JSON value, refused if some object in it has a key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_map(StrictVisitor)? {
            Value::Object(map) => Ok(UniqueKeys(map)),
            _ => Err(serde::de::Error::custom("expected a JSON object")),
        }
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = a.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut map = serde_json::Map::new();
        while let Some((k, Strict(v))) = a.next_entry::<String, Strict>()? {
            if map.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
            map.insert(k, v);
        }
        Ok(Value::Object(map))
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
        // At every depth: a plan's nested tables too.
        let nested = e(
            r#"{"cmd":"rollout_start","plan":{"target":[{"kind":"sled","component":"sp","component":"rot","image":0}]}}"#,
        );
        assert!(
            nested.message.contains("duplicate key \"component\""),
            "{}",
            nested.message
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
            take_over: false,
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
