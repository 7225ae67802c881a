//! The reference's paths about SPs and their components, other than
//! updates: identity, state, power, startup options, slots, cabooses,
//! host-flash hashes, resets and the RoT's boot info.

use super::error::{ApiError, Error, Json, Path, Query};
use super::mgs::*;
use super::{Api, Audited, Caller, SpType};
use crate::api::{ComponentArgs, ErrorCode, PowerSetArgs, ResetArgs, SlotSetArgs};
use crate::control::{sps, Failed};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use gateway_messages::{HfError, MgsRequest, SpComponent, SpError, SpResponse, StartupOptions};
use serde::Deserialize;
use utoipa::IntoParams;

/// `/sp/{type}/{slot}`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SpPath {
    pub r#type: SpType,
    pub slot: u16,
}

/// `/sp/{type}/{slot}/component/{component}`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComponentPath {
    pub r#type: SpType,
    pub slot: u16,
    /// The component's name as the SP knows it (`sp`, `rot`, `stage0`,
    /// `host-boot-flash`, ...).
    pub component: String,
}

/// `.../hash/{firmware_slot}`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HashPath {
    pub r#type: SpType,
    pub slot: u16,
    pub component: String,
    /// The firmware slot to hash.
    pub firmware_slot: u16,
}

/// Empty success (204).
pub struct Done;

impl axum::response::IntoResponse for Done {
    fn into_response(self) -> axum::response::Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

pub(super) fn failed(f: Failed) -> ApiError {
    ApiError::from_failed(f)
}

fn rpc(e: actors::RpcError) -> ApiError {
    failed(crate::control::registry_error(e.into()))
}

fn registry(e: actors::RegistryError) -> ApiError {
    failed(crate::control::registry_error(e))
}

async fn handle(api: &Api, sp_type: SpType, slot: u16) -> Result<actors::SpHandle, ApiError> {
    let name = api.sp_name(sp_type, slot)?;
    api.gw().registry.sp(&name).await.map_err(registry)
}

fn component(name: &str) -> Result<SpComponent, ApiError> {
    actors::types::parse_component(name).map_err(|e| registry(e.into()))
}

#[utoipa::path(get, path = "/local/all-sp-ids", operation_id = "sp_all_ids",
    description = "Every SP the configuration places in the rack.",
    responses((status = 200, body = Vec<SpIdentifier>),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn all_sp_ids(State(api): State<Api>) -> axum::Json<Vec<SpIdentifier>> {
    axum::Json(api.identifiers())
}

#[utoipa::path(get, path = "/local/switch-id", operation_id = "sp_local_switch_id",
    description = "The switch this scrimlet is wired to (`http.switch_slot`).",
    responses((status = 200, body = SpIdentifier),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn switch_id(
    State(api): State<Api>,
) -> Result<axum::Json<SpIdentifier>, ApiError> {
    let slot = api.0.config.switch_slot.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SwitchUnknown",
            "which switch this scrimlet is wired to is not configured (http.switch_slot)",
        )
    })?;
    Ok(axum::Json(SpIdentifier {
        sp_type: SpType::Switch,
        slot,
    }))
}

#[utoipa::path(get, path = "/sp/{type}/{slot}", operation_id = "sp_get",
    description = "What the SP says of itself (as its actor last read it, at most \
        `state_refresh_ms` old).",
    params(SpPath),
    responses((status = 200, body = SpState),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn sp_get(
    State(api): State<Api>,
    Path(p): Path<SpPath>,
) -> Result<axum::Json<SpState>, ApiError> {
    let name = api.sp_name(p.r#type, p.slot)?;
    let info = api.gw().registry.info(&name).await.map_err(registry)?;
    let Some((_, response)) = info.state else {
        return Err(failed((
            ErrorCode::SpUnreachable,
            format!("{name}: the SP has not answered yet"),
        )));
    };
    let mut state = SpState::of(&response).ok_or_else(|| {
        failed((
            ErrorCode::SpError,
            format!("{name}: the SP's state answer is {response:?}"),
        ))
    })?;
    if matches!(response, SpResponse::SpStateV3(_)) {
        // This SP reports its RoT apart.
        let sp = api.gw().registry.sp(&name).await.map_err(registry)?;
        state.rot = match rot_info(&sp, 3).await {
            Ok(rot) => rot,
            Err(e) => RotState::CommunicationFailed { message: e.message },
        };
    }
    Ok(axum::Json(state))
}

async fn rot_info(sp: &actors::SpHandle, version: u8) -> Result<RotState, ApiError> {
    let info = sp
        .call(
            MgsRequest::VersionedRotBootInfo { version },
            |r, _| match r {
                SpResponse::RotBootInfo(i) => Some(i),
                _ => None,
            },
        )
        .await
        .map_err(rpc)?;
    Ok(RotState::of_boot_info(&info))
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/power-state", operation_id = "sp_power_state_get",
    description = "The host's power state, asked now.",
    params(SpPath),
    responses((status = 200, body = PowerState),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn power_get(
    State(api): State<Api>,
    Path(p): Path<SpPath>,
) -> Result<axum::Json<PowerState>, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    Ok(axum::Json(sp.power_state().await.map_err(rpc)?.into()))
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/power-state", operation_id = "sp_power_state_set",
    description = "Set the host's power state (`A0` or `A2`; `A1` is passed through, not \
        asked for).",
    params(SpPath), request_body = PowerState,
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn power_set(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<SpPath>,
    Json(state): Json<PowerState>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "power_set",
        sp: Some(sp.clone()),
        component: None,
        update_id: None,
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let args = PowerSetArgs {
            sp,
            state: format!("{state:?}"),
        };
        sps::power_set(&gw, args).await.map_err(failed)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/startup-options", operation_id = "sp_startup_options_get",
    description = "The options the host boots with.",
    params(SpPath),
    responses((status = 200, body = HostStartupOptions),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn startup_get(
    State(api): State<Api>,
    Path(p): Path<SpPath>,
) -> Result<axum::Json<HostStartupOptions>, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    let bits = sp
        .call(MgsRequest::GetStartupOptions, |r, _| match r {
            SpResponse::StartupOptions(o) => Some(o.0),
            _ => None,
        })
        .await
        .map_err(rpc)?;
    Ok(axum::Json(HostStartupOptions::from_bits(bits)))
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/startup-options", operation_id = "sp_startup_options_set",
    description = "Set the options the host boots with next.",
    params(SpPath), request_body = HostStartupOptions,
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn startup_set(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<SpPath>,
    Json(options): Json<HostStartupOptions>,
) -> Result<Done, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    let what = Audited {
        command: "startup_options_set",
        sp: Some(sp.name().to_string()),
        component: None,
        update_id: None,
    };
    api.operate(&caller, what, async move {
        let request = MgsRequest::SetStartupOptions(StartupOptions(options.to_bits()));
        sp.ack(request, SpResponse::SetStartupOptionsAck)
            .await
            .map_err(rpc)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/active-slot",
    operation_id = "sp_component_active_slot_get",
    description = "The slot the component runs from.",
    params(ComponentPath),
    responses((status = 200, body = SpComponentFirmwareSlot),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn active_slot_get(
    State(api): State<Api>,
    Path(p): Path<ComponentPath>,
) -> Result<axum::Json<SpComponentFirmwareSlot>, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    let slot = sp
        .active_slot(component(&p.component)?)
        .await
        .map_err(rpc)?;
    Ok(axum::Json(SpComponentFirmwareSlot { slot }))
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/active-slot",
    operation_id = "sp_component_active_slot_set",
    description = "Choose the slot the component runs from after its next reset; with \
        `persist`, for every reset after.",
    params(ComponentPath, SetActiveSlotQuery), request_body = SpComponentFirmwareSlot,
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn active_slot_set(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
    Query(q): Query<SetActiveSlotQuery>,
    Json(body): Json<SpComponentFirmwareSlot>,
) -> Result<Done, ApiError> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    component(&p.component)?;
    let what = Audited {
        command: "slot_set",
        sp: Some(sp.clone()),
        component: Some(p.component.clone()),
        update_id: None,
    };
    let gw = api.gw().clone();
    api.operate(&caller, what, async move {
        let args = SlotSetArgs {
            sp,
            component: p.component,
            slot: body.slot,
            persist: q.persist,
        };
        sps::slot_set(&gw, args).await.map_err(failed)?;
        Ok(Done)
    })
    .await
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/caboose",
    operation_id = "sp_component_caboose_get",
    description = "What the image in a firmware slot says it is.",
    params(ComponentPath, CabooseQuery),
    responses((status = 200, body = SpComponentCaboose),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn caboose(
    State(api): State<Api>,
    Path(p): Path<ComponentPath>,
    Query(q): Query<CabooseQuery>,
) -> Result<axum::Json<SpComponentCaboose>, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    let c = component(&p.component)?;
    let mut values = Vec::new();
    for key in [*b"BORD", *b"GITC", *b"NAME", *b"VERS", *b"SIGN", *b"EPOC"] {
        values.push(sp.caboose(c, q.firmware_slot, key).await.map_err(rpc)?);
    }
    if values[..4].iter().all(Option::is_none) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoCaboose",
            format!(
                "{} {c} slot {}: the image has no caboose",
                sp.name(),
                q.firmware_slot
            ),
        ));
    }
    let mut v = values.into_iter();
    let mut next = || v.next().flatten();
    Ok(axum::Json(SpComponentCaboose {
        board: next().unwrap_or_default(),
        git_commit: next().unwrap_or_default(),
        name: next().unwrap_or_default(),
        version: next().unwrap_or_default(),
        sign: next(),
        epoch: next(),
    }))
}

fn host_flash_only(c: SpComponent) -> Result<(), ApiError> {
    if c == SpComponent::HOST_CPU_BOOT_FLASH {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadComponent",
            format!("{c}: only host-boot-flash slots are hashed by the SP"),
        ))
    }
}

fn flash_slot(slot: u16) -> Result<(), ApiError> {
    if slot < 2 {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadSlot",
            format!("host-boot-flash has no firmware slot {slot} (its slots: 0 and 1)"),
        ))
    }
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/hash/{firmware_slot}",
    operation_id = "sp_component_hash_firmware_get",
    description = "The SHA-256 of a host-flash slot, once the SP has hashed it (start with \
        POST).",
    params(HashPath),
    responses((status = 200, body = ComponentFirmwareHashStatus),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn hash_get(
    State(api): State<Api>,
    Path(p): Path<HashPath>,
) -> Result<axum::Json<ComponentFirmwareHashStatus>, ApiError> {
    host_flash_only(component(&p.component)?)?;
    flash_slot(p.firmware_slot)?;
    let sp = handle(&api, p.r#type, p.slot).await?;
    let got = sp
        .call(
            MgsRequest::GetHostFlashHash {
                slot: p.firmware_slot,
            },
            |r, _| match r {
                SpResponse::HostFlashHash(h) => Some(h),
                _ => None,
            },
        )
        .await;
    let status = match got {
        Ok(sha256) => ComponentFirmwareHashStatus::Hashed { sha256 },
        Err(actors::RpcError::Sp {
            error: SpError::Hf(HfError::HashUncalculated | HfError::RecalculateHash),
            ..
        }) => ComponentFirmwareHashStatus::HashNotCalculated,
        Err(actors::RpcError::Sp {
            error: SpError::Hf(HfError::HashInProgress),
            ..
        }) => ComponentFirmwareHashStatus::HashInProgress,
        Err(e) => return Err(rpc(e)),
    };
    Ok(axum::Json(status))
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/hash/{firmware_slot}",
    operation_id = "sp_component_hash_firmware_start",
    description = "Have the SP hash a host-flash slot (the whole slot, its first sector \
        counted as erased).",
    params(HashPath),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn hash_start(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<HashPath>,
) -> Result<Done, ApiError> {
    let sp = handle(&api, p.r#type, p.slot).await?;
    let what = Audited {
        command: "hash_start",
        sp: Some(sp.name().to_string()),
        component: Some(p.component.clone()),
        update_id: None,
    };
    api.operate(&caller, what, async move {
        host_flash_only(component(&p.component)?)?;
        flash_slot(p.firmware_slot)?;
        let request = MgsRequest::StartHostFlashHash {
            slot: p.firmware_slot,
        };
        match sp.ack(request, SpResponse::StartHostFlashHashAck).await {
            // One runs already: the caller polls either way.
            Ok(())
            | Err(actors::RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => Ok(Done),
            Err(e) => Err(rpc(e)),
        }
    })
    .await
}

#[utoipa::path(post, path = "/sp/{type}/{slot}/component/{component}/reset",
    operation_id = "sp_component_reset",
    description = "Reset a component. Resetting `sp` after a completed SP update activates \
        it under the SP's watchdog: the old image comes back if the new one does not run.",
    params(ComponentPath),
    responses((status = 204, description = "resource updated"),
        (status = "4XX", description = "Error", body = SpComponentResetError),
        (status = "5XX", description = "Error", body = SpComponentResetError)))]
pub(super) async fn reset(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(p): Path<ComponentPath>,
) -> Result<Done, ResetFailed> {
    let sp = api.sp_name(p.r#type, p.slot)?;
    let what = Audited {
        command: "reset",
        sp: Some(sp.clone()),
        component: Some(p.component.clone()),
        update_id: None,
    };
    let gw = api.gw().clone();
    let done = api
        .operate(&caller, what, async move {
            let args = ResetArgs {
                sp,
                component: p.component,
                no_watchdog: false,
                watchdog_ms: None,
            };
            let view = sps::reset(&gw, args).await.map_err(failed)?;
            // An activation that rolled back, or an SP that did not come
            // back, is no success.
            use crate::api::views::Outcome;
            let a = &view.activation;
            match a.outcome {
                Outcome::Activated | Outcome::Reset => Ok(Done),
                Outcome::RolledBack | Outcome::Unreachable => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    if a.outcome == Outcome::RolledBack {
                        "RolledBack"
                    } else {
                        "NotBack"
                    },
                    format!(
                        "{} {}: {}: {}",
                        a.sp,
                        a.component,
                        a.outcome.as_str(),
                        a.detail
                    ),
                )),
            }
        })
        .await?;
    Ok(done)
}

/// A reset's failure, in the reference's `SpComponentResetError` body.
pub struct ResetFailed(ApiError);

impl From<ApiError> for ResetFailed {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl axum::response::IntoResponse for ResetFailed {
    fn into_response(self) -> axum::response::Response {
        let e = self.0;
        let body = SpComponentResetError::Other {
            message: e.message,
            error_code: Some(e.code),
        };
        (e.status, axum::Json(body)).into_response()
    }
}

#[utoipa::path(get, path = "/sp/{type}/{slot}/component/{component}/rot-boot-info",
    operation_id = "sp_rot_boot_info",
    description = "The RoT's boot state, in the highest version both sides know.",
    params(ComponentPath), request_body = GetRotBootInfoParams,
    responses((status = 200, body = RotState),
        (status = "4XX", description = "Error", body = Error), (status = "5XX", description = "Error", body = Error)))]
pub(super) async fn rot_boot_info(
    State(api): State<Api>,
    Path(p): Path<ComponentPath>,
    Json(params): Json<GetRotBootInfoParams>,
) -> Result<axum::Json<RotState>, ApiError> {
    let c = component(&p.component)?;
    if c != SpComponent::ROT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadComponent",
            format!("{c}: boot info is the RoT's (component rot)"),
        ));
    }
    let sp = handle(&api, p.r#type, p.slot).await?;
    Ok(axum::Json(rot_info(&sp, params.version).await?))
}

/// For `update`: the component args of the socket's handlers.
pub(super) fn component_args(sp: String, component: String) -> ComponentArgs {
    ComponentArgs { sp, component }
}
