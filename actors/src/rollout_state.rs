//! Rollouts as plain data: the plan a client sends ([`RolloutSpec`]), the
//! record the rollout actor owns ([`RolloutRecord`]: targets in order,
//! grouped in waves, each with its state) and its decisions (which targets
//! to start now, when a wave, the rollout or a stop is due), all tested
//! without sockets.

use crate::record::Phase;
use crate::types::SpName;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// A rollout plan as a client sends it. `I` is how an image is named: a
/// path in a plan file, an index into the descriptors on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec<I> {
    /// Target updates running at once, at most (default 4).
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
    /// Targets that go first, alone, as wave 0 (default 1).
    #[serde(default = "default_canary")]
    pub canary: usize,
    /// The waves after the canary: a number is a wave of that many
    /// targets, `"25%"` a wave that brings the targets started to that
    /// share of all; what is left after the last makes one more wave.
    #[serde(default)]
    pub waves: Vec<WaveSize>,
    /// Start no new target once this many have failed (default 1).
    #[serde(default = "default_failures")]
    pub stop_after_failures: usize,
    /// Between waves: nothing (default), a duration (`"10m"`), or
    /// `"manual"` (wait for `resume`).
    #[serde(default)]
    pub pause_between_waves: Pause,
    /// What to do after a target's update completes.
    #[serde(default)]
    pub after: After,
    /// Allow the scrimlet's own sled (`rollout.own_sp`) as a target.
    #[serde(default)]
    pub allow_self: bool,
    /// What to update, in order.
    #[serde(rename = "target")]
    pub targets: Vec<TargetSpec<I>>,
}

fn default_concurrency() -> usize {
    4
}
fn default_canary() -> usize {
    1
}
fn default_failures() -> usize {
    1
}

/// One `[[target]]`: a component, slot and image for the SPs that one
/// selector picks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec<I> {
    /// SPs by name or serial number...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sps: Vec<String>,
    /// ...or every SP whose name is `<kind>-…` (`sled`, `switch`, `psc`)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// ...or every SP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Component: sp, host-boot-flash, rot, stage0.
    pub component: String,
    /// Target slot (default 0).
    #[serde(default)]
    pub slot: u16,
    /// The image.
    pub image: I,
    /// Line of the plan file it came from (for errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// A wave's size: a number (`3`) or a share (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    /// So many targets.
    Count(usize),
    /// Up to this share (percent) of all targets started.
    Share(u8),
}

impl Serialize for WaveSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WaveSize::Count(n) => s.serialize_u64(*n as u64),
            WaveSize::Share(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for WaveSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(WaveSize::Count(n)),
            Raw::Text(text) => text
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u8>().ok())
                .filter(|n| (1..=100).contains(n))
                .map(WaveSize::Share)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "wave {text:?}: give a count (3) or a share of all targets (\"25%\", 1-100)"
                    ))
                }),
        }
    }
}

/// What happens between waves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pause {
    /// The next wave starts at once.
    #[default]
    None,
    /// The next wave starts after this long.
    For(Duration),
    /// The next wave waits for `resume`.
    Manual,
}

impl Serialize for Pause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pause::None => s.serialize_str("0s"),
            Pause::For(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            Pause::Manual => s.serialize_str("manual"),
        }
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "manual" {
            return Ok(Pause::Manual);
        }
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => Ok(Pause::None),
            Ok(d) => Ok(Pause::For(d)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "pause_between_waves {text:?}: give a duration (\"90s\", \"10m\") or \"manual\""
            ))),
        }
    }
}

/// What follows a target's completed update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// Nothing: the new image waits for the next reset.
    #[default]
    Nothing,
    /// Reset the component.
    Reset,
    /// Make the updated slot the persistent active one, then reset.
    ActivateAndReset,
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not started.
    Pending,
    /// Its update runs (or its after-action).
    Running,
    /// Updated (and reset, if asked).
    Complete,
    /// Its update (or after-action) failed.
    Failed,
    /// Its update was aborted.
    Aborted,
    /// Never started: the rollout stopped or was aborted first.
    Skipped,
}

impl TargetState {
    /// Every state (metric label sets).
    pub const ALL: [TargetState; 6] = [
        TargetState::Pending,
        TargetState::Running,
        TargetState::Complete,
        TargetState::Failed,
        TargetState::Aborted,
        TargetState::Skipped,
    ];

    /// Label text.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Running => "running",
            TargetState::Complete => "complete",
            TargetState::Failed => "failed",
            TargetState::Aborted => "aborted",
            TargetState::Skipped => "skipped",
        }
    }

    /// No more change will come.
    pub fn is_ended(self) -> bool {
        !matches!(self, TargetState::Pending | TargetState::Running)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Starting targets of the current wave as places free up.
    Running,
    /// Between waves, until `resume_at_unix_ms`.
    Waiting,
    /// Waiting for `resume` (asked for, or `pause_between_waves = "manual"`).
    Paused,
    /// Too many failures: no new target starts; running ones finish.
    Stopping,
    /// Stopped after failures.
    Stopped,
    /// Aborting the running targets' updates.
    Aborting,
    /// Aborted.
    Aborted,
    /// Every target ended, too few failed to stop it.
    Complete,
}

impl RolloutPhase {
    /// Every phase (metric label sets).
    pub const ALL: [RolloutPhase; 8] = [
        RolloutPhase::Running,
        RolloutPhase::Waiting,
        RolloutPhase::Paused,
        RolloutPhase::Stopping,
        RolloutPhase::Stopped,
        RolloutPhase::Aborting,
        RolloutPhase::Aborted,
        RolloutPhase::Complete,
    ];

    /// Label text.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Running => "running",
            RolloutPhase::Waiting => "waiting",
            RolloutPhase::Paused => "paused",
            RolloutPhase::Stopping => "stopping",
            RolloutPhase::Stopped => "stopped",
            RolloutPhase::Aborting => "aborting",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Complete => "complete",
        }
    }

    /// No more change will come.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RolloutPhase::Stopped | RolloutPhase::Aborted | RolloutPhase::Complete
        )
    }
}

/// One target of a rollout: an update of one SP's component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub sp: SpName,
    pub component: String,
    pub slot: u16,
    /// SHA-256 of its image, hex.
    pub image_sha256: String,
    /// Bytes.
    pub total_bytes: u64,
    /// Its update's id: derived from the rollout's id and the target, so
    /// starting it again (a retry, a restart) is the same update.
    pub update_id: uuid::Uuid,
    /// Its wave (0: the canary).
    pub wave: usize,
    /// Plan file line, if known.
    pub line: Option<u32>,
    /// Where it stands. How its update goes (phase, bytes, rate) is read
    /// from the update itself, by `update_id`.
    pub state: TargetState,
    /// Unix ms; the after-action is part of the target.
    pub started_unix_ms: Option<u64>,
    /// Unix ms, after the after-action.
    pub finished_unix_ms: Option<u64>,
    /// Why it failed (its update's failure, or the after-action's).
    pub failure: Option<String>,
}

/// How a target's update goes, as its update publishes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    pub phase: Phase,
    pub bytes_acked: u64,
    /// Bytes/s, while delivering.
    pub rate: Option<f64>,
}

/// Counts of targets by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Counts {
    pub pending: usize,
    pub running: usize,
    pub complete: usize,
    pub failed: usize,
    pub aborted: usize,
    pub skipped: usize,
}

/// A rollout: its options, its targets and where it stands. Owned by its
/// actor, published on a `watch`, journalled at every change of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Client-chosen id.
    pub id: uuid::Uuid,
    /// SHA-256 over the expanded plan: the same id with another plan is a
    /// conflict.
    pub plan_sha256: String,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// Why it is paused, stopped or aborted.
    pub reason: Option<String>,
    /// Options, as given.
    pub max_concurrent: usize,
    /// See [`RolloutSpec::stop_after_failures`].
    pub stop_after_failures: usize,
    /// See [`RolloutSpec::pause_between_waves`].
    pub pause_between_waves: Pause,
    /// See [`RolloutSpec::after`].
    pub after: After,
    /// Waves, the canary being wave 0.
    pub waves: usize,
    /// The wave whose targets start now.
    pub current_wave: usize,
    /// While waiting between waves: when the next starts (Unix ms).
    pub resume_at_unix_ms: Option<u64>,
    /// Created and ended (Unix ms).
    pub created_unix_ms: u64,
    /// See `created_unix_ms`.
    pub finished_unix_ms: Option<u64>,
    /// Times taken up again after a daemon restart.
    #[serde(default)]
    pub resumed: u32,
    /// The targets, in plan order.
    pub targets: Vec<Target>,
}

/// The update id of a rollout's target: a UUID (version 8) from the
/// SHA-256 of the rollout's id and the target.
pub fn target_update_id(rollout: uuid::Uuid, sp: &str, component: &str, slot: u16) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(rollout.as_bytes());
    h.update(sp.as_bytes());
    h.update([0]);
    h.update(component.as_bytes());
    h.update(slot.to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0F) | 0x80;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

/// Wave sizes for `n` targets: the canary, then `waves`, then what is
/// left. Empty waves are dropped.
pub fn wave_sizes(n: usize, canary: usize, waves: &[WaveSize]) -> Vec<usize> {
    let mut sizes = vec![canary.min(n)];
    let mut started = sizes[0];
    for w in waves {
        let upto = match *w {
            // A count past every target takes what is left.
            WaveSize::Count(k) => started.saturating_add(k),
            WaveSize::Share(p) => (n * usize::from(p)).div_ceil(100),
        };
        let upto = upto.min(n).max(started);
        sizes.push(upto - started);
        started = upto;
    }
    sizes.push(n - started);
    sizes.retain(|s| *s > 0);
    sizes
}

impl Counts {
    fn slot(&mut self, state: TargetState) -> &mut usize {
        match state {
            TargetState::Pending => &mut self.pending,
            TargetState::Running => &mut self.running,
            TargetState::Complete => &mut self.complete,
            TargetState::Failed => &mut self.failed,
            TargetState::Aborted => &mut self.aborted,
            TargetState::Skipped => &mut self.skipped,
        }
    }

    /// Targets in `state`.
    pub fn of(mut self, state: TargetState) -> usize {
        *self.slot(state)
    }
}

impl RolloutRecord {
    /// Targets by state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.targets {
            *c.slot(t.state) += 1;
        }
        c
    }

    /// The targets to start now: pending ones of the current wave, as
    /// many as there are free places, never two on one SP at once (an SP
    /// has one update buffer).
    pub fn due(&self) -> Vec<usize> {
        if self.phase != RolloutPhase::Running {
            return Vec::new();
        }
        let mut free = self.max_concurrent.saturating_sub(self.counts().running);
        let mut busy: Vec<&SpName> = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Running)
            .map(|t| &t.sp)
            .collect();
        let mut due = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if free == 0 {
                break;
            }
            if t.wave == self.current_wave
                && t.state == TargetState::Pending
                && !busy.contains(&&t.sp)
            {
                busy.push(&t.sp);
                due.push(i);
                free -= 1;
            }
        }
        due
    }

    /// Move on as far as the targets' states allow at `now_ms`: stop
    /// after too many failures, finish a stop or an abort once nothing
    /// runs, go to the next wave (at once, after the pause, or paused),
    /// complete.
    pub fn settle(&mut self, now_ms: u64) {
        loop {
            let c = self.counts();
            match self.phase {
                RolloutPhase::Running | RolloutPhase::Waiting | RolloutPhase::Paused
                    if c.failed >= self.stop_after_failures.max(1) =>
                {
                    self.phase = RolloutPhase::Stopping;
                    self.reason = Some(format!(
                        "{} target(s) failed (stop_after_failures = {}): no new target starts",
                        c.failed, self.stop_after_failures
                    ));
                }
                RolloutPhase::Stopping | RolloutPhase::Aborting if c.running == 0 => {
                    self.phase = if self.phase == RolloutPhase::Stopping {
                        RolloutPhase::Stopped
                    } else {
                        RolloutPhase::Aborted
                    };
                    for t in &mut self.targets {
                        if t.state == TargetState::Pending {
                            t.state = TargetState::Skipped;
                        }
                    }
                    self.finished_unix_ms = Some(now_ms);
                    return;
                }
                RolloutPhase::Waiting if self.resume_at_unix_ms.is_none_or(|t| now_ms >= t) => {
                    self.phase = RolloutPhase::Running;
                    self.resume_at_unix_ms = None;
                }
                RolloutPhase::Running if self.wave_done() => {
                    if self.current_wave + 1 >= self.waves {
                        self.phase = RolloutPhase::Complete;
                        self.reason =
                            (c.failed > 0).then(|| format!("{} target(s) failed", c.failed));
                        self.finished_unix_ms = Some(now_ms);
                        return;
                    }
                    self.current_wave += 1;
                    match self.pause_between_waves {
                        Pause::None => {}
                        Pause::For(d) => {
                            self.phase = RolloutPhase::Waiting;
                            // A pause past the end of the clock lasts
                            // until an operator resumes.
                            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                            self.resume_at_unix_ms = Some(now_ms.saturating_add(ms));
                        }
                        Pause::Manual => {
                            self.phase = RolloutPhase::Paused;
                            self.reason = Some(format!(
                                "wave {} of {} is next: resume to start it",
                                self.current_wave, self.waves
                            ));
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn wave_done(&self) -> bool {
        self.targets
            .iter()
            .filter(|t| t.wave == self.current_wave)
            .all(|t| t.state.is_ended())
    }

    /// An operator's pause: no new target starts until `resume`.
    pub fn pause(&mut self) -> bool {
        if matches!(self.phase, RolloutPhase::Running | RolloutPhase::Waiting) {
            self.phase = RolloutPhase::Paused;
            self.resume_at_unix_ms = None;
            self.reason = Some("paused by an operator".into());
            return true;
        }
        false
    }

    /// Go on after a pause.
    pub fn resume(&mut self, now_ms: u64) -> bool {
        if self.phase != RolloutPhase::Paused {
            return false;
        }
        self.phase = RolloutPhase::Running;
        self.reason = None;
        self.settle(now_ms);
        true
    }

    /// Abort: no new target starts; the running ones are to be aborted.
    pub fn abort(&mut self, now_ms: u64) -> bool {
        if self.phase.is_terminal() || self.phase == RolloutPhase::Aborting {
            return false;
        }
        self.phase = RolloutPhase::Aborting;
        self.reason = Some("aborted by an operator".into());
        self.settle(now_ms);
        true
    }

    /// Bytes per second of the running targets together, and seconds
    /// until the whole plan is done at the per-target rate measured so
    /// far (completed and running targets), `max_concurrent` at a time.
    /// `live` gives the running targets' updates, by update id.
    pub fn rate_and_eta(&self, live: &HashMap<uuid::Uuid, Live>) -> (u64, Option<u64>) {
        let running = || {
            self.targets
                .iter()
                .filter(|t| t.state == TargetState::Running)
                .filter_map(|t| live.get(&t.update_id))
        };
        let aggregate = running().filter_map(|l| l.rate).sum::<f64>() as u64;
        let rates: Vec<f64> = self
            .targets
            .iter()
            .filter_map(|t| {
                let secs = (t.finished_unix_ms? - t.started_unix_ms?) as f64 / 1000.0;
                (t.state == TargetState::Complete && secs > 0.0)
                    .then(|| t.total_bytes as f64 / secs)
            })
            .chain(running().filter_map(|l| l.rate))
            .filter(|r| *r > 0.0)
            .collect();
        if self.phase.is_terminal() {
            return (aggregate, Some(0));
        }
        if rates.is_empty() {
            return (aggregate, None);
        }
        let per_target = rates.iter().sum::<f64>() / rates.len() as f64;
        let left: u64 = self
            .targets
            .iter()
            .map(|t| match t.state {
                TargetState::Pending => t.total_bytes,
                TargetState::Running => {
                    let acked = live.get(&t.update_id).map_or(0, |l| l.bytes_acked);
                    t.total_bytes.saturating_sub(acked)
                }
                _ => 0,
            })
            .sum();
        let lanes = self.max_concurrent.max(1) as f64;
        (
            aggregate,
            Some((left as f64 / (per_target * lanes)).ceil() as u64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(waves: &[usize], max: usize, stop: usize, pause: Pause) -> RolloutRecord {
        let mut targets = Vec::new();
        for (w, n) in waves.iter().enumerate() {
            for _ in 0..*n {
                let i = targets.len();
                targets.push(Target {
                    sp: SpName::from(format!("sled-{i}").as_str()),
                    component: "host-boot-flash".into(),
                    slot: 1,
                    image_sha256: "00".into(),
                    total_bytes: 1000,
                    update_id: uuid::Uuid::from_u128(fastrand::u128(..)),
                    wave: w,
                    line: None,
                    state: TargetState::Pending,
                    started_unix_ms: None,
                    finished_unix_ms: None,
                    failure: None,
                });
            }
        }
        RolloutRecord {
            id: uuid::Uuid::from_u128(fastrand::u128(..)),
            plan_sha256: String::new(),
            phase: RolloutPhase::Running,
            reason: None,
            max_concurrent: max,
            stop_after_failures: stop,
            pause_between_waves: pause,
            after: After::Nothing,
            waves: waves.len(),
            current_wave: 0,
            resume_at_unix_ms: None,
            created_unix_ms: 0,
            finished_unix_ms: None,
            resumed: 0,
            targets,
        }
    }

    fn run(r: &mut RolloutRecord, i: &[usize]) {
        for &i in i {
            r.targets[i].state = TargetState::Running;
        }
    }

    fn end(r: &mut RolloutRecord, i: &[usize], state: TargetState, now: u64) {
        for &i in i {
            r.targets[i].state = state;
        }
        r.settle(now);
    }

    #[test]
    fn waves_from_counts_and_shares() {
        let share = |p| WaveSize::Share(p);
        assert_eq!(wave_sizes(34, 1, &[share(25), share(100)]), [1, 8, 25]);
        assert_eq!(wave_sizes(10, 1, &[WaveSize::Count(3)]), [1, 3, 6]);
        assert_eq!(wave_sizes(10, 0, &[]), [10]);
        assert_eq!(wave_sizes(2, 5, &[share(50)]), [2]);
        assert_eq!(wave_sizes(0, 1, &[]), Vec::<usize>::new());
        let all = WaveSize::Count(usize::MAX);
        assert_eq!(wave_sizes(10, 1, &[all, WaveSize::Count(3)]), [1, 9]);
    }

    #[test]
    fn canary_alone_then_waves_within_the_cap() {
        let mut r = record(&[1, 4, 5], 2, 1, Pause::None);
        assert_eq!(r.due(), [0], "the canary goes alone");
        run(&mut r, &[0]);
        assert!(r.due().is_empty());
        end(&mut r, &[0], TargetState::Complete, 10);
        assert_eq!(r.current_wave, 1);
        assert_eq!(r.due(), [1, 2], "two places");
        run(&mut r, &[1, 2]);
        end(&mut r, &[1], TargetState::Complete, 20);
        assert_eq!(r.due(), [3]);
        run(&mut r, &[3]);
        end(&mut r, &[2, 3], TargetState::Complete, 30);
        assert_eq!(r.due(), [4], "the wave's last one before the next wave");
        run(&mut r, &[4]);
        end(&mut r, &[4], TargetState::Complete, 40);
        assert_eq!(r.current_wave, 2);
        let rest = r.due();
        run(&mut r, &rest);
        end(&mut r, &rest, TargetState::Complete, 50);
        assert_eq!(r.due(), [7, 8]);
        run(&mut r, &[7, 8]);
        end(&mut r, &[7, 8], TargetState::Complete, 60);
        let last = r.due();
        assert_eq!(last, [9]);
        run(&mut r, &last);
        end(&mut r, &last, TargetState::Complete, 70);
        assert_eq!(r.phase, RolloutPhase::Complete);
        assert_eq!(r.finished_unix_ms, Some(70));
    }

    #[test]
    fn one_target_per_sp_at_a_time() {
        let mut r = record(&[4], 4, 1, Pause::None);
        r.targets[1].sp = r.targets[0].sp.clone();
        assert_eq!(r.due(), [0, 2, 3], "sled-0's second component waits");
        run(&mut r, &[0, 2, 3]);
        assert!(r.due().is_empty());
        end(&mut r, &[0], TargetState::Complete, 1);
        assert_eq!(r.due(), [1]);
    }

    #[test]
    fn a_failed_canary_stops_everything() {
        let mut r = record(&[1, 3], 4, 1, Pause::None);
        run(&mut r, &[0]);
        end(&mut r, &[0], TargetState::Failed, 5);
        assert_eq!(r.phase, RolloutPhase::Stopped);
        assert!(r.due().is_empty());
        assert_eq!(r.counts().skipped, 3);
        assert!(r
            .reason
            .as_deref()
            .unwrap()
            .contains("stop_after_failures = 1"));
    }

    #[test]
    fn failures_stop_new_starts_and_running_ones_finish() {
        let mut r = record(&[1, 6], 3, 2, Pause::None);
        run(&mut r, &[0]);
        end(&mut r, &[0], TargetState::Complete, 1);
        run(&mut r, &[1, 2, 3]);
        end(&mut r, &[1], TargetState::Failed, 2);
        assert_eq!(r.due(), [4], "one failure is below the limit");
        run(&mut r, &[4]);
        end(&mut r, &[2], TargetState::Failed, 3);
        assert_eq!(r.phase, RolloutPhase::Stopping);
        assert!(r.due().is_empty(), "no new start");
        end(&mut r, &[3], TargetState::Complete, 4);
        assert_eq!(r.phase, RolloutPhase::Stopping, "one still runs");
        end(&mut r, &[4], TargetState::Complete, 5);
        assert_eq!(r.phase, RolloutPhase::Stopped);
        let c = r.counts();
        assert_eq!((c.complete, c.failed, c.skipped), (3, 2, 2));
    }

    #[test]
    fn a_pause_longer_than_the_clock_waits_for_an_operator() {
        // What a plan's "18446744073709551s" (or anything longer) gives.
        for d in [Duration::from_secs(18_446_744_073_709_551), Duration::MAX] {
            let mut r = record(&[1, 1], 4, 1, Pause::For(d));
            run(&mut r, &[0]);
            end(&mut r, &[0], TargetState::Complete, 1000);
            assert_eq!(r.phase, RolloutPhase::Waiting);
            assert_eq!(r.resume_at_unix_ms, Some(u64::MAX));
            r.settle(u64::MAX - 1);
            assert!(r.due().is_empty());
            assert!(r.pause() && r.resume(2000));
            assert_eq!(r.due(), [1]);
        }
    }

    #[test]
    fn pauses_between_waves_timed_manual_and_by_operators() {
        let mut r = record(&[1, 1, 1], 4, 1, Pause::For(Duration::from_secs(10)));
        run(&mut r, &[0]);
        end(&mut r, &[0], TargetState::Complete, 1000);
        assert_eq!(r.phase, RolloutPhase::Waiting);
        assert_eq!(r.resume_at_unix_ms, Some(11_000));
        assert!(r.due().is_empty());
        r.settle(10_999);
        assert_eq!(r.phase, RolloutPhase::Waiting);
        r.settle(11_000);
        assert_eq!(r.due(), [1]);
        assert!(r.pause());
        assert!(r.due().is_empty());
        assert!(r.resume(12_000));
        assert_eq!(r.due(), [1]);

        let mut m = record(&[1, 1], 4, 1, Pause::Manual);
        run(&mut m, &[0]);
        end(&mut m, &[0], TargetState::Complete, 1);
        assert_eq!(m.phase, RolloutPhase::Paused);
        assert!(m.due().is_empty());
        assert!(m.resume(2));
        assert_eq!(m.due(), [1]);
    }

    #[test]
    fn abort_skips_pending_once_running_ones_end() {
        let mut r = record(&[1, 3], 4, 1, Pause::None);
        run(&mut r, &[0]);
        end(&mut r, &[0], TargetState::Complete, 1);
        run(&mut r, &[1, 2]);
        assert!(r.abort(2));
        assert_eq!(r.phase, RolloutPhase::Aborting);
        assert!(r.due().is_empty());
        end(&mut r, &[1, 2], TargetState::Aborted, 3);
        assert_eq!(r.phase, RolloutPhase::Aborted);
        assert_eq!(r.counts().skipped, 1);
        assert!(!r.abort(4), "once");
    }

    #[test]
    fn update_ids_are_stable_and_distinct_uuids() {
        let id = uuid::Uuid::from_u128(fastrand::u128(..));
        let a = target_update_id(id, "sled-0", "sp", 0);
        assert_eq!(a, target_update_id(id, "sled-0", "sp", 0));
        assert_ne!(a, target_update_id(id, "sled-0", "sp", 1));
        assert_ne!(a, target_update_id(id, "sled-1", "sp", 0));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn plans_parse_with_their_defaults_and_clear_errors() {
        let spec: RolloutSpec<String> = toml::from_str(
            "waves = [\"25%\", 3]\npause_between_waves = \"manual\"\n\
             [[target]]\nkind = \"sled\"\ncomponent = \"sp\"\nimage = \"sp.zip\"\n",
        )
        .unwrap();
        assert_eq!(spec.max_concurrent, 4);
        assert_eq!(spec.canary, 1);
        assert_eq!(spec.waves, [WaveSize::Share(25), WaveSize::Count(3)]);
        assert_eq!(spec.pause_between_waves, Pause::Manual);
        assert_eq!(spec.after, After::Nothing);
        let e =
            toml::from_str::<RolloutSpec<String>>("waves = [\"200%\"]\ntarget = []\n").unwrap_err();
        assert!(e.to_string().contains("1-100"), "{e}");
        let e = toml::from_str::<RolloutSpec<String>>("colour = 1\ntarget = []\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
