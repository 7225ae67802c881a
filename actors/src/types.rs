//! The ground floor every other module stands on: names, hashes,
//! component names, what an artifact says of itself, wall-clock time.
//! Nothing here knows an actor.

use gateway_messages::SpComponent;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An SP's configured name (`sled-7`, `switch-0`, `psc-1`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpName(Arc<str>);

impl SpName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SpName {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for SpName {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for SpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de> Deserialize<'de> for SpName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SpName::from)
    }
}

impl Serialize for SpName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// SHA-256 of an image; shown and serialised as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageHash(pub [u8; 32]);

impl ImageHash {
    pub fn from_hex(hex: &str) -> Option<ImageHash> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ImageHash(out))
    }
}

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageHash({self})")
    }
}

impl Serialize for ImageHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ImageHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a SHA-256 in hex")))
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Components an update can target.
pub const UPDATABLE: [SpComponent; 4] = [
    SpComponent::SP_ITSELF,
    SpComponent::HOST_CPU_BOOT_FLASH,
    SpComponent::ROT,
    SpComponent::STAGE0,
];

/// How many firmware slots an update of `component` may target: the SP
/// image has one (its staging bank), the others two (A and B; for
/// stage0, stage0 and stage0next).
pub fn update_slots(component: SpComponent) -> u16 {
    if component == SpComponent::SP_ITSELF {
        1
    } else {
        2
    }
}

/// A component name a client gave that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad component {name:?}: {reason}")]
pub struct ComponentError {
    pub name: String,
    pub reason: String,
}

/// Parse a component name a client gave.
pub fn parse_component(name: &str) -> Result<SpComponent, ComponentError> {
    SpComponent::try_from(name).map_err(|e| ComponentError {
        name: name.into(),
        reason: e.to_string(),
    })
}

/// Parse the name of a component an update can target.
pub fn parse_updatable(name: &str) -> Result<SpComponent, ComponentError> {
    let c = parse_component(name)?;
    if UPDATABLE.contains(&c) {
        Ok(c)
    } else {
        Err(ComponentError {
            name: name.into(),
            reason: "updatable components are sp, host-boot-flash, rot and stage0".into(),
        })
    }
}

/// (De)serialise an [`SpComponent`] as its name (`host-boot-flash`).
pub mod component_name {
    use gateway_messages::SpComponent;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &SpComponent, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(c)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SpComponent, D::Error> {
        let name = String::deserialize(d)?;
        SpComponent::try_from(name.as_str()).map_err(serde::de::Error::custom)
    }
}

/// What an archive (or a raw SP image's caboose) says of itself, shown
/// with its update and checked again after an activation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Caboose `NAME`.
    pub name: Option<String>,
    /// Caboose `VERS`.
    pub vers: Option<String>,
    /// Caboose `GITC`.
    pub gitc: Option<String>,
    /// Caboose `BORD`.
    pub bord: Option<String>,
    /// The archive's `image-name` (`a`/`b` for RoT images).
    pub image_name: Option<String>,
}

/// The aux-flash image that leads an SP image from an archive: its length
/// (the first bytes of the update's image) and its `CHCK` (SHA3-256 of its
/// AUXI body), which the prepare names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuxFlash {
    pub len: u32,
    pub chck: [u8; 32],
}

/// What kind of board an SP sits on: the location map's `type` (`sled`,
/// `switch`, `power`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpType {
    Sled,
    Switch,
    Power,
}

impl SpType {
    pub fn as_str(self) -> &'static str {
        match self {
            SpType::Sled => "sled",
            SpType::Switch => "switch",
            SpType::Power => "power",
        }
    }

    /// The kind a conventional name says (`sled-3`, `switch-0`, `psc-1`
    /// or `power-1`), if it says one.
    pub fn from_name(name: &str) -> Option<SpType> {
        let prefix = name.split(['-', '_']).next()?;
        match prefix {
            "sled" => Some(SpType::Sled),
            "switch" => Some(SpType::Switch),
            "psc" | "power" => Some(SpType::Power),
            _ => None,
        }
    }

    /// Whether boards of this kind have `component` (only sleds have a
    /// host, and with it a host boot flash).
    pub fn has(self, component: SpComponent) -> bool {
        component != SpComponent::HOST_CPU_BOOT_FLASH || self == SpType::Sled
    }
}

/// What holds an SP: its one update buffer and its resets exclude each
/// other (a reset ends the update the SP is receiving). The SP's actor
/// owns the slot and grants it one operation at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    /// One of our updates, from its start until it ended.
    Update {
        id: uuid::Uuid,
        #[serde(with = "component_name")]
        component: SpComponent,
    },
    /// A reset (or an activation) of `component`.
    Reset {
        #[serde(with = "component_name")]
        component: SpComponent,
    },
}

/// Wall-clock time now, Unix ms (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_as_hex() {
        let h = ImageHash([0xab; 32]);
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(text, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<ImageHash>(&text).unwrap(), h);
        assert!(ImageHash::from_hex("ab").is_none());
        assert!(serde_json::from_str::<ImageHash>("\"zz\"").is_err());
    }

    #[test]
    fn only_updatable_components_parse_as_such() {
        assert_eq!(
            parse_updatable("host-boot-flash").unwrap(),
            SpComponent::HOST_CPU_BOOT_FLASH
        );
        let e = parse_updatable("fan-ctrl").unwrap_err();
        assert!(e.reason.contains("updatable"), "{e}");
        assert!(parse_component("").is_err());
    }
}
