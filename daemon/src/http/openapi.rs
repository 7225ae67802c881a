//! The API's OpenAPI document, generated from the handlers' annotations.
//! `openapi/mgsd.json` is this document as committed; a test fails when
//! they differ (`cargo run --bin mgsd -- --openapi > openapi/mgsd.json`
//! refreshes it).

use super::{console, control, error, ext, mgs, recovery, sp, update};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mgsd: management gateway HTTP API",
        version = "3.0.0",
        description = "The management gateway's published API, version 3.0.0 (same paths, \
            parameters and bodies), served by mgsd beside its control socket, plus mgsd's \
            own paths under /mgsd/v1. docs/http-api.md explains both.",
        license(name = "MPL-2.0"),
    ),
    paths(
        sp::all_sp_ids,
        sp::switch_id,
        sp::sp_get,
        sp::power_get,
        sp::power_set,
        sp::startup_get,
        sp::startup_set,
        sp::active_slot_get,
        sp::active_slot_set,
        sp::caboose,
        sp::hash_get,
        sp::hash_start,
        sp::reset,
        sp::rot_boot_info,
        update::start,
        update::abort,
        update::status,
        console::attach,
        console::detach,
        recovery::upload,
        recovery::progress_get,
        recovery::progress_delete,
        recovery::installinator_set,
        recovery::installinator_delete,
        ext::list,
        ext::update,
        ext::history,
        ext::audit,
        ext::rollout_list,
        ext::rollout_status,
        ext::rollout_pause,
        ext::rollout_resume,
        ext::rollout_abort,
        ext::stream,
        control::control,
    ),
    components(schemas(error::Error, mgs::SpUpdateStatus, mgs::UpdatePreparationProgress))
)]
struct Doc;

/// The document, as pretty JSON with a final newline.
pub fn document() -> String {
    let mut doc = serde_json::to_value(Doc::openapi()).expect("the document serialises");
    unsigned_formats(&mut doc);
    let mut text = serde_json::to_string_pretty(&doc).expect("the document serialises");
    text.push('\n');
    text
}

/// utoipa spells the unsigned integer formats `u-int16`; OpenAPI tools
/// (and the reference document) say `uint16`.
fn unsigned_formats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(s) if k == "format" && s.starts_with("u-int") => {
                        *s = s.replacen("u-int", "uint", 1);
                    }
                    _ => unsigned_formats(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unsigned_formats),
        _ => {}
    }
}
