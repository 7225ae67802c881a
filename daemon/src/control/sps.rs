//! Handlers of the commands about SPs themselves: versions, health, the
//! list and one SP's state (both from what the SP actors already know),
//! cabooses, power, slots and resets.

use super::{registry_error, ControlServer, Failed};
use crate::api::views::{
    CabooseView, Health, PowerView, ResetView, RotState, SlotSetView, SlotView, SpRow, SpState,
    SpStateView, UnknownUpdate, UpdateRecord, VersionInfo,
};
use crate::api::{
    CabooseArgs, ComponentArgs, ErrorCode, PowerSetArgs, ResetArgs, SlotSetArgs, SpArgs,
};
use actors::types::hex;
use actors::Gateway;
use gateway_messages::{PowerState, SpComponent, SpResponse};
use std::collections::BTreeMap;

pub(super) fn version() -> VersionInfo {
    VersionInfo {
        daemon: env!("CARGO_PKG_VERSION").into(),
        protocol: crate::api::PROTOCOL_VERSION,
        wire_protocol: gateway_messages::version::CURRENT,
    }
}

pub(super) async fn health(s: &ControlServer) -> Result<Health, Failed> {
    let r = &s.gw.registry;
    let sps = r.list().await.map_err(registry_error)?;
    Ok(Health {
        status: "ok".into(),
        uptime_s: s.started.elapsed().as_secs(),
        sps: sps.len(),
        reachable: sps.iter().filter(|s| s.info.reachable).count(),
        active_updates: r.running_updates().await.map_err(registry_error)?,
        http_listeners: s.http_listeners.clone(),
    })
}

/// Every SP from what its actor published: no SP is asked.
pub(crate) async fn list(gw: &Gateway) -> Result<Vec<SpRow>, Failed> {
    let sps = gw.registry.list().await.map_err(registry_error)?;
    Ok(sps
        .into_iter()
        .map(|sp| {
            let info = sp.info;
            let id = info.identity.as_ref();
            SpRow {
                name: info.name.to_string(),
                addr: info.addr,
                reachable: info.reachable,
                link: info.link.map(String::from),
                serial: id.map(|i| i.serial.clone()),
                model: id.map(|i| i.model.clone()),
                revision: id.map(|i| i.revision),
                power_state: id.map(|i| i.power_state.clone()),
                versions: info.versions.clone(),
                last_heard_ms_ago: info.last_heard_ms_ago(),
                age_ms: info.state.map(|(at, _)| at.elapsed().as_millis() as u64),
                srtt_us: info.srtt_us,
                rto_us: info.rto_us,
                active_update: sp.active_update.as_ref().map(UpdateRecord::from),
                unknown_updates: sp
                    .unknown_updates
                    .iter()
                    .map(|(component, sp_status)| UnknownUpdate {
                        component: component.to_string(),
                        sp_status: sp_status.clone(),
                    })
                    .collect(),
            }
        })
        .collect())
}

/// What the SP's actor knows (it reads the state every
/// `state_refresh_ms`): no SP is asked.
pub(crate) async fn state(gw: &Gateway, a: SpArgs) -> Result<SpStateView, Failed> {
    let info = gw.registry.info(&a.sp).await.map_err(registry_error)?;
    let Some((at, response)) = info.state else {
        return Err((
            ErrorCode::SpUnreachable,
            format!("{}: the SP has not answered yet", info.name),
        ));
    };
    let state = sp_state(&response).ok_or_else(|| {
        (
            ErrorCode::SpError,
            format!("{}: the SP's state answer is {response:?}", info.name),
        )
    })?;
    Ok(SpStateView {
        name: info.name.to_string(),
        addr: info.addr,
        reachable: info.reachable,
        age_ms: at.elapsed().as_millis() as u64,
        state,
    })
}

pub(crate) async fn caboose(gw: &Gateway, a: CabooseArgs) -> Result<CabooseView, Failed> {
    let component = parse_component(&a.component)?;
    let keys: Vec<String> = match a.key {
        Some(k) => vec![k],
        None => ["BORD", "GITC", "NAME", "VERS"].map(String::from).to_vec(),
    };
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    let mut values = BTreeMap::new();
    for k in keys {
        let key: [u8; 4] = k.as_bytes().try_into().map_err(|_| {
            (
                ErrorCode::BadRequest,
                format!("caboose key {k:?} must be 4 ASCII characters"),
            )
        })?;
        let value = sp
            .caboose(component, a.slot, key)
            .await
            .map_err(rpc_error)?;
        values.insert(k, value);
    }
    Ok(CabooseView {
        sp: a.sp,
        component: component.to_string(),
        slot: a.slot,
        values,
    })
}

pub(crate) async fn power_get(gw: &Gateway, a: SpArgs) -> Result<PowerView, Failed> {
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    let state = sp.power_state().await.map_err(rpc_error)?;
    Ok(PowerView {
        power_state: format!("{state:?}"),
        changed: None,
    })
}

pub(crate) async fn power_set(gw: &Gateway, a: PowerSetArgs) -> Result<PowerView, Failed> {
    let state = match a.state.to_ascii_uppercase().as_str() {
        "A0" => PowerState::A0,
        "A2" => PowerState::A2,
        // A1 is a state SPs pass through, not one to ask for.
        _ => {
            return Err((
                ErrorCode::BadRequest,
                format!("power state {:?}: use A0 or A2", a.state),
            ))
        }
    };
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    let changed = sp.set_power_state(state).await.map_err(rpc_error)?;
    // What `list` and `state` show follows soon.
    tokio::spawn(async move { sp.refresh_state().await });
    Ok(PowerView {
        power_state: format!("{state:?}"),
        changed: Some(changed),
    })
}

pub(crate) async fn slot_get(gw: &Gateway, a: ComponentArgs) -> Result<SlotView, Failed> {
    let component = parse_component(&a.component)?;
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    Ok(SlotView {
        component: component.to_string(),
        active: sp.active_slot(component).await.map_err(rpc_error)?,
        persistent: sp.persistent_slot(component).await.map_err(rpc_error)?,
    })
}

pub(crate) async fn slot_set(gw: &Gateway, a: SlotSetArgs) -> Result<SlotSetView, Failed> {
    let component = parse_component(&a.component)?;
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    sp.set_active_slot(component, a.slot, a.persist)
        .await
        .map_err(rpc_error)?;
    Ok(SlotSetView {
        component: component.to_string(),
        slot: a.slot,
        persist: a.persist,
    })
}

/// Reset; for an SP holding a completed SP update, an activation whose
/// `outcome` says whether the new image runs.
pub(crate) async fn reset(gw: &Gateway, a: ResetArgs) -> Result<ResetView, Failed> {
    let opts = crate::api::reset_options(a.no_watchdog, a.watchdog_ms)
        .map_err(|e| (ErrorCode::BadRequest, e))?;
    let activation = gw
        .registry
        .reset(&a.sp, &a.component, opts)
        .await
        .map_err(registry_error)?;
    Ok(ResetView {
        activation,
        reset: true,
    })
}

fn parse_component(name: &str) -> Result<SpComponent, Failed> {
    actors::types::parse_component(name).map_err(|e| registry_error(e.into()))
}

fn rpc_error(e: actors::RpcError) -> Failed {
    registry_error(e.into())
}

/// What an SP says of itself, whichever state version it sent: its
/// identity, plus the RoT's boot state where the SP includes it.
fn sp_state(r: &SpResponse) -> Option<SpState> {
    let identity = actors::sp::SpIdentity::from_state(r)?;
    let slot = |s: Option<gateway_messages::RotSlotId>| s.map(|s| format!("{s:?}"));
    let rot = match r {
        SpResponse::SpStateV2(s) => Some(match &s.rot {
            Ok(rot) => RotState::Ok {
                active: format!("{:?}", rot.active),
                persistent_boot_preference: format!("{:?}", rot.persistent_boot_preference),
                pending_persistent_boot_preference: slot(rot.pending_persistent_boot_preference),
                transient_boot_preference: slot(rot.transient_boot_preference),
                slot_a_sha3_256: rot.slot_a_sha3_256_digest.map(|d| hex(&d)),
                slot_b_sha3_256: rot.slot_b_sha3_256_digest.map(|d| hex(&d)),
            },
            Err(e) => RotState::Error {
                error: format!("{e:?}"),
            },
        }),
        _ => None,
    };
    Some(SpState {
        hubris_archive_id: identity.hubris_archive_id,
        serial: identity.serial,
        model: identity.model,
        revision: identity.revision,
        base_mac_address: identity.base_mac_address,
        power_state: identity.power_state,
        rot_active_slot: identity.rot_active_slot,
        rot,
    })
}
