//! The top of the actors: the registry (SPs and updates) and the rollouts
//! standing on it, started together from one configuration and state
//! directory. The daemon's doors hold a [`Gateway`].

use crate::registry::{RegistryConfig, RegistryHandle, State};
use crate::rollout::Rollouts;

/// The registry and the rollouts over it.
#[derive(Clone)]
pub struct Gateway {
    pub registry: RegistryHandle,
    pub rollouts: Rollouts,
}

impl Gateway {
    /// Start the registry (taking up the journal in `state`, if given)
    /// and the rollouts journalled there. Also returns the journal rows
    /// that could not be read (left in place), for the log.
    pub fn start(
        config: RegistryConfig,
        state: Option<State>,
    ) -> std::io::Result<(Self, Vec<String>)> {
        let max_age = config.history_max_age;
        let (registry, rollouts, unreadable) = RegistryHandle::start_with_state(config, state)?;
        let rollouts = Rollouts::start(registry.clone(), rollouts, max_age);
        Ok((Self { registry, rollouts }, unreadable))
    }
}
