//! Ignition: every SP's power switch ([`TargetPower`], shared with its
//! server loop) and a switch's ignition controller, whose ports lead to the
//! rack's SPs.
//!
//! The controller has [`IGNITION_PORTS`] ports (targets 0–35). Which SP sits
//! on which target follows the reference gateway's configuration of a real
//! rack (its `[[switch.port]]` table): sled cubby `n` is target
//! [`SLED_TARGETS`]`[n]`, power shelf `n` is `32 + n`, and a switch's own
//! controller sees itself as target 35 and the other switch as 34. A rack
//! config can place any SP elsewhere (`ignition_target`).
//!
//! A command to a port without a target is refused with
//! `Ignition(NoTargetPresent)`, to a port past the last with
//! `Ignition(InvalidPort)`; SPs without a controller (sleds, power shelves)
//! refuse every ignition request with `RequestUnsupportedForSp`.
//! `PowerOff` cuts the target's power: its SP drops everything it receives
//! and sends nothing until `PowerOn`, after which it boots (silent for the
//! reset time, all RAM state gone). `PowerReset` does both.

use gateway_messages::{
    IgnitionCommand, IgnitionError, IgnitionState, LinkEvents, ReceiverStatus, SpError,
    SystemFaults, SystemPowerState, SystemType, TargetState, TransceiverEvents, TransceiverSelect,
};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Ports of a switch's ignition controller.
pub const IGNITION_PORTS: u32 = 36;

/// Ignition target of sled cubby `n` (the reference gateway's rack map).
pub const SLED_TARGETS: [u8; 32] = [
    14, 30, 15, 31, 13, 29, 12, 28, 10, 26, 11, 27, 9, 25, 8, 24, 4, 20, 5, 21, 7, 23, 6, 22, 0,
    16, 1, 17, 3, 19, 2, 18,
];

/// Target of power shelf `n`.
pub fn power_shelf_target(n: usize) -> Option<u8> {
    u8::try_from(32 + n).ok().filter(|&t| t < 34)
}

/// A switch's own target on its own controller; the other switch is 34.
pub const OWN_SWITCH_TARGET: u8 = 35;
/// The other switch's target.
pub const PEER_SWITCH_TARGET: u8 = 34;

#[derive(Debug, Clone, Copy)]
struct PowerCell {
    on: bool,
    /// Powered on again since the SP last booted: it must boot.
    boot_pending: bool,
}

/// The power an SP gets from its ignition target; shared between the
/// controllers that switch it and the SP's own server loop.
#[derive(Debug)]
pub struct TargetPower {
    cell: Mutex<PowerCell>,
    /// Woken when the power changes.
    pub changed: Notify,
}

impl Default for TargetPower {
    fn default() -> Self {
        Self {
            cell: Mutex::new(PowerCell {
                on: true,
                boot_pending: false,
            }),
            changed: Notify::new(),
        }
    }
}

impl TargetPower {
    fn cell(&self) -> std::sync::MutexGuard<'_, PowerCell> {
        self.cell.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the SP has power.
    pub fn is_on(&self) -> bool {
        self.cell().on
    }

    /// Cut or restore power (restoring makes the SP boot).
    pub fn set(&self, on: bool) {
        {
            let mut c = self.cell();
            if on && !c.on {
                c.boot_pending = true;
            }
            c.on = on;
        }
        self.changed.notify_one();
    }

    /// Power off and on again.
    pub fn cycle(&self) {
        {
            let mut c = self.cell();
            c.on = true;
            c.boot_pending = true;
        }
        self.changed.notify_one();
    }

    /// Whether the SP must boot now (once per power-on).
    pub fn take_boot(&self) -> bool {
        let mut c = self.cell();
        std::mem::take(&mut c.boot_pending) && c.on
    }
}

/// The state of a port with nothing behind it.
pub fn absent_state() -> IgnitionState {
    IgnitionState {
        receiver: ReceiverStatus {
            aligned: false,
            locked: false,
            polarity_inverted: false,
        },
        target: None,
    }
}

/// Link events of a quiet port.
pub fn no_events() -> LinkEvents {
    LinkEvents {
        controller: NO_EVENTS,
        target_link0: NO_EVENTS,
        target_link1: NO_EVENTS,
    }
}

/// One controller port.
#[derive(Debug)]
struct Port {
    target: Option<(Arc<TargetPower>, SystemType)>,
    events: LinkEvents,
}

const NO_EVENTS: TransceiverEvents = TransceiverEvents {
    encoding_error: false,
    decoding_error: false,
    ordered_set_invalid: false,
    message_version_invalid: false,
    message_type_invalid: false,
    message_checksum_invalid: false,
};

const LOCKED: ReceiverStatus = ReceiverStatus {
    aligned: true,
    locked: true,
    polarity_inverted: false,
};

/// A switch's ignition controller.
#[derive(Debug)]
pub struct IgnitionController {
    ports: Vec<Port>,
    /// How many switches (controllers) the rack has: targets see them.
    controllers: usize,
}

impl IgnitionController {
    /// A controller whose targets are `targets` (target index, the SP's
    /// power, its system type); `controllers` switches in the rack.
    pub fn new(targets: Vec<(u8, Arc<TargetPower>, SystemType)>, controllers: usize) -> Self {
        let mut ports: Vec<Port> = (0..IGNITION_PORTS)
            .map(|_| Port {
                target: None,
                events: no_events(),
            })
            .collect();
        for (t, power, kind) in targets {
            if let Some(p) = ports.get_mut(usize::from(t)) {
                p.target = Some((power, kind));
            }
        }
        Self { ports, controllers }
    }

    fn port(&self, target: u8) -> Result<&Port, SpError> {
        self.ports
            .get(usize::from(target))
            .ok_or(SpError::Ignition(IgnitionError::InvalidPort))
    }

    /// State of port `target`.
    pub fn state(&self, target: u8) -> Result<IgnitionState, SpError> {
        let port = self.port(target)?;
        Ok(match &port.target {
            None => absent_state(),
            Some((power, kind)) => IgnitionState {
                receiver: LOCKED,
                target: Some(TargetState {
                    system_type: *kind,
                    power_state: if power.is_on() {
                        SystemPowerState::On
                    } else {
                        SystemPowerState::Off
                    },
                    power_reset_in_progress: false,
                    faults: SystemFaults {
                        power_a3: false,
                        power_a2: false,
                        sp: false,
                        rot: false,
                    },
                    controller0_present: self.controllers >= 1,
                    controller1_present: self.controllers >= 2,
                    link0_receiver_status: LOCKED,
                    link1_receiver_status: LOCKED,
                }),
            },
        })
    }

    /// Link events of port `target`.
    pub fn link_events(&self, target: u8) -> Result<LinkEvents, SpError> {
        Ok(self.port(target)?.events)
    }

    /// Clear events of one or all targets, one or all transceivers.
    pub fn clear_link_events(
        &mut self,
        target: Option<u8>,
        select: Option<TransceiverSelect>,
    ) -> Result<(), SpError> {
        let range = match target {
            Some(t) => {
                self.port(t)?;
                usize::from(t)..usize::from(t) + 1
            }
            None => 0..self.ports.len(),
        };
        for p in &mut self.ports[range] {
            let e = &mut p.events;
            match select {
                Some(TransceiverSelect::Controller) => e.controller = NO_EVENTS,
                Some(TransceiverSelect::TargetLink0) => e.target_link0 = NO_EVENTS,
                Some(TransceiverSelect::TargetLink1) => e.target_link1 = NO_EVENTS,
                None => {
                    e.controller = NO_EVENTS;
                    e.target_link0 = NO_EVENTS;
                    e.target_link1 = NO_EVENTS;
                }
            }
        }
        Ok(())
    }

    /// Record link errors on a transceiver of `target` (for tests).
    pub fn inject_link_event(&mut self, target: u8, select: TransceiverSelect) -> bool {
        let Some(p) = self.ports.get_mut(usize::from(target)) else {
            return false;
        };
        let e = match select {
            TransceiverSelect::Controller => &mut p.events.controller,
            TransceiverSelect::TargetLink0 => &mut p.events.target_link0,
            TransceiverSelect::TargetLink1 => &mut p.events.target_link1,
        };
        e.encoding_error = true;
        e.decoding_error = true;
        true
    }

    /// `IgnitionCommand` to `target`.
    pub fn command(&mut self, target: u8, command: IgnitionCommand) -> Result<(), SpError> {
        let (power, _) = self
            .port(target)?
            .target
            .as_ref()
            .ok_or(SpError::Ignition(IgnitionError::NoTargetPresent))?;
        match command {
            IgnitionCommand::PowerOn => power.set(true),
            IgnitionCommand::PowerOff => power.set(false),
            IgnitionCommand::PowerReset => power.cycle(),
            IgnitionCommand::AlwaysTransmit { .. } => {}
        }
        Ok(())
    }
}
