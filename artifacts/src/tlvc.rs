//! TLV-C: the tag/length/value container with checksums used by cabooses
//! and aux flash images (spec §3).
//!
//! A chunk is a 12-byte header (tag, body length, header checksum), the
//! body, zero padding to a multiple of 4, and a CRC-32C of the body alone.
//! A stream is chunks laid end to end; it ends cleanly at the exact end of
//! its region, or at the first header whose checksum fails (the "end of
//! data" marker, which erased 0xFF filler and zero bytes both are).
//!
//! Header checksums are checked as chunks are read; body CRCs only when
//! asked for ([`Chunk::checked_body`]), because consumers differ on that.

use crate::Error;
use std::fmt;

/// Size of a chunk header: tag, length, header checksum.
pub const HEADER_LEN: usize = 12;

/// Multiplier of the header checksum.
const HEADER_MULTIPLIER: u32 = 0x6B32_9F69;

/// A four-byte chunk tag. Compared bytewise; usually ASCII (`BORD`, `CHCK`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub [u8; 4]);

impl Tag {
    /// Caboose key: git revision of the build.
    pub const GITC: Tag = Tag(*b"GITC");
    /// Caboose key: board name; the SP refuses an image whose BORD differs.
    pub const BORD: Tag = Tag(*b"BORD");
    /// Caboose key: application name.
    pub const NAME: Tag = Tag(*b"NAME");
    /// Caboose key: release version string (format unconstrained).
    pub const VERS: Tag = Tag(*b"VERS");
    /// Caboose key: hex SHA-256 of the RoT signing roots (LPC55 only).
    pub const SIGN: Tag = Tag(*b"SIGN");
    /// Aux flash: SHA3-256 of the `AUXI` body.
    pub const CHCK: Tag = Tag(*b"CHCK");
    /// Aux flash: the nested blob chunks.
    pub const AUXI: Tag = Tag(*b"AUXI");

    /// The tag as the little-endian `u32` that enters the header checksum.
    pub fn as_u32(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

impl fmt::Display for Tag {
    /// Printable ASCII as is, anything else as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag(\"{self}\")")
    }
}

/// Header checksum: `NOT(tag_le * 0x6B329F69 + len)`, wrapping.
pub fn header_checksum(tag: Tag, len: u32) -> u32 {
    !(tag
        .as_u32()
        .wrapping_mul(HEADER_MULTIPLIER)
        .wrapping_add(len))
}

/// CRC-32C (Castagnoli, iSCSI): reflected polynomial 0x82F63B78, init
/// and xor-out 0xFFFFFFFF. The empty input gives 0, `b"123456789"` gives
/// 0xE3069283. Bitwise: inputs are at most a few MiB.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// `len` rounded up to a multiple of 4.
fn round4(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn word(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// One chunk, borrowed from the stream it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The chunk's tag.
    pub tag: Tag,
    /// Offset of the header, counted from the start of the outermost
    /// stream (nested readers keep counting from there).
    pub offset: usize,
    /// Exactly `len` body bytes, without padding.
    pub body: &'a [u8],
    /// The body CRC as stored after the padding.
    pub stored_crc: u32,
}

impl<'a> Chunk<'a> {
    /// Size of the whole chunk: 16 + round4(len).
    pub fn total_len(&self) -> usize {
        HEADER_LEN + round4(self.body.len()) + 4
    }

    /// Offset of the first body byte (same origin as [`Chunk::offset`]).
    pub fn body_offset(&self) -> usize {
        self.offset + HEADER_LEN
    }

    /// The body, if its CRC-32C matches the stored one.
    pub fn checked_body(&self) -> Result<&'a [u8], Error> {
        let actual = crc32c(self.body);
        if actual == self.stored_crc {
            Ok(self.body)
        } else {
            Err(Error::TlvcBodyCrc {
                tag: self.tag,
                offset: self.offset,
                stored: self.stored_crc,
                actual,
            })
        }
    }

    /// A reader over the body as a nested TLV-C stream. The body CRC is not
    /// checked here.
    pub fn nested(&self) -> TlvcReader<'a> {
        TlvcReader::with_base(self.body, self.body_offset())
    }
}

/// Reads chunks from a region one at a time.
///
/// [`TlvcReader::read_chunk`] tells the three endings apart; the
/// [`Iterator`] impl yields chunks, then at most one error (truncation or
/// a bad header checksum), then stops; a clean end yields no error.
#[derive(Clone, Debug)]
pub struct TlvcReader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    done: bool,
}

impl<'a> TlvcReader<'a> {
    /// A reader over the whole of `data`; offsets count from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_base(data, 0)
    }

    /// A reader over `data` whose reported offsets are shifted by `base`.
    pub fn with_base(data: &'a [u8], base: usize) -> Self {
        TlvcReader {
            data,
            pos: 0,
            base,
            done: false,
        }
    }

    /// Offset (with the base) of the next chunk to read.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// The next chunk; `Ok(None)` when the region is used up exactly.
    ///
    /// Errors: [`Error::TlvcTruncated`] if fewer than 12 bytes remain or the
    /// chunk overruns the region; [`Error::TlvcEndOfData`] if the header
    /// checksum fails. Neither advances the reader.
    pub fn read_chunk(&mut self) -> Result<Option<Chunk<'a>>, Error> {
        let rest = self.remaining();
        if rest.is_empty() {
            return Ok(None);
        }
        let offset = self.offset();
        if rest.len() < HEADER_LEN {
            return Err(Error::TlvcTruncated {
                offset,
                needed: HEADER_LEN,
                available: rest.len(),
            });
        }
        let tag = Tag([rest[0], rest[1], rest[2], rest[3]]);
        let len = word(rest, 4);
        if word(rest, 8) != header_checksum(tag, len) {
            return Err(Error::TlvcEndOfData { offset });
        }
        // `len` may be near u32::MAX: compute the size without overflow.
        let needed = (len as u64).div_ceil(4) * 4 + 16;
        if needed > rest.len() as u64 {
            return Err(Error::TlvcTruncated {
                offset,
                needed: usize::try_from(needed).unwrap_or(usize::MAX),
                available: rest.len(),
            });
        }
        let len = len as usize;
        let chunk = Chunk {
            tag,
            offset,
            body: &rest[HEADER_LEN..HEADER_LEN + len],
            stored_crc: word(rest, HEADER_LEN + round4(len)),
        };
        self.pos += chunk.total_len();
        Ok(Some(chunk))
    }

    /// Every chunk to the exact end of the region; any error fails.
    pub fn read_all(mut self) -> Result<Vec<Chunk<'a>>, Error> {
        let mut chunks = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }
}

impl<'a> Iterator for TlvcReader<'a> {
    type Item = Result<Chunk<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_chunk().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Appends one chunk (header, body, zero padding, body CRC) to `out`.
///
/// # Panics
/// If `body` is 4 GiB or longer.
pub fn write_chunk(out: &mut Vec<u8>, tag: Tag, body: &[u8]) {
    let len = u32::try_from(body.len()).expect("TLV-C body must be under 4 GiB");
    out.extend_from_slice(&tag.0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header_checksum(tag, len).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + round4(body.len()) - body.len(), 0);
    out.extend_from_slice(&crc32c(body).to_le_bytes());
}

/// One encoded chunk; nest by passing an encoded stream as `body`.
pub fn encode_chunk(tag: Tag, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + round4(body.len()));
    write_chunk(&mut out, tag, body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::hex;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn vector1_tlvc_basics() {
        let tag = Tag(*b"0x1d");
        assert_eq!(header_checksum(tag, 0), 0xA4AF_E44F);
        let empty = encode_chunk(tag, &[]);
        assert_eq!(empty.len(), 16);
        assert_eq!(&empty[8..12], &0xA4AF_E44Fu32.to_le_bytes());
        assert_eq!(&empty[12..], &[0; 4]);

        let mut body = Vec::new();
        body.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        body.extend_from_slice(&0xCAFE_0B0Eu32.to_le_bytes());
        body.extend_from_slice(b"hello, world!");
        assert_eq!(body.len(), 21);
        assert_eq!(crc32c(&body), 0x6C18_23B8);
        let chunk = encode_chunk(tag, &body);
        assert_eq!(chunk.len(), 12 + 24 + 4);
        assert_eq!(&chunk[33..36], &[0, 0, 0], "3 padding bytes");

        let mut stream = empty.clone();
        stream.extend_from_slice(&chunk);
        let chunks = TlvcReader::new(&stream).read_all().unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].offset, 16);
        assert_eq!(chunks[1].checked_body().unwrap(), &body[..]);
        assert_eq!(chunks[0].checked_body().unwrap(), b"");
    }

    #[test]
    fn vector2_caboose_chunks() {
        let bord = hex("424f5244 08000000 e57f1fca 67696d6c65742d63 4be4c360");
        assert_eq!(encode_chunk(Tag::BORD, b"gimlet-c"), bord);
        let vers = hex("56455253 05000000 b425653d 312e302e30 000000 a5169826");
        assert_eq!(encode_chunk(Tag::VERS, b"1.0.0"), vers);
    }

    #[test]
    fn endings_are_distinguished() {
        let chunk = encode_chunk(Tag::BORD, b"gimlet-c");
        let mut r = TlvcReader::new(&chunk);
        assert!(r.read_chunk().unwrap().is_some());
        assert_eq!(r.read_chunk(), Ok(None), "clean end");
        // Terminators: zeros and erased flash both fail the header check.
        for fill in [0x00, 0xFF] {
            let s = [&chunk[..], &[fill; 20]].concat();
            let items: Vec<_> = TlvcReader::new(&s).collect();
            assert_eq!(items.len(), 2);
            assert_eq!(items[1], Err(Error::TlvcEndOfData { offset: 24 }));
        }
        // Fewer than 12 bytes, and a body that overruns the region.
        let s = [&chunk[..], &[0; 5]].concat();
        assert_err!(
            TlvcReader::new(&s).read_all(),
            Error::TlvcTruncated {
                offset: 24,
                needed: 12,
                available: 5
            }
        );
        assert_err!(
            TlvcReader::new(&chunk[..20]).read_all(),
            Error::TlvcTruncated {
                offset: 0,
                needed: 24,
                ..
            }
        );
    }

    #[test]
    fn nesting_and_crc() {
        let inner = [
            encode_chunk(Tag(*b"QSFP"), &[1, 2, 3]),
            encode_chunk(Tag::NAME, b"x"),
        ];
        let mut outer = encode_chunk(Tag::AUXI, &inner.concat());
        let c = TlvcReader::new(&outer).read_all().unwrap()[0];
        assert!(c.checked_body().is_ok());
        let nested = c.nested().read_all().unwrap();
        assert_eq!((nested.len(), nested[1].offset), (2, 12 + 20));
        assert_eq!(nested[0].checked_body().unwrap(), &[1, 2, 3]);
        outer[12 + 12] ^= 1; // flip a bit of the QSFP body
        let c = TlvcReader::new(&outer).read_all().unwrap()[0];
        assert_err!(c.checked_body(), Error::TlvcBodyCrc { offset: 0, .. });
        let q = c.nested().read_all().unwrap()[0];
        assert_err!(q.checked_body(), Error::TlvcBodyCrc { offset: 12, .. });
    }
}
