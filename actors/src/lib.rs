//! mgsd's actors (actix on tokio). Each piece of state has one owner:
//!
//! - [`sp::SpActor`]: one per SP; owns its socket, message ids, the
//!   requests in flight (one deadline heap, one timer) and the chunk stream
//!   of the update being delivered; publishes the SP's identity.
//! - [`update::UpdateActor`]: one per update; owns the update's only record
//!   and publishes it on a `watch`; prepares, waits out the erase, leases
//!   the image to the SP actor, resumes after stalls, verifies, aborts.
//! - [`registry::Registry`]: the SP actors and the index of updates by id,
//!   with the one conflict rule; [`registry::RegistryHandle`] is the typed
//!   API the control socket (and the tests) use.
//!
//! Pure parts are plain types with unit tests: [`rpc`] (timeouts, patience,
//! backoff), [`deadlines`], [`delivery`] (the chunk stream),
//! [`update_state`] (records and the decisions on the SP's answers),
//! [`image`] (images shared by hash).

pub mod activate;
pub mod deadlines;
pub mod delivery;
pub mod image;
pub mod journal;
pub mod metrics;
pub mod registry;
pub mod rollout;
pub mod rollout_state;
pub mod rpc;
pub mod sp;
pub mod store;
pub mod transport;
pub mod update;
pub mod update_state;

pub use registry::{RegistryConfig, RegistryError, RegistryHandle, SpEntry, SpSummary, UpdateView};
pub use rpc::{RpcError, RpcPolicy};
pub use sp::{SpHandle, SpInfo, SpSettings, SpTarget};
pub use update::{DeliverySettings, UpdateHandle};
pub use update_state::{Phase, SpUpdateState, UpdateRecord};

use serde::{Deserialize, Serialize};

use std::fmt;
use std::sync::Arc;

/// An SP's configured name (`sled-7`, `switch-0`, `psc-1`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpName(Arc<str>);

impl SpName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SpName {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for SpName {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for SpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de> Deserialize<'de> for SpName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SpName::from)
    }
}

impl Serialize for SpName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why an update could not be started, aborted or delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpdateError {
    /// The id is taken by a different image or target.
    #[error("update id {id} conflicts: {detail}")]
    Conflict {
        /// The id.
        id: uuid::Uuid,
        /// What it is already used for.
        detail: String,
    },
    /// Another update is running on the SP (it has one update buffer).
    #[error("{sp}: update {id} of {component} is already running")]
    AlreadyRunning {
        /// SP name.
        sp: SpName,
        /// The running update's component.
        component: String,
        /// The running update's id.
        id: uuid::Uuid,
    },
    /// The SP's update buffer holds an update that ended (complete or
    /// failed): the SP takes no other until reset (or that one aborted).
    #[error("{sp}: the SP still holds update {id} ({state}); reset the SP (or abort that update) before starting another")]
    SpHoldsEnded {
        /// SP name.
        sp: SpName,
        /// The held update's id.
        id: uuid::Uuid,
        /// `complete` or `failed`.
        state: &'static str,
    },
    /// A reset was asked for while one of our updates runs on the SP.
    #[error(
        "{sp}: update {id} of {component} is {phase}, and a reset would end it; \
         abort it first (mgsctl update abort {sp} {component} {id}) or wait for it"
    )]
    ResetWouldEnd {
        /// SP name.
        sp: SpName,
        /// The running update's component.
        component: String,
        /// The running update's id.
        id: uuid::Uuid,
        /// Its phase.
        phase: &'static str,
    },
    /// The SP refused or did not answer the prepare.
    #[error("prepare failed: {0}")]
    Prepare(RpcError),
    /// The image cannot be sent.
    #[error("bad image: {0}")]
    BadImage(String),
    /// The SP refused the abort (wrong id, or already complete).
    #[error("{sp}: the SP refused to abort update {id} of {component}: {error}")]
    AbortRefused {
        /// SP name.
        sp: SpName,
        /// Component.
        component: String,
        /// Update id.
        id: uuid::Uuid,
        /// What the SP said.
        error: gateway_messages::SpError,
    },
    /// Talking to the SP failed.
    #[error(transparent)]
    Rpc(RpcError),
    /// The daemon is shutting down and takes no new update.
    #[error("mgsd is shutting down and starts no new update")]
    ShuttingDown,
}
