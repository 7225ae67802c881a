//! `control_framing`: the control socket's line framer
//! (`mgsd::control::framing`) under any split of a stream into reads, any
//! number of descriptors per read, and frames taken between reads.
//!
//! Input: two bytes of line limit (little-endian, taken modulo 1025), then
//! reads `[length] [control] [bytes]`: `length` bytes of stream (a short
//! last read takes what is left), `control & 0x1f` descriptors sent with
//! them (at most [`MAX_FDS_PER_INPUT`] in all), and with `control & 0x80`
//! the frames ready are taken after the read. What is left is taken at
//! the end.
//!
//! Checked against a model of the stream: the frames are its lines, in
//! order, each over the limit reported as too long; a descriptor comes
//! only with the line the framing rule gives it (the last line that starts
//! in its read, or the one that read continues), never more than the
//! framer holds; and with few enough descriptors that none is closed for
//! want of room, each comes with exactly its line.

use mgsd::control::framing::{Frame, Framer, MAX_FDS};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Descriptors opened for one input, at most.
pub const MAX_FDS_PER_INPUT: usize = 48;

/// Run the reads in `data` through a framer and check its frames.
pub fn control_framing(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let [a, b, rest @ ..] = data else {
            return;
        };
        let mut rest: &[u8] = rest;
        let max = usize::from(u16::from_le_bytes([*a, *b])) % 1025;
        let mut run = Run::new(max);
        while let [len, control, tail @ ..] = rest {
            let (bytes, after) = tail.split_at(usize::from(*len).min(tail.len()));
            rest = after;
            run.push(bytes, usize::from(control & 0x1f));
            if control & 0x80 != 0 {
                run.take();
            }
        }
        run.take();
        run.finish();
    })
}

/// A framer, the stream pushed into it, and what came out.
struct Run {
    max: usize,
    framer: Framer,
    /// Everything pushed so far.
    stream: Vec<u8>,
    /// Frames taken: the line's start offset in `stream` and the frame.
    frames: Vec<(usize, Frame)>,
    /// Start offset of each frame taken, in order (for the model).
    next_line: usize,
    /// The owner line of every descriptor pushed, by its number (numbers
    /// of closed descriptors are reused: the last push is the one).
    owners: HashMap<RawFd, usize>,
    /// Descriptors pushed, all told.
    fds_pushed: usize,
    /// A descriptor to duplicate.
    null: Option<OwnedFd>,
}

impl Run {
    fn new(max: usize) -> Self {
        Self {
            max,
            framer: Framer::new(max),
            stream: Vec::new(),
            frames: Vec::new(),
            next_line: 0,
            owners: HashMap::new(),
            fds_pushed: 0,
            null: File::open("/dev/null").ok().map(OwnedFd::from),
        }
    }

    /// Push one read of `bytes` with `fds` descriptors.
    fn push(&mut self, bytes: &[u8], fds: usize) {
        let fds = fds.min(MAX_FDS_PER_INPUT - self.fds_pushed);
        let fds: Vec<OwnedFd> = match &self.null {
            Some(null) => (0..fds).filter_map(|_| null.try_clone().ok()).collect(),
            None => Vec::new(),
        };
        let start = self.stream.len();
        self.stream.extend_from_slice(bytes);
        if !fds.is_empty() {
            let owner = self.owner_of_read(start);
            for fd in &fds {
                self.owners.insert(fd.as_raw_fd(), owner);
            }
        }
        self.fds_pushed += fds.len();
        self.framer.push(bytes, fds);
    }

    /// The model's rule: descriptors sent with the read that starts at
    /// `start` (and ends the stream now) belong to the last line starting
    /// in it, or else to the line it continues.
    fn owner_of_read(&self, start: usize) -> usize {
        let end = self.stream.len();
        let is_start = |p: usize| p == 0 || self.stream[p - 1] == b'\n';
        let last = if end > start { end - 1 } else { start };
        (0..=last.min(end))
            .rev()
            .find(|&p| is_start(p))
            .unwrap_or(0)
    }

    /// Take every frame ready and check it against the stream.
    fn take(&mut self) {
        while let Some(frame) = self.framer.next_frame() {
            let start = self.next_line;
            let Some(newline) = self.stream[start..].iter().position(|&b| b == b'\n') else {
                panic!("a frame came before its line ended (line at {start})");
            };
            let line = &self.stream[start..start + newline];
            match &frame {
                Frame::Line(got, fds) => {
                    assert!(line.len() <= self.max, "a line over the limit came whole");
                    assert_eq!(got.as_slice(), line, "the frame is the line at {start}");
                    assert!(fds.len() <= MAX_FDS, "at most MAX_FDS descriptors are held");
                    for fd in fds {
                        assert_eq!(
                            self.owners.get(&fd.as_raw_fd()),
                            Some(&start),
                            "a descriptor comes with the line it was sent with"
                        );
                    }
                }
                Frame::TooLong => {
                    assert!(
                        line.len() > self.max,
                        "a line within the limit came as too long"
                    );
                }
            }
            self.next_line = start + newline + 1;
            self.frames.push((start, frame));
        }
    }

    /// Every complete line came out; with room for every descriptor, each
    /// came with its line.
    fn finish(self) {
        let complete = self
            .stream
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        assert_eq!(self.next_line, complete, "every complete line is framed");
        if self.fds_pushed > MAX_FDS {
            return;
        }
        let mut expected: HashMap<usize, usize> = HashMap::new();
        for owner in self.owners.values() {
            *expected.entry(*owner).or_default() += 1;
        }
        for (start, frame) in &self.frames {
            let want = expected.get(start).copied().unwrap_or(0);
            match frame {
                Frame::Line(_, fds) => {
                    assert_eq!(
                        fds.len(),
                        want,
                        "the line at {start} has all its descriptors"
                    )
                }
                Frame::TooLong => {}
            }
        }
    }
}
