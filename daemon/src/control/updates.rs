//! Handlers of the update commands: start (the image arrives as a
//! descriptor), status, abort, watch, history, and the audit log.

use super::{registry_error, send, ControlServer, Failed};
use crate::api::views::{
    AbortView, AuditEntry, HistoryRow, Holder, SpUpdateState, UpdateRecord, UpdateStatusView,
};
use crate::api::{
    AuditArgs, ComponentArgs, ErrorCode, HistoryArgs, Response, UpdateAbortArgs, UpdateStartArgs,
    MAX_LIMIT,
};
use actors::Gateway;
use actors::{ImageSource, StartUpdate, UpdateHandle};
use futures_util::stream::SelectAll;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::collections::HashSet;
use std::os::fd::OwnedFd;

/// Start an update of the image whose descriptor came with the request.
pub(super) async fn start(
    s: &ControlServer,
    a: UpdateStartArgs,
    mut fds: Vec<OwnedFd>,
) -> Result<UpdateRecord, Failed> {
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
    let activate = a.activation().map_err(|e| (ErrorCode::BadRequest, e))?;
    let source = if a.archive {
        ImageSource::Archive(file)
    } else {
        ImageSource::File(file)
    };
    let start = StartUpdate {
        activate,
        force_board: a.force_board,
        take_over: a.take_over,
        ..StartUpdate::new(
            &a.sp,
            &a.component,
            a.slot,
            a.id.unwrap_or_else(uuid::Uuid::new_v4),
            source,
        )
    };
    let handle =
        s.gw.registry
            .start_update(start)
            .await
            .map_err(registry_error)?;
    Ok(UpdateRecord::from(&handle))
}

pub(crate) async fn status(gw: &Gateway, a: ComponentArgs) -> Result<UpdateStatusView, Failed> {
    let view = gw
        .registry
        .update_status(&a.sp, &a.component)
        .await
        .map_err(registry_error)?;
    let held = view
        .sp_status
        .id()
        .filter(|_| !matches!(view.sp_status, SpUpdateState::Aborted { .. }));
    let sp_status_holder = match held {
        Some(id) => Some(
            match gw.registry.is_bound(id).await.map_err(registry_error)? {
                true => Holder::Ours,
                false => Holder::UnknownClient,
            },
        ),
        None => None,
    };
    Ok(UpdateStatusView {
        sp: view.sp.to_string(),
        component: view.component.to_string(),
        sp_status: view.sp_status,
        sp_status_age_ms: view.sp_status_age.as_millis() as u64,
        sp_status_holder,
        delivery: view.delivery.as_ref().map(UpdateRecord::from),
    })
}

pub(crate) async fn abort(gw: &Gateway, a: UpdateAbortArgs) -> Result<AbortView, Failed> {
    gw.registry
        .abort_update(&a.sp, &a.component, a.id)
        .await
        .map_err(registry_error)?;
    Ok(AbortView {
        id: a.id,
        aborted: true,
    })
}

/// Finished updates, newest first, with duration and mean rate.
pub(crate) async fn history(gw: &Gateway, a: HistoryArgs) -> Result<Vec<HistoryRow>, Failed> {
    let r = &gw.registry;
    let sp = match a.sp {
        Some(sp) => Some(r.sp(&sp).await.map_err(registry_error)?.name().clone()),
        None => None,
    };
    let component = match a.component {
        Some(c) => Some(actors::types::parse_component(&c).map_err(|e| registry_error(e.into()))?),
        None => None,
    };
    let query = actors::registry::History {
        sp,
        component,
        since_unix_ms: a.since_unix_ms,
        limit: a.limit.min(MAX_LIMIT),
    };
    let updates = r.history(query).await.map_err(registry_error)?;
    Ok(updates
        .iter()
        .map(|u| {
            let record = UpdateRecord::from(u);
            let duration_ms = record
                .finished_unix_ms
                .map(|f| f.saturating_sub(record.started_unix_ms));
            HistoryRow {
                mean_bytes_per_second: duration_ms
                    .filter(|d| *d > 0)
                    .map(|d| record.bytes_acked * 1000 / d),
                duration_ms,
                record,
            }
        })
        .collect())
}

/// Operate commands and refusals, newest first (kept only with a state
/// directory). Refusals summed so far this interval are written first, so
/// the answer is up to date.
pub(super) async fn audit(s: &ControlServer, a: AuditArgs) -> Vec<AuditEntry> {
    s.flush_refusals();
    s.gw.registry
        .audit_log(a.since_unix_ms.unwrap_or(0), a.limit.min(MAX_LIMIT))
        .await
}

/// Stream one update's record until it ends (the final record is the
/// `ok` line), or every update's changes until the client leaves. The
/// records come from each update's `watch`: a slow client skips
/// intermediate states but never misses the last one.
pub(crate) async fn watch(
    s: &ControlServer,
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    req_id: Option<Value>,
    id: Option<uuid::Uuid>,
) {
    let Some(id) = id else {
        return watch_all(s, write, req_id).await;
    };
    let handle = match s.gw.registry.update(id).await {
        Ok(h) => h,
        Err(e) => {
            let (code, message) = registry_error(e);
            let _ = send(write, &Response::error(req_id, code, message)).await;
            return;
        }
    };
    let mut rx = handle.watch();
    loop {
        let phase = rx.borrow_and_update().phase;
        let record = super::to_value(&UpdateRecord::from(&handle));
        if phase.is_terminal() {
            let _ = send(write, &Response::ok(req_id, record)).await;
            return;
        }
        if send(write, &Response::event(req_id.clone(), record))
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

async fn watch_all(
    s: &ControlServer,
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    req_id: Option<Value>,
) {
    let records = match follow_all(&s.gw).await {
        Ok(records) => records,
        Err(_) => {
            let r = Response::error(req_id, ErrorCode::ShuttingDown, "daemon is shutting down");
            let _ = send(write, &r).await;
            return;
        }
    };
    let mut records = std::pin::pin!(records);
    while let Some(record) = records.next().await {
        let event = Response::event(req_id.clone(), super::to_value(&record));
        if send(write, &event).await.is_err() {
            return;
        }
    }
}

/// Every running update's records, and those of updates started later,
/// until the daemon stops (the socket's `watch` and HTTP's stream).
pub(crate) async fn follow_all(
    gw: &Gateway,
) -> Result<impl Stream<Item = UpdateRecord> + Send + 'static, actors::RegistryError> {
    let (running, started) = gw.registry.subscribe().await?;
    let mut all = All {
        gw: gw.clone(),
        followed: HashSet::new(),
        streams: SelectAll::new(),
        started,
    };
    for h in running {
        all.add(h);
    }
    Ok(futures_util::stream::unfold(all, |mut all| async move {
        loop {
            tokio::select! {
                Some(record) = all.streams.next() => return Some((record, all)),
                new = all.started.recv() => match new {
                    Ok(h) => all.add(h),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some starts: pick up whatever runs now.
                        let (running, feed) = all.gw.registry.subscribe().await.ok()?;
                        all.started = feed;
                        for h in running {
                            all.add(h);
                        }
                    }
                    Err(_) => return None,
                },
            }
        }
    }))
}

type Records = std::pin::Pin<Box<dyn Stream<Item = UpdateRecord> + Send>>;

/// What [`follow_all`] follows.
struct All {
    gw: Gateway,
    followed: HashSet<uuid::Uuid>,
    streams: SelectAll<Records>,
    started: tokio::sync::broadcast::Receiver<UpdateHandle>,
}

impl All {
    fn add(&mut self, handle: UpdateHandle) {
        if self.followed.insert(handle.id()) {
            self.streams.push(Box::pin(follow(handle)));
        }
    }
}

/// Each record an update publishes, through its final one (the SP had
/// accepted it before anyone could follow it).
fn follow(handle: UpdateHandle) -> impl Stream<Item = UpdateRecord> + Send {
    let rx = handle.watch();
    futures_util::stream::unfold(Some((handle, rx, true)), |state| async move {
        let (handle, mut rx, fresh) = state?;
        if !fresh && rx.changed().await.is_err() {
            return None;
        }
        let phase = rx.borrow_and_update().phase;
        let record = UpdateRecord::from(&handle);
        let next = (!phase.is_terminal()).then_some((handle, rx, false));
        Some((record, next))
    })
}
