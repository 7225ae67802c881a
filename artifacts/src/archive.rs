//! Hubris build archives (spec §1) and the per-target update rules (§5, §6).
//!
//! The archive is a zip whose comment is `hubris build archive v<N>`.
//! The image bytes that get sent come from `img/final.elf` (its sections
//! flagged exactly WRITE|ALLOC, sorted, gaps filled with 0xFF);
//! `img/final.bin` is only compared with them, and a difference is a
//! [`Warning`], as in MGS.

use crate::auxflash::AuxFlash;
use crate::image::{Caboose, ImageInfo, ROT_HEADER_OFFSET, SP_HEADER_OFFSET};
use crate::Error;
use std::io::{Cursor, Read, Seek};
use zip::result::ZipError;
use zip::ZipArchive;

/// Raw image (ELF-derived) member.
pub const FINAL_ELF: &str = "img/final.elf";
/// Raw image member, compared with the ELF-derived bytes.
pub const FINAL_BIN: &str = "img/final.bin";
/// Aux flash image member (§4), only on apps with aux flash blobs.
pub const AUXI_TLVC: &str = "img/auxi.tlvc";
/// Flattened build configuration member.
pub const APP_TOML: &str = "app.toml";
/// `default`, or `a`/`b` for RoT images; absent on old archives.
pub const IMAGE_NAME: &str = "image-name";
/// `git rev-parse HEAD` output, maybe with `-dirty`.
pub const GIT_REV: &str = "git-rev";

/// The most `member` may decompress to (guards against zip bombs: real
/// members are a few MiB at most): an image member no more than
/// any flash could hold with room for an ELF's headers and symbols, a
/// text member a few KiB.
pub fn member_limit(member: &str) -> u64 {
    match member {
        FINAL_ELF => 16 << 20,
        FINAL_BIN | AUXI_TLVC => 8 << 20,
        APP_TOML => 1 << 20,
        _ => 64 << 10,
    }
}
/// Size of an STM32H7 flash bank: the SP's limit on E.
pub const SP_BANK_SIZE: u32 = 1 << 20;
/// Largest BORD value the SP can compare.
pub const MAX_BORD_LEN: usize = 32;

const COMMENT_PREFIX: &str = "hubris build archive v";
const SHF_WRITE_ALLOC: u32 = 3;
const SHT_NOBITS: u32 = 8;

/// Chip family, by hubtools' substring test on `app.toml` `chip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipKind {
    /// `chip` contains `stm32`: a service processor.
    Stm32,
    /// `chip` contains `lpc55`: a root of trust or bootleby.
    Lpc55,
    /// Neither substring, or no `app.toml`/`chip`.
    Unknown,
}

/// The `app.toml` keys this reader uses; all optional (bootleby archives
/// carry only `name`, `board` and `chip`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppConfig {
    /// `name`: the app name (caboose NAME by default).
    pub name: Option<String>,
    /// `board`: the board name (caboose BORD by default).
    pub board: Option<String>,
    /// `chip`: a path such as `../../chips/stm32h7`.
    pub chip: Option<String>,
    /// `image-names`: `["a", "b"]` on RoT apps; empty when absent.
    pub image_names: Vec<String>,
}

impl AppConfig {
    /// Parses the keys above; other keys are ignored, wrong types fail.
    pub fn parse(text: &str) -> Result<AppConfig, Error> {
        let err = |message: String| Error::AppToml { message };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err(e.message().into()))?;
        let string = |key: &str| {
            let value = table.get(key).map(|v| v.as_str().map(str::to_owned));
            value
                .map(|v| v.ok_or_else(|| err(format!("`{key}` is not a string"))))
                .transpose()
        };
        let image_names = match table.get("image-names") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| err("`image-names` is not an array of strings".into()))?,
        };
        Ok(AppConfig {
            name: string("name")?,
            board: string("board")?,
            chip: string("chip")?,
            image_names,
        })
    }

    /// The chip family.
    pub fn chip_kind(&self) -> ChipKind {
        match self.chip.as_deref() {
            Some(c) if c.contains("stm32") => ChipKind::Stm32,
            Some(c) if c.contains("lpc55") => ChipKind::Lpc55,
            _ => ChipKind::Unknown,
        }
    }
}

/// Something odd that MGS would only log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// `img/final.bin` differs from the ELF-derived image.
    FinalBinMismatch {
        /// Length of the ELF-derived image.
        elf_len: usize,
        /// Length of `img/final.bin`.
        bin_len: usize,
        /// First differing offset, or `None` if one is a prefix of the other.
        first_difference: Option<usize>,
    },
    /// There is no `img/final.bin` to compare with.
    FinalBinMissing,
}

/// What an archive is going to update; the caller decides, never the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateTarget {
    /// The service processor image (slot 0 only).
    Sp,
    /// A root-of-trust Hubris image (slot 0 = `a`, 1 = `b`).
    Rot,
    /// The RoT bootloader (slot 1, stage0next, only).
    Stage0,
}

/// Image bytes rebuilt from an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    /// Lowest address of the WRITE|ALLOC sections.
    pub base: u32,
    /// From `base` to the end of the highest section, gaps 0xFF.
    pub data: Vec<u8>,
}

fn elf_err(offset: usize, reason: impl Into<String>) -> Error {
    Error::Elf {
        offset,
        reason: reason.into(),
    }
}

/// Rebuilds the image from a 32-bit little-endian ELF file the way hubtools
/// does: sections whose flags are exactly WRITE|ALLOC (3), sorted by
/// address, gaps filled with 0xFF. NOBITS sections are skipped (they have
/// no file data); overlapping sections are an error.
pub fn image_from_elf(elf: &[u8]) -> Result<ElfImage, Error> {
    if elf.get(..6) != Some(&b"\x7fELF\x01\x01"[..]) {
        return Err(elf_err(0, "not a 32-bit little-endian ELF file"));
    }
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| crate::image::word_at(elf, at);
    let truncated = |at: usize| elf_err(at, "truncated");
    let shoff = u32_at(0x20).ok_or_else(|| truncated(0x20))? as usize;
    let shentsize = u16_at(0x2E).ok_or_else(|| truncated(0x2E))? as usize;
    let shnum = u16_at(0x30).ok_or_else(|| truncated(0x30))? as usize;
    if shnum > 0 && shentsize < 40 {
        return Err(elf_err(
            0x2E,
            format!("section header size {shentsize} < 40"),
        ));
    }
    let mut sections = Vec::new();
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let field = |n: usize| u32_at(sh + 4 * n).ok_or_else(|| truncated(sh));
        if field(2)? != SHF_WRITE_ALLOC || field(1)? == SHT_NOBITS {
            continue;
        }
        let (addr, offset, size) = (field(3)?, field(4)? as usize, field(5)? as usize);
        let body = offset
            .checked_add(size)
            .and_then(|end| elf.get(offset..end))
            .ok_or_else(|| elf_err(sh, format!("section {i} data runs past the file")))?;
        sections.push((addr, body));
    }
    sections.sort_by_key(|s| s.0);
    let base = sections
        .first()
        .ok_or_else(|| elf_err(0, "no WRITE|ALLOC section"))?
        .0;
    // Sized before anything is allocated, and allocated once: grown
    // section by section, the vector could take twice the limit.
    let len = sections
        .iter()
        .map(|(addr, body)| u64::from(addr - base) + body.len() as u64)
        .max()
        .unwrap_or(0);
    if len > member_limit(FINAL_ELF) {
        return Err(elf_err(0, "image spans more than the member size limit"));
    }
    let mut data = Vec::with_capacity(len as usize);
    for (addr, body) in sections {
        let at = (addr - base) as usize;
        if at < data.len() {
            return Err(elf_err(0, format!("sections overlap at address {addr:#x}")));
        }
        data.resize(at, 0xFF);
        data.extend_from_slice(body);
    }
    Ok(ElfImage { base, data })
}

/// The `N` of an archive comment `hubris build archive v<N>`.
pub fn parse_comment(comment: &[u8]) -> Result<u32, Error> {
    std::str::from_utf8(comment)
        .ok()
        .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::BadComment {
            comment: String::from_utf8_lossy(comment).into_owned(),
        })
}

/// A parsed Hubris build archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubrisArchive {
    /// `N` from the archive comment (not interpreted by anyone).
    pub archive_version: u32,
    /// The image bytes to send, rebuilt from `img/final.elf`.
    pub image: Vec<u8>,
    /// Load address of the image's first byte.
    pub image_base: u32,
    /// Header and caboose of `image`; error offsets are image-relative.
    pub info: ImageInfo,
    /// `img/auxi.tlvc`, checked.
    pub aux_flash: Option<AuxFlash>,
    /// `image-name`, exactly as stored.
    pub image_name: Option<String>,
    /// `git-rev`, exactly as stored.
    pub git_rev: Option<String>,
    /// `app.toml` keys; all `None` without the member.
    pub app: AppConfig,
    /// From `app.chip`.
    pub chip: ChipKind,
    /// Oddities that do not stop an update.
    pub warnings: Vec<Warning>,
    /// Every member's name, in archive order.
    pub members: Vec<String>,
}

fn in_member(member: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| Error::Member {
        member: member.to_string(),
        source: Box::new(e),
    }
}

fn zip_err(member: Option<&str>, e: impl ToString) -> Error {
    Error::Zip {
        member: member.map(str::to_owned),
        message: e.to_string(),
    }
}

fn read_member<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let file = match zip.by_name(name) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_err(Some(name), e)),
    };
    let limit = member_limit(name);
    let too_large = || Error::MemberTooLarge {
        member: name.to_string(),
        limit,
    };
    // The size the archive declares is checked before anything is
    // inflated, and read into one allocation of that size: a member that
    // inflates past it is refused before the vector would grow (to twice
    // its size, past the limit for a member that lies).
    let declared = file.size();
    if declared > limit {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(declared as usize);
    let mut rest = file.take(declared);
    rest.read_to_end(&mut data)
        .map_err(|e| zip_err(Some(name), e))?;
    // Reading on to the end of the data checks its CRC.
    let past = rest
        .into_inner()
        .read(&mut [0u8; 1])
        .map_err(|e| zip_err(Some(name), e))?;
    if past > 0 {
        return Err(zip_err(
            Some(name),
            format!("inflates past its declared size of {declared} bytes"),
        ));
    }
    Ok(Some(data))
}

fn read_text<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str) -> Result<Option<String>, Error> {
    read_member(zip, name)?
        .map(|b| {
            String::from_utf8(b).map_err(|_| Error::NotUtf8 {
                member: name.into(),
            })
        })
        .transpose()
}

impl HubrisArchive {
    /// Reads and checks an archive held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<HubrisArchive, Error> {
        Self::read(Cursor::new(bytes))
    }

    /// Reads and checks an archive: the comment, `img/final.elf` (required),
    /// its header and caboose, and the optional members.
    pub fn read<R: Read + Seek>(reader: R) -> Result<HubrisArchive, Error> {
        let mut zip = ZipArchive::new(reader).map_err(|e| zip_err(None, e))?;
        let archive_version = parse_comment(zip.comment())?;
        let members = zip.file_names().map(String::from).collect();
        let elf =
            read_member(&mut zip, FINAL_ELF)?.ok_or(Error::MissingMember { member: FINAL_ELF })?;
        let ElfImage { base, data: image } = image_from_elf(&elf).map_err(in_member(FINAL_ELF))?;
        let info = ImageInfo::parse(&image).map_err(in_member(FINAL_ELF))?;
        let mut warnings = Vec::new();
        match read_member(&mut zip, FINAL_BIN)? {
            None => warnings.push(Warning::FinalBinMissing),
            Some(bin) if bin != image => warnings.push(Warning::FinalBinMismatch {
                elf_len: image.len(),
                bin_len: bin.len(),
                first_difference: image.iter().zip(&bin).position(|(a, b)| a != b),
            }),
            Some(_) => {}
        }
        let aux_flash = read_member(&mut zip, AUXI_TLVC)?
            .map(|d| AuxFlash::parse(d).map_err(in_member(AUXI_TLVC)))
            .transpose()?;
        let app = match read_text(&mut zip, APP_TOML)? {
            Some(text) => AppConfig::parse(&text).map_err(in_member(APP_TOML))?,
            None => AppConfig::default(),
        };
        Ok(HubrisArchive {
            archive_version,
            image,
            image_base: base,
            info,
            aux_flash,
            image_name: read_text(&mut zip, IMAGE_NAME)?,
            git_rev: read_text(&mut zip, GIT_REV)?,
            chip: app.chip_kind(),
            app,
            warnings,
            members,
        })
    }

    /// The image's caboose, if it has one.
    pub fn caboose(&self) -> Option<&Caboose> {
        self.info.caboose.as_ref()
    }

    /// SpUpdatePrepare `aux_flash_size`: 0 without `img/auxi.tlvc`.
    pub fn aux_flash_size(&self) -> usize {
        self.aux_flash.as_ref().map_or(0, AuxFlash::aux_flash_size)
    }

    /// SpUpdatePrepare `aux_flash_chck`: zeros without `img/auxi.tlvc`.
    pub fn aux_flash_chck(&self) -> [u8; 32] {
        self.aux_flash.as_ref().map_or([0; 32], AuxFlash::chck)
    }

    /// Whether this archive may be written to `slot` of `target`:
    /// - SP: slot 0; header at 0x298 with the current magic; E within one
    ///   1 MiB bank; a caboose whose BORD reads (good CRC, ≤ 32 bytes).
    ///   Comparing BORD with the running SP's is the caller's job.
    /// - RoT: slot 0 or 1; `image-name`, if present, `a` for 0 and `b` for
    ///   1; header at 0x130 with the current magic.
    /// - Stage0: slot 1 only; no header needed (old bootloaders lack one).
    pub fn check_target(&self, target: UpdateTarget, slot: u16) -> Result<(), Error> {
        let header = &self.info.header;
        match (target, slot) {
            (UpdateTarget::Sp, 0) => {
                header.require(SP_HEADER_OFFSET)?;
                if header.total_image_len > SP_BANK_SIZE {
                    return Err(Error::ImageLength {
                        total_image_len: header.total_image_len,
                        limit: SP_BANK_SIZE as usize,
                    });
                }
                let bord = self.caboose().ok_or(Error::NoCaboose)?.bord()?;
                match bord {
                    None => Err(Error::MissingBoard),
                    Some(b) if b.len() > MAX_BORD_LEN => Err(Error::BoardTooLong { len: b.len() }),
                    Some(_) => Ok(()),
                }
            }
            (UpdateTarget::Rot, 0 | 1) => {
                let expected = if slot == 0 { "a" } else { "b" };
                match &self.image_name {
                    Some(found) if found != expected => {
                        return Err(Error::ImageNameMismatch {
                            slot,
                            expected,
                            found: found.clone(),
                        })
                    }
                    _ => {}
                }
                header.require(ROT_HEADER_OFFSET)
            }
            (UpdateTarget::Stage0, 1) => Ok(()),
            _ => Err(Error::WrongSlot { target, slot }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::tests::minimal_image;
    use crate::image::{HeaderMagic, HEADER_MAGIC};
    use crate::tlvc::Tag;
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    /// An ELF32 LE file with one section per `(addr, flags, data)`.
    pub(crate) fn build_elf(sections: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 52];
        out[..8].copy_from_slice(b"\x7fELF\x01\x01\x01\x61"); // OSABI 97, as hubtools
        out[16..20].copy_from_slice(&[1, 0, 40, 0]); // ET_REL, EM_ARM
        let mut headers = vec![0u8; 40]; // the null section
        for &(addr, flags, data) in sections {
            // name, type PROGBITS, flags, addr, offset, size, link, info, align, entsize
            let fields = [
                0,
                1,
                flags,
                addr,
                out.len() as u32,
                data.len() as u32,
                0,
                0,
                4,
                0,
            ];
            headers.extend(fields.iter().flat_map(|f| f.to_le_bytes()));
            out.extend_from_slice(data);
        }
        let shoff = out.len() as u32;
        out[0x20..0x24].copy_from_slice(&shoff.to_le_bytes());
        out[0x2E..0x32].copy_from_slice(&[40, 0, sections.len() as u8 + 1, 0]);
        [out, headers].concat()
    }

    pub(crate) fn build_zip(
        comment: &str,
        method: CompressionMethod,
        members: &[(&str, &[u8])],
    ) -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.set_comment(comment);
        for (name, data) in members {
            zip.start_file(
                *name,
                SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// Vector 5: `img/final.{bin,elf}` of vector 3's image, plus `extra`.
    fn sp_archive(method: CompressionMethod, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let img = minimal_image(0x298, HEADER_MAGIC);
        let elf = build_elf(&[(0, 3, &img)]);
        let members = [&[(FINAL_BIN, &img[..]), (FINAL_ELF, &elf[..])][..], extra].concat();
        build_zip("hubris build archive v11", method, &members)
    }

    #[test]
    fn vector5_archive_bzip2() {
        let bytes = sp_archive(CompressionMethod::Bzip2, &[]);
        let mut zip = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(
            zip.by_index(0).unwrap().compression(),
            CompressionMethod::Bzip2
        );
        let a = HubrisArchive::from_bytes(&bytes).unwrap();
        assert_eq!(
            (a.archive_version, a.image_base, a.image.len()),
            (11, 0, 1024)
        );
        assert_eq!(a.warnings, vec![]);
        assert_eq!(a.caboose().unwrap().bord(), Ok(Some(&b"gimlet-c"[..])));
        assert_eq!((a.aux_flash_size(), a.aux_flash_chck()), (0, [0; 32]));
        assert_eq!((a.image_name.as_deref(), a.chip), (None, ChipKind::Unknown));
        assert_eq!(a.check_target(UpdateTarget::Sp, 0), Ok(()));
        assert_err!(a.check_target(UpdateTarget::Sp, 1), Error::WrongSlot { .. });
    }

    #[test]
    fn vector5_archive_comment_rejected() {
        let elf = build_elf(&[(0, 3, &minimal_image(0x298, HEADER_MAGIC))]);
        for comment in [
            "",
            "hubris build archive v",
            "hubris build archive v+1",
            "a hubris build archive v1",
        ] {
            let bytes = build_zip(comment, CompressionMethod::Bzip2, &[(FINAL_ELF, &elf)]);
            assert_err!(HubrisArchive::from_bytes(&bytes), Error::BadComment { .. });
        }
        assert_eq!(parse_comment(b"hubris build archive v0"), Ok(0));
    }

    #[test]
    fn vector5_archive_deflate_and_stored() {
        for method in [CompressionMethod::Deflated, CompressionMethod::Stored] {
            let a = HubrisArchive::from_bytes(&sp_archive(method, &[])).unwrap();
            assert_eq!(a.caboose().unwrap().vers(), Ok(Some(&b"1.0.0"[..])));
        }
    }

    #[test]
    fn archive_with_aux_flash_and_metadata() {
        let aux = AuxFlash::build(&[(Tag(*b"QSFP"), &[1, 2, 3])]);
        let app = "name = \"sidecar-b\"\nboard = \"sidecar-b\"\nchip = \"../../chips/stm32h7\"\n[caboose]\nsize = 256\n";
        let extra: [(&str, &[u8]); 4] = [
            (AUXI_TLVC, &aux),
            (APP_TOML, app.as_bytes()),
            (IMAGE_NAME, b"default"),
            (GIT_REV, b"abc-dirty"),
        ];
        let a = HubrisArchive::from_bytes(&sp_archive(CompressionMethod::Bzip2, &extra)).unwrap();
        let chck = crate::auxflash::sha3_256(&aux[48 + 12..48 + 32]);
        assert_eq!((a.aux_flash_size(), a.aux_flash_chck()), (84, chck));
        assert_eq!(
            (a.chip, a.app.board.as_deref()),
            (ChipKind::Stm32, Some("sidecar-b"))
        );
        assert_eq!(
            (a.image_name.as_deref(), a.git_rev.as_deref()),
            (Some("default"), Some("abc-dirty"))
        );

        let bad = [&aux[..], &[0; 12]].concat();
        let zip = sp_archive(CompressionMethod::Deflated, &[(AUXI_TLVC, &bad)]);
        assert_err!(HubrisArchive::from_bytes(&zip), Error::Member { member, source }
            if member == AUXI_TLVC && *source == Error::TlvcEndOfData { offset: 84 });
    }

    #[test]
    fn elf_rebuild_and_bin_mismatch() {
        let elf = build_elf(&[
            (0x0800_0010, 3, &[5, 6]),
            (0x0800_0000, 3, &[1, 2]),
            (0x0900_0000, 6, &[9]),
        ]);
        let ElfImage { base, data } = image_from_elf(&elf).unwrap();
        assert_eq!((base, data.len()), (0x0800_0000, 0x12));
        assert_eq!(
            (&data[..3], &data[0x10..]),
            (&[1, 2, 0xFF][..], &[5, 6][..])
        );

        let img = minimal_image(0x298, HEADER_MAGIC);
        let elf = build_elf(&[(0x0800_0000, 3, &img)]);
        let mut bin = img.clone();
        bin[5] ^= 1;
        let zip = build_zip(
            "hubris build archive v1",
            CompressionMethod::Bzip2,
            &[(FINAL_ELF, &elf), (FINAL_BIN, &bin)],
        );
        let a = HubrisArchive::from_bytes(&zip).unwrap();
        let warning = Warning::FinalBinMismatch {
            elf_len: 1024,
            bin_len: 1024,
            first_difference: Some(5),
        };
        assert_eq!((a.image_base, a.warnings), (0x0800_0000, vec![warning]));
        let zip = build_zip(
            "hubris build archive v1",
            CompressionMethod::Bzip2,
            &[(FINAL_BIN, &bin)],
        );
        assert_eq!(
            HubrisArchive::from_bytes(&zip),
            Err(Error::MissingMember { member: FINAL_ELF })
        );
    }

    fn rot_archive(image_name: Option<&str>, magic: u32) -> HubrisArchive {
        let img = minimal_image(0x130, magic);
        let elf = build_elf(&[(0x0001_0000, 3, &img)]);
        let app =
            b"name = \"oxide-rot-1\"\nchip = \"../../chips/lpc55\"\nimage-names = [\"a\", \"b\"]\n";
        let mut members: Vec<(&str, &[u8])> =
            vec![(FINAL_ELF, &elf), (FINAL_BIN, &img), (APP_TOML, app)];
        members.extend(image_name.map(|n| (IMAGE_NAME, n.as_bytes())));
        HubrisArchive::from_bytes(&build_zip(
            "hubris build archive v11",
            CompressionMethod::Bzip2,
            &members,
        ))
        .unwrap()
    }

    #[test]
    fn vector7_rot_slot_rules() {
        let b = rot_archive(Some("b"), HEADER_MAGIC);
        assert_eq!(
            (b.chip, &b.app.image_names[..]),
            (ChipKind::Lpc55, &["a".to_string(), "b".into()][..])
        );
        let mismatch = Error::ImageNameMismatch {
            slot: 0,
            expected: "a",
            found: "b".into(),
        };
        assert_eq!(b.check_target(UpdateTarget::Rot, 0), Err(mismatch));
        assert_eq!(b.check_target(UpdateTarget::Rot, 1), Ok(()));
        assert_err!(
            b.check_target(UpdateTarget::Rot, 2),
            Error::WrongSlot { .. }
        );
        assert_eq!(
            rot_archive(Some("a"), HEADER_MAGIC).check_target(UpdateTarget::Rot, 0),
            Ok(())
        );
        assert_eq!(
            rot_archive(None, HEADER_MAGIC).check_target(UpdateTarget::Rot, 1),
            Ok(())
        );
        assert_err!(
            b.check_target(UpdateTarget::Sp, 0),
            Error::HeaderRejected {
                found_offset: 0x130,
                ..
            }
        );
        let legacy = rot_archive(Some("a"), crate::image::LEGACY_HEADER_MAGIC);
        assert_err!(
            legacy.check_target(UpdateTarget::Rot, 0),
            Error::HeaderRejected {
                magic: HeaderMagic::Legacy,
                ..
            }
        );
    }

    #[test]
    fn vector7_stage0_slot_rules() {
        let a = rot_archive(None, HEADER_MAGIC);
        let wrong = Error::WrongSlot {
            target: UpdateTarget::Stage0,
            slot: 0,
        };
        assert_eq!(a.check_target(UpdateTarget::Stage0, 0), Err(wrong));
        assert_eq!(a.check_target(UpdateTarget::Stage0, 1), Ok(()));
    }

    /// `bytes` with every member's declared uncompressed size set to
    /// `size`, in the local headers and in the central directory.
    fn declare_size(bytes: &[u8], size: u32) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (signature, field) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
            let mut from = 0;
            while let Some(i) = out[from..].windows(4).position(|w| w == signature) {
                let at = from + i + field;
                out[at..at + 4].copy_from_slice(&size.to_le_bytes());
                from += i + 4;
            }
        }
        out
    }

    #[test]
    fn members_and_images_take_one_allocation_of_their_size() {
        // A member that inflates past the size it declares is refused, not
        // read into a vector that keeps growing.
        let lying = declare_size(&sp_archive(CompressionMethod::Deflated, &[]), 100);
        assert_err!(
            HubrisArchive::from_bytes(&lying),
            Error::Zip { member: Some(m), message } if m == FINAL_ELF && message.contains("declared")
        );
        // Stopping at the declared size still checks the CRC.
        let mut bad_crc = sp_archive(CompressionMethod::Stored, &[]);
        for i in 0..bad_crc.len() - 8 {
            if &bad_crc[i..i + 8] == b"gimlet-c" {
                bad_crc[i] = b'G';
            }
        }
        assert_err!(
            HubrisArchive::from_bytes(&bad_crc),
            Error::Zip { member: Some(m), .. } if m == FINAL_ELF
        );
        // Sections far apart: the image is allocated once, at its size.
        let elf = build_elf(&[(0, 3, &[1; 16]), (8 << 20, 3, &[2; 16])]);
        let image = image_from_elf(&elf).unwrap();
        assert_eq!(image.data.len(), (8 << 20) + 16);
        assert_eq!(image.data.capacity(), image.data.len());
        let too_far = build_elf(&[(0, 3, &[1; 16]), (16 << 20, 3, &[2; 16])]);
        assert_err!(image_from_elf(&too_far), Error::Elf { .. });
    }
}
