//! mgsd's actors (actix on tokio). Each piece of state has one owner; the
//! modules are in layers, each using only those below it:
//!
//! - ground floor: [`types`] (names, hashes, components, [`Operation`]),
//!   [`settings`], [`error`] (one enum per layer, sources kept),
//!   [`metrics`] (names), and the pure parts: [`rpc`] (timeouts,
//!   patience, backoff), [`deadlines`], [`delivery`] (the chunk stream),
//!   [`reset`] (what a reset asks and found), [`record`] (an update's
//!   spec and progress), [`rollout_state`] (plans and their decisions);
//! - [`transport`], [`image`] (images shared by hash), [`store`] and
//!   [`journal`] (the state directory, on its own thread);
//! - [`sp`]: one actor per SP, owning its socket, its requests in flight,
//!   what it publishes of its SP and its operation slot (an update, a
//!   reset, or nothing);
//! - [`activate`]: resets and activations, driven through an SP's handle;
//! - [`update`]: one actor per update, the only writer of its progress;
//! - [`intake`] (a start request becomes a spec and an image) and
//!   [`registry`] (SPs by name, updates by id, the one binding rule, and
//!   [`registry::RegistryHandle`], the typed API);
//! - [`rollout`], standing on the registry's API; [`gateway`] starts both.

pub mod activate;
pub mod console;
pub mod deadlines;
pub mod delivery;
pub mod error;
pub mod gateway;
pub mod image;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod phase2;
pub mod record;
pub mod registry;
pub mod reset;
pub mod rollout;
pub mod rollout_state;
pub mod rpc;
pub mod settings;
pub mod sp;
pub mod store;
pub mod transport;
pub mod types;
pub mod update;

pub use error::{RegistryError, RpcError, UpdateError};
pub use gateway::Gateway;
pub use intake::{ImageSource, StartUpdate};
pub use record::{Failure, FailureKind, Phase, Progress, SpUpdateState, UpdateSpec};
pub use registry::{RegistryConfig, RegistryHandle, SpEntry, SpSummary, UpdateView};
pub use settings::{DeliverySettings, RpcPolicy, SpSettings};
pub use sp::{SpHandle, SpInfo, SpTarget};
pub use types::{Operation, SpName};
pub use update::UpdateHandle;
