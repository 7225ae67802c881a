//! Handlers of the update commands: start (the image arrives as a
//! descriptor), status, abort, watch, history, and the audit log.

use super::{registry_error, send, to_value, ControlServer, Outcome};
use crate::api::{
    AuditArgs, ComponentArgs, ErrorCode, HistoryArgs, Response, UpdateAbortArgs, UpdateStartArgs,
    MAX_LIMIT,
};
use serde_json::{json, Value};
use std::os::fd::OwnedFd;
use tokio::net::unix::OwnedWriteHalf;

/// Start an update of the image whose descriptor came with the request.
pub(super) async fn start(s: &ControlServer, a: UpdateStartArgs, mut fds: Vec<OwnedFd>) -> Outcome {
    let file = match (fds.pop(), fds.is_empty()) {
        (Some(fd), true) => std::fs::File::from(fd),
        (None, _) => {
            return Err((
                ErrorCode::BadRequest,
                "update_start needs the image: send its open file descriptor with the request \
                 line (SCM_RIGHTS); mgsctl does this for you"
                    .into(),
            ))
        }
        (Some(_), false) => {
            return Err((
                ErrorCode::BadRequest,
                "update_start takes exactly one descriptor, the image's".into(),
            ))
        }
    };
    let activate = match (a.activate, a.no_watchdog || a.watchdog_ms.is_some()) {
        (true, _) => Some(
            crate::api::reset_options(a.no_watchdog, a.watchdog_ms)
                .map_err(|e| (ErrorCode::BadRequest, e))?,
        ),
        (false, true) => {
            return Err((
                ErrorCode::BadRequest,
                "no_watchdog and watchdog_ms go with \"activate\": true".into(),
            ))
        }
        (false, false) => None,
    };
    let id = a.id.unwrap_or_else(uuid::Uuid::new_v4);
    let record = if a.archive {
        s.handle
            .start_update_archive(
                &a.sp,
                &a.component,
                a.slot,
                id,
                file,
                a.force_board,
                activate,
            )
            .await
    } else {
        s.handle
            .start_update_fd(&a.sp, &a.component, a.slot, id, file, activate)
            .await
    }
    .map_err(registry_error)?;
    Ok(to_value(&record))
}

pub(super) async fn status(s: &ControlServer, a: ComponentArgs) -> Outcome {
    let view = s
        .handle
        .update_status(&a.sp, &a.component)
        .await
        .map_err(registry_error)?;
    Ok(to_value(&view))
}

pub(super) async fn abort(s: &ControlServer, a: UpdateAbortArgs) -> Outcome {
    s.handle
        .abort_update(&a.sp, &a.component, a.id)
        .await
        .map_err(registry_error)?;
    Ok(json!({ "id": a.id, "aborted": true }))
}

/// Finished updates, newest first, with duration and mean rate.
pub(super) async fn history(s: &ControlServer, a: HistoryArgs) -> Outcome {
    let sp = match a.sp {
        Some(sp) => Some(
            s.handle
                .sp(&sp)
                .await
                .map_err(registry_error)?
                .name()
                .clone(),
        ),
        None => None,
    };
    let query = actors::registry::History {
        sp,
        component: a.component,
        since_unix_ms: a.since_unix_ms,
        limit: a.limit.min(MAX_LIMIT),
    };
    let records = s.handle.history(query).await.map_err(registry_error)?;
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

/// Operate commands and refusals, newest first (kept only with a state
/// directory).
pub(super) async fn audit(s: &ControlServer, a: AuditArgs) -> Outcome {
    let entries = s
        .handle
        .audit_log(a.since_unix_ms.unwrap_or(0), a.limit.min(MAX_LIMIT))
        .await;
    Ok(to_value(&entries))
}

/// Stream one update's record until it ends (the final record is the
/// `ok` line), or every update's changes until the client leaves. The
/// records come from each update's `watch`: a slow client skips
/// intermediate states but never misses the last one.
pub(super) async fn watch(
    s: &ControlServer,
    write: &mut OwnedWriteHalf,
    req_id: Option<Value>,
    id: Option<uuid::Uuid>,
) {
    let Some(id) = id else {
        return watch_all(s, write, req_id).await;
    };
    let handle = match s.handle.update(id).await {
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

async fn watch_all(s: &ControlServer, write: &mut OwnedWriteHalf, req_id: Option<Value>) {
    use futures_util::StreamExt;
    let mut followed = std::collections::HashSet::new();
    let mut streams = futures_util::stream::SelectAll::new();
    let mut add = |handle: actors::UpdateHandle,
                   streams: &mut futures_util::stream::SelectAll<_>| {
        if followed.insert(handle.id()) {
            streams.push(Box::pin(follow(handle.watch())));
        }
    };
    let Ok((running, mut started)) = s.handle.subscribe().await else {
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
                    match s.handle.subscribe().await {
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
