//! The reference's update paths: start (the image is the request body,
//! streamed to an unlinked file in the state directory with the
//! component's limit enforced as it arrives), status from the SP, and
//! abort by id.

use super::error::{ApiError, Error, Json, Path, Query};
use super::mgs::{SpUpdateStatus, UpdateAbortBody, UpdateQuery};
use super::sp::{component_args, failed, ComponentPath, Done};
use super::upload::receive;
use super::{Api, Audited, Caller};
use crate::api::UpdateAbortArgs;
use crate::control::updates;
use actors::{ImageSource, StartUpdate};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;
use gateway_messages::SpComponent;
use std::time::Duration;

/// An update's image, as the request body.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ImageBody(Vec<u8>);

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/update",
    operation_id = "sp_component_update",
    description = "Start an update. The body is a Hubris archive for `sp`, `rot` and \
        `stage0`, the raw image for `host-boot-flash`. Answered once the SP has accepted \
        the update (its prepare); the image is then delivered in the background, and a \
        client that goes away stops nothing. The same `id` with the same image is the same \
        update (204 again); with another image, 409.",
    params(ComponentPath, UpdateQuery),
    request_body(content = inline(ImageBody), content_type = "application/octet-stream"),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn start(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
    Query(q): Query<UpdateQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "update_start",
        sp: Some(sp.clone()),
        component: Some(p.component.clone()),
        update_id: Some(q.id),
    };
    let api2 = api.clone();
    api.operate(&caller, what, async move {
        let idle = Duration::from_millis(api2.0.config.upload_idle_timeout_ms);
        // A refused upload's body is drained by `frame`.
        let (component, archive, max) = check(&api2, &sp, &p.component, q.firmware_slot, &headers)?;
        let too_large = |got| too_large(component, archive, got, max);
        let dir = &api2.0.upload_dir;
        let file = receive(body, dir, max, idle, too_large, "the image").await?;
        let source = if archive {
            ImageSource::Archive(file)
        } else {
            ImageSource::Upload(file)
        };
        let start = StartUpdate::new(&sp, &p.component, q.firmware_slot, q.id, source);
        api2.gw()
            .registry
            .start_update(start)
            .await
            .map_err(|e| failed(crate::control::registry_error(e)))?;
        Ok(Done)
    })
    .await
}

/// What an upload is for (component, whether an archive, its limit), or
/// why it is refused before its body is read.
fn check(
    api: &Api,
    sp: &str,
    component_name: &str,
    firmware_slot: u16,
    headers: &HeaderMap,
) -> Result<(SpComponent, bool, u64), ApiError> {
    let component = actors::types::parse_updatable(component_name)
        .map_err(|e| failed(crate::control::registry_error(e.into())))?;
    let slots = actors::types::update_slots(component);
    if firmware_slot >= slots {
        return Err(failed(crate::control::registry_error(
            actors::RegistryError::BadSlot {
                sp: sp.into(),
                component,
                slot: firmware_slot,
                slots,
            },
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if content_type.as_deref() != Some("application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the image is sent as content-type application/octet-stream, not {}",
                content_type.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    let archive = component != SpComponent::HOST_CPU_BOOT_FLASH;
    let max = if archive {
        actors::intake::MAX_ARCHIVE_BYTES
    } else {
        api.gw().registry.intake().max_image_len(component)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > max) {
        return Err(too_large(component, archive, len, max));
    }
    Ok((component, archive, max))
}

fn too_large(component: SpComponent, archive: bool, len: u64, max: u64) -> ApiError {
    let what = if archive {
        "an archive".to_string()
    } else {
        format!("a {component} image")
    };
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLarge",
        format!("{len} bytes or more: {what} is at most {max} bytes"),
    )
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/update-abort",
    operation_id = "sp_component_update_abort",
    description = "Abort update `id`: the SP aborts only if it holds that update.",
    params(ComponentPath), request_body = UpdateAbortBody,
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn abort(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
    Json(body): Json<UpdateAbortBody>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "update_abort",
        sp: Some(sp.clone()),
        component: Some(p.component.clone()),
        update_id: Some(body.id),
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let args = UpdateAbortArgs {
            sp,
            component: p.component,
            id: body.id,
        };
        updates::abort(&gw, args).await.map_err(failed)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/update-status",
    operation_id = "sp_component_update_status",
    description = "The SP's status of its most recent update of the component (the SP is \
        the truth: it names the update's id). At most two status-poll intervals old.",
    params(ComponentPath),
    responses((status = 200, body = SpUpdateStatus),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn status(
    State(api): State<Api>,
    Path(p): Path<ComponentPath>,
) -> Result<axum::Json<SpUpdateStatus>, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let view = updates::status(api.gw(), component_args(sp, p.component))
        .await
        .map_err(failed)?;
    Ok(axum::Json(SpUpdateStatus::from(&view.sp_status)))
}
