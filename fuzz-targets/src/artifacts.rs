//! The firmware artifact readers (`mgsd-artifacts`), one target per
//! format: what `mgsctl artifact inspect`, `update start --archive` and
//! the simulated SP read from a file or an update.
//!
//! - [`artifacts_tlvc`] reads TLV-C streams, nested ones too.
//! - [`artifacts_image`] probes the image header at each offset and the
//!   caboose, its keys and the rule for rewriting it.
//! - [`artifacts_auxflash`] reads `img/auxi.tlvc`.
//! - [`artifacts_archive`] reads build archives. Bytes that start with
//!   anything but a byte with the top bit set are the zip file itself
//!   (zip bombs included: the member limits must refuse them within the
//!   allocation bound). Bytes that start with such a byte are members that
//!   this target zips itself, with their checksums right, so that the
//!   fuzzer reaches what the reader does with their contents: that
//!   byte's bits 0–1 choose the compression, then records
//!   `[member] [length: u16 le] [bytes]` (`member` indexes
//!   [`MEMBERS`]). The ELF reader also gets the raw bytes.

use artifacts::archive::{self, image_from_elf, parse_comment};
use artifacts::image::{Caboose, ImageHeader, HEADER_OFFSETS};
use artifacts::tlvc::{self, Tag, TlvcReader};
use artifacts::{AuxFlash, HubrisArchive, ImageInfo, UpdateTarget};
use std::io::Write;

/// Nested TLV-C levels followed, at most.
const MAX_DEPTH: usize = 4;

/// Read `data` as a TLV-C stream, nested chunks too.
pub fn artifacts_tlvc(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        stream(data, 0, 0);
        // A stream read whole re-encodes to one that reads back the same.
        if let Ok(chunks) = TlvcReader::new(data).read_all() {
            let mut out = Vec::new();
            for c in &chunks {
                tlvc::write_chunk(&mut out, c.tag, c.body);
            }
            let again = TlvcReader::new(&out)
                .read_all()
                .expect("re-encoded chunks read");
            assert_eq!(again.len(), chunks.len());
            for (a, c) in again.iter().zip(&chunks) {
                assert_eq!((a.tag, a.body), (c.tag, c.body));
                assert!(a.checked_body().is_ok(), "written CRCs check");
            }
        }
    })
}

/// Every chunk of the stream `data` (at `base`), its body CRC, and its
/// body as a nested stream down to [`MAX_DEPTH`].
fn stream(data: &[u8], base: usize, depth: usize) {
    let mut reader = TlvcReader::with_base(data, base);
    loop {
        let offset = reader.offset();
        let remaining = reader.remaining().len();
        match reader.read_chunk() {
            Ok(Some(chunk)) => {
                assert_eq!(chunk.offset, offset);
                assert_eq!(reader.offset(), offset + chunk.total_len());
                assert!(chunk.total_len() <= remaining, "a chunk fits its region");
                let at = chunk.body_offset() - base;
                assert_eq!(&data[at..at + chunk.body.len()], chunk.body);
                let _ = chunk.checked_body().map_err(|e| e.to_string());
                let _ = format!("{:?} {}", chunk.tag, chunk.tag);
                if depth < MAX_DEPTH {
                    stream(chunk.body, chunk.body_offset(), depth + 1);
                }
            }
            Ok(None) => {
                assert_eq!(remaining, 0, "a clean end is the end of the region");
                break;
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(reader.offset(), offset, "an error does not advance");
                break;
            }
        }
    }
    // The iterator sees the same chunks and at most one error.
    let items: Vec<_> = TlvcReader::with_base(data, base).collect();
    assert!(items.iter().rev().skip(1).all(Result::is_ok));
}

/// Probe `data` as a raw image: every header offset (and one the data
/// names), the caboose, its keys, and `ImageInfo`.
pub fn artifacts_image(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let named = data
            .get(..8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")) as usize);
        for offset in HEADER_OFFSETS.into_iter().chain(named) {
            if let Some(header) = ImageHeader::at(data, offset) {
                caboose(data, &header);
                let _ = header.require(offset).map_err(|e| e.to_string());
            }
        }
        match ImageInfo::parse(data) {
            Ok(info) => {
                let end = info.header.total_image_len as usize;
                assert_eq!(info.signed_data_after_caboose, data.len() - end);
                let _ = info.check_caboose_writable().map_err(|e| e.to_string());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    })
}

/// The caboose `header` points to, and its keys.
fn caboose(data: &[u8], header: &ImageHeader) {
    let Ok(Some(c)) = Caboose::find(data, header) else {
        return;
    };
    let end = header.total_image_len as usize;
    assert!(end <= data.len());
    assert_eq!(c.offset + c.size as usize, end, "the caboose ends at E");
    assert_eq!(c.payload().len() + 8, c.size as usize);
    let _ = c.is_empty();
    for _ in c.chunks() {}
    for key in [c.gitc(), c.bord(), c.name(), c.vers(), c.sign()] {
        let _ = key.map_err(|e| e.to_string());
    }
    if let Some(tag) = c.payload().get(..4) {
        let _ = c.get(Tag(tag.try_into().expect("4 bytes")));
    }
}

/// Read `data` as `img/auxi.tlvc`.
pub fn artifacts_auxflash(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let Ok(aux) = AuxFlash::parse(data.to_vec()) else {
            return;
        };
        assert_eq!(aux.aux_flash_size(), data.len());
        assert_eq!(aux.data(), data);
        let blobs: Vec<(Tag, Vec<u8>)> = aux.blobs().map(|(t, b)| (t, b.to_vec())).collect();
        // The build layout of the same blobs reads back the same blobs.
        let borrowed: Vec<(Tag, &[u8])> = blobs.iter().map(|(t, b)| (*t, b.as_slice())).collect();
        let rebuilt = AuxFlash::parse(AuxFlash::build(&borrowed)).expect("a built aux flash reads");
        assert!(rebuilt.blobs().eq(borrowed.iter().copied()));
        assert_eq!(rebuilt.chck(), aux.chck(), "CHCK depends on the blobs only");
    })
}

/// Members a structured input names, by index.
pub const MEMBERS: [&str; 8] = [
    archive::FINAL_ELF,
    archive::FINAL_BIN,
    archive::AUXI_TLVC,
    archive::APP_TOML,
    archive::IMAGE_NAME,
    archive::GIT_REV,
    "img/other",
    "hubris build archive v",
];

/// Read `data` as a build archive (see the module docs for the two forms).
pub fn artifacts_archive(data: &[u8]) {
    crate::alloc_limit::bounded(|| match data.first() {
        Some(&b) if b & 0x80 != 0 => {
            if let Some(zip) = zip_members(b, &data[1..]) {
                archive_bytes(&zip);
            }
        }
        _ => {
            archive_bytes(data);
            if let Ok(image) = image_from_elf(data) {
                let _ = ImageInfo::parse(&image.data);
            }
            let _ = parse_comment(data);
        }
    })
}

/// Read `zip` as an archive and check what is read.
fn archive_bytes(zip: &[u8]) {
    let archive = match HubrisArchive::from_bytes(zip) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // What the reader says of its image is what the image says (checked
    // without a second copy of the caboose: the bound is the reader's).
    let info = &archive.info;
    assert_eq!(ImageHeader::probe(&archive.image), Ok(info.header));
    let end = info.header.total_image_len as usize;
    assert_eq!(info.signed_data_after_caboose, archive.image.len() - end);
    for target in [UpdateTarget::Sp, UpdateTarget::Rot, UpdateTarget::Stage0] {
        for slot in 0..3 {
            let _ = archive
                .check_target(target, slot)
                .map_err(|e| e.to_string());
        }
    }
    let _ = (
        archive.aux_flash_size(),
        archive.aux_flash_chck(),
        archive.caboose(),
    );
}

/// A zip of the members in `records`, compressed as `mode` says, with
/// the archive comment (or, with bit 2 of `mode`, the last member's
/// bytes as the comment).
fn zip_members(mode: u8, mut records: &[u8]) -> Option<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    use zip::CompressionMethod;
    let method = [
        CompressionMethod::Stored,
        CompressionMethod::Deflated,
        CompressionMethod::Bzip2,
        CompressionMethod::Stored,
    ][usize::from(mode & 3)];
    let options = SimpleFileOptions::default().compression_method(method);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut comment = artifacts::build::ARCHIVE_COMMENT.as_bytes().to_vec();
    while let [member, a, b, rest @ ..] = records {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        let (bytes, after) = rest.split_at(len);
        records = after;
        let name = MEMBERS[usize::from(member % 8)];
        if mode & 4 != 0 && member % 8 == 7 {
            comment = bytes.to_vec();
            continue;
        }
        // A member twice is refused by the writer: the zip stays as it is.
        if zip.start_file(name, options).is_ok() {
            zip.write_all(bytes).ok()?;
        }
    }
    zip.set_raw_comment(comment.into());
    Some(zip.finish().ok()?.into_inner())
}
