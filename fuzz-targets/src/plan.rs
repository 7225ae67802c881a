//! `rollout_plan`: rollout plans, in both forms a client hands them over.
//!
//! - As a plan file: TOML read into `RolloutSpec<PathBuf>` the way
//!   `mgsctl rollout start` reads it, images turned into descriptor
//!   indices, sent as a `rollout_start` request line, which must parse
//!   back in the daemon to the very same plan.
//! - As the JSON `plan` of a `rollout_start` request.
//!
//! A plan that parses is then run through what the daemon computes from
//! it without SPs ([`exercise`]): its targets against a small rack, its
//! waves, and a course of the rollout record through every wave.

use actors::rollout_state::{
    target_update_id, wave_sizes, RolloutPhase, RolloutRecord, RolloutSpec, Target, TargetSpec,
    TargetState,
};
use actors::SpName;
use mgsd::api::{parse_request, Command, RolloutStartArgs};
use std::path::PathBuf;

/// The rack a plan's selectors pick from.
const RACK: [&str; 8] = [
    "sled-0", "sled-1", "sled-2", "sled-3", "switch-0", "switch-1", "psc-0", "psc-1",
];

/// Targets a plan expands to, at most: more are not run through the course.
const MAX_TARGETS: usize = 256;

/// A Unix time in ms, as the daemon's clock gives (2026).
const NOW_MS: u64 = 1_780_000_000_000;

/// Parse `data` as a plan file and as a JSON plan.
pub fn rollout_plan(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match toml::from_str::<RolloutSpec<PathBuf>>(text) {
            Ok(spec) => {
                let plan = as_sent(text, spec);
                let request = Command::RolloutStart(RolloutStartArgs {
                    id: Some(uuid::Uuid::from_u128(7)),
                    plan,
                });
                let line = serde_json::to_string(&request).expect("a plan serialises");
                let parsed = parse_request(&line)
                    .unwrap_or_else(|e| panic!("the daemon refuses {line}: {:?}", e.error));
                assert_eq!(parsed.command, request, "the plan arrives as sent: {line}");
                if let Command::RolloutStart(a) = &parsed.command {
                    exercise(&a.plan);
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        if let Ok(plan) = serde_json::from_str::<RolloutSpec<usize>>(text) {
            exercise(&plan);
        }
    })
}

/// What `mgsctl` sends for a plan file: every image path as the index
/// of its descriptor (one per distinct path), each `[[target]]` with the
/// line of its header if every target is such a table.
fn as_sent(text: &str, spec: RolloutSpec<PathBuf>) -> RolloutSpec<usize> {
    let lines: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[target]]"))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let count = spec.targets.len();
    let mut paths: Vec<PathBuf> = Vec::new();
    let targets = spec
        .targets
        .into_iter()
        .enumerate()
        .map(|(n, t)| {
            let image = match paths.iter().position(|p| *p == t.image) {
                Some(i) => i,
                None => {
                    paths.push(t.image.clone());
                    paths.len() - 1
                }
            };
            TargetSpec {
                sps: t.sps,
                kind: t.kind,
                all: t.all,
                component: t.component,
                slot: t.slot,
                image,
                line: lines.get(n).copied().filter(|_| lines.len() == count),
            }
        })
        .collect();
    RolloutSpec {
        max_concurrent: spec.max_concurrent,
        canary: spec.canary,
        waves: spec.waves,
        stop_after_failures: spec.stop_after_failures,
        pause_between_waves: spec.pause_between_waves,
        after: spec.after,
        allow_self: spec.allow_self,
        targets,
    }
}

/// What the daemon computes from a plan without SPs: the targets it picks
/// from [`RACK`], the waves, and the record's course when every target
/// completes (or, for odd ones, fails), wave after wave.
pub fn exercise(plan: &RolloutSpec<usize>) {
    let id = uuid::Uuid::from_u128(1);
    let mut targets = Vec::new();
    for ts in &plan.targets {
        let _ = actors::types::parse_updatable(&ts.component);
        let chosen: Vec<&str> = if ts.all {
            RACK.to_vec()
        } else if let Some(kind) = &ts.kind {
            let prefix = format!("{kind}-");
            RACK.iter()
                .copied()
                .filter(|n| n.starts_with(&prefix))
                .collect()
        } else {
            ts.sps.iter().map(String::as_str).collect()
        };
        for sp in chosen {
            if targets.len() == MAX_TARGETS {
                break;
            }
            targets.push(Target {
                update_id: target_update_id(id, sp, &ts.component, ts.slot),
                sp: SpName::from(sp),
                component: ts.component.clone(),
                slot: ts.slot,
                image_sha256: String::new(),
                total_bytes: 1 << 20,
                wave: 0,
                line: ts.line,
                state: TargetState::Pending,
                started_unix_ms: None,
                finished_unix_ms: None,
                failure: None,
            });
        }
    }
    let sizes = wave_sizes(targets.len(), plan.canary, &plan.waves);
    assert_eq!(
        sizes.iter().sum::<usize>(),
        targets.len(),
        "waves hold every target"
    );
    assert!(sizes.iter().all(|&s| s > 0), "no wave is empty");
    let mut at = 0;
    for (wave, size) in sizes.iter().enumerate() {
        for t in &mut targets[at..at + size] {
            t.wave = wave;
        }
        at += size;
    }
    let mut record = RolloutRecord {
        id,
        plan_sha256: String::new(),
        phase: RolloutPhase::Running,
        reason: None,
        max_concurrent: plan.max_concurrent.max(1),
        stop_after_failures: plan.stop_after_failures.max(1),
        pause_between_waves: plan.pause_between_waves,
        after: plan.after,
        waves: sizes.len(),
        current_wave: 0,
        resume_at_unix_ms: None,
        created_unix_ms: NOW_MS,
        finished_unix_ms: None,
        resumed: 0,
        targets,
    };
    course(&mut record);
}

/// Drive `record` to its end: start what is due, end it (targets on a
/// slot above 1 fail), settle; resume manual pauses, wait out timed ones.
fn course(record: &mut RolloutRecord) {
    let mut now = NOW_MS;
    record.settle(now);
    // Each turn ends at least one target or moves the phase on.
    for _ in 0..(record.targets.len() + record.waves + 2) * 3 {
        if record.phase.is_terminal() {
            break;
        }
        match record.phase {
            RolloutPhase::Paused => {
                assert!(record.resume(now), "a paused rollout resumes");
            }
            RolloutPhase::Waiting => {
                let resume = record.resume_at_unix_ms.expect("waiting has a resume time");
                now = now.max(resume);
                record.settle(now);
            }
            _ => {
                for i in record.due() {
                    record.targets[i].state = TargetState::Running;
                    record.targets[i].started_unix_ms = Some(now);
                }
                now = now.saturating_add(1_000);
                for t in &mut record.targets {
                    if t.state == TargetState::Running {
                        t.state = if t.slot > 1 {
                            TargetState::Failed
                        } else {
                            TargetState::Complete
                        };
                        t.finished_unix_ms = Some(now);
                    }
                }
                record.settle(now);
            }
        }
        let _ = record.rate_and_eta(&Default::default());
    }
    assert!(
        record.phase.is_terminal(),
        "a rollout whose targets all end, ends: {:?}",
        record.phase
    );
}
