//! An update's metrics, kept in step with its published progress by a
//! follower task (the update actor itself records nothing).

use crate::metrics::*;
use crate::record::{FailureKind, Phase, Progress, UpdateSpec};
use metrics::{counter, gauge};
use std::sync::Arc;
use tokio::sync::watch;

/// An update was taken up again after a restart.
pub fn resumed(spec: &UpdateSpec) {
    counter!(UPDATE_RESUMED, "sp" => spec.sp.to_string(), "component" => spec.component.to_string())
        .increment(1);
}

/// Record `p`; `was` is the phase published before, `since` the resend
/// and rewind counts then.
fn record(spec: &UpdateSpec, p: &Progress, was: Option<Phase>, since: (u64, u64)) {
    let (sp, c) = (spec.sp.to_string(), spec.component.to_string());
    for phase in Phase::ALL {
        let on = if phase == p.phase { 1.0 } else { 0.0 };
        gauge!(UPDATE_STATE, "sp" => sp.clone(), "component" => c.clone(), "state" => phase.as_str())
            .set(on);
    }
    gauge!(UPDATE_DELIVERED, "sp" => sp.clone(), "component" => c.clone())
        .set(p.bytes_acked as f64);
    gauge!(UPDATE_SIZE, "sp" => sp.clone(), "component" => c.clone()).set(spec.total_bytes as f64);
    let erase = p
        .erase_progress
        .map_or(0.0, |(cur, total)| f64::from(cur) / f64::from(total.max(1)));
    gauge!(UPDATE_ERASE, "sp" => sp.clone(), "component" => c.clone()).set(erase);
    let rate = p.rate(tokio::time::Instant::now()).unwrap_or(0.0);
    gauge!(UPDATE_RATE, "sp" => sp.clone(), "component" => c.clone()).set(rate);
    gauge!(UPDATE_START, "sp" => sp.clone(), "component" => c.clone())
        .set(spec.started_unix_ms as f64 / 1000.0);
    let (resent, rewinds) = (p.chunks_retransmitted - since.0, p.rewinds - since.1);
    if resent > 0 {
        counter!(UPDATE_RETRANSMITS, "sp" => sp.clone(), "component" => c.clone())
            .increment(resent);
    }
    if rewinds > 0 {
        counter!(UPDATE_REWINDS, "sp" => sp.clone(), "component" => c.clone()).increment(rewinds);
    }
    if was.is_none() {
        gauge!(ACTIVE_UPDATES).increment(1.0);
    }
    if p.phase.is_terminal() && !was.is_some_and(Phase::is_terminal) {
        gauge!(ACTIVE_UPDATES).decrement(1.0);
        match p.phase {
            Phase::Complete => {
                counter!(UPDATE_COMPLETIONS, "sp" => sp, "component" => c).increment(1);
            }
            Phase::Failed => {
                let reason = p.failure.as_ref().map_or(FailureKind::Other, |f| f.kind);
                counter!(UPDATE_FAILURES, "sp" => sp, "component" => c, "reason" => reason.as_str())
                    .increment(1);
            }
            _ => {}
        }
    }
}

/// Keep an update's metrics in step with its published progress, until it
/// ends. Followed from the SP's acceptance on (an update the SP never
/// accepted leaves no trace).
pub fn follow(spec: Arc<UpdateSpec>, mut rx: watch::Receiver<Progress>) {
    actix::spawn(async move {
        let mut was: Option<Phase> = None;
        let mut since = (0, 0);
        loop {
            let p = rx.borrow_and_update().clone();
            if p.phase != Phase::Starting {
                record(&spec, &p, was, since);
                since = (p.chunks_retransmitted, p.rewinds);
                was = Some(p.phase);
            }
            if p.phase.is_terminal() || rx.changed().await.is_err() {
                return;
            }
        }
    });
}
