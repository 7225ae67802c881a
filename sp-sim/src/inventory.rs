//! Each board kind's inventory, sensors and component details, as the SP
//! firmware reports them.
//!
//! The inventory lists the firmware's own components first (`sp`, the host
//! CPU and boot flash on sleds, `sp-aux-flash`, `monorail` and `tofino` on
//! switches, `system-led` everywhere), then the board's I2C devices with
//! their reference designators as component ids, part names and
//! descriptions taken from the real board configurations (a representative
//! subset; the power shelf's, which have no reference designator there, are
//! named after their configuration names). Sensor ids number every sensor
//! channel in inventory order, from 0.
//!
//! Sensor values move with time, deterministically: a slow sine around a
//! typical value plus a little seeded noise, sampled once a second (the
//! timestamp is the uptime of the sample, in ms). Devices on the A0 power
//! domain read `DeviceOff` (and their presence `Unavailable`) while the
//! board is in A2. Faults make a sensor fail with any `SensorDataMissing`;
//! a failing sensor counts one error per second.
//!
//! A switch's `monorail` component details are its management-network
//! switch ports (VSC7448, [`MONORAIL_PORTS`] of them): counters that grow
//! with time and restart at `ComponentClearStatus`.

use gateway_messages::sp_impl::details::{
    ComponentDetail, LinkStatus, MeasurementError, MeasurementKind, PacketCount, PhyStatus,
    PhyType, PortConfig, PortCounters, PortDev, PortMode, PortSerdes, PortStatus, PortStatusError,
    PortStatusErrorCode, Speed,
};
use gateway_messages::tlv::{DeviceDescription, DevicePresence};
use gateway_messages::{
    SensorDataMissing, SensorError, SensorReading, SensorRequest, SensorRequestKind,
    SensorResponse, SpComponent, SpError,
};
use serde::Deserialize;

use crate::device::SpKind;

/// Ports of a switch's management-network switch.
pub const MONORAIL_PORTS: u32 = 53;

/// Capability bits (DSC0).
mod caps {
    pub const UPDATEABLE: u32 = 1 << 0;
    pub const HAS_MEASUREMENT_CHANNELS: u32 = 1 << 1;
    pub const HAS_SERIAL_CONSOLE: u32 = 1 << 2;
    pub const IS_LED: u32 = 1 << 3;
    pub const IS_PMBUS: u32 = 1 << 5;
}

/// How a sensor fails (a TOML name for each `SensorDataMissing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorFailure {
    /// `DeviceOff`.
    DeviceOff,
    /// `DeviceError`.
    DeviceError,
    /// `DeviceNotPresent`.
    DeviceNotPresent,
    /// `DeviceUnavailable`.
    DeviceUnavailable,
    /// `DeviceTimeout`.
    DeviceTimeout,
}

impl From<SensorFailure> for SensorDataMissing {
    fn from(f: SensorFailure) -> Self {
        match f {
            SensorFailure::DeviceOff => Self::DeviceOff,
            SensorFailure::DeviceError => Self::DeviceError,
            SensorFailure::DeviceNotPresent => Self::DeviceNotPresent,
            SensorFailure::DeviceUnavailable => Self::DeviceUnavailable,
            SensorFailure::DeviceTimeout => Self::DeviceTimeout,
        }
    }
}

/// A sensor fault in a fault config: sensor `sensor` fails with `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorFault {
    /// Sensor id.
    pub sensor: u32,
    /// How it fails.
    pub error: SensorFailure,
}

fn missing_to_measurement(m: SensorDataMissing) -> MeasurementError {
    match m {
        SensorDataMissing::DeviceOff => MeasurementError::DeviceOff,
        SensorDataMissing::DeviceError => MeasurementError::DeviceError,
        SensorDataMissing::DeviceNotPresent => MeasurementError::NotPresent,
        SensorDataMissing::DeviceUnavailable => MeasurementError::DeviceUnavailable,
        SensorDataMissing::DeviceTimeout => MeasurementError::DeviceTimeout,
    }
}

/// One sensor channel.
#[derive(Debug, Clone)]
pub struct Sensor {
    /// Channel name.
    pub name: String,
    /// What it measures.
    pub kind: MeasurementKind,
    base: f32,
    swing: f32,
    /// Only powered in A0.
    a0_only: bool,
    /// Absent hardware: always `DeviceNotPresent`.
    absent: bool,
    /// Current fault and the sample time (ms) it started at.
    fault: Option<(SensorDataMissing, u64)>,
    /// Errors counted by faults that ended.
    past_errors: u32,
    /// The last failure and its sample time, once a fault ended.
    last_error: Option<(SensorDataMissing, u64)>,
}

struct InvDevice {
    component: SpComponent,
    device: String,
    description: String,
    capabilities: u32,
    a0_only: bool,
    absent: bool,
    /// Sensor ids `first..first + count`.
    first: usize,
    count: usize,
}

/// One SP's inventory and sensors.
pub struct Inventory {
    devices: Vec<InvDevice>,
    sensors: Vec<Sensor>,
    monorail: bool,
    seed: u64,
    /// Sample time (ms) the monorail counters restarted at.
    counters_since: u64,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("devices", &self.devices.len())
            .field("sensors", &self.sensors.len())
            .finish()
    }
}

mod boards;
use boards::{power_shelf_devices, sled_devices, switch_devices};

impl Inventory {
    /// The inventory of a board of `kind`; `seed` drives the sensor noise.
    pub fn new(kind: SpKind, seed: u64) -> Self {
        let own = |c: SpComponent, desc: &str, caps: u32| InvDevice {
            component: c,
            device: c.as_str().unwrap_or_default().to_string(),
            description: desc.to_string(),
            capabilities: caps,
            a0_only: false,
            absent: false,
            first: 0,
            count: 0,
        };
        let mut devices = vec![own(
            SpComponent::SP_ITSELF,
            "Service Processor",
            caps::UPDATEABLE,
        )];
        let specs = match kind {
            SpKind::Sled => {
                devices.push(own(
                    SpComponent::SP3_HOST_CPU,
                    "Gimlet SP3 host cpu",
                    caps::HAS_SERIAL_CONSOLE,
                ));
                devices.push(own(
                    SpComponent::HOST_CPU_BOOT_FLASH,
                    "Gimlet host boot flash",
                    caps::UPDATEABLE,
                ));
                devices.push(own(
                    SpComponent::SYSTEM_LED,
                    "System attention LED",
                    caps::IS_LED,
                ));
                sled_devices()
            }
            SpKind::Switch => {
                devices.push(own(
                    SpComponent::SP_AUX_FLASH,
                    "Service Processor auxiliary flash",
                    0,
                ));
                devices.push(own(
                    SpComponent::MONORAIL,
                    "Management network switch",
                    caps::HAS_MEASUREMENT_CHANNELS,
                ));
                devices.push(own(
                    SpComponent::SYSTEM_LED,
                    "System attention LED",
                    caps::IS_LED,
                ));
                devices.push(own(SpComponent::TOFINO, "Tofino", 0));
                switch_devices()
            }
            SpKind::PowerShelf => {
                devices.push(own(
                    SpComponent::SYSTEM_LED,
                    "System attention LED",
                    caps::IS_LED,
                ));
                power_shelf_devices()
            }
        };
        let mut sensors = Vec::new();
        for (id, part, desc, a0_only, channels) in specs {
            // QSFP cages past the fourth are empty.
            let absent = part == "qsfp"
                && id
                    .trim_start_matches("xcvr")
                    .parse::<u32>()
                    .is_ok_and(|n| n >= 4);
            let pmbus = matches!(
                part.as_str(),
                "raa229618" | "isl68224" | "tps546b24a" | "adm1272" | "bmr491" | "mwocp68"
            );
            let mut capabilities = if pmbus { caps::IS_PMBUS } else { 0 };
            if !channels.is_empty() {
                capabilities |= caps::HAS_MEASUREMENT_CHANNELS;
            }
            let first = sensors.len();
            for (name, kind, base, swing) in channels {
                sensors.push(Sensor {
                    name,
                    kind,
                    base,
                    swing,
                    a0_only,
                    absent,
                    fault: None,
                    past_errors: 0,
                    last_error: None,
                });
            }
            devices.push(InvDevice {
                component: SpComponent::try_from(id.as_str()).unwrap_or(SpComponent::SP_ITSELF),
                device: part,
                description: desc,
                capabilities,
                a0_only,
                absent,
                first,
                count: sensors.len() - first,
            });
        }
        Self {
            devices,
            sensors,
            monorail: kind == SpKind::Switch,
            seed,
            counters_since: 0,
        }
    }

    /// Inventory entries.
    pub fn num_devices(&self) -> u32 {
        self.devices.len() as u32
    }

    /// Inventory entry `index` (< [`Inventory::num_devices`]); `a0` is
    /// whether the board is powered on.
    pub fn description(&self, index: u32, a0: bool) -> DeviceDescription<'_> {
        let Some(d) = self.devices.get(index as usize) else {
            return DeviceDescription {
                component: SpComponent::SP_ITSELF,
                device: "",
                description: "",
                capabilities: 0,
                presence: DevicePresence::Error,
            };
        };
        let presence = if d.absent {
            DevicePresence::NotPresent
        } else if d.a0_only && !a0 {
            DevicePresence::Unavailable
        } else {
            DevicePresence::Present
        };
        DeviceDescription {
            component: d.component,
            device: &d.device,
            description: &d.description,
            capabilities: d.capabilities,
            presence,
        }
    }

    /// The sensors, by id.
    pub fn sensors(&self) -> &[Sensor] {
        &self.sensors
    }

    /// Sample time of `now_ms` (1 Hz polling).
    fn sample(now_ms: u64) -> u64 {
        now_ms / 1000 * 1000
    }

    fn value(&self, id: usize, ts: u64) -> f32 {
        let s = &self.sensors[id];
        let period = 60_000.0 * (1.0 + (id % 7) as f64);
        let phase = (id as f64) * 0.7;
        let mut h = self.seed
            ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ ts.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h ^= h >> 31;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 29;
        let noise = ((h >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
        let wave = (2.0 * std::f64::consts::PI * ts as f64 / period + phase).sin();
        (f64::from(s.base) + f64::from(s.swing) * (wave + 0.05 * noise)) as f32
    }

    /// The failure a sensor has at sample `ts`, if any, and since when.
    fn failure(
        &self,
        id: usize,
        ts: u64,
        a0: bool,
        off_since: u64,
    ) -> Option<(SensorDataMissing, u64)> {
        let s = &self.sensors[id];
        if s.absent {
            return Some((SensorDataMissing::DeviceNotPresent, 0));
        }
        if let Some(f) = s.fault {
            return Some((f.0, f.1.min(ts)));
        }
        (s.a0_only && !a0).then_some((SensorDataMissing::DeviceOff, off_since.min(ts)))
    }

    /// Make sensor `id` fail with `error` from `now_ms` on, or recover.
    pub fn set_fault(&mut self, id: u32, error: Option<SensorDataMissing>, now_ms: u64) -> bool {
        let ts = Self::sample(now_ms);
        let Some(s) = self.sensors.get_mut(id as usize) else {
            return false;
        };
        if let Some((kind, since)) = s.fault.take() {
            s.past_errors += ((ts.saturating_sub(since)) / 1000 + 1) as u32;
            s.last_error = Some((kind, ts));
        }
        s.fault = error.map(|e| (e, ts));
        true
    }

    /// `ReadSensor` at uptime `now_ms`; `a0` is whether the board is on,
    /// `off_since` the uptime it last went to A2.
    pub fn read(
        &self,
        req: SensorRequest,
        now_ms: u64,
        a0: bool,
        off_since: u64,
    ) -> Result<SensorResponse, SpError> {
        let id = req.id as usize;
        let s = self
            .sensors
            .get(id)
            .ok_or(SpError::Sensor(SensorError::InvalidSensor))?;
        let ts = Self::sample(now_ms);
        let failure = self.failure(id, ts, a0, off_since);
        let no_reading = SpError::Sensor(SensorError::NoReading);
        Ok(match req.kind {
            SensorRequestKind::LastReading => SensorResponse::LastReading(SensorReading {
                value: failure.map_or_else(|| Ok(self.value(id, ts)), |(m, _)| Err(m)),
                timestamp: ts,
            }),
            SensorRequestKind::LastData => match failure {
                None => SensorResponse::LastData {
                    value: self.value(id, ts),
                    timestamp: ts,
                },
                Some((_, since)) if since >= 1000 => SensorResponse::LastData {
                    value: self.value(id, since - 1000),
                    timestamp: since - 1000,
                },
                Some(_) => return Err(no_reading),
            },
            SensorRequestKind::LastError => match (failure, s.last_error) {
                (Some((m, _)), _) => SensorResponse::LastError {
                    value: m,
                    timestamp: ts,
                },
                (None, Some((m, at))) => SensorResponse::LastError {
                    value: m,
                    timestamp: at,
                },
                (None, None) => return Err(no_reading),
            },
            SensorRequestKind::ErrorCount => {
                let current = s
                    .fault
                    .map_or(0, |(_, since)| (ts.saturating_sub(since) / 1000 + 1) as u32);
                SensorResponse::ErrorCount(s.past_errors + current)
            }
        })
    }

    fn device_of(&self, component: SpComponent) -> Option<&InvDevice> {
        self.devices.iter().find(|d| d.component == component)
    }

    /// Detail items of `component`.
    pub fn num_details(&self, component: SpComponent) -> Result<u32, SpError> {
        if self.monorail && component == SpComponent::MONORAIL {
            return Ok(MONORAIL_PORTS);
        }
        self.device_of(component)
            .map(|d| d.count as u32)
            .ok_or(SpError::RequestUnsupportedForComponent)
    }

    /// Detail item `index` of `component` at uptime `now_ms`.
    pub fn detail(
        &self,
        component: SpComponent,
        index: u32,
        now_ms: u64,
        a0: bool,
        off_since: u64,
    ) -> ComponentDetail<'_> {
        if self.monorail && component == SpComponent::MONORAIL {
            return ComponentDetail::PortStatus(self.port_status(index, now_ms));
        }
        let Some(d) = self
            .device_of(component)
            .filter(|d| (index as usize) < d.count)
        else {
            return ComponentDetail::Measurement {
                name: "",
                kind: MeasurementKind::Temperature,
                value: Err(MeasurementError::InvalidSensor),
            };
        };
        let id = d.first + index as usize;
        let ts = Self::sample(now_ms);
        let s = &self.sensors[id];
        let value = match self.failure(id, ts, a0, off_since) {
            Some((m, _)) => Err(missing_to_measurement(m)),
            None => Ok(self.value(id, ts)),
        };
        ComponentDetail::Measurement {
            name: &s.name,
            kind: s.kind,
            value,
        }
    }

    /// `ComponentClearStatus`: only a switch's monorail has a status to
    /// clear (its port counters).
    pub fn clear_status(&mut self, component: SpComponent, now_ms: u64) -> Result<(), SpError> {
        if self.monorail && component == SpComponent::MONORAIL {
            self.counters_since = Self::sample(now_ms);
            Ok(())
        } else {
            Err(SpError::RequestUnsupportedForComponent)
        }
    }

    /// Status of management-network port `port`: ports 0–39 are QSGMII
    /// links to the rack's SPs (100M, behind VSC8504 PHYs), 40–47 10G SFI
    /// uplinks, the rest unconfigured.
    fn port_status(&self, port: u32, now_ms: u64) -> Result<PortStatus, PortStatusError> {
        let cfg = match port {
            0..=39 => PortConfig {
                mode: PortMode::Qsgmii(Speed::Speed100M),
                dev: (PortDev::Dev1g, (port % 24) as u8),
                serdes: (PortSerdes::Serdes6g, (port / 4) as u8),
            },
            40..=47 => PortConfig {
                mode: PortMode::Sfi,
                dev: (PortDev::Dev10g, (port - 40) as u8),
                serdes: (PortSerdes::Serdes10g, (port - 40) as u8),
            },
            _ => {
                return Err(PortStatusError {
                    port,
                    code: PortStatusErrorCode::Unconfigured,
                })
            }
        };
        let secs = (Self::sample(now_ms).saturating_sub(self.counters_since) / 1000) as u32;
        let rate = 40 + port * 3;
        let count = |k: u32| PacketCount {
            unicast: secs.wrapping_mul(rate * k),
            multicast: secs.wrapping_mul(k),
            broadcast: secs / 10,
        };
        Ok(PortStatus {
            port,
            cfg,
            link_status: LinkStatus::Up,
            phy_status: (port < 40).then_some(PhyStatus {
                ty: PhyType::Vsc8504,
                mac_link_up: LinkStatus::Up,
                media_link_up: LinkStatus::Up,
            }),
            counters: PortCounters {
                rx: count(2),
                tx: count(3),
                link_down_sticky: false,
                phy_link_down_sticky: false,
            },
        })
    }
}
