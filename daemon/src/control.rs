//! The control socket: a Unix stream socket speaking newline-delimited JSON
//! (`api`), each command routed to the [`RegistryHandle`]. A bad request
//! gets an error response and changes nothing; the connection and the
//! daemon keep serving.

use crate::api::{parse_request, Command, ErrorCode, Response};
use crate::config::ControlConfig;
use actors::registry::RegistryHandle;
use actors::{RegistryError, RpcError, UpdateError};
use gateway_messages::{MgsRequest, PowerState, SpComponent, SpError, SpResponse};
use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers on the socket.
    #[error("{0}: another mgsd is already listening on this socket")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Bind, chmod or directory trouble.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Bind the control socket, replacing a stale one safely.
pub fn bind(config: &ControlConfig) -> Result<UnixListener, ControlError> {
    let path = &config.socket;
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.clone()));
            }
            info!(socket = %path.display(), "removing stale control socket");
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => return Err(ControlError::NotASocket(path.clone())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    let mode = config.mode().unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}

/// Serves control connections.
#[derive(Clone)]
pub struct ControlServer {
    handle: RegistryHandle,
    max_request_bytes: usize,
    started: Instant,
    /// Requests being carried out (not `watch` streams): shutdown waits
    /// for them to be answered.
    busy: tokio::sync::watch::Sender<usize>,
}

impl ControlServer {
    /// A server over `handle`.
    pub fn new(handle: RegistryHandle, max_request_bytes: usize) -> Self {
        Self {
            handle,
            max_request_bytes,
            started: Instant::now(),
            busy: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Wait until no request is being carried out.
    pub async fn drained(&self) {
        let _ = self.busy.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Accept connections forever.
    pub async fn serve(self, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let server = self.clone();
                    actix::spawn(async move { server.connection(stream).await });
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = self.max_request_bytes as u64 + 1;
            let n = match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
                Ok(n) => n,
                Err(_) => return,
            };
            if n == 0 {
                return; // client closed
            }
            let complete = line.last() == Some(&b'\n');
            if !complete && line.len() as u64 >= limit {
                // Skip the rest of the oversized line, then answer.
                let mut sink = Vec::new();
                if reader.read_until(b'\n', &mut sink).await.is_err() {
                    return;
                }
                let r = Response::error(
                    None,
                    ErrorCode::RequestTooLarge,
                    format!("request line exceeds {} bytes", self.max_request_bytes),
                );
                if send(&mut write, &r).await.is_err() {
                    return;
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let request = match parse_request(text) {
                Ok(r) => r,
                Err(response) => {
                    let result = response
                        .error
                        .as_ref()
                        .map_or("ok".to_string(), |e| error_name(e.code));
                    metrics::counter!("mgsd_control_requests_total", "command" => "invalid", "result" => result)
                        .increment(1);
                    if send(&mut write, &response).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            debug!(command = ?request.command, "control request");
            if let Command::Watch { id } = request.command {
                metrics::counter!("mgsd_control_requests_total", "command" => "watch", "result" => "ok").increment(1);
                self.watch(&mut write, request.request_id, id).await;
                return;
            }
            let name = command_name(&request.command);
            self.busy.send_modify(|n| *n += 1);
            let response = match self.execute(request.command).await {
                Ok(value) => Response::ok(request.request_id, value),
                Err((code, message)) => Response::error(request.request_id, code, message),
            };
            let result = response
                .error
                .as_ref()
                .map_or("ok".to_string(), |e| error_name(e.code));
            metrics::counter!("mgsd_control_requests_total", "command" => name, "result" => result)
                .increment(1);
            let sent = send(&mut write, &response).await;
            self.busy.send_modify(|n| *n -= 1);
            if sent.is_err() {
                return;
            }
        }
    }

    /// Stream one update's record until it ends (the final record is the
    /// `ok` line), or every update's changes until the client leaves. The
    /// records come from each update's `watch`: a slow client skips
    /// intermediate states but never misses the last one.
    async fn watch(
        &self,
        write: &mut tokio::net::unix::OwnedWriteHalf,
        req_id: Option<Value>,
        id: Option<uuid::Uuid>,
    ) {
        let Some(id) = id else {
            return self.watch_all(write, req_id).await;
        };
        let handle = match self.handle.update(id).await {
            Ok(h) => h,
            Err(e) => {
                let (code, message) = registry_error(e);
                let _ = send(write, &Response::error(req_id, code, message)).await;
                return;
            }
        };
        let mut rx = handle.watch();
        loop {
            let record = rx.borrow_and_update().clone();
            if record.phase.is_terminal() {
                let _ = send(write, &Response::ok(req_id, to_value(&record))).await;
                return;
            }
            if send(write, &Response::event(req_id.clone(), to_value(&record)))
                .await
                .is_err()
            {
                return;
            }
            if rx.changed().await.is_err() && !rx.borrow().phase.is_terminal() {
                let r = Response::error(req_id, ErrorCode::ShuttingDown, "daemon is shutting down");
                let _ = send(write, &r).await;
                return;
            }
        }
    }

    async fn watch_all(&self, write: &mut tokio::net::unix::OwnedWriteHalf, req_id: Option<Value>) {
        use futures_util::StreamExt;
        let mut followed = std::collections::HashSet::new();
        let mut streams = futures_util::stream::SelectAll::new();
        let mut add = |handle: actors::UpdateHandle,
                       streams: &mut futures_util::stream::SelectAll<_>| {
            if followed.insert(handle.id()) {
                streams.push(Box::pin(follow(handle.watch())));
            }
        };
        let Ok((running, mut started)) = self.handle.subscribe().await else {
            let r = Response::error(req_id, ErrorCode::ShuttingDown, "daemon is shutting down");
            let _ = send(write, &r).await;
            return;
        };
        for h in running {
            add(h, &mut streams);
        }
        loop {
            tokio::select! {
                Some(record) = streams.next() => {
                    if send(write, &Response::event(req_id.clone(), to_value(&record))).await.is_err() {
                        return;
                    }
                }
                new = started.recv() => match new {
                    Ok(h) => add(h, &mut streams),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some starts: pick up whatever runs now.
                        match self.handle.subscribe().await {
                            Ok((running, feed)) => {
                                started = feed;
                                for h in running {
                                    add(h, &mut streams);
                                }
                            }
                            Err(_) => return,
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    }

    async fn rpc(
        &self,
        sp: &str,
        request: MgsRequest,
    ) -> Result<(SpResponse, Vec<u8>), (ErrorCode, String)> {
        self.handle.rpc(sp, request).await.map_err(registry_error)
    }

    async fn execute(&self, command: Command) -> Result<Value, (ErrorCode, String)> {
        let h = &self.handle;
        match command {
            Command::Version => Ok(json!({
                "daemon": env!("CARGO_PKG_VERSION"),
                "protocol": crate::api::PROTOCOL_VERSION,
                "wire_protocol": gateway_messages::version::CURRENT,
            })),
            Command::Health => {
                let sps = h.list().await.map_err(registry_error)?;
                let running = h.running_updates().await.map_err(registry_error)?;
                Ok(json!({
                    "status": "ok",
                    "uptime_s": self.started.elapsed().as_secs(),
                    "sps": sps.len(),
                    "reachable": sps.iter().filter(|s| s.info.reachable).count(),
                    "active_updates": running,
                }))
            }
            Command::List => self.list().await,
            Command::State { sp } => {
                let (r, _) = self.rpc(&sp, MgsRequest::SpState).await?;
                let info = h.info(&sp).await.map_err(registry_error)?;
                Ok(json!({ "name": info.name, "addr": info.addr, "state": sp_state_json(&r) }))
            }
            Command::Caboose {
                sp,
                component,
                slot,
                key,
            } => {
                let component = parse_component(&component)?;
                let keys: Vec<String> = match key {
                    Some(k) => vec![k],
                    None => ["BORD", "GITC", "NAME", "VERS"].map(String::from).to_vec(),
                };
                let mut values = serde_json::Map::new();
                for k in keys {
                    let key: [u8; 4] = k.as_bytes().try_into().map_err(|_| {
                        (
                            ErrorCode::BadRequest,
                            format!("caboose key {k:?} must be 4 ASCII characters"),
                        )
                    })?;
                    let value = match h
                        .rpc(
                            &sp,
                            MgsRequest::ReadComponentCaboose {
                                component,
                                slot,
                                key,
                            },
                        )
                        .await
                    {
                        Ok((_, trailing)) => {
                            Value::String(String::from_utf8_lossy(&trailing).into_owned())
                        }
                        Err(RegistryError::Rpc(RpcError::Sp {
                            error: SpError::NoSuchCabooseKey(_),
                            ..
                        })) => Value::Null,
                        Err(e) => return Err(registry_error(e)),
                    };
                    values.insert(k, value);
                }
                Ok(
                    json!({ "sp": sp, "component": component.to_string(), "slot": slot, "values": values }),
                )
            }
            Command::PowerGet { sp } => match self.rpc(&sp, MgsRequest::GetPowerState).await? {
                (SpResponse::PowerState(p), _) => Ok(json!({ "power_state": format!("{p:?}") })),
                (other, _) => Err(unexpected(other)),
            },
            Command::PowerSet { sp, state } => {
                let state = match state.to_ascii_uppercase().as_str() {
                    "A0" => PowerState::A0,
                    "A1" => PowerState::A1,
                    "A2" => PowerState::A2,
                    _ => {
                        return Err((
                            ErrorCode::BadRequest,
                            format!("power state {state:?}: use A0 or A2"),
                        ))
                    }
                };
                match self.rpc(&sp, MgsRequest::SetPowerState(state)).await? {
                    (SpResponse::PowerStateSet, _) => {
                        Ok(json!({ "power_state": format!("{state:?}"), "changed": true }))
                    }
                    (SpResponse::PowerStateUnchanged, _) => {
                        Ok(json!({ "power_state": format!("{state:?}"), "changed": false }))
                    }
                    (other, _) => Err(unexpected(other)),
                }
            }
            Command::SlotGet { sp, component } => {
                let component = parse_component(&component)?;
                let active = match self
                    .rpc(&sp, MgsRequest::ComponentGetActiveSlot(component))
                    .await?
                {
                    (SpResponse::ComponentActiveSlot(s), _) => s,
                    (other, _) => return Err(unexpected(other)),
                };
                let persistent = match self
                    .rpc(&sp, MgsRequest::ComponentGetPersistentSlot(component))
                    .await?
                {
                    (SpResponse::ComponentPersistentSlot(s), _) => s,
                    (other, _) => return Err(unexpected(other)),
                };
                Ok(
                    json!({ "component": component.to_string(), "active": active, "persistent": persistent }),
                )
            }
            Command::SlotSet {
                sp,
                component,
                slot,
                persist,
            } => {
                let component = parse_component(&component)?;
                let request = if persist {
                    MgsRequest::ComponentSetAndPersistActiveSlot { component, slot }
                } else {
                    MgsRequest::ComponentSetActiveSlot { component, slot }
                };
                self.rpc(&sp, request).await?;
                Ok(json!({ "component": component.to_string(), "slot": slot, "persist": persist }))
            }
            Command::Reset { sp, component } => {
                h.reset(&sp, &component).await.map_err(registry_error)?;
                Ok(json!({ "sp": sp, "component": component, "reset": true }))
            }
            Command::UpdateStart {
                sp,
                component,
                slot,
                image,
                id,
            } => {
                let id = id.unwrap_or_else(uuid::Uuid::new_v4);
                let path = std::path::Path::new(&image);
                let record = h
                    .start_update_file(&sp, &component, slot, id, path)
                    .await
                    .map_err(registry_error)?;
                Ok(to_value(&record))
            }
            Command::UpdateStatus { sp, component } => {
                let view = h
                    .update_status(&sp, &component)
                    .await
                    .map_err(registry_error)?;
                Ok(to_value(&view))
            }
            Command::UpdateAbort { sp, component, id } => {
                h.abort_update(&sp, &component, id)
                    .await
                    .map_err(registry_error)?;
                Ok(json!({ "id": id, "aborted": true }))
            }
            Command::History {
                sp,
                component,
                since_unix_ms,
                limit,
            } => {
                let sp = match sp {
                    Some(sp) => Some(h.sp(&sp).await.map_err(registry_error)?.name().clone()),
                    None => None,
                };
                let query = actors::registry::History {
                    sp,
                    component,
                    since_unix_ms,
                    limit: limit.unwrap_or(50),
                };
                let records = h.history(query).await.map_err(registry_error)?;
                let rows = records.iter().map(|r| {
                    let mut v = to_value(r);
                    let duration = r
                        .finished_unix_ms
                        .map(|f| f.saturating_sub(r.started_unix_ms));
                    v["duration_ms"] = json!(duration);
                    v["mean_bytes_per_second"] = json!(duration
                        .filter(|d| *d > 0)
                        .map(|d| r.bytes_acked * 1000 / d));
                    v
                });
                Ok(Value::Array(rows.collect()))
            }
            Command::Watch { .. } => unreachable!("handled by the connection"),
        }
    }

    /// Every SP from what its actor published: no SP is asked.
    async fn list(&self) -> Result<Value, (ErrorCode, String)> {
        let sps = self.handle.list().await.map_err(registry_error)?;
        let rows = sps.into_iter().map(|sp| {
            let id = sp.info.identity.as_ref();
            json!({
                "name": sp.info.name,
                "addr": sp.info.addr,
                "reachable": sp.info.reachable,
                "serial": id.map(|i| i.serial.clone()),
                "model": id.map(|i| i.model.clone()),
                "revision": id.map(|i| i.revision),
                "power_state": id.map(|i| i.power_state.clone()),
                "versions": sp.info.versions,
                "last_heard_ms_ago": sp.last_heard_ms_ago,
                "srtt_us": sp.info.srtt_us,
                "rto_us": sp.info.rto_us,
                "active_update": sp.active_update.as_ref().map(to_value),
            })
        });
        Ok(Value::Array(rows.collect()))
    }
}

/// Each record an update publishes, through its final one. An update the
/// SP never accepted is not shown.
fn follow(
    rx: tokio::sync::watch::Receiver<actors::UpdateRecord>,
) -> impl futures_util::Stream<Item = actors::UpdateRecord> {
    futures_util::stream::unfold(Some((rx, true)), |state| async move {
        let (mut rx, mut fresh) = state?;
        loop {
            if !fresh && rx.changed().await.is_err() {
                return None;
            }
            fresh = false;
            let record = rx.borrow_and_update().clone();
            if record.start_error.is_some() {
                return None;
            }
            if record.phase == actors::Phase::Starting {
                continue;
            }
            let next = (!record.phase.is_terminal()).then_some((rx, false));
            return Some((record, next));
        }
    })
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    write.write_all(&line).await
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn parse_component(name: &str) -> Result<SpComponent, (ErrorCode, String)> {
    actors::registry::parse_component(name).map_err(registry_error)
}

fn unexpected(r: SpResponse) -> (ErrorCode, String) {
    (
        ErrorCode::Internal,
        format!("unexpected response from the SP: {r:?}"),
    )
}

/// Stable command name (metric label).
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Version => "version",
        Command::Health => "health",
        Command::List => "list",
        Command::State { .. } => "state",
        Command::Caboose { .. } => "caboose",
        Command::PowerGet { .. } => "power_get",
        Command::PowerSet { .. } => "power_set",
        Command::SlotGet { .. } => "slot_get",
        Command::SlotSet { .. } => "slot_set",
        Command::Reset { .. } => "reset",
        Command::UpdateStart { .. } => "update_start",
        Command::UpdateStatus { .. } => "update_status",
        Command::UpdateAbort { .. } => "update_abort",
        Command::History { .. } => "history",
        Command::Watch { .. } => "watch",
    }
}

fn error_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Map every registry error to its stable code.
pub fn registry_error(e: RegistryError) -> (ErrorCode, String) {
    let code = match &e {
        RegistryError::UnknownSp(_) => ErrorCode::UnknownSp,
        RegistryError::BadComponent { .. } => ErrorCode::BadComponent,
        RegistryError::UnknownUpdate(_) => ErrorCode::UnknownUpdate,
        RegistryError::Stopped => ErrorCode::ShuttingDown,
        RegistryError::Socket { .. } => ErrorCode::Internal,
        RegistryError::ImageUnreadable { .. } => ErrorCode::ImageUnreadable,
        RegistryError::Spool(_) => ErrorCode::Internal,
        RegistryError::Update(u) => match u {
            UpdateError::Conflict { .. } => ErrorCode::UpdateConflict,
            UpdateError::AlreadyRunning { .. } => ErrorCode::UpdateRunning,
            UpdateError::BadImage(_) => ErrorCode::BadImage,
            UpdateError::AbortRefused { .. } => ErrorCode::AbortRefused,
            UpdateError::Prepare(r) | UpdateError::Rpc(r) => rpc_code(r),
            UpdateError::ShuttingDown => ErrorCode::ShuttingDown,
        },
        RegistryError::Rpc(r) => rpc_code(r),
    };
    (code, e.to_string())
}

fn rpc_code(e: &RpcError) -> ErrorCode {
    match e {
        RpcError::Sp {
            error: SpError::InvalidSlotForComponent,
            ..
        } => ErrorCode::BadSlot,
        RpcError::Sp {
            error: SpError::RequestUnsupportedForComponent,
            ..
        } => ErrorCode::BadComponent,
        RpcError::Sp { .. } | RpcError::Busy { .. } | RpcError::Unexpected { .. } => {
            ErrorCode::SpError
        }
        RpcError::Timeout { .. } | RpcError::NotDiscovered { .. } | RpcError::Io { .. } => {
            ErrorCode::SpUnreachable
        }
        RpcError::Stopped { .. } => ErrorCode::ShuttingDown,
    }
}

/// SP state as JSON, whichever version the SP sent: its identity, plus the
/// RoT's boot state where the SP includes it.
fn sp_state_json(r: &SpResponse) -> Value {
    let Some(identity) = actors::sp::SpIdentity::from_state(r) else {
        return json!({ "unexpected": format!("{r:?}") });
    };
    let mut v = to_value(&identity);
    if let SpResponse::SpStateV2(s) = r {
        let hex = |d: [u8; 32]| d.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let slot = |s: Option<gateway_messages::RotSlotId>| s.map(|s| format!("{s:?}"));
        v["rot"] = match &s.rot {
            Ok(rot) => json!({
                "active": format!("{:?}", rot.active),
                "persistent_boot_preference": format!("{:?}", rot.persistent_boot_preference),
                "pending_persistent_boot_preference": slot(rot.pending_persistent_boot_preference),
                "transient_boot_preference": slot(rot.transient_boot_preference),
                "slot_a_sha3_256": rot.slot_a_sha3_256_digest.map(hex),
                "slot_b_sha3_256": rot.slot_b_sha3_256_digest.map(hex),
            }),
            Err(e) => json!({ "error": format!("{e:?}") }),
        };
    }
    v
}

/// Remove the socket file on shutdown (only if it is still ours).
pub fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}
