//! Builders of synthetic but valid artifacts, for simulators, tests and
//! demos: SP and RoT images with a header and a caboose, aux flash files and
//! whole build archives. Everything here is deterministic, and everything
//! it builds passes this crate's readers (see the tests at the bottom).
//!
//! The builders panic on arguments that can't make a valid artifact (an
//! image too small for its header and caboose, caboose values that don't
//! fit); they are meant for fixed inputs, not for untrusted data.

use crate::archive::{APP_TOML, AUXI_TLVC, FINAL_BIN, FINAL_ELF, GIT_REV, IMAGE_NAME};
use crate::auxflash::{sha3_256, AuxFlash};
use crate::image::{CABOOSE_MAGIC, HEADER_MAGIC, ROT_HEADER_OFFSET, SP_HEADER_OFFSET};
use crate::tlvc::{crc32c, encode_chunk, Tag};
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Caboose size of the built images (what production SP and RoT use).
pub const CABOOSE_SIZE: usize = 256;
/// Bytes of an image header: magic, length, 64 reserved, version, epoch.
pub const HEADER_LEN: usize = 0x50;
/// Load address of STM32H7 SP images (flash bank 1).
pub const SP_IMAGE_BASE: u32 = 0x0800_0000;
/// LPC55 RoT slot A (image `a`): flash address of its first byte.
pub const ROT_SLOT_A_BASE: u32 = 0x0001_0000;
/// LPC55 RoT slot B (image `b`): flash address of its first byte.
pub const ROT_SLOT_B_BASE: u32 = 0x0005_0000;
/// Size of each LPC55 RoT image slot, and so of its execution range.
pub const ROT_SLOT_SIZE: u32 = 0x0004_0000;
/// The archive comment the Hubris build writes.
pub const ARCHIVE_COMMENT: &str = "hubris build archive v11";
/// `app.toml` `chip` of SP archives.
pub const SP_CHIP: &str = "../../chips/stm32h7";
/// `app.toml` `chip` of RoT archives.
pub const ROT_CHIP: &str = "../../chips/lpc55";

/// Smallest image the builders make: room for the vector table, the
/// header at 0x298 and a 256-byte caboose.
pub const MIN_IMAGE_LEN: usize = SP_HEADER_OFFSET + HEADER_LEN + CABOOSE_SIZE;

/// The execution range (flash addresses) of RoT slot 0 (`a`) or 1 (`b`):
/// block 0's reset vector, bit 28 (the secure alias) masked, must lie in
/// it. `None` for other slots.
pub fn rot_slot_range(slot: u16) -> Option<std::ops::Range<u32>> {
    let base = match slot {
        0 => ROT_SLOT_A_BASE,
        1 => ROT_SLOT_B_BASE,
        _ => return None,
    };
    Some(base..base + ROT_SLOT_SIZE)
}

fn put_word(img: &mut [u8], at: usize, word: u32) {
    img[at..at + 4].copy_from_slice(&word.to_le_bytes());
}

/// Deterministic filler that never contains 0xFF, so nothing reads as
/// erased flash; `seed` makes images of different boards or versions
/// differ everywhere.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| {
            let x = (i ^ seed).wrapping_mul(0x9E37_79B1).rotate_left(7) ^ seed;
            match (x >> 24) as u8 {
                0xFF => 0x5A,
                b => b,
            }
        })
        .collect()
}

/// A deterministic 40-hex-character `git-rev` for a board and version.
pub fn fake_git_rev(board: &str, vers: &str) -> String {
    sha3_256(format!("{board}\0{vers}").as_bytes())[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default caboose of the built images: magic, GITC, BORD, NAME (the
/// board), VERS, 0xFF filler, then the size word.
fn caboose(board: &str, vers: &str) -> Vec<u8> {
    let chunks = [
        encode_chunk(Tag::GITC, fake_git_rev(board, vers).as_bytes()),
        encode_chunk(Tag::BORD, board.as_bytes()),
        encode_chunk(Tag::NAME, board.as_bytes()),
        encode_chunk(Tag::VERS, vers.as_bytes()),
    ]
    .concat();
    assert!(
        chunks.len() <= CABOOSE_SIZE - 8,
        "caboose chunks for board {board:?} and version {vers:?} take {} bytes, more than {}",
        chunks.len(),
        CABOOSE_SIZE - 8
    );
    let mut out = vec![0xFF; CABOOSE_SIZE];
    put_word(&mut out, 0, CABOOSE_MAGIC);
    out[4..4 + chunks.len()].copy_from_slice(&chunks);
    put_word(&mut out, CABOOSE_SIZE - 4, CABOOSE_SIZE as u32);
    out
}

/// An unsigned image: pattern, vector table words 0 and 1, the header at
/// `header_at` with E = `len`, and the caboose in the last 256 bytes.
fn image(
    header_at: usize,
    initial_sp: u32,
    reset: u32,
    board: &str,
    len: usize,
    vers: &str,
) -> Vec<u8> {
    assert!(
        len >= MIN_IMAGE_LEN,
        "image of {len} bytes is smaller than {MIN_IMAGE_LEN}"
    );
    let total = u32::try_from(len).expect("image length fits in u32");
    let seed = crc32c(format!("{board}\0{vers}").as_bytes());
    let mut img = pattern(len, seed);
    put_word(&mut img, 0, initial_sp);
    put_word(&mut img, 4, reset);
    let header = &mut img[header_at..header_at + HEADER_LEN];
    header.fill(0);
    put_word(header, 0, HEADER_MAGIC);
    put_word(header, 4, total);
    img[len - CABOOSE_SIZE..].copy_from_slice(&caboose(board, vers));
    img
}

/// An STM32H7 SP image of exactly `len` bytes (at least
/// [`MIN_IMAGE_LEN`]): the header at 0x298 with the current magic and
/// `total_image_len` = `len`, a 256-byte caboose at the end holding GITC,
/// BORD = `board`, NAME = `board` and VERS = `vers`, and a deterministic
/// pattern without 0xFF everywhere else.
pub fn sp_image(board: &str, len: usize, vers: &str) -> Vec<u8> {
    let reset = (SP_IMAGE_BASE + 0x400) | 1;
    image(SP_HEADER_OFFSET, 0x2400_8000, reset, board, len, vers)
}

/// An unsigned LPC55 RoT image for slot 0 (`a`); see
/// [`rot_image_for_slot`].
pub fn rot_image(board: &str, len: usize, vers: &str) -> Vec<u8> {
    rot_image_for_slot(board, len, vers, 0)
}

/// An unsigned LPC55 RoT image linked for `slot` (0 = `a`, 1 = `b`; other
/// values panic): like [`sp_image`] but with the header at 0x130, and a
/// block-0 reset vector (word 0x04) inside the slot's execution range
/// ([`rot_slot_range`]), written in the secure alias (bit 28 set) as
/// Hubris does.
pub fn rot_image_for_slot(board: &str, len: usize, vers: &str, slot: u16) -> Vec<u8> {
    let range = rot_slot_range(slot).expect("RoT slot is 0 or 1");
    let reset = (range.start + 0x400) | 0x1000_0001;
    image(ROT_HEADER_OFFSET, 0x2001_C000, reset, board, len, vers)
}

/// An `img/auxi.tlvc` file with one nested chunk per blob, in order (the
/// Hubris build layout: CHCK, then AUXI).
pub fn aux_flash(blobs: &[(Tag, &[u8])]) -> Vec<u8> {
    AuxFlash::build(blobs)
}

/// What [`archive`] puts in a build archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSpec<'a> {
    /// The raw image: `img/final.bin`, and the one section of
    /// `img/final.elf`.
    pub image: Vec<u8>,
    /// Load address of the image's first byte (e.g. [`SP_IMAGE_BASE`]).
    pub base: u32,
    /// `img/auxi.tlvc`, if any.
    pub aux: Option<Vec<u8>>,
    /// `image-name` (`default`, `a`, `b`), if any.
    pub image_name: Option<&'a str>,
    /// `app.toml` `board`.
    pub board: &'a str,
    /// `app.toml` `name`.
    pub name: &'a str,
    /// `app.toml` `chip` (e.g. [`SP_CHIP`], [`ROT_CHIP`]).
    pub chip: &'a str,
    /// `git-rev`.
    pub git_rev: &'a str,
    /// Compress with bzip2, as the Hubris build does; deflate otherwise.
    pub bzip2: bool,
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn app_toml(spec: &ArchiveSpec<'_>) -> String {
    let image_names = if spec.chip.contains("lpc55") {
        "[\"a\", \"b\"]"
    } else {
        "[\"default\"]"
    };
    let mut text = format!(
        "name = {}\nboard = {}\nchip = {}\ntarget = \"thumbv7em-none-eabihf\"\n\
         image-names = {image_names}\nepoch = 0\nversion = 0\n\n[caboose]\nsize = {CABOOSE_SIZE}\n",
        toml_string(spec.name),
        toml_string(spec.board),
        toml_string(spec.chip),
    );
    if spec.aux.is_some() {
        text.push_str("\n[config.auxflash]\nmemory-size = 33554432\nslot-count = 16\n");
    }
    text
}

/// A minimal ELF32 little-endian file as hubtools writes it: ET_REL,
/// EM_ARM, OSABI 97, one PT_LOAD and one PROGBITS section `.sec1` with
/// flags exactly WRITE|ALLOC at `base` holding `image`, plus `.shstrtab`.
pub fn elf(image: &[u8], base: u32) -> Vec<u8> {
    const EHDR: usize = 52;
    const PHDR: usize = 32;
    const SHDR: usize = 40;
    let size = u32::try_from(image.len()).expect("image length fits in u32");
    let data_at = EHDR + PHDR;
    let strtab_at = data_at + image.len();
    let strtab = b"\0.sec1\0.shstrtab\0";
    let shoff = (strtab_at + strtab.len()).div_ceil(4) * 4;
    let entry = match image.get(4..8) {
        Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        None => base,
    };

    let mut out = Vec::with_capacity(shoff + 3 * SHDR);
    out.extend_from_slice(b"\x7fELF\x01\x01\x01\x61");
    out.extend_from_slice(&[0; 8]);
    let u16s = |out: &mut Vec<u8>, v: &[u16]| v.iter().for_each(|x| out.extend(x.to_le_bytes()));
    let u32s = |out: &mut Vec<u8>, v: &[u32]| v.iter().for_each(|x| out.extend(x.to_le_bytes()));
    u16s(&mut out, &[1, 40]); // ET_REL, EM_ARM
    u32s(
        &mut out,
        &[1, entry, EHDR as u32, shoff as u32, 0x0500_0400],
    );
    u16s(&mut out, &[EHDR as u16, PHDR as u16, 1, SHDR as u16, 3, 2]);
    // PT_LOAD, offset, vaddr, paddr, filesz, memsz, flags RWX, align.
    u32s(&mut out, &[1, data_at as u32, base, base, size, size, 7, 4]);
    out.extend_from_slice(image);
    out.extend_from_slice(strtab);
    out.resize(shoff, 0);
    // Section headers: name, type, flags, addr, offset, size, link, info,
    // addralign, entsize.
    u32s(&mut out, &[0; 10]);
    u32s(&mut out, &[1, 1, 3, base, data_at as u32, size, 0, 0, 4, 0]);
    let strtab_len = strtab.len() as u32;
    u32s(
        &mut out,
        &[7, 3, 0, 0, strtab_at as u32, strtab_len, 0, 0, 1, 0],
    );
    out
}

/// A Hubris build archive: comment [`ARCHIVE_COMMENT`], members
/// `img/final.bin`, `img/final.elf`, `app.toml`, `image-name` (if given),
/// `git-rev` and `img/auxi.tlvc` (if given), all bzip2- or
/// deflate-compressed.
pub fn archive(spec: ArchiveSpec<'_>) -> Vec<u8> {
    let elf = elf(&spec.image, spec.base);
    let app = app_toml(&spec);
    let mut members: Vec<(&str, &[u8])> = vec![
        (FINAL_BIN, &spec.image),
        (FINAL_ELF, &elf),
        (APP_TOML, app.as_bytes()),
    ];
    if let Some(name) = spec.image_name {
        members.push((IMAGE_NAME, name.as_bytes()));
    }
    members.push((GIT_REV, spec.git_rev.as_bytes()));
    if let Some(aux) = &spec.aux {
        members.push((AUXI_TLVC, aux));
    }
    let method = if spec.bzip2 {
        CompressionMethod::Bzip2
    } else {
        CompressionMethod::Deflated
    };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.set_comment(ARCHIVE_COMMENT);
    for (name, data) in members {
        zip.start_file(name, options).expect("zip member header");
        zip.write_all(data).expect("zip member data in memory");
    }
    zip.finish().expect("zip in memory").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ChipKind, HubrisArchive, UpdateTarget, Warning};
    use crate::image::{HeaderMagic, ImageHeader, ImageInfo};
    use zip::ZipArchive;

    #[test]
    fn sp_image_layout() {
        let img = sp_image("gimlet-c", 4096, "1.2.3");
        assert_eq!(img.len(), 4096);
        let info = ImageInfo::parse(&img).unwrap();
        assert_eq!(
            info.header,
            ImageHeader {
                offset: SP_HEADER_OFFSET,
                magic: HeaderMagic::Current,
                total_image_len: 4096
            }
        );
        assert_eq!(info.header.require(SP_HEADER_OFFSET), Ok(()));
        assert_eq!(info.check_caboose_writable(), Ok(()));
        let c = info.caboose.unwrap();
        assert_eq!((c.offset, c.size), (4096 - 256, 256));
        assert_eq!(c.bord(), Ok(Some(&b"gimlet-c"[..])));
        assert_eq!(c.name(), Ok(Some(&b"gimlet-c"[..])));
        assert_eq!(c.vers(), Ok(Some(&b"1.2.3"[..])));
        let gitc = fake_git_rev("gimlet-c", "1.2.3");
        assert_eq!(c.gitc(), Ok(Some(gitc.as_bytes())));
        assert_eq!(gitc.len(), 40);
        let tags: Vec<Tag> = c.chunks().map(|c| c.tag).collect();
        assert_eq!(tags, [Tag::GITC, Tag::BORD, Tag::NAME, Tag::VERS]);
        // Filler after the chunks, pattern everywhere before the caboose.
        assert_eq!(img[4096 - 8..4096 - 4], [0xFF; 4]);
        let header = SP_HEADER_OFFSET..SP_HEADER_OFFSET + HEADER_LEN;
        assert!(img[..4096 - 256]
            .iter()
            .enumerate()
            .all(|(i, &b)| b != 0xFF || header.contains(&i)));
        // Deterministic; other versions differ.
        assert_eq!(img, sp_image("gimlet-c", 4096, "1.2.3"));
        assert_ne!(img[..1000], sp_image("gimlet-c", 4096, "1.2.4")[..1000]);
        assert_eq!(sp_image("x", MIN_IMAGE_LEN, "").len(), MIN_IMAGE_LEN);
    }

    #[test]
    fn rot_image_layout() {
        for slot in [0, 1] {
            let img = rot_image_for_slot("oxide-rot-1", 2048, "1.0.0", slot);
            let info = ImageInfo::parse(&img).unwrap();
            assert_eq!(info.header.require(ROT_HEADER_OFFSET), Ok(()));
            assert_eq!(info.header.total_image_len, 2048);
            assert_eq!(info.caboose.unwrap().bord(), Ok(Some(&b"oxide-rot-1"[..])));
            let reset = u32::from_le_bytes(img[4..8].try_into().unwrap()) & !(1 << 28);
            assert!(rot_slot_range(slot).unwrap().contains(&reset));
            assert!(!rot_slot_range(1 - slot).unwrap().contains(&reset));
        }
        assert_eq!(
            rot_image("oxide-rot-1", 2048, "1.0.0"),
            rot_image_for_slot("oxide-rot-1", 2048, "1.0.0", 0)
        );
    }

    #[test]
    #[should_panic(expected = "smaller than")]
    fn too_small_image_panics() {
        sp_image("gimlet-c", MIN_IMAGE_LEN - 1, "1");
    }

    #[test]
    #[should_panic(expected = "more than 248")]
    fn oversized_caboose_panics() {
        sp_image("gimlet-c", 4096, &"9".repeat(200));
    }

    #[test]
    fn sp_archive_round_trip() {
        let img = sp_image("sidecar-c", 8192, "1.0.5");
        let aux = aux_flash(&[(Tag(*b"QSFP"), &[1, 2, 3]), (Tag(*b"TOFU"), &[9; 1000])]);
        for bzip2 in [true, false] {
            let bytes = archive(ArchiveSpec {
                image: img.clone(),
                base: SP_IMAGE_BASE,
                aux: Some(aux.clone()),
                image_name: Some("default"),
                board: "sidecar-c",
                name: "sidecar \"rev c\"",
                chip: SP_CHIP,
                git_rev: "abc-dirty",
                bzip2,
            });
            let method = if bzip2 {
                CompressionMethod::Bzip2
            } else {
                CompressionMethod::Deflated
            };
            let mut zip = ZipArchive::new(Cursor::new(&bytes)).unwrap();
            assert_eq!(zip.comment(), ARCHIVE_COMMENT.as_bytes());
            for i in 0..zip.len() {
                assert_eq!(zip.by_index(i).unwrap().compression(), method);
            }
            let a = HubrisArchive::from_bytes(&bytes).unwrap();
            assert_eq!(a.archive_version, 11);
            assert_eq!((a.image_base, &a.image), (SP_IMAGE_BASE, &img));
            assert_eq!(a.warnings, Vec::<Warning>::new());
            assert_eq!(a.chip, ChipKind::Stm32);
            assert_eq!(a.app.board.as_deref(), Some("sidecar-c"));
            assert_eq!(a.app.name.as_deref(), Some("sidecar \"rev c\""));
            assert_eq!(a.app.image_names, ["default"]);
            assert_eq!(a.image_name.as_deref(), Some("default"));
            assert_eq!(a.git_rev.as_deref(), Some("abc-dirty"));
            assert_eq!(a.aux_flash_size(), aux.len());
            assert_eq!(a.aux_flash.as_ref().unwrap().data(), &aux[..]);
            assert_eq!(a.check_target(UpdateTarget::Sp, 0), Ok(()));
            assert_eq!(a.caboose().unwrap().vers(), Ok(Some(&b"1.0.5"[..])));
        }
    }

    #[test]
    fn rot_archive_round_trip() {
        let img = rot_image_for_slot("oxide-rot-1", 4096, "1.0.2", 1);
        let bytes = archive(ArchiveSpec {
            image: img.clone(),
            base: ROT_SLOT_B_BASE,
            aux: None,
            image_name: Some("b"),
            board: "oxide-rot-1",
            name: "oxide-rot-1",
            chip: ROT_CHIP,
            git_rev: &fake_git_rev("oxide-rot-1", "1.0.2"),
            bzip2: true,
        });
        let a = HubrisArchive::from_bytes(&bytes).unwrap();
        assert_eq!((a.image_base, &a.image), (ROT_SLOT_B_BASE, &img));
        assert_eq!(a.chip, ChipKind::Lpc55);
        assert_eq!(a.app.image_names, ["a", "b"]);
        assert_eq!(a.aux_flash, None);
        assert_eq!(a.check_target(UpdateTarget::Rot, 1), Ok(()));
        assert!(a.check_target(UpdateTarget::Rot, 0).is_err());
        assert!(a.check_target(UpdateTarget::Sp, 0).is_err());

        // No image-name: the member is absent.
        let bytes = archive(ArchiveSpec {
            image: sp_image("gimlet-c", 1024, "1"),
            base: SP_IMAGE_BASE,
            aux: None,
            image_name: None,
            board: "gimlet-c",
            name: "gimlet-c",
            chip: SP_CHIP,
            git_rev: "0",
            bzip2: false,
        });
        let a = HubrisArchive::from_bytes(&bytes).unwrap();
        assert_eq!(a.image_name, None);
        let zip = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        assert!(zip.index_for_name(IMAGE_NAME).is_none());
        assert!(zip.index_for_name(AUXI_TLVC).is_none());
    }

    #[test]
    fn elf_has_one_write_alloc_section_and_a_load_segment() {
        let img = sp_image("gimlet-c", 1024, "1");
        let e = elf(&img, SP_IMAGE_BASE);
        let word = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap());
        assert_eq!(&e[..8], b"\x7fELF\x01\x01\x01\x61");
        assert_eq!(word(24), (SP_IMAGE_BASE + 0x400) | 1, "entry");
        assert_eq!(
            (word(52), word(52 + 8), word(52 + 16)),
            (1, SP_IMAGE_BASE, 1024)
        );
        let shoff = word(0x20) as usize;
        let sec1 = shoff + 40;
        assert_eq!(
            (word(sec1 + 4), word(sec1 + 8), word(sec1 + 12)),
            (1, 3, SP_IMAGE_BASE)
        );
        let name_at = word(shoff + 80 + 16) as usize + word(sec1) as usize;
        assert_eq!(&e[name_at..name_at + 6], b".sec1\0");
        let rebuilt = crate::archive::image_from_elf(&e).unwrap();
        assert_eq!((rebuilt.base, rebuilt.data), (SP_IMAGE_BASE, img));
    }

    #[test]
    fn aux_flash_parses() {
        let file = aux_flash(&[(Tag(*b"QSFP"), &[1, 2, 3])]);
        assert_eq!(file.len(), 84);
        let aux = AuxFlash::parse(file).unwrap();
        assert_eq!(aux.blobs().count(), 1);
    }
}
