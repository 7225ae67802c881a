//! [`RegistryHandle`], the typed API the daemon's doors (the control
//! socket, the HTTP API) and the tests call: SPs, updates (start, status,
//! abort, history, watch), resets, the audit log, reconfiguration and
//! shutdown.

use super::{
    IsBound, Latest, ListSps, Lookup, Reconfigure, Registry, RegistryConfig, Resolve, SpEntry,
    Start, State, Stopping, Subscribe,
};
use crate::activate::activate;
use crate::error::{RegistryError, RpcError, UpdateError};
use crate::image::ImageStore;
use crate::intake::{Intake, StartUpdate};
use crate::journal::JournalHandle;
use crate::phase2::Phase2Cache;
use crate::record::{SpUpdateState, UpdateRow};
use crate::reset::{Activation, Expected, ResetOptions};
use crate::settings::SpSettings;
use crate::sp::{SlotBusy, SpHandle, SpInfo};
use crate::store::AuditEntry;
use crate::types::{parse_component, parse_updatable, Operation, SpName};
use crate::update::UpdateHandle;
use actix::prelude::*;
use gateway_messages::{MgsRequest, SpComponent, SpResponse, UpdateId};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::Instrument;

/// Finished updates, newest first, that match.
#[derive(Message)]
#[rtype(result = "Vec<UpdateHandle>")]
pub struct History {
    /// Only this SP's (by name).
    pub sp: Option<SpName>,
    pub component: Option<gateway_messages::SpComponent>,
    /// Only those finished at or after this (Unix ms).
    pub since_unix_ms: Option<u64>,
    pub limit: usize,
}

impl History {
    pub(super) fn matches(&self, h: &UpdateHandle) -> bool {
        let s = h.spec();
        self.sp.as_ref().is_none_or(|sp| s.sp == *sp)
            && self.component.is_none_or(|c| s.component == c)
            && self
                .since_unix_ms
                .is_none_or(|t| h.progress().finished_unix_ms.is_some_and(|f| f >= t))
    }
}

/// The SP's status of a component, with our latest update to it.
#[derive(Debug, Clone)]
pub struct UpdateView {
    pub sp: SpName,
    pub component: gateway_messages::SpComponent,
    /// What the SP itself reports (the source of truth).
    pub sp_status: SpUpdateState,
    /// How old that report is: zero when just asked. While an update of
    /// ours runs there, its actor's latest reading serves (at most two
    /// poll intervals old).
    pub sp_status_age: Duration,
    /// Our most recent update to this component.
    pub delivery: Option<UpdateHandle>,
}

/// One SP as `list` shows it.
#[derive(Clone)]
pub struct SpSummary {
    pub sp: SpHandle,
    /// What its actor publishes.
    pub info: SpInfo,
    /// Our update running on it.
    pub active_update: Option<UpdateHandle>,
    /// Updates it holds whose ids we do not know: (component, status).
    pub unknown_updates: Vec<(gateway_messages::SpComponent, SpUpdateState)>,
}

/// The typed API over the registry and its SPs.
#[derive(Clone)]
pub struct RegistryHandle {
    registry: Addr<Registry>,
    intake: Intake,
    settings: SpSettings,
    journal: Option<JournalHandle>,
    /// The scrimlet's own sled (name or serial), which rollouts spare.
    pub own_sp: Option<String>,
    phase2: Arc<Phase2Cache>,
}

impl RegistryHandle {
    /// Start the registry and an actor per SP (inside an actix system),
    /// keeping no state.
    pub fn start(config: RegistryConfig) -> io::Result<Self> {
        Ok(Self::start_with_state(config, None)?.0)
    }

    /// Start the registry, an actor per SP and, with `state`, the journal:
    /// updates it holds are taken up again (ended ones as history). Also
    /// returns the journal's rollouts (for the rollouts above this) and
    /// the rows that could not be read (left in place).
    pub fn start_with_state(
        config: RegistryConfig,
        state: Option<State>,
    ) -> io::Result<(Self, Vec<crate::rollout_state::RolloutRecord>, Vec<String>)> {
        let (started, _) = broadcast::channel(1024);
        let images = ImageStore::default();
        let (mut rows, mut unreadable, mut rollouts) = (Vec::new(), Vec::new(), Vec::new());
        let (journal, spool) = match state {
            Some(State { store, spool }) => {
                match store.load() {
                    Ok((r, bad)) => (rows, unreadable) = (r, bad),
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
            phase2: config.phase2.clone(),
            stopping: false,
            unknown: BTreeMap::new(),
        };
        for entry in config.sps {
            registry.start_sp(entry)?;
        }
        let rows: Vec<UpdateRow> = rows;
        let registry = Registry::create(move |ctx| {
            registry.restore(rows, ctx);
            registry
        });
        let handle = Self {
            registry,
            intake: Intake {
                images,
                spool,
                delivery: config.settings.delivery.clone(),
                read_timeout: config.image_read_timeout,
                archive_work: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    crate::intake::ARCHIVES_AT_ONCE,
                )),
            },
            settings: config.settings,
            journal,
            own_sp: config.own_sp,
            phase2: config.phase2,
        };
        Ok((handle, rollouts, unreadable))
    }

    /// Shutting down: refuse new updates, journal where every running one
    /// stands, and wait until that is written. The updates stay on their
    /// SPs and are taken up again at the next start. Returns them.
    pub async fn stop(&self) -> Result<Vec<UpdateHandle>, RegistryError> {
        let running = self.registry.send(Stopping).await?;
        for update in &running {
            update.persist().await;
        }
        if let Some(j) = &self.journal {
            j.flush().await;
        }
        Ok(running)
    }

    pub fn settings(&self) -> &SpSettings {
        &self.settings
    }

    /// Where images are held and checked.
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// The journal, where the daemon keeps state.
    pub fn journal(&self) -> Option<&JournalHandle> {
        self.journal.as_ref()
    }

    /// Keep an audit entry, where there is a state directory.
    pub fn audit(&self, entry: AuditEntry) {
        if let Some(j) = &self.journal {
            j.audit(entry);
        }
    }

    /// Audit entries at or after `since_unix_ms`, newest first (none
    /// without a state directory).
    pub async fn audit_log(&self, since_unix_ms: u64, limit: usize) -> Vec<AuditEntry> {
        match &self.journal {
            Some(j) => j.audit_log(since_unix_ms, limit).await,
            None => Vec::new(),
        }
    }

    /// Finished updates, newest first.
    pub async fn history(&self, query: History) -> Result<Vec<UpdateHandle>, RegistryError> {
        Ok(self.registry.send(query).await?)
    }

    /// The image store (one copy per image).
    pub fn images(&self) -> &ImageStore {
        &self.intake.images
    }

    /// Load a client's image file (at most `max` bytes) off the actor
    /// threads, within the image read timeout.
    pub async fn load_image(
        &self,
        file: std::fs::File,
        max: u64,
    ) -> Result<Arc<crate::image::Image>, RegistryError> {
        self.intake
            .load_file(file, max)
            .await?
            .map_err(|e| crate::intake::load_error(SpComponent::HOST_CPU_BOOT_FLASH, e))
    }

    /// The phase-2 recovery images recovering hosts are served from.
    pub fn phase2(&self) -> &Arc<Phase2Cache> {
        &self.phase2
    }

    /// Replace the configured SPs (see [`Reconfigure`]'s rules).
    pub async fn reconfigure(&self, sps: Vec<SpEntry>) -> Result<(), RegistryError> {
        self.registry.send(Reconfigure(sps)).await?
    }

    /// Every SP, from what their actors publish (no SP is asked).
    pub async fn list(&self) -> Result<Vec<SpSummary>, RegistryError> {
        Ok(self.registry.send(ListSps).await?)
    }

    /// Resolve an SP by name, or by serial number once it is known.
    pub async fn sp(&self, sp: &str) -> Result<SpHandle, RegistryError> {
        self.registry
            .send(Resolve(sp.into()))
            .await?
            .ok_or_else(|| RegistryError::UnknownSp(sp.into()))
    }

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

    /// Whether any update is bound to `id`.
    pub async fn is_bound(&self, id: uuid::Uuid) -> Result<bool, RegistryError> {
        Ok(self.registry.send(IsBound(id)).await?)
    }

    /// Start (or find, idempotently) an update. Returns once the SP has
    /// accepted the prepare; delivery goes on in the background. An
    /// update that already ended is returned as it ended. A start that is
    /// refused leaves nothing behind: no record, no journal row, no
    /// binding.
    pub async fn start_update(&self, start: StartUpdate) -> Result<UpdateHandle, RegistryError> {
        let component = parse_updatable(&start.component)?;
        let sp = self.sp(&start.sp).await?;
        let take_over = start.take_over;
        let (mut spec, image) = self.intake.take(&sp, component, start).await?;
        if take_over {
            if let Some(held) = self.take_over(&sp, component, spec.id).await? {
                let mut replaced = (*spec).clone();
                replaced.took_over = Some(held);
                spec = std::sync::Arc::new(replaced);
            }
        }
        let started = self.registry.send(Start { sp, spec, image }).await?;
        started
            .await
            .map_err(|_| RegistryError::Stopped)?
            .map_err(RegistryError::Update)
    }

    /// Abort the update of an unknown client that `sp` holds for
    /// `component` (its id, if there was one), so that update `ours` can
    /// take its place. One of our own running there is not taken over:
    /// that is an abort's to end.
    async fn take_over(
        &self,
        sp: &SpHandle,
        component: gateway_messages::SpComponent,
        ours: uuid::Uuid,
    ) -> Result<Option<uuid::Uuid>, RegistryError> {
        let state = SpUpdateState::from(sp.update_status(component).await?);
        let Some(held) = state.id().filter(|h| *h != ours) else {
            return Ok(None);
        };
        if matches!(state, SpUpdateState::Aborted { .. }) {
            return Ok(None);
        }
        if let Ok(ours) = self.update(held).await {
            if ours.is_running() {
                return Err(UpdateError::AlreadyRunning {
                    sp: sp.name().clone(),
                    component,
                    id: held,
                }
                .into());
            }
        }
        let request = MgsRequest::UpdateAbort {
            component,
            id: UpdateId::from(held),
        };
        sp.ack(request, SpResponse::UpdateAbortAck).await?;
        tracing::warn!(sp = %sp.name(), %component, update = %held, "took over: aborted the update the SP held");
        Ok(Some(held))
    }

    /// The SP's status of `component`, with our latest update to it.
    pub async fn update_status(
        &self,
        sp: &str,
        component: &str,
    ) -> Result<UpdateView, RegistryError> {
        let component = parse_updatable(component)?;
        let sp = self.sp(sp).await?;
        let latest = self.latest(&sp, component).await?;
        // While our update polls the SP, its readings serve; otherwise
        // the SP is asked now.
        let max_age = match &latest {
            Some(u) if u.is_running() => self.settings.delivery.status_poll_interval * 2,
            _ => Duration::ZERO,
        };
        let (sp_status, sp_status_age) = sp.update_status_within(component, max_age).await?;
        Ok(UpdateView {
            sp: sp.name().clone(),
            component,
            sp_status,
            sp_status_age,
            delivery: latest,
        })
    }

    /// Our most recent update of `component` on `sp` (by its name, or the
    /// serial it has).
    async fn latest(
        &self,
        sp: &SpHandle,
        component: gateway_messages::SpComponent,
    ) -> Result<Option<UpdateHandle>, RegistryError> {
        let latest = Latest {
            sp: sp.name().clone(),
            serial: sp.serial(),
            component,
        };
        Ok(self.registry.send(latest).await?)
    }

    /// The handle of update `id`.
    pub async fn update(&self, id: uuid::Uuid) -> Result<UpdateHandle, RegistryError> {
        self.registry
            .send(Lookup(id))
            .await?
            .ok_or(RegistryError::UnknownUpdate(id))
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
        if let Some(update) = self.registry.send(Lookup(id)).await? {
            let s = update.spec();
            if s.sp == *sp.name() && s.component == component {
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
        match sp.ack(request, SpResponse::UpdateAbortAck).await {
            Ok(()) => Ok(()),
            Err(RpcError::Sp { sp, error }) => Err(UpdateError::AbortRefused {
                sp,
                component,
                id,
                error,
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reset a component. For `sp` with a completed SP update this is an
    /// activation (see [`crate::activate`]): the outcome says whether the
    /// new image runs. It holds the SP's operation slot: refused while an
    /// update of ours runs there (the reset would end it), after another
    /// reset under way. It runs on its own task: a client that goes away
    /// mid-reset must not leave an armed watchdog behind.
    pub async fn reset(
        &self,
        sp: &str,
        component: &str,
        opts: ResetOptions,
    ) -> Result<Activation, RegistryError> {
        let component = parse_component(component)?;
        let sp = self.sp(sp).await?;
        let this = self.clone();
        let span = tracing::info_span!("reset", sp = %sp.name(), component = %component);
        let task = actix::spawn(
            async move {
                let _claim = match sp.claim(Operation::Reset { component }).await {
                    Ok(claim) => claim,
                    Err(SlotBusy::Held(held)) => {
                        let sp = sp.name().clone();
                        return Err(UpdateError::SpBusy { sp, held }.into());
                    }
                    Err(SlotBusy::Stopped) => {
                        return Err(RpcError::Stopped {
                            sp: sp.name().clone(),
                        }
                        .into())
                    }
                };
                // What our latest update of that component says of its image.
                let latest = this.latest(&sp, component).await?;
                let expected = move |id| {
                    latest
                        .filter(|u| u.id() == id)
                        .and_then(|u| u.spec().artifact.as_ref().map(Expected::of))
                };
                let activation = activate(&sp, component, opts, &this.settings.rpc, expected)
                    .await
                    .map_err(RegistryError::Rpc)?;
                crate::activate::count(sp.name(), &activation);
                Ok(activation)
            }
            .instrument(span),
        );
        task.await.map_err(|_| RegistryError::Stopped)?
    }
}
