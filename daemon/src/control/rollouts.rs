//! Handlers of the rollout commands: start (the plan's images arrive as
//! descriptors), status, watch, pause, resume, abort and list.

use super::{registry_error, send, to_value, ControlServer, Outcome};
use crate::api::{ErrorCode, Response, RolloutArgs, RolloutStartArgs};
use actors::rollout_state::RolloutRecord;
use serde_json::{json, Value};
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::net::unix::OwnedWriteHalf;

/// A watcher gets at most one record per this long (the last one always).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// A rollout's record with its counts, aggregate rate and ETA.
pub(super) fn view(r: &RolloutRecord) -> Value {
    let (rate, eta) = r.rate_and_eta();
    let mut v = to_value(r);
    v["counts"] = to_value(&r.counts());
    v["rate_bytes_per_second"] = json!(rate);
    v["eta_s"] = json!(eta);
    v
}

pub(super) async fn start(s: &ControlServer, a: RolloutStartArgs, fds: Vec<OwnedFd>) -> Outcome {
    let wanted = a
        .plan
        .targets
        .iter()
        .map(|t| t.image + 1)
        .max()
        .unwrap_or(0);
    if fds.len() != wanted {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "the plan names {wanted} image(s) but {} descriptor(s) came with it: send each \
                 image's open file (SCM_RIGHTS) with the request line, in index order",
                fds.len()
            ),
        ));
    }
    let handle = s.handle.clone();
    // Read no image past the largest slot of any component; whether each
    // fits its targets' components is the plan check's, with their lines.
    let limit = actors::registry::UPDATABLE
        .iter()
        .map(|c| handle.max_image_len(*c))
        .max()
        .unwrap_or(0);
    let mut images = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let file = std::fs::File::from(fd);
        let store = handle.images().clone();
        let loaded = tokio::task::spawn_blocking(move || store.load(&file, limit))
            .await
            .map_err(|_| {
                (
                    ErrorCode::ShuttingDown,
                    "daemon is shutting down".to_string(),
                )
            })?;
        let lines: Vec<String> = a
            .plan
            .targets
            .iter()
            .filter(|t| t.image == i)
            .map(|t| {
                t.line
                    .map_or("a [[target]]".into(), |l| format!("line {l}"))
            })
            .collect();
        match loaded {
            Ok(image) => images.push(image),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let problems: Vec<String> = lines.iter().map(|l| format!("{l}: {e}")).collect();
                return Err((
                    ErrorCode::BadPlan,
                    format!("the plan is not valid: {}", problems.join("; ")),
                ));
            }
            Err(e) => {
                return Err((
                    ErrorCode::ImageUnreadable,
                    format!("{}: cannot read the image: {e}", lines.join(", ")),
                ))
            }
        }
    }
    let id = a.id.unwrap_or_else(uuid::Uuid::new_v4);
    let record = s
        .handle
        .start_rollout(id, a.plan, images)
        .await
        .map_err(registry_error)?;
    Ok(view(&record))
}

pub(super) async fn status(s: &ControlServer, a: RolloutArgs) -> Outcome {
    let h = s.handle.rollout(a.id).await.map_err(registry_error)?;
    Ok(view(&h.record()))
}

pub(super) async fn pause(s: &ControlServer, a: RolloutArgs) -> Outcome {
    let h = s.handle.rollout(a.id).await.map_err(registry_error)?;
    let done = h.pause().await;
    answer(done, &h.record(), "pause")
}

pub(super) async fn resume(s: &ControlServer, a: RolloutArgs) -> Outcome {
    let h = s.handle.rollout(a.id).await.map_err(registry_error)?;
    let done = h.resume().await;
    answer(done, &h.record(), "resume")
}

pub(super) async fn abort(s: &ControlServer, a: RolloutArgs) -> Outcome {
    let h = s.handle.rollout(a.id).await.map_err(registry_error)?;
    let done = h.abort().await;
    answer(done, &h.record(), "abort")
}

fn answer(done: bool, r: &RolloutRecord, what: &str) -> Outcome {
    if done {
        Ok(view(r))
    } else {
        Err((
            ErrorCode::RolloutState,
            format!("cannot {what} rollout {}: it is {}", r.id, r.phase.as_str()),
        ))
    }
}

pub(super) async fn list(s: &ControlServer) -> Outcome {
    let all = s.handle.rollouts().await.map_err(registry_error)?;
    Ok(Value::Array(
        all.iter().map(|h| view(&h.record())).collect(),
    ))
}

/// Stream a rollout's records as events (at most one per
/// [`WATCH_EVERY`]) until it ends; the final record is the `ok` line.
pub(super) async fn watch(
    s: &ControlServer,
    write: &mut OwnedWriteHalf,
    req_id: Option<Value>,
    a: RolloutArgs,
) {
    let h = match s.handle.rollout(a.id).await {
        Ok(h) => h,
        Err(e) => {
            let (code, message) = registry_error(e);
            let _ = send(write, &Response::error(req_id, code, message)).await;
            return;
        }
    };
    let mut rx = h.watch();
    loop {
        let record = rx.borrow_and_update().clone();
        if record.phase.is_terminal() {
            let _ = send(write, &Response::ok(req_id, view(&record))).await;
            return;
        }
        if send(write, &Response::event(req_id.clone(), view(&record)))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(WATCH_EVERY).await;
        if rx.changed().await.is_err() && !rx.borrow().phase.is_terminal() {
            let r = Response::error(req_id, ErrorCode::ShuttingDown, "daemon is shutting down");
            let _ = send(write, &r).await;
            return;
        }
    }
}
