//! The control socket: a Unix stream socket speaking newline-delimited JSON
//! (`api`). This module accepts connections, frames their lines
//! (`framing`), decides from the peer's credentials what it may do
//! (`access`), audits what changes SPs, and hands each command to its
//! handler (`sps`, `updates`). A bad request gets an error response
//! and changes nothing; the connection and the daemon keep serving.

mod access;
pub(crate) mod console;
pub(crate) mod recovery;
// Public for the fuzz targets (`fuzz-targets/`); nothing else uses it.
pub mod framing;
mod places;
mod refusals;
pub(crate) mod rollouts;
pub(crate) mod sps;
pub(crate) mod updates;

pub use access::{Access, Peer};

use crate::api::{parse_request, Class, Command, ErrorCode, Response};
use crate::config::ControlConfig;
use actors::store::AuditEntry;
use actors::{Gateway, RegistryError, RpcError, UpdateError};
use framing::{Frame, Framer};
use gateway_messages::SpError;
use places::Places;
use refusals::Refusals;
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
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
    gw: Gateway,
    max_request_bytes: usize,
    access: Arc<Access>,
    /// Places for connections, some kept for operate-class peers; one more
    /// is told `busy`.
    places: Places,
    /// A connection with no request for this long is closed.
    idle_timeout: Duration,
    refusals: Refusals,
    started: Instant,
    /// Requests being carried out (not `watch` streams): shutdown waits
    /// for them to be answered.
    busy: tokio::sync::watch::Sender<usize>,
    /// Where the HTTP API listens, for `health`.
    http_listeners: Vec<std::net::SocketAddr>,
}

/// Why a handler failed: the code and the message.
pub(crate) type Failed = (ErrorCode, String);

/// What a handler answers.
type Outcome = Result<Value, Failed>;

/// A typed answer as the response's `ok` value.
fn ok<T: serde::Serialize>(answer: Result<T, Failed>) -> Outcome {
    answer.map(|t| to_value(&t))
}

/// How long a connection that will be refused (too many, or a peer with
/// no access) may take to send its first line: it is read, so the client
/// is not cut off mid-write and sees the reason.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Bytes read from a connection at a time.
const READ_BUFFER: usize = 16 * 1024;

/// Refusals one connection gets answered at once; past them each waits
/// this long, so a peer cannot make the daemon refuse thousands a second.
const REFUSALS_AT_ONCE: u32 = 16;
const REFUSAL_PACE: Duration = Duration::from_millis(100);

impl ControlServer {
    /// A server over `gw`, with `config`'s limits and access lists.
    pub fn new(gw: Gateway, config: &ControlConfig) -> Self {
        let access = Access::new(config.access.clone());
        for name in access.unknown_names() {
            warn!(%name, "control access: no such {name} in the user database; it grants nothing");
        }
        let server = Self {
            gw,
            max_request_bytes: config.max_request_bytes,
            access: Arc::new(access),
            places: Places::new(config.max_connections, config.reserved_operate_connections),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            refusals: Refusals::default(),
            started: Instant::now(),
            busy: tokio::sync::watch::Sender::new(0),
            http_listeners: Vec::new(),
        };
        // Each interval's refusals go to the audit as one row per kind.
        let flusher = server.clone();
        actix::spawn(async move {
            loop {
                tokio::time::sleep(refusals::INTERVAL).await;
                flusher.flush_refusals();
            }
        });
        server
    }

    /// The longest request line accepted.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Report `addrs` as the HTTP API's listeners in `health`.
    pub fn with_http(mut self, addrs: Vec<std::net::SocketAddr>) -> Self {
        self.http_listeners = addrs;
        self
    }

    /// Audit the refusals summed so far, and begin a new interval.
    fn flush_refusals(&self) {
        for entry in self.refusals.take(actors::types::unix_ms()) {
            self.gw.registry.audit(entry);
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
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self, stream: UnixStream) {
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            Err(e) => {
                warn!(error = %e, "control connection without peer credentials; closed");
                return;
            }
        };
        let Some(class) = self.access.class(&peer) else {
            return self.refuse_peer(stream, peer).await;
        };
        let Some(_place) = self.places.take(class) else {
            let message = match class {
                Class::Operate => "mgsd serves too many connections (control.max_connections); try again",
                Class::Read => "mgsd serves too many connections for readers (control.max_connections, less the reserved_operate_connections); try again",
            };
            if self
                .refusals
                .add(refusal_key(&peer, "busy", None), peer.pid, message)
            {
                warn!(
                    uid = peer.uid,
                    "control connection refused: busy (further ones are summed for a minute)"
                );
            }
            return refuse(stream, ErrorCode::Busy, message.into()).await;
        };
        let (read, mut write) = stream.into_split();
        let mut framer = Framer::new(self.max_request_bytes);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut refused = 0u32;
        loop {
            let frame = loop {
                if let Some(frame) = framer.next_frame() {
                    break frame;
                }
                // An idle connection holds a place for nothing: close it.
                let filled = tokio::time::timeout(
                    self.idle_timeout,
                    framing::fill(read.as_ref(), &mut framer, &mut buf),
                )
                .await;
                match filled {
                    Ok(Ok(true)) => {}
                    Ok(_) => return,
                    Err(_) => {
                        debug!(uid = peer.uid, "idle control connection closed");
                        return;
                    }
                }
            };
            let (line, fds) = match frame {
                Frame::Line(line, fds) => (line, fds),
                Frame::TooLong => {
                    let r = Response::error(
                        None,
                        ErrorCode::RequestTooLarge,
                        format!("request line exceeds {} bytes", self.max_request_bytes),
                    );
                    count("invalid", &r);
                    if send(&mut write, &r).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let parsed = std::str::from_utf8(&line)
                .map_err(|_| {
                    Box::new(Response::error(
                        None,
                        ErrorCode::BadRequest,
                        "request is not UTF-8",
                    ))
                })
                .and_then(parse_request);
            let request = match parsed {
                Ok(r) => r,
                Err(response) => {
                    count("invalid", &response);
                    if send(&mut write, &response).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let command = request.command;
            debug!(command = ?command, uid = peer.uid, "control request");
            if command.class() > class {
                let r = Response::error(
                    request.request_id,
                    ErrorCode::PermissionDenied,
                    denied(&peer, Some(&command)),
                );
                refused += 1;
                if refused > REFUSALS_AT_ONCE {
                    tokio::time::sleep(REFUSAL_PACE).await;
                }
                self.refused(&peer, Some(&command), &r);
                if send(&mut write, &r).await.is_err() {
                    return;
                }
                continue;
            }
            if let Command::Watch(w) = command {
                metrics::counter!("mgsd_control_requests_total", "command" => "watch", "result" => "ok").increment(1);
                let streamed = updates::watch(&self, &mut write, request.request_id, w.id);
                return until_gone(&read, streamed).await;
            }
            if let Command::ConsoleAttach(a) = command {
                let holder = format!(
                    "uid {} pid {} (control socket)",
                    peer.uid,
                    peer.pid.unwrap_or(0)
                );
                // A typing session is an operate command: audited.
                let entry = (!a.read_only)
                    .then(|| self.audit_entry(&peer, &Command::ConsoleAttach(a.clone())));
                let opened = console::open(&self.gw, &a, holder).await;
                if let Some(entry) = entry {
                    let r = match &opened {
                        Ok((s, _)) => Response::ok(None, serde_json::json!({ "session": s.id })),
                        Err((code, message)) => Response::error(None, *code, message.clone()),
                    };
                    self.audit(entry, &r);
                }
                match opened {
                    Ok((session, opened)) => {
                        let id = request.request_id;
                        let nsb = a.no_scrollback;
                        return console::serve_socket(
                            session, opened, nsb, read, write, framer, id,
                        )
                        .await;
                    }
                    Err((code, message)) => {
                        // Refused: the connection serves on, as after any error.
                        let r = Response::error(request.request_id, code, message);
                        count("console_attach", &r);
                        if send(&mut write, &r).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            if let Command::RolloutWatch(a) = command {
                metrics::counter!("mgsd_control_requests_total", "command" => "rollout_watch", "result" => "ok").increment(1);
                let streamed = rollouts::watch(&self, &mut write, request.request_id, a);
                return until_gone(&read, streamed).await;
            }
            let name = command.name();
            let audited =
                (command.class() == Class::Operate).then(|| self.audit_entry(&peer, &command));
            // A request that reads images may take long; a client that
            // goes meanwhile frees its place (anything accepted goes on).
            let reads_images =
                matches!(command, Command::UpdateStart(_) | Command::RolloutStart(_));
            self.busy.send_modify(|n| *n += 1);
            let executed = self.execute(command, fds);
            let response = if reads_images {
                match until_hung_up(&read, executed).await {
                    Some(outcome) => outcome,
                    None => {
                        self.busy.send_modify(|n| *n -= 1);
                        debug!(uid = peer.uid, command = name, "client left mid-request");
                        return;
                    }
                }
            } else {
                executed.await
            };
            let response = match response {
                Ok(value) => Response::ok(request.request_id, value),
                Err((code, message)) => Response::error(request.request_id, code, message),
            };
            count(name, &response);
            if let Some(entry) = audited {
                self.audit(entry, &response);
            }
            let sent = send(&mut write, &response).await;
            self.busy.send_modify(|n| *n -= 1);
            if sent.is_err() {
                return;
            }
        }
    }

    /// A peer in neither access list: its first request is answered
    /// `permission_denied` (and audited), then the connection closes.
    async fn refuse_peer(&self, stream: UnixStream, peer: Peer) {
        let (first, mut write) = first_line(stream, self.max_request_bytes).await;
        let command = first
            .and_then(|l| parse_request(&l).ok())
            .map(|r| r.command);
        let r = Response::error(None, ErrorCode::PermissionDenied, denied(&peer, None));
        self.refused(&peer, command.as_ref(), &r);
        let _ = send(&mut write, &r).await;
    }

    /// Count a refusal; audit and log the first of its kind in the
    /// interval (the rest are summed, see [`Refusals`]).
    fn refused(&self, peer: &Peer, command: Option<&Command>, response: &Response) {
        count(command.map_or("connect", Command::name), response);
        let message = response.error.as_ref().map_or("", |e| e.message.as_str());
        let key = refusal_key(peer, "permission_denied", command);
        if self.refusals.add(key, peer.pid, message) {
            let mut entry = match command {
                Some(c) => self.audit_entry(peer, c),
                None => AuditEntry {
                    uid: peer.uid,
                    gid: peer.gid,
                    pid: peer.pid,
                    command: "connect".into(),
                    ..AuditEntry::default()
                },
            };
            entry.count = Some(1);
            self.audit(entry, response);
        }
    }

    /// The audit entry of `command` from `peer`, before it is carried out.
    fn audit_entry(&self, peer: &Peer, command: &Command) -> AuditEntry {
        let (sp, component, update_id) = command.target();
        AuditEntry {
            time_unix_ms: 0,
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            command: command.name().into(),
            sp: sp.map(String::from),
            component: component.map(String::from),
            update_id,
            image_sha256: None,
            result: String::new(),
            message: None,
            peer: None,
            count: None,
        }
    }

    /// Complete `entry` with what `response` says, log it (target
    /// `audit`) and keep it in the state store.
    pub(crate) fn audit(&self, mut entry: AuditEntry, response: &Response) {
        entry.time_unix_ms = actors::types::unix_ms();
        match (&response.ok, &response.error) {
            (Some(v), _) => {
                entry.result = "ok".into();
                if let Some(id) = v
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                {
                    entry.update_id = Some(id);
                }
                entry.image_sha256 = v
                    .get("image_sha256")
                    .and_then(Value::as_str)
                    .map(String::from);
                if let Some(held) = v.get("took_over").and_then(Value::as_str) {
                    entry.message = Some(format!("took over update {held}, which the SP held"));
                }
            }
            (_, Some(e)) => {
                entry.result = error_name(e.code);
                entry.message = Some(e.message.clone());
            }
            _ => {}
        }
        info!(
            target: "audit",
            uid = entry.uid,
            gid = entry.gid,
            pid = entry.pid,
            peer = entry.peer.as_deref(),
            command = %entry.command,
            sp = entry.sp.as_deref(),
            component = entry.component.as_deref(),
            update_id = entry.update_id.map(|u| u.to_string()),
            image_sha256 = entry.image_sha256.as_deref(),
            result = %entry.result,
            message = entry.message.as_deref(),
            "control command"
        );
        self.gw.registry.audit(entry);
    }

    /// Carry out `command` (not a stream), its images in `fds`.
    pub(crate) async fn execute(&self, command: Command, fds: Vec<OwnedFd>) -> Outcome {
        use rollouts::Change;
        match command {
            Command::Version(_) => Ok(to_value(&sps::version())),
            Command::Health(_) => ok(sps::health(self).await),
            Command::List(_) => ok(sps::list(&self.gw).await),
            Command::State(a) => ok(sps::state(&self.gw, a).await),
            Command::Caboose(a) => ok(sps::caboose(&self.gw, a).await),
            Command::PowerGet(a) => ok(sps::power_get(&self.gw, a).await),
            Command::PowerSet(a) => ok(sps::power_set(&self.gw, a).await),
            Command::SlotGet(a) => ok(sps::slot_get(&self.gw, a).await),
            Command::SlotSet(a) => ok(sps::slot_set(&self.gw, a).await),
            Command::Reset(a) => ok(sps::reset(&self.gw, a).await),
            Command::UpdateStart(a) => ok(updates::start(self, a, fds).await),
            Command::UpdateStatus(a) => ok(updates::status(&self.gw, a).await),
            Command::UpdateAbort(a) => ok(updates::abort(&self.gw, a).await),
            Command::History(a) => ok(updates::history(&self.gw, a).await),
            Command::Audit(a) => Ok(to_value(&updates::audit(self, a).await)),
            Command::RolloutStart(a) => ok(rollouts::start(self, a, fds).await),
            Command::RolloutStatus(a) => ok(rollouts::status(&self.gw, a).await),
            Command::RolloutPause(a) => ok(rollouts::change(&self.gw, a, Change::Pause).await),
            Command::RolloutResume(a) => ok(rollouts::change(&self.gw, a, Change::Resume).await),
            Command::RolloutAbort(a) => ok(rollouts::change(&self.gw, a, Change::Abort).await),
            Command::RolloutList(_) => Ok(to_value(&rollouts::list(&self.gw).await)),
            Command::ConsoleDetach(a) => console::detach(&self.gw, a).await,
            Command::RecoveryUpload(_) => ok(recovery::upload(&self.gw, fds).await),
            Command::RecoveryImages(_) => Ok(to_value(&recovery::images(&self.gw))),
            Command::RecoveryStatus(a) => ok(recovery::status(&self.gw, a).await),
            Command::RecoveryClear(a) => ok(recovery::clear(&self.gw, a).await),
            Command::InstallinatorSet(a) => ok(recovery::installinator_set(&self.gw, a).await),
            Command::InstallinatorClear(a) => ok(recovery::installinator_clear(&self.gw, a).await),
            Command::Watch(_) | Command::RolloutWatch(_) | Command::ConsoleAttach(_) => {
                unreachable!("handled by the connection")
            }
        }
    }
}

fn refusal_key(peer: &Peer, reason: &'static str, command: Option<&Command>) -> refusals::Key {
    refusals::Key {
        uid: peer.uid,
        gid: peer.gid,
        reason,
        command: command.map_or("connect", Command::name).into(),
    }
}

/// Run a stream to a client (`watch`) until it ends or the client goes:
/// a watcher whose peer hung up is noticed by its socket's end of stream,
/// not only when a write fails, and its place is freed.
async fn until_gone(read: &OwnedReadHalf, streamed: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = streamed => {}
        _ = hung_up(read, true) => debug!("watcher gone; its stream ends"),
    }
}

/// Run `request` unless the client hangs up first (`None`). What the
/// client may have sent meanwhile stays unread for its next request.
async fn until_hung_up<T>(
    read: &OwnedReadHalf,
    request: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        done = request => Some(done),
        _ = hung_up(read, false) => None,
    }
}

/// Resolves once the peer has closed its end of the connection. With
/// `discard`, what it sends is read and dropped (a watcher has nothing
/// more to say); without, it is only peeked at, and left for later.
async fn hung_up(read: &OwnedReadHalf, discard: bool) {
    use rustix::net::RecvFlags;
    let stream = read.as_ref();
    let flags = if discard {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::DONTWAIT | RecvFlags::PEEK
    };
    let mut buf = [0u8; 512];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        // Through `try_io`, so a spurious wake clears the readiness.
        let got = stream.try_io(tokio::io::Interest::READABLE, || {
            rustix::net::recv(stream, &mut buf, flags)
                .map(|(n, _)| n)
                .map_err(std::io::Error::from)
        });
        match got {
            Ok(0) => return,
            Ok(_) if discard => {}
            // Data waiting for the next request: look again soon.
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn denied(peer: &Peer, command: Option<&Command>) -> String {
    let who = format!("uid {} (gid {})", peer.uid, peer.gid);
    match command {
        Some(c) => format!(
            "permission denied: {who} may not {} (see [control.access]: operate_users, operate_groups)",
            c.name()
        ),
        None => format!(
            "permission denied: {who} is in none of mgsd's access lists (see [control.access])"
        ),
    }
}

/// Count a response in `mgsd_control_requests_total`.
pub(crate) fn count(command: &'static str, response: &Response) {
    let result = response
        .error
        .as_ref()
        .map_or("ok".to_string(), |e| error_name(e.code));
    metrics::counter!("mgsd_control_requests_total", "command" => command, "result" => result)
        .increment(1);
}

/// The first line a connection sends within [`REFUSAL_WAIT`], if any.
async fn first_line(stream: UnixStream, max: usize) -> (Option<String>, OwnedWriteHalf) {
    let (read, write) = stream.into_split();
    let mut framer = Framer::new(max);
    let mut buf = vec![0u8; READ_BUFFER];
    let line = tokio::time::timeout(REFUSAL_WAIT, async {
        loop {
            if let Some(frame) = framer.next_frame() {
                return match frame {
                    Frame::Line(l, _) => String::from_utf8(l).ok(),
                    Frame::TooLong => None,
                };
            }
            if !matches!(
                framing::fill(read.as_ref(), &mut framer, &mut buf).await,
                Ok(true)
            ) {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten();
    (line, write)
}

/// Answer a connection's first line with one error, then close.
async fn refuse(stream: UnixStream, code: ErrorCode, message: String) {
    let (_, mut write) = first_line(stream, 0).await;
    let _ = send(&mut write, &Response::error(None, code, message)).await;
}

/// Write `response` as one line.
pub(crate) async fn send(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    write.write_all(&line).await
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn error_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Map every registry error to its stable code.
pub fn registry_error(e: RegistryError) -> Failed {
    (error_code(&e), e.to_string())
}

/// The stable code of `e`.
pub fn error_code(e: &RegistryError) -> ErrorCode {
    match e {
        RegistryError::UnknownSp(_) => ErrorCode::UnknownSp,
        RegistryError::BadComponent(_) => ErrorCode::BadComponent,
        RegistryError::UnknownUpdate(_) => ErrorCode::UnknownUpdate,
        RegistryError::BadSlot { .. } => ErrorCode::BadSlot,
        RegistryError::Stopped => ErrorCode::ShuttingDown,
        RegistryError::Socket { .. } | RegistryError::Reconfigure(_) => ErrorCode::Internal,
        RegistryError::Plan(_) => ErrorCode::BadPlan,
        RegistryError::UnknownRollout(_) => ErrorCode::UnknownRollout,
        RegistryError::Update(u) => match u {
            UpdateError::Conflict { .. } | UpdateError::IdTaken { .. } => ErrorCode::UpdateConflict,
            UpdateError::AlreadyRunning { .. }
            | UpdateError::SpHoldsEnded { .. }
            | UpdateError::SpBusy { .. } => ErrorCode::UpdateRunning,
            UpdateError::BadImage(_) => ErrorCode::BadImage,
            UpdateError::ImageUnreadable(_) => ErrorCode::ImageUnreadable,
            UpdateError::AbortRefused { .. } => ErrorCode::AbortRefused,
            UpdateError::Prepare { source, .. } => rpc_code(source),
            UpdateError::Rpc(r) => rpc_code(r),
            UpdateError::Spool(_) | UpdateError::Journal { .. } => ErrorCode::StateUnwritable,
            UpdateError::ShuttingDown => ErrorCode::ShuttingDown,
        },
        RegistryError::Rpc(r) => rpc_code(r),
    }
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
        RpcError::Sp {
            error: SpError::UpdateIsTooLarge,
            ..
        } => ErrorCode::BadImage,
        // Its one update buffer holds another client's update (the message
        // names its id).
        RpcError::Sp {
            error: SpError::UpdateInProgress(_) | SpError::OtherComponentUpdateInProgress(_),
            ..
        } => ErrorCode::UpdateRunning,
        RpcError::Sp { .. } | RpcError::Busy { .. } | RpcError::Unexpected { .. } => {
            ErrorCode::SpError
        }
        RpcError::Timeout { .. } | RpcError::NotDiscovered { .. } | RpcError::Io { .. } => {
            ErrorCode::SpUnreachable
        }
        RpcError::Stopped { .. } => ErrorCode::ShuttingDown,
    }
}

/// Remove the socket file on shutdown (only if it is still ours).
pub fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}
