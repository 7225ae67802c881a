//! mgsd, the management gateway daemon, as a library: [`run`] takes a
//! [`config::Config`] and a shutdown future; the `mgsd` and `mgsctl`
//! binaries are thin wrappers, so everything is testable in-process.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod console_log;
pub mod control;
pub mod demo;
pub mod http;
pub mod systemd;

use actors::{Gateway, RegistryConfig, RegistryHandle};
use std::future::Future;
use std::time::Duration;
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
    /// Could not start the metrics exporter.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The HTTP API could not start.
    #[error("HTTP API: {0}")]
    Http(#[from] http::HttpError),
    /// The state directory is not the daemon's alone.
    #[error("state directory: {0}")]
    State(#[source] actors::store::StoreError),
    /// The console log directory cannot be used.
    #[error("console logs (console.log_dir): {0}")]
    ConsoleLog(#[source] std::io::Error),
}

/// Run the daemon until `shutdown` completes. Must be called inside an
/// actix system (`actix::System::new().block_on(...)`).
pub async fn run(
    config: config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    if let Some(addr) = config.metrics.listen_addr().map_err(DaemonError::Metrics)? {
        // Round trips as a real histogram, so SREs can aggregate across SPs.
        let rtt_buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(actors::metrics::SP_RTT.into()),
                &rtt_buckets,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "mgsd_http_request_duration_seconds".into(),
                    ),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
            })
            .map_err(|e| DaemonError::Metrics(e.to_string()))?
            .install()
            .map_err(|e| DaemonError::Metrics(format!("{addr}: {e}")))?;
        info!(%addr, "Prometheus metrics listening");
    }
    actors::metrics::describe();
    metrics::describe_gauge!("mgsd_build_info", "Build of the running daemon (always 1).");
    metrics::describe_counter!(
        "mgsd_control_requests_total",
        "Control socket requests by command and result."
    );
    metrics::describe_counter!(
        "mgsd_control_refusals_total",
        "Control connections or requests refused, by reason (permission_denied, busy)."
    );
    metrics::describe_gauge!(
        "mgsd_control_connections",
        "Control connections being served (each holds a place of control.max_connections)."
    );
    metrics::describe_counter!(
        "mgsd_http_requests_total",
        "HTTP API requests by operation (method and route) and status."
    );
    metrics::describe_histogram!(
        "mgsd_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP API request latency by operation (uploads: until the SP accepted)."
    );
    metrics::describe_gauge!(
        "mgsd_http_connections",
        "HTTP API connections being served."
    );
    metrics::describe_counter!(
        "mgsd_http_connection_waits_total",
        "HTTP connections that found http.max_connections taken and waited for a place."
    );
    metrics::describe_counter!(
        "mgsd_http_refusals_total",
        "HTTP connections or requests refused, by reason (busy, tls, permission_denied)."
    );
    metrics::describe_counter!(
        "mgsd_console_bytes_total",
        "Serial console bytes by SP and direction (in: output taken into the scrollback; out: input the SP took)."
    );
    metrics::describe_counter!(
        "mgsd_console_dropped_bytes_total",
        "Console output bytes dropped by reason (gap: lost on the way; duplicate: seen twice; scrollback: pushed out of the ring)."
    );
    metrics::describe_counter!(
        "mgsd_console_resent_bytes_total",
        "Console input bytes sent again because the SP had not taken them."
    );
    metrics::describe_counter!(
        "mgsd_console_reader_lost_bytes_total",
        "Console output a client session read too slowly to get (the ring dropped it first)."
    );
    metrics::describe_gauge!(
        "mgsd_console_attached",
        "1 while mgsd holds the SP's host console."
    );
    metrics::describe_gauge!(
        "mgsd_console_sessions",
        "Console sessions open on the SP (clients and log writers)."
    );
    metrics::describe_gauge!(
        "mgsd_console_client_sessions",
        "Client console sessions being carried (socket and websocket)."
    );
    metrics::describe_counter!(
        "mgsd_recovery_requests_total",
        "Phase-2 image requests from recovering hosts by result (data, unavailable, bad_offset)."
    );
    metrics::describe_counter!(
        "mgsd_recovery_bytes_total",
        "Phase-2 image bytes sent to recovering hosts."
    );
    metrics::describe_gauge!("mgsd_recovery_images", "Phase-2 images held for recovery.");
    metrics::gauge!("mgsd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let mut registry_config = RegistryConfig::new(config.sp_entries()?, config.sp_defaults.clone());
    registry_config.history = config.updates.history;
    registry_config.history_max_age = Some(Duration::from_secs(
        config.updates.history_max_age_days.saturating_mul(86_400),
    ));
    registry_config.own_sp = Some(config.rollout.own_sp.clone()).filter(|s| !s.is_empty());
    registry_config.image_read_timeout =
        Duration::from_millis(config.updates.image_read_timeout_ms);
    registry_config.phase2 =
        std::sync::Arc::new(actors::phase2::Phase2Cache::new(config.recovery.clone()));
    let state = open_state(&config.state.dir)?;
    let (gw, unreadable) = Gateway::start(registry_config, state).map_err(DaemonError::Sockets)?;
    let registry = gw.registry.clone();
    for problem in unreadable {
        tracing::error!(%problem, "journal record not read");
    }
    console_log::start(&gw, &config.console)
        .await
        .map_err(DaemonError::ConsoleLog)?;
    let listener = control::bind(&config.control)?;
    let http = http::Bound::bind(&config.http)?;
    info!(socket = %config.control.socket.display(), sps = config.sps.len(), "mgsd ready");
    systemd::notify("READY=1");
    let _watchdog = systemd::watchdog();
    let server = control::ControlServer::new(gw.clone(), &config.control).with_http(http.addrs());
    let http = http.serve(gw, server.clone(), &config);
    let reload = reload_on_hangup(registry.clone(), config.source.clone(), http.as_ref());
    tokio::select! {
        _ = server.clone().serve(listener) => {}
        _ = reload => {}
        _ = shutdown => {}
    }
    // No new connections from here on (the listener is gone); requests
    // under way are answered, an abort among them still reaches its SP.
    systemd::notify("STOPPING=1");
    control::remove_socket(&config.control.socket);
    drop(http);
    let limit = Duration::from_millis(config.shutdown.timeout_ms);
    info!(within = ?limit, "shutting down");
    let stopped = tokio::time::timeout(limit, async {
        server.drained().await;
        registry.stop().await
    })
    .await;
    match stopped {
        Ok(Ok(left)) if !left.is_empty() => {
            let ids: Vec<String> = left
                .iter()
                .map(|u| {
                    let s = u.spec();
                    format!("{} ({} {})", s.id, s.sp, s.component)
                })
                .collect();
            let kept = if config.state.dir.as_os_str().is_empty() {
                "no state directory is set, so the next start will not know of them"
            } else {
                "they are journalled and resume at the next start"
            };
            tracing::warn!(updates = left.len(), ids = ?ids, "stopping with updates under way: they stay on their SPs; {kept}");
        }
        Ok(_) => info!("stopped; no update under way"),
        Err(_) => tracing::warn!(?limit, "could not finish stopping in time; exiting anyway"),
    }
    Ok(())
}

/// Open the state directory `dir` (`""`: none). One that another user
/// could change is refused: the daemon does not start. Anything else
/// wrong with it is logged with its path; the daemon then runs without
/// (or with a fresh) journal rather than not at all.
fn open_state(dir: &std::path::Path) -> Result<Option<actors::registry::State>, DaemonError> {
    use actors::store::{Spool, Store, StoreError};
    if dir.as_os_str().is_empty() {
        tracing::warn!("no state directory: a restart forgets every update");
        return Ok(None);
    }
    let opened = Store::open(dir).and_then(|(store, problem)| {
        if let Some(problem) = problem {
            tracing::error!(%problem, "state directory");
        }
        Ok(actors::registry::State {
            store,
            spool: Spool::open(dir)?,
        })
    });
    match opened {
        Ok(state) => {
            info!(dir = %dir.display(), "state directory");
            Ok(Some(state))
        }
        Err(e @ StoreError::Unsafe { .. }) => Err(DaemonError::State(e)),
        Err(e) => {
            tracing::error!(error = %e, "cannot use the state directory; updates will not survive a restart");
            Ok(None)
        }
    }
}

/// On SIGHUP, re-read the configuration file and apply its `[[sp]]` list:
/// new SPs get actors, removed or changed ones are stopped. Other settings
/// take effect at the next start. A file that does not parse, or a list
/// the registry refuses (one that would leave no SP, or remove or change
/// an SP an update or a reset holds), is logged at WARN and changes
/// nothing: the running configuration stays.
async fn reload_on_hangup(
    registry: RegistryHandle,
    source: Option<std::path::PathBuf>,
    http: Option<&http::HttpServer>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return std::future::pending().await;
    };
    while hup.recv().await.is_some() {
        let Some(path) = source.as_deref() else {
            tracing::warn!("SIGHUP: no configuration file to reload (started without --config)");
            continue;
        };
        let loaded = config::Config::load(Some(path))
            .and_then(|c| c.sp_entries().map(|entries| (entries, c)));
        match loaded {
            Ok((entries, new)) => match registry.reconfigure(entries).await {
                Ok(()) => {
                    if let Some(http) = http {
                        http.set_locations(http::Locations::of(&new.sps));
                    }
                    registry.phase2().set_settings(new.recovery.clone());
                    info!(config = %path.display(), "configuration reloaded")
                }
                Err(e) => {
                    tracing::warn!(config = %path.display(), error = %e, "reload refused; the running configuration stays")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "reload refused: the file cannot be used; the running configuration stays")
            }
        }
    }
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
