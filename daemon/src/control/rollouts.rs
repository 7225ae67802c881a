//! Handlers of the rollout commands: start (the plan's images arrive as
//! descriptors), status, watch, pause, resume, abort and list.

use super::{registry_error, send, to_value, ControlServer, Failed};
use crate::api::views::RolloutView;
use crate::api::{ErrorCode, Response, RolloutArgs, RolloutStartArgs};
use actors::image::LoadError;
use actors::rollout::RolloutHandle;
use actors::rollout_state::RolloutRecord;
use actors::Gateway;
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// A watcher gets at most one record per this long (the last one always).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// A rollout's record with its counts, aggregate rate and ETA, and how
/// its targets' updates go.
async fn view(gw: &Gateway, r: &RolloutRecord) -> RolloutView {
    RolloutView::of(r, &gw.rollouts.live(r).await)
}

pub(super) async fn start(
    s: &ControlServer,
    a: RolloutStartArgs,
    fds: Vec<OwnedFd>,
) -> Result<RolloutView, Failed> {
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
    let intake = s.gw.registry.intake().clone();
    // Read no image past the largest slot of any component; whether each
    // fits its targets' components is the plan check's, with their lines.
    let limit = actors::types::UPDATABLE
        .iter()
        .map(|c| intake.max_image_len(*c))
        .max()
        .unwrap_or(0);
    let mut images = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let file = std::fs::File::from(fd);
        let loaded = intake
            .load_file(file, limit)
            .await
            .map_err(registry_error)?;
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
            Err(e @ (LoadError::Bad(_) | LoadError::TooLarge { .. })) => {
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
    let handle =
        s.gw.rollouts
            .begin(id, a.plan, images)
            .await
            .map_err(registry_error)?;
    Ok(view(&s.gw, &handle.record()).await)
}

fn rollout(gw: &Gateway, id: uuid::Uuid) -> Result<RolloutHandle, Failed> {
    gw.rollouts.get(id).map_err(registry_error)
}

pub(crate) async fn status(gw: &Gateway, a: RolloutArgs) -> Result<RolloutView, Failed> {
    let h = rollout(gw, a.id)?;
    Ok(view(gw, &h.record()).await)
}

/// What a rollout command can ask of a rollout.
pub(crate) enum Change {
    Pause,
    Resume,
    Abort,
}

pub(crate) async fn change(
    gw: &Gateway,
    a: RolloutArgs,
    change: Change,
) -> Result<RolloutView, Failed> {
    let h = rollout(gw, a.id)?;
    let (done, what) = match change {
        Change::Pause => (h.pause().await, "pause"),
        Change::Resume => (h.resume().await, "resume"),
        Change::Abort => (h.abort().await, "abort"),
    };
    let r = h.record();
    if !done {
        return Err((
            ErrorCode::RolloutState,
            format!("cannot {what} rollout {}: it is {}", r.id, r.phase.as_str()),
        ));
    }
    Ok(view(gw, &r).await)
}

pub(crate) async fn list(gw: &Gateway) -> Vec<RolloutView> {
    let mut views = Vec::new();
    for h in gw.rollouts.all() {
        views.push(view(gw, &h.record()).await);
    }
    views
}

/// Stream a rollout's records as events (at most one per
/// [`WATCH_EVERY`]) until it ends; the final record is the `ok` line.
pub(crate) async fn watch(
    s: &ControlServer,
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    req_id: Option<Value>,
    a: RolloutArgs,
) {
    let h = match rollout(&s.gw, a.id) {
        Ok(h) => h,
        Err((code, message)) => {
            let _ = send(write, &Response::error(req_id, code, message)).await;
            return;
        }
    };
    let mut rx = h.watch();
    loop {
        let record = rx.borrow_and_update().clone();
        if record.phase.is_terminal() {
            let _ = send(
                write,
                &Response::ok(req_id, to_value(&view(&s.gw, &record).await)),
            )
            .await;
            return;
        }
        let event = Response::event(req_id.clone(), to_value(&view(&s.gw, &record).await));
        if send(write, &event).await.is_err() {
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
