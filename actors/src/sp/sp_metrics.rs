//! What an SP actor records: requests by kind and outcome, round trips,
//! timeouts, retries, `Busy`, reachability, link, discovery time and the
//! running firmware versions.

use crate::metrics::*;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use std::time::Duration;

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

/// The running `component` image of `sp` is `version`; the one read
/// before (`old`), if another, drops to 0.
pub fn firmware(sp: &str, component: &str, old: Option<&str>, version: &str) {
    let labels = |v: String| {
        [
            ("sp", sp.to_string()),
            ("component", component.to_string()),
            ("version", v),
        ]
    };
    if let Some(old) = old.filter(|o| *o != version) {
        gauge!(FIRMWARE_INFO, &labels(old.to_string())).set(0.0);
    }
    gauge!(FIRMWARE_INFO, &labels(version.to_string())).set(1.0);
}

/// An SP's interface is up or not.
pub fn link(sp: &str, up: bool) {
    gauge!(SP_LINK_UP, "sp" => sp.to_string()).set(if up { 1.0 } else { 0.0 });
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
