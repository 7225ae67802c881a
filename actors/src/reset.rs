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

/// What came back, when it is the image sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewImage {
    /// A new archive id, and the caboose (where known) of the image sent.
    Runs,
    /// The caboose of the image sent, unlike the one before, under the
    /// same archive id: an SP that does not change its archive id.
    RunsUnderTheOldArchiveId,
}

/// Does what came back run the image sent? `Err` says why not. The
/// running caboose must say what the sent one says (where that is
/// known); then a new archive id, or a caboose that differs from the one
/// before (`before`, read before the reset), shows the new image runs.
/// The same archive id and nothing else to tell them apart is the
/// previous image.
pub fn judge(
    before_id: &str,
    after_id: &str,
    before: Option<&Expected>,
    expected: &Expected,
    running: &Expected,
) -> Result<NewImage, String> {
    for (key, want, got) in [
        ("VERS", &expected.vers, &running.vers),
        ("GITC", &expected.gitc, &running.gitc),
    ] {
        if let Some(want) = want {
            if got.as_ref() != Some(want) {
                return Err(format!(
                    "the SP runs archive id {after_id}, whose caboose {key} is {got:?}, not the {want:?} sent"
                ));
            }
        }
    }
    if before_id != after_id {
        return Ok(NewImage::Runs);
    }
    let known = *expected != Expected::default();
    let changed = before.is_some_and(|b| {
        (expected.vers.is_some() && b.vers != expected.vers)
            || (expected.gitc.is_some() && b.gitc != expected.gitc)
    });
    if known && changed {
        Ok(NewImage::RunsUnderTheOldArchiveId)
    } else {
        Err(format!(
            "the SP came back on the image it ran before (archive id {after_id})"
        ))
    }
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
        let old = caboose("1.0.33", "aaa");
        let running = caboose("1.0.34", "abc");
        assert_eq!(
            judge("01", "02", Some(&old), &sent, &running),
            Ok(NewImage::Runs)
        );
        // Same archive id, nothing to tell the images apart: the previous
        // image.
        let same = judge("01", "01", None, &sent, &running).unwrap_err();
        assert!(same.contains("before"), "{same}");
        let same = judge("01", "01", Some(&sent), &sent, &running).unwrap_err();
        assert!(same.contains("before"), "{same}");
        // Same archive id, but the caboose is the one sent and not the one
        // before: the new image runs (an SP that keeps its archive id).
        assert_eq!(
            judge("01", "01", Some(&old), &sent, &running),
            Ok(NewImage::RunsUnderTheOldArchiveId)
        );
        // The old caboose under the old id: rolled back.
        let back = judge("01", "01", Some(&old), &sent, &old).unwrap_err();
        assert!(back.contains("VERS"), "{back}");
        // Another image than the one sent.
        let other = judge("01", "03", None, &sent, &caboose("1.0.35", "abc")).unwrap_err();
        assert!(other.contains("VERS"), "{other}");
        let gitc = judge("01", "03", None, &sent, &caboose("1.0.34", "def")).unwrap_err();
        assert!(gitc.contains("GITC"), "{gitc}");
        // Nothing known of the image sent: the archive id decides.
        let nothing = Expected::default();
        assert_eq!(
            judge("01", "02", None, &nothing, &nothing),
            Ok(NewImage::Runs)
        );
    }

    #[test]
    fn the_default_window_is_the_reference_clients() {
        // 1.5 × 2000 ms × 30 attempts (the golden vector's time_ms).
        assert_eq!(default_watchdog_ms(&RpcPolicy::default()), 90_000);
    }
}
