//! The MGS ⇄ SP wire protocol, byte-compatible with the upstream
//! `gateway-messages` crate (protocol version 25).
//!
//! A datagram is a hubpack-encoded [`Message`] (an 8-byte [`Header`] then a
//! [`MessageKind`]) followed by optional *trailing data* (update chunks,
//! caboose values, flash pages). There is no length field: the decoder hands
//! back whatever follows the message. Every type here has a maximum encoded
//! size known at compile time ([`SerializedSize::MAX_SIZE`]).
//!
//! This crate does no I/O and never allocates: it is `no_std` without the
//! `std` feature. [`sp_impl`] holds the SP-side dispatcher (bytes in, bytes
//! out over a handler trait); [`mgs`] holds the client-side helpers.

// The protocol and artifact formats are public APIs: every item says
// what it is.
#![warn(missing_docs)]
#![cfg_attr(not(feature = "std"), no_std)]

mod mgs_to_sp;
mod sp_to_mgs;

pub mod mgs;
pub mod sp_impl;
pub mod tlv;

pub use hubpack::SerializedSize;
pub use mgs_to_sp::*;
pub use sp_to_mgs::*;

use core::fmt;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use proptest_derive::Arbitrary;

/// Protocol versions (see the spec, §2.3).
///
/// Senders always write [`version::CURRENT`]; receivers accept anything at
/// or above [`version::MIN`] and *try* to decode it, since compatibility is
/// kept by only ever appending enum variants.
pub mod version {
    /// The version this crate speaks and writes into every header.
    pub const CURRENT: u32 = 25;
    /// The oldest version a receiver still accepts.
    pub const MIN: u32 = 2;
    /// First version with the SP watchdog messages.
    pub const WATCHDOG_VERSION: u32 = 12;
}

/// Largest datagram either side sends or accepts.
pub const MAX_SERIALIZED_SIZE: usize = 1024;

/// Trailing-data room guaranteed whatever the message (1024 − 247).
pub const MIN_TRAILING_DATA_LEN: usize = MAX_SERIALIZED_SIZE - Message::MAX_SIZE;

/// Encoded size of an `UpdateChunk` request without its data.
pub const UPDATE_CHUNK_MESSAGE_LEN: usize = 46;

/// Most image bytes one `UpdateChunk` datagram carries (1024 − 46).
pub const MAX_UPDATE_CHUNK_DATA: usize = MAX_SERIALIZED_SIZE - UPDATE_CHUNK_MESSAGE_LEN;

/// A host-flash page: what `ReadHostFlash` returns as trailing data.
pub const HF_PAGE_SIZE: usize = 256;

/// An RoT page: what `ReadRot` returns as trailing data.
pub const ROT_PAGE_SIZE: usize = 512;

/// UDP port SPs listen on.
pub const SP_PORT: u16 = 11111;

/// UDP port MGS binds.
pub const MGS_PORT: u16 = 22222;

const _: () = assert!(MIN_TRAILING_DATA_LEN == 777);
const _: () = assert!(MAX_UPDATE_CHUNK_DATA == 978);

/// The fixed 8-byte header of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Header {
    /// Sender's protocol version.
    pub version: u32,
    /// Chosen by the requester; a response echoes its request's id.
    pub message_id: u32,
}

/// One datagram's structured part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Message {
    /// Version and message id.
    pub header: Header,
    /// What the message is.
    pub kind: MessageKind,
}

/// The four directions a message can travel; the tag is the byte at offset 8.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum MessageKind {
    /// MGS asks the SP.
    MgsRequest(MgsRequest),
    /// MGS answers an SP-initiated request.
    MgsResponse(MgsResponse),
    /// The SP asks MGS (serial console data, host phase-2 data).
    SpRequest(SpRequest),
    /// The SP answers MGS.
    SpResponse(SpResponse),
}

/// Host power states the SP controls (RFD 81).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum PowerState {
    /// Host running.
    A0,
    /// Transitional; compute sleds never report it.
    A1,
    /// Host off, SP running.
    A2,
}

/// Why a request was malformed, in the SP's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum BadRequestReason {
    /// The request's version was too old, or newer and undecodable.
    WrongVersion {
        /// The replier's `CURRENT`.
        sp: u32,
        /// The version in the offending header.
        request: u32,
    },
    /// A message only the other side may send.
    WrongDirection,
    /// Leftover bytes after a request that takes none.
    UnexpectedTrailingData,
    /// The body did not decode.
    DeserializationError,
}

/// RoT image slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum RotSlotId {
    /// Slot A (0).
    A,
    /// Slot B (1).
    B,
}

/// How long a `SwitchDefaultImage` lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum SwitchDuration {
    /// Next boot only.
    Once,
    /// Persistently.
    Forever,
}

/// An update's id: the 16 bytes of a UUID in textual order.
///
/// Update ids are chosen by the client, so they convert losslessly to and
/// from [`uuid::Uuid`].
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, SerializedSize,
)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct UpdateId(pub [u8; 16]);

impl UpdateId {
    /// The id as a UUID.
    pub const fn as_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.0)
    }
}

impl From<uuid::Uuid> for UpdateId {
    fn from(id: uuid::Uuid) -> Self {
        Self(id.into_bytes())
    }
}

impl From<UpdateId> for uuid::Uuid {
    fn from(id: UpdateId) -> Self {
        uuid::Uuid::from_bytes(id.0)
    }
}

// Debug matches the reference crate's rendering (the golden files use it);
// Display is the UUID, which is what people read and type.
impl fmt::Debug for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UpdateId").field(&self.0).finish()
    }
}

impl fmt::Display for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_uuid().hyphenated(), f)
    }
}

/// A component of an SP: a 16-byte ASCII name, NUL-padded on the wire.
///
/// Names from the network may hold anything; names built here with
/// [`SpComponent::try_from`] are checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, SerializedSize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SpComponent {
    id: [u8; SpComponent::MAX_ID_LENGTH],
}

/// Why a string is not a valid [`SpComponent`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpComponentError {
    /// Longer than 16 bytes.
    #[error("component name is {0} bytes long; at most 16 are allowed")]
    TooLong(usize),
    /// Empty names are not components.
    #[error("component name is empty")]
    Empty,
    /// Only printable ASCII other than NUL is allowed.
    #[error("component name must be printable ASCII")]
    NotAscii,
}

impl SpComponent {
    /// Bytes in a component id.
    pub const MAX_ID_LENGTH: usize = 16;
    /// The SP itself (its own firmware image).
    pub const SP_ITSELF: Self = Self::from_const("sp");
    /// The SP's auxiliary flash.
    pub const SP_AUX_FLASH: Self = Self::from_const("sp-aux-flash");
    /// The sp3 host CPU.
    pub const SP3_HOST_CPU: Self = Self::from_const("sp3-host-cpu");
    /// The sp5 host CPU.
    pub const SP5_HOST_CPU: Self = Self::from_const("sp5-host-cpu");
    /// The FPGA's buffer of sp5 POST codes.
    pub const SP5_POST_CODES: Self = Self::from_const("sp5-post-codes");
    /// The host CPU's boot flash (two slots).
    pub const HOST_CPU_BOOT_FLASH: Self = Self::from_const("host-boot-flash");
    /// The AMD PSP output blob.
    pub const HOST_CPU_BOOT_APOB: Self = Self::from_const("host-boot-apob");
    /// The sidecar management switch.
    pub const MONORAIL: Self = Self::from_const("monorail");
    /// The sidecar's Tofino.
    pub const TOFINO: Self = Self::from_const("tofino");
    /// The root of trust.
    pub const ROT: Self = Self::from_const("rot");
    /// The RoT's stage0 bootloader.
    pub const STAGE0: Self = Self::from_const("stage0");
    /// The thermal control loop.
    pub const FAN_CTRL: Self = Self::from_const("fan-ctrl");
    /// The system attention LED.
    pub const SYSTEM_LED: Self = Self::from_const("system-led");
    /// Prefix of generic device names (`dev-17`).
    pub const GENERIC_DEVICE_PREFIX: &'static str = "dev-";

    const fn from_const(name: &str) -> Self {
        let bytes = name.as_bytes();
        assert!(bytes.len() <= Self::MAX_ID_LENGTH);
        let mut id = [0; Self::MAX_ID_LENGTH];
        let mut i = 0;
        while i < bytes.len() {
            id[i] = bytes[i];
            i += 1;
        }
        Self { id }
    }

    /// A component from its raw wire bytes, unchecked (as received).
    pub const fn from_id(id: [u8; Self::MAX_ID_LENGTH]) -> Self {
        Self { id }
    }

    /// The raw 16 wire bytes.
    pub const fn id(&self) -> &[u8; Self::MAX_ID_LENGTH] {
        &self.id
    }

    /// The name up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self
            .id
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.id.len());
        &self.id[..end]
    }

    /// The name as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }
}

impl TryFrom<&str> for SpComponent {
    type Error = SpComponentError;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        if name.is_empty() {
            return Err(SpComponentError::Empty);
        }
        if name.len() > Self::MAX_ID_LENGTH {
            return Err(SpComponentError::TooLong(name.len()));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SpComponentError::NotAscii);
        }
        let mut id = [0; Self::MAX_ID_LENGTH];
        id[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self { id })
    }
}

impl core::str::FromStr for SpComponent {
    type Err = SpComponentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s)
    }
}

impl fmt::Debug for SpComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SpComponent");
        match self.as_str() {
            Some(name) => s.field("id", &name),
            None => s.field("id", &self.id),
        };
        s.finish()
    }
}

impl fmt::Display for SpComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:02x?}", self.as_bytes()),
        }
    }
}

/// Why bytes did not decode (hubpack's three failure kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ran out before the value was complete.
    #[error("message is truncated")]
    Truncated,
    /// A `bool` or `Option` tag byte held something other than 0 or 1.
    #[error("invalid bool or option byte")]
    Invalid,
    /// An enum tag this version does not know (or a bad `SpPort`).
    #[error("unknown enum tag")]
    Custom,
}

impl From<hubpack::Error> for DecodeError {
    fn from(e: hubpack::Error) -> Self {
        match e {
            hubpack::Error::Truncated => Self::Truncated,
            hubpack::Error::Invalid => Self::Invalid,
            // Serializer-side errors cannot come out of a decode.
            _ => Self::Custom,
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is smaller than the message.
    #[error("output buffer too small for the message")]
    BufferTooSmall,
}

/// Encode `message` into `out`, then as much of `trailing` as fits within
/// both `out` and [`MAX_SERIALIZED_SIZE`].
///
/// Returns `(datagram_len, trailing_bytes_written)`.
pub fn encode(
    out: &mut [u8],
    message: &Message,
    trailing: &[u8],
) -> Result<(usize, usize), EncodeError> {
    let n = hubpack::serialize(out, message).map_err(|_| EncodeError::BufferTooSmall)?;
    let room = out.len().min(MAX_SERIALIZED_SIZE).saturating_sub(n);
    let take = room.min(trailing.len());
    out[n..n + take].copy_from_slice(&trailing[..take]);
    Ok((n + take, take))
}

/// Decode a datagram into its message and trailing bytes.
pub fn decode(datagram: &[u8]) -> Result<(Message, &[u8]), DecodeError> {
    Ok(hubpack::deserialize::<Message>(datagram)?)
}

/// Decode only the 8-byte header.
pub fn decode_header(datagram: &[u8]) -> Result<Header, DecodeError> {
    Ok(hubpack::deserialize::<Header>(datagram)?.0)
}

/// Serde helpers for fixed arrays longer than serde's built-in 32.
mod big_array {
    pub use serde_big_array::BigArray;
}

#[cfg(test)]
mod arb {
    use proptest::prelude::*;

    /// Arrays longer than proptest's built-in 32.
    pub fn array<const N: usize>() -> impl Strategy<Value = [u8; N]> {
        proptest::collection::vec(any::<u8>(), N)
            .prop_map(|v| v.try_into().unwrap_or_else(|_| unreachable!()))
    }
}

#[cfg(test)]
mod proptests;
