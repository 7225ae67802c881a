//! Metric names, help texts and label values, in one place. Labels come
//! from closed sets: configured SP names, component names, request kinds,
//! outcomes, phases and failure reasons; never update ids.

use crate::rollout_state::{Counts, RolloutPhase, RolloutRecord, TargetState};
use crate::update_state::{FailureKind, Phase, UpdateRecord};
use gateway_messages::MgsRequest;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};
use std::time::Duration;
use tokio::sync::watch;

/// SP answered recently (1) or not (0).
pub const SP_REACHABLE: &str = "mgsd_sp_reachable";
/// Gauge: for an SP behind an interface, whether the interface is up.
pub const SP_LINK_UP: &str = "mgsd_sp_link_up";
/// Time from the SpActor's start to the SP's first identification.
pub const SP_DISCOVERY: &str = "mgsd_sp_discovery_duration_seconds";
/// Requests by kind and outcome.
pub const SP_REQUESTS: &str = "mgsd_sp_requests_total";
/// Attempts that timed out.
pub const SP_TIMEOUTS: &str = "mgsd_sp_timeouts_total";
/// Identical resends.
pub const SP_RETRIES: &str = "mgsd_sp_retries_total";
/// `Busy` answers.
pub const SP_BUSY: &str = "mgsd_sp_busy_total";
/// Request round-trip time.
pub const SP_RTT: &str = "mgsd_sp_rtt_seconds";
/// One gauge per update phase: 1 for the component's current one.
pub const UPDATE_STATE: &str = "mgsd_update_state";
/// Bytes the SP acknowledged in the current update.
pub const UPDATE_DELIVERED: &str = "mgsd_update_delivered_bytes";
/// Size of the current update's image.
pub const UPDATE_SIZE: &str = "mgsd_update_size_bytes";
/// Erase progress of the current update (0–1).
pub const UPDATE_ERASE: &str = "mgsd_update_erase_progress_ratio";
/// Chunks sent again after a rewind.
pub const UPDATE_RETRANSMITS: &str = "mgsd_update_chunks_retransmitted_total";
/// Rewinds to the SP's `bytes_received`.
pub const UPDATE_REWINDS: &str = "mgsd_update_rewinds_total";
/// Delivery rate of the current update.
pub const UPDATE_RATE: &str = "mgsd_update_delivery_rate_bytes_per_second";
/// Start time of the current update (Unix seconds).
pub const UPDATE_START: &str = "mgsd_update_start_time_seconds";
/// Updates completed.
pub const UPDATE_COMPLETIONS: &str = "mgsd_update_completions_total";
/// Updates failed, by reason.
pub const UPDATE_FAILURES: &str = "mgsd_update_failures_total";
/// Updates being delivered.
pub const ACTIVE_UPDATES: &str = "mgsd_active_updates";
/// Firmware version of the running image (info metric, value 1).
pub const FIRMWARE_INFO: &str = "mgsd_sp_firmware_info";
/// Updates taken up again after a daemon restart.
pub const UPDATE_RESUMED: &str = "mgsd_update_resumed_total";
/// Time to write one update record to the journal.
pub const JOURNAL_WRITE: &str = "mgsd_journal_write_seconds";
/// Gauge: rollout targets by `state`, over every rollout since start.
pub const ROLLOUT_TARGETS: &str = "mgsd_rollout_targets";
/// Gauge: rollouts by `state` (phase), since start.
pub const ROLLOUT_STATE: &str = "mgsd_rollout_state";
/// Counter: rollouts stopped by their failure rule.
pub const ROLLOUT_STOPS: &str = "mgsd_rollout_stops_total";

/// Counter: SP resets by `outcome` (activated, rolled_back, unreachable,
/// reset) and `method` (watchdog, plain).
pub const SP_RESETS: &str = "mgsd_sp_resets_total";

/// Register help texts and units (call once at start).
pub fn describe() {
    describe_gauge!(
        SP_LINK_UP,
        "For an SP found on an interface (a switch port): whether the interface exists and is up."
    );
    describe_gauge!(
        ROLLOUT_TARGETS,
        "Rollout targets by state, over every rollout since the daemon started."
    );
    describe_gauge!(
        ROLLOUT_STATE,
        "Rollouts by state (running, waiting, paused, stopping, stopped, aborting, aborted, complete)."
    );
    describe_counter!(
        ROLLOUT_STOPS,
        "Rollouts that stopped starting targets because too many failed."
    );
    describe_gauge!(
        SP_REACHABLE,
        "Whether the SP answered recently (1) or not (0)."
    );
    describe_gauge!(
        SP_DISCOVERY,
        Unit::Seconds,
        "Time from start until the SP was discovered and identified."
    );
    describe_counter!(
        SP_REQUESTS,
        "Requests sent to SPs, by request kind and outcome."
    );
    describe_counter!(SP_TIMEOUTS, "Request attempts that got no answer in time.");
    describe_counter!(
        SP_RETRIES,
        "Identical resends of a request after a timeout or Busy."
    );
    describe_counter!(SP_BUSY, "Busy answers from SPs.");
    describe_histogram!(
        SP_RTT,
        Unit::Seconds,
        "Round-trip time of answered requests."
    );
    describe_gauge!(
        UPDATE_STATE,
        "Phase of the component's most recent update: 1 for the current phase, 0 otherwise."
    );
    describe_gauge!(
        UPDATE_DELIVERED,
        Unit::Bytes,
        "Bytes of the current update the SP has acknowledged."
    );
    describe_gauge!(
        UPDATE_SIZE,
        Unit::Bytes,
        "Size of the current update's image."
    );
    describe_gauge!(
        UPDATE_ERASE,
        "Erase progress of the current update, 0 to 1."
    );
    describe_counter!(
        UPDATE_RETRANSMITS,
        "Update chunks sent again after a rewind."
    );
    describe_counter!(
        UPDATE_REWINDS,
        "Times delivery resumed from the SP's bytes_received."
    );
    describe_gauge!(
        UPDATE_RATE,
        "Delivery rate of the current update, bytes per second."
    );
    describe_gauge!(
        UPDATE_START,
        Unit::Seconds,
        "Start time of the current update, Unix seconds."
    );
    describe_counter!(UPDATE_COMPLETIONS, "Updates the SP reported complete.");
    describe_counter!(UPDATE_FAILURES, "Updates that failed, by reason.");
    describe_gauge!(ACTIVE_UPDATES, "Updates being delivered.");
    describe_counter!(
        UPDATE_RESUMED,
        "Updates taken up again (where the SP left them) after a daemon restart."
    );
    describe_histogram!(
        JOURNAL_WRITE,
        Unit::Seconds,
        "Time to write one update record to the state directory's journal."
    );
    describe_counter!(
        SP_RESETS,
        "SP resets by outcome (activated, rolled_back, unreachable, reset) and method (watchdog, plain)."
    );
    describe_gauge!(
        FIRMWARE_INFO,
        "Firmware version (caboose VERS) of the running sp and rot images; always 1."
    );
}

/// Closed set of request kinds for labels.
pub fn request_kind(r: &MgsRequest) -> &'static str {
    use MgsRequest as Q;
    match r {
        Q::Discover => "discover",
        Q::SpState => "sp_state",
        Q::GetPowerState => "get_power_state",
        Q::SetPowerState(_) => "set_power_state",
        Q::SpUpdatePrepare(_) => "sp_update_prepare",
        Q::ComponentUpdatePrepare(_) => "component_update_prepare",
        Q::UpdateChunk(_) => "update_chunk",
        Q::UpdateStatus(_) => "update_status",
        Q::UpdateAbort { .. } => "update_abort",
        Q::ResetComponentPrepare { .. } => "reset_component_prepare",
        Q::ResetComponentTrigger { .. } => "reset_component_trigger",
        Q::ResetComponentTriggerWithWatchdog { .. } => "reset_component_trigger_with_watchdog",
        Q::ComponentWatchdogSupported { .. } => "component_watchdog_supported",
        Q::DisableComponentWatchdog { .. } => "disable_component_watchdog",
        Q::ComponentGetActiveSlot(_) => "component_get_active_slot",
        Q::ComponentSetActiveSlot { .. } => "component_set_active_slot",
        Q::ComponentSetAndPersistActiveSlot { .. } => "component_set_and_persist_active_slot",
        Q::ComponentGetPersistentSlot(_) => "component_get_persistent_slot",
        Q::ReadComponentCaboose { .. } | Q::ReadCaboose { .. } => "read_caboose",
        Q::StartHostFlashHash { .. } => "start_host_flash_hash",
        Q::GetHostFlashHash { .. } => "get_host_flash_hash",
        _ => "other",
    }
}

/// A request ended with `outcome` (`ok`, `sp_error`, `timeout`, `busy`,
/// `io`, `stopped`).
pub fn request_done(sp: &str, kind: &'static str, outcome: &'static str, rtt: Option<Duration>) {
    counter!(SP_REQUESTS, "sp" => sp.to_string(), "kind" => kind, "outcome" => outcome)
        .increment(1);
    if let Some(rtt) = rtt {
        histogram!(SP_RTT, "sp" => sp.to_string()).record(rtt.as_secs_f64());
    }
}

/// Reachability changed.
pub fn reachable(sp: &str, up: bool) {
    gauge!(SP_REACHABLE, "sp" => sp.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// First identification took `d`.
pub fn discovered(sp: &str, d: Duration) {
    gauge!(SP_DISCOVERY, "sp" => sp.to_string()).set(d.as_secs_f64());
}

/// The running `component` image of `sp` is `version`. An earlier version
/// of the same component drops to 0.
pub fn firmware(sp: &str, component: &str, version: &str) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashMap<(String, String), String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let key = (sp.to_string(), component.to_string());
    let old = seen
        .get_or_insert_with(HashMap::new)
        .insert(key, version.to_string());
    let labels = |v: String| {
        [
            ("sp", sp.to_string()),
            ("component", component.to_string()),
            ("version", v),
        ]
    };
    if let Some(old) = old.filter(|o| o != version) {
        gauge!(FIRMWARE_INFO, &labels(old)).set(0.0);
    }
    gauge!(FIRMWARE_INFO, &labels(version.to_string())).set(1.0);
}

/// An update was taken up again after a restart.
pub fn resumed(sp: &str, component: &str) {
    counter!(UPDATE_RESUMED, "sp" => sp.to_string(), "component" => component.to_string())
        .increment(1);
}

/// A reset of `sp` ended.
pub fn reset_done(sp: &str, outcome: crate::activate::Outcome, method: crate::activate::Method) {
    counter!(SP_RESETS, "sp" => sp.to_string(), "outcome" => outcome.as_str(), "method" => method.as_str())
        .increment(1);
}

/// A journal write took `d`.
pub fn journal_write(d: Duration) {
    histogram!(JOURNAL_WRITE).record(d.as_secs_f64());
}

/// Handles for what an SP actor records per datagram, made once: looking
/// a metric up by labels costs allocations the hot path must not pay.
pub struct SpMetrics {
    chunk_ok: Counter,
    chunk_error: Counter,
    rtt: Histogram,
    timeouts: Counter,
    retries: Counter,
    busy: Counter,
}

impl SpMetrics {
    /// Handles for SP `sp`.
    pub fn new(sp: &str) -> Self {
        let chunk = |outcome: &'static str| counter!(SP_REQUESTS, "sp" => sp.to_string(), "kind" => "update_chunk", "outcome" => outcome);
        Self {
            chunk_ok: chunk("ok"),
            chunk_error: chunk("sp_error"),
            rtt: histogram!(SP_RTT, "sp" => sp.to_string()),
            timeouts: counter!(SP_TIMEOUTS, "sp" => sp.to_string()),
            retries: counter!(SP_RETRIES, "sp" => sp.to_string()),
            busy: counter!(SP_BUSY, "sp" => sp.to_string()),
        }
    }

    /// A chunk was answered (acknowledged or refused) after `rtt`.
    pub fn chunk(&self, ok: bool, rtt: Duration) {
        if ok {
            &self.chunk_ok
        } else {
            &self.chunk_error
        }
        .increment(1);
        self.rtt.record(rtt.as_secs_f64());
    }

    /// An attempt went unanswered.
    pub fn timeout(&self) {
        self.timeouts.increment(1);
    }

    /// A request was sent again.
    pub fn retry(&self) {
        self.retries.increment(1);
    }

    /// A `Busy` answer (the request is resent after a backoff).
    pub fn busy(&self) {
        self.busy.increment(1);
    }
}

/// Publish an update record; `was` is the phase it had before, `since`
/// the record last published.
fn update_record(r: &UpdateRecord, was: Option<Phase>, since: (u64, u64)) {
    let (sp, c) = (r.sp.to_string(), r.component.clone());
    for p in Phase::ALL {
        let on = if p == r.phase { 1.0 } else { 0.0 };
        gauge!(UPDATE_STATE, "sp" => sp.clone(), "component" => c.clone(), "state" => p.as_str())
            .set(on);
    }
    gauge!(UPDATE_DELIVERED, "sp" => sp.clone(), "component" => c.clone())
        .set(r.bytes_acked as f64);
    gauge!(UPDATE_SIZE, "sp" => sp.clone(), "component" => c.clone()).set(r.total_bytes as f64);
    let erase = r
        .erase_progress
        .map_or(0.0, |(cur, total)| f64::from(cur) / f64::from(total.max(1)));
    gauge!(UPDATE_ERASE, "sp" => sp.clone(), "component" => c.clone()).set(erase);
    let rate = r.rate(tokio::time::Instant::now()).unwrap_or(0.0);
    gauge!(UPDATE_RATE, "sp" => sp.clone(), "component" => c.clone()).set(rate);
    gauge!(UPDATE_START, "sp" => sp.clone(), "component" => c.clone())
        .set(r.started_unix_ms as f64 / 1000.0);
    let (resent, rewinds) = (r.chunks_retransmitted - since.0, r.rewinds - since.1);
    if resent > 0 {
        counter!(UPDATE_RETRANSMITS, "sp" => sp.clone(), "component" => c.clone())
            .increment(resent);
    }
    if rewinds > 0 {
        counter!(UPDATE_REWINDS, "sp" => sp.clone(), "component" => c.clone()).increment(rewinds);
    }
    let ended = r.phase.is_terminal() && !was.is_some_and(Phase::is_terminal);
    if was.is_none() {
        gauge!(ACTIVE_UPDATES).increment(1.0);
    }
    if ended {
        gauge!(ACTIVE_UPDATES).decrement(1.0);
        match r.phase {
            Phase::Complete => {
                counter!(UPDATE_COMPLETIONS, "sp" => sp, "component" => c).increment(1);
            }
            Phase::Failed => {
                let reason = r.failure_kind.unwrap_or(FailureKind::Other).as_str();
                counter!(UPDATE_FAILURES, "sp" => sp, "component" => c, "reason" => reason)
                    .increment(1);
            }
            _ => {}
        }
    }
}

/// Keep an update's metrics in step with its published record, until it
/// ends. An update the SP never accepted leaves no trace.
pub fn follow_update(mut rx: watch::Receiver<UpdateRecord>) {
    actix::spawn(async move {
        let mut was: Option<Phase> = None;
        let mut since = (0, 0);
        loop {
            let r = rx.borrow_and_update().clone();
            if r.start_error.is_some() {
                return;
            }
            if r.phase != Phase::Starting {
                update_record(&r, was, since);
                since = (r.chunks_retransmitted, r.rewinds);
                was = Some(r.phase);
            }
            if r.phase.is_terminal() || rx.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Each rollout's phase and target counts, for the gauges over all.
static ROLLOUTS: std::sync::Mutex<std::collections::BTreeMap<uuid::Uuid, (RolloutPhase, Counts)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Keep the rollout gauges in step with a rollout's record, until it
/// ends.
pub fn follow_rollout(mut rx: watch::Receiver<RolloutRecord>) {
    actix::spawn(async move {
        let mut was = None;
        loop {
            let (id, phase, counts) = {
                let r = rx.borrow_and_update();
                (r.id, r.phase, r.counts())
            };
            if phase == RolloutPhase::Stopping && was.is_some_and(|w| w != phase) {
                counter!(ROLLOUT_STOPS).increment(1);
            }
            was = Some(phase);
            let all: Vec<(RolloutPhase, Counts)> = {
                let mut rollouts = ROLLOUTS.lock().unwrap_or_else(|e| e.into_inner());
                rollouts.insert(id, (phase, counts));
                rollouts.values().copied().collect()
            };
            for p in RolloutPhase::ALL {
                let n = all.iter().filter(|(q, _)| *q == p).count();
                gauge!(ROLLOUT_STATE, "state" => p.as_str()).set(n as f64);
            }
            for s in TargetState::ALL {
                let n: usize = all
                    .iter()
                    .map(|(_, c)| match s {
                        TargetState::Pending => c.pending,
                        TargetState::Running => c.running,
                        TargetState::Complete => c.complete,
                        TargetState::Failed => c.failed,
                        TargetState::Aborted => c.aborted,
                        TargetState::Skipped => c.skipped,
                    })
                    .sum();
                gauge!(ROLLOUT_TARGETS, "state" => s.as_str()).set(n as f64);
            }
            if phase.is_terminal() || rx.changed().await.is_err() {
                return;
            }
        }
    });
}

/// An SP's interface is up or not.
pub fn link(sp: &str, up: bool) {
    gauge!(SP_LINK_UP, "sp" => sp.to_string()).set(if up { 1.0 } else { 0.0 });
}
