//! Host phase-2 recovery over HTTP: the image upload, each SP's most recent
//! phase-2 request, and the installinator image id (IPCC).

use super::error::{ApiError, Json, Path};
use super::mgs::{HostPhase2Progress, HostPhase2RecoveryImageId, InstallinatorImageId};
use super::serve::Caller;
use super::sp::{failed, Done, SpPath};
use super::upload::receive;
use super::{Api, Audited};
use crate::api::views::Phase2ProgressView;
use crate::api::{InstallinatorArgs, SpArgs};
use crate::control::recovery;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use std::time::Duration;

/// A phase-2 image, as the request body.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Phase2Body(Vec<u8>);

#[utoipa::path(post, path = "/recovery/host-phase2", operation_id = "recovery_host_phase2_upload",
    description = "Keep a host phase-2 image for recovering hosts, which fetch it through their \
        SP by its SHA-256. The cache holds `recovery.max_images` images and `recovery.max_mib` \
        MiB; a new image evicts the least recently requested.",
    request_body(content = inline(Phase2Body), content_type = "application/octet-stream"),
    responses((status = 200, body = HostPhase2RecoveryImageId),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn upload(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<axum::Json<HostPhase2RecoveryImageId>, ApiError> {
    let what = Audited {
        command: "recovery_upload",
        sp: None,
        component: None,
        update_id: None,
    };
    let api2 = api.clone();
    api.operate(&caller, what, async move {
        let gw = api2.gw().clone();
        let max = gw.registry.phase2().max_bytes();
        let idle = Duration::from_millis(api2.0.config.upload_idle_timeout_ms);
        let too_large = |got| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                format!("{got} bytes or more: the recovery cache holds at most {max} bytes (recovery.max_mib)"),
            )
        };
        let dir = &api2.0.upload_dir;
        let file = receive(body, dir, max, idle, too_large, "the phase-2 image").await?;
        let images = gw.registry.images().clone();
        let image = tokio::task::spawn_blocking(move || images.keep_file(file, max))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", "hashing the image failed"))?
            .map_err(|e| ApiError::bad_request(format!("the phase-2 image cannot be kept: {e}")))?;
        let kept = recovery::keep(&gw, image).map_err(failed)?;
        Ok(axum::Json(HostPhase2RecoveryImageId {
            sha256_hash: kept.sha256_hash,
        }))
    })
    .await
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/host-phase2-progress", operation_id = "sp_host_phase2_progress_get",
    description = "The SP's most recent phase-2 request: how far a recovering host has fetched.",
    params(SpPath),
    responses((status = 200, body = HostPhase2Progress),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn progress_get(
    State(api): State<Api>,
    Path(p): Path<SpPath>,
) -> Result<axum::Json<HostPhase2Progress>, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let view = recovery::status(api.gw(), SpArgs { sp })
        .await
        .map_err(failed)?;
    Ok(axum::Json(match view {
        Phase2ProgressView::Available {
            image_id,
            offset,
            total_size,
            age_ms,
        } => HostPhase2Progress::Available {
            image_id: HostPhase2RecoveryImageId {
                sha256_hash: image_id.sha256_hash,
            },
            offset,
            total_size,
            age: Duration::from_millis(age_ms).into(),
        },
        Phase2ProgressView::None => HostPhase2Progress::None,
    }))
}

#[utoipa::path(delete, path = "/sp/{type}/{slot}/host-phase2-progress", operation_id = "sp_host_phase2_progress_delete",
    description = "Forget the SP's most recent phase-2 request.",
    params(SpPath),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn progress_delete(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<SpPath>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "recovery_clear",
        sp: Some(sp.clone()),
        component: None,
        update_id: None,
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        recovery::clear(&gw, SpArgs { sp }).await.map_err(failed)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(put, path = "/sp/{type}/{slot}/ipcc/installinator-image-id", operation_id = "sp_installinator_image_id_set",
    description = "Set the installinator image ids the sled's host reads over IPCC.",
    params(SpPath), request_body = InstallinatorImageId,
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn installinator_set(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<SpPath>,
    Json(body): Json<InstallinatorImageId>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "installinator_set",
        sp: Some(sp.clone()),
        component: None,
        update_id: Some(body.update_id),
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let args = InstallinatorArgs {
            sp,
            update_id: body.update_id,
            host_phase_2: body.host_phase_2,
            control_plane: body.control_plane,
        };
        recovery::installinator_set(&gw, args)
            .await
            .map_err(failed)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(delete, path = "/sp/{type}/{slot}/ipcc/installinator-image-id", operation_id = "sp_installinator_image_id_delete",
    description = "Clear the installinator image ids.",
    params(SpPath),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = super::error::Error), (status = "5XX", description = "Error", body = super::error::Error)))]
pub(super) async fn installinator_delete(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<SpPath>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "installinator_clear",
        sp: Some(sp.clone()),
        component: None,
        update_id: None,
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        recovery::installinator_clear(&gw, SpArgs { sp })
            .await
            .map_err(failed)?;
        Ok(Done)
    })
    .await
}
