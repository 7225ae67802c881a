//! The chunk stream of one update, as the SP actor runs it: a plain struct
//! without sockets. The update actor hands the SP actor a lease ("send this
//! image from offset N"); the SP actor asks [`ChunkStream::next_chunk`]
//! whenever a place in its window is free and feeds answers back. The
//! stream reports progress, completion, or a stall (the update actor then
//! asks the SP where it is and starts a new lease there).
//!
//! An SP accepts a chunk only at its next offset, so an ack for the chunk
//! ending at `k` proves every byte before `k` arrived: a lost earlier ack
//! costs nothing and is never waited for.

use crate::image::Image;
use gateway_messages::{SpComponent, SpError, SpResponse, UpdateId, MAX_UPDATE_CHUNK_DATA};
use std::sync::Arc;

/// Report progress at least every this many newly acknowledged bytes.
pub const REPORT_EVERY: u32 = 64 * 1024;

/// Why a stream stopped sending before the end.
#[derive(Debug, Clone, PartialEq)]
pub enum Stall {
    /// The SP refused the chunk at `offset`.
    Refused {
        /// The chunk's offset.
        offset: u32,
        /// What the SP said.
        error: SpError,
    },
    /// The chunk at `offset` got no answer, and nothing sent after it did.
    Timeout {
        /// The chunk's offset.
        offset: u32,
    },
    /// The SP answered something other than an ack.
    Unexpected {
        /// The chunk's offset.
        offset: u32,
        response: Box<SpResponse>,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Refused { offset, error } => {
                write!(f, "SP refused the chunk at offset {offset}: {error}")
            }
            Stall::Timeout { offset } => write!(f, "no answer for the chunk at offset {offset}"),
            Stall::Unexpected { offset, response } => {
                write!(
                    f,
                    "unexpected answer {response:?} to the chunk at offset {offset}"
                )
            }
        }
    }
}

/// What a stream tells its update.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More bytes are proven received.
    Progress,
    /// Every byte is acknowledged.
    Done,
    /// Sending stopped; a new lease must say where to go on.
    Stalled(Stall),
}

/// Counters a report carries (since the previous report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Chunk datagrams sent.
    pub sent: u64,
    /// Of those, chunks at offsets sent before (after a stall).
    pub resent: u64,
    /// Chunks that got no answer in time.
    pub timeouts: u64,
    /// Leases that went back before what had been sent (the SP lacked
    /// chunks we had sent: lost requests).
    pub rewinds: u64,
}

/// One update's chunk stream. See the module docs.
#[derive(Debug)]
pub struct ChunkStream {
    /// The update.
    pub id: UpdateId,
    /// Its component.
    pub component: SpComponent,
    image: Arc<Image>,
    /// The image's first bytes that are an aux-flash image, sent as
    /// `sp-aux-flash` (the SP counts them in its `bytes_received`).
    aux_len: u32,
    /// The current lease; answers to an older lease's chunks still prove
    /// bytes but never stall the current one.
    lease: u64,
    /// The stream's first lease: older ones were another stream's.
    first_lease: u64,
    next: u32,
    acked: u32,
    high_water: u32,
    stalled: bool,
    reported: u32,
    counts: ChunkCounts,
}

impl ChunkStream {
    /// A stream of `image` for update `id`: lease number `lease` from
    /// `from`. Lease numbers only grow, across streams too.
    pub fn new(
        id: UpdateId,
        component: SpComponent,
        image: Arc<Image>,
        from: u32,
        lease: u64,
    ) -> Self {
        Self {
            id,
            component,
            image,
            aux_len: 0,
            lease,
            first_lease: lease,
            next: from,
            acked: from,
            high_water: from,
            stalled: false,
            reported: from,
            counts: ChunkCounts::default(),
        }
    }

    /// The first `aux_len` bytes of the image are an aux-flash image.
    pub fn with_aux(mut self, aux_len: u32) -> Self {
        self.aux_len = aux_len;
        self
    }

    /// The component and offset on the wire of the image's byte `offset`:
    /// aux flash from 0, then the SP image from 0.
    pub fn place(&self, offset: u32) -> (SpComponent, u32) {
        if offset < self.aux_len {
            (SpComponent::SP_AUX_FLASH, offset)
        } else {
            (self.component, offset - self.aux_len)
        }
    }

    fn total(&self) -> u32 {
        self.image.len() as u32
    }

    /// New lease number `lease`: the SP said it has `from` bytes.
    pub fn resume(&mut self, from: u32, lease: u64) {
        if from < self.next {
            self.counts.rewinds += 1;
        }
        self.lease = lease;
        self.next = from;
        self.acked = from;
        self.reported = from;
        self.stalled = false;
    }

    /// The image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The next chunk to send, if the stream may send: `(lease, offset,
    /// end)`; the caller sends `image[offset..end]`.
    pub fn next_chunk(&mut self) -> Option<(u64, u32, u32)> {
        // A late ack may have proven more than was sent in this lease.
        self.next = self.next.max(self.acked);
        if self.stalled || self.next >= self.total() {
            return None;
        }
        let offset = self.next;
        let mut end = (offset as usize + MAX_UPDATE_CHUNK_DATA).min(self.image.len()) as u32;
        if offset < self.aux_len {
            end = end.min(self.aux_len); // no chunk spans both images
        }
        self.next = end;
        self.counts.sent += 1;
        if offset < self.high_water {
            self.counts.resent += 1;
        }
        self.high_water = self.high_water.max(end);
        Some((self.lease, offset, end))
    }

    /// Bytes proven received.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// The chunk of `lease` ending at `end` was acknowledged: whichever
    /// lease of this stream it belongs to, that proves `end` bytes.
    pub fn on_ack(&mut self, lease: u64, end: u32) -> Option<StreamEvent> {
        if lease < self.first_lease || end <= self.acked {
            return None;
        }
        self.acked = end;
        if end >= self.total() {
            self.reported = end;
            self.stalled = true;
            return Some(StreamEvent::Done);
        }
        if self.acked - self.reported >= REPORT_EVERY {
            self.reported = self.acked;
            return Some(StreamEvent::Progress);
        }
        None
    }

    /// The chunk at `offset` of `lease` was refused, went unanswered, or
    /// got an odd answer: stop sending (once) and say why.
    pub fn on_failure(&mut self, lease: u64, stall: Stall) -> Option<StreamEvent> {
        if lease != self.lease || self.stalled {
            return None;
        }
        if let Stall::Timeout { .. } = stall {
            self.counts.timeouts += 1;
        }
        self.stalled = true;
        Some(StreamEvent::Stalled(stall))
    }

    /// Take the counters accumulated since the last call.
    pub fn take_counts(&mut self) -> ChunkCounts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageStore;

    const C: u32 = MAX_UPDATE_CHUNK_DATA as u32;

    fn stream(len: usize) -> ChunkStream {
        let image = ImageStore::default().insert(vec![7; len]);
        ChunkStream::new(UpdateId([1; 16]), SpComponent::ROT, image, 0, 5)
    }

    #[test]
    fn chunks_cover_the_image_and_a_later_ack_proves_earlier_ones() {
        let mut s = stream(3 * C as usize + 10);
        let chunks: Vec<_> = std::iter::from_fn(|| s.next_chunk()).collect();
        assert_eq!(
            chunks,
            [
                (5, 0, C),
                (5, C, 2 * C),
                (5, 2 * C, 3 * C),
                (5, 3 * C, 3 * C + 10)
            ]
        );
        // The first two acks are lost; the third proves them.
        assert_eq!(s.on_ack(5, 3 * C), None);
        assert_eq!(s.acked(), 3 * C);
        // Another stream's late ack proves nothing here.
        assert_eq!(s.on_ack(4, 3 * C + 10), None);
        assert_eq!(s.on_ack(5, 3 * C + 10), Some(StreamEvent::Done));
        let counts = s.take_counts();
        assert_eq!((counts.sent, counts.resent), (4, 0));
    }

    #[test]
    fn a_stall_stops_sending_once_and_a_new_lease_resumes_there() {
        let mut s = stream(10 * C as usize);
        for _ in 0..3 {
            s.next_chunk();
        }
        s.on_ack(5, C);
        let refused = Stall::Refused {
            offset: 2 * C,
            error: SpError::InvalidUpdateChunk,
        };
        assert_eq!(
            s.on_failure(5, refused.clone()),
            Some(StreamEvent::Stalled(refused.clone()))
        );
        assert_eq!(s.next_chunk(), None, "stalled");
        // The chunk after it is refused too: no second stall.
        assert_eq!(s.on_failure(5, Stall::Timeout { offset: 3 * C }), None);
        s.resume(C, 9);
        assert_eq!(s.next_chunk(), Some((9, C, 2 * C)));
        // A late failure of the old lease does not stall the new one.
        assert_eq!(s.on_failure(5, refused), None);
        let counts = s.take_counts();
        assert_eq!((counts.resent, counts.rewinds, counts.timeouts), (1, 1, 0));
        // A stall where the SP has all that was sent is no rewind.
        let at = s.next_chunk().map(|(_, _, end)| end).unwrap();
        s.on_failure(9, Stall::Timeout { offset: at });
        s.resume(at, 10);
        assert_eq!(s.take_counts().rewinds, 0);
    }

    #[test]
    fn progress_is_reported_every_64_kib() {
        let mut s = stream(200 * C as usize);
        let mut reports = 0;
        while let Some((lease, _, end)) = s.next_chunk() {
            if s.on_ack(lease, end) == Some(StreamEvent::Progress) {
                reports += 1;
            }
        }
        assert_eq!(reports, (199 * C / REPORT_EVERY) as usize);
    }
}
