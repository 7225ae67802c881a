//! Host phase-2 recovery: images kept for recovering hosts (the SP actors
//! serve their requests from [`actors::phase2::Phase2Cache`]), each SP's
//! most recent request, and the installinator image ids a recovering sled
//! reads over IPCC.

use super::{registry_error, Failed};
use crate::api::views::{Phase2Id, Phase2ImageView, Phase2ProgressView};
use crate::api::{ErrorCode, InstallinatorArgs, SpArgs};
use actors::image::Image;
use actors::phase2::Phase2Error;
use actors::types::{hex, ImageHash};
use actors::Gateway;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// IPCC key of the installinator image id (the host's `ipcc` crate).
pub const IPCC_INSTALLINATOR_IMAGE_ID: u8 = 1;

/// Keep `image` for recovering hosts; its id.
pub(crate) fn keep(gw: &Gateway, image: Arc<Image>) -> Result<Phase2ImageView, Failed> {
    let view = Phase2ImageView {
        sha256_hash: hex(&image.hash.0),
        len: image.len() as u64,
    };
    let evicted = gw.registry.phase2().insert(image).map_err(|e| {
        let code = match e {
            Phase2Error::TooLarge { .. } | Phase2Error::Empty => ErrorCode::BadImage,
        };
        (code, e.to_string())
    })?;
    for hash in evicted {
        tracing::info!(image = %hex(&hash.0), "phase-2 image evicted from the recovery cache");
    }
    tracing::info!(image = %view.sha256_hash, len = view.len, "phase-2 image kept for recovery");
    Ok(view)
}

/// `recovery_upload`: the image is the descriptor sent with the request.
pub(super) async fn upload(gw: &Gateway, mut fds: Vec<OwnedFd>) -> Result<Phase2ImageView, Failed> {
    let file =
        match (fds.pop(), fds.is_empty()) {
            (Some(fd), true) => std::fs::File::from(fd),
            _ => return Err((
                ErrorCode::BadRequest,
                "recovery_upload takes exactly one descriptor, the phase-2 image's (SCM_RIGHTS); \
                 mgsctl recovery upload FILE does this for you"
                    .into(),
            )),
        };
    let max = gw.registry.phase2().max_bytes();
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        return Err((
            ErrorCode::BadImage,
            format!("the phase-2 image is {len} bytes; the cache holds at most {max} bytes (recovery.max_mib)"),
        ));
    }
    let image = gw
        .registry
        .load_image(file, max)
        .await
        .map_err(registry_error)?;
    keep(gw, image)
}

pub(crate) fn images(gw: &Gateway) -> Vec<Phase2ImageView> {
    gw.registry
        .phase2()
        .list()
        .into_iter()
        .map(|c| Phase2ImageView {
            sha256_hash: hex(&c.hash.0),
            len: c.len,
        })
        .collect()
}

pub(crate) async fn status(gw: &Gateway, a: SpArgs) -> Result<Phase2ProgressView, Failed> {
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    Ok(match sp.phase2_progress() {
        Some(seen) => Phase2ProgressView::Available {
            image_id: Phase2Id {
                sha256_hash: hex(&seen.hash),
            },
            offset: seen.offset,
            total_size: seen.total.unwrap_or(0),
            age_ms: seen.age().as_millis() as u64,
        },
        None => Phase2ProgressView::None,
    })
}

pub(crate) async fn clear(gw: &Gateway, a: SpArgs) -> Result<serde_json::Value, Failed> {
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    sp.clear_phase2_progress();
    Ok(serde_json::json!({ "sp": sp.name().to_string(), "cleared": true }))
}

fn hash_arg(name: &str, value: &str) -> Result<[u8; 32], Failed> {
    ImageHash::from_hex(value).map(|h| h.0).ok_or_else(|| {
        (
            ErrorCode::BadRequest,
            format!("{name} must be a SHA-256 as 64 hex digits, not {value:?}"),
        )
    })
}

/// The IPCC value: update id (16 bytes), then the host phase-2 and the
/// control-plane hashes (32 each).
pub(crate) fn installinator_value(a: &InstallinatorArgs) -> Result<Vec<u8>, Failed> {
    let mut value = a.update_id.as_bytes().to_vec();
    value.extend_from_slice(&hash_arg("host_phase_2", &a.host_phase_2)?);
    value.extend_from_slice(&hash_arg("control_plane", &a.control_plane)?);
    Ok(value)
}

pub(crate) async fn installinator_set(
    gw: &Gateway,
    a: InstallinatorArgs,
) -> Result<serde_json::Value, Failed> {
    let value = installinator_value(&a)?;
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    sp.set_ipcc(IPCC_INSTALLINATOR_IMAGE_ID, value)
        .await
        .map_err(|e| registry_error(e.into()))?;
    Ok(serde_json::json!({ "sp": sp.name().to_string(), "set": true }))
}

pub(crate) async fn installinator_clear(
    gw: &Gateway,
    a: SpArgs,
) -> Result<serde_json::Value, Failed> {
    let sp = gw.registry.sp(&a.sp).await.map_err(registry_error)?;
    sp.set_ipcc(IPCC_INSTALLINATOR_IMAGE_ID, Vec::new())
        .await
        .map_err(|e| registry_error(e.into()))?;
    Ok(serde_json::json!({ "sp": sp.name().to_string(), "cleared": true }))
}
