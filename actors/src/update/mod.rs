//! Updates: one [`UpdateActor`](actor::UpdateActor) per update, the only
//! writer of its [`Progress`], which it publishes on a `watch` that
//! status, `watch` streams, rollouts and metrics read through an
//! [`UpdateHandle`]. What the update is, its [`UpdateSpec`], is fixed
//! before the actor starts and shared as `Arc`.
//!
//! A start ([`start`]) is answered, not flagged: the actor claims the
//! SP's operation slot, journals the intent, sends the prepare (a resent
//! prepare that finds our own id on the SP counts as accepted) and
//! answers through a oneshot. Only then does anyone see the update; a
//! refused start leaves nothing behind. From there it waits out the
//! erase, leases the image to the SP actor's chunk stream, asks the SP
//! where it is and leases again after a stall, confirms completion with
//! the SP, reads the host-flash hash back, optionally activates, and
//! aborts on request. It does not depend on the client that started it.

mod actor;
pub mod decide;
mod update_metrics;

use crate::error::UpdateError;
use crate::image::Image;
use crate::journal::JournalHandle;
use crate::record::{Phase, Progress, UpdateSpec};
use crate::settings::{DeliverySettings, RpcPolicy};
use crate::sp::SpHandle;
use actix::prelude::*;
use actor::{Step, UpdateActor};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// From an update actor to whoever started it: the update has ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateEnded(pub uuid::Uuid);

/// Abort the update: the SP decides.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), UpdateError>")]
struct Abort;

/// Journal the progress now and answer once it is written (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Persist;

/// What an update actor needs besides its spec and image.
#[derive(Clone)]
pub struct UpdateContext {
    pub settings: DeliverySettings,
    /// The SP's request patience (an activation's reset budget).
    pub rpc: RpcPolicy,
    /// Told when the update has ended.
    pub ended: Recipient<UpdateEnded>,
    /// Where updates are journalled, if the daemon keeps state.
    pub journal: Option<JournalHandle>,
}

/// A typed handle on an update: what it is, its published progress, and
/// abort. An update read back from the journal after it ended has no
/// actor.
#[derive(Clone)]
pub struct UpdateHandle {
    spec: Arc<UpdateSpec>,
    addr: Option<Addr<UpdateActor>>,
    progress: watch::Receiver<Progress>,
}

/// An update whose start is not answered yet: its handle, for whoever
/// answers the start once `accepted` says the SP took it.
pub struct Pending {
    pub handle: UpdateHandle,
    /// `Ok` once the SP accepted the prepare; `Err` if nothing was
    /// started (the actor is gone then, and the journal holds nothing).
    pub accepted: oneshot::Receiver<Result<(), UpdateError>>,
}

/// Start update `spec` of `image` on `sp`.
pub fn start(sp: SpHandle, spec: Arc<UpdateSpec>, image: Arc<Image>, cx: UpdateContext) -> Pending {
    spawn(
        sp,
        spec,
        image,
        Progress::new(Instant::now()),
        Step::Starting,
        cx,
    )
}

/// Take up again, after a restart, the journalled update `spec` at
/// `progress`: once `sp` answers, its status says where the update
/// stands. One journalled before the SP accepted it is answered through
/// `accepted` like a start.
pub fn resume(
    sp: SpHandle,
    spec: Arc<UpdateSpec>,
    image: Arc<Image>,
    progress: Progress,
    cx: UpdateContext,
) -> Pending {
    spawn(sp, spec, image, progress, Step::Resuming, cx)
}

fn spawn(
    sp: SpHandle,
    spec: Arc<UpdateSpec>,
    image: Arc<Image>,
    progress: Progress,
    step: Step,
    cx: UpdateContext,
) -> Pending {
    let (tx, rx) = watch::channel(progress.clone());
    let (accepted_tx, accepted) = oneshot::channel();
    let awaiting = if progress.phase == Phase::Starting {
        Some(accepted_tx)
    } else {
        // The SP accepted it before the restart.
        let _ = accepted_tx.send(Ok(()));
        None
    };
    let span = tracing::info_span!("update", sp = %sp.name(), update = %spec.id, component = %spec.component);
    let addr = UpdateActor {
        sp,
        spec: spec.clone(),
        image,
        settings: cx.settings,
        rpc: cx.rpc,
        journal: cx.journal,
        ended: cx.ended,
        journaled: (progress.phase, Instant::now()),
        progress,
        tx,
        step,
        accepted: awaiting,
        claim: None,
        asking_resume: false,
        asking_refresh: false,
        asked_after_silence: false,
        streaming: false,
        abort_requested: false,
        unanswered_prepare: None,
        erase_seen: None,
        timer: None,
        expected_hash: None,
        hash_polls: 0,
        span,
    }
    .start();
    Pending {
        handle: UpdateHandle {
            spec,
            addr: Some(addr),
            progress: rx,
        },
        accepted,
    }
}

/// Abort update `spec` on its SP by id, in the background, and say how
/// it went: for an update the daemon gave up while the SP may still hold
/// it (the SP aborts only if it is its current update).
pub fn abort_on_sp(sp: SpHandle, spec: Arc<UpdateSpec>) {
    use gateway_messages::{MgsRequest, SpResponse, UpdateId};
    let request = MgsRequest::UpdateAbort {
        component: spec.component,
        id: UpdateId::from(spec.id),
    };
    actix::spawn(async move {
        // After a restart the SP may not be found yet.
        if sp.identified().await.is_none() {
            return;
        }
        match sp.ack(request, SpResponse::UpdateAbortAck).await {
            Ok(()) => {
                tracing::warn!(sp = %spec.sp, update = %spec.id, component = %spec.component, "aborted the given-up update on the SP, freeing its update buffer")
            }
            Err(e) => {
                tracing::info!(sp = %spec.sp, update = %spec.id, error = %e, "the SP does not hold the given-up update (or did not answer)")
            }
        }
    });
}

impl std::fmt::Debug for UpdateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateHandle")
            .field("spec", &self.spec)
            .field("progress", &*self.progress.borrow())
            .finish()
    }
}

impl UpdateHandle {
    /// A handle on an update that has ended (read back from the journal).
    pub fn ended(spec: Arc<UpdateSpec>, progress: Progress) -> Self {
        let (_, rx) = watch::channel(progress);
        Self {
            spec,
            addr: None,
            progress: rx,
        }
    }

    pub fn spec(&self) -> &Arc<UpdateSpec> {
        &self.spec
    }

    pub fn id(&self) -> uuid::Uuid {
        self.spec.id
    }

    /// The progress as last published.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Whether the update has not ended.
    pub fn is_running(&self) -> bool {
        !self.progress.borrow().phase.is_terminal()
    }

    /// Follow the progress.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Keep the update's metrics in step with its progress.
    pub fn follow_metrics(&self) {
        update_metrics::follow(self.spec.clone(), self.watch());
    }

    /// Ask the SP to abort this update. `None` if the update's actor has
    /// ended (then the SP alone decides).
    pub async fn abort(&self) -> Option<Result<(), UpdateError>> {
        self.addr.as_ref()?.send(Abort).await.ok()
    }

    /// Journal the progress as it is now and wait until it is written
    /// (shutdown).
    pub async fn persist(&self) {
        if let Some(addr) = &self.addr {
            let _ = addr.send(Persist).await;
        }
    }
}
