//! mgsd, the management gateway daemon, as a library: [`run`] takes a
//! [`config::Config`] and a shutdown future; the `mgsd` and `mgsctl`
//! binaries are thin wrappers, so everything is testable in-process.

pub mod api;
pub mod client;
pub mod config;
pub mod control;
pub mod demo;

use actors::{RegistryConfig, RegistryHandle};
use std::future::Future;
use tracing::info;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Control socket trouble.
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    /// Could not open an SP's socket.
    #[error("SP sockets: {0}")]
    Sockets(std::io::Error),
}

/// Run the daemon until `shutdown` completes. Must be called inside an
/// actix system (`actix::System::new().block_on(...)`).
pub async fn run(
    config: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let registry = RegistryHandle::start(RegistryConfig::new(
        config.sp_entries()?,
        config.sp_defaults.clone(),
    ))
    .map_err(DaemonError::Sockets)?;
    let listener = control::bind(&config.control)?;
    info!(socket = %config.control.socket.display(), sps = config.sps.len(), "mgsd ready");
    let server = control::ControlServer::new(registry, config.control.max_request_bytes);
    tokio::select! {
        _ = server.serve(listener) => {}
        _ = shutdown => info!("shutting down"),
    }
    control::remove_socket(&config.control.socket);
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
