//! Rollouts: many SPs updated as one plan. [`Rollouts`] keeps one
//! [`RolloutHandle`] per rollout (started here, or taken up from the
//! journal after a restart); each rollout's actor owns its record. This
//! layer stands on the registry's typed API: it starts target updates
//! like any client, with ids derived from the rollout's.

mod actor;
pub mod plan;
mod rollout_metrics;

pub use actor::RolloutHandle;

use crate::error::{RegistryError, UpdateError};
use crate::image::{Image, ImageHash};
use crate::registry::RegistryHandle;
use crate::rollout_state::{Live, RolloutRecord, RolloutSpec, TargetState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Every rollout the daemon knows, by id.
#[derive(Clone)]
pub struct Rollouts {
    registry: RegistryHandle,
    rollouts: Arc<Mutex<HashMap<uuid::Uuid, RolloutHandle>>>,
    /// Ended rollouts older than this are forgotten (the journal's
    /// history retention).
    max_age: Option<Duration>,
}

impl Rollouts {
    /// Take up the journalled `records`: each goes on where it was (its
    /// running targets' updates are the same ones, resumed by the
    /// registry).
    pub fn start(
        registry: RegistryHandle,
        records: Vec<RolloutRecord>,
        max_age: Option<Duration>,
    ) -> Self {
        let this = Self {
            registry,
            rollouts: Arc::default(),
            max_age,
        };
        for mut record in records {
            let mut images = HashMap::new();
            if !record.phase.is_terminal() {
                record.resumed += 1;
                info!(rollout = %record.id, phase = record.phase.as_str(), "resuming the rollout");
                for t in &record.targets {
                    if images.contains_key(&t.image_sha256) {
                        continue;
                    }
                    match this.read_back(&t.image_sha256, t.total_bytes) {
                        Ok(Some(image)) => {
                            images.insert(t.image_sha256.clone(), image);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(rollout = %record.id, error = %e, "a rollout's image cannot be read back")
                        }
                    }
                }
            }
            let id = record.id;
            let handle = RolloutHandle::start(
                record,
                images,
                this.registry.clone(),
                this.registry.journal().cloned(),
            );
            this.lock().insert(id, handle);
        }
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, RolloutHandle>> {
        self.rollouts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A spooled image, read back (`None` without a spool).
    fn read_back(&self, sha256: &str, len: u64) -> Result<Option<Arc<Image>>, String> {
        let Some(hash) = ImageHash::from_hex(sha256) else {
            return Ok(None);
        };
        let Some(spool) = self.registry.intake().spool.as_ref() else {
            return Ok(None);
        };
        spool
            .get(&hash, len, self.registry.images())
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Start rollout `id` of `spec` (its targets name `images` by index),
    /// or find it started already with the same plan. The whole plan is
    /// checked first, and every problem named with its line; nothing is
    /// sent to any SP unless it is all good.
    pub async fn begin(
        &self,
        id: uuid::Uuid,
        spec: RolloutSpec<usize>,
        images: Vec<Arc<Image>>,
    ) -> Result<RolloutHandle, RegistryError> {
        let sps: Vec<_> = self
            .registry
            .list()
            .await?
            .into_iter()
            .map(|s| s.sp)
            .collect();
        let own = self.registry.own_sp.as_deref();
        let record = plan::plan(id, &spec, &images, &sps, own, self.registry.intake())
            .map_err(RegistryError::Plan)?;
        if self.registry.is_bound(id).await? {
            return Err(UpdateError::IdTaken {
                id,
                what: "an update",
            }
            .into());
        }
        if let Some(spool) = self.registry.intake().spool.clone() {
            let kept = images.clone();
            tokio::task::spawn_blocking(move || kept.iter().try_for_each(|i| spool.put(i)))
                .await
                .map_err(|_| RegistryError::Stopped)?
                .map_err(|e| UpdateError::Spool(Arc::new(e)))?;
        }
        let mut rollouts = self.lock();
        if let Some(existing) = rollouts.get(&id) {
            return if existing.record().plan_sha256 == record.plan_sha256 {
                Ok(existing.clone())
            } else {
                Err(UpdateError::IdTaken {
                    id,
                    what: "a rollout of another plan",
                }
                .into())
            };
        }
        info!(rollout = %id, targets = record.targets.len(), waves = record.waves, "rollout started");
        let images = images
            .into_iter()
            .map(|i| (i.hash.to_string(), i))
            .collect();
        let handle = RolloutHandle::start(
            record,
            images,
            self.registry.clone(),
            self.registry.journal().cloned(),
        );
        rollouts.insert(id, handle.clone());
        self.prune(&mut rollouts);
        Ok(handle)
    }

    /// Forget ended rollouts past the retention.
    fn prune(&self, rollouts: &mut HashMap<uuid::Uuid, RolloutHandle>) {
        let Some(age) = self.max_age else {
            return;
        };
        let too_old = crate::types::unix_ms().saturating_sub(age.as_millis() as u64);
        rollouts.retain(|_, h| {
            let r = h.record();
            !(r.phase.is_terminal() && r.finished_unix_ms.is_some_and(|f| f < too_old))
        });
    }

    pub fn get(&self, id: uuid::Uuid) -> Result<RolloutHandle, RegistryError> {
        self.lock()
            .get(&id)
            .cloned()
            .ok_or(RegistryError::UnknownRollout(id))
    }

    /// Every rollout within the retention, oldest first.
    pub fn all(&self) -> Vec<RolloutHandle> {
        let mut rollouts = self.lock();
        self.prune(&mut rollouts);
        let mut all: Vec<RolloutHandle> = rollouts.values().cloned().collect();
        all.sort_by_key(|h| h.record().created_unix_ms);
        all
    }

    /// How the targets of `record` that were started go, read from
    /// their updates (those still remembered).
    pub async fn live(&self, record: &RolloutRecord) -> HashMap<uuid::Uuid, Live> {
        let now = tokio::time::Instant::now();
        let mut live = HashMap::new();
        for t in record
            .targets
            .iter()
            .filter(|t| t.state != TargetState::Pending)
        {
            if let Ok(u) = self.registry.update(t.update_id).await {
                let p = u.progress();
                let rate = (t.state == TargetState::Running)
                    .then(|| p.rate(now))
                    .flatten();
                live.insert(
                    t.update_id,
                    Live {
                        phase: p.phase,
                        bytes_acked: p.bytes_acked,
                        rate,
                    },
                );
            }
        }
        live
    }
}
