//! `SpActor`: one per SP. Owns the SP's socket, its message ids, every
//! request in flight to it, its identity and its operation slot:
//!
//! - a window of at most `window` datagrams in flight (the SP queues only
//!   3 and drops the rest): requests go first, the chunks of an update's
//!   stream ([`ChunkStream`]) fill the free places;
//! - one deadline heap and one timer for every attempt, backoff and the
//!   discovery tick; attempts time out after the SP's measured round-trip
//!   timeout ([`RttEstimator`]), resends are identical datagrams;
//! - since the SP answers in order, an answer to one datagram proves every
//!   datagram sent before it has left the SP's queue: unanswered ones are
//!   resent at once (requests) or known to be covered (chunks);
//! - discovery ([`discovery`]), then the socket is connected to the SP so
//!   the kernel drops datagrams from anyone else; identity, firmware
//!   versions and the SP's update status per component are published on
//!   `watch`es ([`SpHandle::info`], [`SpHandle::update_status_within`]);
//! - the operation slot ([`slot`]): an update, a reset, or nothing,
//!   claimed atomically in this actor's mailbox ([`SpHandle::claim`]).
//!
//! Its context holds two items only: the mailbox and a pump that drains
//! the socket into a fixed buffer and runs the timer. The actor stops when
//! told to ([`SpHandle::stop`]); its socket closes with it.

mod console;
mod discovery;
mod handle;
mod info;
pub mod slot;
mod sp_metrics;

pub use console::{
    ClearPhase2, ConsoleDetach, ConsoleError, ConsoleHolder, ConsoleOpen, ConsoleSession,
    ConsoleStatus,
};
pub use handle::{
    Deliver, DeliveryReport, OpClaim, Rpc, RpcKind, RpcResult, SlotBusy, SpHandle, StopDelivery,
};
pub use info::{FirmwareVersions, SpIdentity, SpInfo, SpStatuses, SpTarget};

use crate::deadlines::Deadlines;
use crate::delivery::{ChunkStream, Stall, StreamEvent};
use crate::error::RpcError;
use crate::record::SpUpdateState;
use crate::rpc::{Attempts, Next, RttEstimator};
use crate::settings::SpSettings;
use crate::transport::Transport;
use crate::types::{Operation, SpName};
use actix::prelude::*;
use discovery::Link;
use gateway_messages::mgs::{decode_any, RequestDatagram};
use gateway_messages::{MessageKind, MgsRequest, SpComponent, SpError, SpResponse, UpdateChunk};
use sp_metrics::SpMetrics;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

/// Who waits for a request's answer.
enum Reply {
    Client(oneshot::Sender<RpcResult>),
    Discover,
    State,
    Version(SpComponent),
    /// Nobody waits: what matters is published as it is answered (an
    /// update status).
    Background,
    /// The console's own requests.
    Console(console::ConsoleReply),
}

struct Request {
    datagram: RequestDatagram,
    attempts: Attempts,
    /// Metric label.
    kind: &'static str,
    discover: bool,
    /// Whether its round trip measures the network (a prepare's includes
    /// an erase; a reset trigger's a reboot).
    sample_rtt: bool,
    reply: Reply,
    /// When the latest attempt went out.
    sent: Option<Instant>,
    /// Why the latest attempt could not even be sent (a port going down
    /// takes its address away: "network unreachable").
    send_error: Option<std::io::Error>,
    /// For an `UpdateStatus`: the component whose answer is published.
    status_of: Option<SpComponent>,
}

/// A datagram believed to be in the SP's receive queue, in send order,
/// and when to stop waiting for its answer. These few (at most the window)
/// deadlines are the in-flight part of the actor's deadline structure.
enum Sent {
    Request {
        id: u32,
        deadline: Instant,
    },
    Chunk {
        id: u32,
        lease: u64,
        offset: u32,
        end: u32,
        at: Instant,
        deadline: Instant,
    },
}

impl Sent {
    fn id(&self) -> u32 {
        match self {
            Sent::Request { id, .. } | Sent::Chunk { id, .. } => *id,
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Sent::Request { deadline, .. } | Sent::Chunk { deadline, .. } => *deadline,
        }
    }
}

/// The rest of the actor's deadline structure: what is not in flight.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// A `Busy` request's backoff is over.
    Backoff { id: u32 },
    /// Discovery and reachability bookkeeping.
    Tick,
    /// Parked requests may have waited long enough.
    Parked,
    /// The console's attach or keep-alive may be due.
    Console,
}

/// One SP's actor. See the module docs.
pub struct SpActor {
    name: SpName,
    target: SpTarget,
    transport: Arc<dyn Transport>,
    settings: SpSettings,
    peer: Option<SocketAddr>,
    next_id: u32,
    /// A chunk read from a file-backed image.
    chunk_buf: Vec<u8>,
    requests: HashMap<u32, Request>,
    /// Requests waiting for a place in the window, first first.
    ready: VecDeque<u32>,
    inflight: VecDeque<Sent>,
    stream: Option<(ChunkStream, Recipient<DeliveryReport>)>,
    /// Numbers every lease of every stream, so an old lease's answers are
    /// told apart.
    leases: u64,
    rtt: RttEstimator,
    deadlines: Deadlines<Wake>,
    /// The deadline the pump's timer is set to (it may be earlier than
    /// any real one: a timer firing early finds nothing due and is set
    /// again, which is cheaper than moving it on every ack), and how to
    /// wake the pump when an earlier deadline appears.
    armed: Option<Instant>,
    pump_waker: Option<Waker>,
    pumping: bool,
    /// A discovery or `SpState` request is under way.
    discovering: bool,
    /// The interface, for an SP behind one (as last looked up), and the
    /// index it had when last seen.
    link: Option<Link>,
    link_index: Option<u32>,
    /// Requests (by id) due to go out while the address of an SP behind
    /// an interface is unknown (it is looked for again after a silence or
    /// a new interface; a reboot gives it a new address): sent once it
    /// answers, failed at their deadline (a request's patience).
    parked: Vec<(Instant, u32)>,
    /// Told when the `SpState` under way is answered (or not).
    state_waiters: Vec<oneshot::Sender<()>>,
    /// Mirrors of what is published, read on every datagram.
    reachable: bool,
    identified: bool,
    last_heard: Option<Instant>,
    info: watch::Sender<SpInfo>,
    statuses: watch::Sender<SpStatuses>,
    slot: slot::OpSlot<oneshot::Sender<Result<u64, Operation>>>,
    created: Instant,
    metrics: SpMetrics,
    /// The host serial console (sleds, and SPs of unknown kind until they
    /// say they have none).
    console: Option<console::ConsoleSide>,
    phase2: Arc<crate::phase2::Phase2Cache>,
    /// The SP's most recent phase-2 request.
    phase2_seen: watch::Sender<Option<crate::phase2::Phase2Seen>>,
    /// Everything the actor logs is in this span (`sp` = its name).
    span: tracing::Span,
}

/// The SP answers datagrams whose header it cannot read with this id; we
/// never use it.
const UNREADABLE_ID: u32 = u32::MAX;

/// Datagrams handled per wake before the pump yields to other actors.
const RECV_BUDGET: usize = 64;

impl SpActor {
    /// Queue a request; it goes out as soon as the window has room.
    fn submit(&mut self, request: MgsRequest, kind: RpcKind, reply: Reply) {
        self.submit_with(request, &[], kind, reply)
    }

    /// Queue a request with trailing bytes (a console write, an IPCC value).
    fn submit_with(&mut self, request: MgsRequest, trailing: &[u8], kind: RpcKind, reply: Reply) {
        let discover = matches!(request, MgsRequest::Discover);
        if self.destination(discover).is_none() && !self.waits_for_peer(discover) {
            return self.answer(
                reply,
                Err(RpcError::NotDiscovered {
                    sp: self.name.clone(),
                }),
            );
        }
        let policy = self.settings.rpc;
        let attempts = match kind {
            RpcKind::Normal => Attempts::new(policy, false),
            RpcKind::Reset => Attempts::new(policy, true),
            RpcKind::Within(d) => Attempts::with_patience(policy, d),
        };
        let sample_rtt = !matches!(
            request,
            MgsRequest::SpUpdatePrepare(_)
                | MgsRequest::ComponentUpdatePrepare(_)
                | MgsRequest::ResetComponentTrigger { .. }
                | MgsRequest::ResetComponentTriggerWithWatchdog { .. }
                | MgsRequest::ResetTrigger
        );
        let status_of = match request {
            MgsRequest::UpdateStatus(c) => Some(c),
            _ => None,
        };
        self.forget_status(&request);
        let id = next_message_id(&mut self.next_id);
        self.requests.insert(
            id,
            Request {
                datagram: RequestDatagram::new(id, request, trailing),
                attempts,
                kind: crate::metrics::request_kind(&request),
                discover,
                sample_rtt,
                reply,
                sent: None,
                send_error: None,
                status_of,
            },
        );
        self.ready.push_back(id);
        self.fill();
    }

    /// Fill the window: requests first, then chunks.
    fn fill(&mut self) {
        let now = Instant::now();
        while self.inflight.len() < self.settings.window.max(1) {
            if let Some(id) = self.ready.pop_front() {
                self.send_request(id, now);
            } else if !self.send_chunk(now) {
                break;
            }
        }
        if !self.pumping {
            self.rearm();
        }
    }

    fn send_request(&mut self, id: u32, now: Instant) {
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        let Some(to) = self.destination(req.discover) else {
            if self.waits_for_peer(req.discover) {
                return self.park(id, now);
            }
            return self.finish(
                id,
                Err(RpcError::NotDiscovered {
                    sp: self.name.clone(),
                }),
            );
        };
        // A send that fails is a lost datagram: the attempt times out and
        // is resent within the request's patience (a port down for a
        // moment costs a resend, not the request).
        let sent = self.transport.send_to(req.datagram.as_bytes(), to);
        let req = self.requests.get_mut(&id).expect("present");
        req.send_error = sent
            .err()
            .inspect(|e| debug!(error = %e, "request send failed"));
        let wait = req.attempts.send(now, &self.rtt);
        if req.attempts.resent() {
            self.metrics.retry();
        }
        req.sent = Some(now);
        let deadline = now + wait;
        self.inflight.push_back(Sent::Request { id, deadline });
    }

    fn send_chunk(&mut self, now: Instant) -> bool {
        let Some(to) = self.destination(false) else {
            return false;
        };
        let Some((stream, _)) = self.stream.as_mut() else {
            return false;
        };
        let Some((lease, offset, end)) = stream.next_chunk() else {
            return false;
        };
        let (component, wire_offset) = stream.place(offset);
        let chunk = UpdateChunk {
            component,
            id: stream.id,
            offset: wire_offset,
        };
        let id = next_message_id(&mut self.next_id);
        match stream
            .image()
            .slice(offset as usize..end as usize, &mut self.chunk_buf)
        {
            Ok(data) => {
                let datagram = RequestDatagram::new(id, MgsRequest::UpdateChunk(chunk), data);
                debug_assert_eq!(datagram.trailing_len, data.len());
                // A failed send is a lost datagram: the chunk times out and
                // the update asks the SP where it is.
                if let Err(e) = self.transport.send_to(datagram.as_bytes(), to) {
                    debug!(error = %e, "chunk send failed");
                }
            }
            // Never expected (the daemon's own file); handled as a lost
            // datagram too.
            Err(e) => warn!(error = %e, offset, "cannot read the image's chunk"),
        }
        self.inflight.push_back(Sent::Chunk {
            id,
            lease,
            offset,
            end,
            at: now,
            deadline: now + self.chunk_timeout(),
        });
        true
    }

    /// How long the newest chunk may go unanswered before its stream
    /// stalls: as long as a request's second attempt waits. A stall costs a
    /// status round trip; waiting longer costs only when the last chunks
    /// of a window are all lost, which is rare, while an SP pausing a few
    /// round trips (a slow flash write) is not.
    fn chunk_timeout(&self) -> Duration {
        self.rtt.timeout_for_attempt(1)
    }

    /// The earliest deadline of all.
    fn next_deadline(&self) -> Option<Instant> {
        let inflight = self.inflight.iter().map(Sent::deadline).min();
        match (inflight, self.deadlines.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Wake the pump if its timer is set later than the earliest deadline.
    fn rearm(&mut self) {
        let Some(next) = self.next_deadline() else {
            return;
        };
        if self.armed.is_none_or(|a| next < a) {
            if let Some(w) = &self.pump_waker {
                w.wake_by_ref();
            }
        }
    }

    /// A request that changes a component's update status makes what was
    /// read of it stale.
    fn forget_status(&mut self, request: &MgsRequest) {
        let component = match *request {
            MgsRequest::SpUpdatePrepare(_) => SpComponent::SP_ITSELF,
            MgsRequest::ResetComponentTrigger { component } => {
                if component == SpComponent::SP_ITSELF {
                    self.console_reset();
                }
                SpComponent::SP_ITSELF
            }
            MgsRequest::ComponentUpdatePrepare(p) => p.component,
            MgsRequest::UpdateAbort { component, .. } => component,
            MgsRequest::ResetTrigger | MgsRequest::ResetComponentTriggerWithWatchdog { .. } => {
                // The whole SP reboots: every status goes, and so does
                // the console's attachment.
                self.statuses.send_modify(|s| s.0.clear());
                self.console_reset();
                return;
            }
            _ => return,
        };
        self.statuses
            .send_if_modified(|s| s.0.remove(&component).is_some());
    }

    fn accepts_from(&self, from: SocketAddr) -> bool {
        match (self.peer, &self.target) {
            (Some(peer), _) => from == peer,
            (None, SpTarget::Addr(a)) => from == *a,
            (None, SpTarget::Interface(_)) => true,
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if !self.accepts_from(from) {
            debug!(%from, "datagram from a stranger dropped");
            return;
        }
        let (kind, header, trailing) = match decode_any(data) {
            Ok(d) => d,
            Err(e) => {
                debug!(error = %e, "undecodable datagram dropped");
                return;
            }
        };
        let response = match kind {
            MessageKind::SpResponse(r) => r,
            MessageKind::SpRequest(r) => {
                self.heard(Instant::now());
                return self.on_sp_request(r, header.message_id, trailing, from);
            }
            _ => return,
        };
        let id = header.message_id;
        let now = Instant::now();
        let position = self.inflight.iter().position(|s| s.id() == id);
        if position.is_none() && !self.requests.contains_key(&id) {
            return; // stale or duplicate: already answered
        }
        self.heard(now);
        match position {
            Some(p) => {
                // The SP answers in order: whatever was sent before this
                // has left its queue, answered or lost.
                let earlier: Vec<Sent> = self.inflight.drain(..p).collect();
                for sent in earlier.into_iter().rev() {
                    self.presumed_lost(sent, now);
                }
                match self.inflight.pop_front().expect("position found") {
                    Sent::Chunk {
                        lease,
                        offset,
                        end,
                        at,
                        ..
                    } => self.chunk_answered(lease, offset, end, now - at, response),
                    Sent::Request { id, .. } => {
                        self.request_answered(id, response, trailing, from, now)
                    }
                }
            }
            // A request that left the window (presumed lost, or backing
            // off) still takes its answer.
            None => {
                self.ready.retain(|r| *r != id);
                self.request_answered(id, response, trailing, from, now);
            }
        }
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
        if !self.reachable {
            self.set_reachable(true);
        }
    }

    fn presumed_lost(&mut self, sent: Sent, now: Instant) {
        if let Sent::Request { id, .. } = sent {
            self.attempt_failed(id, now);
        }
        // A chunk: a later ack proves it, or a later refusal stalls the
        // stream, or the stream has moved on.
    }

    /// The current attempt of request `id` is lost: resend it first thing,
    /// or give up after the patience.
    fn attempt_failed(&mut self, id: u32, now: Instant) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        self.metrics.timeout();
        match req.attempts.timed_out(now) {
            Next::Resend => self.ready.push_front(id),
            Next::ResendAfter(_) | Next::GiveUp => {
                let attempts = req.attempts.sent;
                let sp = self.name.clone();
                let error = match req.send_error.take() {
                    Some(e) => RpcError::Io {
                        sp,
                        source: Arc::new(e),
                    },
                    None => RpcError::Timeout { sp, attempts },
                };
                self.finish(id, Err(error));
                if attempts > 1 && self.reachable {
                    warn!(attempts, "SP stopped answering");
                    self.set_reachable(false);
                }
            }
        }
    }

    fn chunk_answered(
        &mut self,
        lease: u64,
        offset: u32,
        end: u32,
        rtt: Duration,
        response: SpResponse,
    ) {
        self.rtt.sample(rtt);
        self.metrics
            .chunk(matches!(response, SpResponse::UpdateChunkAck), rtt);
        let Some((stream, _)) = self.stream.as_mut() else {
            return;
        };
        let event = match response {
            SpResponse::UpdateChunkAck => stream.on_ack(lease, end),
            SpResponse::Error(error) => stream.on_failure(lease, Stall::Refused { offset, error }),
            other => stream.on_failure(
                lease,
                Stall::Unexpected {
                    offset,
                    response: Box::new(other),
                },
            ),
        };
        if let Some(event) = event {
            self.report(event);
        }
    }

    fn report(&mut self, event: StreamEvent) {
        let Some((stream, to)) = self.stream.as_mut() else {
            return;
        };
        let report = DeliveryReport {
            acked: stream.acked(),
            counts: stream.take_counts(),
            event,
        };
        if to.try_send(report).is_err() {
            // The update's actor is gone: nobody wants the rest.
            self.stream = None;
        }
    }

    fn request_answered(
        &mut self,
        id: u32,
        response: SpResponse,
        trailing: &[u8],
        from: SocketAddr,
        now: Instant,
    ) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        if response == SpResponse::Error(SpError::Busy) {
            self.metrics.busy();
            match req.attempts.busy() {
                Next::ResendAfter(wait) => self.deadlines.insert(now + wait, Wake::Backoff { id }),
                _ => self.finish(
                    id,
                    Err(RpcError::Busy {
                        sp: self.name.clone(),
                    }),
                ),
            }
            return;
        }
        if let (Some(at), false, true) = (req.sent, req.attempts.resent(), req.sample_rtt) {
            self.rtt.sample(now - at);
        }
        let rtt = req.sent.map(|at| now - at);
        let ok = !matches!(response, SpResponse::Error(_));
        sp_metrics::request_done(
            self.name.as_str(),
            req.kind,
            if ok { "ok" } else { "sp_error" },
            rtt,
        );
        let (discover, status_of) = (matches!(req.reply, Reply::Discover), req.status_of);
        if discover {
            self.discovered(from);
        }
        if let (Some(component), SpResponse::UpdateStatus(status)) = (status_of, response) {
            self.statuses.send_modify(|s| {
                s.0.insert(component, (SpUpdateState::from(status), now));
            });
        }
        let result = match response {
            SpResponse::Error(error) => Err(RpcError::Sp {
                sp: self.name.clone(),
                error,
            }),
            other => Ok((other, trailing.to_vec())),
        };
        self.finish(id, result);
    }

    /// Request `id` is over: hand the result to whoever waits.
    fn finish(&mut self, id: u32, result: RpcResult) {
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            let outcome = match e {
                RpcError::Timeout { .. } => "timeout",
                RpcError::Busy { .. } => "busy",
                RpcError::Io { .. } => "io",
                _ => "",
            };
            if !outcome.is_empty() {
                sp_metrics::request_done(self.name.as_str(), req.kind, outcome, None);
            }
        }
        let lost = matches!(result, Err(RpcError::Timeout { .. } | RpcError::Io { .. }));
        self.answer(req.reply, result);
        // Silent through a whole request's patience behind an interface:
        // the SP may be back at another address. Look for it again.
        if lost
            && !req.discover
            && self.peer.is_some()
            && matches!(self.target, SpTarget::Interface(_))
        {
            info!("SP silent: discovering it again on its interface");
            self.peer = None;
            if !self.discovering {
                self.discovering = true;
                let probe = RpcKind::Within(self.settings.discovery_interval);
                self.submit(MgsRequest::Discover, probe, Reply::Discover);
            }
        }
    }

    fn answer(&mut self, reply: Reply, result: RpcResult) {
        match reply {
            Reply::Client(tx) => {
                let _ = tx.send(result);
            }
            Reply::Discover => match result {
                Ok(_) => {
                    // Found: what waited for it goes out first.
                    for (_, id) in std::mem::take(&mut self.parked).into_iter().rev() {
                        self.ready.push_front(id);
                    }
                    self.submit(MgsRequest::SpState, RpcKind::Normal, Reply::State)
                }
                Err(_) => {
                    self.discovering = false;
                    self.state_waiters.clear();

                    if self.reachable {
                        warn!("SP did not answer discovery");
                        self.set_reachable(false);
                    }
                }
            },
            Reply::State => {
                self.discovering = false;
                if let Ok((response, _)) = result {
                    self.identified(&response);
                }
                // Dropped senders wake the waiters: answered or not, they
                // read what is published now.
                self.state_waiters.clear();
            }
            Reply::Background => {}
            Reply::Console(r) => self.console_answered(r, result),
            Reply::Version(component) => {
                if let Ok((_, value)) = result {
                    let version = String::from_utf8_lossy(&value).into_owned();
                    self.info.send_modify(|i| {
                        let known = if component == SpComponent::ROT {
                            &mut i.versions.rot
                        } else {
                            &mut i.versions.sp
                        };
                        let old = known.replace(version.clone());
                        sp_metrics::firmware(
                            self.name.as_str(),
                            component.as_str().unwrap_or("?"),
                            old.as_deref(),
                            &version,
                        );
                    });
                }
            }
        }
    }

    /// Deadlines due by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(p) = self.inflight.iter().position(|s| s.deadline() <= now) {
            // A chunk with datagrams sent after it tells nothing by its
            // silence: their answers will prove it taken or show it lost.
            // Only the newest datagram's silence means the SP went quiet.
            if p + 1 < self.inflight.len() {
                let wait = self.chunk_timeout();
                if let Some(Sent::Chunk { deadline, .. }) = self.inflight.get_mut(p) {
                    *deadline = now + wait;
                    continue;
                }
            }
            match self.inflight.remove(p) {
                Some(Sent::Request { id, .. }) => self.attempt_failed(id, now),
                Some(Sent::Chunk { lease, offset, .. }) => {
                    let stall = Stall::Timeout { offset };
                    let event = self
                        .stream
                        .as_mut()
                        .and_then(|(s, _)| s.on_failure(lease, stall));
                    if let Some(event) = event {
                        self.report(event);
                    }
                }
                None => {}
            }
        }
        while let Some(wake) = self.deadlines.pop_due(now) {
            match wake {
                Wake::Backoff { id } => {
                    // (A duplicated `Busy` answer can leave two wakes.)
                    if self.requests.contains_key(&id) && !self.ready.contains(&id) {
                        self.ready.push_front(id);
                    }
                }
                Wake::Tick => self.tick(now),
                Wake::Parked => self.expire_parked(now),
                Wake::Console => self.console_tick(now),
            }
        }
    }
}

fn next_message_id(next: &mut u32) -> u32 {
    let id = *next;
    *next = next.wrapping_add(1);
    if *next == UNREADABLE_ID {
        *next = 0;
    }
    id
}

/// Drains the socket and runs the timer: the actor's only context item
/// besides its mailbox.
struct Pump {
    transport: Arc<dyn Transport>,
    buf: Box<[u8; 2048]>,
    sleep: Pin<Box<Sleep>>,
}

impl ActorFuture<SpActor> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut SpActor,
        _: &mut Context<SpActor>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        let span = act.span.clone();
        let _in_span = span.enter();
        if !act
            .pump_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            act.pump_waker = Some(cx.waker().clone());
        }
        act.pumping = true;
        let mut budget = RECV_BUDGET;
        loop {
            match this.transport.poll_recv(cx, &mut this.buf[..]) {
                Poll::Ready(Ok((n, from))) => act.on_datagram(&this.buf[..n], from),
                // An ICMP error about an earlier send: that datagram is lost.
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Poll::Ready(Err(e)) => {
                    debug!(error = %e, "receive failed");
                    break;
                }
                Poll::Pending => break,
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                break;
            }
        }
        loop {
            act.expire(Instant::now());
            act.fill();
            let Some(next) = act.next_deadline() else {
                break;
            };
            if act.armed.is_none_or(|a| next < a) {
                this.sleep.as_mut().reset(next);
                act.armed = Some(next);
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                break;
            }
            // Fired: whatever is due now is handled on the next turn.
            act.armed = None;
        }
        act.pumping = false;
        Poll::Pending
    }
}

impl Actor for SpActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        sp_metrics::reachable(self.name.as_str(), false);
        let now = Instant::now();
        ctx.spawn(Pump {
            transport: self.transport.clone(),
            buf: Box::new([0; 2048]),
            sleep: Box::pin(tokio::time::sleep_until(now)),
        });
        self.deadlines.insert(now, Wake::Tick);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _in_span = self.span.clone().entered();
        debug!("SP actor stopped");
        let ids: Vec<u32> = self.requests.keys().copied().collect();
        for id in ids {
            let sp = self.name.clone();
            self.finish(id, Err(RpcError::Stopped { sp }));
        }
        self.stream = None;
    }
}
