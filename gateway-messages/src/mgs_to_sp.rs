//! Messages MGS sends to an SP: [`MgsRequest`] and [`MgsResponse`].
//!
//! Variant order is the wire tag order (spec §5); never reorder, only append.

use crate::big_array::BigArray;
use crate::{BadRequestReason, PowerState, RotSlotId, SpComponent, SwitchDuration, UpdateId};
use hubpack::SerializedSize;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use proptest_derive::Arbitrary;

/// A request from MGS. Tags 0–50.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)] // each variant is documented in the spec, §5
pub enum MgsRequest {
    Discover,
    IgnitionState {
        target: u8,
    },
    BulkIgnitionState {
        offset: u32,
    },
    IgnitionCommand {
        target: u8,
        command: IgnitionCommand,
    },
    SpState,
    SerialConsoleAttach(SpComponent),
    /// Carries console bytes as trailing data.
    SerialConsoleWrite {
        offset: u64,
    },
    SerialConsoleDetach,
    SpUpdatePrepare(SpUpdatePrepare),
    ComponentUpdatePrepare(ComponentUpdatePrepare),
    /// Carries image bytes as trailing data.
    UpdateChunk(UpdateChunk),
    UpdateStatus(SpComponent),
    UpdateAbort {
        component: SpComponent,
        id: UpdateId,
    },
    GetPowerState,
    SetPowerState(PowerState),
    ResetPrepare,
    ResetTrigger,
    Inventory {
        device_index: u32,
    },
    GetStartupOptions,
    SetStartupOptions(StartupOptions),
    ComponentDetails {
        component: SpComponent,
        offset: u32,
    },
    IgnitionLinkEvents {
        target: u8,
    },
    BulkIgnitionLinkEvents {
        offset: u32,
    },
    ClearIgnitionLinkEvents {
        target: Option<u8>,
        transceiver_select: Option<TransceiverSelect>,
    },
    ComponentClearStatus(SpComponent),
    ComponentGetActiveSlot(SpComponent),
    ComponentSetActiveSlot {
        component: SpComponent,
        slot: u16,
    },
    SerialConsoleBreak,
    SendHostNmi,
    /// Carries the value as trailing data.
    SetIpccKeyLookupValue {
        key: u8,
    },
    ComponentSetAndPersistActiveSlot {
        component: SpComponent,
        slot: u16,
    },
    ReadCaboose {
        key: [u8; 4],
    },
    SerialConsoleKeepAlive,
    ResetComponentPrepare {
        component: SpComponent,
    },
    ResetComponentTrigger {
        component: SpComponent,
    },
    SwitchDefaultImage {
        component: SpComponent,
        slot: RotSlotId,
        duration: SwitchDuration,
    },
    ComponentAction {
        component: SpComponent,
        action: ComponentAction,
    },
    ReadComponentCaboose {
        component: SpComponent,
        slot: u16,
        key: [u8; 4],
    },
    ReadSensor(SensorRequest),
    CurrentTime,
    ReadRot(RotRequest),
    VpdLockState,
    ResetComponentTriggerWithWatchdog {
        component: SpComponent,
        time_ms: u32,
    },
    DisableComponentWatchdog {
        component: SpComponent,
    },
    ComponentWatchdogSupported {
        component: SpComponent,
    },
    VersionedRotBootInfo {
        version: u8,
    },
    Dump(DumpRequest),
    ReadHostFlash {
        slot: u16,
        addr: u32,
    },
    StartHostFlashHash {
        slot: u16,
    },
    GetHostFlashHash {
        slot: u16,
    },
    ComponentGetPersistentSlot(SpComponent),
}

impl MgsRequest {
    /// Whether this request legitimately carries trailing data (spec §2.4
    /// row 7); any other request with leftover bytes is rejected by the SP.
    pub const fn accepts_trailing_data(&self) -> bool {
        matches!(
            self,
            Self::UpdateChunk(_)
                | Self::SerialConsoleWrite { .. }
                | Self::SetIpccKeyLookupValue { .. }
                | Self::ReadRot(_)
        )
    }
}

/// MGS's answer to an SP-initiated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum MgsResponse {
    Error(MgsError),
    /// Followed by image bytes as trailing data.
    HostPhase2Data {
        hash: [u8; 32],
        offset: u64,
    },
}

/// Errors MGS reports to an SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum MgsError {
    BadRequest(BadRequestReason),
    HostPhase2Unavailable { hash: [u8; 32] },
    HostPhase2ImageBadOffset { hash: [u8; 32], offset: u64 },
}

/// Ignition commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum IgnitionCommand {
    PowerOn,
    PowerOff,
    PowerReset,
    AlwaysTransmit { enabled: bool },
}

/// Which ignition transceiver(s) to clear events on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum TransceiverSelect {
    Controller,
    TargetLink0,
    TargetLink1,
}

/// Prepare an SP-image update (optionally with an aux-flash image first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SpUpdatePrepare {
    /// Client-chosen update id.
    pub id: UpdateId,
    /// Aux-flash image size; 0 when there is none.
    pub aux_flash_size: u32,
    /// `CHCK` of the aux image, so the SP can skip one it already has.
    pub aux_flash_chck: [u8; 32],
    /// SP image size.
    pub sp_image_size: u32,
}

/// Prepare an update of a component other than the SP image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ComponentUpdatePrepare {
    /// Component to update.
    pub component: SpComponent,
    /// Client-chosen update id.
    pub id: UpdateId,
    /// Target slot (component-specific).
    pub slot: u16,
    /// Image size in bytes.
    pub total_size: u32,
}

/// One chunk of an image; the bytes follow as trailing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct UpdateChunk {
    /// Component being updated.
    pub component: SpComponent,
    /// Update id the chunk belongs to.
    pub id: UpdateId,
    /// Offset of the first byte in the image.
    pub offset: u32,
}

/// Host startup option bits (raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct StartupOptions(pub u64);

/// Component-specific actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
// The wire layout is fixed and the types are Copy without alloc: no boxing.
#[allow(clippy::large_enum_variant)]
pub enum ComponentAction {
    Led(LedComponentAction),
    Monorail(MonorailComponentAction),
    Apob(ApobAction),
}

/// LED actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum LedComponentAction {
    TurnOn,
    TurnOff,
    Blink,
}

/// APOB actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum ApobAction {
    Clear,
}

/// Management-network lock actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
// The wire layout is fixed and the types are Copy without alloc: no boxing.
#[allow(clippy::large_enum_variant)]
pub enum MonorailComponentAction {
    RequestChallenge,
    Unlock {
        challenge: UnlockChallenge,
        response: UnlockResponse,
        time_sec: u32,
    },
    Lock,
}

/// Challenge for a management-network unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum UnlockChallenge {
    Trivial { timestamp: u64 },
    EcdsaSha2Nistp256(EcdsaSha2Nistp256Challenge),
}

/// An ECDSA unlock challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct EcdsaSha2Nistp256Challenge {
    pub hw_id: [u8; 32],
    pub sw_id: [u8; 4],
    pub time: [u8; 8],
    pub nonce: [u8; 32],
}

/// Response to an [`UnlockChallenge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum UnlockResponse {
    Trivial {
        timestamp: u64,
    },
    EcdsaSha2Nistp256 {
        #[serde(with = "BigArray")]
        #[cfg_attr(test, proptest(strategy = "crate::arb::array::<65>()"))]
        key: [u8; 65],
        signer_nonce: [u8; 8],
        #[serde(with = "BigArray")]
        #[cfg_attr(test, proptest(strategy = "crate::arb::array::<64>()"))]
        signature: [u8; 64],
    },
}

/// Which sensor reading to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum SensorRequestKind {
    LastReading,
    LastData,
    LastError,
    ErrorCount,
}

/// A sensor read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub struct SensorRequest {
    pub kind: SensorRequestKind,
    pub id: u32,
}

/// RoT configuration page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum RotRequest {
    ReadCmpa,
    ReadCfpa(CfpaPage),
}

/// A CFPA page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum CfpaPage {
    Active,
    Inactive,
    Scratch,
}

/// Task dump requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
#[allow(missing_docs)]
pub enum DumpRequest {
    TaskDumpCount,
    TaskDumpReadStart { index: u32, key: [u8; 16] },
    TaskDumpReadContinue { seq: u32, key: [u8; 16] },
}
