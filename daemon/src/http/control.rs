//! `POST /mgsd/v1/control`: the control socket's protocol over HTTP, for
//! `mgsctl --http`. The body is one request line (the socket's JSON),
//! then the images the command takes (`update_start`, `rollout_start`),
//! back to back, their lengths in `?images=`. The answer is the socket's
//! response lines (`application/x-ndjson`): one, or a `watch` stream.
//! The caller's class and the audit are the HTTP listener's.

use super::error::{ApiError, Query};
use super::upload::{Upload, UploadFile};
use super::{Api, Caller};
use crate::api::{parse_request, Class, Command, ErrorCode, Response};
use crate::control::{send, ControlServer};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// Query of `control`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ControlQuery {
    /// The lengths of the images after the request line, in the order
    /// the command names them (comma-separated bytes).
    #[serde(default)]
    pub images: Option<String>,
}

#[utoipa::path(post, path = "/mgsd/v1/control", operation_id = "mgsd_control",
    description = "The control socket's protocol (docs/control-protocol.md) over HTTP: \
        the body is one request line, then the images the command takes, their lengths in \
        `images`. Answers the socket's response lines; a `watch` streams them.",
    params(ControlQuery),
    request_body(content = inline(super::update::ImageBody), content_type = "application/octet-stream"),
    responses((status = 200, description = "response lines", content_type = "application/x-ndjson"),
        (status = "4XX", description = "Error", body = super::Error),
        (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn control(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ControlQuery>,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let lengths: Vec<u64> = match q.images.as_deref().filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|n| n.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ApiError::bad_request(format!("images={list}: byte counts, comma-separated"))
            })?,
    };
    if lengths.len() > 16
        || lengths
            .iter()
            .any(|&n| n > actors::intake::MAX_ARCHIVE_BYTES)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!(
                "at most 16 images of at most {} bytes each",
                actors::intake::MAX_ARCHIVE_BYTES
            ),
        ));
    }
    let control = api.0.control.clone();
    let idle = Duration::from_millis(api.0.config.upload_idle_timeout_ms);
    let mut upload = Upload::new(body, idle);
    let mut pending = Vec::new();
    let line = read_line(&mut upload, &mut pending, control.max_request_bytes()).await?;
    let request = match parse_request(&line) {
        Ok(r) => r,
        Err(response) => return Ok(lines(&response)),
    };
    let command = request.command;
    let class = caller.class.clone().unwrap_or(Class::Read);
    if command.class() > class {
        // As any refused action: 403 (the images unread are drained), the
        // refusal audited once a minute per client and command.
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "PermissionDenied",
            format!(
                "permission denied: {} may not {} (see [http.access] and trusted_network)",
                caller.who(),
                command.name()
            ),
        );
        api.refused(&caller, audit_entry(&caller, &command), &e);
        return Err(e);
    }
    let dir = api.0.upload_dir.clone();
    let mut fds = Vec::new();
    for len in lengths {
        fds.push(receive(&mut upload, &mut pending, len, &dir).await?);
    }
    if matches!(command, Command::Watch(_) | Command::RolloutWatch(_)) {
        return Ok(watch(control, command, request.request_id));
    }
    let audited = (command.class() == Class::Operate).then(|| audit_entry(&caller, &command));
    let name = command.name();
    // In a task of its own: a client that goes cancels nothing.
    let run = tokio::spawn(async move {
        let response = match control.execute(command, fds).await {
            Ok(value) => Response::ok(request.request_id, value),
            Err((code, message)) => Response::error(request.request_id, code, message),
        };
        crate::control::count(name, &response);
        if let Some(entry) = audited {
            control.audit(entry, &response);
        }
        response
    });
    let response = run.await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "the command's task ended unexpectedly",
        )
    })?;
    Ok(lines(&response))
}

fn audit_entry(caller: &Caller, command: &Command) -> actors::store::AuditEntry {
    let (sp, component, update_id) = command.target();
    actors::store::AuditEntry {
        uid: u32::MAX,
        gid: u32::MAX,
        command: command.name().into(),
        sp: sp.map(String::from),
        component: component.map(String::from),
        update_id,
        peer: Some(caller.who()),
        ..Default::default()
    }
}

fn lines(response: &Response) -> axum::response::Response {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    ([(header::CONTENT_TYPE, "application/x-ndjson")], line).into_response()
}

/// A watch streamed as response lines until it ends or the client goes.
fn watch(
    control: ControlServer,
    command: Command,
    id: Option<serde_json::Value>,
) -> axum::response::Response {
    let (mut write, read) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        match command {
            Command::Watch(w) => {
                crate::control::updates::watch(&control, &mut write, id, w.id).await
            }
            Command::RolloutWatch(a) => {
                crate::control::rollouts::watch(&control, &mut write, id, a).await
            }
            _ => {
                let r = Response::error(id, ErrorCode::Internal, "not a stream");
                let _ = send(&mut write, &r).await;
            }
        }
    });
    let chunks = futures_util::stream::unfold(read, |mut read| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), read))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// The request line, at most `max` bytes; what follows it stays in
/// `pending`.
async fn read_line(
    upload: &mut Upload,
    pending: &mut Vec<u8>,
    max: usize,
) -> Result<String, ApiError> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let rest = pending.split_off(end + 1);
            let line = std::mem::replace(pending, rest);
            return String::from_utf8(line)
                .map_err(|_| ApiError::bad_request("the request line is not UTF-8"));
        }
        if pending.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                format!("the request line exceeds {max} bytes (control.max_request_bytes)"),
            ));
        }
        match upload.next().await? {
            Some(chunk) => pending.extend_from_slice(&chunk),
            None if pending.is_empty() => {
                return Err(ApiError::bad_request("empty body: send a request line"))
            }
            None => {
                let line = std::mem::take(pending);
                return String::from_utf8(line)
                    .map_err(|_| ApiError::bad_request("the request line is not UTF-8"));
            }
        }
    }
}

/// The next image, exactly `len` bytes, into a new unlinked file.
async fn receive(
    upload: &mut Upload,
    pending: &mut Vec<u8>,
    len: u64,
    dir: &std::path::Path,
) -> Result<OwnedFd, ApiError> {
    let mut file = UploadFile::new(dir)?;
    let mut left = len;
    loop {
        let take = (pending.len() as u64).min(left) as usize;
        if take > 0 {
            file.push(&pending[..take]).await?;
            pending.drain(..take);
            left -= take as u64;
        }
        if left == 0 {
            break;
        }
        match upload.next().await? {
            Some(chunk) => pending.extend_from_slice(&chunk),
            None => {
                return Err(ApiError::bad_request(format!(
                    "the body ended {left} bytes short of its images"
                )))
            }
        }
    }
    Ok(OwnedFd::from(file.finish().await?))
}
