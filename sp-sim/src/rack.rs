//! A rack of simulated SPs started together, and the handles tests use to
//! inspect and disturb them (the newer ones are in `handles.rs`).
//!
//! Rack TOML, beyond the SP list: `mgs` (gateway addresses of switch ports
//! 1 and 2, where phase-2 requests go; default: the address each SP last
//! heard from), `[timings]` (including the console's `console_line_ms`,
//! `console_flush_ms`, `console_idle_timeout_ms`, `uart_baud` and phase-2
//! `phase2_try_other_ms` / `phase2_retry_ms`), `[faults]` (including
//! `sensor_errors`, `hash_written_bytes`, `archive_id_unchanged`). Per SP:
//! `ignition_target` (its port on the switches' ignition controllers;
//! default: the real rack's map, see [`crate::ignition`]), `recovery_hash`
//! (hex SHA-256 of a phase-2 image the host's recovery fetches from boot),
//! `mgs` (overrides the rack's).

use crate::device::{Device, DeviceConfig, SpKind, Timings};
use crate::faults::{FaultConfig, FaultStats, Faults};
use crate::ignition::{self, IgnitionController, TargetPower};
use crate::server::{serve, Shared};
use gateway_messages::{SpComponent, SpError, SystemType, UpdateStatus};
use serde::Deserialize;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// One SP in a rack configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpConfig {
    /// Name, e.g. `sled-7`.
    pub name: String,
    /// Board kind.
    pub kind: SpKind,
    /// Serial number.
    pub serial: String,
    /// UDP port; 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// Faults for this SP (overrides the rack's).
    #[serde(default)]
    pub faults: Option<FaultConfig>,
    /// Whether it supports the reset watchdog (default: by kind, see
    /// [`SpKind::watchdog`]).
    #[serde(default)]
    pub watchdog: Option<bool>,
    /// Its port on the switches' ignition controllers (default: the real
    /// rack's map, by kind and position among its kind).
    #[serde(default)]
    pub ignition_target: Option<u8>,
    /// Hex SHA-256 of the phase-2 image the host's recovery fetches from
    /// boot (sleds).
    #[serde(default)]
    pub recovery_hash: Option<String>,
    /// Gateways of switch ports 1 and 2 for phase-2 requests (overrides
    /// the rack's `mgs`).
    #[serde(default)]
    pub mgs: Option<Vec<SocketAddr>>,
}

/// A rack: SPs plus shared settings. TOML-deserialisable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RackConfig {
    /// Address every SP binds (`::1` by default; `127.0.0.1` works too).
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    /// Seed of all fault dice (each SP derives its own).
    #[serde(default)]
    pub seed: u64,
    /// Datagrams an SP queues before dropping (real SPs: 3).
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Hardware timings.
    #[serde(default)]
    pub timings: Timings,
    /// Faults applied to every SP without its own.
    #[serde(default)]
    pub faults: FaultConfig,
    /// Keep written host-flash images here (default: hashes only).
    #[serde(default)]
    pub store_dir: Option<PathBuf>,
    /// Interfaces (names) on which every SP's socket joins the discovery
    /// group `ff02::1de:2`, as a real SP does on each of its two switch
    /// ports: with `bind = "::"` and port 11111 it then answers `Discover`
    /// sent to `[ff02::1de:2%port]:11111`, from the port's link-local
    /// address. Needs an IPv6 `bind`. Default: none.
    #[serde(default)]
    pub join_multicast: Vec<String>,
    /// Gateways of switch ports 1 and 2 where phase-2 requests go (at most
    /// two; default none: each SP sends to the address it last heard from).
    #[serde(default)]
    pub mgs: Vec<SocketAddr>,
    /// The SPs.
    #[serde(rename = "sp")]
    pub sps: Vec<SpConfig>,
}

/// The group SPs listen on for `Discover` (MGS sends it to
/// `[ff02::1de:2%interface]:11111`).
pub const DISCOVERY_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x1de, 2);

/// An interface's index (its IPv6 scope id), from
/// `/sys/class/net/NAME/ifindex` (of the caller's network namespace when
/// run under `ip netns exec`).
pub fn interface_index(name: &str) -> std::io::Result<u32> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::NotFound, why);
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(bad(format!("bad interface name {name:?}")));
    }
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("interface {name:?}: {path}: {e}")))?;
    text.trim().parse().map_err(|_| {
        bad(format!(
            "interface {name:?}: {path}: not a number: {text:?}"
        ))
    })
}

/// Join the discovery group on each of `interfaces` (names).
fn join_discovery_group(socket: &UdpSocket, interfaces: &[String]) -> std::io::Result<()> {
    for name in interfaces {
        let index = interface_index(name)?;
        socket
            .join_multicast_v6(&DISCOVERY_GROUP, index)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("joining {DISCOVERY_GROUP} on {name:?} (index {index}): {e}"),
                )
            })?;
    }
    Ok(())
}

fn default_bind() -> IpAddr {
    IpAddr::V6(Ipv6Addr::LOCALHOST)
}

fn default_queue_depth() -> usize {
    3
}

impl RackConfig {
    /// A standard rack: `sled-0..`, `switch-0..`, `psc-0..`, ports chosen by
    /// the OS, default timings.
    pub fn standard(sleds: usize, switches: usize, power_shelves: usize) -> Self {
        let mut sps = Vec::new();
        for (kind, count) in [
            (SpKind::Sled, sleds),
            (SpKind::Switch, switches),
            (SpKind::PowerShelf, power_shelves),
        ] {
            for i in 0..count {
                let prefix = match kind {
                    SpKind::Sled => "BRM42",
                    SpKind::Switch => "BRM44",
                    SpKind::PowerShelf => "BRM45",
                };
                sps.push(SpConfig {
                    name: format!("{}-{i}", kind.short()),
                    kind,
                    serial: format!("{prefix}{:06}", 220_000 + i),
                    port: 0,
                    faults: None,
                    watchdog: None,
                    ignition_target: None,
                    recovery_hash: None,
                    mgs: None,
                });
            }
        }
        Self {
            bind: default_bind(),
            seed: 0,
            queue_depth: default_queue_depth(),
            timings: Timings::default(),
            faults: FaultConfig::default(),
            store_dir: None,
            join_multicast: Vec::new(),
            mgs: Vec::new(),
            sps,
        }
    }

    /// Parse a rack from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Parse a 32-byte hex hash.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Ignition targets of every SP as seen from the controller of switch
/// `on` (an index into `sps`): explicit targets first, then the real
/// rack's map by kind and position.
fn ignition_map(sps: &[SpConfig], on: usize) -> Vec<(usize, u8)> {
    let mut seen = [0usize; 3];
    let mut out = Vec::new();
    for (i, sp) in sps.iter().enumerate() {
        let k = match sp.kind {
            SpKind::Sled => 0,
            SpKind::PowerShelf => 1,
            SpKind::Switch => 2,
        };
        let n = seen[k];
        seen[k] += 1;
        let target = match (sp.ignition_target, sp.kind) {
            (_, SpKind::Switch) if i == on => Some(ignition::OWN_SWITCH_TARGET),
            (Some(t), _) => Some(t),
            (None, SpKind::Sled) => ignition::SLED_TARGETS.get(n).copied(),
            (None, SpKind::PowerShelf) => ignition::power_shelf_target(n),
            (None, SpKind::Switch) => Some(ignition::PEER_SWITCH_TARGET),
        };
        if let Some(t) = target {
            out.push((i, t));
        }
    }
    out
}

fn system_type(kind: SpKind) -> SystemType {
    match kind {
        SpKind::Sled => SystemType::Gimlet,
        SpKind::Switch => SystemType::Sidecar,
        SpKind::PowerShelf => SystemType::Psc,
    }
}

/// A running simulated SP.
#[derive(Debug, Clone)]
pub struct SimSp {
    /// Name from the config.
    pub name: String,
    /// Board kind.
    pub kind: SpKind,
    /// Serial number.
    pub serial: String,
    /// Where it listens.
    pub addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
}

impl SimSp {
    /// The SP's own update status for `component`.
    pub fn update_status(&self, component: SpComponent) -> Result<UpdateStatus, SpError> {
        let mut dev = self.device();
        dev.now = Instant::now();
        dev.update_status(component)
    }

    /// Content hash of host-flash `slot` (sleds only).
    pub fn slot_hash(&self, slot: u16) -> Option<[u8; 32]> {
        self.device().slot_hash(slot)
    }

    /// Replace the fault settings.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .config = faults;
    }

    /// What has been injected so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
    }

    /// Stop answering for `d`.
    pub fn hang_for(&self, d: Duration) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hang_until = Some(Instant::now() + d);
    }

    /// Reboot now (as a power loss would).
    pub fn reset_now(&self) {
        self.shared.reset_now();
    }

    /// Route the host flash to the host (updates get `UpdateSlotBusy`).
    pub fn set_host_flash_muxed_to_sp(&self, muxed: bool) {
        if let Some(f) = self.device().flash.as_mut() {
            f.muxed_to_sp = muxed;
        }
    }

    /// Direct access to the device model.
    pub fn device(&self) -> std::sync::MutexGuard<'_, Device> {
        self.shared.device.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running rack.
#[derive(Debug)]
pub struct SimRack {
    /// The SPs, in config order.
    pub sps: Vec<SimSp>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimRack {
    /// Bind every SP's socket and start serving.
    pub async fn start(config: RackConfig) -> std::io::Result<Self> {
        if !config.join_multicast.is_empty() && !config.bind.is_ipv6() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "join_multicast needs an IPv6 bind address, not {}",
                    config.bind
                ),
            ));
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut sps = Vec::new();
        let mut tasks = Vec::new();
        let mut started = Vec::new();
        for (i, sp) in config.sps.iter().enumerate() {
            let socket = UdpSocket::bind(SocketAddr::new(config.bind, sp.port))
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{}: bind {}: {e}",
                            sp.name,
                            SocketAddr::new(config.bind, sp.port)
                        ),
                    )
                })?;
            join_discovery_group(&socket, &config.join_multicast)?;
            let addr = socket.local_addr()?;
            let device = Device::new(
                DeviceConfig {
                    kind: sp.kind,
                    serial: sp.serial.clone(),
                    revision: 6,
                    timings: config.timings.clone(),
                    store_dir: config.store_dir.clone(),
                    watchdog: sp.watchdog.unwrap_or(sp.kind.watchdog()),
                },
                Instant::now(),
            );
            let mut device = device;
            let mgs = sp.mgs.as_ref().unwrap_or(&config.mgs);
            device.mgs_ports = [mgs.first().copied(), mgs.get(1).copied()];
            if let Some(text) = &sp.recovery_hash {
                let hash = parse_hash(text).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{}: recovery_hash is not 64 hex digits", sp.name),
                    )
                })?;
                device.set_recovery(Some(hash));
            }
            let faults = sp.faults.clone().unwrap_or_else(|| config.faults.clone());
            let seed = config.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let shared = Arc::new(Shared {
                device: std::sync::Mutex::new(device),
                faults: std::sync::Mutex::new(Faults::new(faults, seed)),
                down_until: std::sync::Mutex::new(None),
                power: Arc::new(TargetPower::default()),
            });
            started.push((socket, shared.clone(), sp.name.clone()));
            sps.push(SimSp {
                name: sp.name.clone(),
                kind: sp.kind,
                serial: sp.serial.clone(),
                addr,
                shared,
            });
        }
        // Every switch's ignition controller leads to the rack's SPs.
        let switches = config
            .sps
            .iter()
            .filter(|s| s.kind == SpKind::Switch)
            .count();
        for (i, sp) in config.sps.iter().enumerate() {
            if sp.kind != SpKind::Switch {
                continue;
            }
            let targets = ignition_map(&config.sps, i)
                .into_iter()
                .map(|(j, t)| {
                    (
                        t,
                        sps[j].shared.power.clone(),
                        system_type(config.sps[j].kind),
                    )
                })
                .collect();
            sps[i].device().ignition = Some(IgnitionController::new(targets, switches));
        }
        for (socket, shared, name) in started {
            tasks.push(tokio::spawn(serve(
                socket,
                shared.clone(),
                config.queue_depth,
                stop_rx.clone(),
                name,
            )));
        }
        Ok(Self { sps, stop, tasks })
    }

    /// The SP called `name`.
    pub fn sp(&self, name: &str) -> Option<&SimSp> {
        self.sps.iter().find(|s| s.name == name)
    }

    /// Stop every SP and wait for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_multicast_parses_and_defaults_to_none() {
        let one = RackConfig::from_toml(
            r#"
            bind = "::"
            join_multicast = ["port0", "port1"]
            [[sp]]
            name = "sled-3"
            kind = "sled"
            serial = "BRM42220003"
            port = 11111
            "#,
        )
        .unwrap();
        assert_eq!(one.join_multicast, ["port0", "port1"]);
        assert_eq!(one.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(one.sps[0].port, 11111);
        let none =
            RackConfig::from_toml("[[sp]]\nname = \"a\"\nkind = \"sled\"\nserial = \"s\"").unwrap();
        assert!(none.join_multicast.is_empty());
        assert!(RackConfig::standard(1, 0, 0).join_multicast.is_empty());
    }

    #[test]
    fn console_recovery_ignition_and_sensor_options_parse() {
        let rack = RackConfig::from_toml(
            r#"
            mgs = ["[::1]:22222", "[::1]:22223"]
            [timings]
            console_line_ms = 250
            uart_baud = 115200
            [faults]
            hash_written_bytes = true
            sensor_errors = [{ sensor = 3, error = "device_timeout" }]
            [[sp]]
            name = "sled-0"
            kind = "sled"
            serial = "s0"
            ignition_target = 7
            recovery_hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
            "#,
        )
        .unwrap();
        assert_eq!(rack.mgs.len(), 2);
        assert_eq!(rack.timings.console_line_ms, 250);
        assert_eq!(rack.timings.phase2_try_other_ms, 500);
        assert!(rack.faults.hash_written_bytes);
        assert_eq!(rack.faults.sensor_errors[0].sensor, 3);
        assert_eq!(rack.sps[0].ignition_target, Some(7));
        let hash = parse_hash(rack.sps[0].recovery_hash.as_deref().unwrap()).unwrap();
        assert_eq!(hash[1], 0x11);
        assert!(parse_hash("xyz").is_none());
    }

    #[test]
    fn the_default_ignition_map_is_the_real_racks() {
        let rack = RackConfig::standard(3, 2, 1);
        // sled-0..2, switch-0, switch-1, psc-0 as seen from switch-0.
        let map = ignition_map(&rack.sps, 3);
        assert_eq!(map, [(0, 14), (1, 30), (2, 15), (3, 35), (4, 34), (5, 32)]);
        let from_switch1 = ignition_map(&rack.sps, 4);
        assert!(from_switch1.contains(&(3, 34)) && from_switch1.contains(&(4, 35)));
    }

    #[test]
    fn interface_index_reads_sysfs_and_refuses_paths() {
        // Every network namespace has a loopback interface.
        assert!(interface_index("lo").unwrap() > 0);
        assert!(interface_index("../lo").is_err());
        assert!(interface_index("").is_err());
        let e = interface_index("no-such-if0").unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
    }

    #[tokio::test]
    async fn joining_needs_ipv6_and_existing_interfaces() {
        let mut rack = RackConfig::standard(1, 0, 0);
        rack.join_multicast = vec!["no-such-if0".into()];
        let e = SimRack::start(rack.clone()).await.unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
        rack.bind = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let e = SimRack::start(rack).await.unwrap_err();
        assert!(e.to_string().contains("IPv6"), "{e}");
    }

    #[tokio::test]
    async fn joined_sp_listens_on_the_unspecified_address() {
        let mut rack = RackConfig::standard(1, 0, 0);
        rack.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        rack.join_multicast = vec!["lo".into()];
        let rack = SimRack::start(rack).await.unwrap();
        assert!(rack.sps[0].addr.ip().is_unspecified());
        rack.stop().await;
    }
}
