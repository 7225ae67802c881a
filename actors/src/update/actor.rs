//! The update actor's state machine. One [`Step`] says where the update
//! is; the published phase is a projection of it ([`Step::phase`]), set
//! in one place ([`UpdateActor::enter`]). Its requests go through the SP's
//! actor; their answers come back as callbacks on this actor's context,
//! which actix stops polling once the actor has stopped.

use super::decide::{erase_left, prepare_outcome, read_status, refusal, Prepared, SpView};
use super::{update_metrics, Abort, Persist, UpdateEnded};
use crate::activate::{activate, confirm};
use crate::delivery::StreamEvent;
use crate::error::{RpcError, UpdateError};
use crate::image::Image;
use crate::journal::JournalHandle;
use crate::record::{Failure, FailureKind, HashForm, Phase, Progress, UpdateSpec};
use crate::reset::{Activation, Expected, Outcome};
use crate::settings::{DeliverySettings, RpcPolicy};
use crate::sp::{Deliver, DeliveryReport, OpClaim, RpcResult, SlotBusy, SpHandle};
use crate::types::{ImageHash, Operation};
use actix::prelude::*;
use gateway_messages::{
    ComponentUpdatePrepare, HfError, MgsRequest, SpComponent, SpError, SpResponse, SpUpdatePrepare,
    UpdateId, MAX_UPDATE_CHUNK_DATA,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// Journal an update's progress at most this often between phase changes
/// (a restart resumes from the SP's own `bytes_received` anyway).
const JOURNAL_EVERY: Duration = Duration::from_secs(2);

/// Retries of the hash start/read while the SP is busy hashing.
const MAX_HASH_POLLS: u32 = 600;

/// Where the update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Read back from the journal after a restart: waiting for the SP,
    /// then for its status. The phase stays as journalled until then.
    Resuming,
    /// The prepare is out (or went unanswered, and the SP is asked
    /// whether it holds the update anyway).
    Starting,
    Erasing,
    Delivering,
    /// Every byte is acknowledged; the SP must say Complete.
    Confirming,
    /// Reading the host-flash hash back.
    Verifying,
    /// Resetting the SP into the new image.
    Activating,
    Done,
}

impl Step {
    /// The phase clients see for this step (`None`: keep the one
    /// journalled, or the terminal one set when it ended).
    fn phase(self) -> Option<Phase> {
        match self {
            Step::Resuming | Step::Done => None,
            Step::Starting => Some(Phase::Starting),
            Step::Erasing => Some(Phase::Preparing),
            Step::Delivering => Some(Phase::Delivering),
            Step::Confirming | Step::Verifying => Some(Phase::Verifying),
            Step::Activating => Some(Phase::Activating),
        }
    }
}

/// Why a status is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// After a restart: where does the SP stand with our update?
    Reconcile,
    /// The prepare went unanswered (or the daemon stopped before it was
    /// answered): does the SP hold our update anyway?
    Adopt,
    /// Erase polling, and the first look after the prepare.
    Poll,
    /// The stream stalled: where to go on from.
    Resume,
    /// Periodic, while data flows: keeps the SP's status fresh for
    /// status questions.
    Refresh,
    /// Every byte is acknowledged: is it complete?
    Confirm,
}

/// Delivers one update. See the module docs.
pub struct UpdateActor {
    pub(super) sp: SpHandle,
    pub(super) spec: Arc<UpdateSpec>,
    pub(super) image: Arc<Image>,
    pub(super) settings: DeliverySettings,
    pub(super) rpc: RpcPolicy,
    pub(super) journal: Option<JournalHandle>,
    pub(super) ended: Recipient<UpdateEnded>,
    pub(super) progress: Progress,
    pub(super) tx: watch::Sender<Progress>,
    pub(super) step: Step,
    /// Told once the SP accepted the prepare, or why nothing was started.
    pub(super) accepted: Option<oneshot::Sender<Result<(), UpdateError>>>,
    /// The SP's operation slot, held from the start until the update ends.
    pub(super) claim: Option<OpClaim>,
    /// The phase last journalled, and when.
    pub(super) journaled: (Phase, Instant),
    pub(super) asking_resume: bool,
    pub(super) asking_refresh: bool,
    /// A status question went unanswered once already.
    pub(super) asked_after_silence: bool,
    /// The SP actor holds a lease on our image.
    pub(super) streaming: bool,
    pub(super) abort_requested: bool,
    /// Why the prepare went unanswered, while we ask the SP.
    pub(super) unanswered_prepare: Option<RpcError>,
    /// The first erase progress seen, and when: the erase's pace.
    pub(super) erase_seen: Option<(Instant, u32)>,
    pub(super) timer: Option<SpawnHandle>,
    pub(super) expected_hash: Option<[u8; 32]>,
    pub(super) hash_polls: u32,
    /// Everything the actor logs is in this span (`sp`, `update` id,
    /// `component`).
    pub(super) span: tracing::Span,
}

impl UpdateActor {
    fn id(&self) -> UpdateId {
        UpdateId::from(self.spec.id)
    }

    fn total(&self) -> u32 {
        self.image.len() as u32
    }

    fn enter(&mut self, step: Step) {
        self.step = step;
        if let Some(phase) = step.phase() {
            self.progress.phase = phase;
        }
    }

    /// Publish the progress; journal it at a phase change, and at most
    /// every [`JOURNAL_EVERY`] otherwise.
    fn publish(&mut self) {
        self.tx.send_replace(self.progress.clone());
        let (phase, at) = self.journaled;
        if phase != self.progress.phase || at.elapsed() >= JOURNAL_EVERY {
            self.journal_now();
        }
    }

    fn journal_now(&mut self) {
        self.journaled = (self.progress.phase, Instant::now());
        if let Some(journal) = &self.journal {
            journal.write(self.spec.clone(), self.progress.clone());
        }
    }

    fn rpc(
        &self,
        request: MgsRequest,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, RpcResult, &mut Context<Self>) + 'static,
    ) {
        let sp = self.sp.clone();
        ctx.spawn(async move { sp.rpc(request).await }.into_actor(self).map(
            move |res, act, ctx| {
                let _in_span = act.span.clone().entered();
                then(act, res, ctx)
            },
        ));
    }

    fn later(
        &mut self,
        wait: Duration,
        ctx: &mut Context<Self>,
        then: fn(&mut Self, &mut Context<Self>),
    ) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.timer = Some(ctx.run_later(wait, move |act, ctx| {
            act.timer = None;
            let _in_span = act.span.clone().entered();
            then(act, ctx)
        }));
    }

    /// Claim the SP's operation slot, then go on with `next`. Claimed
    /// first thing, so a reset cannot slip in between a check and the
    /// prepare.
    fn claim_then(&mut self, ctx: &mut Context<Self>, next: fn(&mut Self, &mut Context<Self>)) {
        let (sp, op) = (
            self.sp.clone(),
            Operation::Update {
                id: self.spec.id,
                component: self.spec.component,
            },
        );
        ctx.wait(async move { sp.claim(op).await }.into_actor(self).map(
            move |claimed, act, ctx| {
                let _in_span = act.span.clone().entered();
                match claimed {
                    Ok(claim) => {
                        act.claim = Some(claim);
                        next(act, ctx)
                    }
                    Err(busy) => {
                        let sp = act.sp.name().clone();
                        let e = match busy {
                            SlotBusy::Held(Operation::Update { id, component }) => {
                                UpdateError::AlreadyRunning { sp, component, id }
                            }
                            SlotBusy::Held(held) => UpdateError::SpBusy { sp, held },
                            SlotBusy::Stopped => RpcError::Stopped { sp }.into(),
                        };
                        act.not_started(e, ctx)
                    }
                }
            },
        ));
    }

    /// Journal the intent, then send the prepare. On disk before the SP
    /// hears of it, so a crash after the prepare leaves no update on the
    /// SP we do not know of; a start that cannot be journalled is not
    /// started.
    fn journal_then_prepare(&mut self, ctx: &mut Context<Self>) {
        let Some(journal) = self.journal.clone() else {
            return self.prepare(ctx);
        };
        let (spec, progress) = (self.spec.clone(), self.progress.clone());
        self.journaled = (progress.phase, Instant::now());
        ctx.wait(
            async move { journal.write_now(spec, progress).await }
                .into_actor(self)
                .map(|written, act, ctx| {
                    let _in_span = act.span.clone().entered();
                    match written {
                        Ok(()) => act.prepare(ctx),
                        Err(source) => {
                            let id = act.spec.id;
                            act.not_started(UpdateError::Journal { id, source }, ctx)
                        }
                    }
                }),
        );
    }

    fn prepare(&mut self, ctx: &mut Context<Self>) {
        let (id, total) = (self.id(), self.total());
        let request = if self.spec.component == SpComponent::SP_ITSELF {
            let aux = self.spec.aux;
            MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
                id,
                aux_flash_size: aux.map_or(0, |a| a.len),
                aux_flash_chck: aux.map_or([0; 32], |a| a.chck),
                sp_image_size: total - self.spec.aux_len(),
            })
        } else {
            MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
                component: self.spec.component,
                id,
                slot: self.spec.slot,
                total_size: total,
            })
        };
        self.rpc(request, ctx, |act, res, ctx| {
            match prepare_outcome(res.map(|(r, _)| r), act.id(), act.sp.name()) {
                Prepared::Accepted => act.accepted(ctx),
                Prepared::Unknown(e) => {
                    warn!(error = %e, "prepare unanswered; asking the SP whether it holds the update");
                    act.unanswered_prepare = Some(e);
                    act.ask(Ask::Adopt, ctx);
                }
                Prepared::Refused(e) => {
                    let e = refusal(e, act.spec.id, act.spec.component);
                    act.not_started(e, ctx)
                }
            }
        });
    }

    /// The SP holds the update: the start is answered, and from here on
    /// everyone sees it.
    fn accepted(&mut self, ctx: &mut Context<Self>) {
        info!(bytes = self.total(), "update prepared");
        if let Some(tx) = self.accepted.take() {
            let _ = tx.send(Ok(()));
        }
        self.enter(Step::Erasing);
        self.publish();
        self.ask(Ask::Poll, ctx);
    }

    /// Nothing was started: the journal's reservation of the id is
    /// released, then the start is answered with why.
    fn not_started(&mut self, e: UpdateError, ctx: &mut Context<Self>) {
        info!(error = %e, "update not started");
        self.step = Step::Done;
        let (journal, id, answer) = (self.journal.clone(), self.spec.id, self.accepted.take());
        let released = async move {
            if let Some(journal) = journal {
                journal.forget_now(vec![id]).await;
            }
        };
        ctx.wait(released.into_actor(self).map(move |_, _, ctx| {
            if let Some(tx) = answer {
                let _ = tx.send(Err(e));
            }
            ctx.stop();
        }));
    }

    /// After a restart: once the SP answers (and is still the same SP), ask
    /// where it stands with our update.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let sp = self.sp.clone();
        ctx.spawn(async move { sp.identified().await }.into_actor(self).map(
            |identity, act, ctx| {
                let _in_span = act.span.clone().entered();
                let Some(identity) = identity else {
                    let sp = act.sp.name().clone();
                    let e = RpcError::Stopped { sp };
                    return act.fail(
                        Failure::caused(FailureKind::Other, "before the SP answered", e),
                        ctx,
                    );
                };
                match &act.spec.sp_serial {
                    Some(serial) if *serial != identity.serial => {
                        let e = format!(
                            "{} is now the SP with serial {}; the update was for serial {serial}",
                            act.sp.name(),
                            identity.serial
                        );
                        act.fail(Failure::new(FailureKind::SpReset, e), ctx)
                    }
                    _ if act.progress.phase == Phase::Starting => act.ask(Ask::Adopt, ctx),
                    _ => act.ask(Ask::Reconcile, ctx),
                }
            },
        ));
    }

    fn ask(&mut self, why: Ask, ctx: &mut Context<Self>) {
        match why {
            Ask::Resume if self.asking_resume => return,
            Ask::Resume => self.asking_resume = true,
            Ask::Refresh if self.asking_refresh || self.asking_resume => return,
            Ask::Refresh => self.asking_refresh = true,
            _ => {}
        }
        let (sp, component) = (self.sp.clone(), self.spec.component);
        ctx.spawn(
            async move { sp.update_status(component).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let _in_span = act.span.clone().entered();
                    act.on_status(why, res, ctx)
                }),
        );
    }

    fn on_status(
        &mut self,
        why: Ask,
        res: Result<gateway_messages::UpdateStatus, RpcError>,
        ctx: &mut Context<Self>,
    ) {
        match why {
            Ask::Resume => self.asking_resume = false,
            Ask::Refresh => self.asking_refresh = false,
            _ => {}
        }
        let status = match res {
            Ok(s) => s,
            Err(e) => return self.lost(why, e, ctx),
        };
        let now = Instant::now();
        let view = read_status(status, self.id(), self.total(), self.spec.aux_len());
        match why {
            Ask::Adopt => {
                if let SpView::Gone(..) = view {
                    return self.prepare_lost(ctx);
                }
                info!("the SP holds the update: its prepare's ack was lost (or not heard before a restart)");
                if let Some(tx) = self.accepted.take() {
                    let _ = tx.send(Ok(()));
                }
                if self.step == Step::Resuming {
                    // Taken up after a restart, which counts like any other.
                    self.progress.resumed += 1;
                    update_metrics::resumed(&self.spec);
                }
                self.enter(Step::Erasing);
            }
            Ask::Reconcile => {
                if let SpView::Gone(kind, why) = view {
                    return if self.progress.phase == Phase::Activating {
                        // The reset went out before the restart.
                        self.confirm_activation(ctx)
                    } else {
                        let why = format!("while mgsd was down, {why}");
                        self.fail(Failure::new(kind, why), ctx)
                    };
                }
                self.progress.resumed += 1;
                update_metrics::resumed(&self.spec);
                // On disk now: another restart soon after must not lose
                // this one (counts only grow).
                self.journal_now();
                info!(
                    sp_status = ?status,
                    phase = self.progress.phase.as_str(),
                    "update taken up again after a restart"
                );
                self.enter(Step::Erasing);
            }
            _ => {}
        }
        match view {
            SpView::Erasing(progress) => {
                let mut wait = self.settings.status_poll_interval;
                if let Some((current, total)) = progress {
                    self.progress.erase(current, total);
                    let first = *self.erase_seen.get_or_insert((now, current));
                    wait = wait.min(erase_left(first, (now, current), total));
                }
                self.publish();
                if self.step == Step::Erasing {
                    self.later(wait, ctx, |act, ctx| act.ask(Ask::Poll, ctx));
                }
            }
            SpView::Accepting(from) => match (self.step, why) {
                (Step::Delivering, Ask::Refresh) => self.publish(),
                (Step::Erasing | Step::Delivering | Step::Confirming, _) => {
                    if why == Ask::Reconcile {
                        // Chunks sent since the last journal write are not
                        // counted; the SP holds at least this many.
                        let proven = u64::from(from).div_ceil(MAX_UPDATE_CHUNK_DATA as u64);
                        self.progress.chunks_sent = self.progress.chunks_sent.max(proven);
                    }
                    self.enter(Step::Delivering);
                    self.progress.delivering(u64::from(from), now);
                    self.publish();
                    self.stream_from(from, ctx);
                }
                _ => {}
            },
            SpView::Complete => {
                if matches!(
                    self.step,
                    Step::Erasing | Step::Delivering | Step::Confirming
                ) {
                    self.verify(ctx);
                }
            }
            // Our abort got there; its answer ends the update.
            SpView::Aborted if self.abort_requested => self.stop_stream(),
            SpView::Aborted => {
                self.progress.last_error = Some("aborted on the SP by another client".into());
                self.end(Phase::Aborted, None, ctx);
            }
            SpView::Gone(kind, why) => self.fail(Failure::new(kind, why), ctx),
        }
    }

    /// The prepare went unanswered and the SP does not hold the update:
    /// nothing was started.
    fn prepare_lost(&mut self, ctx: &mut Context<Self>) {
        let sp = self.sp.name().clone();
        let e = self
            .unanswered_prepare
            .take()
            .unwrap_or(RpcError::Stopped { sp });
        let e = refusal(e, self.spec.id, self.spec.component);
        self.not_started(e, ctx);
    }

    /// A status question failed.
    fn lost(&mut self, why: Ask, e: RpcError, ctx: &mut Context<Self>) {
        match why {
            Ask::Adopt => self.prepare_lost(ctx),
            // A lost refresh costs nothing: if the SP is gone, the stream
            // stalls and the resume finds out.
            Ask::Refresh => {
                self.progress.last_error = Some(format!("status refresh failed: {e}"));
            }
            // Silent through a whole request's patience: the SP actor looks
            // for the SP again (behind an interface it may be back at a new
            // address after a reboot); ask once more before giving up, so
            // an SP that forgot the update is reported as such.
            Ask::Resume | Ask::Poll if e.is_silence() && !self.asked_after_silence => {
                self.asked_after_silence = true;
                self.progress.last_error = Some(format!("SP silent ({e}); asking again"));
                self.ask(why, ctx);
            }
            _ => self.fail(
                Failure::caused(FailureKind::of(&e), "lost contact with the SP", e),
                ctx,
            ),
        }
    }

    fn stream_from(&mut self, from: u32, ctx: &mut Context<Self>) {
        self.streaming = true;
        self.sp.deliver(Deliver {
            id: self.id(),
            component: self.spec.component,
            image: self.image.clone(),
            aux_len: self.spec.aux_len(),
            from,
            to: ctx.address().recipient(),
        });
        self.refresh_later(ctx);
    }

    fn refresh_later(&mut self, ctx: &mut Context<Self>) {
        self.later(self.settings.status_poll_interval, ctx, |act, ctx| {
            if act.step == Step::Delivering {
                act.ask(Ask::Refresh, ctx);
                act.refresh_later(ctx);
            }
        });
    }

    fn stop_stream(&mut self) {
        if std::mem::take(&mut self.streaming) {
            self.sp.stop_delivery(self.id());
        }
    }

    fn verify(&mut self, ctx: &mut Context<Self>) {
        self.stop_stream();
        self.enter(Step::Verifying);
        self.progress
            .delivered(self.spec.total_bytes, Instant::now());
        self.publish();
        if self.spec.component != SpComponent::HOST_CPU_BOOT_FLASH
            || !self.settings.verify_host_flash_hash
        {
            return self.complete(ctx);
        }
        let image = self.image.clone();
        let capacity = self
            .settings
            .host_flash_capacity_mib
            .saturating_mul(1024 * 1024);
        let expected = tokio::task::spawn_blocking(move || image.host_flash_slot_hash(capacity));
        ctx.spawn(
            async move { expected.await.ok() }
                .into_actor(self)
                .map(|hash, act, ctx| {
                    let _in_span = act.span.clone().entered();
                    act.expected_hash = hash;
                    act.start_hash(ctx);
                }),
        );
    }

    fn start_hash(&mut self, ctx: &mut Context<Self>) {
        let request = MgsRequest::StartHostFlashHash {
            slot: self.spec.slot,
        };
        self.rpc(request, ctx, |act, res, ctx| match res {
            Ok(_) => act.read_hash(ctx),
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => act.hash_later(ctx, Self::start_hash),
            Err(RpcError::Sp {
                error: SpError::RequestUnsupportedForSp,
                ..
            }) => {
                act.progress.last_error =
                    Some("this SP cannot hash its host flash; not verified".into());
                act.complete(ctx);
            }
            Err(e) => act.fail(
                Failure::caused(
                    FailureKind::of(&e),
                    "could not start the host-flash hash",
                    e,
                ),
                ctx,
            ),
        });
    }

    fn read_hash(&mut self, ctx: &mut Context<Self>) {
        let request = MgsRequest::GetHostFlashHash {
            slot: self.spec.slot,
        };
        self.rpc(request, ctx, |act, res, ctx| match res {
            Ok((SpResponse::HostFlashHash(got), _)) => {
                // Real firmware hashes the whole slot; another SP the bytes
                // written. Either names exactly the image sent.
                let form = match act.expected_hash {
                    Some(slot) if slot == got => Some(HashForm::Slot),
                    _ if got == act.image.hash.0 => Some(HashForm::Image),
                    _ => None,
                };
                match (form, act.expected_hash) {
                    (Some(form), _) => {
                        act.progress.hash_verified = true;
                        act.progress.hash_form = Some(form);
                        act.complete(ctx);
                    }
                    (None, Some(want)) => {
                        let why = format!(
                            "host-flash slot {} hash mismatch: SP has {}, expected {} (the whole \
                             slot) or {} (the image)",
                            act.spec.slot,
                            ImageHash(got),
                            ImageHash(want),
                            act.image.hash
                        );
                        act.fail(Failure::new(FailureKind::HashMismatch, why), ctx)
                    }
                    (None, None) => act.fail(
                        Failure::new(FailureKind::Other, "could not compute the expected hash"),
                        ctx,
                    ),
                }
            }
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => act.hash_later(ctx, Self::read_hash),
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::RecalculateHash | HfError::HashUncalculated),
                ..
            }) => act.hash_later(ctx, Self::start_hash),
            Ok((other, _)) => {
                let e = RpcError::Unexpected {
                    sp: act.sp.name().clone(),
                    request: "get_host_flash_hash",
                    response: Box::new(other),
                };
                act.fail(
                    Failure::caused(FailureKind::Other, "reading the hash", e),
                    ctx,
                )
            }
            Err(e) => act.fail(
                Failure::caused(FailureKind::of(&e), "could not read the host-flash hash", e),
                ctx,
            ),
        });
    }

    fn hash_later(&mut self, ctx: &mut Context<Self>, then: fn(&mut Self, &mut Context<Self>)) {
        self.hash_polls += 1;
        if self.hash_polls > MAX_HASH_POLLS {
            let why = "the SP never finished hashing the host flash";
            return self.fail(Failure::new(FailureKind::Other, why), ctx);
        }
        let wait = self
            .settings
            .status_poll_interval
            .min(Duration::from_millis(100));
        self.later(wait, ctx, then);
    }

    fn complete(&mut self, ctx: &mut Context<Self>) {
        if self.spec.activate.is_some()
            && self.spec.component == SpComponent::SP_ITSELF
            && self.step != Step::Activating
        {
            return self.activate(ctx);
        }
        info!(rewinds = self.progress.rewinds, "update complete");
        self.end(Phase::Complete, None, ctx);
    }

    /// Reset the SP into the new image (asked for with the start), under
    /// the operation slot this update holds.
    fn activate(&mut self, ctx: &mut Context<Self>) {
        self.enter(Step::Activating);
        self.publish();
        let opts = self.spec.activate.unwrap_or_default();
        let (sp, policy, id) = (self.sp.clone(), self.rpc, self.spec.id);
        let expected = self.spec.artifact.as_ref().map(Expected::of);
        let reset = async move {
            let ours = move |completed| expected.filter(|_| completed == id);
            activate(&sp, SpComponent::SP_ITSELF, opts, &policy, ours).await
        };
        let reset = tracing::Instrument::instrument(reset, self.span.clone());
        ctx.spawn(reset.into_actor(self).map(|result, act, ctx| {
            let _in_span = act.span.clone().entered();
            act.activated(result, ctx)
        }));
    }

    /// The activation ended: the update ends complete only if the new
    /// image runs.
    fn activated(&mut self, result: Result<Activation, RpcError>, ctx: &mut Context<Self>) {
        let a = match result {
            Ok(a) => a,
            Err(e) => {
                let context = "delivered, but the reset could not start";
                return self.fail(Failure::caused(FailureKind::of(&e), context, e), ctx);
            }
        };
        crate::activate::count(self.sp.name(), &a);
        let (outcome, detail) = (a.outcome, a.detail.clone());
        self.progress.activation = Some(a);
        match outcome {
            Outcome::Activated | Outcome::Reset => self.complete(ctx),
            Outcome::RolledBack => self.fail(Failure::new(FailureKind::RolledBack, detail), ctx),
            Outcome::Unreachable => {
                self.fail(Failure::new(FailureKind::SpUnreachable, detail), ctx)
            }
        }
    }

    /// After a restart mid-activation, with the SP rebooted: recognise the
    /// image by its caboose.
    fn confirm_activation(&mut self, ctx: &mut Context<Self>) {
        let expected = self.spec.artifact.as_ref().map(Expected::of);
        let Some(expected) = expected.filter(|e| *e != Expected::default()) else {
            let why = "mgsd restarted mid-activation, and the image has no caboose to \
                       recognise it by: compare the SP's archive id (mgsctl state)";
            return self.fail(Failure::new(FailureKind::Other, why), ctx);
        };
        self.enter(Step::Activating);
        self.progress.resumed += 1;
        update_metrics::resumed(&self.spec);
        let (sp, opts) = (self.sp.clone(), self.spec.activate.unwrap_or_default());
        let confirmed = async move { confirm(&sp, &expected, opts).await };
        let confirmed = tracing::Instrument::instrument(confirmed, self.span.clone());
        ctx.spawn(confirmed.into_actor(self).map(|a, act, ctx| {
            let _in_span = act.span.clone().entered();
            act.activated(Ok(a), ctx)
        }));
    }

    fn fail(&mut self, failure: Failure, ctx: &mut Context<Self>) {
        warn!(reason = %failure.reason, "update failed");
        // Where the SP may still hold it, free its one update buffer: an
        // update we gave up must not keep the next one out.
        if !matches!(failure.kind, FailureKind::SpReset | FailureKind::RolledBack) {
            super::abort_on_sp(self.sp.clone(), self.spec.clone());
        }
        self.end(Phase::Failed, Some(failure), ctx);
    }

    /// The update ended. The operation slot is released before the end is
    /// published, so whoever acts on the end (a rollout's reset) finds the
    /// SP free.
    fn end(&mut self, phase: Phase, failure: Option<Failure>, ctx: &mut Context<Self>) {
        self.stop_stream();
        self.claim = None;
        self.step = Step::Done;
        self.progress.end(phase, failure, Instant::now());
        self.publish();
        let _ = self.ended.try_send(UpdateEnded(self.spec.id));
        ctx.stop();
    }
}

impl Actor for UpdateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        match self.step {
            Step::Resuming => self.claim_then(ctx, Self::reconcile),
            _ => self.claim_then(ctx, Self::journal_then_prepare),
        }
    }
}

impl Handler<Persist> for UpdateActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Persist, _: &mut Context<Self>) -> Self::Result {
        let (journal, spec, progress) = (
            self.journal.clone(),
            self.spec.clone(),
            self.progress.clone(),
        );
        self.journaled = (progress.phase, Instant::now());
        Box::pin(async move {
            if let Some(j) = journal {
                let _ = j.write_now(spec, progress).await;
            }
        })
    }
}

impl Handler<DeliveryReport> for UpdateActor {
    type Result = ();
    fn handle(&mut self, msg: DeliveryReport, ctx: &mut Context<Self>) {
        // A report sent before the stream was stopped finds the update on
        // to its next step: it has nothing to add there.
        if self.step != Step::Delivering {
            return;
        }
        let _in_span = self.span.clone().entered();
        self.progress.progress(u64::from(msg.acked), msg.counts);
        match msg.event {
            StreamEvent::Progress => self.publish(),
            StreamEvent::Done => {
                // The SP is the truth: it must say Complete.
                self.enter(Step::Confirming);
                self.progress
                    .delivered(self.spec.total_bytes, Instant::now());
                self.publish();
                self.ask(Ask::Confirm, ctx);
            }
            StreamEvent::Stalled(stall) => {
                self.progress.last_error = Some(stall.to_string());
                self.publish();
                self.ask(Ask::Resume, ctx);
            }
        }
    }
}

impl Handler<Abort> for UpdateActor {
    type Result = ResponseActFuture<Self, Result<(), UpdateError>>;

    fn handle(&mut self, _: Abort, _: &mut Context<Self>) -> Self::Result {
        self.abort_requested = true;
        let (component, id) = (self.spec.component, self.spec.id);
        let request = MgsRequest::UpdateAbort {
            component,
            id: UpdateId::from(id),
        };
        let sp = self.sp.clone();
        Box::pin(
            async move { sp.ack(request, SpResponse::UpdateAbortAck).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let _in_span = act.span.clone().entered();
                    act.abort_requested = false;
                    match res {
                        // (Had the update ended meanwhile, actix would not
                        // run this: the caller then asks the SP itself.)
                        Ok(()) => {
                            info!("update aborted");
                            act.end(Phase::Aborted, None, ctx);
                            Ok(())
                        }
                        Err(RpcError::Sp { sp, error }) => Err(UpdateError::AbortRefused {
                            sp,
                            component,
                            id,
                            error,
                        }),
                        Err(e) => Err(UpdateError::Rpc(e)),
                    }
                }),
        )
    }
}
