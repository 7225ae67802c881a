//! The aux flash image, `img/auxi.tlvc` (spec §4).
//!
//! Exactly two top-level TLV-C chunks: `CHCK` (32 bytes, the SHA3-256 of
//! the `AUXI` body) and `AUXI` (one nested chunk per blob). The rules here
//! are MGS's (any TLV-C error fails, one 32-byte CHCK) plus the SP's (CHCK
//! must equal a freshly computed SHA3-256), so a file that passes will be
//! accepted by both.

use crate::tlvc::{encode_chunk, Tag, TlvcReader};
use crate::Error;
use sha3::{Digest, Sha3_256};

/// An aux flash image that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxFlash {
    data: Vec<u8>,
    chck: [u8; 32],
    /// `(tag, offset of the blob body in data, body length)`.
    blobs: Vec<(Tag, usize, usize)>,
}

fn aux_err(offset: usize, reason: impl Into<String>) -> Error {
    Error::AuxFlash {
        offset,
        reason: reason.into(),
    }
}

/// SHA3-256 of `data`: what `CHCK` holds for an `AUXI` body.
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    Sha3_256::digest(data).into()
}

impl AuxFlash {
    /// Checks the layout, every chunk's header and CRC (nested ones too),
    /// and that CHCK is the SHA3-256 of the AUXI body.
    pub fn parse(data: Vec<u8>) -> Result<AuxFlash, Error> {
        let chunks = TlvcReader::new(&data).read_all()?;
        let chck_count = chunks.iter().filter(|c| c.tag == Tag::CHCK).count();
        if chck_count != 1 {
            return Err(aux_err(
                0,
                format!("{chck_count} CHCK chunks, expected exactly 1"),
            ));
        }
        let (chck, auxi) = match chunks[..] {
            [chck, auxi] if chck.tag == Tag::CHCK && auxi.tag == Tag::AUXI => (chck, auxi),
            _ => {
                let tags: Vec<String> = chunks.iter().map(|c| c.tag.to_string()).collect();
                return Err(aux_err(
                    0,
                    format!("chunks [{}], expected [CHCK, AUXI]", tags.join(", ")),
                ));
            }
        };
        let stored: [u8; 32] = chck.checked_body()?.try_into().map_err(|_| {
            aux_err(
                chck.offset,
                format!("CHCK body is {} bytes, expected 32", chck.body.len()),
            )
        })?;
        let body = auxi.checked_body()?;
        if sha3_256(body) != stored {
            return Err(aux_err(
                auxi.offset,
                "CHCK is not the SHA3-256 of the AUXI body",
            ));
        }
        let mut blobs = Vec::new();
        for blob in auxi.nested().read_all()? {
            blob.checked_body()?;
            blobs.push((blob.tag, blob.body_offset(), blob.body.len()));
        }
        Ok(AuxFlash {
            data,
            chck: stored,
            blobs,
        })
    }

    /// Builds a file in the layout the Hubris build writes.
    pub fn build(blobs: &[(Tag, &[u8])]) -> Vec<u8> {
        let auxi: Vec<u8> = blobs
            .iter()
            .flat_map(|(t, b)| encode_chunk(*t, b))
            .collect();
        [
            encode_chunk(Tag::CHCK, &sha3_256(&auxi)),
            encode_chunk(Tag::AUXI, &auxi),
        ]
        .concat()
    }

    /// The whole file, as it is streamed to the SP.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// `aux_flash_size` of SpUpdatePrepare: the length of the whole file.
    pub fn aux_flash_size(&self) -> usize {
        self.data.len()
    }

    /// `aux_flash_chck` of SpUpdatePrepare: the CHCK body.
    pub fn chck(&self) -> [u8; 32] {
        self.chck
    }

    /// The blobs in file order, as `(tag, body)`.
    pub fn blobs(&self) -> impl Iterator<Item = (Tag, &[u8])> {
        self.blobs
            .iter()
            .map(|&(t, at, len)| (t, &self.data[at..at + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::hex;
    use crate::tlvc::{encode_chunk, write_chunk};

    const QSFP: Tag = Tag(*b"QSFP");

    #[test]
    fn vector6_aux_flash() {
        let inner = encode_chunk(QSFP, &[1, 2, 3]);
        assert_eq!(inner, hex("51534650 03000000 c3849644 010203 00 1ef230f1"));
        let chck = hex("156bfed2d0d11e19e2373ca063ec989ff302c620ba544197998f691ca0471ffa");
        assert_eq!(sha3_256(&inner)[..], chck[..]);
        let file = AuxFlash::build(&[(QSFP, &[1, 2, 3])]);
        assert_eq!(file.len(), 84);
        assert_eq!(file[..48], encode_chunk(Tag::CHCK, &chck)[..]);
        assert_eq!(file[48..], encode_chunk(Tag::AUXI, &inner)[..]);
        let aux = AuxFlash::parse(file).unwrap();
        assert_eq!(aux.aux_flash_size(), 84);
        assert_eq!(aux.chck()[..], chck[..]);
        assert_eq!(
            aux.blobs().collect::<Vec<_>>(),
            vec![(QSFP, &[1u8, 2, 3][..])]
        );
    }

    #[test]
    fn vector6_rejections() {
        let good = AuxFlash::build(&[(QSFP, &[1, 2, 3])]);
        let (chck, auxi) = good.split_at(48);
        let reason = |data: Vec<u8>| match AuxFlash::parse(data) {
            Err(Error::AuxFlash { reason, .. }) => reason,
            other => panic!("expected an aux flash error, got {other:?}"),
        };
        assert!(reason([chck, chck, auxi].concat()).contains("2 CHCK"));
        assert!(reason(auxi.to_vec()).contains("0 CHCK"));
        let mut short = Vec::new();
        write_chunk(&mut short, Tag::CHCK, &chck[12..43]);
        assert!(reason([&short[..], auxi].concat()).contains("31 bytes"));
        let mut extra = good.clone();
        write_chunk(&mut extra, Tag::NAME, b"x");
        assert!(reason(extra).contains("expected [CHCK, AUXI]"));
        let mut garbage = good.clone();
        garbage.extend_from_slice(&[0xFF; 16]);
        assert!(matches!(
            AuxFlash::parse(garbage),
            Err(Error::TlvcEndOfData { offset: 84 })
        ));
        let mut tail = good.clone();
        tail.extend_from_slice(&[0; 3]);
        assert!(matches!(
            AuxFlash::parse(tail),
            Err(Error::TlvcTruncated { offset: 84, .. })
        ));
        let mut wrong_hash = good.clone();
        wrong_hash[12] ^= 1;
        let fixed_crc = crate::tlvc::crc32c(&wrong_hash[12..44]).to_le_bytes();
        wrong_hash[44..48].copy_from_slice(&fixed_crc);
        assert!(reason(wrong_hash).contains("SHA3-256"));
        let mut bad_blob = good;
        bad_blob[48 + 12 + 12] ^= 1;
        assert!(AuxFlash::parse(bad_blob).is_err());
    }
}
