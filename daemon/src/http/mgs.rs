//! The JSON shapes of the MGS-compatible paths, as the reference document
//! (`gateway-3.0.0.json`) names and lays them out, and their conversions
//! from what the SP says. Property names and enum spellings are the
//! contract; see docs/http-api.md.

use super::config::SpType;
use gateway_messages::{self as gm, SpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An SP's place in the rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpIdentifier {
    #[serde(rename = "type")]
    pub sp_type: SpType,
    pub slot: u16,
}

/// The host's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PowerState {
    A0,
    A1,
    A2,
}

impl From<gm::PowerState> for PowerState {
    fn from(p: gm::PowerState) -> Self {
        match p {
            gm::PowerState::A0 => PowerState::A0,
            gm::PowerState::A1 => PowerState::A1,
            gm::PowerState::A2 => PowerState::A2,
        }
    }
}

impl From<PowerState> for gm::PowerState {
    fn from(p: PowerState) -> Self {
        match p {
            PowerState::A0 => gm::PowerState::A0,
            PowerState::A1 => gm::PowerState::A1,
            PowerState::A2 => gm::PowerState::A2,
        }
    }
}

/// What an SP says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpState {
    pub serial_number: String,
    pub model: String,
    pub revision: u32,
    /// Hex.
    pub hubris_archive_id: String,
    #[schema(min_items = 6, max_items = 6)]
    pub base_mac_address: [u8; 6],
    pub power_state: PowerState,
    pub rot: RotState,
}

/// One of the RoT's two image slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "slot", rename_all = "snake_case")]
pub enum RotSlot {
    A,
    B,
}

impl From<gm::RotSlotId> for RotSlot {
    fn from(s: gm::RotSlotId) -> Self {
        match s {
            gm::RotSlotId::A => RotSlot::A,
            gm::RotSlotId::B => RotSlot::B,
        }
    }
}

/// Why the RoT holds an image for invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotImageError {
    Unchecked,
    FirstPageErased,
    PartiallyProgrammed,
    InvalidLength,
    HeaderNotProgrammed,
    BootloaderTooSmall,
    BadMagic,
    HeaderImageSize,
    UnalignedLength,
    UnsupportedType,
    ResetVectorNotThumb2,
    ResetVector,
    Signature,
}

impl From<gm::ImageError> for RotImageError {
    fn from(e: gm::ImageError) -> Self {
        use gm::ImageError as E;
        match e {
            E::Unchecked => Self::Unchecked,
            E::FirstPageErased => Self::FirstPageErased,
            E::PartiallyProgrammed => Self::PartiallyProgrammed,
            E::InvalidLength => Self::InvalidLength,
            E::HeaderNotProgrammed => Self::HeaderNotProgrammed,
            E::BootloaderTooSmall => Self::BootloaderTooSmall,
            E::BadMagic => Self::BadMagic,
            E::HeaderImageSize => Self::HeaderImageSize,
            E::UnalignedLength => Self::UnalignedLength,
            E::UnsupportedType => Self::UnsupportedType,
            E::ResetVectorNotThumb2 => Self::ResetVectorNotThumb2,
            E::ResetVector => Self::ResetVector,
            E::Signature => Self::Signature,
        }
    }
}

/// The RoT's boot state, in the version the SP reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RotState {
    V2 {
        active: RotSlot,
        persistent_boot_preference: RotSlot,
        #[schema(nullable)]
        pending_persistent_boot_preference: Option<RotSlot>,
        #[schema(nullable)]
        transient_boot_preference: Option<RotSlot>,
        /// Hex.
        #[schema(nullable)]
        slot_a_sha3_256_digest: Option<String>,
        #[schema(nullable)]
        slot_b_sha3_256_digest: Option<String>,
    },
    CommunicationFailed {
        message: String,
    },
    V3 {
        active: RotSlot,
        persistent_boot_preference: RotSlot,
        #[schema(nullable)]
        pending_persistent_boot_preference: Option<RotSlot>,
        #[schema(nullable)]
        transient_boot_preference: Option<RotSlot>,
        /// Hex SHA3-256 firmware ids.
        slot_a_fwid: String,
        slot_b_fwid: String,
        stage0_fwid: String,
        stage0next_fwid: String,
        #[schema(nullable)]
        slot_a_error: Option<RotImageError>,
        #[schema(nullable)]
        slot_b_error: Option<RotImageError>,
        #[schema(nullable)]
        stage0_error: Option<RotImageError>,
        #[schema(nullable)]
        stage0next_error: Option<RotImageError>,
    },
}

fn fwid(f: gm::Fwid) -> String {
    match f {
        gm::Fwid::Sha3_256(d) => actors::types::hex(&d),
    }
}

impl RotState {
    pub fn v2(s: &gm::RotStateV2) -> Self {
        RotState::V2 {
            active: s.active.into(),
            persistent_boot_preference: s.persistent_boot_preference.into(),
            pending_persistent_boot_preference: s
                .pending_persistent_boot_preference
                .map(Into::into),
            transient_boot_preference: s.transient_boot_preference.map(Into::into),
            slot_a_sha3_256_digest: s.slot_a_sha3_256_digest.map(|d| actors::types::hex(&d)),
            slot_b_sha3_256_digest: s.slot_b_sha3_256_digest.map(|d| actors::types::hex(&d)),
        }
    }

    pub fn v3(s: &gm::RotStateV3) -> Self {
        RotState::V3 {
            active: s.active.into(),
            persistent_boot_preference: s.persistent_boot_preference.into(),
            pending_persistent_boot_preference: s
                .pending_persistent_boot_preference
                .map(Into::into),
            transient_boot_preference: s.transient_boot_preference.map(Into::into),
            slot_a_fwid: fwid(s.slot_a_fwid),
            slot_b_fwid: fwid(s.slot_b_fwid),
            stage0_fwid: fwid(s.stage0_fwid),
            stage0next_fwid: fwid(s.stage0next_fwid),
            slot_a_error: s.slot_a_status.err().map(Into::into),
            slot_b_error: s.slot_b_status.err().map(Into::into),
            stage0_error: s.stage0_status.err().map(Into::into),
            stage0next_error: s.stage0next_status.err().map(Into::into),
        }
    }

    /// From a `RotBootInfo` answer; the legacy V1 form carries too little.
    pub fn of_boot_info(info: &gm::RotBootInfo) -> Self {
        match info {
            gm::RotBootInfo::V2(s) => Self::v2(s),
            gm::RotBootInfo::V3(s) => Self::v3(s),
            gm::RotBootInfo::V1(_) => RotState::CommunicationFailed {
                message: "the SP reports only the legacy (v1) RoT boot state".into(),
            },
        }
    }
}

/// Trailing NULs (and padding) off a fixed-size string field.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl SpState {
    /// From an `SpState` answer (v2 or v3); `None` for any other.
    pub fn of(r: &SpResponse) -> Option<Self> {
        let (archive, serial, model, revision, mac, power, rot) = match r {
            SpResponse::SpStateV2(s) => (
                s.hubris_archive_id,
                s.serial_number,
                s.model,
                s.revision,
                s.base_mac_address,
                s.power_state,
                match &s.rot {
                    Ok(rot) => RotState::v2(rot),
                    Err(e) => RotState::CommunicationFailed {
                        message: format!("{e:?}"),
                    },
                },
            ),
            SpResponse::SpStateV3(s) => (
                s.hubris_archive_id,
                s.serial_number,
                s.model,
                s.revision,
                s.base_mac_address,
                s.power_state,
                // v3 leaves the RoT to `rot-boot-info`; say so.
                RotState::CommunicationFailed {
                    message: "this SP reports the RoT separately (rot-boot-info)".into(),
                },
            ),
            _ => return None,
        };
        Some(SpState {
            serial_number: text(&serial),
            model: text(&model),
            revision,
            hubris_archive_id: actors::types::hex(&archive),
            base_mac_address: mac,
            power_state: power.into(),
            rot,
        })
    }
}

/// A firmware slot of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpComponentFirmwareSlot {
    pub slot: u16,
}

/// Query of `active-slot` POST.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SetActiveSlotQuery {
    /// Keep this choice across resets.
    pub persist: bool,
}

/// Query of `caboose`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CabooseQuery {
    /// The firmware slot whose caboose to read.
    pub firmware_slot: u16,
}

/// Query of `update`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateQuery {
    /// The slot to write (0 for a component with one).
    pub firmware_slot: u16,
    /// The caller's id for this update: posting the same id and image
    /// again is the same update; the same id with another image is a
    /// conflict.
    pub id: uuid::Uuid,
}

/// A component's caboose: what its image says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpComponentCaboose {
    pub board: String,
    pub git_commit: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    #[schema(nullable)]
    pub sign: Option<String>,
    #[serde(default)]
    #[schema(nullable)]
    pub epoch: Option<String>,
}

/// A host-flash slot's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ComponentFirmwareHashStatus {
    HashNotCalculated,
    HashInProgress,
    Hashed {
        #[schema(min_items = 32, max_items = 32)]
        sha256: [u8; 32],
    },
}

/// Body of `update-abort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateAbortBody {
    /// The update to abort: the SP aborts only if it holds this one.
    pub id: uuid::Uuid,
}

/// How far the SP is with erasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdatePreparationProgress {
    pub current: u32,
    pub total: u32,
}

/// The SP's status of its most recent update of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SpUpdateStatus {
    None,
    Preparing {
        id: uuid::Uuid,
        #[schema(nullable)]
        progress: Option<UpdatePreparationProgress>,
    },
    InProgress {
        id: uuid::Uuid,
        bytes_received: u32,
        total_bytes: u32,
    },
    Complete {
        id: uuid::Uuid,
    },
    Aborted {
        id: uuid::Uuid,
    },
    Failed {
        id: uuid::Uuid,
        code: u32,
    },
    RotError {
        id: uuid::Uuid,
        message: String,
    },
}

impl From<&actors::SpUpdateState> for SpUpdateStatus {
    fn from(s: &actors::SpUpdateState) -> Self {
        use actors::SpUpdateState as S;
        match s.clone() {
            S::None => Self::None,
            S::Preparing {
                id,
                erase_current,
                erase_total,
            } => Self::Preparing {
                id,
                progress: erase_current
                    .zip(erase_total)
                    .map(|(current, total)| UpdatePreparationProgress { current, total }),
            },
            // The aux-flash scan is part of preparing to the reference.
            S::AuxFlashScanned { id, .. } => Self::Preparing { id, progress: None },
            S::InProgress {
                id,
                bytes_received,
                total_size,
            } => Self::InProgress {
                id,
                bytes_received,
                total_bytes: total_size,
            },
            S::Complete { id } => Self::Complete { id },
            S::Aborted { id } => Self::Aborted { id },
            S::Failed { id, code } => Self::Failed { id, code },
            S::RotError { id, error } => Self::RotError { id, message: error },
        }
    }
}

/// The host's startup options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct HostStartupOptions {
    pub phase2_recovery_mode: bool,
    pub kbm: bool,
    pub bootrd: bool,
    pub prom: bool,
    pub kmdb: bool,
    pub kmdb_boot: bool,
    pub boot_ramdisk: bool,
    pub boot_net: bool,
    pub verbose: bool,
}

/// The options' bits on the wire, lowest first.
impl HostStartupOptions {
    fn flags(&self) -> [bool; 9] {
        [
            self.phase2_recovery_mode,
            self.kbm,
            self.bootrd,
            self.prom,
            self.kmdb,
            self.kmdb_boot,
            self.boot_ramdisk,
            self.boot_net,
            self.verbose,
        ]
    }

    pub fn to_bits(self) -> u64 {
        self.flags()
            .iter()
            .enumerate()
            .fold(0, |bits, (i, &on)| bits | (u64::from(on) << i))
    }

    pub fn from_bits(bits: u64) -> Self {
        let on = |i: u32| bits & (1 << i) != 0;
        Self {
            phase2_recovery_mode: on(0),
            kbm: on(1),
            bootrd: on(2),
            prom: on(3),
            kmdb: on(4),
            kmdb_boot: on(5),
            boot_ramdisk: on(6),
            boot_net: on(7),
            verbose: on(8),
        }
    }
}

/// Body of `rot-boot-info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GetRotBootInfoParams {
    /// The highest boot-info version the caller understands.
    pub version: u8,
}

/// Why a reset failed, in the reference's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SpComponentResetError {
    /// The reference refuses to reset the SP of its own sled (mgsd does
    /// not: it never answers this).
    ResetSpOfLocalSled,
    Other {
        message: String,
        #[schema(nullable)]
        error_code: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_option_bits_round_trip() {
        for bits in [0u64, 1, 0x1ff, 0b1010_0101] {
            assert_eq!(HostStartupOptions::from_bits(bits).to_bits(), bits);
        }
        let o = HostStartupOptions {
            verbose: true,
            ..Default::default()
        };
        assert_eq!(o.to_bits(), 1 << 8);
    }
}

/// A phase-2 recovery image's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostPhase2RecoveryImageId {
    /// SHA-256 of the whole image, hex.
    #[schema(format = "hex string (32 bytes)")]
    pub sha256_hash: String,
}

/// A span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Duration {
    pub secs: u64,
    pub nanos: u32,
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

/// An SP's most recent phase-2 request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "progress", rename_all = "snake_case")]
pub enum HostPhase2Progress {
    Available {
        image_id: HostPhase2RecoveryImageId,
        offset: u64,
        /// The image's size (0 if mgsd does not hold it).
        total_size: u64,
        age: Duration,
    },
    None,
}

/// The ids a recovering sled's installinator uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstallinatorImageId {
    #[schema(value_type = String, format = Uuid)]
    pub update_id: uuid::Uuid,
    #[schema(format = "hex string (32 bytes)")]
    pub host_phase_2: String,
    #[schema(format = "hex string (32 bytes)")]
    pub control_plane: String,
}
