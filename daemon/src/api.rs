//! The control protocol, shared by the server and `mgsctl`: one JSON object
//! per line each way. See `docs/control-protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of this protocol; requests may carry `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request: `{"cmd": "...", ...fields}`, plus optional `"v"` and
/// `"request_id"` (any JSON value, echoed in the response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Daemon and protocol versions.
    Version,
    /// Liveness and a summary.
    Health,
    /// Every SP with reachability, identity and firmware versions.
    List,
    /// One SP's state.
    State {
        /// SP name or serial.
        sp: String,
    },
    /// Caboose values of a component slot.
    Caboose {
        /// SP name or serial.
        sp: String,
        /// Component (default `sp`).
        #[serde(default = "default_sp_component")]
        component: String,
        /// Slot (default 0: the running image).
        #[serde(default)]
        slot: u16,
        /// One key (`BORD`, `GITC`, `NAME`, `VERS`); all four by default.
        #[serde(default)]
        key: Option<String>,
    },
    /// Host power state.
    PowerGet {
        /// SP name or serial.
        sp: String,
    },
    /// Set the host power state (`A0` or `A2`).
    PowerSet {
        /// SP name or serial.
        sp: String,
        /// `A0`, `A1` or `A2`.
        state: String,
    },
    /// Active and persistent slot of a component.
    SlotGet {
        /// SP name or serial.
        sp: String,
        /// Component.
        component: String,
    },
    /// Set the active slot (and persist it with `persist`).
    SlotSet {
        /// SP name or serial.
        sp: String,
        /// Component.
        component: String,
        /// Slot.
        slot: u16,
        /// Also make it the persistent choice.
        #[serde(default)]
        persist: bool,
    },
    /// Reset a component (`sp` reboots the SP).
    Reset {
        /// SP name or serial.
        sp: String,
        /// Component (default `sp`).
        #[serde(default = "default_sp_component")]
        component: String,
    },
    /// Start an update; returns once the SP accepted the prepare.
    UpdateStart {
        /// SP name or serial.
        sp: String,
        /// Component: `sp`, `host-boot-flash`, `rot`, `stage0`.
        component: String,
        /// Target slot (default 0).
        #[serde(default)]
        slot: u16,
        /// Path of the image, readable by the daemon.
        image: String,
        /// Update id (a UUID); the daemon picks one if absent.
        #[serde(default)]
        id: Option<uuid::Uuid>,
    },
    /// The SP's update status merged with the daemon's delivery view.
    UpdateStatus {
        /// SP name or serial.
        sp: String,
        /// Component.
        component: String,
    },
    /// Abort an update (the SP aborts only its current update).
    UpdateAbort {
        /// SP name or serial.
        sp: String,
        /// Component.
        component: String,
        /// Update id.
        id: uuid::Uuid,
    },
    /// Finished updates, newest first.
    History {
        /// Only this SP's (name or serial).
        #[serde(default)]
        sp: Option<String>,
        /// Only this component's.
        #[serde(default)]
        component: Option<String>,
        /// Only those finished at or after this (Unix ms).
        #[serde(default)]
        since_unix_ms: Option<u64>,
        /// At most this many (default 50).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Stream progress events of one update (until it ends) or of all.
    Watch {
        /// Only this update.
        #[serde(default)]
        id: Option<uuid::Uuid>,
    },
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

/// Parse one request line; on failure, the error response to send.
pub fn parse_request(line: &str) -> Result<Request, Box<Response>> {
    let bad = |id: Option<Value>, code, msg: String| Box::new(Response::error(id, code, msg));
    let value: Value = serde_json::from_str(line).map_err(|e| {
        bad(
            None,
            ErrorCode::BadRequest,
            format!("request is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut map) = value else {
        return Err(bad(
            None,
            ErrorCode::BadRequest,
            "request must be a JSON object".into(),
        ));
    };
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
        assert_eq!(w.command, Command::Watch { id: Some(id) });
        assert_eq!(
            r.command,
            Command::UpdateStatus {
                sp: "sled-0".into(),
                component: "rot".into()
            }
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
    }
}
