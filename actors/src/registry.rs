//! `Registry`: owns the set of SpActors (started and stopped on
//! reconfiguration), resolves SP names and serial numbers, and keeps the
//! daemon-wide map of update ids. [`RegistryHandle`] is the typed API the
//! control socket calls; it routes each command to the right SpActor and
//! fans rack-wide queries out concurrently.

use crate::image::{ImageHash, ImageStore};
use crate::rpc::RpcError;
use crate::sp::{
    AbortUpdate, GetInfo, GetRecord, QueryUpdate, Rpc, RpcKind, SpActor, SpInfo, SpSettings,
    SpTarget, StartUpdate, UpdateView,
};
use crate::transport::{Transport, UdpTransport};
use crate::update_state::UpdateRecord;
use crate::{SpName, UpdateError, UpdateEvent};
use actix::prelude::*;
use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateId};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
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

/// What the registry runs.
#[derive(Clone)]
pub struct RegistryConfig {
    /// The SPs.
    pub sps: Vec<SpEntry>,
    /// Settings for every SP.
    pub settings: SpSettings,
    /// Transport maker; [`udp_transport`] by default.
    pub transport: TransportFactory,
}

impl RegistryConfig {
    /// SPs over UDP with `settings`.
    pub fn new(sps: Vec<SpEntry>, settings: SpSettings) -> Self {
        Self {
            sps,
            settings,
            transport: Arc::new(udp_transport),
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
    /// The daemon is shutting down.
    #[error("daemon is shutting down")]
    Stopped,
}

impl From<MailboxError> for RegistryError {
    fn from(_: MailboxError) -> Self {
        RegistryError::Stopped
    }
}

/// The registry actor. See the module docs.
pub struct Registry {
    sps: BTreeMap<SpName, (SpEntry, Addr<SpActor>)>,
    settings: SpSettings,
    transport: TransportFactory,
    events: broadcast::Sender<UpdateEvent>,
    ids: HashMap<UpdateId, (SpName, SpComponent, ImageHash)>,
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Registry {
    fn start_sp(&mut self, entry: SpEntry) -> io::Result<()> {
        let transport = (self.transport)(&entry)?;
        let actor = SpActor::new(
            entry.name.clone(),
            entry.target.clone(),
            transport,
            self.settings.clone(),
            self.events.clone(),
        )
        .start();
        self.sps.insert(entry.name.clone(), (entry, actor));
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "Vec<(SpName, Addr<SpActor>)>")]
struct ListSps;

impl Handler<ListSps> for Registry {
    type Result = MessageResult<ListSps>;
    fn handle(&mut self, _: ListSps, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sps
                .iter()
                .map(|(n, (_, a))| (n.clone(), a.clone()))
                .collect(),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Option<Addr<SpActor>>")]
struct ByName(String);

impl Handler<ByName> for Registry {
    type Result = Option<Addr<SpActor>>;
    fn handle(&mut self, msg: ByName, _: &mut Context<Self>) -> Self::Result {
        self.sps
            .get(&SpName::from(msg.0.as_str()))
            .map(|(_, a)| a.clone())
    }
}

/// Reserve an update id for an SP, component and image.
#[derive(Message)]
#[rtype(result = "Result<(), UpdateError>")]
struct ClaimId {
    id: UpdateId,
    sp: SpName,
    component: SpComponent,
    image: ImageHash,
}

impl Handler<ClaimId> for Registry {
    type Result = Result<(), UpdateError>;
    fn handle(&mut self, msg: ClaimId, _: &mut Context<Self>) -> Self::Result {
        match self.ids.get(&msg.id) {
            Some((sp, component, image))
                if (sp, component, image) != (&msg.sp, &msg.component, &msg.image) =>
            {
                Err(UpdateError::Conflict {
                    id: msg.id.as_uuid(),
                    detail: format!(
                        "it already names an update of {sp} {component} with image {image}"
                    ),
                })
            }
            Some(_) => Ok(()),
            None => {
                self.ids.insert(msg.id, (msg.sp, msg.component, msg.image));
                Ok(())
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseId(UpdateId);

impl Handler<ReleaseId> for Registry {
    type Result = ();
    fn handle(&mut self, msg: ReleaseId, _: &mut Context<Self>) {
        self.ids.remove(&msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "Option<Addr<SpActor>>")]
struct ByUpdate(UpdateId);

impl Handler<ByUpdate> for Registry {
    type Result = Option<Addr<SpActor>>;
    fn handle(&mut self, msg: ByUpdate, _: &mut Context<Self>) -> Self::Result {
        let (sp, _, _) = self.ids.get(&msg.0)?;
        self.sps.get(sp).map(|(_, a)| a.clone())
    }
}

/// Replace the SP set: start new SPs, stop removed or changed ones.
#[derive(Message)]
#[rtype(result = "io::Result<()>")]
struct Reconfigure(Vec<SpEntry>);

impl Handler<Reconfigure> for Registry {
    type Result = io::Result<()>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        let wanted: BTreeMap<SpName, SpEntry> =
            msg.0.into_iter().map(|e| (e.name.clone(), e)).collect();
        self.sps.retain(|name, (entry, _)| {
            let keep = wanted.get(name) == Some(entry);
            if !keep {
                info!(sp = %name, "SP removed from configuration");
            }
            keep // dropping the last Addr stops the actor
        });
        for (name, entry) in wanted {
            if !self.sps.contains_key(&name) {
                info!(sp = %name, target = ?entry.target, "SP added");
                self.start_sp(entry)?;
            }
        }
        Ok(())
    }
}

/// The typed API over the registry and its SPs.
#[derive(Clone)]
pub struct RegistryHandle {
    registry: Addr<Registry>,
    events: broadcast::Sender<UpdateEvent>,
    images: ImageStore,
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

impl RegistryHandle {
    /// Start the registry and an actor per SP (inside an actix system).
    pub fn start(config: RegistryConfig) -> io::Result<Self> {
        let (events, _) = broadcast::channel(1024);
        let mut registry = Registry {
            sps: BTreeMap::new(),
            settings: config.settings,
            transport: config.transport,
            events: events.clone(),
            ids: HashMap::new(),
        };
        for entry in config.sps {
            registry.start_sp(entry)?;
        }
        Ok(Self {
            registry: registry.start(),
            events,
            images: ImageStore::default(),
        })
    }

    /// Update events (progress, completion, failure) of every SP.
    pub fn subscribe(&self) -> broadcast::Receiver<UpdateEvent> {
        self.events.subscribe()
    }

    /// The image store (one copy per image).
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Replace the configured SPs.
    pub async fn reconfigure(&self, sps: Vec<SpEntry>) -> Result<(), RegistryError> {
        self.registry
            .send(Reconfigure(sps))
            .await?
            .map_err(|e| RegistryError::BadComponent {
                name: "transport".into(),
                reason: e.to_string(),
            })
    }

    /// Every SP, queried concurrently.
    pub async fn list(&self) -> Result<Vec<SpInfo>, RegistryError> {
        let sps = self.registry.send(ListSps).await?;
        let asks: Vec<_> = sps.iter().map(|(_, a)| a.send(GetInfo)).collect();
        let mut out = Vec::with_capacity(asks.len());
        for ask in asks {
            out.push(ask.await?);
        }
        Ok(out)
    }

    /// Resolve an SP by name, or by serial number once it is known.
    pub async fn resolve(&self, sp: &str) -> Result<Addr<SpActor>, RegistryError> {
        if let Some(addr) = self.registry.send(ByName(sp.into())).await? {
            return Ok(addr);
        }
        let sps = self.registry.send(ListSps).await?;
        for (_, addr) in sps {
            let info = addr.send(GetInfo).await?;
            if info.identity.is_some_and(|i| i.serial == sp) {
                return Ok(addr);
            }
        }
        Err(RegistryError::UnknownSp(sp.into()))
    }

    /// One SP's info.
    pub async fn info(&self, sp: &str) -> Result<SpInfo, RegistryError> {
        Ok(self.resolve(sp).await?.send(GetInfo).await?)
    }

    /// Send a request to an SP and return its answer.
    pub async fn rpc(
        &self,
        sp: &str,
        request: MgsRequest,
    ) -> Result<(SpResponse, Vec<u8>), RegistryError> {
        Ok(self.resolve(sp).await?.send(Rpc::new(request)).await??)
    }

    /// Start (or idempotently re-start) an update. Returns once the SP has
    /// acknowledged the prepare; delivery continues in the background.
    pub async fn start_update(
        &self,
        sp: &str,
        component: &str,
        slot: u16,
        id: uuid::Uuid,
        image: Vec<u8>,
    ) -> Result<UpdateRecord, RegistryError> {
        let component = parse_updatable(component)?;
        let addr = self.resolve(sp).await?;
        let name = addr.send(GetInfo).await?.name;
        let images = self.images.clone();
        let image = tokio::task::spawn_blocking(move || images.insert(image))
            .await
            .map_err(|_| RegistryError::Stopped)?;
        let id = UpdateId::from(id);
        self.registry
            .send(ClaimId {
                id,
                sp: name,
                component,
                image: image.hash,
            })
            .await??;
        let result = addr
            .send(StartUpdate {
                component,
                slot,
                id,
                image,
            })
            .await?;
        if let Err(
            UpdateError::Prepare(_) | UpdateError::AlreadyRunning { .. } | UpdateError::BadImage(_),
        ) = &result
        {
            // Nothing was started under this id: it stays free.
            self.registry.do_send(ReleaseId(id));
        }
        Ok(result?)
    }

    /// The SP's status of `component`, merged with the daemon's record.
    pub async fn update_status(
        &self,
        sp: &str,
        component: &str,
    ) -> Result<UpdateView, RegistryError> {
        let component = parse_updatable(component)?;
        Ok(self
            .resolve(sp)
            .await?
            .send(QueryUpdate { component })
            .await??)
    }

    /// The daemon's record of update `id`.
    pub async fn update_record(&self, id: uuid::Uuid) -> Result<UpdateRecord, RegistryError> {
        let addr = self
            .registry
            .send(ByUpdate(UpdateId::from(id)))
            .await?
            .ok_or(RegistryError::UnknownUpdate(id))?;
        addr.send(GetRecord(UpdateId::from(id)))
            .await?
            .ok_or(RegistryError::UnknownUpdate(id))
    }

    /// Ask the SP to abort update `id`; it does so only if `id` is current.
    pub async fn abort_update(
        &self,
        sp: &str,
        component: &str,
        id: uuid::Uuid,
    ) -> Result<(), RegistryError> {
        let component = parse_updatable(component)?;
        let addr = self.resolve(sp).await?;
        Ok(addr
            .send(AbortUpdate {
                component,
                id: UpdateId::from(id),
            })
            .await??)
    }

    /// Reset a component (`sp` reboots the SP: success is the rebooted SP
    /// answering a retried trigger with "without prepare").
    pub async fn reset(&self, sp: &str, component: &str) -> Result<(), RegistryError> {
        let component = parse_component(component)?;
        let addr = self.resolve(sp).await?;
        addr.send(Rpc::new(MgsRequest::ResetComponentPrepare { component }))
            .await??;
        let trigger = Rpc {
            request: MgsRequest::ResetComponentTrigger { component },
            trailing: Vec::new(),
            kind: RpcKind::Reset,
        };
        let result = addr.send(trigger).await?;
        let name = addr.send(GetInfo).await?.name;
        match (component, result) {
            (
                SpComponent::SP_ITSELF,
                Err(RpcError::Sp {
                    error: SpError::ResetComponentTriggerWithoutPrepare,
                    ..
                }),
            ) => Ok(()),
            (SpComponent::SP_ITSELF, Ok((response, _))) => Err(RpcError::Unexpected {
                sp: name,
                response: format!("{response:?} (an SP acknowledging its own reset did not reset)"),
            }
            .into()),
            (_, Ok(_)) => Ok(()),
            (_, Err(e)) => Err(e.into()),
        }
    }
}
