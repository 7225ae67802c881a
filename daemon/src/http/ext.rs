//! mgsd's own paths, under `/mgsd/v1`: the SP list with reachability
//! and link, updates by id, history, the audit, rollouts, and a stream of
//! update records (server-sent events) to follow updates without
//! polling. The bodies are the control socket's views
//! (docs/control-protocol.md), as JSON.

use super::error::{ApiError, Path, Query};
use super::mgs::SpIdentifier;
use super::sp::failed;
use super::{Api, Audited, Caller};
use crate::api::views::{AuditEntry, HistoryRow, RolloutView, SpRow, UpdateRecord};
use crate::api::{HistoryArgs, RolloutArgs, DEFAULT_LIMIT, MAX_LIMIT};
use crate::control::{rollouts, sps, updates};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

/// An SP as `list` shows it, with its place in the rack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpListRow {
    /// `None` for an SP without `type` and `slot`.
    pub place: Option<SpIdentifier>,
    #[serde(flatten)]
    pub sp: SpRow,
}

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/mgsd/v1/sps", get(list))
        .route("/mgsd/v1/control", post(super::control::control))
        .route("/mgsd/v1/updates/stream", get(stream))
        .route("/mgsd/v1/updates/{id}", get(update))
        .route("/mgsd/v1/history", get(history))
        .route("/mgsd/v1/audit", get(audit))
        .route("/mgsd/v1/rollouts", get(rollout_list))
        .route("/mgsd/v1/rollouts/{id}", get(rollout_status))
        .route("/mgsd/v1/rollouts/{id}/pause", post(rollout_pause))
        .route("/mgsd/v1/rollouts/{id}/resume", post(rollout_resume))
        .route("/mgsd/v1/rollouts/{id}/abort", post(rollout_abort))
}

#[utoipa::path(get, path = "/mgsd/v1/sps", operation_id = "mgsd_sp_list",
    description = "Every configured SP with what its actor last saw: reachability, link, \
        identity, versions, round-trip estimates and the update it runs. Asks no SP.",
    responses((status = 200, description = "`list` rows (docs/control-protocol.md) with \
        `place`", content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn list(State(api): State<Api>) -> Result<Json<Vec<SpListRow>>, ApiError> {
    let rows = sps::list(api.gw()).await.map_err(failed)?;
    Ok(Json(
        rows.into_iter()
            .map(|sp| SpListRow {
                place: api.identifier(&sp.name),
                sp,
            })
            .collect(),
    ))
}

/// `{id}` of an update or a rollout.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    pub id: uuid::Uuid,
}

#[utoipa::path(get, path = "/mgsd/v1/updates/{id}", operation_id = "mgsd_update_get",
    description = "An update's record: running, or remembered in the history.",
    params(IdPath),
    responses((status = 200, description = "an update record (docs/control-protocol.md)",
        content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn update(
    State(api): State<Api>,
    Path(p): Path<IdPath>,
) -> Result<Json<UpdateRecord>, ApiError> {
    let handle = api
        .gw()
        .registry
        .update(p.id)
        .await
        .map_err(|e| failed(crate::control::registry_error(e)))?;
    Ok(Json(UpdateRecord::from(&handle)))
}

/// Query of `history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this SP's (name or serial).
    pub sp: Option<String>,
    pub component: Option<String>,
    /// Only updates finished since (ms since the epoch).
    pub since_unix_ms: Option<u64>,
    /// At most this many, newest first (default 50, at most 10000).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/mgsd/v1/history", operation_id = "mgsd_history",
    description = "Finished updates, newest first, with duration and mean rate.",
    params(HistoryQuery),
    responses((status = 200, description = "history rows (docs/control-protocol.md)",
        content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn history(
    State(api): State<Api>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<HistoryRow>>, ApiError> {
    let args = HistoryArgs {
        sp: q.sp,
        component: q.component,
        since_unix_ms: q.since_unix_ms,
        limit: q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
    };
    Ok(Json(
        updates::history(api.gw(), args).await.map_err(failed)?,
    ))
}

/// Query of `audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub since_unix_ms: Option<u64>,
    /// At most this many, newest first (default 50, at most 10000).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/mgsd/v1/audit", operation_id = "mgsd_audit",
    description = "Operate calls and refusals, from the socket and HTTP, newest first \
        (kept only with a state directory). HTTP rows name the client in `peer`.",
    params(AuditQuery),
    responses((status = 200, description = "audit entries (docs/control-protocol.md)",
        content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn audit(
    State(api): State<Api>,
    Query(q): Query<AuditQuery>,
) -> Json<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Json(
        api.gw()
            .registry
            .audit_log(q.since_unix_ms.unwrap_or(0), limit)
            .await,
    )
}

#[utoipa::path(get, path = "/mgsd/v1/rollouts", operation_id = "mgsd_rollout_list",
    description = "Every rollout this daemon knows, with counts, rate and ETA.",
    responses((status = 200, description = "rollout views (docs/control-protocol.md)",
        content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn rollout_list(State(api): State<Api>) -> Json<Vec<RolloutView>> {
    Json(rollouts::list(api.gw()).await)
}

#[utoipa::path(get, path = "/mgsd/v1/rollouts/{id}", operation_id = "mgsd_rollout_get",
    description = "One rollout and how its targets' updates go.",
    params(IdPath),
    responses((status = 200, description = "a rollout view (docs/control-protocol.md)",
        content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn rollout_status(
    State(api): State<Api>,
    Path(p): Path<IdPath>,
) -> Result<Json<RolloutView>, ApiError> {
    let args = RolloutArgs { id: p.id };
    Ok(Json(
        rollouts::status(api.gw(), args).await.map_err(failed)?,
    ))
}

async fn rollout_change(
    api: Api,
    caller: Caller,
    id: uuid::Uuid,
    change: rollouts::Change,
    command: &'static str,
) -> Result<Json<RolloutView>, ApiError> {
    let what = Audited {
        command,
        sp: None,
        component: None,
        update_id: Some(id),
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let view = rollouts::change(&gw, RolloutArgs { id }, change)
            .await
            .map_err(failed)?;
        Ok(Json(view))
    })
    .await
}

#[utoipa::path(post, path = "/mgsd/v1/rollouts/{id}/pause", operation_id = "mgsd_rollout_pause",
    description = "Start no new wave; what runs finishes.",
    params(IdPath),
    responses((status = 200, description = "the rollout view", content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn rollout_pause(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<IdPath>,
) -> Result<Json<RolloutView>, ApiError> {
    rollout_change(api, caller, p.id, rollouts::Change::Pause, "rollout_pause").await
}

#[utoipa::path(post, path = "/mgsd/v1/rollouts/{id}/resume", operation_id = "mgsd_rollout_resume",
    description = "Go on with a paused rollout.",
    params(IdPath),
    responses((status = 200, description = "the rollout view", content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn rollout_resume(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<IdPath>,
) -> Result<Json<RolloutView>, ApiError> {
    rollout_change(
        api,
        caller,
        p.id,
        rollouts::Change::Resume,
        "rollout_resume",
    )
    .await
}

#[utoipa::path(post, path = "/mgsd/v1/rollouts/{id}/abort", operation_id = "mgsd_rollout_abort",
    description = "Abort every running target's update and start no more.",
    params(IdPath),
    responses((status = 200, description = "the rollout view", content_type = "application/json"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn rollout_abort(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<IdPath>,
) -> Result<Json<RolloutView>, ApiError> {
    rollout_change(api, caller, p.id, rollouts::Change::Abort, "rollout_abort").await
}

#[utoipa::path(get, path = "/mgsd/v1/updates/stream", operation_id = "mgsd_update_stream",
    description = "Server-sent events: a comment once the subscription is in place, then \
        one `update` event (an update record) each time a running update changes, for every update, those started later included. A slow \
        client skips intermediate records, never an update's last.",
    responses((status = 200, description = "text/event-stream of update records",
        content_type = "text/event-stream"),
        (status = "4XX", description = "Error", body = super::Error), (status = "5XX", description = "Error", body = super::Error)))]
pub(super) async fn stream(
    State(api): State<Api>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let records = updates::follow_all(api.gw())
        .await
        .map_err(|e| failed(crate::control::registry_error(e)))?;
    let events = records.map(|record| {
        Ok(Event::default()
            .event("update")
            .json_data(&record)
            .unwrap_or_else(|_| Event::default().comment("unserialisable record")))
    });
    // A first comment says the subscription is in place: a client may
    // start what it wants to follow once it reads it.
    let hello = futures_util::stream::once(async {
        Ok(Event::default().comment("following every update"))
    });
    Ok(Sse::new(hello.chain(events)).keep_alive(KeepAlive::default()))
}
