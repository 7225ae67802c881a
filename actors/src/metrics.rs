//! Metric names and help texts, in one place; each part of the daemon
//! records its own (the SP actor its requests, an update's follower its
//! progress, a rollout's follower its targets). Labels come from closed
//! sets: configured SP names, component names, request kinds, outcomes,
//! phases and failure reasons; never update ids.

use gateway_messages::MgsRequest;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Gauge: updates an SP holds whose ids the daemon does not know.
pub const SP_UNKNOWN_UPDATES: &str = "mgsd_sp_unknown_updates";
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
        SP_UNKNOWN_UPDATES,
        "Updates an SP holds whose ids mgsd does not know (another client's, or its own from before a state loss)."
    );
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
