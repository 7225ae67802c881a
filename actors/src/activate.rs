//! Activation: reset an SP so that a completed SP-image update runs, under
//! the SP's reset watchdog where it has one, and find out what came back
//! (protocol §8.5).
//!
//! With a completed SP update and a watchdog, the SP boots the new image
//! and falls back to the previous one unless the new image's watchdog is
//! disabled within `time_ms`: the new image proves it runs by answering,
//! we check it is the image sent, and only then disable the watchdog. A
//! new image that hangs at boot, or answers but is not what was sent,
//! therefore ends on the previous image instead of bricking the SP.
//!
//! [`judge`] decides what came back (pure); [`activate`] sends the
//! requests. Nothing here keeps state: callers own the [`Activation`].

use crate::rpc::{RpcError, RpcPolicy};
use crate::sp::{RpcKind, SpHandle, SpIdentity};
use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateStatus, WatchdogError};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

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
    pub fn of(a: &crate::update_state::ArtifactInfo) -> Self {
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
    fn new(sp: &SpHandle, component: SpComponent, outcome: Outcome, method: Method) -> Self {
        Self {
            sp: sp.name().to_string(),
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

/// Reset `component` of `sp`. For `sp`: with a completed SP update, the
/// watchdog variant if the SP supports it (unless `opts` says not), then
/// check and disable as the module says; `expected` gives what the
/// completed update's image says of itself (by its id). An `Err` means
/// nothing was triggered.
pub async fn activate(
    sp: &SpHandle,
    component: SpComponent,
    opts: ResetOptions,
    policy: &RpcPolicy,
    expected: impl FnOnce(uuid::Uuid) -> Option<Expected>,
) -> Result<Activation, RpcError> {
    let mut a = Activation::new(sp, component, Outcome::Reset, Method::Plain);
    if component != SpComponent::SP_ITSELF {
        return reset_other(sp, component, a).await;
    }
    let completed = match sp.rpc(MgsRequest::UpdateStatus(component)).await? {
        (SpResponse::UpdateStatus(UpdateStatus::Complete(id)), _) => Some(id.as_uuid()),
        _ => None,
    };
    a.update_id = completed;
    let before = sp_identity(sp).await?;
    a.archive_id_before = Some(before.hubris_archive_id.clone());
    let expect = completed.and_then(expected).unwrap_or_default();
    if completed.is_none() {
        a.plain_because = Some("no completed SP update to activate".into());
    } else if opts.no_watchdog {
        a.plain_because = Some("the watchdog was declined (--no-watchdog)".into());
    } else {
        let request = MgsRequest::ComponentWatchdogSupported { component };
        match sp.rpc(request).await {
            Ok(_) => a.method = Method::Watchdog,
            Err(RpcError::Sp { error, .. }) => {
                a.plain_because = Some(format!("the SP has no reset watchdog ({error})"));
            }
            Err(e) => return Err(e),
        }
    }
    let reset_patience = policy.per_attempt_timeout * policy.max_attempts_reset.max(1);
    let window = opts
        .watchdog_ms
        .unwrap_or_else(|| default_watchdog_ms(policy));
    let (trigger, budget) = match a.method {
        Method::Watchdog => {
            a.watchdog_ms = Some(window);
            let trigger = MgsRequest::ResetComponentTriggerWithWatchdog {
                component,
                time_ms: window,
            };
            // A new image that hangs stays silent for the whole window
            // before the previous one boots.
            (
                trigger,
                reset_patience + Duration::from_millis(u64::from(window)),
            )
        }
        Method::Plain => (
            MgsRequest::ResetComponentTrigger { component },
            reset_patience,
        ),
    };
    sp.rpc(MgsRequest::ResetComponentPrepare { component })
        .await?;
    info!(
        method = a.method.as_str(),
        watchdog_ms = a.watchdog_ms,
        update = ?completed,
        archive_id = %before.hubris_archive_id,
        "resetting the SP"
    );
    let triggered = Instant::now();
    let came_back = sp.rpc_with(trigger, RpcKind::Within(budget)).await;
    let refusal = match came_back {
        // The rebooted SP forgot the prepare (and the update): a resent
        // trigger says so.
        Err(RpcError::Sp {
            error:
                error @ (SpError::ResetComponentTriggerWithoutPrepare
                | SpError::Watchdog(WatchdogError::NoCompletedUpdate)),
            ..
        }) => error,
        Err(RpcError::Timeout { .. } | RpcError::Io { .. } | RpcError::NotDiscovered { .. }) => {
            let detail = format!(
                "the SP did not answer within {} s of the reset trigger",
                budget.as_secs()
            );
            return Ok(unreachable(a, triggered, detail));
        }
        Ok((response, _)) => {
            return Err(RpcError::Unexpected {
                sp: sp.name().clone(),
                response: format!("{response:?} (an SP acknowledging its own reset did not reset)"),
            })
        }
        Err(e) => return Err(e),
    };
    // The same answer to the very first trigger means no reset at all
    // (another client's prepare replaced ours): an SP up for longer than
    // the trigger is old did not reboot. SPs without a clock skip this.
    if let Ok((SpResponse::CurrentTime(up_ms), _)) = sp.rpc(MgsRequest::CurrentTime).await {
        if Duration::from_millis(up_ms) > triggered.elapsed() {
            return Err(RpcError::Sp {
                sp: sp.name().clone(),
                error: refusal,
            });
        }
    }
    let after = match sp_identity(sp).await {
        Ok(identity) => identity,
        Err(e) => {
            return Ok(unreachable(
                a,
                triggered,
                format!("the SP answered the reset, then not: {e}"),
            ))
        }
    };
    a.archive_id_after = Some(after.hubris_archive_id.clone());
    if completed.is_none() {
        a.took_ms = triggered.elapsed().as_millis() as u64;
        a.detail = "the SP rebooted and answers".into();
        sp.refresh_state().await;
        return Ok(a);
    }
    // A caboose that cannot be read now leaves the archive id to decide.
    let (expect, running) = match expect == Expected::default() {
        true => (expect, Expected::default()),
        false => match running_caboose(sp).await {
            Some(running) => {
                a.running = Some(running.clone());
                (expect, running)
            }
            None => (Expected::default(), Expected::default()),
        },
    };
    if let Err(why) = judge(
        &before.hubris_archive_id,
        &after.hubris_archive_id,
        &expect,
        &running,
    ) {
        a.outcome = Outcome::RolledBack;
        a.took_ms = triggered.elapsed().as_millis() as u64;
        a.detail = why;
        warn!(detail = %a.detail, "reset: the new image is not running");
        sp.refresh_state().await;
        return Ok(a);
    }
    if a.method == Method::Watchdog {
        // Keep trying until the window is nearly over: a disable is
        // idempotent, and a lost ack must not cost the new image.
        let left = Duration::from_millis(u64::from(window)).saturating_sub(triggered.elapsed());
        let patience = left.max(policy.per_attempt_timeout);
        let disable = MgsRequest::DisableComponentWatchdog { component };
        if let Err(e) = sp.rpc_with(disable, RpcKind::Within(patience)).await {
            warn!(error = %e, "disabling the watchdog failed; waiting for the window to pass");
            return Ok(after_failed_disable(sp, a, triggered, window, reset_patience, e).await);
        }
        a.watchdog_disabled = true;
    }
    a.outcome = Outcome::Activated;
    a.took_ms = triggered.elapsed().as_millis() as u64;
    a.detail = format!(
        "the SP runs the new image (archive id {}){}",
        after.hubris_archive_id,
        if a.watchdog_disabled {
            "; watchdog disabled"
        } else {
            ""
        }
    );
    info!(detail = %a.detail, took_ms = a.took_ms, "activated");
    sp.refresh_state().await;
    Ok(a)
}

/// After a daemon restart in the middle of an activation whose SP no
/// longer holds the update (so the reset went out): does the image sent
/// run? If it does, disable the watchdog (an SP without one refuses, and
/// then none is armed). `expected` must say something to recognise the
/// image by.
pub async fn confirm(sp: &SpHandle, expected: &Expected, opts: ResetOptions) -> Activation {
    let started = Instant::now();
    let method = if opts.no_watchdog {
        Method::Plain
    } else {
        Method::Watchdog
    };
    let mut a = Activation::new(sp, SpComponent::SP_ITSELF, Outcome::Unreachable, method);
    a.watchdog_ms = opts.watchdog_ms;
    let (identity, running) = match sp_identity(sp).await {
        Ok(identity) => (identity, running_caboose(sp).await),
        Err(e) => {
            return unreachable(
                a,
                started,
                format!("after a daemon restart mid-activation: {e}"),
            )
        }
    };
    let Some(running) = running else {
        return unreachable(
            a,
            started,
            "after a daemon restart mid-activation, the SP stopped answering".into(),
        );
    };
    a.archive_id_after = Some(identity.hubris_archive_id.clone());
    a.running = Some(running.clone());
    if let Err(why) = judge("", &identity.hubris_archive_id, expected, &running) {
        a.outcome = Outcome::RolledBack;
        a.detail = format!("after a daemon restart mid-activation: {why}");
        return a;
    }
    let disable = MgsRequest::DisableComponentWatchdog {
        component: SpComponent::SP_ITSELF,
    };
    a.watchdog_disabled = sp.rpc(disable).await.is_ok();
    a.outcome = Outcome::Activated;
    a.took_ms = started.elapsed().as_millis() as u64;
    a.detail = format!(
        "confirmed after a daemon restart mid-activation: the SP runs the new image (archive id {}){}",
        identity.hubris_archive_id,
        if a.watchdog_disabled { "; watchdog disabled" } else { "" }
    );
    info!(detail = %a.detail, "activated");
    a
}

/// The disable went unanswered or was refused: the watchdog may still
/// fire. Wait for the window to pass and look at what runs then.
async fn after_failed_disable(
    sp: &SpHandle,
    mut a: Activation,
    triggered: Instant,
    window: u32,
    reset_patience: Duration,
    error: RpcError,
) -> Activation {
    tokio::time::sleep_until(triggered + Duration::from_millis(u64::from(window))).await;
    let state = MgsRequest::SpState;
    let identity = match sp.rpc_with(state, RpcKind::Within(reset_patience)).await {
        Ok((response, _)) => SpIdentity::from_state(&response),
        Err(_) => None,
    };
    let Some(identity) = identity else {
        return unreachable(
            a,
            triggered,
            format!("the watchdog could not be disabled ({error}), and the SP did not answer after its window"),
        );
    };
    let before = a.archive_id_before.clone().unwrap_or_default();
    a.archive_id_after = Some(identity.hubris_archive_id.clone());
    a.took_ms = triggered.elapsed().as_millis() as u64;
    if identity.hubris_archive_id == before {
        a.outcome = Outcome::RolledBack;
        a.detail = format!(
            "the watchdog could not be disabled ({error}): it fired, and the SP runs the previous image again"
        );
    } else {
        a.outcome = Outcome::Activated;
        a.detail = format!(
            "the watchdog could not be disabled ({error}), yet after its window the SP still runs the new image (archive id {})",
            identity.hubris_archive_id
        );
    }
    sp.refresh_state().await;
    a
}

fn unreachable(mut a: Activation, triggered: Instant, detail: String) -> Activation {
    a.outcome = Outcome::Unreachable;
    a.took_ms = triggered.elapsed().as_millis() as u64;
    a.detail = detail;
    warn!(detail = %a.detail, "reset: SP unreachable");
    a
}

/// Any other component: prepare, trigger, ack.
async fn reset_other(
    sp: &SpHandle,
    component: SpComponent,
    mut a: Activation,
) -> Result<Activation, RpcError> {
    sp.rpc(MgsRequest::ResetComponentPrepare { component })
        .await?;
    let triggered = Instant::now();
    sp.rpc_with(
        MgsRequest::ResetComponentTrigger { component },
        RpcKind::Reset,
    )
    .await?;
    a.took_ms = triggered.elapsed().as_millis() as u64;
    a.detail = format!("{component} reset");
    Ok(a)
}

async fn sp_identity(sp: &SpHandle) -> Result<SpIdentity, RpcError> {
    let (response, _) = sp.rpc(MgsRequest::SpState).await?;
    SpIdentity::from_state(&response).ok_or_else(|| RpcError::Unexpected {
        sp: sp.name().clone(),
        response: format!("{response:?}"),
    })
}

/// `VERS` and `GITC` of the running SP image (slot 0); a key the SP
/// refuses to give is `None`. `None` if the SP did not answer.
async fn running_caboose(sp: &SpHandle) -> Option<Expected> {
    let read = |key: [u8; 4]| async move {
        let request = MgsRequest::ReadComponentCaboose {
            component: SpComponent::SP_ITSELF,
            slot: 0,
            key,
        };
        match sp.rpc(request).await {
            Ok((_, value)) => Some(Some(String::from_utf8_lossy(&value).into_owned())),
            Err(RpcError::Sp { .. }) => Some(None),
            Err(_) => None,
        }
    };
    Some(Expected {
        vers: read(*b"VERS").await?,
        gitc: read(*b"GITC").await?,
    })
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
