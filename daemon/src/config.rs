//! The daemon's configuration: a TOML file (`--config`) overlaid with
//! `MGSD_...` environment variables (`MGSD_CONTROL__SOCKET=/x.sock` sets
//! `control.socket`), into `serde` structs that reject unknown fields.
//! Every field has a documented default; `config/mgsd.toml` shows them all.

use actors::{SpEntry, SpSettings, SpTarget};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything mgsd reads at start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The control socket.
    #[serde(default)]
    pub control: ControlConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Settings for every SP.
    #[serde(default)]
    pub sp_defaults: SpSettings,
    /// Update bookkeeping.
    #[serde(default)]
    pub updates: UpdatesConfig,
    /// Where state is kept across restarts.
    #[serde(default)]
    pub state: StateConfig,
    /// Stopping.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Rollouts.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// The HTTP API (off unless a listener is configured).
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// Host phase-2 recovery images.
    #[serde(default)]
    pub recovery: actors::phase2::Phase2Settings,
    /// Console log files.
    #[serde(default)]
    pub console: crate::console_log::ConsoleLogConfig,
    /// The SPs, one table each.
    #[serde(default, rename = "sp")]
    pub sps: Vec<SpConfig>,
    /// The file this was loaded from (re-read on SIGHUP).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix socket path (default `/run/mgsd/mgsd.sock`).
    pub socket: PathBuf,
    /// Socket file mode, octal text (default `"0666"`: anyone may
    /// connect; what they may do is decided by `[control.access]` from
    /// the peer's credentials).
    pub socket_mode: String,
    /// Longest request line accepted, bytes (default 65536). A longer one
    /// is discarded as it arrives, never buffered, and answered with an
    /// error.
    pub max_request_bytes: usize,
    /// Connections served at once (default 64); one more is told `busy`
    /// and closed.
    pub max_connections: usize,
    /// Of those, places only operate-class peers (root, the operate
    /// lists) may take (default 16; at most all but one), so readers
    /// alone never fill the socket.
    pub reserved_operate_connections: usize,
    /// A connection that sends no request for this long is closed
    /// (default 120000 ms; `watch` streams are not idle).
    pub idle_timeout_ms: u64,
    /// Who may do what.
    pub access: AccessConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/mgsd/mgsd.sock"),
            socket_mode: "0666".into(),
            max_request_bytes: 64 * 1024,
            max_connections: 64,
            reserved_operate_connections: 16,
            idle_timeout_ms: 120_000,
            access: AccessConfig::default(),
        }
    }
}

/// `[control.access]`: which peers (by the uid and gid the kernel reports
/// for the connection, `SO_PEERCRED`) may read and which may operate.
/// Users and groups are names (looked up in `/etc/passwd` and
/// `/etc/group`) or decimal ids. A user is in a group if it is the
/// peer's primary group or `/etc/group` lists the user as a member.
/// Operating includes reading.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// May start and abort updates, reset, set power and slots (default
    /// `["root"]`).
    pub operate_users: Vec<String>,
    /// Likewise, by group (default `["mgsd"]`).
    pub operate_groups: Vec<String>,
    /// May list, inspect, watch and read history and audit (default `[]`).
    pub read_users: Vec<String>,
    /// Likewise, by group (default `["mgsd-ro"]`).
    pub read_groups: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            operate_users: vec!["root".into()],
            operate_groups: vec!["mgsd".into()],
            read_users: Vec::new(),
            read_groups: vec!["mgsd-ro".into()],
        }
    }
}

impl ControlConfig {
    /// The mode as a number.
    pub fn mode(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).map_err(|_| {
            ConfigError::Invalid {
                source_name: "control.socket_mode".into(),
                message: format!("{:?} is not an octal file mode", self.socket_mode),
            }
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` (default) or `mgsd=debug,actors=debug`;
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus HTTP listener (default `127.0.0.1:9467`);
    /// `""` disables it.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9467".into(),
        }
    }
}

impl MetricsConfig {
    /// The listen address, if enabled.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|_| format!("metrics.listen: {:?} is not an address:port", self.listen))
    }
}

/// `[updates]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatesConfig {
    /// Finished updates remembered (their ids stay bound; `watch`,
    /// `history` and `update start` report them as they ended); the oldest
    /// is forgotten first (default 1000).
    pub history: usize,
    /// Finished updates older than this many days are forgotten too
    /// (default 365).
    pub history_max_age_days: u64,
    /// Reading a client's image (or archive) may take this long (default
    /// 60000 ms); a read that hangs is abandoned and the start refused
    /// `bad_image`.
    pub image_read_timeout_ms: u64,
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        Self {
            history: actors::registry::DEFAULT_HISTORY,
            history_max_age_days: 365,
            image_read_timeout_ms: 60_000,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Where every update's record is journalled and its image spooled,
    /// so updates survive a restart (default `/var/lib/mgsd`, the unit's
    /// `StateDirectory`). `""` keeps nothing: a restart forgets every
    /// update.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/mgsd"),
        }
    }
}

/// `[rollout]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// The scrimlet's own sled (name or serial), which a rollout updates
    /// only if its plan says `allow_self = true` (default `""`: none).
    pub own_sp: String,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM, answer the control requests under way and journal
    /// every running update, then exit, within this many ms (default 5000).
    pub timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { timeout_ms: 5000 }
    }
}

/// One `[[sp]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpConfig {
    /// Name, e.g. `sled-7`.
    pub name: String,
    /// A fixed address (`[fe80::1%2]:11111`, `[::1]:31000`)...
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// ...or the switch-port interface to discover it on.
    #[serde(default)]
    pub interface: Option<String>,
    /// Where the SP sits in the rack, as the HTTP API addresses it
    /// (`/sp/{type}/{slot}`): `sled`, `switch` or `power`. Give both
    /// `type` and `slot` or neither; an SP without them is reachable by
    /// name only (the socket, `/mgsd/v1`). Each (type, slot) once.
    #[serde(default, rename = "type")]
    pub sp_type: Option<crate::http::SpType>,
    #[serde(default)]
    pub slot: Option<u16>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a value in it is wrong.
    #[error("{source_name}: {message}")]
    Invalid {
        /// The file (or setting) at fault.
        source_name: String,
        /// What is wrong, naming the field.
        message: String,
    },
}

impl Config {
    /// Load `path` (if given) and the `MGSD_` environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        let source_name = match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid {
                        source_name: p.display().to_string(),
                        message: "no such file".into(),
                    });
                }
                builder =
                    builder.add_source(config::File::from(p).format(config::FileFormat::Toml));
                p.display().to_string()
            }
            None => "configuration".into(),
        };
        builder = builder.add_source(
            config::Environment::with_prefix("MGSD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        let invalid = |e: config::ConfigError| ConfigError::Invalid {
            source_name: source_name.clone(),
            message: e.to_string(),
        };
        let mut config: Config = builder
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)?;
        config.check().map_err(|message| ConfigError::Invalid {
            source_name: source_name.clone(),
            message,
        })?;
        config.source = path.map(Path::to_path_buf);
        Ok(config)
    }

    /// Parse TOML text (tests, embedded defaults).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let invalid = |e: config::ConfigError| ConfigError::Invalid {
            source_name: "configuration".into(),
            message: e.to_string(),
        };
        let config: Config = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)?;
        config.check().map_err(|message| ConfigError::Invalid {
            source_name: "configuration".into(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        self.control.mode().map_err(|e| e.to_string())?;
        if self.control.max_connections == 0 {
            return Err("control.max_connections: must be at least 1".into());
        }
        if self.control.idle_timeout_ms == 0 || self.updates.image_read_timeout_ms == 0 {
            return Err(
                "control.idle_timeout_ms and updates.image_read_timeout_ms: must be above 0".into(),
            );
        }
        self.metrics.listen_addr()?;
        let mut names = std::collections::BTreeSet::new();
        let mut places = std::collections::BTreeMap::new();
        for sp in &self.sps {
            if !names.insert(&sp.name) {
                return Err(format!("sp: name {:?} is used twice", sp.name));
            }
            match (sp.sp_type, sp.slot) {
                (Some(t), Some(slot)) => {
                    if let Some(other) = places.insert((t, slot), &sp.name) {
                        return Err(format!(
                            "sp {:?}: type {t} slot {slot} is {other:?}'s already",
                            sp.name
                        ));
                    }
                }
                (None, None) => {}
                _ => {
                    return Err(format!(
                        "sp {:?}: give both type and slot (its place in the rack) or neither",
                        sp.name
                    ))
                }
            }
            if sp.addr.is_some() == sp.interface.is_some() {
                return Err(format!(
                    "sp {:?}: give exactly one of addr and interface",
                    sp.name
                ));
            }
        }
        let d = &self.sp_defaults;
        if d.window == 0 {
            return Err("sp_defaults.window: must be at least 1".into());
        }
        if d.rpc.min_attempt_timeout.is_zero()
            || d.rpc.min_attempt_timeout > d.rpc.per_attempt_timeout
        {
            return Err(
                "sp_defaults.rpc.min_attempt_timeout_ms: must be above 0 and at most per_attempt_timeout_ms"
                    .into(),
            );
        }
        if d.delivery.status_poll_interval.is_zero() {
            return Err("sp_defaults.delivery.status_poll_interval_ms: must be above 0".into());
        }
        if self.updates.history == 0 {
            return Err("updates.history: must be at least 1".into());
        }
        self.http.check()
    }

    /// The SPs as the registry wants them.
    pub fn sp_entries(&self) -> Result<Vec<SpEntry>, ConfigError> {
        self.sps
            .iter()
            .map(|sp| {
                let target = match (&sp.addr, &sp.interface) {
                    (Some(addr), _) => SpTarget::Addr(*addr),
                    (None, Some(iface)) => SpTarget::Interface(iface.clone()),
                    (None, None) => unreachable!("checked at load"),
                };
                Ok(SpEntry::new(&sp.name, target))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every configuration file we ship parses (interfaces need not exist).
    #[test]
    fn shipped_config_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let config =
                    Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
                if path.file_name().is_some_and(|f| f == "mgsd.toml") {
                    // The example spells out the defaults.
                    let defaults = Config::default();
                    assert_eq!(config.control, defaults.control);
                    assert_eq!(config.log, defaults.log);
                    assert_eq!(config.metrics, defaults.metrics);
                    assert_eq!(config.sp_defaults, defaults.sp_defaults);
                    assert_eq!(config.updates, defaults.updates);
                    assert_eq!(config.state, defaults.state);
                    assert_eq!(config.shutdown, defaults.shutdown);
                    assert_eq!(config.rollout, defaults.rollout);
                    assert_eq!(config.http, defaults.http);
                    assert_eq!(config.sps.len(), 2);
                }
            }
        }
        assert!(n >= 1, "no config files in {}", dir.display());
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::from_toml("[control]\nsocket_path = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("socket_path"), "{e}");
        let e = Config::from_toml("[sp_defaults.rpc]\nmax_attempts = \"five\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_attempts"), "{e}");
        let e = Config::from_toml("[[sp]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of addr and interface"), "{e}");
        let e = Config::from_toml("[control]\nsocket_mode = \"rw\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("socket_mode"), "{e}");
    }
}
