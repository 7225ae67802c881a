//! Rollout planning: a plan (`RolloutSpec`) against the SPs and images at
//! hand becomes the rollout's first record, or every problem with it,
//! each naming its line. Nothing here sends anything.

use crate::image::Image;
use crate::intake::Intake;
use crate::rollout_state::{
    target_update_id, wave_sizes, RolloutPhase, RolloutRecord, RolloutSpec, Target, TargetState,
};
use crate::sp::SpHandle;
use crate::types::{parse_updatable, unix_ms, SpName};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;

/// Check `spec` (targets naming `images` by index) against `sps`, and make
/// rollout `id`'s first record; `own` is the scrimlet's own sled, which a
/// plan takes only with `allow_self`.
pub fn plan(
    id: uuid::Uuid,
    spec: &RolloutSpec<usize>,
    images: &[Arc<Image>],
    sps: &[SpHandle],
    own: Option<&str>,
    intake: &Intake,
) -> Result<RolloutRecord, Vec<String>> {
    let mut problems = Vec::new();
    if spec.max_concurrent == 0 {
        problems.push("max_concurrent must be at least 1".to_string());
    }
    if spec.stop_after_failures == 0 {
        problems.push("stop_after_failures must be at least 1".to_string());
    }
    if spec.targets.is_empty() {
        problems.push("the plan has no [[target]]".to_string());
    }
    let find = |name: &str| {
        sps.iter()
            .find(|sp| sp.name().as_str() == name || sp.serial().as_deref() == Some(name))
    };
    let own = own.and_then(find).map(|sp| sp.name().clone());
    let mut targets: Vec<Target> = Vec::new();
    let mut seen: HashMap<(SpName, String), Option<u32>> = HashMap::new();
    for ts in &spec.targets {
        let at = ts
            .line
            .map_or("a [[target]]".to_string(), |l| format!("line {l}"));
        let selectors =
            usize::from(!ts.sps.is_empty()) + usize::from(ts.kind.is_some()) + usize::from(ts.all);
        if selectors != 1 {
            problems.push(format!("{at}: give exactly one of sps, kind and all"));
            continue;
        }
        let chosen: Vec<SpName> = if ts.all {
            sps.iter().map(|sp| sp.name().clone()).collect()
        } else if let Some(kind) = &ts.kind {
            let prefix = format!("{kind}-");
            let of_kind: Vec<SpName> = sps
                .iter()
                .map(|sp| sp.name().clone())
                .filter(|n| n.as_str().starts_with(&prefix))
                .collect();
            if of_kind.is_empty() {
                problems.push(format!("{at}: no SP is of kind {kind:?} (named {prefix}…)"));
            }
            of_kind
        } else {
            ts.sps
                .iter()
                .filter_map(|name| match find(name) {
                    Some(sp) => Some(sp.name().clone()),
                    None => {
                        problems.push(format!("{at}: unknown SP {name:?}"));
                        None
                    }
                })
                .collect()
        };
        let component = match parse_updatable(&ts.component) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        let Some(image) = images.get(ts.image) else {
            problems.push(format!(
                "{at}: image {} was not sent ({} descriptors came)",
                ts.image,
                images.len()
            ));
            continue;
        };
        let head = image.in_memory().unwrap_or_default();
        if let Err(e) = intake.check_image(component, image.len() as u64, head) {
            problems.push(format!("{at}: {e}"));
            continue;
        }
        for sp in chosen {
            let kind = sps
                .iter()
                .find(|h| *h.name() == sp)
                .and_then(SpHandle::kind);
            if let Some(kind) = kind.filter(|k| !k.has(component)) {
                problems.push(format!(
                    "{at}: {sp} is a {} SP: it has no {}",
                    kind.as_str(),
                    ts.component
                ));
                continue;
            }
            if let Some(first) = seen.insert((sp.clone(), ts.component.clone()), ts.line) {
                let first = first.map_or(String::new(), |l| format!(" (line {l})"));
                problems.push(format!(
                    "{at}: {sp} {} is a target twice{first}",
                    ts.component
                ));
                continue;
            }
            if own.as_ref() == Some(&sp) && !spec.allow_self {
                problems.push(format!(
                    "{at}: {sp} is the scrimlet's own sled (rollout.own_sp); add allow_self = true to update it"
                ));
                continue;
            }
            targets.push(Target {
                update_id: target_update_id(id, sp.as_str(), &ts.component, ts.slot),
                sp,
                component: ts.component.clone(),
                slot: ts.slot,
                image_sha256: image.hash.to_string(),
                total_bytes: image.len() as u64,
                wave: 0,
                line: ts.line,
                state: TargetState::Pending,
                started_unix_ms: None,
                finished_unix_ms: None,
                failure: None,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let sizes = wave_sizes(targets.len(), spec.canary, &spec.waves);
    let mut i = 0;
    for (wave, size) in sizes.iter().enumerate() {
        for t in &mut targets[i..i + size] {
            t.wave = wave;
        }
        i += size;
    }
    Ok(RolloutRecord {
        id,
        plan_sha256: plan_hash(spec, &targets, &sizes),
        phase: RolloutPhase::Running,
        reason: None,
        max_concurrent: spec.max_concurrent,
        stop_after_failures: spec.stop_after_failures,
        pause_between_waves: spec.pause_between_waves,
        after: spec.after,
        waves: sizes.len(),
        current_wave: 0,
        resume_at_unix_ms: None,
        created_unix_ms: unix_ms(),
        finished_unix_ms: None,
        resumed: 0,
        targets,
    })
}

/// SHA-256 over the expanded plan: the same rollout id with another plan
/// is a conflict.
fn plan_hash(spec: &RolloutSpec<usize>, targets: &[Target], sizes: &[usize]) -> String {
    let mut h = sha2::Sha256::new();
    for t in targets {
        h.update(format!(
            "{}/{}/{}/{};",
            t.sp, t.component, t.slot, t.image_sha256
        ));
    }
    h.update(format!(
        "{}/{:?}/{}/{:?}/{:?}",
        spec.max_concurrent, sizes, spec.stop_after_failures, spec.pause_between_waves, spec.after
    ));
    crate::types::hex(&h.finalize())
}
