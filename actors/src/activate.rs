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
//! requests. Nothing here keeps state: callers own the [`Activation`], and
//! hold the SP's operation slot while it runs.

use crate::error::RpcError;
use crate::reset::{
    default_watchdog_ms, judge, Activation, Expected, Method, NewImage, Outcome, ResetOptions,
};
use crate::settings::RpcPolicy;
use crate::sp::{RpcKind, SpHandle, SpIdentity};
use crate::types::SpName;
use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateStatus, WatchdogError};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// Count a reset of `sp` that ran (`mgsd_sp_resets_total`).
pub fn count(sp: &SpName, a: &Activation) {
    metrics::counter!(crate::metrics::SP_RESETS, "sp" => sp.to_string(), "outcome" => a.outcome.as_str(), "method" => a.method.as_str())
        .increment(1);
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
    let mut a = Activation::new(sp.name(), component, Outcome::Reset, Method::Plain);
    if component != SpComponent::SP_ITSELF {
        return reset_other(sp, component, a).await;
    }
    let completed = match sp.update_status(component).await? {
        UpdateStatus::Complete(id) => Some(id.as_uuid()),
        _ => None,
    };
    a.update_id = completed;
    let before = sp.sp_identity().await?;
    a.archive_id_before = Some(before.hubris_archive_id.clone());
    let expect = completed.and_then(expected).unwrap_or_default();
    if completed.is_none() {
        a.plain_because = Some("no completed SP update to activate".into());
    } else if opts.no_watchdog {
        a.plain_because = Some("the watchdog was declined (--no-watchdog)".into());
    } else {
        let request = MgsRequest::ComponentWatchdogSupported { component };
        match sp
            .ack(request, SpResponse::ComponentWatchdogSupportedAck)
            .await
        {
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
    // What ran before, to tell it from what comes back by more than its
    // archive id (some SPs keep theirs across an update).
    let ran_before = match expect == Expected::default() {
        true => None,
        false => running_caboose(sp).await,
    };
    sp.ack(
        MgsRequest::ResetComponentPrepare { component },
        SpResponse::ResetComponentPrepareAck,
    )
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
        // An SP acknowledging its own reset did not reset.
        Ok((response, _)) => {
            return Err(RpcError::Unexpected {
                sp: sp.name().clone(),
                request: crate::metrics::request_kind(&trigger),
                response: Box::new(response),
            })
        }
        Err(e) => return Err(e),
    };
    // The same answer to the very first trigger means no reset at all
    // (another client's prepare replaced ours): an SP up for longer than
    // the trigger is old did not reboot. SPs without a clock skip this.
    if let Ok(up_ms) = sp.current_time().await {
        if Duration::from_millis(up_ms) > triggered.elapsed() {
            return Err(RpcError::Sp {
                sp: sp.name().clone(),
                error: refusal,
            });
        }
    }
    let after = match sp.sp_identity().await {
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
    let runs = match judge(
        &before.hubris_archive_id,
        &after.hubris_archive_id,
        ran_before.as_ref(),
        &expect,
        &running,
    ) {
        Ok(runs) => runs,
        Err(why) => {
            a.outcome = Outcome::RolledBack;
            a.took_ms = triggered.elapsed().as_millis() as u64;
            a.detail = why;
            warn!(detail = %a.detail, "reset: the new image is not running");
            sp.refresh_state().await;
            return Ok(a);
        }
    };
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
    let archive = match runs {
        NewImage::Runs => format!("archive id {}", after.hubris_archive_id),
        NewImage::RunsUnderTheOldArchiveId => format!(
            "its caboose is the one sent; the SP's archive id did not change ({})",
            after.hubris_archive_id
        ),
    };
    a.detail = format!(
        "the SP runs the new image ({archive}){}",
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
    let mut a = Activation::new(
        sp.name(),
        SpComponent::SP_ITSELF,
        Outcome::Unreachable,
        method,
    );
    a.watchdog_ms = opts.watchdog_ms;
    let (identity, running) = match sp.sp_identity().await {
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
    if let Err(why) = judge("", &identity.hubris_archive_id, None, expected, &running) {
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
    sp.ack(
        MgsRequest::ResetComponentPrepare { component },
        SpResponse::ResetComponentPrepareAck,
    )
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

/// `VERS` and `GITC` of the running SP image (slot 0); a key the SP
/// refuses to give is `None`. `None` if the SP did not answer.
async fn running_caboose(sp: &SpHandle) -> Option<Expected> {
    let read = |key: [u8; 4]| async move {
        match sp.caboose(SpComponent::SP_ITSELF, 0, key).await {
            Ok(value) => Some(value),
            Err(RpcError::Sp { .. }) => Some(None),
            Err(_) => None,
        }
    };
    Some(Expected {
        vers: read(*b"VERS").await?,
        gitc: read(*b"GITC").await?,
    })
}
