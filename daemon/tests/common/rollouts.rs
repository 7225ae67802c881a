//! What the rollout suites (`rollouts_*.rs`) share: their rig, following a
//! rollout (start, status, watch), and reading its records: targets,
//! states, counts, and the plan's rules (the cap, the wave order) checked
//! against what was seen.

use super::{standard_rack, Rig, RigBuilder, SpDefaults};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::{json, Value};
use sp_sim::{SimSp, Timings};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Host flash of every simulated sled (MiB), and what the daemon is told.
pub const FLASH_MIB: u32 = 1;

/// `sleds` sleds and `switches` switches whose flash writes run at
/// `write_kib_per_s`, and the real `mgsd` (a child) with a state
/// directory, RPC attempts of 200 ms, and no periodic SP traffic.
pub fn rig(sleds: usize, switches: usize, write_kib_per_s: u64) -> RigBuilder {
    let rack = standard_rack(
        sleds,
        switches,
        0,
        Timings {
            host_flash_mib: FLASH_MIB,
            write_kib_per_s,
            reset_ms: 100,
            ..Timings::instant()
        },
    );
    Rig::child(rack).state().sp_defaults(SpDefaults {
        per_attempt_timeout_ms: Some(200),
        host_flash_capacity_mib: Some(FLASH_MIB.into()),
        ..SpDefaults::quiet()
    })
}

impl Rig {
    /// `mgsctl --json rollout start PLAN --id ID`, expecting success.
    pub async fn start_rollout(&self, plan: &Path, id: &str) -> Value {
        self.ok(&["rollout", "start", plan.to_str().unwrap(), "--id", id])
            .await
    }

    /// The rollout's record, asked on a connection of its own.
    pub async fn rollout_status(&self, id: &str) -> Value {
        let v = self.ask(&json!({"cmd": "rollout_status", "id": id})).await;
        assert!(v["ok"].is_object(), "rollout_status: {v}");
        v["ok"].clone()
    }

    /// Until the rollout has ended (its phase is terminal): its record.
    pub async fn until_rollout_ended(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.rollout_status(id).await;
            if ["complete", "stopped", "aborted"].contains(&phase(&r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "rollout not ended after {limit:?}: {}\n{}",
                summary(&r),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `rollout_watch` on a connection of its own, once its first line
    /// has come: a task reading the stream to its end (the events, and the
    /// last line).
    pub async fn watch_rollout(&self, id: &str) -> tokio::task::JoinHandle<(Vec<Value>, Value)> {
        let mut c = self.conn().await;
        let first = c.ask(&json!({"cmd": "rollout_watch", "id": id})).await;
        actix::spawn(async move {
            let mut events = Vec::new();
            let mut line = first;
            while line["event"].is_object() {
                events.push(line["event"].clone());
                line = c
                    .next_within(Duration::from_secs(60))
                    .await
                    .expect("the watch ends with an ok line, not end of stream");
            }
            (events, line)
        })
    }

    /// Prepares every simulated SP accepted, by name.
    pub fn prepares_by_sp(&self) -> Vec<(String, u64)> {
        self.rack()
            .sps
            .iter()
            .map(|sp| (sp.name.clone(), sp.fault_stats().prepares))
            .collect()
    }
}

/// A record's phase (`""` if it has none).
pub fn phase(r: &Value) -> &str {
    r["phase"].as_str().unwrap_or("")
}

/// A record's targets (it must have them).
pub fn targets(r: &Value) -> &[Value] {
    r["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("a record without targets: {r}"))
}

/// A target's state (`""` if it has none).
pub fn state(t: &Value) -> &str {
    t["state"].as_str().unwrap_or("")
}

/// The SP a target updates.
pub fn sp_of(t: &Value) -> &str {
    t["sp"].as_str().unwrap_or("")
}

/// The wave a target is in.
pub fn wave(t: &Value) -> u64 {
    t["wave"].as_u64().unwrap()
}

/// The target left `pending` (`skipped` ones never started).
pub fn started(t: &Value) -> bool {
    !matches!(state(t), "pending" | "skipped")
}

/// The target is neither pending nor running.
pub fn ended(t: &Value) -> bool {
    !matches!(state(t), "pending" | "running")
}

/// The id of the update a target started.
pub fn update_id(t: &Value) -> uuid::Uuid {
    uuid::Uuid::parse_str(t["update_id"].as_str().unwrap()).unwrap()
}

/// A record's count of targets in state `key`.
pub fn count(r: &Value, key: &str) -> u64 {
    r["counts"][key].as_u64().unwrap_or(0)
}

/// Names of the targets for which `pick` holds (SP and component).
pub fn names(r: &Value, pick: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    targets(r)
        .iter()
        .filter(|t| pick(t))
        .map(|t| format!("{} {}", sp_of(t), t["component"].as_str().unwrap_or("")))
        .collect()
}

/// One line about a record, for assertion messages.
pub fn summary(r: &Value) -> String {
    let per: Vec<String> = targets(r)
        .iter()
        .map(|t| format!("{}:w{}:{}", sp_of(t), wave(t), state(t)))
        .collect();
    format!(
        "phase {} wave {} reason {} counts {} [{}]",
        phase(r),
        r["current_wave"],
        r["reason"],
        r["counts"],
        per.join(" ")
    )
}

/// What one snapshot breaks of the plan's rules: more than `max` targets
/// running, or a target started while one of an earlier wave has not
/// ended.
pub fn snapshot_breaks(r: &Value, max: usize) -> Vec<String> {
    let ts = targets(r);
    let mut breaks = Vec::new();
    let running = ts.iter().filter(|t| state(t) == "running").count();
    if running > max {
        breaks.push(format!("{running} running (max_concurrent {max})"));
    }
    if count(r, "running") as usize != running {
        breaks.push(format!(
            "counts.running {} but {running} targets running",
            r["counts"]["running"]
        ));
    }
    for t in ts.iter().filter(|t| started(t)) {
        for early in ts.iter().filter(|e| wave(e) < wave(t) && !ended(e)) {
            breaks.push(format!(
                "{} (wave {}) is {} while {} (wave {}) is {}",
                sp_of(t),
                wave(t),
                state(t),
                sp_of(early),
                wave(early),
                state(early)
            ));
        }
    }
    breaks
}

/// The same rules over the final record's start and end times (Unix ms):
/// the most targets running at any moment, and any target that started
/// before every target of the wave before it had ended.
pub fn timeline_breaks(r: &Value, max: usize) -> (usize, Vec<String>) {
    let ts = targets(r);
    let mut edges: Vec<(u64, i32)> = Vec::new();
    let mut breaks = Vec::new();
    for t in ts {
        let (start, end) = (
            t["started_unix_ms"].as_u64(),
            t["finished_unix_ms"].as_u64(),
        );
        match (start, end) {
            (Some(s), Some(e)) => {
                // An end before the start at the same ms counts first.
                edges.push((s, 1));
                edges.push((e, -1));
            }
            (None, None) => {}
            _ => breaks.push(format!("{}: started {start:?}, finished {end:?}", sp_of(t))),
        }
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in &edges {
        now += d;
        most = most.max(now);
    }
    if most as usize > max {
        breaks.push(format!("{most} targets ran at once (max_concurrent {max})"));
    }
    let waves = ts.iter().map(wave).max().unwrap_or(0);
    for w in 1..=waves {
        let last_end = ts
            .iter()
            .filter(|t| wave(t) == w - 1)
            .filter_map(|t| t["finished_unix_ms"].as_u64())
            .max();
        for t in ts.iter().filter(|t| wave(t) == w) {
            if let (Some(s), Some(e)) = (t["started_unix_ms"].as_u64(), last_end) {
                if s < e {
                    breaks.push(format!(
                        "{} (wave {w}) started at {s}, before wave {} ended at {e}",
                        sp_of(t),
                        w - 1
                    ));
                }
            }
        }
    }
    (most as usize, breaks)
}

/// The simulated SP's update in progress of `component`: bytes received
/// and total.
pub fn in_progress(sp: &SimSp, component: SpComponent) -> Option<(u32, u32)> {
    match sp.update_status(component) {
        Ok(UpdateStatus::InProgress(s)) => Some((s.bytes_received, s.total_size)),
        _ => None,
    }
}
