//! Resets as values: how to reset ([`ResetOptions`]), what came back
//! ([`Activation`], [`Outcome`]) and the pure judgement of whether the SP
//! runs the image sent ([`judge`]). The requests are sent by
//! the activation driver (`activate`).

use crate::settings::RpcPolicy;
use crate::types::{ArtifactInfo, SpName};
use gateway_messages::SpComponent;
use serde::{Deserialize, Serialize};

/// How to reset (`mgsctl reset`, `update start --activate`, rollouts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResetOptions {
    /// Never use the watchdog: the plain reset trigger.
    pub no_watchdog: bool,
    /// The watchdog window (ms); by default
    /// 1.5 × per-attempt timeout × reset attempts, as the reference client.
    pub watchdog_ms: Option<u32>,
}

/// How a reset ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new image runs (and its watchdog, if armed, is disabled).
    Activated,
    /// The SP came back, but not on the image sent: on the previous one
    /// (the watchdog fired, or the new image did not take).
    RolledBack,
    /// The SP did not answer again within the budget.
    Unreachable,
    /// A reset with no completed SP update to activate: the component was
    /// reset (the SP rebooted and answers again).
    Reset,
}

impl Outcome {
    /// Every outcome (metric label sets).
    pub const ALL: [Outcome; 4] = [
        Outcome::Activated,
        Outcome::RolledBack,
        Outcome::Unreachable,
        Outcome::Reset,
    ];

    /// Stable name (JSON, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Activated => "activated",
            Outcome::RolledBack => "rolled_back",
            Outcome::Unreachable => "unreachable",
            Outcome::Reset => "reset",
        }
    }
}

/// Which trigger was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `ResetComponentTriggerWithWatchdog`.
    Watchdog,
    /// `ResetComponentTrigger`.
    Plain,
}

impl Method {
    /// Stable name (JSON, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Watchdog => "watchdog",
            Method::Plain => "plain",
        }
    }
}

/// What the image sent says of itself (its caboose): the new image must
/// say the same once it runs. Unknown values are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Caboose `VERS`.
    pub vers: Option<String>,
    /// Caboose `GITC`.
    pub gitc: Option<String>,
}

impl Expected {
    /// What an update's image says of itself.
    pub fn of(a: &ArtifactInfo) -> Self {
        Self {
            vers: a.vers.clone(),
            gitc: a.gitc.clone(),
        }
    }
}

/// One reset, as it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// SP name.
    pub sp: String,
    /// Component reset.
    pub component: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Which trigger was sent.
    pub method: Method,
    /// Why the plain trigger was sent for an SP reset, if it was.
    pub plain_because: Option<String>,
    /// The watchdog window, when armed (ms).
    pub watchdog_ms: Option<u32>,
    /// The completed SP update the reset activates.
    pub update_id: Option<uuid::Uuid>,
    /// `hubris_archive_id` before the reset.
    pub archive_id_before: Option<String>,
    /// `hubris_archive_id` of what came back.
    pub archive_id_after: Option<String>,
    /// Caboose of what came back (when there was something to compare).
    pub running: Option<Expected>,
    /// Whether the watchdog was disabled (so the new image stays).
    pub watchdog_disabled: bool,
    /// From the trigger to the outcome (ms).
    pub took_ms: u64,
    /// What happened, in words.
    pub detail: String,
}

impl Activation {
    /// A report with nothing learnt yet.
    pub fn new(sp: &SpName, component: SpComponent, outcome: Outcome, method: Method) -> Self {
        Self {
            sp: sp.to_string(),
            component: component.to_string(),
            outcome,
            method,
            plain_because: None,
            watchdog_ms: None,
            update_id: None,
            archive_id_before: None,
            archive_id_after: None,
            running: None,
            watchdog_disabled: false,
            took_ms: 0,
            detail: String::new(),
        }
    }
}

/// The default watchdog window: the reference client's
/// 1.5 × per-attempt timeout × reset attempts (90 s with its defaults).
pub fn default_watchdog_ms(policy: &RpcPolicy) -> u32 {
    let ms = policy.per_attempt_timeout.as_millis() as u64 * u64::from(policy.max_attempts_reset);
    (ms.saturating_mul(3) / 2).min(u64::from(u32::MAX)) as u32
}

/// Does what came back run the image sent? `Err` says why not. The
/// archive id must have changed (the same id is the previous image), and
/// the running caboose must say what the sent one says.
pub fn judge(
    before: &str,
    after: &str,
    expected: &Expected,
    running: &Expected,
) -> Result<(), String> {
    if before == after {
        return Err(format!(
            "the SP came back on the image it ran before (archive id {after})"
        ));
    }
    for (key, want, got) in [
        ("VERS", &expected.vers, &running.vers),
        ("GITC", &expected.gitc, &running.gitc),
    ] {
        if let Some(want) = want {
            if got.as_ref() != Some(want) {
                return Err(format!(
                    "the SP runs archive id {after}, whose caboose {key} is {got:?}, not the {want:?} sent"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caboose(vers: &str, gitc: &str) -> Expected {
        Expected {
            vers: Some(vers.into()),
            gitc: Some(gitc.into()),
        }
    }

    #[test]
    fn the_new_image_must_run_and_say_what_was_sent() {
        let sent = caboose("1.0.34", "abc");
        assert_eq!(judge("01", "02", &sent, &caboose("1.0.34", "abc")), Ok(()));
        // Same archive id: the previous image.
        let same = judge("01", "01", &sent, &caboose("1.0.34", "abc")).unwrap_err();
        assert!(same.contains("before"), "{same}");
        // Another image than the one sent.
        let other = judge("01", "03", &sent, &caboose("1.0.35", "abc")).unwrap_err();
        assert!(other.contains("VERS"), "{other}");
        let gitc = judge("01", "03", &sent, &caboose("1.0.34", "def")).unwrap_err();
        assert!(gitc.contains("GITC"), "{gitc}");
        // Nothing known of the image sent: the archive id decides.
        assert_eq!(
            judge("01", "02", &Expected::default(), &Expected::default()),
            Ok(())
        );
    }

    #[test]
    fn the_default_window_is_the_reference_clients() {
        // 1.5 × 2000 ms × 30 attempts (the golden vector's time_ms).
        assert_eq!(default_watchdog_ms(&RpcPolicy::default()), 90_000);
    }
}
