//! An SP's serial console, as the gateway keeps it: the pure parts.
//!
//! - [`Scrollback`]: a ring of the console's output, in positions that only
//!   grow (across re-attachments, unlike the SP's offsets). Every reader
//!   (an attached session, a watcher, the log writer) keeps its own cursor;
//!   one that falls behind the ring's start has lost the bytes between and
//!   is told how many. Memory is the ring, whoever reads slowly.
//! - [`Link`]: the gateway's side of the SP's console protocol. The SP
//!   sends output unasked and never resends it, so `Link` follows its
//!   offsets: a packet behind what was seen is a duplicate (dropped), one
//!   past it leaves a gap (counted). Input goes out one write at a time
//!   from the SP's `furthest_ingested_offset`, so whatever the SP did not
//!   take is resent until it is.
//!
//! The SP actor owns both (the ring behind a mutex its readers share) and
//! does the sending; see `sp/console.rs`.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Where a read of the scrollback left off, and what it found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadOut {
    /// Bytes the ring dropped before the reader got to them.
    pub lost: u64,
    /// Position of the first byte of `data`.
    pub at: u64,
    pub data: Vec<u8>,
}

/// The console's output ring. See the module docs.
#[derive(Debug)]
pub struct Scrollback {
    buf: VecDeque<u8>,
    capacity: usize,
    /// Position of `buf[0]`.
    start: u64,
    /// Bytes dropped from the front to make room (a reader's loss shows
    /// on that reader; this counts the ring's turnover).
    dropped: u64,
}

impl Scrollback {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity: capacity.max(1),
            start: 0,
            dropped: 0,
        }
    }

    /// Position one past the newest byte.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Position of the oldest byte held.
    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Append output, dropping the oldest bytes past the capacity.
    pub fn push(&mut self, data: &[u8]) {
        // A push bigger than the ring keeps only its tail.
        let skipped = data.len().saturating_sub(self.capacity);
        let data = &data[skipped..];
        let over = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        self.buf.drain(..over);
        self.start += (over + skipped) as u64;
        self.dropped += (over + skipped) as u64;
        self.buf.extend(data);
    }

    /// Up to `max` bytes from position `from` (the oldest held if `from`
    /// is older).
    pub fn read(&self, from: u64, max: usize) -> ReadOut {
        let at = from.clamp(self.start, self.end());
        let skip = (at - self.start) as usize;
        let n = max.min(self.buf.len() - skip);
        let (a, b) = self.buf.as_slices();
        let mut data = Vec::with_capacity(n);
        if skip < a.len() {
            let take = n.min(a.len() - skip);
            data.extend_from_slice(&a[skip..skip + take]);
            data.extend_from_slice(&b[..n - take]);
        } else {
            let s = skip - a.len();
            data.extend_from_slice(&b[s..s + n]);
        }
        ReadOut {
            lost: at.saturating_sub(from),
            at,
            data,
        }
    }
}

/// The ring and how its readers learn of new output: the actor pushes and
/// publishes the end position; readers wait on the `watch`.
#[derive(Debug, Clone)]
pub struct SharedScrollback {
    ring: Arc<Mutex<Scrollback>>,
    end: watch::Receiver<u64>,
}

impl SharedScrollback {
    /// A ring of `capacity` bytes and the sender its writer publishes on.
    pub fn new(capacity: usize) -> (Self, watch::Sender<u64>) {
        let (tx, end) = watch::channel(0);
        let ring = Arc::new(Mutex::new(Scrollback::new(capacity)));
        (Self { ring, end }, tx)
    }

    /// Append and wake the readers.
    pub fn push(&self, data: &[u8], end: &watch::Sender<u64>) {
        let now = {
            let mut ring = self.ring.lock().expect("scrollback lock");
            ring.push(data);
            ring.end()
        };
        end.send_replace(now);
    }

    pub fn read(&self, from: u64, max: usize) -> ReadOut {
        self.ring.lock().expect("scrollback lock").read(from, max)
    }

    /// Oldest and end positions.
    pub fn bounds(&self) -> (u64, u64) {
        let ring = self.ring.lock().expect("scrollback lock");
        (ring.start(), ring.end())
    }

    /// Wait until the end moves past `cursor`; `false` once the writer is
    /// gone (the SP's actor stopped).
    pub async fn wait_past(&mut self, cursor: u64) -> bool {
        self.end.wait_for(|end| *end > cursor).await.is_ok()
    }
}

/// Whether the gateway holds the SP's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not attached; an attach goes out when due.
    Detached,
    /// `SerialConsoleAttach` sent.
    Attaching,
    /// The SP sends us its output.
    Attached,
    /// Another gateway holds it (`SerialConsoleAlreadyAttached`); asked
    /// again later.
    HeldElsewhere,
    /// This SP has no such console (not a sled) or console attachment is
    /// off in the config.
    Unavailable,
}

/// Counters of what the console protocol did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleCounts {
    /// Output bytes taken into the ring.
    pub bytes_in: u64,
    /// Input bytes the SP took.
    pub bytes_out: u64,
    /// Output bytes the SP's offsets skipped (lost on the way).
    pub gap_bytes: u64,
    /// Output bytes seen twice, dropped.
    pub duplicate_bytes: u64,
    /// Input bytes sent again because the SP had not taken them.
    pub resent_bytes: u64,
    /// Attachments made (the first, then one per re-attachment).
    pub attachments: u64,
}

/// What arriving output did.
#[derive(Debug, PartialEq, Eq)]
pub struct Arrived<'a> {
    /// The new bytes, for the ring.
    pub fresh: &'a [u8],
    pub gap: u64,
    pub duplicate: u64,
}

/// The gateway's side of one SP console attachment. See the module docs.
#[derive(Debug)]
pub struct Link {
    pub state: LinkState,
    /// Next SP output offset expected.
    expected: u64,
    /// Input not yet taken by the SP; its first byte is at SP input offset
    /// `taken`.
    input: VecDeque<u8>,
    taken: u64,
    /// End offset of the write in flight.
    writing: Option<u64>,
    /// Input offsets already sent once (a later send below it is a resend).
    sent_to: u64,
    /// Input bytes ever queued, and ever done with (taken by the SP or
    /// dropped): a session's write is done once `done` reaches its end.
    queued_total: u64,
    done_total: u64,
    pub counts: ConsoleCounts,
}

impl Link {
    /// Most input held for the SP; a session waits for room beyond it.
    pub const MAX_INPUT: usize = 64 * 1024;

    pub fn new(state: LinkState) -> Self {
        Self {
            state,
            expected: 0,
            input: VecDeque::new(),
            taken: 0,
            writing: None,
            sent_to: 0,
            queued_total: 0,
            done_total: 0,
            counts: ConsoleCounts::default(),
        }
    }

    /// The SP accepted an attach: both offsets start at 0 again; input not
    /// yet taken is sent again from 0.
    pub fn attached(&mut self) {
        self.state = LinkState::Attached;
        self.expected = 0;
        self.taken = 0;
        self.sent_to = 0;
        self.writing = None;
        self.counts.attachments += 1;
    }

    /// The attachment is gone (the SP reset, or said it is not attached).
    pub fn lost(&mut self) {
        if self.state != LinkState::Unavailable {
            self.state = LinkState::Detached;
        }
        self.writing = None;
    }

    /// Output `data` at SP offset `offset`.
    pub fn arrived<'a>(&mut self, offset: u64, data: &'a [u8]) -> Arrived<'a> {
        let end = offset + data.len() as u64;
        if end <= self.expected {
            self.counts.duplicate_bytes += data.len() as u64;
            return Arrived {
                fresh: &[],
                gap: 0,
                duplicate: data.len() as u64,
            };
        }
        let (gap, skip) = if offset >= self.expected {
            (offset - self.expected, 0)
        } else {
            (0, (self.expected - offset) as usize)
        };
        self.expected = end;
        self.counts.gap_bytes += gap;
        self.counts.duplicate_bytes += skip as u64;
        let fresh = &data[skip..];
        self.counts.bytes_in += fresh.len() as u64;
        Arrived {
            fresh,
            gap,
            duplicate: skip as u64,
        }
    }

    /// Room for more input.
    pub fn room(&self) -> usize {
        Self::MAX_INPUT.saturating_sub(self.input.len())
    }

    /// Queue input (at most [`Link::room`] of it is taken); how much was.
    pub fn queue(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.input.extend(&data[..n]);
        self.queued_total += n as u64;
        n
    }

    /// Input bytes queued but not yet taken by the SP.
    pub fn pending(&self) -> usize {
        self.input.len()
    }

    /// Total input ever queued (a write just queued ends here).
    pub fn queued_total(&self) -> u64 {
        self.queued_total
    }

    /// Total input taken by the SP or dropped: writes ending at or before
    /// this are done.
    pub fn done_total(&self) -> u64 {
        self.done_total
    }

    /// The next write to send, if attached and none is in flight: its SP
    /// offset and bytes (at most `max`).
    pub fn next_write(&mut self, max: usize) -> Option<(u64, Vec<u8>)> {
        if self.state != LinkState::Attached || self.writing.is_some() || self.input.is_empty() {
            return None;
        }
        let n = self.input.len().min(max);
        let data: Vec<u8> = self.input.iter().take(n).copied().collect();
        let end = self.taken + n as u64;
        let resent = self.sent_to.min(end).saturating_sub(self.taken);
        self.counts.resent_bytes += resent;
        self.sent_to = self.sent_to.max(end);
        self.writing = Some(end);
        Some((self.taken, data))
    }

    /// The SP answered the write in flight: it has taken input up to
    /// `furthest`. Returns how many queued bytes that took.
    pub fn write_acked(&mut self, furthest: u64) -> usize {
        self.writing = None;
        let took = furthest
            .saturating_sub(self.taken)
            .min(self.input.len() as u64) as usize;
        self.input.drain(..took);
        self.taken += took as u64;
        self.done_total += took as u64;
        self.counts.bytes_out += took as u64;
        took
    }

    /// The write in flight got no answer (it is sent again, from what the
    /// SP last said it took).
    pub fn write_failed(&mut self) {
        self.writing = None;
    }

    /// Drop queued input (the session that typed it is gone). Input sent
    /// already may have been taken: what comes next goes after it (the
    /// SP appends a write that starts past what it took).
    pub fn clear_input(&mut self) {
        self.done_total += self.input.len() as u64;
        self.input.clear();
        self.taken = self.taken.max(self.sent_to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_the_oldest_and_a_slow_reader_is_told() {
        let mut r = Scrollback::new(8);
        r.push(b"abcdef");
        assert_eq!(r.read(0, 100).data, b"abcdef");
        r.push(b"ghijk");
        assert_eq!((r.start(), r.end(), r.dropped()), (3, 11, 3));
        let out = r.read(0, 100);
        assert_eq!((out.lost, out.at, &out.data[..]), (3, 3, &b"defghijk"[..]));
        // Bounded reads wrap the ring's halves correctly.
        assert_eq!(r.read(5, 3).data, b"fgh");
        assert_eq!(r.read(11, 3).data, b"");
        // A push bigger than the ring keeps its tail.
        r.push(b"0123456789");
        assert_eq!(r.read(0, 100).data, b"23456789");
        assert_eq!(r.end(), 21);
    }

    #[test]
    fn output_offsets_drop_duplicates_and_count_gaps() {
        let mut l = Link::new(LinkState::Detached);
        l.attached();
        assert_eq!(l.arrived(0, b"hello").fresh, b"hello");
        // The same packet again: dropped whole.
        assert_eq!(l.arrived(0, b"hello").duplicate, 5);
        // Overlapping: only the new tail.
        assert_eq!(l.arrived(3, b"lo wo").fresh, b" wo");
        // A lost packet: the next one leaves a gap.
        let a = l.arrived(12, b"!!");
        assert_eq!((a.gap, a.fresh), (4, &b"!!"[..]));
        assert_eq!(l.counts.bytes_in, 10);
        assert_eq!((l.counts.gap_bytes, l.counts.duplicate_bytes), (4, 7));
        // A re-attachment starts the SP's offsets again.
        l.attached();
        assert_eq!(l.arrived(0, b"x").fresh, b"x");
    }

    #[test]
    fn input_is_resent_from_what_the_sp_took() {
        let mut l = Link::new(LinkState::Detached);
        assert_eq!(l.queue(b"abcdefgh"), 8);
        // Nothing goes out before the attachment.
        assert!(l.next_write(100).is_none());
        l.attached();
        assert_eq!(l.next_write(100), Some((0, b"abcdefgh".to_vec())));
        // One write at a time.
        assert!(l.next_write(100).is_none());
        // The SP's buffer took 5.
        assert_eq!(l.write_acked(5), 5);
        assert_eq!(l.next_write(100), Some((5, b"fgh".to_vec())));
        assert_eq!(l.counts.resent_bytes, 3);
        // The answer was lost: the same bytes again, from the same offset.
        l.write_failed();
        assert_eq!(l.next_write(2), Some((5, b"fg".to_vec())));
        assert_eq!(l.write_acked(7), 2);
        assert_eq!(l.next_write(100), Some((7, b"h".to_vec())));
        assert_eq!(l.write_acked(8), 1);
        assert_eq!((l.pending(), l.counts.bytes_out), (0, 8));
        assert!(l.next_write(100).is_none());
    }

    #[test]
    fn input_is_bounded() {
        let mut l = Link::new(LinkState::Attached);
        assert_eq!(l.queue(&vec![0; Link::MAX_INPUT + 10]), Link::MAX_INPUT);
        assert_eq!(l.queue(b"x"), 0);
    }
}
