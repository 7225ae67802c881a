//! `Registry`: owns the set of SP actors (started and stopped on
//! reconfiguration), resolves SP names and serial numbers, and indexes
//! updates by id. One rule, applied atomically in its mailbox, decides
//! every start: an id is bound to exactly (SP, component, slot, image
//! SHA-256); the same id with the same binding is the same update, whatever
//! its state; anything else is a conflict. Finished updates stay in a
//! bounded history. [`RegistryHandle`] is the typed API the control socket
//! (and the tests) use.

use crate::image::{Image, ImageHash, ImageStore};
use crate::rpc::RpcError;
use crate::sp::{RpcKind, SpHandle, SpInfo, SpSettings, SpTarget};
use crate::transport::{Transport, UdpTransport};
use crate::update::{UpdateEnded, UpdateHandle, UpdatePlan};
use crate::update_state::{SpUpdateState, UpdateRecord};
use crate::{SpName, UpdateError};
use actix::prelude::*;
use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::info;

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
}

impl RegistryConfig {
    /// SPs over UDP with `settings`.
    pub fn new(sps: Vec<SpEntry>, settings: SpSettings) -> Self {
        Self {
            sps,
            settings,
            transport: Arc::new(udp_transport),
            history: DEFAULT_HISTORY,
        }
    }
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
    /// The image file cannot be used.
    #[error("image {path}: {message}")]
    ImageUnreadable {
        /// The path the client named.
        path: String,
        /// Why.
        message: String,
    },
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

/// The registry actor. See the module docs.
pub struct Registry {
    sps: BTreeMap<SpName, (SpEntry, SpHandle)>,
    settings: SpSettings,
    transport: TransportFactory,
    updates: HashMap<UpdateId, (Binding, UpdateHandle)>,
    /// Ended updates, oldest first.
    finished: VecDeque<UpdateId>,
    history: usize,
    started: broadcast::Sender<UpdateHandle>,
}

impl Actor for Registry {
    type Context = Context<Self>;
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
        let handle = UpdateHandle::start(
            msg.sp,
            msg.plan,
            self.settings.delivery.clone(),
            ctx.address().recipient(),
        );
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
        while self.finished.len() > self.history {
            if let Some(oldest) = self.finished.pop_front() {
                self.updates.remove(&oldest);
            }
        }
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
}

/// Components updates can target.
pub const UPDATABLE: [SpComponent; 4] = [
    SpComponent::SP_ITSELF,
    SpComponent::HOST_CPU_BOOT_FLASH,
    SpComponent::ROT,
    SpComponent::STAGE0,
];

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
    /// Start the registry and an actor per SP (inside an actix system).
    pub fn start(config: RegistryConfig) -> io::Result<Self> {
        let (started, _) = broadcast::channel(1024);
        let mut registry = Registry {
            sps: BTreeMap::new(),
            settings: config.settings.clone(),
            transport: config.transport,
            updates: HashMap::new(),
            finished: VecDeque::new(),
            history: config.history,
            started,
        };
        for entry in config.sps {
            registry.start_sp(entry)?;
        }
        Ok(Self {
            registry: registry.start(),
            images: ImageStore::default(),
            settings: config.settings,
        })
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

    /// [`RegistryHandle::start_update`] with the image in the file at
    /// `path`, read only once the SP and component are known good, and
    /// not at all if the store holds it already.
    pub async fn start_update_file(
        &self,
        sp: &str,
        component: &str,
        slot: u16,
        id: uuid::Uuid,
        path: &std::path::Path,
    ) -> Result<UpdateRecord, RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        let max = self.max_image_len(component);
        let (images, file) = (self.images.clone(), path.to_path_buf());
        let image = tokio::task::spawn_blocking(move || images.load_file(&file, max))
            .await
            .map_err(|_| RegistryError::Stopped)?
            .map_err(|e| RegistryError::ImageUnreadable {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        self.start_update_image(&sp, component, slot, id, image)
            .await
    }

    /// The largest image `component` takes.
    fn max_image_len(&self, component: SpComponent) -> u64 {
        if component == SpComponent::HOST_CPU_BOOT_FLASH {
            u64::from(self.settings.delivery.host_flash_capacity_mib) * 1024 * 1024
        } else {
            u64::from(u32::MAX)
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
        self.check_image(component, &image.data)?;
        let plan = UpdatePlan {
            id: UpdateId::from(id),
            component,
            slot,
            image,
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
        let latest = self
            .registry
            .send(Latest {
                sp: sp.name().clone(),
                component,
            })
            .await?
            .map(|h| h.record());
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

    /// Reset a component (`sp` reboots the SP: success is the rebooted SP
    /// answering a resent trigger with "without prepare").
    pub async fn reset(&self, sp: &str, component: &str) -> Result<(), RegistryError> {
        let component = parse_component(component)?;
        let sp = self.sp(sp).await?;
        sp.rpc(MgsRequest::ResetComponentPrepare { component })
            .await?;
        let result = sp
            .rpc_with(
                MgsRequest::ResetComponentTrigger { component },
                RpcKind::Reset,
            )
            .await;
        match (component, result) {
            (
                SpComponent::SP_ITSELF,
                Err(RpcError::Sp {
                    error: SpError::ResetComponentTriggerWithoutPrepare,
                    ..
                }),
            ) => Ok(()),
            (SpComponent::SP_ITSELF, Ok((response, _))) => Err(RpcError::Unexpected {
                sp: sp.name().clone(),
                response: format!("{response:?} (an SP acknowledging its own reset did not reset)"),
            }
            .into()),
            (_, Ok(_)) => Ok(()),
            (_, Err(e)) => Err(e.into()),
        }
    }
}
