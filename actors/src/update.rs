//! `UpdateActor`: one per update. Holds the update's only record and
//! publishes it on a `watch` that status, `watch` and metrics read
//! ([`UpdateHandle`]). It prepares the update (a resent prepare that finds
//! our own id on the SP counts as accepted), waits out the erase, leases
//! the image to the SP actor's chunk stream, and on a stall asks the SP
//! where it is and leases again from there. It confirms completion with
//! the SP, reads the host-flash hash back, and aborts on request. It does
//! not depend on the client that started it, and tells the registry when
//! it has ended.

use crate::activate::{activate, Activation, Expected, Outcome, ResetOptions};
use crate::delivery::StreamEvent;
use crate::image::{Image, ImageHash};
use crate::journal::JournalHandle;
use crate::rpc::{RpcError, RpcPolicy};
use crate::sp::{Deliver, DeliveryReport, RpcResult, SpHandle};
use crate::update_state::{
    prepare_outcome, read_status, FailureKind, Phase, Prepared, SpUpdateState, SpView, UpdateRecord,
};
use crate::{SpName, UpdateError};
use actix::prelude::*;
use gateway_messages::{
    ComponentUpdatePrepare, HfError, MgsRequest, SpComponent, SpError, SpResponse, SpUpdatePrepare,
    UpdateId,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Delivery settings (`[sp_defaults.delivery]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// How often to read the SP's status while it erases, and while data
    /// flows (status questions are answered from that reading, so it is
    /// never older than this plus a round trip).
    #[serde(rename = "status_poll_interval_ms", with = "crate::rpc::millis")]
    pub status_poll_interval: Duration,
    /// Host-flash device size the SP hashes (MiB); also the largest
    /// host-flash image.
    pub host_flash_capacity_mib: u32,
    /// Largest SP image (KiB): a bigger one is refused before it is read
    /// or the SP asked.
    pub sp_image_capacity_kib: u32,
    /// Largest RoT or stage0 image (KiB), likewise.
    pub rot_image_capacity_kib: u32,
    /// Read the host-flash hash back after an update and compare.
    pub verify_host_flash_hash: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            status_poll_interval: Duration::from_millis(500),
            host_flash_capacity_mib: 32,
            sp_image_capacity_kib: 2048,
            rot_image_capacity_kib: 256,
            verify_host_flash_hash: true,
        }
    }
}

/// Journal an update's progress at most this often between phase changes
/// (a restart resumes from the SP's own `bytes_received` anyway).
const JOURNAL_EVERY: Duration = Duration::from_secs(2);

/// Polls no closer than this, however near the erase's end looks.
const MIN_ERASE_POLL: Duration = Duration::from_millis(10);

/// When to look again at an erase that went from sector `first` to `now`
/// of `total`: when its pace says it ends (so delivery starts within a
/// few milliseconds of the SP being ready, not up to a poll interval
/// later). Unknown pace: at once.
fn erase_left(first: (Instant, u32), now: (Instant, u32), total: u32) -> Duration {
    let (sectors, took) = (now.1.saturating_sub(first.1), now.0 - first.0);
    if sectors == 0 {
        return MIN_ERASE_POLL;
    }
    let left = took.mul_f64(f64::from(total.saturating_sub(now.1)) / f64::from(sectors));
    left.max(MIN_ERASE_POLL)
}

/// Retries of the hash start/read while the SP is busy hashing.
const MAX_HASH_POLLS: u32 = 600;

/// From an update actor to the registry: the update has ended (its record
/// is final).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateEnded(pub UpdateId);

/// Abort the update: the SP decides.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), UpdateError>")]
pub struct Abort;

/// What an update is to be.
#[derive(Debug, Clone)]
pub struct UpdatePlan {
    /// Client-chosen id.
    pub id: UpdateId,
    /// Component.
    pub component: SpComponent,
    /// Target slot.
    pub slot: u16,
    /// The image. For an SP image with aux flash: the aux-flash image
    /// (`auxi.tlvc`) then the SP image, sent in that order as components
    /// `sp-aux-flash` and `sp`, each from its offset 0.
    pub image: Arc<Image>,
    /// Bytes of `image` that are the aux-flash image (0: none), and its
    /// `CHCK` (SHA3-256 of its AUXI body), for the prepare.
    pub aux: Option<(u32, [u8; 32])>,
    /// What the image says of itself (its caboose), for the record.
    pub artifact: Option<crate::update_state::ArtifactInfo>,
    /// Reset the SP once complete so the new image runs (`sp` only).
    pub activate: Option<ResetOptions>,
}

/// A typed handle on an update: its published record, and abort. An
/// update read back from the journal after it ended has no actor.
#[derive(Clone)]
pub struct UpdateHandle {
    id: UpdateId,
    addr: Option<Addr<UpdateActor>>,
    record: watch::Receiver<UpdateRecord>,
}

/// What an update actor needs besides its plan.
#[derive(Clone)]
pub struct UpdateContext {
    /// Delivery settings.
    pub settings: DeliverySettings,
    /// The SP's request patience (an activation's reset budget).
    pub rpc: RpcPolicy,
    /// Told when the update has ended.
    pub ended: Recipient<UpdateEnded>,
    /// Where the record is kept, if the daemon keeps state.
    pub journal: Option<JournalHandle>,
}

impl UpdateHandle {
    /// Start the actor for `plan` on `sp`.
    pub fn start(sp: SpHandle, plan: UpdatePlan, cx: UpdateContext) -> Self {
        let mut record = UpdateRecord::new(
            plan.id.as_uuid(),
            sp.name().clone(),
            plan.component.to_string(),
            plan.slot,
            plan.image.hash.to_string(),
            plan.image.len() as u64,
            Instant::now(),
        );
        record.sp_serial = sp.info().identity.map(|i| i.serial);
        record.aux_flash_bytes = plan.aux.map_or(0, |(len, _)| u64::from(len));
        record.artifact = plan.artifact.clone();
        record.activate = plan.activate;
        Self::spawn(sp, plan, record, Step::Starting, cx)
    }

    /// Take up again, after a restart, the journalled update `record`:
    /// once `sp` answers, its status says where the update stands.
    pub fn resume(sp: SpHandle, plan: UpdatePlan, record: UpdateRecord, cx: UpdateContext) -> Self {
        Self::spawn(sp, plan, record, Step::Resuming, cx)
    }

    /// A handle on an update that has ended (read back from the journal).
    pub fn ended(record: UpdateRecord) -> Self {
        let (_, rx) = watch::channel(record.clone());
        Self {
            id: UpdateId::from(record.id),
            addr: None,
            record: rx,
        }
    }

    fn spawn(
        sp: SpHandle,
        plan: UpdatePlan,
        record: UpdateRecord,
        step: Step,
        cx: UpdateContext,
    ) -> Self {
        let (tx, rx) = watch::channel(record.clone());
        let id = plan.id;
        let span = tracing::info_span!("update", sp = %sp.name(), update = %id, component = %plan.component);
        let journaled = (record.phase, Instant::now());
        let addr = UpdateActor {
            sp,
            ended: cx.ended,
            journal: cx.journal,
            journaled,
            plan,
            settings: cx.settings,
            rpc: cx.rpc,
            record,
            tx,
            step,
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
        Self {
            id,
            addr: Some(addr),
            record: rx,
        }
    }

    /// The update's id.
    pub fn id(&self) -> UpdateId {
        self.id
    }

    /// The record as last published.
    pub fn record(&self) -> UpdateRecord {
        self.record.borrow().clone()
    }

    /// Whether the update has not ended.
    pub fn is_running(&self) -> bool {
        !self.record.borrow().phase.is_terminal()
    }

    /// Follow the record.
    pub fn watch(&self) -> watch::Receiver<UpdateRecord> {
        self.record.clone()
    }

    /// Wait until the SP has accepted the prepare (or the update ended).
    pub async fn accepted(&self) -> Result<UpdateRecord, UpdateError> {
        let mut rx = self.record.clone();
        let waited = rx
            .wait_for(|r| r.phase != Phase::Starting)
            .await
            .map(|r| r.clone());
        // If the actor went away mid-prepare (daemon stopping), its last
        // word stands.
        let record = waited.unwrap_or_else(|_| rx.borrow().clone());
        match record.start_error {
            Some(e) => Err(e),
            None => Ok(record),
        }
    }

    /// Ask the SP to abort this update. `None` if the update's actor has
    /// already ended (then the SP alone decides).
    pub async fn abort(&self) -> Option<Result<(), UpdateError>> {
        self.addr.as_ref()?.send(Abort).await.ok()
    }

    /// Journal the record as it is now and wait until it is written
    /// (shutdown).
    pub async fn persist(&self) {
        if let Some(addr) = &self.addr {
            let _ = addr.send(Persist).await;
        }
    }
}

/// Journal the record now (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Persist;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read back from the journal after a restart: waiting for the SP,
    /// then for its status.
    Resuming,
    /// The prepare is out.
    Starting,
    /// The SP erases.
    Erasing,
    /// Chunks flow.
    Delivering,
    /// Every byte is acknowledged; the SP must say Complete.
    Confirming,
    /// Reading the hash back.
    Verifying,
    /// Resetting the SP into the new image.
    Activating,
    /// Ended.
    Done,
}

/// Why a status is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// After a restart: where does the SP stand with our update?
    Reconcile,
    /// The prepare went unanswered: does the SP hold our update anyway?
    Adopt,
    /// Erase polling, and the first look after the prepare.
    Poll,
    /// The stream stalled: where to go on from.
    Resume,
    /// Periodic, while data flows: for status questions.
    Refresh,
    /// Every byte is acknowledged: is it complete?
    Confirm,
}

/// Delivers one update. See the module docs.
pub struct UpdateActor {
    sp: SpHandle,
    ended: Recipient<UpdateEnded>,
    journal: Option<JournalHandle>,
    /// The phase last journalled, and when.
    journaled: (Phase, Instant),
    plan: UpdatePlan,
    settings: DeliverySettings,
    rpc: RpcPolicy,
    record: UpdateRecord,
    tx: watch::Sender<UpdateRecord>,
    step: Step,
    asking_resume: bool,
    asking_refresh: bool,
    /// A status question went unanswered once already.
    asked_after_silence: bool,
    /// The SP actor holds a lease on our image.
    streaming: bool,
    abort_requested: bool,
    /// Why the prepare went unanswered, while we ask the SP.
    unanswered_prepare: Option<RpcError>,
    /// The first erase progress seen, and when: the erase's pace.
    erase_seen: Option<(Instant, u32)>,
    timer: Option<SpawnHandle>,
    expected_hash: Option<[u8; 32]>,
    hash_polls: u32,
    /// Everything the actor logs is in this span (`sp`, `update` id,
    /// `component`).
    span: tracing::Span,
}

impl UpdateActor {
    fn name(&self) -> &SpName {
        self.sp.name()
    }

    fn total(&self) -> u32 {
        self.plan.image.len() as u32
    }

    /// Publish the record; journal it at a phase change, and at most
    /// every [`JOURNAL_EVERY`] otherwise.
    fn publish(&mut self) {
        self.tx.send_replace(self.record.clone());
        let (phase, at) = self.journaled;
        if phase != self.record.phase || at.elapsed() >= JOURNAL_EVERY {
            self.journal_now();
        }
    }

    fn journal_now(&mut self) {
        self.journaled = (self.record.phase, Instant::now());
        // A start the SP refused left nothing to journal (and is forgotten).
        if self.record.start_error.is_some() {
            return;
        }
        if let Some(journal) = &self.journal {
            journal.write(self.record.clone());
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
                if act.step != Step::Done {
                    let _in_span = act.span.clone().entered();
                    then(act, res, ctx)
                }
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
            if act.step != Step::Done {
                let _in_span = act.span.clone().entered();
                then(act, ctx)
            }
        }));
    }

    fn prepare(&mut self, ctx: &mut Context<Self>) {
        let (id, total) = (self.plan.id, self.total());
        let request = if self.plan.component == SpComponent::SP_ITSELF {
            let (aux_len, chck) = self.plan.aux.unwrap_or((0, [0; 32]));
            MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
                id,
                aux_flash_size: aux_len,
                aux_flash_chck: chck,
                sp_image_size: total - aux_len,
            })
        } else {
            MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
                component: self.plan.component,
                id,
                slot: self.plan.slot,
                total_size: total,
            })
        };
        self.rpc(request, ctx, |act, res, ctx| {
            match prepare_outcome(res.map(|(r, _)| r), act.plan.id, act.sp.name()) {
                Prepared::Accepted => act.accepted(ctx),
                Prepared::Unknown(e) => {
                    warn!(error = %e, "prepare unanswered; asking the SP whether it holds the update");
                    act.unanswered_prepare = Some(e);
                    act.ask(Ask::Adopt, ctx);
                }
                Prepared::Refused(e) => act.refused(e, ctx),
            }
        });
    }

    fn accepted(&mut self, ctx: &mut Context<Self>) {
        info!(bytes = self.total(), "update prepared");
        self.record.prepared();
        self.step = Step::Erasing;
        self.publish();
        self.ask(Ask::Poll, ctx);
    }

    /// The SP did not take the update: nothing was started.
    fn refused(&mut self, e: RpcError, ctx: &mut Context<Self>) {
        let error = match &e {
            RpcError::Sp {
                sp,
                error: SpError::UpdateInProgress(status),
            } => match crate::update_state::status_id(status) {
                Some(other)
                    if matches!(
                        status,
                        gateway_messages::UpdateStatus::Complete(_)
                            | gateway_messages::UpdateStatus::Failed { .. }
                    ) =>
                {
                    UpdateError::SpHoldsEnded {
                        sp: sp.clone(),
                        id: other.as_uuid(),
                        state: if matches!(status, gateway_messages::UpdateStatus::Complete(_)) {
                            "complete"
                        } else {
                            "failed"
                        },
                    }
                }
                Some(other) => UpdateError::AlreadyRunning {
                    sp: sp.clone(),
                    component: self.plan.component.to_string(),
                    id: other.as_uuid(),
                },
                None => UpdateError::Prepare(e.clone()),
            },
            _ => UpdateError::Prepare(e.clone()),
        };
        info!(error = %error, "update not started");
        self.record.start_error = Some(error);
        if let Some(j) = &self.journal {
            j.forget(vec![self.record.id]);
        }
        self.fail(
            FailureKind::of(&e),
            format!("the SP did not accept the prepare: {e}"),
            ctx,
        );
    }

    /// After a restart: once the SP answers (and is still the same SP), ask
    /// where it stands with our update.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let sp = self.sp.clone();
        ctx.spawn(async move { sp.identified().await }.into_actor(self).map(
            |identity, act, ctx| {
                let _in_span = act.span.clone().entered();
                let Some(identity) = identity else {
                    let e = format!(
                        "{}: the SP's actor stopped before the SP answered",
                        act.name()
                    );
                    return act.fail(FailureKind::Other, e, ctx);
                };
                match &act.record.sp_serial {
                    Some(serial) if *serial != identity.serial => {
                        let e = format!(
                            "{} is now the SP with serial {}; the update was for serial {serial}",
                            act.name(),
                            identity.serial
                        );
                        act.fail(FailureKind::SpReset, e, ctx)
                    }
                    _ => act.ask(Ask::Reconcile, ctx),
                }
            },
        ));
    }

    /// The prepare went unanswered and the SP does not hold the update.
    fn prepare_lost(&mut self, ctx: &mut Context<Self>) {
        let e = self.unanswered_prepare.take().unwrap_or(RpcError::Stopped {
            sp: self.name().clone(),
        });
        self.refused(e, ctx);
    }

    fn ask(&mut self, why: Ask, ctx: &mut Context<Self>) {
        match why {
            Ask::Resume if self.asking_resume => return,
            Ask::Resume => self.asking_resume = true,
            Ask::Refresh if self.asking_refresh || self.asking_resume => return,
            Ask::Refresh => self.asking_refresh = true,
            _ => {}
        }
        let request = MgsRequest::UpdateStatus(self.plan.component);
        self.rpc(request, ctx, move |act, res, ctx| {
            act.on_status(why, res, ctx)
        });
    }

    fn on_status(&mut self, why: Ask, res: RpcResult, ctx: &mut Context<Self>) {
        match why {
            Ask::Resume => self.asking_resume = false,
            Ask::Refresh => self.asking_refresh = false,
            _ => {}
        }
        let status = match res {
            Ok((SpResponse::UpdateStatus(s), _)) => s,
            Ok((other, _)) => {
                let e = RpcError::Unexpected {
                    sp: self.name().clone(),
                    response: format!("{other:?}"),
                };
                return self.lost(why, e, ctx);
            }
            Err(e) => return self.lost(why, e, ctx),
        };
        let now = Instant::now();
        self.record.sp_status = Some((SpUpdateState::from(status), now));
        let aux_len = self.plan.aux.map_or(0, |(len, _)| len);
        let view = read_status(status, self.plan.id, self.total(), aux_len);
        if why == Ask::Adopt {
            if let SpView::Gone(..) = view {
                return self.prepare_lost(ctx);
            }
            info!("the SP holds the update: its prepare's ack was lost");
            self.record.prepared();
            self.step = Step::Erasing;
        }
        if why == Ask::Reconcile {
            if let SpView::Gone(kind, why) = view {
                return if self.record.phase == Phase::Activating {
                    // The reset went out before the restart.
                    self.confirm_activation(ctx)
                } else if self.record.phase == Phase::Starting {
                    // The daemon stopped before the SP took the prepare:
                    // nothing was started, and the id is free again.
                    let e = RpcError::Stopped {
                        sp: self.name().clone(),
                    };
                    self.refused(e, ctx)
                } else {
                    self.fail(kind, format!("while mgsd was down, {why}"), ctx)
                };
            }
            self.record.resumed += 1;
            crate::metrics::resumed(self.name().as_str(), &self.record.component);
            info!(
                sp_status = ?self.record.sp_status.as_ref().map(|s| &s.0),
                phase = self.record.phase.as_str(),
                "update taken up again after a restart"
            );
            self.record.prepared();
            self.step = Step::Erasing;
        }
        match view {
            SpView::Erasing(progress) => {
                let mut wait = self.settings.status_poll_interval;
                if let Some((current, total)) = progress {
                    self.record.erase(current, total);
                    let first = *self.erase_seen.get_or_insert((now, current));
                    wait = wait.min(erase_left(first, (now, current), total));
                }
                self.publish();
                if matches!(self.step, Step::Erasing) {
                    self.later(wait, ctx, |act, ctx| act.ask(Ask::Poll, ctx));
                }
            }
            SpView::Accepting(from) => match (self.step, why) {
                (Step::Delivering, Ask::Refresh) => self.publish(),
                (Step::Erasing | Step::Delivering | Step::Confirming, _) => {
                    self.record.delivering(u64::from(from), now);
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
            SpView::Aborted if self.abort_requested => {
                // Our abort got there; its answer ends the update.
                self.stop_stream();
            }
            SpView::Aborted => {
                self.record.last_error = Some("aborted on the SP by another client".into());
                self.aborted(ctx);
            }
            SpView::Gone(kind, why) => self.fail(kind, why, ctx),
        }
    }

    /// A status question failed.
    fn lost(&mut self, why: Ask, e: RpcError, ctx: &mut Context<Self>) {
        match why {
            Ask::Adopt => self.prepare_lost(ctx),
            // A lost refresh costs nothing: if the SP is gone, the stream
            // stalls and the resume finds out.
            Ask::Refresh => {
                self.record.last_error = Some(format!("status refresh failed: {e}"));
            }
            // Silent through a whole request's patience: the SP actor looks
            // for the SP again (behind an interface it may be back at a new
            // address after a reboot); ask once more before giving up, so
            // an SP that forgot the update is reported as such.
            Ask::Resume | Ask::Poll
                if matches!(e, RpcError::Timeout { .. } | RpcError::Io { .. })
                    && !self.asked_after_silence =>
            {
                self.asked_after_silence = true;
                self.record.last_error = Some(format!("SP silent ({e}); asking again"));
                self.ask(why, ctx);
            }
            _ => self.fail(
                FailureKind::of(&e),
                format!("lost contact with the SP: {e}"),
                ctx,
            ),
        }
    }

    fn stream_from(&mut self, from: u32, ctx: &mut Context<Self>) {
        self.step = Step::Delivering;
        self.streaming = true;
        self.sp.deliver(Deliver {
            id: self.plan.id,
            component: self.plan.component,
            image: self.plan.image.clone(),
            aux_len: self.plan.aux.map_or(0, |(len, _)| len),
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
            self.sp.stop_delivery(self.plan.id);
        }
    }

    fn verify(&mut self, ctx: &mut Context<Self>) {
        self.stop_stream();
        self.step = Step::Verifying;
        self.record.verifying(Instant::now());
        self.publish();
        if self.plan.component != SpComponent::HOST_CPU_BOOT_FLASH
            || !self.settings.verify_host_flash_hash
        {
            return self.complete(ctx);
        }
        let image = self.plan.image.clone();
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
            slot: self.plan.slot,
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
                act.record.last_error =
                    Some("this SP cannot hash its host flash; not verified".into());
                act.complete(ctx);
            }
            Err(e) => act.fail(
                FailureKind::of(&e),
                format!("could not start the host-flash hash: {e}"),
                ctx,
            ),
        });
    }

    fn read_hash(&mut self, ctx: &mut Context<Self>) {
        let request = MgsRequest::GetHostFlashHash {
            slot: self.plan.slot,
        };
        self.rpc(request, ctx, |act, res, ctx| match res {
            Ok((SpResponse::HostFlashHash(got), _)) => match act.expected_hash {
                Some(want) if want == got => {
                    act.record.hash_verified = true;
                    act.complete(ctx);
                }
                Some(want) => act.fail(
                    FailureKind::HashMismatch,
                    format!(
                        "host-flash slot {} hash mismatch: SP has {}, expected {}",
                        act.plan.slot,
                        ImageHash(got),
                        ImageHash(want)
                    ),
                    ctx,
                ),
                None => act.fail(
                    FailureKind::Other,
                    "could not compute the expected hash".into(),
                    ctx,
                ),
            },
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => act.hash_later(ctx, Self::read_hash),
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::RecalculateHash | HfError::HashUncalculated),
                ..
            }) => act.hash_later(ctx, Self::start_hash),
            Ok((other, _)) => act.fail(
                FailureKind::Other,
                format!("unexpected answer to a hash read: {other:?}"),
                ctx,
            ),
            Err(e) => act.fail(
                FailureKind::of(&e),
                format!("could not read the host-flash hash: {e}"),
                ctx,
            ),
        });
    }

    fn hash_later(&mut self, ctx: &mut Context<Self>, then: fn(&mut Self, &mut Context<Self>)) {
        self.hash_polls += 1;
        if self.hash_polls > MAX_HASH_POLLS {
            return self.fail(
                FailureKind::Other,
                "the SP never finished hashing the host flash".into(),
                ctx,
            );
        }
        let wait = self
            .settings
            .status_poll_interval
            .min(Duration::from_millis(100));
        self.later(wait, ctx, then);
    }

    fn complete(&mut self, ctx: &mut Context<Self>) {
        if self.plan.activate.is_some()
            && self.plan.component == SpComponent::SP_ITSELF
            && self.step != Step::Activating
        {
            return self.activate(ctx);
        }
        self.record.complete(Instant::now());
        info!(rewinds = self.record.rewinds, "update complete");
        self.finish(ctx);
    }

    /// Reset the SP into the new image (asked for with the start).
    fn activate(&mut self, ctx: &mut Context<Self>) {
        self.step = Step::Activating;
        self.record.phase = Phase::Activating;
        self.publish();
        let opts = self.plan.activate.unwrap_or_default();
        let (sp, policy, id) = (self.sp.clone(), self.rpc, self.plan.id.as_uuid());
        let expected = self.plan.artifact.as_ref().map(Expected::of);
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
                let why = format!("delivered, but the reset could not start: {e}");
                return self.fail(FailureKind::of(&e), why, ctx);
            }
        };
        crate::metrics::reset_done(self.name().as_str(), a.outcome, a.method);
        let (outcome, detail) = (a.outcome, a.detail.clone());
        self.record.activation = Some(a);
        match outcome {
            Outcome::Activated | Outcome::Reset => self.complete(ctx),
            Outcome::RolledBack => self.fail(FailureKind::RolledBack, detail, ctx),
            Outcome::Unreachable => self.fail(FailureKind::SpUnreachable, detail, ctx),
        }
    }

    /// After a restart mid-activation, with the SP rebooted: recognise the
    /// image by its caboose.
    fn confirm_activation(&mut self, ctx: &mut Context<Self>) {
        let expected = self.plan.artifact.as_ref().map(Expected::of);
        let Some(expected) = expected.filter(|e| *e != Expected::default()) else {
            let why = "mgsd restarted mid-activation, and the image has no caboose to \
                       recognise it by: compare the SP's archive id (mgsctl state)";
            return self.fail(FailureKind::Other, why.into(), ctx);
        };
        self.step = Step::Activating;
        self.record.resumed += 1;
        crate::metrics::resumed(self.name().as_str(), &self.record.component);
        let (sp, opts) = (self.sp.clone(), self.plan.activate.unwrap_or_default());
        let confirm = async move { crate::activate::confirm(&sp, &expected, opts).await };
        let confirm = tracing::Instrument::instrument(confirm, self.span.clone());
        ctx.spawn(confirm.into_actor(self).map(|a, act, ctx| {
            let _in_span = act.span.clone().entered();
            act.activated(Ok(a), ctx)
        }));
    }

    fn aborted(&mut self, ctx: &mut Context<Self>) {
        self.record.abort(Instant::now());
        info!("update aborted");
        self.finish(ctx);
    }

    fn fail(&mut self, kind: FailureKind, reason: String, ctx: &mut Context<Self>) {
        if self.record.start_error.is_none() {
            warn!(%reason, "update failed");
        }
        self.record.fail(kind, reason, Instant::now());
        self.finish(ctx);
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        self.stop_stream();
        self.step = Step::Done;
        self.publish();
        let _ = self.ended.try_send(UpdateEnded(self.plan.id));
        ctx.stop();
    }
}

impl Actor for UpdateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        if self.step == Step::Resuming {
            return self.reconcile(ctx);
        }
        // The intent is on disk before the SP hears of it, so a crash
        // after the prepare leaves no update on the SP we do not know of.
        let (journal, record) = (self.journal.clone(), self.record.clone());
        self.journaled = (record.phase, Instant::now());
        ctx.spawn(
            async move {
                if let Some(j) = journal {
                    j.write_now(record).await
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                let _in_span = act.span.clone().entered();
                act.prepare(ctx)
            }),
        );
    }
}

impl Handler<Persist> for UpdateActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Persist, _: &mut Context<Self>) -> Self::Result {
        let (journal, record) = (self.journal.clone(), self.record.clone());
        self.journaled = (record.phase, Instant::now());
        Box::pin(async move {
            if let Some(j) = journal {
                j.write_now(record).await
            }
        })
    }
}

impl Handler<DeliveryReport> for UpdateActor {
    type Result = ();
    fn handle(&mut self, msg: DeliveryReport, ctx: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        if msg.id != self.plan.id || self.step != Step::Delivering {
            return;
        }
        self.record.progress(u64::from(msg.acked), msg.counts);
        match msg.event {
            StreamEvent::Progress => self.publish(),
            StreamEvent::Done => {
                // The SP is the truth: it must say Complete.
                self.step = Step::Confirming;
                self.record.verifying(Instant::now());
                self.publish();
                self.ask(Ask::Confirm, ctx);
            }
            StreamEvent::Stalled(stall) => {
                self.record.last_error = Some(stall.to_string());
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
        let request = MgsRequest::UpdateAbort {
            component: self.plan.component,
            id: self.plan.id,
        };
        let sp = self.sp.clone();
        Box::pin(
            async move { sp.rpc(request).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    let _in_span = act.span.clone().entered();
                    act.abort_requested = false;
                    match res {
                        Ok(_) => {
                            if act.step != Step::Done {
                                act.aborted(ctx);
                            }
                            Ok(())
                        }
                        Err(RpcError::Sp { sp, error }) => Err(UpdateError::AbortRefused {
                            sp,
                            component: act.plan.component.to_string(),
                            id: act.plan.id.as_uuid(),
                            error,
                        }),
                        Err(e) => Err(UpdateError::Rpc(e)),
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_polls_aim_at_the_predicted_end() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // 100 sectors in 250 ms; 400 left: 1 s.
        assert_eq!(erase_left((t, 1), (t + ms(250), 101), 501), ms(1000));
        // No pace yet, or nearly done: soon, but not in a spin.
        assert_eq!(erase_left((t, 1), (t, 1), 501), MIN_ERASE_POLL);
        assert_eq!(erase_left((t, 1), (t + ms(250), 500), 501), MIN_ERASE_POLL);
    }
}
