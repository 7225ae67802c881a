//! [`SpHandle`], the typed handle on an SP actor: requests with the
//! answer each expects (anything else is [`RpcError::Unexpected`]), the
//! chunk stream of an update, the SP's operation slot, and what the actor
//! publishes. The messages behind it and their handlers are here too.

use super::console::{
    ClearPhase2, ConsoleDetach, ConsoleError, ConsoleHolder, ConsoleOpen, ConsoleSession,
    ConsoleSide, ConsoleStatus,
};
use super::info::{FirmwareVersions, SpIdentity, SpInfo, SpStatuses, SpTarget};
use super::slot::Claim;
use super::{Reply, SpActor};
use crate::deadlines::Deadlines;
use crate::delivery::{ChunkCounts, ChunkStream, StreamEvent};
use crate::error::RpcError;
use crate::image::Image;
use crate::phase2::{Phase2Cache, Phase2Seen};
use crate::record::SpUpdateState;
use crate::rpc::RttEstimator;
use crate::settings::SpSettings;
use crate::transport::Transport;
use crate::types::{Operation, SpName, SpType};
use actix::prelude::*;
use gateway_messages::{
    MgsRequest, PowerState, SpComponent, SpError, SpResponse, UpdateId, UpdateStatus,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How hard to try a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    /// The SP's ordinary patience.
    Normal,
    /// The long patience of resets.
    Reset,
    /// Give up after this long (discovery probes).
    Within(Duration),
}

/// The outcome of a request: the SP's answer and its trailing bytes.
pub type RpcResult = Result<(SpResponse, Vec<u8>), RpcError>;

/// Send `request` and get the SP's answer.
#[derive(Debug, Message)]
#[rtype(result = "oneshot::Receiver<RpcResult>")]
pub struct Rpc {
    pub request: MgsRequest,
    /// Trailing bytes (an IPCC value); empty for most requests.
    pub trailing: Vec<u8>,
    pub kind: RpcKind,
}

/// Stream `image` to the SP as update `id`'s chunks from offset `from`,
/// reporting to `to`. Replaces the update's previous lease (a resume after
/// a stall).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub id: UpdateId,
    pub component: SpComponent,
    /// The whole image; its first `aux_len` bytes are an aux-flash image.
    pub image: Arc<Image>,
    pub aux_len: u32,
    /// Where the SP said it is.
    pub from: u32,
    pub to: Recipient<DeliveryReport>,
}

/// The update is over: send none of its chunks any more.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopDelivery(pub UpdateId);

/// Stop the actor (removed from the configuration); its socket closes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// From the SP actor to an update's actor: what its stream did.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeliveryReport {
    /// Bytes proven received.
    pub acked: u32,
    /// Chunk counters since the previous report.
    pub counts: ChunkCounts,
    pub event: StreamEvent,
}

/// Read the SP's state now: the receiver closes once the answer is
/// published, or the SP did not answer (at once if it is unreachable).
/// Questions that overlap share one `SpState`.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
struct RefreshState;

/// What a claim of the operation slot is answered: granted (its number),
/// or refused naming what holds the slot.
type Granted = Result<u64, Operation>;

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Granted>")]
struct ClaimSlot(Operation);

#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseSlot(u64);

/// Why the operation slot could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotBusy {
    /// This holds it.
    Held(Operation),
    /// The SP's actor is gone.
    Stopped,
}

/// The SP's operation slot, held: released when dropped.
#[derive(Debug)]
pub struct OpClaim {
    addr: Addr<SpActor>,
    number: u64,
}

impl Drop for OpClaim {
    fn drop(&mut self) {
        self.addr.do_send(ReleaseSlot(self.number));
    }
}

/// A typed handle on an SP actor.
#[derive(Clone)]
pub struct SpHandle {
    name: SpName,
    kind: Option<SpType>,
    addr: Addr<SpActor>,
    info: watch::Receiver<SpInfo>,
    statuses: watch::Receiver<SpStatuses>,
    console_status: Option<watch::Receiver<ConsoleStatus>>,
    phase2_seen: watch::Receiver<Option<Phase2Seen>>,
}

impl SpHandle {
    /// Start an actor for `name` at `target`, talking through `transport`;
    /// its message ids start at `first_id`.
    pub fn start(
        name: SpName,
        target: SpTarget,
        kind: Option<SpType>,
        transport: Arc<dyn Transport>,
        settings: SpSettings,
        phase2: Arc<Phase2Cache>,
        first_id: u32,
    ) -> Self {
        let (info_tx, info) = watch::channel(SpInfo {
            name: name.clone(),
            addr: None,
            reachable: false,
            identity: None,
            versions: FirmwareVersions::default(),
            srtt_us: None,
            rto_us: settings.rpc.per_attempt_timeout.as_micros() as u64,
            last_heard: None,
            state: None,
            link: None,
            operation: None,
        });
        let (statuses_tx, statuses) = watch::channel(SpStatuses::default());
        // Sleds have a host console; an SP of unknown kind is asked (and
        // says if it has none).
        let console = matches!(kind, None | Some(SpType::Sled)).then(|| {
            ConsoleSide::new(
                name.as_str(),
                settings.console.scrollback_bytes(),
                settings.console.attach,
            )
        });
        let console_status = console.as_ref().map(ConsoleSide::subscribe);
        let (phase2_tx, phase2_seen) = watch::channel(None);
        let actor = SpActor {
            name: name.clone(),
            target,
            transport,
            rtt: RttEstimator::new(&settings.rpc),
            settings,
            peer: None,
            next_id: first_id,
            chunk_buf: Vec::new(),
            requests: HashMap::new(),
            ready: VecDeque::new(),
            inflight: VecDeque::new(),
            stream: None,
            leases: 0,
            deadlines: Deadlines::default(),
            armed: None,
            pump_waker: None,
            pumping: false,
            discovering: false,
            link: None,
            link_index: None,
            parked: Vec::new(),
            state_waiters: Vec::new(),
            reachable: false,
            identified: false,
            last_heard: None,
            info: info_tx,
            statuses: statuses_tx,
            slot: Default::default(),
            created: Instant::now(),
            metrics: super::SpMetrics::new(name.as_str()),
            console,
            phase2,
            phase2_seen: phase2_tx,
            span: tracing::info_span!("sp", sp = %name),
        };
        Self {
            name,
            kind,
            addr: actor.start(),
            info,
            statuses,
            console_status,
            phase2_seen,
        }
    }

    pub fn name(&self) -> &SpName {
        &self.name
    }

    /// Its board's kind, where known.
    pub fn kind(&self) -> Option<SpType> {
        self.kind
    }

    /// What the actor knows about its SP now.
    pub fn info(&self) -> SpInfo {
        self.info.borrow().clone()
    }

    /// The SP's serial number, once it told it.
    pub fn serial(&self) -> Option<String> {
        self.info
            .borrow()
            .identity
            .as_ref()
            .map(|i| i.serial.clone())
    }

    /// The SP's identity, once it has answered discovery and told it;
    /// `None` if the actor stops first.
    pub async fn identified(&self) -> Option<SpIdentity> {
        let mut info = self.info.clone();
        let known = info
            .wait_for(|i| i.reachable && i.identity.is_some())
            .await
            .ok()?;
        known.identity.clone()
    }

    /// Read the SP's state now (after a command that changes it), and
    /// wait until it is published or the SP did not answer. Overlapping
    /// calls share one request.
    pub async fn refresh_state(&self) {
        if let Ok(rx) = self.addr.send(RefreshState).await {
            let _ = rx.await;
        }
    }

    /// Send `request` with the ordinary patience.
    pub async fn rpc(&self, request: MgsRequest) -> RpcResult {
        self.rpc_with(request, RpcKind::Normal).await
    }

    /// Send `request` with patience `kind`.
    pub async fn rpc_with(&self, request: MgsRequest, kind: RpcKind) -> RpcResult {
        let stopped = || RpcError::Stopped {
            sp: self.name.clone(),
        };
        let rx = self
            .addr
            .send(Rpc {
                request,
                trailing: Vec::new(),
                kind,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Set IPCC key `key` to `value` (an empty value clears it).
    pub async fn set_ipcc(&self, key: u8, value: Vec<u8>) -> Result<(), RpcError> {
        let stopped = || RpcError::Stopped {
            sp: self.name.clone(),
        };
        let request = MgsRequest::SetIpccKeyLookupValue { key };
        let rx = self
            .addr
            .send(Rpc {
                request,
                trailing: value,
                kind: RpcKind::Normal,
            })
            .await
            .map_err(|_| stopped())?;
        match rx.await.unwrap_or_else(|_| Err(stopped()))? {
            (SpResponse::SetIpccKeyLookupValueAck, _) => Ok(()),
            (response, _) => Err(RpcError::Unexpected {
                sp: self.name.clone(),
                request: crate::metrics::request_kind(&request),
                response: Box::new(response),
            }),
        }
    }

    /// The console's state, if the SP has one.
    pub fn console_status(&self) -> Option<ConsoleStatus> {
        self.console_status.as_ref().map(|s| s.borrow().clone())
    }

    /// Open a console session (`write`: the one that may type).
    pub async fn console_open(
        &self,
        write: bool,
        holder: String,
    ) -> Result<ConsoleSession, ConsoleError> {
        self.addr
            .send(ConsoleOpen { write, holder })
            .await
            .map_err(|_| ConsoleError::Stopped {
                sp: self.name.clone(),
            })?
    }

    /// End the typing session by force and detach the SP's console (it is
    /// attached again at once); the session ended, if one was.
    pub async fn console_detach(&self) -> Result<Option<ConsoleHolder>, ConsoleError> {
        let stopped = || ConsoleError::Stopped {
            sp: self.name.clone(),
        };
        let rx = self.addr.send(ConsoleDetach).await.map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The SP's most recent phase-2 image request.
    pub fn phase2_progress(&self) -> Option<Phase2Seen> {
        *self.phase2_seen.borrow()
    }

    /// Forget the SP's most recent phase-2 request.
    pub fn clear_phase2_progress(&self) {
        self.addr.do_send(ClearPhase2);
    }

    /// Send `request`; `pick` takes the answer it expects (with its
    /// trailing bytes) and `None` for any other, which is then
    /// [`RpcError::Unexpected`].
    pub async fn call<T>(
        &self,
        request: MgsRequest,
        pick: impl FnOnce(SpResponse, Vec<u8>) -> Option<T>,
    ) -> Result<T, RpcError> {
        let kind = crate::metrics::request_kind(&request);
        let (response, trailing) = self.rpc(request).await?;
        pick(response, trailing).ok_or_else(|| RpcError::Unexpected {
            sp: self.name.clone(),
            request: kind,
            response: Box::new(response),
        })
    }

    /// Send `request`, whose answer is the acknowledgement `ack`.
    pub async fn ack(&self, request: MgsRequest, ack: SpResponse) -> Result<(), RpcError> {
        self.call(request, |r, _| (r == ack).then_some(())).await
    }

    /// The SP's update status of `component`, asked now.
    pub async fn update_status(&self, component: SpComponent) -> Result<UpdateStatus, RpcError> {
        self.call(MgsRequest::UpdateStatus(component), |r, _| match r {
            SpResponse::UpdateStatus(s) => Some(s),
            _ => None,
        })
        .await
    }

    /// The SP's update status of `component` and its age: as the actor
    /// last saw it if that is at most `max_age` old, else asked now.
    pub async fn update_status_within(
        &self,
        component: SpComponent,
        max_age: Duration,
    ) -> Result<(SpUpdateState, Duration), RpcError> {
        if let Some(seen) = self.statuses.borrow().within(component, max_age) {
            return Ok(seen);
        }
        let status = self.update_status(component).await?;
        Ok((SpUpdateState::from(status), Duration::ZERO))
    }

    /// The SP's update status of every component, as last seen.
    pub fn statuses(&self) -> SpStatuses {
        self.statuses.borrow().clone()
    }

    /// The SP's identity, asked now.
    pub async fn sp_identity(&self) -> Result<SpIdentity, RpcError> {
        self.call(MgsRequest::SpState, |r, _| SpIdentity::from_state(&r))
            .await
    }

    /// Caboose value `key` of `component`'s `slot`; `None` if the caboose
    /// lacks the key (or the image has no caboose).
    pub async fn caboose(
        &self,
        component: SpComponent,
        slot: u16,
        key: [u8; 4],
    ) -> Result<Option<String>, RpcError> {
        let request = MgsRequest::ReadComponentCaboose {
            component,
            slot,
            key,
        };
        match self
            .call(request, |r, value| match r {
                SpResponse::CabooseValue => Some(value),
                _ => None,
            })
            .await
        {
            Ok(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
            Err(RpcError::Sp {
                error: SpError::NoSuchCabooseKey(_) | SpError::NoCaboose,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn power_state(&self) -> Result<PowerState, RpcError> {
        self.call(MgsRequest::GetPowerState, |r, _| match r {
            SpResponse::PowerState(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// Set the host power state; whether it changed.
    pub async fn set_power_state(&self, state: PowerState) -> Result<bool, RpcError> {
        self.call(MgsRequest::SetPowerState(state), |r, _| match r {
            SpResponse::PowerStateSet => Some(true),
            SpResponse::PowerStateUnchanged => Some(false),
            _ => None,
        })
        .await
    }

    pub async fn active_slot(&self, component: SpComponent) -> Result<u16, RpcError> {
        self.call(
            MgsRequest::ComponentGetActiveSlot(component),
            |r, _| match r {
                SpResponse::ComponentActiveSlot(s) => Some(s),
                _ => None,
            },
        )
        .await
    }

    pub async fn persistent_slot(&self, component: SpComponent) -> Result<u16, RpcError> {
        self.call(
            MgsRequest::ComponentGetPersistentSlot(component),
            |r, _| match r {
                SpResponse::ComponentPersistentSlot(s) => Some(s),
                _ => None,
            },
        )
        .await
    }

    /// Select `component`'s active `slot` (and make it the persistent
    /// choice with `persist`).
    pub async fn set_active_slot(
        &self,
        component: SpComponent,
        slot: u16,
        persist: bool,
    ) -> Result<(), RpcError> {
        let request = if persist {
            MgsRequest::ComponentSetAndPersistActiveSlot { component, slot }
        } else {
            MgsRequest::ComponentSetActiveSlot { component, slot }
        };
        self.call(request, |r, _| match r {
            SpResponse::ComponentSetActiveSlotAck
            | SpResponse::ComponentSetAndPersistActiveSlotAck => Some(()),
            _ => None,
        })
        .await
    }

    /// The SP's uptime (ms).
    pub async fn current_time(&self) -> Result<u64, RpcError> {
        self.call(MgsRequest::CurrentTime, |r, _| match r {
            SpResponse::CurrentTime(ms) => Some(ms),
            _ => None,
        })
        .await
    }

    /// Claim the SP's operation slot for `op` (see [`super::slot`]): an
    /// update is refused while anything holds it; a reset waits for a
    /// reset under way and is refused while an update holds it.
    pub async fn claim(&self, op: Operation) -> Result<OpClaim, SlotBusy> {
        let rx = self
            .addr
            .send(ClaimSlot(op))
            .await
            .map_err(|_| SlotBusy::Stopped)?;
        match rx.await {
            Ok(Ok(number)) => Ok(OpClaim {
                addr: self.addr.clone(),
                number,
            }),
            Ok(Err(held)) => Err(SlotBusy::Held(held)),
            Err(_) => Err(SlotBusy::Stopped),
        }
    }

    /// Start or resume an update's chunk stream.
    pub fn deliver(&self, deliver: Deliver) {
        self.addr.do_send(deliver);
    }

    /// End an update's chunk stream.
    pub fn stop_delivery(&self, id: UpdateId) {
        self.addr.do_send(StopDelivery(id));
    }

    pub fn stop(&self) {
        self.addr.do_send(Stop);
    }

    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}

impl SpActor {
    /// Publish who holds the operation slot.
    fn publish_operation(&mut self) {
        let held = self.slot.held();
        self.info.send_if_modified(|i| {
            let changed = i.operation != held;
            i.operation = held;
            changed
        });
    }
}

impl Handler<ClaimSlot> for SpActor {
    type Result = MessageResult<ClaimSlot>;
    fn handle(&mut self, msg: ClaimSlot, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match self.slot.claim(msg.0, tx) {
            Claim::Granted(number, tx) => {
                if tx.send(Ok(number)).is_err() {
                    // The claimant went away already.
                    self.release(number);
                }
            }
            Claim::Refused(held, tx) => {
                let _ = tx.send(Err(held));
            }
            Claim::Waiting => {}
        }
        self.publish_operation();
        MessageResult(rx)
    }
}

impl SpActor {
    /// End claim `number`, granting the slot to the next waiting reset
    /// that still waits.
    fn release(&mut self, number: u64) {
        let mut next = self.slot.release(number);
        while let Some((granted, tx)) = next {
            next = match tx.send(Ok(granted)) {
                Ok(()) => None,
                Err(_) => self.slot.release(granted),
            };
        }
        self.publish_operation();
    }
}

impl Handler<ReleaseSlot> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: ReleaseSlot, _: &mut Context<Self>) {
        self.release(msg.0);
    }
}

impl Handler<RefreshState> for SpActor {
    type Result = MessageResult<RefreshState>;
    fn handle(&mut self, _: RefreshState, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.reachable {
            self.state_waiters.push(tx);
            self.read_state();
        }
        MessageResult(rx)
    }
}

impl Handler<Rpc> for SpActor {
    type Result = MessageResult<Rpc>;
    fn handle(&mut self, msg: Rpc, _: &mut Context<Self>) -> Self::Result {
        let _in_span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        self.submit_with(msg.request, &msg.trailing, msg.kind, Reply::Client(tx));
        MessageResult(rx)
    }
}

impl Handler<Deliver> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        self.leases += 1;
        let lease = self.leases;
        match &mut self.stream {
            Some((stream, to)) if stream.id == msg.id => {
                stream.resume(msg.from, lease);
                *to = msg.to;
            }
            _ => {
                let stream = ChunkStream::new(msg.id, msg.component, msg.image, msg.from, lease)
                    .with_aux(msg.aux_len);
                self.stream = Some((stream, msg.to));
            }
        }
        self.fill();
    }
}

impl Handler<StopDelivery> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: StopDelivery, _: &mut Context<Self>) {
        if self.stream.as_ref().is_some_and(|(s, _)| s.id == msg.0) {
            self.stream = None;
        }
    }
}

impl Handler<Stop> for SpActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
