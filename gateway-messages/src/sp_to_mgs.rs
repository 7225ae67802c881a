//! Messages an SP sends to MGS: [`SpResponse`], [`SpError`], [`SpRequest`]
//! and their payloads.
//!
//! Variant order is the wire tag order (spec §6, §7); never reorder, only
//! append.

use crate::{PowerState, RotSlotId, SpComponent, StartupOptions, UnlockChallenge, UpdateId};
use core::fmt;
use hubpack::SerializedSize;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use proptest_derive::Arbitrary;

/// A response from an SP. Tags 0–52.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)] // each variant is documented in the spec, §6
pub enum SpResponse {
    Discover(DiscoverResponse),
    IgnitionState(IgnitionState),
    /// Followed by a TLV list (`IGN0`).
    BulkIgnitionState(TlvPage),
    IgnitionCommandAck,
    /// Legacy state; current SPs send [`SpResponse::SpStateV2`].
    SpState(SpStateV1),
    SpUpdatePrepareAck,
    ComponentUpdatePrepareAck,
    UpdateChunkAck,
    UpdateStatus(UpdateStatus),
    UpdateAbortAck,
    SerialConsoleAttachAck,
    SerialConsoleWriteAck {
        furthest_ingested_offset: u64,
    },
    SerialConsoleDetachAck,
    PowerState(PowerState),
    /// A power transition happened.
    PowerStateSet,
    ResetPrepareAck,
    /// Followed by a TLV list (`DSC0`).
    Inventory(TlvPage),
    Error(SpError),
    StartupOptions(StartupOptions),
    SetStartupOptionsAck,
    /// Followed by a TLV list.
    ComponentDetails(TlvPage),
    IgnitionLinkEvents(LinkEvents),
    /// Followed by a TLV list (`ILE0`).
    BulkIgnitionLinkEvents(TlvPage),
    ClearIgnitionLinkEventsAck,
    ComponentClearStatusAck,
    ComponentActiveSlot(u16),
    ComponentSetActiveSlotAck,
    SerialConsoleBreakAck,
    SendHostNmiAck,
    SetIpccKeyLookupValueAck,
    ComponentSetAndPersistActiveSlotAck,
    /// The value is the whole trailing data.
    CabooseValue,
    SerialConsoleKeepAliveAck,
    ResetComponentPrepareAck,
    ResetComponentTriggerAck,
    SwitchDefaultImageAck,
    ComponentActionAck,
    SpStateV2(SpStateV2),
    ReadSensor(SensorResponse),
    CurrentTime(u64),
    /// Followed by a 512-byte page.
    ReadRot(RotResponse),
    /// Followed by lock data.
    VpdLockState,
    DisableComponentWatchdogAck,
    ComponentWatchdogSupportedAck,
    SpStateV3(SpStateV3),
    RotBootInfo(RotBootInfo),
    ComponentAction(ComponentActionResponse),
    Dump(DumpResponse),
    /// Already in the requested power state.
    PowerStateUnchanged,
    /// Followed by exactly one 256-byte host-flash page.
    ReadHostFlash,
    StartHostFlashHashAck,
    HostFlashHash([u8; 32]),
    ComponentPersistentSlot(u16),
}

/// A request the SP initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SpRequest {
    /// Followed by console bytes; never acknowledged.
    SerialConsole {
        component: SpComponent,
        offset: u64,
    },
    HostPhase2Data {
        hash: [u8; 32],
        offset: u64,
    },
}

/// Which of its two switch ports received the Discover.
///
/// Encoded as its discriminant (1 or 2), not a 0-based tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SpPort {
    One = 1,
    Two = 2,
}

impl SerializedSize for SpPort {
    const MAX_SIZE: usize = 1;
}

impl Serialize for SpPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for SpPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            1 => Ok(Self::One),
            2 => Ok(Self::Two),
            other => Err(serde::de::Error::custom(format_args!(
                "invalid SpPort {other}"
            ))),
        }
    }
}

/// Reply to `Discover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct DiscoverResponse {
    /// The port the request came in on.
    pub sp_port: SpPort,
}

/// Position within a paged TLV list that follows as trailing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct TlvPage {
    /// Index of the first item in this page.
    pub offset: u32,
    /// Items in the whole list.
    pub total: u32,
}

/// A firmware image version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct ImageVersion {
    pub epoch: u32,
    pub version: u32,
}

/// Legacy SP state (tag 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SpStateV1 {
    pub hubris_archive_id: [u8; 8],
    pub serial_number: [u8; 32],
    pub model: [u8; 32],
    pub revision: u32,
    pub base_mac_address: [u8; 6],
    pub version: ImageVersion,
    pub power_state: PowerState,
    pub rot: Result<RotState, RotError>,
}

/// SP state as current SPs report it (tag 37).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SpStateV2 {
    pub hubris_archive_id: [u8; 8],
    /// ASCII, NUL-padded.
    pub serial_number: [u8; 32],
    /// ASCII, NUL-padded.
    pub model: [u8; 32],
    pub revision: u32,
    pub base_mac_address: [u8; 6],
    pub power_state: PowerState,
    pub rot: Result<RotStateV2, RotError>,
}

/// SP state without RoT details (tag 44).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SpStateV3 {
    pub hubris_archive_id: [u8; 8],
    pub serial_number: [u8; 32],
    pub model: [u8; 32],
    pub revision: u32,
    pub base_mac_address: [u8; 6],
    pub power_state: PowerState,
}

/// Legacy RoT state, as nested in [`SpStateV1`] and `RotBootInfo::V1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotState {
    pub rot_updates: RotUpdateDetails,
}

/// Part of [`RotState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotUpdateDetails {
    pub boot_state: RotBootState,
}

/// Part of [`RotState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotBootState {
    pub active: RotSlotId,
    pub slot_a: Option<RotImageDetails>,
    pub slot_b: Option<RotImageDetails>,
}

/// Digest and version of an RoT image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotImageDetails {
    pub digest: [u8; 32],
    pub version: ImageVersion,
}

/// RoT boot state, version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotStateV2 {
    pub active: RotSlotId,
    pub persistent_boot_preference: RotSlotId,
    pub pending_persistent_boot_preference: Option<RotSlotId>,
    pub transient_boot_preference: Option<RotSlotId>,
    pub slot_a_sha3_256_digest: Option<[u8; 32]>,
    pub slot_b_sha3_256_digest: Option<[u8; 32]>,
}

/// RoT boot state, version 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct RotStateV3 {
    pub active: RotSlotId,
    pub persistent_boot_preference: RotSlotId,
    pub pending_persistent_boot_preference: Option<RotSlotId>,
    pub transient_boot_preference: Option<RotSlotId>,
    pub slot_a_fwid: Fwid,
    pub slot_b_fwid: Fwid,
    pub stage0_fwid: Fwid,
    pub stage0next_fwid: Fwid,
    pub slot_a_status: Result<(), ImageError>,
    pub slot_b_status: Result<(), ImageError>,
    pub stage0_status: Result<(), ImageError>,
    pub stage0next_status: Result<(), ImageError>,
}

/// A firmware id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum Fwid {
    Sha3_256([u8; 32]),
}

/// Why an RoT image is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum ImageError {
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

/// Reply to `VersionedRotBootInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum RotBootInfo {
    V1(RotState),
    V2(RotStateV2),
    V3(RotStateV3),
}

/// An SP component's update status (spec §6.3).
///
/// The SP remembers only its most recent update per updater, in RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum UpdateStatus {
    /// No update since boot.
    None,
    /// Prepared; erasing.
    Preparing(UpdatePreparationStatus),
    /// SP image with aux flash: scan for a matching aux image finished.
    SpUpdateAuxFlashChckScan {
        /// Update id.
        id: UpdateId,
        /// Whether the aux image is already present (skip sending it).
        found_match: bool,
        /// Aux plus SP image size.
        total_size: u32,
    },
    /// Accepting data.
    InProgress(UpdateInProgressStatus),
    /// All bytes received and written.
    Complete(UpdateId),
    /// Aborted on request.
    Aborted(UpdateId),
    /// Failed with an SP-internal code.
    Failed {
        /// Update id.
        id: UpdateId,
        /// Opaque driver error code.
        code: u32,
    },
    /// RoT update failed.
    RotError {
        /// Update id.
        id: UpdateId,
        /// What the RoT said.
        error: RotError,
    },
}

impl UpdateStatus {
    /// The update id this status is about, if any.
    pub const fn id(&self) -> Option<UpdateId> {
        match *self {
            Self::None => None,
            Self::Preparing(UpdatePreparationStatus { id, .. })
            | Self::SpUpdateAuxFlashChckScan { id, .. }
            | Self::InProgress(UpdateInProgressStatus { id, .. })
            | Self::Complete(id)
            | Self::Aborted(id)
            | Self::Failed { id, .. }
            | Self::RotError { id, .. } => Some(id),
        }
    }
}

// What people read in errors and logs: ids as UUIDs (Debug keeps the
// reference crate's rendering, which the golden files use).
impl fmt::Display for UpdateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("no update"),
            Self::Preparing(p) => match p.progress {
                Some(UpdatePreparationProgress { current, total }) => {
                    write!(f, "update {} preparing, step {current} of {total}", p.id)
                }
                None => write!(f, "update {} preparing", p.id),
            },
            Self::SpUpdateAuxFlashChckScan { id, .. } => {
                write!(f, "update {id} scanning aux flash")
            }
            Self::InProgress(s) => write!(
                f,
                "update {} in progress, {} of {} bytes received",
                s.id, s.bytes_received, s.total_size
            ),
            Self::Complete(id) => write!(f, "update {id} complete"),
            Self::Aborted(id) => write!(f, "update {id} aborted"),
            Self::Failed { id, code } => write!(f, "update {id} failed (code {code:#x})"),
            Self::RotError { id, error } => write!(f, "update {id} failed: RoT error {error:?}"),
        }
    }
}

/// Payload of [`UpdateStatus::Preparing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct UpdatePreparationStatus {
    /// Update id.
    pub id: UpdateId,
    /// Erase progress, where the updater reports it.
    pub progress: Option<UpdatePreparationProgress>,
}

/// Erase progress: `current` of `total` steps (sectors for host flash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct UpdatePreparationProgress {
    pub current: u32,
    pub total: u32,
}

/// Payload of [`UpdateStatus::InProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct UpdateInProgressStatus {
    /// Update id.
    pub id: UpdateId,
    /// Bytes accepted so far: always the next expected offset.
    pub bytes_received: u32,
    /// Image size.
    pub total_size: u32,
}

/// Ignition state of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct IgnitionState {
    pub receiver: ReceiverStatus,
    pub target: Option<TargetState>,
}

/// Ignition receiver status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct ReceiverStatus {
    pub aligned: bool,
    pub locked: bool,
    pub polarity_inverted: bool,
}

/// An ignition target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct TargetState {
    pub system_type: SystemType,
    pub power_state: SystemPowerState,
    pub power_reset_in_progress: bool,
    pub faults: SystemFaults,
    pub controller0_present: bool,
    pub controller1_present: bool,
    pub link0_receiver_status: ReceiverStatus,
    pub link1_receiver_status: ReceiverStatus,
}

/// Kind of system behind an ignition target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SystemType {
    Gimlet,
    Sidecar,
    Psc,
    Unknown(u16),
    Cosmo,
}

/// Power state of an ignition target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SystemPowerState {
    Off,
    On,
    Aborted,
    PoweringOff,
    PoweringOn,
}

/// Faults an ignition target reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SystemFaults {
    pub power_a3: bool,
    pub power_a2: bool,
    pub sp: bool,
    pub rot: bool,
}

/// Ignition link events of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct LinkEvents {
    pub controller: TransceiverEvents,
    pub target_link0: TransceiverEvents,
    pub target_link1: TransceiverEvents,
}

/// Events seen by one ignition transceiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct TransceiverEvents {
    pub encoding_error: bool,
    pub decoding_error: bool,
    pub ordered_set_invalid: bool,
    pub message_version_invalid: bool,
    pub message_type_invalid: bool,
    pub message_checksum_invalid: bool,
}

/// Reply to `ReadSensor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SensorResponse {
    LastReading(SensorReading),
    LastData {
        value: f32,
        timestamp: u64,
    },
    LastError {
        value: SensorDataMissing,
        timestamp: u64,
    },
    ErrorCount(u32),
}

/// A sensor reading or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SensorReading {
    pub value: Result<f32, SensorDataMissing>,
    pub timestamp: u64,
}

/// Why a sensor has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SensorDataMissing {
    DeviceOff,
    DeviceError,
    DeviceNotPresent,
    DeviceUnavailable,
    DeviceTimeout,
}

/// Reply to `ReadRot`; the page follows as trailing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum RotResponse {
    Ok,
}

/// Reply to `ComponentAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum ComponentActionResponse {
    Ack,
    Monorail(MonorailComponentActionResponse),
    Apob(ApobResult),
}

/// Reply to a monorail action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum MonorailComponentActionResponse {
    RequestChallenge(UnlockChallenge),
}

/// Result of an APOB action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum ApobResult {
    Success,
    NotMuxedToSp,
    NotImplemented,
    InvalidState,
}

/// Reply to `Dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum DumpResponse {
    TaskDumpCount(u32),
    TaskDumpReadStarted {
        task: u16,
        time: u64,
        compression: u8,
    },
    /// With `Some`, followed by compressed dump bytes.
    TaskDumpRead(Option<DumpSegment>),
}

/// One segment of a task dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct DumpSegment {
    pub address: u32,
    pub compressed_length: u16,
    pub uncompressed_length: u16,
    pub seq: u32,
}

/// An error reported by the SP. Tags 0–38 (spec §7).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize, thiserror::Error,
)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum SpError {
    /// The SP is busy; retry shortly.
    #[error("SP is busy")]
    Busy,
    /// The request was malformed.
    #[error("bad request: {0}")]
    BadRequest(crate::BadRequestReason),
    /// This SP does not serve the request.
    #[error("request not supported by this SP")]
    RequestUnsupportedForSp,
    /// The component does not support the request.
    #[error("request not supported for this component")]
    RequestUnsupportedForComponent,
    /// Ignition failure.
    #[error("ignition error: {0:?}")]
    Ignition(IgnitionError),
    /// No serial console attached.
    #[error("serial console is not attached")]
    SerialConsoleNotAttached,
    /// Serial console already attached.
    #[error("serial console is already attached")]
    SerialConsoleAlreadyAttached,
    /// Another component holds the SP's single update buffer.
    #[error("another component ({0}) has an update in progress")]
    OtherComponentUpdateInProgress(SpComponent),
    /// No prepared update accepts this.
    #[error("update not prepared")]
    UpdateNotPrepared,
    /// The request's id is not the SP's current update.
    #[error("invalid update id (the SP's current update is {sp_update_id})")]
    InvalidUpdateId {
        /// The SP's current update id.
        sp_update_id: UpdateId,
    },
    /// An update blocks the request; its status is attached.
    #[error("an update is in progress ({0})")]
    UpdateInProgress(UpdateStatus),
    /// Chunk not at the next expected offset, or past the end.
    #[error("invalid update chunk")]
    InvalidUpdateChunk,
    /// The update failed with an SP-internal code.
    #[error("update failed (code {0:#x})")]
    UpdateFailed(u32),
    /// The target slot is busy (e.g. host flash not muxed to the SP).
    #[error("update slot is busy")]
    UpdateSlotBusy,
    /// Power transition failed.
    #[error("power state error (code {0})")]
    PowerStateError(u32),
    /// Legacy reset trigger without prepare.
    #[error("reset trigger without prepare")]
    ResetTriggerWithoutPrepare,
    /// Slot does not exist for this component.
    #[error("invalid slot for component")]
    InvalidSlotForComponent,
    /// Component-specific failure.
    #[error("component operation failed (code {0:#x})")]
    ComponentOperationFailed(u32),
    /// Image larger than the target.
    #[error("update is too large")]
    UpdateIsTooLarge,
    /// IPCC key lookup failure.
    #[error("setting IPCC key lookup value failed: {0:?}")]
    SetIpccKeyLookupValueFailed(IpccKeyLookupValueError),
    /// No caboose in the image.
    #[error("image has no caboose")]
    NoCaboose,
    /// Caboose key missing.
    #[error("caboose has no key {:?}", KeyStr(.0))]
    NoSuchCabooseKey([u8; 4]),
    /// Caboose value longer than a datagram can carry.
    #[error("caboose value too long ({0} bytes)")]
    CabooseValueOverflow(u32),
    /// Caboose could not be read.
    #[error("caboose read error")]
    CabooseReadError,
    /// Caboose checksum mismatch.
    #[error("bad caboose checksum")]
    BadCabooseChecksum,
    /// New SP image has no `BORD`.
    #[error("image board unknown")]
    ImageBoardUnknown,
    /// New SP image is for another board.
    #[error("image board mismatch")]
    ImageBoardMismatch,
    /// Component reset trigger without a matching prepare.
    #[error("reset trigger without prepare")]
    ResetComponentTriggerWithoutPrepare,
    /// Switching the RoT default image failed.
    #[error("switch default image failed (code {0})")]
    SwitchDefaultImageError(u32),
    /// SP–RoT protocol error.
    #[error("RoT protocol error: {0:?}")]
    Sprot(SprotProtocolError),
    /// SPI error.
    #[error("SPI error: {0:?}")]
    Spi(SpiError),
    /// Sprockets error.
    #[error("sprockets error: {0:?}")]
    Sprockets(SprocketsError),
    /// Flash update driver error.
    #[error("update error: {0:?}")]
    Update(UpdateError),
    /// Sensor error.
    #[error("sensor error: {0:?}")]
    Sensor(SensorError),
    /// VPD error.
    #[error("VPD error: {0:?}")]
    Vpd(VpdError),
    /// Watchdog error.
    #[error("watchdog error: {0:?}")]
    Watchdog(WatchdogError),
    /// Monorail error.
    #[error("monorail error: {0:?}")]
    Monorail(MonorailError),
    /// Dump error.
    #[error("dump error: {0:?}")]
    Dump(DumpError),
    /// Host-flash driver error.
    #[error("host flash error: {0:?}")]
    Hf(HfError),
}

/// Renders a caboose key as text where it is ASCII.
struct KeyStr<'a>(&'a [u8; 4]);

impl fmt::Debug for KeyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => fmt::Debug::fmt(self.0, f),
        }
    }
}

impl fmt::Display for crate::BadRequestReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongVersion { sp, request } => {
                write!(f, "wrong version (SP speaks {sp}, request had {request})")
            }
            Self::WrongDirection => f.write_str("wrong direction"),
            Self::UnexpectedTrailingData => f.write_str("unexpected trailing data"),
            Self::DeserializationError => f.write_str("could not deserialize"),
        }
    }
}

/// An RoT error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum RotError {
    MessageError { code: u32 },
    Sprot(SprotProtocolError),
    Spi(SpiError),
    Sprockets(SprocketsError),
    Update(UpdateError),
    Watchdog(WatchdogError),
}

/// Ignition errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum IgnitionError {
    FpgaError,
    InvalidPort,
    InvalidValue,
    NoTargetPresent,
    RequestInProgress,
    RequestDiscarded,
    Other(u32),
}

/// IPCC key lookup errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum IpccKeyLookupValueError {
    InvalidKey,
    ValueTooLong { max_len: u16 },
}

/// SP–RoT protocol errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SprotProtocolError {
    InvalidCrc,
    FlowError,
    UnsupportedProtocol,
    BadMessageType,
    BadMessageLength,
    CannotAssertCSn,
    Timeout,
    Deserialization,
    RotIrqRemainsAsserted,
    UnexpectedResponse,
    BadUpdateStatus,
    TaskRestarted,
    Unknown(u32),
    Desynchronized,
}

/// SPI errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SpiError {
    BadTransferSize,
    TaskRestarted,
    NothingToRelease,
    BadDevice,
    Unknown(u32),
}

/// Sprockets errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SprocketsError {
    BadEncoding,
    UnsupportedVersion,
    Unknown(u32),
}

/// Flash update driver errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum UpdateError {
    BadLength,
    UpdateInProgress,
    OutOfBounds,
    EccDoubleErr,
    EccSingleErr,
    SecureErr,
    ReadProtErr,
    WriteEraseErr,
    InconsistencyErr,
    StrobeErr,
    ProgSeqErr,
    WriteProtErr,
    BadImageType,
    UpdateAlreadyFinished,
    UpdateNotStarted,
    RunningImage,
    FlashError,
    FlashIllegalRead,
    FlashReadFail,
    MissingHeaderBlock,
    InvalidHeaderBlock,
    ImageBoardMismatch,
    ImageBoardUnknown,
    TaskRestarted,
    NotImplemented,
    Unknown(u32),
    MissingHandoffData,
    BlockOutOfOrder,
    InvalidComponent,
    InvalidSlotIdForOperation,
    InvalidArchive,
    ImageMismatch,
    SignatureNotValidated,
    VersionNotSupported,
    InvalidPreferredSlotId,
}

/// Sensor errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SensorError {
    InvalidSensor,
    NoReading,
}

/// VPD errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum VpdError {
    InvalidDevice,
    NotPresent,
    DeviceError,
    Unavailable,
    DeviceTimeout,
    DeviceOff,
    BadAddress,
    BadBuffer,
    BadRead,
    BadWrite,
    BadLock,
    NotImplemented,
    IsLocked,
    PartiallyLocked,
    AlreadyLocked,
    TaskRestarted,
}

/// Watchdog errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum WatchdogError {
    NoCompletedUpdate,
    Rot(RotWatchdogError),
}

/// RoT watchdog errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum RotWatchdogError {
    DongleDetected,
    Other(u32),
}

/// Monorail errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum MonorailError {
    UnlockAuthFailed,
    UnlockFailed,
    LockFailed,
    ManagementNetworkLocked,
    InvalidVLAN,
    GetChallengeFailed,
    TimeIsTooLong,
    ChallengeExpired,
    AlreadyTrusted,
}

/// Dump errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum DumpError {
    BadArea,
    BadIndex,
    NoDumpTaskHeader,
    CorruptTaskHeader,
    BadKey,
    ReadFailed,
    NoLongerValid,
    SegmentTooLong,
    BadSequenceNumber,
}

/// Host-flash driver errors, as the SP reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum HfError {
    NotMuxedToSp,
    BadAddress,
    QspiTimeout,
    QspiTransferError,
    HashUncalculated,
    RecalculateHash,
    HashInProgress,
}
