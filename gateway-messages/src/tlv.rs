//! Tag-length-value lists carried as trailing data (inventory, component
//! details, bulk ignition): `tag:[u8;4] || len:u32le || value[len]`, back to
//! back, as many as fit.

use crate::{SerializedSize, SpComponent};
use serde::{Deserialize, Serialize};

/// TLV tag of an inventory device description.
pub const DEVICE_DESCRIPTION_TAG: [u8; 4] = *b"DSC0";

/// Bytes of a TLV item header (tag and length).
pub const ITEM_HEADER_LEN: usize = 8;

/// Append one item made of `parts` to `out`; `None` (and nothing written)
/// if it does not fit.
pub fn encode_item(out: &mut [u8], tag: [u8; 4], parts: &[&[u8]]) -> Option<usize> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let total = ITEM_HEADER_LEN.checked_add(len)?;
    if total > out.len() {
        return None;
    }
    out[..4].copy_from_slice(&tag);
    out[4..8].copy_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
    let mut at = ITEM_HEADER_LEN;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    Some(total)
}

/// Iterate over the items of a TLV list; stops at the first malformed item.
pub fn items(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    core::iter::from_fn(move || {
        if data.len() < ITEM_HEADER_LEN {
            return None;
        }
        let tag = [data[0], data[1], data[2], data[3]];
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let value = data.get(ITEM_HEADER_LEN..ITEM_HEADER_LEN.checked_add(len)?)?;
        data = &data[ITEM_HEADER_LEN + len..];
        Some((tag, value))
    })
}

/// Whether an inventory device is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
#[allow(missing_docs)]
pub enum DevicePresence {
    Present,
    NotPresent,
    Failed,
    Unavailable,
    Timeout,
    Error,
}

/// Header of a `DSC0` value; the device and description strings follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
pub struct DeviceDescriptionHeader {
    /// The component this device is.
    pub component: SpComponent,
    /// Length of the device string.
    pub device_len: u32,
    /// Length of the description string.
    pub description_len: u32,
    /// Capability bits (bit 0 = updateable, ...).
    pub capabilities: u32,
    /// Presence.
    pub presence: DevicePresence,
}

/// An inventory entry as a handler describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDescription<'a> {
    /// Component id.
    pub component: SpComponent,
    /// Device part name.
    pub device: &'a str,
    /// Human description.
    pub description: &'a str,
    /// Capability bits.
    pub capabilities: u32,
    /// Presence.
    pub presence: DevicePresence,
}

impl DeviceDescription<'_> {
    /// Append this description as a `DSC0` item; `None` if it does not fit.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let header = DeviceDescriptionHeader {
            component: self.component,
            device_len: u32::try_from(self.device.len()).ok()?,
            description_len: u32::try_from(self.description.len()).ok()?,
            capabilities: self.capabilities,
            presence: self.presence,
        };
        let mut hdr = [0u8; DeviceDescriptionHeader::MAX_SIZE];
        let n = hubpack::serialize(&mut hdr, &header).ok()?;
        encode_item(
            out,
            DEVICE_DESCRIPTION_TAG,
            &[
                &hdr[..n],
                self.device.as_bytes(),
                self.description.as_bytes(),
            ],
        )
    }
}
