//! `Registry`: owns the set of SP actors (started and stopped on
//! reconfiguration), resolves SP names and serial numbers, and indexes
//! updates by id. One rule, applied atomically in its mailbox, decides
//! every start: an id is bound to exactly (SP, component, slot, image
//! SHA-256); the same id with the same binding is the same update, whatever
//! its state; anything else is a conflict. Finished updates stay in a
//! bounded history. [`RegistryHandle`] is the typed API the control socket
//! (and the tests) use.

use crate::activate::{activate, Activation, Expected, ResetOptions};
use crate::image::{Image, ImageHash, ImageStore};
use crate::journal::JournalHandle;
use crate::rollout::RolloutHandle;
use crate::rollout_state::{
    wave_sizes, RolloutPhase, RolloutRecord, RolloutSpec, Target, TargetState,
};
use crate::rpc::RpcError;
use crate::sp::{SpHandle, SpInfo, SpSettings, SpTarget};
use crate::store::{Spool, Store};
use crate::transport::{Transport, UdpTransport};
use crate::update::{UpdateContext, UpdateEnded, UpdateHandle, UpdatePlan};
use crate::update_state::{FailureKind, SpUpdateState, UpdateRecord};
use crate::{SpName, UpdateError};
use actix::prelude::*;
use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::Instrument;
use tracing::{info, warn};

/// One configured SP.
#[derive(Debug, Clone, PartialEq)]
pub struct SpEntry {
    /// Name.
    pub name: SpName,
    /// Where it is.
    pub target: SpTarget,
}

/// Makes the transport for an SP (tests inject faults here).
pub type TransportFactory = Arc<dyn Fn(&SpEntry) -> io::Result<Arc<dyn Transport>> + Send + Sync>;

/// Finished updates kept by default.
pub const DEFAULT_HISTORY: usize = 1000;

/// What the registry runs.
#[derive(Clone)]
pub struct RegistryConfig {
    /// The SPs.
    pub sps: Vec<SpEntry>,
    /// Settings for every SP.
    pub settings: SpSettings,
    /// Transport maker; [`udp_transport`] by default.
    pub transport: TransportFactory,
    /// Finished updates to remember; the oldest is forgotten first.
    pub history: usize,
    /// Forget finished updates older than this, too.
    pub history_max_age: Option<Duration>,
    /// The scrimlet's own sled: no rollout takes it unless it says
    /// `allow_self`.
    pub own_sp: Option<String>,
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
        }
    }
}

/// An opened state directory: where updates are journalled and images
/// spooled, so that updates survive a restart.
pub struct State {
    /// The update records.
    pub store: Store,
    /// The images.
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

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// No SP by that name or serial.
    #[error("unknown SP {0:?} (not a configured name or a known serial number)")]
    UnknownSp(String),
    /// Not a component this command applies to.
    #[error("bad component {name:?}: {reason}")]
    BadComponent {
        /// What was given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// No update with that id.
    #[error("unknown update id {0}")]
    UnknownUpdate(uuid::Uuid),
    /// Update-level failure.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// SP communication failure.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The image's descriptor cannot be read.
    #[error("cannot read the image: {0}")]
    ImageUnreadable(String),
    /// The image could not be kept in the state directory's spool.
    #[error("cannot keep the image for a restart: {0}")]
    Spool(String),
    /// Opening an SP's socket failed.
    #[error("SP {sp}: cannot open its socket: {message}")]
    Socket {
        /// The SP.
        sp: SpName,
        /// The OS error.
        message: String,
    },
    /// The daemon is shutting down.
    #[error("daemon is shutting down")]
    Stopped,
    /// A rollout plan is wrong; every problem, each naming its line.
    #[error("the plan is not valid: {}", .0.join("; "))]
    Plan(Vec<String>),
    /// No rollout with that id.
    #[error("unknown rollout id {0}")]
    UnknownRollout(uuid::Uuid),
}

impl From<MailboxError> for RegistryError {
    fn from(_: MailboxError) -> Self {
        RegistryError::Stopped
    }
}

/// What an update id is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    sp: SpName,
    component: SpComponent,
    slot: u16,
    image: ImageHash,
}

impl Binding {
    /// The binding a journalled record was made under.
    fn of(r: &UpdateRecord) -> Option<Binding> {
        Some(Binding {
            sp: r.sp.clone(),
            component: parse_updatable(&r.component).ok()?,
            slot: r.slot,
            image: ImageHash::from_hex(&r.image_sha256)?,
        })
    }
}

/// The registry actor. See the module docs.
pub struct Registry {
    sps: BTreeMap<SpName, (SpEntry, SpHandle)>,
    settings: SpSettings,
    transport: TransportFactory,
    updates: HashMap<UpdateId, (Binding, UpdateHandle)>,
    /// Ended updates, oldest first.
    finished: VecDeque<UpdateId>,
    history: usize,
    history_max_age: Option<Duration>,
    started: broadcast::Sender<UpdateHandle>,
    journal: Option<JournalHandle>,
    spool: Option<Spool>,
    images: ImageStore,
    /// Shutting down: no new updates.
    stopping: bool,
    rollouts: HashMap<uuid::Uuid, RolloutHandle>,
}

/// How often old history is looked for when no update ends.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PRUNE_EVERY, |act, _| act.prune());
    }
}

impl Registry {
    fn start_sp(&mut self, entry: SpEntry) -> io::Result<()> {
        let transport = (self.transport)(&entry)?;
        let handle = SpHandle::start(
            entry.name.clone(),
            entry.target.clone(),
            transport,
            self.settings.clone(),
            fastrand::u32(..),
        );
        self.sps.insert(entry.name.clone(), (entry, handle));
        Ok(())
    }

    fn context(&self, ctx: &Context<Self>) -> UpdateContext {
        UpdateContext {
            settings: self.settings.delivery.clone(),
            rpc: self.settings.rpc,
            ended: ctx.address().recipient(),
            journal: self.journal.clone(),
        }
    }

    /// Take up the journalled records: ended ones as history, the others
    /// resumed where their SPs say they stand.
    fn restore(&mut self, records: Vec<UpdateRecord>, ctx: &Context<Self>) {
        let now = tokio::time::Instant::now();
        let mut ended = Vec::new();
        for record in records {
            let record = record.restored(now);
            let Some(binding) = Binding::of(&record) else {
                warn!(update = %record.id, component = %record.component, "journalled update names no updatable component; ignored");
                continue;
            };
            let id = UpdateId::from(record.id);
            if record.phase.is_terminal() {
                ended.push(record.clone());
                self.updates
                    .insert(id, (binding, UpdateHandle::ended(record)));
                continue;
            }
            match self.resumable(&binding) {
                Ok((sp, image)) => {
                    // The prepare is not sent again: its aux CHCK is not needed.
                    let aux = (record.aux_flash_bytes > 0)
                        .then_some((record.aux_flash_bytes as u32, [0; 32]));
                    let plan = UpdatePlan {
                        id,
                        component: binding.component,
                        slot: binding.slot,
                        image,
                        aux,
                        artifact: record.artifact.clone(),
                        activate: record.activate,
                    };
                    let handle = UpdateHandle::resume(sp, plan, record, self.context(ctx));
                    crate::metrics::follow_update(handle.watch());
                    self.updates.insert(id, (binding, handle));
                }
                Err(why) => {
                    let mut record = record;
                    warn!(update = %record.id, sp = %record.sp, %why, "journalled update cannot go on");
                    record.fail(FailureKind::Other, why, now);
                    if let Some(j) = &self.journal {
                        j.write(record.clone());
                    }
                    ended.push(record.clone());
                    self.updates
                        .insert(id, (binding, UpdateHandle::ended(record)));
                }
            }
        }
        ended.sort_by_key(|r| r.finished_unix_ms);
        self.finished = ended.iter().map(|r| UpdateId::from(r.id)).collect();
        self.prune();
    }

    /// A handle on this registry, for the rollouts it starts.
    fn handle_of(&self, ctx: &Context<Self>) -> RegistryHandle {
        RegistryHandle {
            registry: ctx.address(),
            images: self.images.clone(),
            settings: self.settings.clone(),
            journal: self.journal.clone(),
            spool: self.spool.clone(),
            own_sp: None,
        }
    }

    /// Take up the journalled rollouts: each goes on where it was (its
    /// running targets' updates are the same ones, resumed above).
    fn restore_rollouts(&mut self, records: Vec<RolloutRecord>, ctx: &Context<Self>) {
        for mut record in records {
            let mut images = HashMap::new();
            if !record.phase.is_terminal() {
                record.resumed += 1;
                info!(rollout = %record.id, phase = record.phase.as_str(), "resuming the rollout");
                for t in &record.targets {
                    let Some(hash) = ImageHash::from_hex(&t.image_sha256) else {
                        continue;
                    };
                    if images.contains_key(&t.image_sha256) {
                        continue;
                    }
                    match self.spool.as_ref().map(|s| s.get(&hash, &self.images)) {
                        Some(Ok(image)) => {
                            images.insert(t.image_sha256.clone(), image);
                        }
                        Some(Err(e)) => {
                            warn!(rollout = %record.id, error = %e, "a rollout's image cannot be read back")
                        }
                        None => {}
                    }
                }
            }
            let id = record.id;
            let handle =
                RolloutHandle::start(record, images, self.handle_of(ctx), self.journal.clone());
            self.rollouts.insert(id, handle);
        }
    }

    /// The SP and image a journalled update needs to go on.
    fn resumable(&self, b: &Binding) -> Result<(SpHandle, Arc<Image>), String> {
        let (_, sp) = self
            .sps
            .get(&b.sp)
            .ok_or_else(|| format!("SP {} is no longer in the configuration", b.sp))?;
        let spool = self.spool.as_ref().ok_or("no image spool")?;
        let image = spool
            .get(&b.image, &self.images)
            .map_err(|e| format!("its image cannot be read back: {e}"))?;
        Ok((sp.clone(), image))
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
            let old = self.updates.get(&oldest).is_some_and(|(_, h)| {
                too_old.is_some_and(|t| h.watch().borrow().finished_unix_ms.is_some_and(|f| f < t))
            });
            if self.finished.len() <= self.history && !old {
                break;
            }
            self.finished.pop_front();
            if self.updates.remove(&oldest).is_some() {
                forgotten.push(oldest.as_uuid());
            }
        }
        // Ended rollouts age out with the history too.
        self.rollouts.retain(|_, h| {
            let r = h.record();
            !(r.phase.is_terminal()
                && too_old.is_some_and(|t| r.finished_unix_ms.is_some_and(|f| f < t)))
        });
        if let Some(j) = &self.journal {
            j.forget(forgotten);
            // The audit log and ended rollouts age out with the history.
            j.prune_audit(too_old.unwrap_or(0));
        }
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let mut keep: HashSet<ImageHash> = self.updates.values().map(|(b, _)| b.image).collect();
        keep.extend(self.images.held());
        // A rollout under way needs the images of targets not started yet.
        for r in self.rollouts.values().map(RolloutHandle::record) {
            if !r.phase.is_terminal() {
                keep.extend(
                    r.targets
                        .iter()
                        .filter_map(|t| ImageHash::from_hex(&t.image_sha256)),
                );
            }
        }
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

    fn running_on(&self, sp: &SpName) -> Option<&UpdateHandle> {
        self.updates
            .values()
            .find(|(b, h)| &b.sp == sp && h.is_running())
            .map(|(_, h)| h)
    }
}

#[derive(Message)]
#[rtype(result = "Vec<(SpHandle, Option<UpdateHandle>)>")]
struct ListSps;

impl Handler<ListSps> for Registry {
    type Result = MessageResult<ListSps>;
    fn handle(&mut self, _: ListSps, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sps
                .iter()
                .map(|(name, (_, h))| (h.clone(), self.running_on(name).cloned()))
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
            .find(|(_, h)| h.info().identity.is_some_and(|i| i.serial == msg.0))
            .map(|(_, h)| h.clone())
    }
}

/// Bind an id and start its update, or find it already bound.
#[derive(Message)]
#[rtype(result = "Result<UpdateHandle, UpdateError>")]
struct Begin {
    sp: SpHandle,
    plan: UpdatePlan,
}

impl Handler<Begin> for Registry {
    type Result = Result<UpdateHandle, UpdateError>;
    fn handle(&mut self, msg: Begin, ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Err(UpdateError::ShuttingDown);
        }
        let binding = Binding {
            sp: msg.sp.name().clone(),
            component: msg.plan.component,
            slot: msg.plan.slot,
            image: msg.plan.image.hash,
        };
        let id = msg.plan.id;
        // A start the SP refused left nothing behind: its id is free even
        // before its actor's end is filed.
        if self
            .updates
            .get(&id)
            .is_some_and(|(_, h)| h.record().start_error.is_some())
        {
            self.updates.remove(&id);
        }
        if let Some((bound, handle)) = self.updates.get(&id) {
            return if *bound == binding {
                Ok(handle.clone())
            } else {
                Err(UpdateError::Conflict {
                    id: id.as_uuid(),
                    detail: format!(
                        "it already names an update of {} {} slot {} with image {}",
                        bound.sp, bound.component, bound.slot, bound.image
                    ),
                })
            };
        }
        // An SP has one update buffer: one update at a time.
        if let Some(running) = self.running_on(&binding.sp) {
            let r = running.record();
            return Err(UpdateError::AlreadyRunning {
                sp: binding.sp,
                component: r.component,
                id: r.id,
            });
        }
        let handle = UpdateHandle::start(msg.sp, msg.plan, self.context(ctx));
        crate::metrics::follow_update(handle.watch());
        let _ = self.started.send(handle.clone());
        self.updates.insert(id, (binding, handle.clone()));
        Ok(handle)
    }
}

impl Handler<UpdateEnded> for Registry {
    type Result = ();
    fn handle(&mut self, msg: UpdateEnded, _: &mut Context<Self>) {
        let Some((_, handle)) = self.updates.get(&msg.0) else {
            return;
        };
        if handle.record().start_error.is_some() {
            // Nothing was started: the id stays free.
            self.updates.remove(&msg.0);
            return;
        }
        self.finished.push_back(msg.0);
        self.prune();
    }
}

/// Start a rollout, or find it started already with the same plan.
#[derive(Message)]
#[rtype(result = "Result<RolloutHandle, UpdateError>")]
struct BeginRollout {
    record: RolloutRecord,
    images: HashMap<String, Arc<Image>>,
}

impl Handler<BeginRollout> for Registry {
    type Result = Result<RolloutHandle, UpdateError>;
    fn handle(&mut self, msg: BeginRollout, ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Err(UpdateError::ShuttingDown);
        }
        let id = msg.record.id;
        if let Some(existing) = self.rollouts.get(&id) {
            return if existing.record().plan_sha256 == msg.record.plan_sha256 {
                Ok(existing.clone())
            } else {
                Err(UpdateError::Conflict {
                    id,
                    detail: "it already names a rollout of another plan".into(),
                })
            };
        }
        if self.updates.contains_key(&UpdateId::from(id)) {
            return Err(UpdateError::Conflict {
                id,
                detail: "it already names an update".into(),
            });
        }
        info!(rollout = %id, targets = msg.record.targets.len(), waves = msg.record.waves, "rollout started");
        let handle = RolloutHandle::start(
            msg.record,
            msg.images,
            self.handle_of(ctx),
            self.journal.clone(),
        );
        self.rollouts.insert(id, handle.clone());
        Ok(handle)
    }
}

/// One rollout, or all (oldest first).
#[derive(Message)]
#[rtype(result = "Vec<RolloutHandle>")]
struct Rollouts(Option<uuid::Uuid>);

impl Handler<Rollouts> for Registry {
    type Result = MessageResult<Rollouts>;
    fn handle(&mut self, msg: Rollouts, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<RolloutHandle> = match msg.0 {
            Some(id) => self.rollouts.get(&id).cloned().into_iter().collect(),
            None => self.rollouts.values().cloned().collect(),
        };
        all.sort_by_key(|h| h.record().created_unix_ms);
        MessageResult(all)
    }
}

/// Finished updates, newest first.
#[derive(Message)]
#[rtype(result = "Vec<UpdateRecord>")]
pub struct History {
    /// Only this SP's (by name).
    pub sp: Option<SpName>,
    /// Only this component's.
    pub component: Option<String>,
    /// Only those finished at or after this (Unix ms).
    pub since_unix_ms: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

impl Handler<History> for Registry {
    type Result = MessageResult<History>;
    fn handle(&mut self, msg: History, _: &mut Context<Self>) -> Self::Result {
        let records = self
            .finished
            .iter()
            .rev()
            .filter_map(|id| self.updates.get(id))
            .map(|(_, h)| h.record())
            .filter(|r| msg.sp.as_ref().is_none_or(|sp| r.sp == *sp))
            .filter(|r| msg.component.as_ref().is_none_or(|c| r.component == *c))
            .filter(|r| {
                msg.since_unix_ms
                    .is_none_or(|t| r.finished_unix_ms.is_some_and(|f| f >= t))
            })
            .take(msg.limit)
            .collect();
        MessageResult(records)
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
        MessageResult(
            self.updates
                .values()
                .filter(|(_, h)| h.is_running())
                .map(|(_, h)| h.clone())
                .collect(),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Option<UpdateHandle>")]
struct Lookup(UpdateId);

impl Handler<Lookup> for Registry {
    type Result = Option<UpdateHandle>;
    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.updates.get(&msg.0).map(|(_, h)| h.clone())
    }
}

/// The most recent update of ours to (SP, component), running or ended.
#[derive(Message)]
#[rtype(result = "Option<UpdateHandle>")]
struct Latest {
    sp: SpName,
    component: SpComponent,
}

impl Handler<Latest> for Registry {
    type Result = Option<UpdateHandle>;
    fn handle(&mut self, msg: Latest, _: &mut Context<Self>) -> Self::Result {
        self.updates
            .values()
            .filter(|(b, _)| b.sp == msg.sp && b.component == msg.component)
            .map(|(_, h)| (h.watch().borrow().started_unix_ms, h))
            .max_by_key(|(t, _)| *t)
            .map(|(_, h)| h.clone())
    }
}

/// The update of ours running on an SP, if any.
#[derive(Message)]
#[rtype(result = "Option<UpdateHandle>")]
struct RunningOn(SpName);

impl Handler<RunningOn> for Registry {
    type Result = Option<UpdateHandle>;
    fn handle(&mut self, msg: RunningOn, _: &mut Context<Self>) -> Self::Result {
        self.running_on(&msg.0).cloned()
    }
}

/// Updates running now, and every update started from now on.
#[derive(Message)]
#[rtype(result = "(Vec<UpdateHandle>, broadcast::Receiver<UpdateHandle>)")]
struct Subscribe;

impl Handler<Subscribe> for Registry {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, _: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let running = self
            .updates
            .values()
            .filter(|(_, h)| h.is_running())
            .map(|(_, h)| h.clone())
            .collect();
        MessageResult((running, self.started.subscribe()))
    }
}

/// Replace the SP set: start new SPs, stop removed or changed ones.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
struct Reconfigure(Vec<SpEntry>);

impl Handler<Reconfigure> for Registry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        let wanted: BTreeMap<SpName, SpEntry> =
            msg.0.into_iter().map(|e| (e.name.clone(), e)).collect();
        self.sps.retain(|name, (entry, handle)| {
            let keep = wanted.get(name) == Some(entry);
            if !keep {
                info!(sp = %name, "SP removed from configuration");
                handle.stop();
            }
            keep
        });
        for (name, entry) in wanted {
            if !self.sps.contains_key(&name) {
                info!(sp = %name, target = ?entry.target, "SP added");
                self.start_sp(entry).map_err(|e| RegistryError::Socket {
                    sp: name.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

/// The SP's status of a component, with our latest update to it.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    /// SP name.
    pub sp: SpName,
    /// Component.
    pub component: String,
    /// What the SP itself reports (the source of truth).
    pub sp_status: SpUpdateState,
    /// How old that report is: 0 when just asked; while an update of
    /// ours runs, the reading its actor took (at most a poll interval
    /// old).
    pub sp_status_age_ms: u64,
    /// The daemon's record of its most recent update to this component.
    pub delivery: Option<UpdateRecord>,
}

/// One SP as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SpSummary {
    /// What its actor publishes.
    #[serde(flatten)]
    pub info: SpInfo,
    /// Milliseconds since it last answered.
    pub last_heard_ms_ago: Option<u64>,
    /// Our update running on it.
    pub active_update: Option<UpdateRecord>,
}

/// The typed API over the registry and its SPs.
#[derive(Clone)]
pub struct RegistryHandle {
    registry: Addr<Registry>,
    images: ImageStore,
    settings: SpSettings,
    journal: Option<JournalHandle>,
    spool: Option<Spool>,
    own_sp: Option<String>,
}

/// What a caboose says, for an update's record.
fn artifact_info(
    caboose: Option<&artifacts::image::Caboose>,
    image_name: Option<String>,
) -> crate::update_state::ArtifactInfo {
    let text = |v: Result<Option<&[u8]>, artifacts::Error>| {
        v.ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    crate::update_state::ArtifactInfo {
        name: caboose.and_then(|c| text(c.name())),
        vers: caboose.and_then(|c| text(c.vers())),
        gitc: caboose.and_then(|c| text(c.gitc())),
        bord: caboose.and_then(|c| text(c.bord())),
        image_name,
    }
}

/// The caboose of a raw SP image (header at 0x298), if it has one.
fn raw_sp_artifact(image: &[u8]) -> Option<crate::update_state::ArtifactInfo> {
    use artifacts::image::{Caboose, ImageHeader, SP_HEADER_OFFSET};
    let header = ImageHeader::at(image, SP_HEADER_OFFSET)?;
    let caboose = Caboose::find(image, &header).ok()??;
    Some(artifact_info(Some(&caboose), None))
}

/// Components updates can target.
pub const UPDATABLE: [SpComponent; 4] = [
    SpComponent::SP_ITSELF,
    SpComponent::HOST_CPU_BOOT_FLASH,
    SpComponent::ROT,
    SpComponent::STAGE0,
];

/// Archives larger than this are not read (no Hubris archive comes near).
const MAX_ARCHIVE_BYTES: u64 = 128 * 1024 * 1024;

/// Read a Hubris archive from a descriptor a client passed: a regular file
/// of bounded size.
fn read_archive(file: std::fs::File) -> Result<artifacts::HubrisArchive, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(format!(
            "{} bytes; archives of more than {MAX_ARCHIVE_BYTES} are refused",
            meta.len()
        ));
    }
    artifacts::HubrisArchive::read(std::io::BufReader::new(file)).map_err(|e| e.to_string())
}

/// Parse a component name given by a client.
pub fn parse_component(name: &str) -> Result<SpComponent, RegistryError> {
    SpComponent::try_from(name).map_err(|e| RegistryError::BadComponent {
        name: name.into(),
        reason: e.to_string(),
    })
}

/// Parse a component that can be updated.
pub fn parse_updatable(name: &str) -> Result<SpComponent, RegistryError> {
    let c = parse_component(name)?;
    if UPDATABLE.contains(&c) {
        Ok(c)
    } else {
        Err(RegistryError::BadComponent {
            name: name.into(),
            reason: "updatable components are sp, host-boot-flash, rot and stage0".into(),
        })
    }
}

/// The first sector of a host-flash image holds the SP's own data and
/// must be erased (0xFF) in the image.
const HOST_FLASH_RESERVED: usize = 64 * 1024;

impl RegistryHandle {
    /// Start the registry and an actor per SP (inside an actix system),
    /// keeping no state.
    pub fn start(config: RegistryConfig) -> io::Result<Self> {
        Ok(Self::start_with_state(config, None)?.0)
    }

    /// Start the registry, an actor per SP and, with `state`, the journal:
    /// updates it holds are taken up again (ended ones as history). Also
    /// returns the journal's records that could not be read (left in
    /// place).
    pub fn start_with_state(
        config: RegistryConfig,
        state: Option<State>,
    ) -> io::Result<(Self, Vec<String>)> {
        let (started, _) = broadcast::channel(1024);
        let images = ImageStore::default();
        let (mut records, mut unreadable, mut rollouts) = (Vec::new(), Vec::new(), Vec::new());
        let (journal, spool) = match state {
            Some(State { store, spool }) => {
                match store.load() {
                    Ok((r, bad)) => (records, unreadable) = (r, bad),
                    Err(e) => unreadable.push(e.to_string()),
                }
                match store.load_rollouts() {
                    Ok((r, bad)) => {
                        rollouts = r;
                        unreadable.extend(bad);
                    }
                    Err(e) => unreadable.push(e.to_string()),
                }
                (Some(JournalHandle::start(store)), Some(spool))
            }
            None => (None, None),
        };
        let mut registry = Registry {
            sps: BTreeMap::new(),
            settings: config.settings.clone(),
            transport: config.transport,
            updates: HashMap::new(),
            finished: VecDeque::new(),
            history: config.history,
            history_max_age: config.history_max_age,
            started,
            journal: journal.clone(),
            spool: spool.clone(),
            images: images.clone(),
            stopping: false,
            rollouts: HashMap::new(),
        };
        for entry in config.sps {
            registry.start_sp(entry)?;
        }
        let registry = Registry::create(move |ctx| {
            registry.restore(records, ctx);
            registry.restore_rollouts(rollouts, ctx);
            registry
        });
        let handle = Self {
            registry,
            images,
            settings: config.settings,
            journal,
            spool,
            own_sp: config.own_sp,
        };
        Ok((handle, unreadable))
    }

    /// Shutting down: refuse new updates, journal where every running one
    /// stands, and wait until that is written. The updates stay on their
    /// SPs and are taken up again at the next start. Returns their
    /// records.
    pub async fn stop(&self) -> Result<Vec<UpdateRecord>, RegistryError> {
        let running = self.registry.send(Stopping).await?;
        for update in &running {
            update.persist().await;
        }
        if let Some(j) = &self.journal {
            j.flush().await;
        }
        Ok(running.iter().map(UpdateHandle::record).collect())
    }

    /// Start the rollout `id` of `spec` (its targets name `images` by
    /// index), or find it started already with the same plan. The whole
    /// plan is checked first, and every problem named with its line;
    /// nothing is sent to any SP unless it is all good.
    pub async fn start_rollout(
        &self,
        id: uuid::Uuid,
        spec: RolloutSpec<usize>,
        images: Vec<Arc<Image>>,
    ) -> Result<RolloutRecord, RegistryError> {
        let sps: Vec<SpHandle> = self
            .registry
            .send(ListSps)
            .await?
            .into_iter()
            .map(|(sp, _)| sp)
            .collect();
        let record = self.plan(id, &spec, &images, &sps)?;
        if let Some(spool) = self.spool.clone() {
            let kept = images.clone();
            tokio::task::spawn_blocking(move || kept.iter().try_for_each(|i| spool.put(i)))
                .await
                .map_err(|_| RegistryError::Stopped)?
                .map_err(|e| RegistryError::Spool(e.to_string()))?;
        }
        let images = images
            .into_iter()
            .map(|i| (i.hash.to_string(), i))
            .collect();
        let handle = self
            .registry
            .send(BeginRollout { record, images })
            .await??;
        Ok(handle.record())
    }

    /// Check `spec` against the SPs and images, and make the rollout's
    /// first record.
    fn plan(
        &self,
        id: uuid::Uuid,
        spec: &RolloutSpec<usize>,
        images: &[Arc<Image>],
        sps: &[SpHandle],
    ) -> Result<RolloutRecord, RegistryError> {
        let mut problems = Vec::new();
        if spec.max_concurrent == 0 {
            problems.push("max_concurrent must be at least 1".to_string());
        }
        if spec.stop_after_failures == 0 {
            problems.push("stop_after_failures must be at least 1".to_string());
        }
        if spec.targets.is_empty() {
            problems.push("the plan has no [[target]]".to_string());
        }
        let find = |name: &str| {
            sps.iter().find(|sp| {
                sp.name().as_str() == name || sp.info().identity.is_some_and(|i| i.serial == name)
            })
        };
        let own = self
            .own_sp
            .as_deref()
            .and_then(find)
            .map(|sp| sp.name().clone());
        let mut targets: Vec<Target> = Vec::new();
        let mut seen: HashMap<(SpName, String), Option<u32>> = HashMap::new();
        for ts in &spec.targets {
            let at = ts
                .line
                .map_or("a [[target]]".to_string(), |l| format!("line {l}"));
            let selectors = usize::from(!ts.sps.is_empty())
                + usize::from(ts.kind.is_some())
                + usize::from(ts.all);
            if selectors != 1 {
                problems.push(format!("{at}: give exactly one of sps, kind and all"));
                continue;
            }
            let chosen: Vec<SpName> = if ts.all {
                sps.iter().map(|sp| sp.name().clone()).collect()
            } else if let Some(kind) = &ts.kind {
                let prefix = format!("{kind}-");
                let of_kind: Vec<SpName> = sps
                    .iter()
                    .map(|sp| sp.name().clone())
                    .filter(|n| n.as_str().starts_with(&prefix))
                    .collect();
                if of_kind.is_empty() {
                    problems.push(format!("{at}: no SP is of kind {kind:?} (named {prefix}…)"));
                }
                of_kind
            } else {
                ts.sps
                    .iter()
                    .filter_map(|name| match find(name) {
                        Some(sp) => Some(sp.name().clone()),
                        None => {
                            problems.push(format!("{at}: unknown SP {name:?}"));
                            None
                        }
                    })
                    .collect()
            };
            let component = match parse_updatable(&ts.component) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let Some(image) = images.get(ts.image) else {
                problems.push(format!(
                    "{at}: image {} was not sent ({} descriptors came)",
                    ts.image,
                    images.len()
                ));
                continue;
            };
            if let Err(e) = self.check_image(component, &image.data) {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            for sp in chosen {
                if let Some(first) = seen.insert((sp.clone(), ts.component.clone()), ts.line) {
                    let first = first.map_or(String::new(), |l| format!(" (line {l})"));
                    problems.push(format!(
                        "{at}: {sp} {} is a target twice{first}",
                        ts.component
                    ));
                    continue;
                }
                if own.as_ref() == Some(&sp) && !spec.allow_self {
                    problems.push(format!(
                        "{at}: {sp} is the scrimlet's own sled (rollout.own_sp); add allow_self = true to update it"
                    ));
                    continue;
                }
                targets.push(Target {
                    update_id: crate::rollout_state::target_update_id(
                        id,
                        sp.as_str(),
                        &ts.component,
                        ts.slot,
                    ),
                    sp,
                    component: ts.component.clone(),
                    slot: ts.slot,
                    image_sha256: image.hash.to_string(),
                    total_bytes: image.len() as u64,
                    wave: 0,
                    line: ts.line,
                    state: TargetState::Pending,
                    phase: None,
                    bytes_acked: 0,
                    rate_bytes_per_second: None,
                    eta_s: None,
                    started_unix_ms: None,
                    finished_unix_ms: None,
                    failure: None,
                });
            }
        }
        if !problems.is_empty() {
            return Err(RegistryError::Plan(problems));
        }
        let sizes = wave_sizes(targets.len(), spec.canary, &spec.waves);
        let mut i = 0;
        for (wave, size) in sizes.iter().enumerate() {
            for t in &mut targets[i..i + size] {
                t.wave = wave;
            }
            i += size;
        }
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for t in &targets {
            h.update(format!(
                "{}/{}/{}/{};",
                t.sp, t.component, t.slot, t.image_sha256
            ));
        }
        let options = format!(
            "{}/{:?}/{}/{:?}/{:?}",
            spec.max_concurrent,
            sizes,
            spec.stop_after_failures,
            spec.pause_between_waves,
            spec.after
        );
        h.update(options);
        let plan_sha256: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(RolloutRecord {
            id,
            plan_sha256,
            phase: RolloutPhase::Running,
            reason: None,
            max_concurrent: spec.max_concurrent,
            stop_after_failures: spec.stop_after_failures,
            pause_between_waves: spec.pause_between_waves,
            after: spec.after,
            waves: sizes.len(),
            current_wave: 0,
            resume_at_unix_ms: None,
            created_unix_ms: crate::update_state::unix_ms(),
            finished_unix_ms: None,
            resumed: 0,
            targets,
        })
    }

    /// One rollout.
    pub async fn rollout(&self, id: uuid::Uuid) -> Result<RolloutHandle, RegistryError> {
        self.registry
            .send(Rollouts(Some(id)))
            .await?
            .pop()
            .ok_or(RegistryError::UnknownRollout(id))
    }

    /// Every rollout since the journal's retention, oldest first.
    pub async fn rollouts(&self) -> Result<Vec<RolloutHandle>, RegistryError> {
        Ok(self.registry.send(Rollouts(None)).await?)
    }

    /// Keep an audit entry, where there is a state directory.
    pub fn audit(&self, entry: crate::store::AuditEntry) {
        if let Some(j) = &self.journal {
            j.audit(entry);
        }
    }

    /// Audit entries at or after `since_unix_ms`, newest first (none
    /// without a state directory).
    pub async fn audit_log(
        &self,
        since_unix_ms: u64,
        limit: usize,
    ) -> Vec<crate::store::AuditEntry> {
        match &self.journal {
            Some(j) => j.audit_log(since_unix_ms, limit).await,
            None => Vec::new(),
        }
    }

    /// Finished updates, newest first.
    pub async fn history(&self, query: History) -> Result<Vec<UpdateRecord>, RegistryError> {
        Ok(self.registry.send(query).await?)
    }

    /// The image store (one copy per image).
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Replace the configured SPs.
    pub async fn reconfigure(&self, sps: Vec<SpEntry>) -> Result<(), RegistryError> {
        self.registry.send(Reconfigure(sps)).await?
    }

    /// Every SP, from what their actors publish (no SP is asked).
    pub async fn list(&self) -> Result<Vec<SpSummary>, RegistryError> {
        let sps = self.registry.send(ListSps).await?;
        Ok(sps
            .into_iter()
            .map(|(sp, update)| {
                let info = sp.info();
                SpSummary {
                    last_heard_ms_ago: info.last_heard_ms_ago(),
                    info,
                    active_update: update.map(|u| u.record()),
                }
            })
            .collect())
    }

    /// Resolve an SP by name, or by serial number once it is known.
    pub async fn sp(&self, sp: &str) -> Result<SpHandle, RegistryError> {
        self.registry
            .send(Resolve(sp.into()))
            .await?
            .ok_or_else(|| RegistryError::UnknownSp(sp.into()))
    }

    /// One SP's info.
    pub async fn info(&self, sp: &str) -> Result<SpInfo, RegistryError> {
        Ok(self.sp(sp).await?.info())
    }

    /// Send a request to an SP and return its answer.
    pub async fn rpc(
        &self,
        sp: &str,
        request: MgsRequest,
    ) -> Result<(SpResponse, Vec<u8>), RegistryError> {
        Ok(self.sp(sp).await?.rpc(request).await?)
    }

    /// Start (or find, idempotently) an update of `image`. Returns once the
    /// SP has acknowledged the prepare; delivery goes on in the
    /// background. An update that already ended is returned as it ended.
    pub async fn start_update(
        &self,
        sp: &str,
        component: &str,
        slot: u16,
        id: uuid::Uuid,
        image: Vec<u8>,
    ) -> Result<UpdateRecord, RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        self.check_image(component, &image)?;
        let images = self.images.clone();
        let image = tokio::task::spawn_blocking(move || images.insert(image))
            .await
            .map_err(|_| RegistryError::Stopped)?;
        self.start_update_image(&sp, component, slot, id, image)
            .await
    }

    /// [`RegistryHandle::start_update`] with the image in `file`, a
    /// descriptor the client opened with its own rights (the daemon never
    /// opens a path a client names). Checked before it is read: a regular
    /// file that fits the component. Read only once the SP and component
    /// are known good, and not kept twice if the store holds it already.
    pub async fn start_update_fd(
        &self,
        sp: &str,
        component: &str,
        slot: u16,
        id: uuid::Uuid,
        file: std::fs::File,
        activate: Option<ResetOptions>,
    ) -> Result<UpdateRecord, RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        let max = self.max_image_len(component);
        let images = self.images.clone();
        let image = tokio::task::spawn_blocking(move || images.load(&file, max))
            .await
            .map_err(|_| RegistryError::Stopped)?
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidInput => {
                    RegistryError::from(UpdateError::BadImage(format!("{component}: {e}")))
                }
                _ => RegistryError::ImageUnreadable(e.to_string()),
            })?;
        self.start_update_prepared(&sp, component, slot, id, image, None, None, activate)
            .await
    }

    /// [`RegistryHandle::start_update`] with a Hubris build archive in
    /// `file` (a descriptor the client opened): for `sp`, its image and
    /// its aux-flash image if it has one; for `rot` and `stage0`, its
    /// image, under the slot rules. Before anything is sent: the archive
    /// must read cleanly, and its caboose `BORD` must be the board the
    /// target runs (read from the target's running caboose) unless
    /// `force_board`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_update_archive(
        &self,
        sp: &str,
        component: &str,
        slot: u16,
        id: uuid::Uuid,
        file: std::fs::File,
        force_board: bool,
        activate: Option<ResetOptions>,
    ) -> Result<UpdateRecord, RegistryError> {
        use artifacts::UpdateTarget;
        let component = parse_updatable(component)?;
        let target = match component {
            c if c == SpComponent::SP_ITSELF => UpdateTarget::Sp,
            c if c == SpComponent::ROT => UpdateTarget::Rot,
            c if c == SpComponent::STAGE0 => UpdateTarget::Stage0,
            c => {
                return Err(UpdateError::BadImage(format!(
                    "{c} takes a raw image (--image), not an archive"
                ))
                .into())
            }
        };
        let sp = self.sp(sp).await?;
        let bad = |why: String| RegistryError::from(UpdateError::BadImage(why));
        let archive = tokio::task::spawn_blocking(move || read_archive(file))
            .await
            .map_err(|_| RegistryError::Stopped)?
            .map_err(|e| bad(format!("archive: {e}")))?;
        archive
            .check_target(target, slot)
            .map_err(|e| bad(format!("archive: {e}")))?;
        let info = artifact_info(archive.caboose(), archive.image_name.clone());
        if !force_board {
            self.check_board(&sp, component, info.bord.as_deref())
                .await?;
        }
        let aux = archive.aux_flash.as_ref().map(|a| {
            let len = a.aux_flash_size() as u32;
            (len, a.chck())
        });
        let mut data = archive
            .aux_flash
            .as_ref()
            .map_or_else(Vec::new, |a| a.data().to_vec());
        data.extend_from_slice(&archive.image);
        let images = self.images.clone();
        let image = tokio::task::spawn_blocking(move || images.insert(data))
            .await
            .map_err(|_| RegistryError::Stopped)?;
        self.start_update_prepared(&sp, component, slot, id, image, aux, Some(info), activate)
            .await
    }

    /// Refuse an archive built for another board than the one `sp`'s
    /// running `component` image names in its caboose. A target without a
    /// `BORD` takes any (as the SP does).
    async fn check_board(
        &self,
        sp: &SpHandle,
        component: SpComponent,
        bord: Option<&str>,
    ) -> Result<(), RegistryError> {
        let slot = if component == SpComponent::SP_ITSELF {
            0
        } else {
            sp.info()
                .identity
                .and_then(|i| i.rot_active_slot)
                .unwrap_or(0)
        };
        let caboose_of = if component == SpComponent::STAGE0 {
            SpComponent::ROT
        } else {
            component
        };
        let request = MgsRequest::ReadComponentCaboose {
            component: caboose_of,
            slot,
            key: *b"BORD",
        };
        let running = match sp.rpc(request).await {
            Ok((_, value)) => String::from_utf8_lossy(&value).into_owned(),
            Err(RpcError::Sp {
                error: SpError::NoSuchCabooseKey(_) | SpError::NoCaboose,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match bord {
            Some(b) if b == running => Ok(()),
            Some(b) => Err(UpdateError::BadImage(format!(
                "the archive is for board {b:?}, but {} {caboose_of} runs {running:?}; \
                 use --force-board to send it anyway",
                sp.name()
            ))
            .into()),
            None => Err(UpdateError::BadImage(format!(
                "the archive's caboose names no board, and {} {caboose_of} runs {running:?}; \
                 use --force-board to send it anyway",
                sp.name()
            ))
            .into()),
        }
    }

    /// The largest image `component` takes.
    pub fn max_image_len(&self, component: SpComponent) -> u64 {
        let d = &self.settings.delivery;
        if component == SpComponent::HOST_CPU_BOOT_FLASH {
            u64::from(d.host_flash_capacity_mib) * 1024 * 1024
        } else if component == SpComponent::SP_ITSELF {
            u64::from(d.sp_image_capacity_kib) * 1024
        } else {
            u64::from(d.rot_image_capacity_kib) * 1024
        }
    }

    /// [`RegistryHandle::start_update`] with an image already in the store.
    pub async fn start_update_image(
        &self,
        sp: &SpHandle,
        component: SpComponent,
        slot: u16,
        id: uuid::Uuid,
        image: Arc<Image>,
    ) -> Result<UpdateRecord, RegistryError> {
        self.start_update_prepared(sp, component, slot, id, image, None, None, None)
            .await
    }

    /// [`RegistryHandle::start_update_image`] with, for an SP image from an
    /// archive, its aux-flash image's length and CHCK (`image` then holds
    /// the aux-flash image followed by the SP image) and the archive's
    /// caboose for the record.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_update_prepared(
        &self,
        sp: &SpHandle,
        component: SpComponent,
        slot: u16,
        id: uuid::Uuid,
        image: Arc<Image>,
        aux: Option<(u32, [u8; 32])>,
        artifact: Option<crate::update_state::ArtifactInfo>,
        activate: Option<ResetOptions>,
    ) -> Result<UpdateRecord, RegistryError> {
        if activate.is_some() && component != SpComponent::SP_ITSELF {
            return Err(RegistryError::BadComponent {
                name: component.to_string(),
                reason: "activation resets the SP into a new SP image; reset other \
                         components on their own"
                    .into(),
            });
        }
        // A raw SP image says what it is in its caboose too.
        let artifact = artifact.or_else(|| {
            (component == SpComponent::SP_ITSELF)
                .then(|| raw_sp_artifact(&image.data))
                .flatten()
        });
        let aux_len = aux.map_or(0, |(len, _)| len as usize);
        self.check_image(component, &image.data[aux_len.min(image.len())..])?;
        // On disk before the SP hears of it: a restart needs the bytes.
        if let Some(spool) = self.spool.clone() {
            let kept = image.clone();
            tokio::task::spawn_blocking(move || spool.put(&kept))
                .await
                .map_err(|_| RegistryError::Stopped)?
                .map_err(|e| RegistryError::Spool(e.to_string()))?;
        }
        let plan = UpdatePlan {
            id: UpdateId::from(id),
            component,
            slot,
            image,
            aux,
            artifact,
            activate,
        };
        let handle = self
            .registry
            .send(Begin {
                sp: sp.clone(),
                plan,
            })
            .await??;
        Ok(handle.accepted().await?)
    }

    /// Refuse, before anything is sent, an image no SP would take.
    fn check_image(&self, component: SpComponent, image: &[u8]) -> Result<(), RegistryError> {
        let bad = |why: String| Err(UpdateError::BadImage(why).into());
        if image.is_empty() {
            return bad("the image is empty".into());
        }
        let max = self.max_image_len(component);
        if image.len() as u64 > max {
            return bad(format!(
                "the image is {} bytes; a {component} slot holds at most {max}",
                image.len()
            ));
        }
        if component == SpComponent::HOST_CPU_BOOT_FLASH {
            let reserved = &image[..image.len().min(HOST_FLASH_RESERVED)];
            if reserved.iter().any(|&b| b != 0xFF) {
                return bad(
                    "the first 64 KiB of a host-boot-flash image must be 0xFF (the SP keeps its own data there)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The SP's status of `component`. While an update of ours runs there,
    /// the answer comes from its actor's latest reading (no request).
    pub async fn update_status(
        &self,
        sp: &str,
        component: &str,
    ) -> Result<UpdateView, RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        let latest = self.latest_record(&sp, component).await?;
        let recent = latest.as_ref().and_then(|r| match &r.sp_status {
            Some((status, at))
                if !r.phase.is_terminal() && at.elapsed() <= Duration::from_secs(1) =>
            {
                Some((status.clone(), at.elapsed()))
            }
            _ => None,
        });
        let (sp_status, age) = match recent {
            Some(found) => found,
            None => match sp.rpc(MgsRequest::UpdateStatus(component)).await? {
                (SpResponse::UpdateStatus(s), _) => (SpUpdateState::from(s), Duration::ZERO),
                (other, _) => {
                    return Err(RpcError::Unexpected {
                        sp: sp.name().clone(),
                        response: format!("{other:?}"),
                    }
                    .into())
                }
            },
        };
        Ok(UpdateView {
            sp: sp.name().clone(),
            component: component.to_string(),
            sp_status,
            sp_status_age_ms: age.as_millis() as u64,
            delivery: latest,
        })
    }

    /// The record of our most recent update of `component` on `sp`.
    async fn latest_record(
        &self,
        sp: &SpHandle,
        component: SpComponent,
    ) -> Result<Option<UpdateRecord>, RegistryError> {
        let latest = Latest {
            sp: sp.name().clone(),
            component,
        };
        Ok(self.registry.send(latest).await?.map(|h| h.record()))
    }

    /// The handle of update `id`.
    pub async fn update(&self, id: uuid::Uuid) -> Result<UpdateHandle, RegistryError> {
        self.registry
            .send(Lookup(UpdateId::from(id)))
            .await?
            .ok_or(RegistryError::UnknownUpdate(id))
    }

    /// The daemon's record of update `id`.
    pub async fn update_record(&self, id: uuid::Uuid) -> Result<UpdateRecord, RegistryError> {
        Ok(self.update(id).await?.record())
    }

    /// Updates running now and a feed of those started later.
    pub async fn subscribe(
        &self,
    ) -> Result<(Vec<UpdateHandle>, broadcast::Receiver<UpdateHandle>), RegistryError> {
        Ok(self.registry.send(Subscribe).await?)
    }

    /// How many updates are running.
    pub async fn running_updates(&self) -> Result<usize, RegistryError> {
        Ok(self.registry.send(Subscribe).await?.0.len())
    }

    /// Ask the SP to abort update `id`; it does so only if `id` is its
    /// current update.
    pub async fn abort_update(
        &self,
        sp: &str,
        component: &str,
        id: uuid::Uuid,
    ) -> Result<(), RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        let ours = self.registry.send(Lookup(UpdateId::from(id))).await?;
        if let Some(update) = ours {
            let r = update.record();
            if r.sp == *sp.name() && r.component == component.to_string() {
                if let Some(result) = update.abort().await {
                    return Ok(result?);
                }
            }
        }
        // Not one of ours running there: the SP alone decides.
        let request = MgsRequest::UpdateAbort {
            component,
            id: UpdateId::from(id),
        };
        match sp.rpc(request).await {
            Ok(_) => Ok(()),
            Err(RpcError::Sp { sp, error }) => Err(UpdateError::AbortRefused {
                sp,
                component: component.to_string(),
                id,
                error,
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reset a component. For `sp` with a completed SP update this is an
    /// activation (see [`crate::activate`]): the outcome says whether the
    /// new image runs. It runs on its own task: a client that goes away
    /// mid-reset must not leave an armed watchdog behind.
    pub async fn reset(
        &self,
        sp: &str,
        component: &str,
        opts: ResetOptions,
    ) -> Result<Activation, RegistryError> {
        let component = parse_component(component)?;
        let sp = self.sp(sp).await?;
        // A reset ends whatever the SP is receiving (or, mid-activation,
        // races the reset already under way): not behind an update's back.
        if let Some(running) = self.registry.send(RunningOn(sp.name().clone())).await? {
            let r = running.record();
            return Err(UpdateError::ResetWouldEnd {
                sp: r.sp,
                component: r.component,
                id: r.id,
                phase: r.phase.as_str(),
            }
            .into());
        }
        // What our latest update of that component says of its image.
        let latest = self.latest_record(&sp, component).await?;
        let policy = self.settings.rpc;
        let span = tracing::info_span!("reset", sp = %sp.name(), component = %component);
        let task = actix::spawn(
            async move {
                let expected = move |id| {
                    latest
                        .filter(|r| r.id == id)
                        .and_then(|r| r.artifact.as_ref().map(Expected::of))
                };
                let result = activate(&sp, component, opts, &policy, expected).await;
                if let Ok(a) = &result {
                    crate::metrics::reset_done(sp.name().as_str(), a.outcome, a.method);
                }
                result
            }
            .instrument(span),
        );
        Ok(task.await.map_err(|_| RegistryError::Stopped)??)
    }
}
