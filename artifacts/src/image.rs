//! The image header and the caboose of a raw Hubris image (spec §2).
//!
//! Offsets are relative to the first byte of the image (its base address),
//! so `img/final.bin` alone is enough. The header sits right after the
//! vector table; its `total_image_len` gives E, the end of the Hubris image
//! and of the caboose. Anything after E is LPC55 signature data.

use crate::tlvc::{Chunk, Tag, TlvcReader};
use crate::Error;

/// Current image header magic; the only one firmware accepts.
pub const HEADER_MAGIC: u32 = 0x64CE_D6CA;
/// Header magic before hubris 9724ef6 (Mar 2023); hubtools still reads it.
pub const LEGACY_HEADER_MAGIC: u32 = 0x1535_6637;
/// First word of a caboose.
pub const CABOOSE_MAGIC: u32 = 0xCAB0_005E;
/// Header offsets in hubtools' probe order: STM32G0 (two), LPC55, STM32H7.
pub const HEADER_OFFSETS: [usize; 4] = [0xBC, 0xC0, 0x130, 0x298];
/// Header offset on STM32H7 service processors.
pub const SP_HEADER_OFFSET: usize = 0x298;
/// Header offset on LPC55 roots of trust.
pub const ROT_HEADER_OFFSET: usize = 0x130;

pub(crate) fn word_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Which of the two header magics was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMagic {
    /// `0x64CED6CA`.
    Current,
    /// `0x15356637`: readable, but rejected by firmware.
    Legacy,
}

/// The image header found by probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the magic word (one of [`HEADER_OFFSETS`]).
    pub offset: usize,
    /// Which magic it holds.
    pub magic: HeaderMagic,
    /// Bytes from the base to the end of the caboose (E).
    pub total_image_len: u32,
}

impl ImageHeader {
    /// The header at exactly `offset`, if either magic is there.
    pub fn at(data: &[u8], offset: usize) -> Option<ImageHeader> {
        let magic = match word_at(data, offset)? {
            HEADER_MAGIC => HeaderMagic::Current,
            LEGACY_HEADER_MAGIC => HeaderMagic::Legacy,
            _ => return None,
        };
        Some(ImageHeader {
            offset,
            magic,
            total_image_len: word_at(data, offset + 4)?,
        })
    }

    /// The first of [`HEADER_OFFSETS`] holding either magic, as hubtools
    /// probes.
    pub fn probe(data: &[u8]) -> Result<ImageHeader, Error> {
        HEADER_OFFSETS
            .iter()
            .find_map(|&o| Self::at(data, o))
            .ok_or(Error::NoImageHeader)
    }

    /// The firmware's rule: the header is at `offset` with the current magic.
    pub fn require(&self, offset: usize) -> Result<(), Error> {
        if self.offset == offset && self.magic == HeaderMagic::Current {
            Ok(())
        } else {
            Err(Error::HeaderRejected {
                expected_offset: offset,
                found_offset: self.offset,
                magic: self.magic,
            })
        }
    }
}

/// A caboose that passed the location rules. Owns a copy of its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caboose {
    /// Offset of the caboose magic (E − S).
    pub offset: usize,
    /// Its size S, from the last word.
    pub size: u32,
    payload: Vec<u8>,
}

impl Caboose {
    /// Locates the caboose ending at E = `total_image_len`.
    ///
    /// `Ok(None)` is "no caboose": S > E, S < 8, or no magic at E − S.
    /// E beyond the data is an error: the header is wrong.
    pub fn find(data: &[u8], header: &ImageHeader) -> Result<Option<Caboose>, Error> {
        let end = header.total_image_len as usize;
        if end > data.len() {
            return Err(Error::ImageLength {
                total_image_len: header.total_image_len,
                limit: data.len(),
            });
        }
        if end < 8 {
            return Ok(None);
        }
        let size = word_at(data, end - 4).unwrap_or(0);
        if size < 8 || size as usize > end {
            return Ok(None);
        }
        let start = end - size as usize;
        if word_at(data, start) != Some(CABOOSE_MAGIC) {
            return Ok(None);
        }
        Ok(Some(Caboose {
            offset: start,
            size,
            payload: data[start + 4..end - 4].to_vec(),
        }))
    }

    /// The S − 8 payload bytes: chunks, then filler.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload's chunks up to the first bad or overrunning header.
    /// Offsets are relative to the payload start.
    pub fn chunks(&self) -> impl Iterator<Item = Chunk<'_>> {
        TlvcReader::new(&self.payload).map_while(Result::ok)
    }

    /// No chunk at all (e.g. an all-0xFF payload), what hubtools calls empty.
    pub fn is_empty(&self) -> bool {
        self.chunks().next().is_none()
    }

    /// The value of the first chunk tagged `tag`, CRC-checked; `Ok(None)`
    /// if absent. A bad CRC fails only this key.
    pub fn get(&self, tag: Tag) -> Result<Option<&[u8]>, Error> {
        match self.chunks().find(|c| c.tag == tag) {
            Some(chunk) => chunk.checked_body().map(Some),
            None => Ok(None),
        }
    }

    /// `GITC`: the git revision, possibly with `-dirty`.
    pub fn gitc(&self) -> Result<Option<&[u8]>, Error> {
        self.get(Tag::GITC)
    }

    /// `BORD`: the board name.
    pub fn bord(&self) -> Result<Option<&[u8]>, Error> {
        self.get(Tag::BORD)
    }

    /// `NAME`: the app name.
    pub fn name(&self) -> Result<Option<&[u8]>, Error> {
        self.get(Tag::NAME)
    }

    /// `VERS`: the optional version string.
    pub fn vers(&self) -> Result<Option<&[u8]>, Error> {
        self.get(Tag::VERS)
    }

    /// `SIGN`: hex hash of the RoT signing roots.
    pub fn sign(&self) -> Result<Option<&[u8]>, Error> {
        self.get(Tag::SIGN)
    }
}

/// What a raw image says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The probed header.
    pub header: ImageHeader,
    /// `None` when there is no caboose.
    pub caboose: Option<Caboose>,
    /// Bytes after E: non-zero for signed LPC55 images (cert block and
    /// signature). The caboose is still readable but must not be rewritten.
    pub signed_data_after_caboose: usize,
}

impl ImageInfo {
    /// Probes the header and locates the caboose.
    pub fn parse(data: &[u8]) -> Result<ImageInfo, Error> {
        let header = ImageHeader::probe(data)?;
        let caboose = Caboose::find(data, &header)?;
        Ok(ImageInfo {
            header,
            caboose,
            signed_data_after_caboose: data.len() - header.total_image_len as usize,
        })
    }

    /// hubtools' rule for writing a caboose: there must be one, and E must
    /// be the end of the data (nothing signed after it).
    pub fn check_caboose_writable(&self) -> Result<(), Error> {
        if self.caboose.is_none() {
            return Err(Error::NoCaboose);
        }
        match self.signed_data_after_caboose {
            0 => Ok(()),
            extra => Err(Error::SignedImage { extra }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tlvc::{encode_chunk, Tag};

    /// Vector 3: 1024 bytes of 0xFF, header at `header_at`, caboose at 768
    /// holding `chunks` (BORD=gimlet-c and VERS=1.0.0 if `None`).
    pub(crate) fn image_with(header_at: usize, magic: u32, chunks: Option<&[u8]>) -> Vec<u8> {
        let default = [
            encode_chunk(Tag::BORD, b"gimlet-c"),
            encode_chunk(Tag::VERS, b"1.0.0"),
        ]
        .concat();
        let chunks = chunks.unwrap_or(&default);
        let mut img = vec![0xFF; 1024];
        img[header_at..header_at + 4].copy_from_slice(&magic.to_le_bytes());
        img[header_at + 4..header_at + 8].copy_from_slice(&1024u32.to_le_bytes());
        img[768..772].copy_from_slice(&CABOOSE_MAGIC.to_le_bytes());
        img[772..772 + chunks.len()].copy_from_slice(chunks);
        img[1020..].copy_from_slice(&256u32.to_le_bytes());
        img
    }

    pub(crate) fn minimal_image(header_at: usize, magic: u32) -> Vec<u8> {
        image_with(header_at, magic, None)
    }

    fn expect_vector3(info: &ImageInfo) {
        let c = info.caboose.as_ref().expect("caboose");
        assert_eq!((c.offset, c.size, c.payload().len()), (768, 256, 248));
        assert_eq!(
            (c.bord(), c.vers()),
            (Ok(Some(&b"gimlet-c"[..])), Ok(Some(&b"1.0.0"[..])))
        );
        assert_eq!(
            (c.gitc(), c.name(), c.sign()),
            (Ok(None), Ok(None), Ok(None))
        );
        assert!(!c.is_empty());
    }

    #[test]
    fn vector3_minimal_image() {
        let info = ImageInfo::parse(&minimal_image(0x298, HEADER_MAGIC)).unwrap();
        let header = ImageHeader {
            offset: 0x298,
            magic: HeaderMagic::Current,
            total_image_len: 1024,
        };
        assert_eq!((info.header, info.signed_data_after_caboose), (header, 0));
        assert_eq!(info.header.require(SP_HEADER_OFFSET), Ok(()));
        assert_eq!(info.check_caboose_writable(), Ok(()));
        expect_vector3(&info);
    }

    #[test]
    fn vector4_header_at_0x130() {
        let info = ImageInfo::parse(&minimal_image(0x130, HEADER_MAGIC)).unwrap();
        assert_eq!(info.header.offset, 0x130);
        assert_eq!(info.header.require(ROT_HEADER_OFFSET), Ok(()));
        assert!(info.header.require(SP_HEADER_OFFSET).is_err());
        expect_vector3(&info);
    }

    #[test]
    fn vector4_legacy_magic() {
        let info = ImageInfo::parse(&minimal_image(0x298, LEGACY_HEADER_MAGIC)).unwrap();
        assert_eq!(info.header.magic, HeaderMagic::Legacy);
        expect_vector3(&info);
        assert_err!(
            info.header.require(SP_HEADER_OFFSET),
            Error::HeaderRejected {
                magic: HeaderMagic::Legacy,
                ..
            }
        );
    }

    #[test]
    fn vector4_no_caboose() {
        let mut img = minimal_image(0x298, HEADER_MAGIC);
        img[768..].fill(0xFF);
        let info = ImageInfo::parse(&img).unwrap();
        assert_eq!(info.caboose, None);
        assert_eq!(info.check_caboose_writable(), Err(Error::NoCaboose));
    }

    #[test]
    fn vector4_empty_caboose() {
        let c = ImageInfo::parse(&image_with(0x298, HEADER_MAGIC, Some(&[])))
            .unwrap()
            .caboose
            .unwrap();
        assert!(c.is_empty());
        for tag in [Tag::GITC, Tag::BORD, Tag::NAME, Tag::VERS, Tag::SIGN] {
            assert_eq!(c.get(tag), Ok(None));
        }
    }

    #[test]
    fn vector4_corrupt_gitc() {
        let gitc = encode_chunk(Tag::GITC, b"0123456789abcdef0123456789abcdef01234567");
        let chunks = [
            gitc,
            encode_chunk(Tag::BORD, b"gimlet-c"),
            encode_chunk(Tag::VERS, b"1.0.0"),
        ]
        .concat();
        let mut img = image_with(0x298, HEADER_MAGIC, Some(&chunks));
        img[772 + 12 + 5] ^= 0x04; // one bit of the GITC body
        let c = ImageInfo::parse(&img).unwrap().caboose.unwrap();
        assert_err!(
            c.gitc(),
            Error::TlvcBodyCrc {
                tag: Tag::GITC,
                offset: 0,
                ..
            }
        );
        assert_eq!(
            (c.bord(), c.vers()),
            (Ok(Some(&b"gimlet-c"[..])), Ok(Some(&b"1.0.0"[..])))
        );
    }

    #[test]
    fn vector4_signed_like() {
        let img = [minimal_image(0x298, HEADER_MAGIC), vec![0xA5; 600]].concat();
        let info = ImageInfo::parse(&img).unwrap();
        assert_eq!(info.signed_data_after_caboose, 600);
        expect_vector3(&info);
        assert_eq!(
            info.check_caboose_writable(),
            Err(Error::SignedImage { extra: 600 })
        );
    }

    #[test]
    fn vector4_bad_caboose_size() {
        for size in [0u32, 4, 1025, u32::MAX] {
            let mut img = minimal_image(0x298, HEADER_MAGIC);
            img[1020..].copy_from_slice(&size.to_le_bytes());
            assert_eq!(ImageInfo::parse(&img).unwrap().caboose, None, "S = {size}");
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(ImageInfo::parse(&[0xFF; 1024]), Err(Error::NoImageHeader));
        let img = &minimal_image(0x298, HEADER_MAGIC)[..1000];
        assert_eq!(
            ImageInfo::parse(img),
            Err(Error::ImageLength {
                total_image_len: 1024,
                limit: 1000
            })
        );
    }
}
