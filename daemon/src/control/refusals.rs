//! Refusals (peers in no access list, readers asking operate commands,
//! connections past the limit), counted and aggregated: the first of each
//! peer, reason and command in an interval is audited (and logged) at
//! once, those after it are summed into one more row, with their count,
//! when the interval ends, however many a peer causes. Refusal rows live
//! apart from operate entries in the audit, so they can never push those
//! out.

use actors::store::AuditEntry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;

/// Refusals are summed over this long before they are audited.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Who was refused what, and why: the key refusals are summed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub uid: u32,
    pub gid: u32,
    /// `permission_denied` or `busy`.
    pub reason: &'static str,
    /// The command (`connect` before one was named).
    pub command: String,
}

#[derive(Debug)]
struct Sum {
    count: u64,
    pid: Option<i32>,
    message: String,
}

/// The refusals of the current interval.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    now: Arc<Mutex<HashMap<Key, Sum>>>,
}

impl Refusals {
    /// Count a refusal: whether it is the first of its key in this
    /// interval (the caller audits that one at once).
    pub fn add(&self, key: Key, pid: Option<i32>, message: &str) -> bool {
        metrics::counter!("mgsd_control_refusals_total", "reason" => key.reason).increment(1);
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let sum = now.entry(key).or_insert(Sum {
            count: 0,
            pid,
            message: message.into(),
        });
        sum.count += 1;
        sum.count == 1
    }

    /// The interval is over: the refusals after each key's first, summed
    /// as one audit row per key (and logged), and a new interval begins.
    pub fn take(&self, time_unix_ms: u64) -> Vec<AuditEntry> {
        let sums = std::mem::take(&mut *self.now.lock().unwrap_or_else(|e| e.into_inner()));
        sums.into_iter()
            .filter(|(_, sum)| sum.count > 1)
            .map(|(key, sum)| {
                let more = sum.count - 1;
                warn!(uid = key.uid, reason = key.reason, command = %key.command, count = more, "more control requests like this one refused in the last interval");
                AuditEntry {
                    time_unix_ms,
                    uid: key.uid,
                    gid: key.gid,
                    pid: sum.pid,
                    command: key.command,
                    result: key.reason.into(),
                    message: Some(format!("{more} more like: {}", sum.message)),
                    count: Some(more),
                    ..AuditEntry::default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_summed_per_peer_reason_and_command() {
        let r = Refusals::default();
        let key = |uid, command: &str| Key {
            uid,
            gid: uid,
            reason: "permission_denied",
            command: command.into(),
        };
        assert!(r.add(key(7, "update_start"), Some(1), "no"), "the first");
        for _ in 1..20_000 {
            assert!(!r.add(key(7, "update_start"), Some(1), "no"));
        }
        assert!(r.add(key(8, "connect"), None, "no"));
        let rows = r.take(42);
        assert_eq!(rows.len(), 1, "only the sum after a first");
        assert_eq!((rows[0].uid, rows[0].count), (7, Some(19_999)));
        assert!(r.take(43).is_empty(), "a new interval");
        assert!(r.add(key(7, "update_start"), Some(1), "no"), "first again");
    }
}
