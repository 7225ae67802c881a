//! What an SP actor publishes about its SP: where it is, what it says of
//! itself, and the SP's own update status per component with its age.

use crate::record::SpUpdateState;
use crate::types::{hex, Operation, SpName};
use gateway_messages::{SpComponent, SpResponse};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Where an SP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpTarget {
    /// A known address (tests, demo, static setups).
    Addr(SocketAddr),
    /// Found by multicast discovery on an interface (a switch port). The
    /// interface is looked up at every discovery tick, so one that does
    /// not exist yet, or goes down, is reported and taken up again when it
    /// comes back.
    Interface(String),
}

/// What an SP says about itself (from `SpState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpIdentity {
    pub serial: String,
    pub model: String,
    /// Board revision.
    pub revision: u32,
    /// Hubris archive id, hex.
    pub hubris_archive_id: String,
    /// `a8:40:25:…`.
    pub base_mac_address: String,
    /// Host power state when last read.
    pub power_state: String,
    /// The RoT's running slot (0 = A, 1 = B), when the SP reports it.
    pub rot_active_slot: Option<u16>,
}

/// Caboose `VERS` of the running images, read at discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareVersions {
    /// The SP's running image.
    pub sp: Option<String>,
    /// The RoT's running image.
    pub rot: Option<String>,
}

/// What the SP actor publishes about its SP.
#[derive(Debug, Clone, Serialize)]
pub struct SpInfo {
    pub name: SpName,
    /// Once known.
    pub addr: Option<SocketAddr>,
    /// Answered recently.
    pub reachable: bool,
    /// Once learnt.
    pub identity: Option<SpIdentity>,
    /// Once read.
    pub versions: FirmwareVersions,
    /// Smoothed round trip to the SP (µs), once measured; refreshed
    /// every discovery interval.
    pub srtt_us: Option<u64>,
    /// How long a request's first attempt waits (µs), refreshed with
    /// `srtt_us`.
    pub rto_us: u64,
    /// When the SP last answered (refreshed every discovery interval).
    #[serde(skip)]
    pub last_heard: Option<Instant>,
    /// The SP's last `SpState` answer and when it came.
    #[serde(skip)]
    pub state: Option<(Instant, SpResponse)>,
    /// For an SP behind an interface: `up`, `down` or `missing`.
    pub link: Option<&'static str>,
    /// What holds the SP's operation slot now (see [`super::SpHandle::claim`]).
    pub operation: Option<Operation>,
}

impl SpInfo {
    /// Milliseconds since the SP last answered (to within the discovery
    /// interval).
    pub fn last_heard_ms_ago(&self) -> Option<u64> {
        self.last_heard.map(|t| t.elapsed().as_millis() as u64)
    }
}

fn ascii(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl SpIdentity {
    /// Identity from any of the three SP state versions.
    pub fn from_state(response: &SpResponse) -> Option<SpIdentity> {
        let (archive, serial, model, revision, mac, power) = match response {
            SpResponse::SpStateV2(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            SpResponse::SpStateV3(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            SpResponse::SpState(s) => (
                &s.hubris_archive_id,
                &s.serial_number,
                &s.model,
                s.revision,
                &s.base_mac_address,
                s.power_state,
            ),
            _ => return None,
        };
        let rot_active_slot = match response {
            SpResponse::SpStateV2(s) => s.rot.as_ref().ok().map(|r| r.active as u16),
            _ => None,
        };
        Some(SpIdentity {
            rot_active_slot,
            serial: ascii(serial),
            model: ascii(model),
            revision,
            hubris_archive_id: hex(archive),
            base_mac_address: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            power_state: format!("{power:?}"),
        })
    }
}

/// The SP's update status per component, as last read, and when. Every
/// `UpdateStatus` answer the actor sees lands here, whoever asked; a
/// request that changes a component's status (prepare, abort, reset)
/// removes its entry.
#[derive(Debug, Clone, Default)]
pub struct SpStatuses(pub(super) HashMap<SpComponent, (SpUpdateState, Instant)>);

impl SpStatuses {
    /// Every component's status as last read.
    pub fn iter(&self) -> impl Iterator<Item = (SpComponent, &SpUpdateState)> {
        self.0.iter().map(|(c, (s, _))| (*c, s))
    }

    /// The status of `component` and its age, if read within `max_age`.
    pub fn within(
        &self,
        component: SpComponent,
        max_age: Duration,
    ) -> Option<(SpUpdateState, Duration)> {
        let (state, at) = self.0.get(&component)?;
        let age = at.elapsed();
        (age <= max_age).then(|| (state.clone(), age))
    }
}
