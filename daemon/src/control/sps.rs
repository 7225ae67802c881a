//! Handlers of the commands about SPs themselves: versions, health, the
//! list and one SP's state (both from what the SP actors already know),
//! cabooses, power, slots and resets.

use super::{registry_error, to_value, ControlServer, Outcome};
use crate::api::{
    CabooseArgs, ComponentArgs, ErrorCode, PowerSetArgs, ResetArgs, SlotSetArgs, SpArgs,
};
use actors::{RegistryError, RpcError};
use gateway_messages::{MgsRequest, PowerState, SpComponent, SpError, SpResponse};
use serde_json::{json, Value};

pub(super) fn version() -> Outcome {
    Ok(json!({
        "daemon": env!("CARGO_PKG_VERSION"),
        "protocol": crate::api::PROTOCOL_VERSION,
        "wire_protocol": gateway_messages::version::CURRENT,
    }))
}

pub(super) async fn health(s: &ControlServer) -> Outcome {
    let h = &s.handle;
    let sps = h.list().await.map_err(registry_error)?;
    let running = h.running_updates().await.map_err(registry_error)?;
    Ok(json!({
        "status": "ok",
        "uptime_s": s.started.elapsed().as_secs(),
        "sps": sps.len(),
        "reachable": sps.iter().filter(|s| s.info.reachable).count(),
        "active_updates": running,
    }))
}

/// Every SP from what its actor published: no SP is asked.
pub(super) async fn list(s: &ControlServer) -> Outcome {
    let sps = s.handle.list().await.map_err(registry_error)?;
    let rows = sps.into_iter().map(|sp| {
        let id = sp.info.identity.as_ref();
        json!({
            "name": sp.info.name,
            "addr": sp.info.addr,
            "reachable": sp.info.reachable,
            "link": sp.info.link,
            "serial": id.map(|i| i.serial.clone()),
            "model": id.map(|i| i.model.clone()),
            "revision": id.map(|i| i.revision),
            "power_state": id.map(|i| i.power_state.clone()),
            "versions": sp.info.versions,
            "last_heard_ms_ago": sp.last_heard_ms_ago,
            "age_ms": sp.info.state.map(|(at, _)| at.elapsed().as_millis() as u64),
            "srtt_us": sp.info.srtt_us,
            "rto_us": sp.info.rto_us,
            "active_update": sp.active_update.as_ref().map(to_value),
        })
    });
    Ok(Value::Array(rows.collect()))
}

/// What the SP's actor knows (it reads the state every
/// `state_refresh_ms`): no SP is asked.
pub(super) async fn state(s: &ControlServer, a: SpArgs) -> Outcome {
    let info = s.handle.info(&a.sp).await.map_err(registry_error)?;
    let Some((at, response)) = info.state else {
        return Err((
            ErrorCode::SpUnreachable,
            format!("{}: the SP has not answered yet", info.name),
        ));
    };
    Ok(json!({
        "name": info.name,
        "addr": info.addr,
        "reachable": info.reachable,
        "age_ms": at.elapsed().as_millis() as u64,
        "state": sp_state_json(&response),
    }))
}

pub(super) async fn caboose(s: &ControlServer, a: CabooseArgs) -> Outcome {
    let component = parse_component(&a.component)?;
    let keys: Vec<String> = match a.key {
        Some(k) => vec![k],
        None => ["BORD", "GITC", "NAME", "VERS"].map(String::from).to_vec(),
    };
    let mut values = serde_json::Map::new();
    for k in keys {
        let key: [u8; 4] = k.as_bytes().try_into().map_err(|_| {
            (
                ErrorCode::BadRequest,
                format!("caboose key {k:?} must be 4 ASCII characters"),
            )
        })?;
        let request = MgsRequest::ReadComponentCaboose {
            component,
            slot: a.slot,
            key,
        };
        let value = match s.handle.rpc(&a.sp, request).await {
            Ok((_, trailing)) => Value::String(String::from_utf8_lossy(&trailing).into_owned()),
            Err(RegistryError::Rpc(RpcError::Sp {
                error: SpError::NoSuchCabooseKey(_),
                ..
            })) => Value::Null,
            Err(e) => return Err(registry_error(e)),
        };
        values.insert(k, value);
    }
    Ok(json!({ "sp": a.sp, "component": component.to_string(), "slot": a.slot, "values": values }))
}

pub(super) async fn power_get(s: &ControlServer, a: SpArgs) -> Outcome {
    match rpc(s, &a.sp, MgsRequest::GetPowerState).await? {
        SpResponse::PowerState(p) => Ok(json!({ "power_state": format!("{p:?}") })),
        other => Err(unexpected(other)),
    }
}

pub(super) async fn power_set(s: &ControlServer, a: PowerSetArgs) -> Outcome {
    let state = match a.state.to_ascii_uppercase().as_str() {
        "A0" => PowerState::A0,
        "A1" => PowerState::A1,
        "A2" => PowerState::A2,
        _ => {
            return Err((
                ErrorCode::BadRequest,
                format!("power state {:?}: use A0 or A2", a.state),
            ))
        }
    };
    let changed = match rpc(s, &a.sp, MgsRequest::SetPowerState(state)).await? {
        SpResponse::PowerStateSet => true,
        SpResponse::PowerStateUnchanged => false,
        other => return Err(unexpected(other)),
    };
    // What `list` and `state` show follows soon.
    if let Ok(sp) = s.handle.sp(&a.sp).await {
        actix::spawn(async move { sp.refresh_state().await });
    }
    Ok(json!({ "power_state": format!("{state:?}"), "changed": changed }))
}

pub(super) async fn slot_get(s: &ControlServer, a: ComponentArgs) -> Outcome {
    let component = parse_component(&a.component)?;
    let active = match rpc(s, &a.sp, MgsRequest::ComponentGetActiveSlot(component)).await? {
        SpResponse::ComponentActiveSlot(s) => s,
        other => return Err(unexpected(other)),
    };
    let persistent = match rpc(s, &a.sp, MgsRequest::ComponentGetPersistentSlot(component)).await? {
        SpResponse::ComponentPersistentSlot(s) => s,
        other => return Err(unexpected(other)),
    };
    Ok(json!({ "component": component.to_string(), "active": active, "persistent": persistent }))
}

pub(super) async fn slot_set(s: &ControlServer, a: SlotSetArgs) -> Outcome {
    let component = parse_component(&a.component)?;
    let request = if a.persist {
        MgsRequest::ComponentSetAndPersistActiveSlot {
            component,
            slot: a.slot,
        }
    } else {
        MgsRequest::ComponentSetActiveSlot {
            component,
            slot: a.slot,
        }
    };
    rpc(s, &a.sp, request).await?;
    Ok(json!({ "component": component.to_string(), "slot": a.slot, "persist": a.persist }))
}

/// Reset; for an SP holding a completed SP update, an activation whose
/// `outcome` says whether the new image runs.
pub(super) async fn reset(s: &ControlServer, a: ResetArgs) -> Outcome {
    let opts = crate::api::reset_options(a.no_watchdog, a.watchdog_ms)
        .map_err(|e| (ErrorCode::BadRequest, e))?;
    let activation = s
        .handle
        .reset(&a.sp, &a.component, opts)
        .await
        .map_err(registry_error)?;
    let mut v = to_value(&activation);
    v["reset"] = Value::Bool(true);
    Ok(v)
}

async fn rpc(
    s: &ControlServer,
    sp: &str,
    request: MgsRequest,
) -> Result<SpResponse, (ErrorCode, String)> {
    s.handle
        .rpc(sp, request)
        .await
        .map(|(r, _)| r)
        .map_err(registry_error)
}

fn parse_component(name: &str) -> Result<SpComponent, (ErrorCode, String)> {
    actors::registry::parse_component(name).map_err(registry_error)
}

fn unexpected(r: SpResponse) -> (ErrorCode, String) {
    (
        ErrorCode::Internal,
        format!("unexpected response from the SP: {r:?}"),
    )
}

/// SP state as JSON, whichever version the SP sent: its identity, plus the
/// RoT's boot state where the SP includes it.
fn sp_state_json(r: &SpResponse) -> Value {
    let Some(identity) = actors::sp::SpIdentity::from_state(r) else {
        return json!({ "unexpected": format!("{r:?}") });
    };
    let mut v = to_value(&identity);
    if let SpResponse::SpStateV2(s) = r {
        let hex = |d: [u8; 32]| d.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let slot = |s: Option<gateway_messages::RotSlotId>| s.map(|s| format!("{s:?}"));
        v["rot"] = match &s.rot {
            Ok(rot) => json!({
                "active": format!("{:?}", rot.active),
                "persistent_boot_preference": format!("{:?}", rot.persistent_boot_preference),
                "pending_persistent_boot_preference": slot(rot.pending_persistent_boot_preference),
                "transient_boot_preference": slot(rot.transient_boot_preference),
                "slot_a_sha3_256": rot.slot_a_sha3_256_digest.map(hex),
                "slot_b_sha3_256": rot.slot_b_sha3_256_digest.map(hex),
            }),
            Err(e) => json!({ "error": format!("{e:?}") }),
        };
    }
    v
}
