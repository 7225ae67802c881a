//! Reader of Hubris firmware artifacts, per `firmware-artifacts.md`.
//!
//! - [`tlvc`]: the TLV-C chunk format (reader, iterator, writer, CRC-32C).
//! - [`image`]: the image header and the caboose of a raw image.
//! - [`auxflash`]: `img/auxi.tlvc`, the aux flash image of an SP update.
//! - [`archive`]: the build archive (zip) and the slot rules for SP, RoT and
//!   stage0 updates.
//! - [`build`]: builders of valid synthetic images, aux flash files and
//!   archives, for simulators, tests and demos.
//!
//! Everything works on byte slices, except [`HubrisArchive::read`], which
//! takes any `Read + Seek`. Nothing here panics on malformed input.

// The protocol and artifact formats are public APIs: every item says
// what it is.
#![warn(missing_docs)]

/// Asserts that `$e` is `Err` matching the pattern, printing it if not.
#[cfg(test)]
macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {
        match $e {
            Err($p) $(if $g)? => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($p)),
        }
    };
}

pub mod archive;
pub mod auxflash;
pub mod build;
pub mod image;
pub mod tlvc;

pub use archive::{AppConfig, ChipKind, HubrisArchive, UpdateTarget, Warning};
pub use auxflash::AuxFlash;
pub use image::{Caboose, HeaderMagic, ImageHeader, ImageInfo};
pub use tlvc::{Chunk, Tag, TlvcReader};

/// Everything that can be wrong with an artifact. Offsets are bytes from
/// the start of the member (for images: from the image base); each
/// variant's message names its fields.
#[allow(missing_docs)] // fields are self-describing and named in the messages
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer than 12 bytes left for a header, or a chunk overrunning its
    /// region.
    #[error("TLV-C chunk at offset {offset:#x} truncated: needs {needed} bytes, {available} left")]
    TlvcTruncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// A header checksum failed: the end-of-data marker. An error only for
    /// readers that must consume their whole region.
    #[error("TLV-C header checksum fails at offset {offset:#x} (end of data)")]
    TlvcEndOfData { offset: usize },
    /// A body CRC-32C mismatch.
    #[error(
        "TLV-C chunk {tag} at offset {offset:#x}: body CRC {actual:#010x}, stored {stored:#010x}"
    )]
    TlvcBodyCrc {
        tag: Tag,
        offset: usize,
        stored: u32,
        actual: u32,
    },
    /// Neither header magic at any of 0xBC, 0xC0, 0x130, 0x298.
    #[error("no image header magic at 0xbc, 0xc0, 0x130 or 0x298")]
    NoImageHeader,
    /// The header is not where, or not what, the target's firmware needs.
    #[error("image header must be at {expected_offset:#x} with the current magic; found {magic:?} magic at {found_offset:#x}")]
    HeaderRejected {
        expected_offset: usize,
        found_offset: usize,
        magic: HeaderMagic,
    },
    /// `total_image_len` (E) is past the data, or past the SP's flash bank.
    #[error("total_image_len {total_image_len:#x} exceeds the limit {limit:#x}")]
    ImageLength { total_image_len: u32, limit: usize },
    /// The image has no caboose.
    #[error("image has no caboose")]
    NoCaboose,
    /// `extra` bytes (a signature) follow the caboose: it can't be
    /// rewritten without re-signing.
    #[error("{extra} bytes of signature data follow the caboose")]
    SignedImage { extra: usize },
    /// The caboose has no BORD, which an SP update needs.
    #[error("caboose has no BORD")]
    MissingBoard,
    /// BORD longer than the SP's 32-byte buffer.
    #[error("caboose BORD is {len} bytes, more than 32")]
    BoardTooLong { len: usize },
    /// `img/auxi.tlvc` breaks the layout or checksum rules.
    #[error("aux flash, offset {offset:#x}: {reason}")]
    AuxFlash { offset: usize, reason: String },
    /// `img/final.elf` is unusable; `offset` is a file offset.
    #[error("ELF, offset {offset:#x}: {reason}")]
    Elf { offset: usize, reason: String },
    /// The zip layer failed, on the archive (`member: None`) or one member.
    #[error("zip{}: {message}", member.as_ref().map(|m| format!(" member {m}")).unwrap_or_default())]
    Zip {
        member: Option<String>,
        message: String,
    },
    /// The archive comment isn't `hubris build archive v<N>`.
    #[error("archive comment {comment:?} is not `hubris build archive v<N>`")]
    BadComment { comment: String },
    /// A required member is absent.
    #[error("archive has no {member}")]
    MissingMember { member: &'static str },
    /// A member decompresses to more than its limit ([`archive::member_limit`]).
    #[error("member {member} is larger than {limit} bytes")]
    MemberTooLarge { member: String, limit: u64 },
    /// A text member isn't UTF-8.
    #[error("member {member} is not UTF-8")]
    NotUtf8 { member: String },
    /// `app.toml` isn't TOML, or a used key has the wrong type.
    #[error("app.toml: {message}")]
    AppToml { message: String },
    /// An error inside one member of an archive; offsets in `source` are
    /// relative to the member (for `img/final.elf`: to the image it yields).
    #[error("{member}: {source}")]
    Member { member: String, source: Box<Error> },
    /// The target doesn't have, or doesn't accept, that slot.
    #[error("{target:?} updates can't write slot {slot}")]
    WrongSlot { target: UpdateTarget, slot: u16 },
    /// `image-name` doesn't match the RoT slot (`a` for 0, `b` for 1).
    #[error("image-name {found:?} can't go to RoT slot {slot}, which needs {expected:?}")]
    ImageNameMismatch {
        slot: u16,
        expected: &'static str,
        found: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes from hex, ignoring whitespace.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Runs every parser on `data`; the results don't matter, panics do.
    fn parse_everything(data: &[u8]) {
        for chunk in TlvcReader::new(data).map_while(Result::ok) {
            let _ = chunk.checked_body();
            let _ = chunk.nested().read_all();
        }
        if let Ok(info) = ImageInfo::parse(data) {
            if let Some(c) = &info.caboose {
                let _ = (c.is_empty(), c.bord(), c.get(Tag(*b"ABCD")));
            }
            let _ = info.check_caboose_writable();
        }
        for &o in &image::HEADER_OFFSETS {
            let _ = ImageHeader::at(data, o);
        }
        let _ = AuxFlash::parse(data.to_vec());
        let _ = archive::image_from_elf(data);
        let _ = archive::parse_comment(data);
        let _ = AppConfig::parse(&String::from_utf8_lossy(data));
        let _ = HubrisArchive::from_bytes(data);
    }

    /// Seeds that get past the first checks of each parser.
    fn seeds() -> Vec<Vec<u8>> {
        let img = image::tests::minimal_image(0x298, image::HEADER_MAGIC);
        let elf = archive::tests::build_elf(&[(0, 3, &img)]);
        vec![
            AuxFlash::build(&[(Tag(*b"QSFP"), &[1, 2, 3])]),
            archive::tests::build_zip(
                "hubris build archive v1",
                zip::CompressionMethod::Stored,
                &[("img/final.elf", &elf)],
            ),
            elf,
            img,
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            parse_everything(&data);
        }

        #[test]
        fn mutated_artifacts_never_panic(
            seed in 0usize..4,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut data = seeds().swap_remove(seed);
            for (at, byte) in flips {
                let i = at.index(data.len());
                data[i] = byte;
            }
            parse_everything(&data);
            parse_everything(&data[..cut.index(data.len())]);
        }
    }
}
