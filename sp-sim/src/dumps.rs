//! Task dumps, as the SP's dump areas and the firmware's dump reader hold
//! them. An SP has none until a task crashes ([`Dumps::crash`]); they live
//! in RAM and are gone after a reset.
//!
//! Reading follows the firmware:
//! - `TaskDumpReadStart{index, key}` (`Dump(BadIndex)` past the count)
//!   opens a reader under the client's 16-byte `key`, in one of 4 reader
//!   slots (an empty one or one with the same key, else slot 0, whose
//!   reader is lost);
//! - `TaskDumpReadContinue{seq, key}` returns segment `seq` (numbered from
//!   0) with its compressed bytes as trailing data: `seq` must be the next
//!   one or, to replay a lost answer, the previous one
//!   (`Dump(BadSequenceNumber)` otherwise); an unknown key is
//!   `Dump(BadKey)`. After the last segment the answer is `None` and the
//!   reader is closed, as it is after any error.
//! - Segments are memory regions compressed with LZSS (humpty's
//!   parameters: EI 6, EJ 4, fill 0x20), compression code 0.

use gateway_messages::{DumpError, DumpSegment, SpError};

/// LZSS as the firmware's dump format uses it.
pub type DumpLzss = lzss::Lzss<6, 4, 0x20, { 1 << 6 }, { 2 << 6 }>;

/// Readers the firmware keeps at once.
const READERS: usize = 4;
/// Dumps kept at most (the dump areas fill up).
pub const MAX_DUMPS: usize = 8;
/// Uncompressed bytes per segment.
const SEGMENT_BYTES: usize = 512;
/// Memory regions a dump holds (each one segment).
const REGIONS: u32 = 3;

#[derive(Debug, Clone)]
struct Segment {
    address: u32,
    uncompressed: u16,
    compressed: Vec<u8>,
}

#[derive(Debug, Clone)]
struct TaskDump {
    task: u16,
    /// Uptime of the crash, in ms.
    time: u64,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
struct Reader {
    key: [u8; 16],
    dump: usize,
    expected_seq: u32,
}

/// The dumps of one SP.
#[derive(Debug, Default)]
pub struct Dumps {
    dumps: Vec<TaskDump>,
    readers: [Option<Reader>; READERS],
}

/// Deterministic memory content of a crashed task.
fn memory(task: u16, region: u32, seed: u64) -> Vec<u8> {
    let mut x = seed ^ (u64::from(task) << 32) ^ u64::from(region);
    (0..SEGMENT_BYTES)
        .map(|i| {
            // Runs of repeated words compress; the counter part does not.
            if i % 64 < 32 {
                0xA5
            } else {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            }
        })
        .collect()
}

/// `data` compressed as the firmware compresses dump segments.
pub fn compress(data: &[u8]) -> Vec<u8> {
    DumpLzss::compress_stack(
        lzss::SliceReader::new(data),
        lzss::VecWriter::with_capacity(data.len() + data.len() / 8 + 2),
    )
    .unwrap_or_default()
}

impl Dumps {
    /// Task `task` crashed at uptime `time_ms`: a dump appears (unless the
    /// dump areas are full). Returns its index.
    pub fn crash(&mut self, task: u16, time_ms: u64, seed: u64) -> Option<u32> {
        if self.dumps.len() >= MAX_DUMPS {
            return None;
        }
        let segments = (0..REGIONS)
            .map(|r| {
                let data = memory(task, r, seed);
                Segment {
                    address: 0x2400_0000 + u32::from(task) * 0x1_0000 + r * 0x1000,
                    uncompressed: data.len() as u16,
                    compressed: compress(&data),
                }
            })
            .collect();
        self.dumps.push(TaskDump {
            task,
            time: time_ms,
            segments,
        });
        Some(self.dumps.len() as u32 - 1)
    }

    /// The uncompressed regions of dump `index`: (address, bytes).
    pub fn regions(&self, index: usize, seed: u64) -> Vec<(u32, Vec<u8>)> {
        self.dumps.get(index).map_or_else(Vec::new, |d| {
            (0..REGIONS)
                .zip(&d.segments)
                .map(|(r, s)| (s.address, memory(d.task, r, seed)))
                .collect()
        })
    }

    /// Dumps held.
    pub fn count(&self) -> u32 {
        self.dumps.len() as u32
    }

    /// Forget everything (an SP reset).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// `TaskDumpReadStart`: (task, time, compression).
    pub fn read_start(&mut self, index: u32, key: [u8; 16]) -> Result<(u16, u64, u8), SpError> {
        let d = self
            .dumps
            .get(index as usize)
            .ok_or(SpError::Dump(DumpError::BadIndex))?;
        let (task, time) = (d.task, d.time);
        let slot = self
            .readers
            .iter()
            .position(|r| r.is_none_or(|r| r.key == key))
            .unwrap_or(0);
        self.readers[slot] = Some(Reader {
            key,
            dump: index as usize,
            expected_seq: 0,
        });
        Ok((task, time, 0))
    }

    /// `TaskDumpReadContinue`: segment `seq`, its bytes copied into `out`.
    pub fn read_continue(
        &mut self,
        seq: u32,
        key: [u8; 16],
        out: &mut [u8],
    ) -> Result<Option<DumpSegment>, SpError> {
        let r = self.read_inner(seq, key, out);
        if matches!(r, Ok(None) | Err(_)) {
            for slot in &mut self.readers {
                if slot.is_some_and(|r| r.key == key) {
                    *slot = None;
                }
            }
        }
        r
    }

    fn read_inner(
        &mut self,
        seq: u32,
        key: [u8; 16],
        out: &mut [u8],
    ) -> Result<Option<DumpSegment>, SpError> {
        let reader = self
            .readers
            .iter_mut()
            .flatten()
            .find(|r| r.key == key)
            .ok_or(SpError::Dump(DumpError::BadKey))?;
        let replay = if seq == reader.expected_seq {
            false
        } else if reader.expected_seq > 0 && seq == reader.expected_seq - 1 {
            true
        } else {
            return Err(SpError::Dump(DumpError::BadSequenceNumber));
        };
        let dump = self
            .dumps
            .get(reader.dump)
            .ok_or(SpError::Dump(DumpError::NoLongerValid))?;
        let Some(s) = dump.segments.get(seq as usize) else {
            return Ok(None);
        };
        let dst = out
            .get_mut(..s.compressed.len())
            .ok_or(SpError::Dump(DumpError::SegmentTooLong))?;
        dst.copy_from_slice(&s.compressed);
        if !replay {
            reader.expected_seq += 1;
        }
        Ok(Some(DumpSegment {
            address: s.address,
            compressed_length: s.compressed.len() as u16,
            uncompressed_length: s.uncompressed,
            seq,
        }))
    }
}
