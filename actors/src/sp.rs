//! `SpActor`: one per SP. Owns the SP's socket, its message ids and the
//! requests in flight (timeouts, identical resends, `Busy` backoff),
//! discovery and reachability, and the SP's update bookkeeping: it
//! prepares updates, spawns the [`UpdateDriver`] that delivers them, and
//! keeps every update's [`UpdateRecord`].

use crate::image::Image;
use crate::rpc::{Attempts, Next, RpcError, RpcPolicy};
use crate::transport::{Datagram, Transport};
use crate::update_driver::{DriverSettings, StopDriver, UpdateDriver};
use crate::update_state::{SpUpdateState, UpdateRecord};
use crate::{SpName, UpdateError, UpdateEvent};
use actix::prelude::*;
use gateway_messages::mgs::{decode_any, RequestDatagram};
use gateway_messages::{
    ComponentUpdatePrepare, MessageKind, MgsRequest, SpComponent, SpError, SpResponse,
    SpUpdatePrepare, UpdateId,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, info, warn};

/// Per-SP settings (the `[sp_defaults]` of the daemon's config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpSettings {
    /// Request timeouts and attempts.
    pub rpc: RpcPolicy,
    /// Discover this often until the SP answers.
    #[serde(rename = "discovery_interval_ms", with = "crate::rpc::millis")]
    pub discovery_interval: Duration,
    /// Rediscover after this long without traffic (a failed probe marks
    /// the SP unreachable).
    #[serde(rename = "idle_rediscover_ms", with = "crate::rpc::millis")]
    pub idle_rediscover: Duration,
    /// Update delivery.
    pub delivery: DriverSettings,
}

impl Default for SpSettings {
    fn default() -> Self {
        Self {
            rpc: RpcPolicy::default(),
            discovery_interval: Duration::from_secs(1),
            idle_rediscover: Duration::from_secs(60),
            delivery: DriverSettings::default(),
        }
    }
}

/// Where an SP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpTarget {
    /// A known address (tests, demo, static setups).
    Addr(SocketAddr),
    /// Found by multicast discovery on an interface (a switch port).
    Interface {
        /// Interface name.
        name: String,
        /// Its IPv6 scope id.
        scope_id: u32,
    },
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

/// Snapshot of one SP for listings.
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
    /// Milliseconds since the SP last answered.
    pub last_heard_ms_ago: Option<u64>,
    /// The update being delivered, if any.
    pub active_update: Option<UpdateRecord>,
}

/// How hard to try a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    /// The SP's ordinary retry budget.
    Normal,
    /// The long budget of resets.
    Reset,
    /// One attempt with this timeout (pipelined chunks, discovery probes).
    Once(Duration),
}

/// Send `request` (with `trailing`) and wait for the SP's answer.
#[derive(Debug, Message)]
#[rtype(result = "Result<(SpResponse, Vec<u8>), RpcError>")]
pub struct Rpc {
    /// The request.
    pub request: MgsRequest,
    /// Trailing data (update chunks).
    pub trailing: Vec<u8>,
    /// Retry budget.
    pub kind: RpcKind,
}

impl Rpc {
    /// An ordinary request without trailing data.
    pub fn new(request: MgsRequest) -> Self {
        Self {
            request,
            trailing: Vec::new(),
            kind: RpcKind::Normal,
        }
    }
}

/// Ask for an [`SpInfo`].
#[derive(Debug, Message)]
#[rtype(result = "SpInfo")]
pub struct GetInfo;

/// Prepare an update on the SP and start delivering it.
#[derive(Debug, Message)]
#[rtype(result = "Result<UpdateRecord, UpdateError>")]
pub struct StartUpdate {
    /// Component.
    pub component: SpComponent,
    /// Slot.
    pub slot: u16,
    /// Client-chosen id.
    pub id: UpdateId,
    /// The image (shared).
    pub image: Arc<Image>,
}

/// The SP's status of a component merged with the daemon's delivery view.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    /// SP name.
    pub sp: SpName,
    /// Component.
    pub component: String,
    /// What the SP itself reports (the source of truth).
    pub sp_status: SpUpdateState,
    /// The daemon's record of the most recent update it delivered to this
    /// component, if any.
    pub delivery: Option<UpdateRecord>,
}

/// Query an update's status.
#[derive(Debug, Message)]
#[rtype(result = "Result<UpdateView, RpcError>")]
pub struct QueryUpdate {
    /// Component.
    pub component: SpComponent,
}

/// Abort an update (the SP decides).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), UpdateError>")]
pub struct AbortUpdate {
    /// Component.
    pub component: SpComponent,
    /// Update id.
    pub id: UpdateId,
}

/// The daemon's record of an update by id.
#[derive(Debug, Message)]
#[rtype(result = "Option<UpdateRecord>")]
pub struct GetRecord(pub UpdateId);

/// From the driver: its record changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DriverReport(pub UpdateRecord);

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Incoming(Datagram);

struct Pending {
    datagram: RequestDatagram,
    attempts: Attempts,
    timeout: Duration,
    /// Bumped on every (re)send; a timer only fires for its own send.
    send_no: u32,
    /// When the current attempt went out.
    sent_at: Instant,
    /// Metric label.
    kind: &'static str,
    reply: oneshot::Sender<Result<(SpResponse, Vec<u8>), RpcError>>,
}

struct Active {
    id: UpdateId,
    component: SpComponent,
    slot: u16,
    image: Arc<Image>,
    driver: Addr<UpdateDriver>,
}

/// One SP's actor. See the module docs.
pub struct SpActor {
    name: SpName,
    target: SpTarget,
    sp_addr: Option<SocketAddr>,
    transport: Arc<dyn Transport>,
    settings: SpSettings,
    next_id: u32,
    pending: HashMap<u32, Pending>,
    reachable: bool,
    discovering: bool,
    identity: Option<SpIdentity>,
    last_heard: Option<Instant>,
    records: HashMap<UpdateId, UpdateRecord>,
    latest: HashMap<SpComponent, UpdateId>,
    active: Option<Active>,
    starting: Option<UpdateId>,
    events: broadcast::Sender<UpdateEvent>,
    recv_task: Option<tokio::task::JoinHandle<()>>,
    created: Instant,
}

const DISCOVERY_MULTICAST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x1de, 2);

impl SpActor {
    /// A new actor for `name` at `target`, talking through `transport`.
    pub fn new(
        name: SpName,
        target: SpTarget,
        transport: Arc<dyn Transport>,
        settings: SpSettings,
        events: broadcast::Sender<UpdateEvent>,
    ) -> Self {
        let sp_addr = match &target {
            SpTarget::Addr(a) => Some(*a),
            SpTarget::Interface { .. } => None,
        };
        Self {
            name,
            target,
            sp_addr,
            transport,
            settings,
            next_id: 1,
            pending: HashMap::new(),
            reachable: false,
            discovering: false,
            identity: None,
            last_heard: None,
            records: HashMap::new(),
            latest: HashMap::new(),
            active: None,
            starting: None,
            events,
            recv_task: None,
            created: Instant::now(),
        }
    }

    fn destination(&self) -> Option<SocketAddr> {
        self.sp_addr.or(match &self.target {
            SpTarget::Interface { scope_id, .. } => Some(SocketAddr::V6(SocketAddrV6::new(
                DISCOVERY_MULTICAST,
                gateway_messages::SP_PORT,
                0,
                *scope_id,
            ))),
            SpTarget::Addr(_) => None,
        })
    }

    /// Start a request; the receiver gets the outcome.
    fn begin(
        &mut self,
        rpc: Rpc,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<(SpResponse, Vec<u8>), RpcError>> {
        let (tx, rx) = oneshot::channel();
        let discover = matches!(rpc.request, MgsRequest::Discover);
        if self.sp_addr.is_none() && !discover {
            let _ = tx.send(Err(RpcError::NotDiscovered {
                sp: self.name.clone(),
            }));
            return rx;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let (attempts, timeout) = match rpc.kind {
            RpcKind::Normal => (
                Attempts::new(self.settings.rpc, false),
                self.settings.rpc.per_attempt_timeout,
            ),
            RpcKind::Reset => (
                Attempts::new(self.settings.rpc, true),
                self.settings.rpc.per_attempt_timeout,
            ),
            RpcKind::Once(t) => {
                let once = RpcPolicy {
                    max_attempts: 1,
                    ..self.settings.rpc
                };
                (Attempts::new(once, false), t)
            }
        };
        let datagram = RequestDatagram::new(id, rpc.request, &rpc.trailing);
        let kind = crate::metrics::request_kind(&rpc.request);
        let sent_at = Instant::now();
        let pending = Pending {
            datagram,
            attempts,
            timeout,
            send_no: 0,
            sent_at,
            kind,
            reply: tx,
        };
        self.pending.insert(id, pending);
        self.transmit(id, ctx);
        rx
    }

    fn transmit(&mut self, id: u32, ctx: &mut Context<Self>) {
        let Some(to) = self.destination() else { return };
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.send_no += 1;
        p.sent_at = Instant::now();
        let (send_no, timeout) = (p.send_no, p.timeout);
        if let Err(e) = self.transport.send_to(p.datagram.as_bytes(), to) {
            let p = self.pending.remove(&id).expect("present");
            let _ = p.reply.send(Err(RpcError::Io {
                sp: self.name.clone(),
                message: e.to_string(),
            }));
            return;
        }
        ctx.run_later(timeout, move |act, ctx| act.timed_out(id, send_no, ctx));
    }

    fn timed_out(&mut self, id: u32, send_no: u32, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.send_no != send_no {
            return;
        }
        match p.attempts.timed_out() {
            Next::Resend => {
                crate::metrics::attempt_timed_out(self.name.as_str(), true);
                self.transmit(id, ctx)
            }
            Next::ResendAfter(_) | Next::GiveUp => {
                crate::metrics::attempt_timed_out(self.name.as_str(), false);
                let p = self.pending.remove(&id).expect("present");
                crate::metrics::request_done(self.name.as_str(), p.kind, "timeout", None);
                let attempts = p.attempts.sent;
                let _ = p.reply.send(Err(RpcError::Timeout {
                    sp: self.name.clone(),
                    attempts,
                }));
                if attempts > 1 && self.reachable {
                    warn!(sp = %self.name, attempts, "SP stopped answering");
                    self.set_reachable(false);
                }
            }
        }
    }

    fn incoming(&mut self, (data, from): Datagram, ctx: &mut Context<Self>) {
        if self.sp_addr.is_some_and(|a| a != from) {
            debug!(sp = %self.name, %from, "datagram from a stranger dropped");
            return;
        }
        let (kind, header, trailing) = match decode_any(&data) {
            Ok(d) => d,
            Err(e) => {
                debug!(sp = %self.name, error = %e, "undecodable datagram dropped");
                return;
            }
        };
        let MessageKind::SpResponse(response) = kind else {
            return;
        };
        let id = header.message_id;
        if !self.pending.contains_key(&id) {
            // Stale or duplicate: its request was already answered.
            return;
        }
        if self.sp_addr.is_none() {
            if !matches!(response, SpResponse::Discover(_)) {
                return;
            }
            info!(sp = %self.name, addr = %from, "SP discovered");
            self.sp_addr = Some(from);
        }
        self.last_heard = Some(Instant::now());
        self.set_reachable(true);
        if response == SpResponse::Error(SpError::Busy) {
            crate::metrics::busy(self.name.as_str());
            let p = self.pending.get_mut(&id).expect("present");
            match p.attempts.busy() {
                Next::ResendAfter(wait) => {
                    p.send_no += 1; // disarm the running timer
                    let send_no = p.send_no;
                    ctx.run_later(wait, move |act, ctx| {
                        if act.pending.get(&id).is_some_and(|p| p.send_no == send_no) {
                            act.transmit(id, ctx);
                        }
                    });
                }
                _ => {
                    let p = self.pending.remove(&id).expect("present");
                    crate::metrics::request_done(self.name.as_str(), p.kind, "busy", None);
                    let _ = p.reply.send(Err(RpcError::Busy {
                        sp: self.name.clone(),
                    }));
                }
            }
            return;
        }
        let p = self.pending.remove(&id).expect("present");
        let outcome = if matches!(response, SpResponse::Error(_)) {
            "sp_error"
        } else {
            "ok"
        };
        crate::metrics::request_done(
            self.name.as_str(),
            p.kind,
            outcome,
            Some(p.sent_at.elapsed()),
        );
        let result = match response {
            SpResponse::Error(error) => Err(RpcError::Sp {
                sp: self.name.clone(),
                error,
            }),
            other => Ok((other, trailing.to_vec())),
        };
        let _ = p.reply.send(result);
    }

    /// Discovery and identity, then periodic checks.
    fn discover(&mut self, ctx: &mut Context<Self>) {
        if self.discovering {
            return;
        }
        self.discovering = true;
        let probe = Rpc {
            request: MgsRequest::Discover,
            trailing: Vec::new(),
            kind: RpcKind::Once(self.settings.discovery_interval),
        };
        let rx = self.begin(probe, ctx);
        let fetch = async move {
            rx.await
                .unwrap_or_else(|_| Err(RpcError::Stopped { sp: "?".into() }))
        };
        fetch
            .into_actor(self)
            .then(|res, act, ctx| {
                let state = res
                    .is_ok()
                    .then(|| act.begin(Rpc::new(MgsRequest::SpState), ctx));
                async move {
                    match state {
                        Some(rx) => rx.await.ok(),
                        None => None,
                    }
                }
                .into_actor(act)
            })
            .map(|state, act, ctx| {
                act.discovering = false;
                if state.is_none() && act.reachable {
                    warn!(sp = %act.name, "SP did not answer discovery");
                    act.set_reachable(false);
                }
                if let Some(Ok((response, _))) = state {
                    let first = act.identity.is_none();
                    act.identity = identity_of(&response);
                    if let (true, Some(id)) = (first, &act.identity) {
                        debug!(sp = %act.name, serial = %id.serial, "SP identified");
                        crate::metrics::discovered(act.name.as_str(), act.created.elapsed());
                    }
                    act.read_versions(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Firmware versions (caboose `VERS`) of the running SP and RoT
    /// images, published as `mgsd_sp_firmware_info`.
    fn read_versions(&mut self, ctx: &mut Context<Self>) {
        let rot_slot = self
            .identity
            .as_ref()
            .and_then(|i| i.rot_active_slot)
            .unwrap_or(0);
        for (component, slot) in [(SpComponent::SP_ITSELF, 0), (SpComponent::ROT, rot_slot)] {
            let key = *b"VERS";
            let rx = self.begin(
                Rpc::new(MgsRequest::ReadComponentCaboose {
                    component,
                    slot,
                    key,
                }),
                ctx,
            );
            let sp = self.name.clone();
            actix::spawn(async move {
                if let Ok(Ok((_, value))) = rx.await {
                    let version = String::from_utf8_lossy(&value).into_owned();
                    crate::metrics::firmware(
                        sp.as_str(),
                        component.as_str().unwrap_or("?"),
                        &version,
                    );
                }
            });
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let idle = self
            .last_heard
            .is_none_or(|t| t.elapsed() >= self.settings.idle_rediscover);
        if !self.reachable || self.identity.is_none() || idle {
            self.discover(ctx);
        }
    }

    fn spawn_driver(
        &mut self,
        id: UpdateId,
        component: SpComponent,
        slot: u16,
        image: Arc<Image>,
        ctx: &mut Context<Self>,
    ) {
        let record = self
            .records
            .get(&id)
            .cloned()
            .expect("record exists before its driver");
        let driver = UpdateDriver::new(
            ctx.address(),
            self.name.clone(),
            component,
            slot,
            id,
            image.clone(),
            self.settings.delivery.clone(),
            record,
        )
        .start();
        self.active = Some(Active {
            id,
            component,
            slot,
            image,
            driver,
        });
    }

    fn set_reachable(&mut self, up: bool) {
        if self.reachable != up {
            crate::metrics::reachable(self.name.as_str(), up);
        }
        self.reachable = up;
    }

    fn store(&mut self, record: UpdateRecord) {
        let id = UpdateId::from(record.id);
        crate::metrics::update_record(&record, self.records.get(&id).map(|r| r.phase));
        if let Ok(component) = SpComponent::try_from(record.component.as_str()) {
            self.latest.insert(component, id);
        }
        if record.phase.is_terminal() && self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        let _ = self.events.send(UpdateEvent {
            record: record.clone(),
        });
        self.records.insert(id, record);
    }
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
        identity_of(response)
    }
}

fn identity_of(response: &SpResponse) -> Option<SpIdentity> {
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

impl Actor for SpActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let transport = self.transport.clone();
        let me = ctx.address();
        self.recv_task = Some(tokio::spawn(async move {
            loop {
                match transport.recv().await {
                    Ok(d) => {
                        if me.try_send(Incoming(d)).is_err() && !me.connected() {
                            return;
                        }
                    }
                    // ICMP errors and the like: keep listening.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
        crate::metrics::reachable(self.name.as_str(), false);
        self.discover(ctx);
        let every = self.settings.discovery_interval;
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(t) = self.recv_task.take() {
            t.abort();
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(RpcError::Stopped {
                sp: self.name.clone(),
            }));
        }
    }
}

impl Handler<Incoming> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        self.incoming(msg.0, ctx);
    }
}

impl Handler<Rpc> for SpActor {
    type Result = ResponseFuture<Result<(SpResponse, Vec<u8>), RpcError>>;
    fn handle(&mut self, msg: Rpc, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.begin(msg, ctx);
        let sp = self.name.clone();
        Box::pin(async move { rx.await.unwrap_or(Err(RpcError::Stopped { sp })) })
    }
}

impl Handler<GetInfo> for SpActor {
    type Result = MessageResult<GetInfo>;
    fn handle(&mut self, _: GetInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SpInfo {
            name: self.name.clone(),
            addr: self.sp_addr,
            reachable: self.reachable,
            identity: self.identity.clone(),
            last_heard_ms_ago: self.last_heard.map(|t| t.elapsed().as_millis() as u64),
            active_update: self
                .active
                .as_ref()
                .and_then(|a| self.records.get(&a.id).cloned()),
        })
    }
}

impl Handler<GetRecord> for SpActor {
    type Result = MessageResult<GetRecord>;
    fn handle(&mut self, msg: GetRecord, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.records.get(&msg.0).cloned())
    }
}

impl Handler<DriverReport> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: DriverReport, _: &mut Context<Self>) {
        // An aborted update's late reports do not resurrect it.
        let id = UpdateId::from(msg.0.id);
        if self.records.get(&id).is_some_and(|r| r.phase.is_terminal()) {
            return;
        }
        self.store(msg.0);
    }
}

impl Handler<StartUpdate> for SpActor {
    type Result = ResponseActFuture<Self, Result<UpdateRecord, UpdateError>>;

    fn handle(&mut self, msg: StartUpdate, ctx: &mut Context<Self>) -> Self::Result {
        let sp = self.name.clone();
        let hash = msg.image.hash.to_string();
        if let Some(existing) = self.records.get(&msg.id) {
            let same = existing.image_sha256 == hash
                && existing.component == msg.component.to_string()
                && existing.slot == msg.slot;
            let result = if same {
                Ok(existing.clone())
            } else {
                Err(UpdateError::Conflict {
                    id: msg.id.as_uuid(),
                    detail: format!(
                        "it already names an update of {} slot {} with image {}",
                        existing.component, existing.slot, existing.image_sha256
                    ),
                })
            };
            return Box::pin(actix::fut::ready(result));
        }
        let running = self
            .active
            .as_ref()
            .map(|a| (a.id, a.component))
            .or(self.starting.map(|id| (id, msg.component)));
        if let Some((id, component)) = running {
            let err = UpdateError::AlreadyRunning {
                sp,
                component: component.to_string(),
                id: id.as_uuid(),
            };
            return Box::pin(actix::fut::ready(Err(err)));
        }
        let Ok(total_size) = u32::try_from(msg.image.len()) else {
            return Box::pin(actix::fut::ready(Err(UpdateError::BadImage(
                "image is larger than 4 GiB".into(),
            ))));
        };
        if total_size == 0 {
            return Box::pin(actix::fut::ready(Err(UpdateError::BadImage(
                "image is empty".into(),
            ))));
        }
        let request = if msg.component == SpComponent::SP_ITSELF {
            MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
                id: msg.id,
                aux_flash_size: 0,
                aux_flash_chck: [0; 32],
                sp_image_size: total_size,
            })
        } else {
            MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
                component: msg.component,
                id: msg.id,
                slot: msg.slot,
                total_size,
            })
        };
        self.starting = Some(msg.id);
        let rx = self.begin(Rpc::new(request), ctx);
        let sp2 = sp.clone();
        let wait = async move { rx.await.unwrap_or(Err(RpcError::Stopped { sp: sp2 })) };
        Box::pin(wait.into_actor(self).map(move |res, act, ctx| {
            act.starting = None;
            match res {
                Ok((SpResponse::ComponentUpdatePrepareAck | SpResponse::SpUpdatePrepareAck, _)) => {
                    let record = UpdateRecord::new(
                        msg.id.as_uuid(),
                        sp,
                        msg.component.to_string(),
                        msg.slot,
                        hash,
                        u64::from(total_size),
                        Instant::now(),
                    );
                    info!(sp = %act.name, update = %msg.id, component = %msg.component, bytes = total_size, "update prepared");
                    act.store(record.clone());
                    act.spawn_driver(msg.id, msg.component, msg.slot, msg.image, ctx);
                    Ok(record)
                }
                Ok((other, _)) => Err(UpdateError::Rpc(RpcError::Unexpected { sp, response: format!("{other:?}") })),
                Err(e) => Err(UpdateError::Prepare(e)),
            }
        }))
    }
}

impl Handler<QueryUpdate> for SpActor {
    type Result = ResponseActFuture<Self, Result<UpdateView, RpcError>>;

    fn handle(&mut self, msg: QueryUpdate, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.begin(Rpc::new(MgsRequest::UpdateStatus(msg.component)), ctx);
        let sp = self.name.clone();
        let wait = async move { rx.await.unwrap_or(Err(RpcError::Stopped { sp })) };
        Box::pin(wait.into_actor(self).map(move |res, act, _| {
            let status = match res? {
                (SpResponse::UpdateStatus(s), _) => s,
                (other, _) => {
                    return Err(RpcError::Unexpected {
                        sp: act.name.clone(),
                        response: format!("{other:?}"),
                    })
                }
            };
            let delivery = act
                .latest
                .get(&msg.component)
                .and_then(|id| act.records.get(id))
                .cloned();
            Ok(UpdateView {
                sp: act.name.clone(),
                component: msg.component.to_string(),
                sp_status: SpUpdateState::from(status),
                delivery,
            })
        }))
    }
}

impl Handler<AbortUpdate> for SpActor {
    type Result = ResponseActFuture<Self, Result<(), UpdateError>>;

    fn handle(&mut self, msg: AbortUpdate, ctx: &mut Context<Self>) -> Self::Result {
        // Stop delivering first so no chunk races the abort; resume if the
        // SP refuses.
        let paused = match self.active.take() {
            Some(a) if a.id == msg.id && a.component == msg.component => {
                a.driver.do_send(StopDriver);
                Some(a)
            }
            other => {
                self.active = other;
                None
            }
        };
        let rx = self.begin(
            Rpc::new(MgsRequest::UpdateAbort {
                component: msg.component,
                id: msg.id,
            }),
            ctx,
        );
        let sp = self.name.clone();
        let wait = async move { rx.await.unwrap_or(Err(RpcError::Stopped { sp })) };
        Box::pin(wait.into_actor(self).map(move |res, act, ctx| match res {
            Ok(_) => {
                if let Some(mut r) = act.records.get(&msg.id).cloned() {
                    r.abort(Instant::now());
                    act.store(r);
                }
                info!(sp = %act.name, update = %msg.id, "update aborted");
                Ok(())
            }
            Err(e) => {
                if let Some(a) = paused {
                    act.spawn_driver(a.id, a.component, a.slot, a.image, ctx);
                }
                Err(match e {
                    RpcError::Sp { sp, error } => UpdateError::AbortRefused {
                        sp,
                        component: msg.component.to_string(),
                        id: msg.id.as_uuid(),
                        error,
                    },
                    e => UpdateError::Rpc(e),
                })
            }
        }))
    }
}
