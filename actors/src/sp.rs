//! `SpActor`: one per SP. Owns the SP's socket, its message ids, every
//! request in flight to it and its identity:
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
//! - discovery, then the socket is connected to the SP so the kernel
//!   drops datagrams from anyone else; identity and firmware versions are
//!   published on a `watch` ([`SpHandle::info`]).
//!
//! Its context holds two items only: the mailbox and a pump that drains
//! the socket into a fixed buffer and runs the timer. The actor stops when
//! told to ([`SpHandle::stop`]); its socket closes with it.

use crate::deadlines::Deadlines;
use crate::delivery::{ChunkCounts, ChunkStream, Stall, StreamEvent};
use crate::image::Image;
use crate::rpc::{Attempts, Next, RpcError, RpcPolicy, RttEstimator};
use crate::transport::Transport;
use crate::update::DeliverySettings;
use crate::SpName;
use actix::prelude::*;
use gateway_messages::mgs::{decode_any, RequestDatagram};
use gateway_messages::{
    MessageKind, MgsRequest, SpComponent, SpError, SpResponse, UpdateChunk, UpdateId,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

/// Per-SP settings (the `[sp_defaults]` of the daemon's config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpSettings {
    /// Request timeouts and patience.
    pub rpc: RpcPolicy,
    /// Datagrams in flight to one SP at most: its receive queue (real SPs
    /// queue 3 and drop the rest).
    pub window: usize,
    /// Discover this often until the SP answers.
    #[serde(rename = "discovery_interval_ms", with = "crate::rpc::millis")]
    pub discovery_interval: Duration,
    /// Rediscover after this long without traffic (a failed probe marks
    /// the SP unreachable).
    #[serde(rename = "idle_rediscover_ms", with = "crate::rpc::millis")]
    pub idle_rediscover: Duration,
    /// Read the SP's state again this often while it is reachable: what
    /// `list` and `state` show is never older than this (plus a round
    /// trip), however many clients ask.
    #[serde(rename = "state_refresh_ms", with = "crate::rpc::millis")]
    pub state_refresh: Duration,
    /// Update delivery.
    pub delivery: DeliverySettings,
}

impl Default for SpSettings {
    fn default() -> Self {
        Self {
            rpc: RpcPolicy::default(),
            window: 3,
            discovery_interval: Duration::from_secs(1),
            idle_rediscover: Duration::from_secs(60),
            state_refresh: Duration::from_secs(10),
            delivery: DeliverySettings::default(),
        }
    }
}

/// Where an SP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpTarget {
    /// A known address (tests, demo, static setups).
    Addr(SocketAddr),
    /// Found by multicast discovery on an interface (a switch port). The
    /// interface is looked up at every discovery tick, so one that does
    /// not exist yet, or goes down, is reported and taken up again when it
    /// comes back.
    Interface(String),
}

/// The state of an SP's interface, from sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Up, with this index (the IPv6 scope id).
    Up(u32),
    /// Exists, but down.
    Down(u32),
    /// No such interface.
    Missing,
}

impl Link {
    fn of(name: &str) -> Link {
        let read = |what: &str| {
            if name.contains('/') {
                return None;
            }
            std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let Some(index) = read("ifindex").and_then(|i| i.parse().ok()) else {
            return Link::Missing;
        };
        // A veth whose peer is gone says "lowerlayerdown"; "unknown" is
        // what interfaces without carrier detection say when up.
        match read("operstate").as_deref() {
            Some("up" | "unknown") => Link::Up(index),
            _ => Link::Down(index),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Link::Up(_) => "up",
            Link::Down(_) => "down",
            Link::Missing => "missing",
        }
    }
}

/// What an SP says about itself (from `SpState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpIdentity {
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Board revision.
    pub revision: u32,
    /// Hubris archive id, hex.
    pub hubris_archive_id: String,
    /// Base MAC address.
    pub base_mac_address: String,
    /// Host power state when last read.
    pub power_state: String,
    /// The RoT's running slot (0 = A, 1 = B), when the SP reports it.
    pub rot_active_slot: Option<u16>,
}

/// Caboose `VERS` of the running images, read at discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirmwareVersions {
    /// The SP's running image.
    pub sp: Option<String>,
    /// The RoT's running image.
    pub rot: Option<String>,
}

/// What the SP actor publishes about its SP.
#[derive(Debug, Clone, Serialize)]
pub struct SpInfo {
    /// Name.
    pub name: SpName,
    /// Address, once known.
    pub addr: Option<SocketAddr>,
    /// Answered recently.
    pub reachable: bool,
    /// Identity, once learnt.
    pub identity: Option<SpIdentity>,
    /// Running firmware versions, once read.
    pub versions: FirmwareVersions,
    /// Smoothed round trip to the SP (µs), once measured, and the
    /// timeout a request's first attempt waits (µs); refreshed every
    /// discovery interval.
    pub srtt_us: Option<u64>,
    /// See `srtt_us`.
    pub rto_us: u64,
    /// When the SP last answered (refreshed every discovery interval).
    #[serde(skip)]
    pub last_heard: Option<Instant>,
    /// The SP's last `SpState` answer and when it came.
    #[serde(skip)]
    pub state: Option<(Instant, SpResponse)>,
    /// For an SP behind an interface: `up`, `down` or `missing`.
    pub link: Option<&'static str>,
}

impl SpInfo {
    /// Milliseconds since the SP last answered (to within the discovery
    /// interval).
    pub fn last_heard_ms_ago(&self) -> Option<u64> {
        self.last_heard.map(|t| t.elapsed().as_millis() as u64)
    }
}

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
    /// The request.
    pub request: MgsRequest,
    /// Patience.
    pub kind: RpcKind,
}

/// Stream `image` to the SP as update `id`'s chunks from offset `from`,
/// reporting to `to`. Replaces the update's previous lease (a resume after
/// a stall).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The update.
    pub id: UpdateId,
    /// Its component.
    pub component: SpComponent,
    /// The image (see [`crate::update::UpdatePlan::image`]).
    pub image: Arc<Image>,
    /// Its first bytes that are an aux-flash image.
    pub aux_len: u32,
    /// Where the SP said it is.
    pub from: u32,
    /// The update's actor.
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
    /// The update.
    pub id: UpdateId,
    /// Bytes proven received.
    pub acked: u32,
    /// Chunk counters since the previous report.
    pub counts: ChunkCounts,
    /// What happened.
    pub event: StreamEvent,
}

/// Who waits for a request's answer.
enum Reply {
    Client(oneshot::Sender<RpcResult>),
    Discover,
    State,
    Version(SpComponent),
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
    send_error: Option<String>,
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
}

/// One SP's actor. See the module docs.
pub struct SpActor {
    name: SpName,
    target: SpTarget,
    transport: Arc<dyn Transport>,
    settings: SpSettings,
    peer: Option<SocketAddr>,
    next_id: u32,
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
    created: Instant,
    metrics: crate::metrics::SpMetrics,
    /// Everything the actor logs is in this span (`sp` = its name).
    span: tracing::Span,
}

const DISCOVERY_MULTICAST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x1de, 2);

/// The SP answers datagrams whose header it cannot read with this id; we
/// never use it.
const UNREADABLE_ID: u32 = u32::MAX;

/// Datagrams handled per wake before the pump yields to other actors.
const RECV_BUDGET: usize = 64;

/// A typed handle on an SP actor.
#[derive(Clone)]
pub struct SpHandle {
    name: SpName,
    addr: Addr<SpActor>,
    info: watch::Receiver<SpInfo>,
}

impl SpHandle {
    /// Start an actor for `name` at `target`, talking through `transport`;
    /// its message ids start at `first_id`.
    pub fn start(
        name: SpName,
        target: SpTarget,
        transport: Arc<dyn Transport>,
        settings: SpSettings,
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
        });
        let actor = SpActor {
            name: name.clone(),
            target,
            transport,
            rtt: RttEstimator::new(&settings.rpc),
            settings,
            peer: None,
            next_id: first_id,
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
            created: Instant::now(),
            metrics: crate::metrics::SpMetrics::new(name.as_str()),
            span: tracing::info_span!("sp", sp = %name),
        };
        Self {
            name,
            addr: actor.start(),
            info,
        }
    }

    /// The SP's name.
    pub fn name(&self) -> &SpName {
        &self.name
    }

    /// What the actor knows about its SP now.
    pub fn info(&self) -> SpInfo {
        self.info.borrow().clone()
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
            .send(Rpc { request, kind })
            .await
            .map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Start or resume an update's chunk stream.
    pub fn deliver(&self, deliver: Deliver) {
        self.addr.do_send(deliver);
    }

    /// End an update's chunk stream.
    pub fn stop_delivery(&self, id: UpdateId) {
        self.addr.do_send(StopDelivery(id));
    }

    /// Stop the actor.
    pub fn stop(&self) {
        self.addr.do_send(Stop);
    }

    /// Whether the actor is still running.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}

impl SpActor {
    /// Where to send: the discovered SP, the configured address, or (for
    /// a `Discover` to an SP behind an interface) the multicast group.
    fn destination(&self, discover: bool) -> Option<SocketAddr> {
        if let Some(peer) = self.peer {
            return Some(peer);
        }
        match &self.target {
            SpTarget::Addr(a) => Some(*a),
            SpTarget::Interface(_) if discover => match self.link {
                Some(Link::Up(scope)) => Some(SocketAddr::V6(SocketAddrV6::new(
                    DISCOVERY_MULTICAST,
                    gateway_messages::SP_PORT,
                    0,
                    scope,
                ))),
                _ => None,
            },
            SpTarget::Interface(_) => None,
        }
    }

    /// Queue a request; it goes out as soon as the window has room.
    fn submit(&mut self, request: MgsRequest, kind: RpcKind, reply: Reply) {
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
        let id = next_message_id(&mut self.next_id);
        self.requests.insert(
            id,
            Request {
                datagram: RequestDatagram::new(id, request, &[]),
                attempts,
                kind: crate::metrics::request_kind(&request),
                discover,
                sample_rtt,
                reply,
                sent: None,
                send_error: None,
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
        req.send_error = sent.err().map(|e| {
            debug!(error = %e, "request send failed");
            e.to_string()
        });
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
        let data = &stream.image().data[offset as usize..end as usize];
        let id = next_message_id(&mut self.next_id);
        let datagram = RequestDatagram::new(id, MgsRequest::UpdateChunk(chunk), data);
        debug_assert_eq!(datagram.trailing_len, data.len());
        // A failed send is a lost datagram: the chunk times out and the
        // update asks the SP where it is.
        if let Err(e) = self.transport.send_to(datagram.as_bytes(), to) {
            debug!(error = %e, "chunk send failed");
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
        // SP-initiated requests (serial console, host phase 2) are not
        // answers and are not served here.
        let MessageKind::SpResponse(response) = kind else {
            return;
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
                    Some(message) => RpcError::Io { sp, message },
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
                    response: format!("{other:?}"),
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
            id: stream.id,
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
        crate::metrics::request_done(
            self.name.as_str(),
            req.kind,
            if ok { "ok" } else { "sp_error" },
            rtt,
        );
        if matches!(req.reply, Reply::Discover) {
            self.discovered(from);
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
                crate::metrics::request_done(self.name.as_str(), req.kind, outcome, None);
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
            Reply::Version(component) => {
                if let Ok((_, value)) = result {
                    let version = String::from_utf8_lossy(&value).into_owned();
                    crate::metrics::firmware(
                        self.name.as_str(),
                        component.as_str().unwrap_or("?"),
                        &version,
                    );
                    self.info.send_modify(|i| {
                        if component == SpComponent::ROT {
                            i.versions.rot = Some(version);
                        } else {
                            i.versions.sp = Some(version);
                        }
                    });
                }
            }
        }
    }

    /// The SP answered discovery from `from`: talk to it there only.
    fn discovered(&mut self, from: SocketAddr) {
        if self.peer == Some(from) {
            return;
        }
        info!(addr = %from, "SP discovered");
        // A fixed address: connect, so the kernel drops everyone else's
        // datagrams. Behind an interface the SP may come back at another
        // address (a new MAC after a reboot), so the socket stays free to
        // hear a discovery answer from anywhere on the link.
        if matches!(self.target, SpTarget::Addr(_)) {
            if let Err(e) = self.transport.connect(from) {
                warn!(addr = %from, error = %e, "could not connect the SP's socket");
            }
        }
        self.peer = Some(from);
        self.info.send_modify(|i| i.addr = Some(from));
    }

    /// Ask the SP's state, unless a discovery or state request is under
    /// way already.
    fn read_state(&mut self) {
        if !self.discovering {
            let _in_span = self.span.clone().entered();
            self.discovering = true;
            self.submit(MgsRequest::SpState, RpcKind::Normal, Reply::State);
        }
    }

    fn identified(&mut self, response: &SpResponse) {
        let Some(identity) = SpIdentity::from_state(response) else {
            return;
        };
        if !self.identified {
            self.identified = true;
            debug!(serial = %identity.serial, "SP identified");
            crate::metrics::discovered(self.name.as_str(), self.created.elapsed());
        }
        if let Some(old) = self
            .info
            .borrow()
            .identity
            .as_ref()
            .filter(|o| o.serial != identity.serial)
        {
            warn!(was = %old.serial, now = %identity.serial, addr = ?self.peer, "a different SP answers here now (serial changed); its identity is refreshed");
        }
        let rot_slot = identity.rot_active_slot.unwrap_or(0);
        // Versions are read again only when the firmware may have changed.
        let mut same_firmware = false;
        self.info.send_modify(|i| {
            same_firmware = i.identity.as_ref().is_some_and(|old| {
                old.hubris_archive_id == identity.hubris_archive_id
                    && old.rot_active_slot == identity.rot_active_slot
            }) && i.versions.sp.is_some()
                && i.versions.rot.is_some();
            i.identity = Some(identity);
            i.state = Some((Instant::now(), *response));
        });
        if same_firmware {
            return;
        }
        for (component, slot) in [(SpComponent::SP_ITSELF, 0), (SpComponent::ROT, rot_slot)] {
            let request = MgsRequest::ReadComponentCaboose {
                component,
                slot,
                key: *b"VERS",
            };
            self.submit(request, RpcKind::Normal, Reply::Version(component));
        }
    }

    fn set_reachable(&mut self, up: bool) {
        self.reachable = up;
        crate::metrics::reachable(self.name.as_str(), up);
        let last_heard = self.last_heard;
        self.info.send_modify(|i| {
            i.reachable = up;
            i.last_heard = last_heard;
        });
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
            }
        }
    }

    /// Whether a request with no address to go to should wait for the SP
    /// to be found again rather than fail: an SP behind an interface,
    /// known before.
    fn waits_for_peer(&self, discover: bool) -> bool {
        !discover && self.identified && matches!(self.target, SpTarget::Interface(_))
    }

    /// Hold request `id` until the SP is found again (see `parked`), and
    /// look for it.
    fn park(&mut self, id: u32, now: Instant) {
        let rpc = &self.settings.rpc;
        let deadline = now + rpc.per_attempt_timeout * rpc.max_attempts.max(1);
        self.parked.push((deadline, id));
        self.deadlines.insert(deadline, Wake::Parked);
        self.rediscover();
    }

    /// Look for the SP (behind its interface) now, unless already looking
    /// or the interface is not up.
    fn rediscover(&mut self) {
        if !self.discovering && matches!(self.link, Some(Link::Up(_))) {
            self.discovering = true;
            let probe = RpcKind::Within(self.settings.discovery_interval);
            self.submit(MgsRequest::Discover, probe, Reply::Discover);
        }
    }

    /// Fail the parked requests that waited a whole patience for their SP
    /// to be found.
    fn expire_parked(&mut self, now: Instant) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(deadline, _)| *deadline <= now);
        self.parked = waiting;
        for (_, id) in due {
            let sp = self.name.clone();
            self.finish(id, Err(RpcError::NotDiscovered { sp }));
        }
    }

    /// Look the SP's interface up again: report a change, and count an SP
    /// whose link is down or missing as unreachable.
    fn check_link(&mut self) {
        let SpTarget::Interface(name) = &self.target else {
            return;
        };
        let link = Link::of(name);
        if self.link == Some(link) {
            return;
        }
        match link {
            Link::Up(scope) => info!(interface = %name, scope, "interface up"),
            other => {
                warn!(interface = %name, state = other.as_str(), "interface not up: the SP cannot be reached through it")
            }
        }
        if let Link::Up(index) | Link::Down(index) = link {
            // The interface was made anew (its index changed): whatever is
            // behind it must be found again.
            if self
                .link_index
                .replace(index)
                .is_some_and(|old| old != index)
            {
                self.peer = None;
            }
        }
        self.link = Some(link);
        if self.peer.is_none() && self.identified {
            self.rediscover();
        }
        crate::metrics::link(self.name.as_str(), matches!(link, Link::Up(_)));
        self.info.send_modify(|i| i.link = Some(link.as_str()));
        if !matches!(link, Link::Up(_)) && self.reachable {
            self.set_reachable(false);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.deadlines
            .insert(now + self.settings.discovery_interval, Wake::Tick);
        self.check_link();
        let last_heard = self.last_heard;
        let srtt = self.rtt.srtt().map(|d| d.as_micros() as u64);
        let rto = self.rtt.rto().as_micros() as u64;
        self.info.send_if_modified(|i| {
            let changed = (i.last_heard, i.srtt_us, i.rto_us) != (last_heard, srtt, rto);
            i.last_heard = last_heard;
            i.srtt_us = srtt;
            i.rto_us = rto;
            changed
        });
        let idle = last_heard.is_none_or(|t| now - t >= self.settings.idle_rediscover);
        let lost = self.peer.is_none() && matches!(self.target, SpTarget::Interface(_));
        if !self.discovering && (!self.reachable || !self.identified || idle || lost) {
            self.discovering = true;
            let probe = RpcKind::Within(self.settings.discovery_interval);
            self.submit(MgsRequest::Discover, probe, Reply::Discover);
        } else if self.reachable {
            let stale = self.info.borrow().state.is_none_or(|(at, _)| {
                now.saturating_duration_since(at) >= self.settings.state_refresh
            });
            if stale {
                self.read_state();
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

fn ascii(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SpIdentity {
    /// Identity from any of the three SP state versions.
    pub fn from_state(response: &SpResponse) -> Option<SpIdentity> {
        let (archive, serial, model, revision, mac, power) = match response {
            SpResponse::SpStateV2(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            SpResponse::SpStateV3(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            SpResponse::SpState(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            _ => return None,
        };
        let rot_active_slot = match response {
            SpResponse::SpStateV2(s) => s.rot.as_ref().ok().map(|r| r.active as u16),
            _ => None,
        };
        Some(SpIdentity {
            rot_active_slot,
            serial: ascii(serial),
            model: ascii(model),
            revision,
            hubris_archive_id: hex(archive),
            base_mac_address: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            power_state: format!("{power:?}"),
        })
    }
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
        crate::metrics::reachable(self.name.as_str(), false);
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

/// Read the SP's state now: the receiver closes once the answer is
/// published, or the SP did not answer (at once if it is unreachable).
/// Questions that overlap share one `SpState`.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
struct RefreshState;

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
        self.submit(msg.request, msg.kind, Reply::Client(tx));
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
