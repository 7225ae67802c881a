//! `Registry`: the set of SP actors (started and stopped on
//! reconfiguration), their names and serials, and the index of updates by
//! id with the one binding rule, applied atomically in its mailbox: an id
//! is bound to exactly one (SP, component, slot, image); the same id and
//! binding is the same update, whatever its state; anything else is a
//! conflict. A start is bound while its prepare is on its way, and only
//! once the SP accepted it do others see it. Finished updates stay in a
//! bounded history. [`RegistryHandle`] is the typed API over it.

mod handle;
mod restore;

pub use handle::{History, RegistryHandle, SpSummary, UpdateView};

use crate::error::{RegistryError, UpdateError};
use crate::image::{Image, ImageHash, ImageStore};
use crate::journal::JournalHandle;
use crate::phase2::Phase2Cache;
use crate::record::UpdateSpec;
use crate::settings::SpSettings;
use crate::sp::{SpHandle, SpTarget};
use crate::store::{Spool, Store};
use crate::transport::{Transport, UdpTransport};
use crate::types::{Operation, SpName, SpType};
use crate::update::{UpdateContext, UpdateEnded, UpdateHandle};
use actix::prelude::*;
use gateway_messages::SpComponent;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tracing::{info, warn};

/// One configured SP.
#[derive(Debug, Clone, PartialEq)]
pub struct SpEntry {
    pub name: SpName,
    pub target: SpTarget,
    /// Its board's kind, where known.
    pub kind: Option<SpType>,
}

impl SpEntry {
    /// SP `name` at `target`, of the kind its name says (if it says one).
    pub fn new(name: &str, target: SpTarget) -> Self {
        Self {
            name: name.into(),
            target,
            kind: SpType::from_name(name),
        }
    }
}

/// Makes the transport for an SP (tests inject faults here).
pub type TransportFactory = Arc<dyn Fn(&SpEntry) -> io::Result<Arc<dyn Transport>> + Send + Sync>;

/// Finished updates kept by default.
pub const DEFAULT_HISTORY: usize = 1000;

/// What the registry runs.
#[derive(Clone)]
pub struct RegistryConfig {
    pub sps: Vec<SpEntry>,
    /// Settings for every SP.
    pub settings: SpSettings,
    /// [`udp_transport`] by default.
    pub transport: TransportFactory,
    /// Finished updates to remember; the oldest is forgotten first.
    pub history: usize,
    /// Forget finished updates older than this, too.
    pub history_max_age: Option<Duration>,
    /// The scrimlet's own sled: no rollout takes it unless it says
    /// `allow_self`.
    pub own_sp: Option<String>,
    /// How long reading a client's image may take (default 60 s).
    pub image_read_timeout: Duration,
    /// Phase-2 recovery images the SPs' hosts may ask for.
    pub phase2: Arc<Phase2Cache>,
}

impl RegistryConfig {
    /// SPs over UDP with `settings`.
    pub fn new(sps: Vec<SpEntry>, settings: SpSettings) -> Self {
        Self {
            sps,
            settings,
            transport: Arc::new(udp_transport),
            history: DEFAULT_HISTORY,
            history_max_age: None,
            own_sp: None,
            image_read_timeout: Duration::from_secs(60),
            phase2: Arc::new(Phase2Cache::new(Default::default())),
        }
    }
}

/// An opened state directory: where updates are journalled and images
/// spooled, so that updates survive a restart.
pub struct State {
    pub store: Store,
    pub spool: Spool,
}

/// A UDP socket for `entry`: loopback targets get a loopback socket,
/// others the unspecified address of their family.
pub fn udp_transport(entry: &SpEntry) -> io::Result<Arc<dyn Transport>> {
    let local: IpAddr = match &entry.target {
        SpTarget::Addr(a) if a.ip().is_loopback() => a.ip(),
        SpTarget::Addr(SocketAddr::V4(_)) => Ipv4Addr::UNSPECIFIED.into(),
        _ => Ipv6Addr::UNSPECIFIED.into(),
    };
    Ok(Arc::new(UdpTransport::new(std::net::UdpSocket::bind((
        local, 0,
    ))?)?))
}

/// What answers a start: the update, once the SP accepted it.
type Started = Result<UpdateHandle, UpdateError>;

/// What an update id is bound to.
enum Bound {
    /// The prepare is on its way; these callers wait for its answer.
    Starting {
        handle: UpdateHandle,
        waiting: Vec<oneshot::Sender<Started>>,
    },
    /// The SP accepted it: it runs, or it ended.
    Accepted(UpdateHandle),
}

impl Bound {
    fn spec(&self) -> &Arc<UpdateSpec> {
        match self {
            Bound::Starting { handle, .. } | Bound::Accepted(handle) => handle.spec(),
        }
    }

    fn accepted(&self) -> Option<&UpdateHandle> {
        match self {
            Bound::Accepted(h) => Some(h),
            Bound::Starting { .. } => None,
        }
    }
}

/// The registry actor. See the module docs.
pub struct Registry {
    sps: BTreeMap<SpName, (SpEntry, SpHandle)>,
    settings: SpSettings,
    transport: TransportFactory,
    updates: HashMap<uuid::Uuid, Bound>,
    /// Ended updates, oldest first.
    finished: VecDeque<uuid::Uuid>,
    history: usize,
    history_max_age: Option<Duration>,
    started: broadcast::Sender<UpdateHandle>,
    journal: Option<JournalHandle>,
    spool: Option<Spool>,
    images: ImageStore,
    phase2: Arc<Phase2Cache>,
    /// Shutting down: no new updates.
    stopping: bool,
    /// Updates SPs hold whose ids we do not know, as last reported.
    unknown: BTreeMap<SpName, Vec<(SpComponent, uuid::Uuid)>>,
}

/// How often old history is looked for when no update ends.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How often the SPs' update statuses are compared with our updates.
const UNKNOWN_EVERY: Duration = Duration::from_secs(1);

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PRUNE_EVERY, |act, _| act.prune());
        ctx.run_interval(UNKNOWN_EVERY, |act, _| act.report_unknown());
    }
}

impl Registry {
    fn start_sp(&mut self, entry: SpEntry) -> io::Result<()> {
        let transport = (self.transport)(&entry)?;
        self.spawn_sp(entry, transport);
        Ok(())
    }

    fn spawn_sp(&mut self, entry: SpEntry, transport: Arc<dyn Transport>) {
        let handle = SpHandle::start(
            entry.name.clone(),
            entry.target.clone(),
            entry.kind,
            transport,
            self.settings.clone(),
            self.phase2.clone(),
            fastrand::u32(..),
        );
        self.sps.insert(entry.name.clone(), (entry, handle));
    }

    fn context(&self, ctx: &Context<Self>) -> UpdateContext {
        UpdateContext {
            settings: self.settings.delivery.clone(),
            rpc: self.settings.rpc,
            ended: ctx.address().recipient(),
            journal: self.journal.clone(),
        }
    }

    /// Once `accepted` answers update `id`'s start, tell this registry.
    fn await_start(
        &self,
        id: uuid::Uuid,
        accepted: oneshot::Receiver<Result<(), UpdateError>>,
        ctx: &Context<Self>,
    ) {
        let registry = ctx.address();
        actix::spawn(async move {
            let result = accepted.await.unwrap_or(Err(UpdateError::ShuttingDown));
            registry.do_send(Resolved { id, result });
        });
    }

    /// What `sp`'s update buffer holds that is none of ours: (component,
    /// its status) for every id we do not know (another client's, or ours
    /// from before a state loss). An aborted update holds nothing.
    fn unknown_on(&self, sp: &SpHandle) -> Vec<(SpComponent, crate::record::SpUpdateState)> {
        sp.statuses()
            .iter()
            .filter(|(_, s)| !matches!(s, crate::record::SpUpdateState::Aborted { .. }))
            .filter(|(_, s)| s.id().is_some_and(|id| !self.updates.contains_key(&id)))
            .map(|(c, s)| (c, s.clone()))
            .collect()
    }

    /// Log each update an SP holds that is none of ours, once, and keep
    /// `mgsd_sp_unknown_updates` in step.
    fn report_unknown(&mut self) {
        for (name, (_, sp)) in &self.sps {
            let now: Vec<(SpComponent, uuid::Uuid)> = self
                .unknown_on(sp)
                .into_iter()
                .filter_map(|(c, s)| Some((c, s.id()?)))
                .collect();
            let before = self.unknown.get(name).cloned().unwrap_or_default();
            if now == before {
                continue;
            }
            for (component, id) in now.iter().filter(|u| !before.contains(u)) {
                warn!(sp = %name, %component, update = %id, "the SP holds an update of an unknown client (another gateway's, or ours from before a state loss): `mgsctl update abort` takes that id, `update start --take-over` replaces it");
            }
            metrics::gauge!(crate::metrics::SP_UNKNOWN_UPDATES, "sp" => name.to_string())
                .set(now.len() as f64);
            self.unknown.insert(name.clone(), now);
        }
    }

    /// The update of ours that holds `sp`, if one does.
    fn running_on(&self, sp: &SpHandle) -> Option<&UpdateHandle> {
        match sp.info().operation? {
            Operation::Update { id, .. } => self.updates.get(&id).and_then(Bound::accepted),
            Operation::Reset { .. } => None,
        }
    }

    /// Forget the oldest finished updates beyond the history's count and
    /// age, in the journal too, and spooled images nothing needs any more.
    fn prune(&mut self) {
        let too_old = self.history_max_age.map(|age| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(age).as_millis() as u64
        });
        let mut forgotten = Vec::new();
        while let Some(oldest) = self.finished.front().copied() {
            let old = self
                .updates
                .get(&oldest)
                .and_then(Bound::accepted)
                .is_some_and(|h| {
                    too_old.is_some_and(|t| h.progress().finished_unix_ms.is_some_and(|f| f < t))
                });
            if self.finished.len() <= self.history && !old {
                break;
            }
            self.finished.pop_front();
            if self.updates.remove(&oldest).is_some() {
                forgotten.push(oldest);
            }
        }
        if let Some(j) = &self.journal {
            j.forget(forgotten);
            // The audit log and ended rollouts age out with the history.
            j.prune_audit(too_old.unwrap_or(0));
        }
        let Some(spool) = self.spool.clone() else {
            return;
        };
        // Images of updates we know, and of anything holding one in
        // memory (a rollout's targets not started yet).
        let mut keep: HashSet<ImageHash> = self.updates.values().map(|b| b.spec().image).collect();
        keep.extend(self.images.held());
        tokio::task::spawn_blocking(move || match spool.retain(&keep) {
            Ok(removed) if !removed.is_empty() => {
                info!(
                    images = removed.len(),
                    "spooled images no update needs any more removed"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not clean the image spool"),
        });
    }
}

/// Every SP, with our update running on it and what it holds of others.
#[derive(Message)]
#[rtype(result = "Vec<SpSummary>")]
struct ListSps;

impl Handler<ListSps> for Registry {
    type Result = MessageResult<ListSps>;
    fn handle(&mut self, _: ListSps, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sps
                .values()
                .map(|(_, h)| SpSummary {
                    info: h.info(),
                    sp: h.clone(),
                    active_update: self.running_on(h).cloned(),
                    unknown_updates: self.unknown_on(h),
                })
                .collect(),
        )
    }
}

/// By name, or by serial number once the SP has told it.
#[derive(Message)]
#[rtype(result = "Option<SpHandle>")]
struct Resolve(String);

impl Handler<Resolve> for Registry {
    type Result = Option<SpHandle>;
    fn handle(&mut self, msg: Resolve, _: &mut Context<Self>) -> Self::Result {
        if let Some((_, h)) = self.sps.get(&SpName::from(msg.0.as_str())) {
            return Some(h.clone());
        }
        self.sps
            .values()
            .find(|(_, h)| h.serial().as_deref() == Some(msg.0.as_str()))
            .map(|(_, h)| h.clone())
    }
}

/// Bind `spec`'s id and start its update, or find it bound already: the
/// receiver answers once the SP accepted the prepare (or why not).
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Started>")]
struct Start {
    sp: SpHandle,
    spec: Arc<UpdateSpec>,
    image: Arc<Image>,
}

impl Handler<Start> for Registry {
    type Result = MessageResult<Start>;
    fn handle(&mut self, msg: Start, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let id = msg.spec.id;
        match self.updates.get_mut(&id) {
            Some(bound) if !bound.spec().binds_as(&msg.spec) => {
                let b = bound.spec();
                let _ = tx.send(Err(UpdateError::Conflict {
                    id,
                    sp: b.sp.clone(),
                    component: b.component,
                    slot: b.slot,
                    image: b.image,
                }));
            }
            Some(Bound::Accepted(handle)) => {
                let _ = tx.send(Ok(handle.clone()));
            }
            Some(Bound::Starting { waiting, .. }) => waiting.push(tx),
            None if self.stopping => {
                let _ = tx.send(Err(UpdateError::ShuttingDown));
            }
            None => {
                let pending = crate::update::start(msg.sp, msg.spec, msg.image, self.context(ctx));
                self.await_start(id, pending.accepted, ctx);
                let bound = Bound::Starting {
                    handle: pending.handle,
                    waiting: vec![tx],
                };
                self.updates.insert(id, bound);
            }
        }
        MessageResult(rx)
    }
}

/// Update `id`'s start was answered.
#[derive(Message)]
#[rtype(result = "()")]
struct Resolved {
    id: uuid::Uuid,
    result: Result<(), UpdateError>,
}

impl Handler<Resolved> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Resolved, _: &mut Context<Self>) {
        let Some(Bound::Starting { handle, waiting }) = self.updates.remove(&msg.id) else {
            return;
        };
        let answer = match msg.result {
            Ok(()) => {
                handle.follow_metrics();
                let _ = self.started.send(handle.clone());
                // It may have ended already (its end was not filed while
                // it was still starting).
                if !handle.is_running() {
                    self.finished.push_back(msg.id);
                }
                self.updates.insert(msg.id, Bound::Accepted(handle.clone()));
                Ok(handle)
            }
            // Nothing was started: the id stays free.
            Err(e) => Err(e),
        };
        for tx in waiting {
            let _ = tx.send(answer.clone());
        }
    }
}

impl Handler<UpdateEnded> for Registry {
    type Result = ();
    fn handle(&mut self, msg: UpdateEnded, _: &mut Context<Self>) {
        if let Some(Bound::Accepted(_)) = self.updates.get(&msg.0) {
            self.finished.push_back(msg.0);
            self.prune();
        }
    }
}

/// Whether an update is bound to this id (a rollout may not take it).
#[derive(Message)]
#[rtype(result = "bool")]
struct IsBound(uuid::Uuid);

impl Handler<IsBound> for Registry {
    type Result = bool;
    fn handle(&mut self, msg: IsBound, _: &mut Context<Self>) -> bool {
        self.updates.contains_key(&msg.0)
    }
}

/// Finished updates, newest first.
impl Handler<History> for Registry {
    type Result = MessageResult<History>;
    fn handle(&mut self, msg: History, _: &mut Context<Self>) -> Self::Result {
        let handles = self
            .finished
            .iter()
            .rev()
            .filter_map(|id| self.updates.get(id).and_then(Bound::accepted))
            .filter(|h| msg.matches(h))
            .take(msg.limit)
            .cloned()
            .collect();
        MessageResult(handles)
    }
}

/// Shutting down: take no new update; the ones running now.
#[derive(Message)]
#[rtype(result = "Vec<UpdateHandle>")]
struct Stopping;

impl Handler<Stopping> for Registry {
    type Result = MessageResult<Stopping>;
    fn handle(&mut self, _: Stopping, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        MessageResult(self.running())
    }
}

impl Registry {
    fn running(&self) -> Vec<UpdateHandle> {
        self.updates
            .values()
            .filter_map(Bound::accepted)
            .filter(|h| h.is_running())
            .cloned()
            .collect()
    }
}

#[derive(Message)]
#[rtype(result = "Option<UpdateHandle>")]
struct Lookup(uuid::Uuid);

impl Handler<Lookup> for Registry {
    type Result = Option<UpdateHandle>;
    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.updates.get(&msg.0).and_then(Bound::accepted).cloned()
    }
}

/// The most recent update of ours to (SP, component), running or ended;
/// the SP by name, or by the serial the update was made for.
#[derive(Message)]
#[rtype(result = "Option<UpdateHandle>")]
struct Latest {
    sp: SpName,
    serial: Option<String>,
    component: SpComponent,
}

impl Handler<Latest> for Registry {
    type Result = Option<UpdateHandle>;
    fn handle(&mut self, msg: Latest, _: &mut Context<Self>) -> Self::Result {
        self.updates
            .values()
            .filter_map(Bound::accepted)
            .filter(|h| {
                let s = h.spec();
                s.component == msg.component && s.is_on(&msg.sp, msg.serial.as_deref())
            })
            .max_by_key(|h| h.spec().started_unix_ms)
            .cloned()
    }
}

/// Updates running now, and every update started from now on.
#[derive(Message)]
#[rtype(result = "(Vec<UpdateHandle>, broadcast::Receiver<UpdateHandle>)")]
struct Subscribe;

impl Handler<Subscribe> for Registry {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, _: Subscribe, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.running(), self.started.subscribe()))
    }
}

/// Replace the SP set: start new SPs, stop removed or changed ones. An SP
/// that is held (an update of ours runs on it, or a reset) is neither
/// removed nor changed: the whole change is refused, naming what holds
/// it, and nothing changes. Nor is a change that would leave no SP.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
struct Reconfigure(Vec<SpEntry>);

impl Handler<Reconfigure> for Registry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        let wanted: BTreeMap<SpName, SpEntry> =
            msg.0.into_iter().map(|e| (e.name.clone(), e)).collect();
        if wanted.is_empty() && !self.sps.is_empty() {
            return Err(RegistryError::Reconfigure(format!(
                "it has no [[sp]], and {} SPs are served now; to stop serving every SP, stop mgsd",
                self.sps.len()
            )));
        }
        let going: Vec<&SpHandle> = self
            .sps
            .iter()
            .filter(|(name, (entry, _))| wanted.get(*name) != Some(entry))
            .map(|(_, (_, h))| h)
            .collect();
        let held: Vec<String> = going
            .iter()
            .filter_map(|h| {
                let op = h.info().operation?;
                Some(match op {
                    Operation::Update { id, component } => format!(
                        "{} runs update {id} of {component} (abort it or let it end first)",
                        h.name()
                    ),
                    Operation::Reset { component } => {
                        format!("{} is being reset ({component})", h.name())
                    }
                })
            })
            .collect();
        if !held.is_empty() {
            return Err(RegistryError::Reconfigure(format!(
                "it would remove or change SPs in use: {}",
                held.join("; ")
            )));
        }
        // Sockets first: a failure leaves the running set as it was.
        let mut started = Vec::new();
        for (name, entry) in &wanted {
            if self.sps.get(name).map(|(e, _)| e) != Some(entry) {
                let transport = (self.transport)(entry).map_err(|e| RegistryError::Socket {
                    sp: name.clone(),
                    source: Arc::new(e),
                })?;
                started.push((entry.clone(), transport));
            }
        }
        self.sps.retain(|name, (entry, handle)| {
            let keep = wanted.get(name) == Some(entry);
            if !keep {
                info!(sp = %name, "SP removed from configuration");
                handle.stop();
            }
            keep
        });
        for (entry, transport) in started {
            info!(sp = %entry.name, target = ?entry.target, "SP added");
            self.spawn_sp(entry, transport);
        }
        Ok(())
    }
}
