//! Request lines off a control connection, with the file descriptors
//! sent alongside them (`SCM_RIGHTS`).
//!
//! Memory is bounded whatever the peer sends: a line longer than the
//! limit is dropped as it arrives (only its end is looked for), bytes are
//! read a fixed buffer at a time and only when the lines already read are
//! handled, and a connection holds a few descriptors at most.
//!
//! A descriptor belongs to the line it was sent with. The kernel hands
//! descriptors over with the first byte of the `sendmsg` that carried
//! them and ends a read after them, so they belong to the last line that
//! starts in that read (or the line it continues).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

/// Descriptors a connection may hold before its lines are read (a
/// rollout's distinct images); more are closed at once.
pub const MAX_FDS: usize = 16;

/// One request line, or the news that one was too long.
#[derive(Debug)]
pub enum Frame {
    /// A line (without its newline) and the descriptors sent with it.
    Line(Vec<u8>, Vec<OwnedFd>),
    /// A line over the limit, dropped.
    TooLong,
}

/// Splits what a connection sends into [`Frame`]s.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// The line being assembled (empty while dropping one).
    line: Vec<u8>,
    /// Dropping the rest of a line that is over the limit.
    dropping: bool,
    /// Stream offset of the next byte, and of the current line's start.
    pos: u64,
    line_start: u64,
    /// Descriptors, by the offset of the line they belong to.
    fds: VecDeque<(u64, OwnedFd)>,
    ready: VecDeque<(u64, Frame)>,
}

impl Framer {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            dropping: false,
            pos: 0,
            line_start: 0,
            fds: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    /// Bytes `data` received with descriptors `fds`.
    pub fn push(&mut self, mut data: &[u8], fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            let before_last = &data[..data.len().saturating_sub(1)];
            let owner = match before_last.iter().rposition(|&b| b == b'\n') {
                Some(i) => self.pos + i as u64 + 1,
                None => self.line_start,
            };
            for fd in fds {
                if self.fds.len() < MAX_FDS {
                    self.fds.push_back((owner, fd));
                }
            }
        }
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let frame = if self.dropping || self.line.len() + i > self.max {
                        self.line.clear();
                        Frame::TooLong
                    } else {
                        self.line.extend_from_slice(&data[..i]);
                        Frame::Line(std::mem::take(&mut self.line), Vec::new())
                    };
                    self.ready.push_back((self.line_start, frame));
                    self.dropping = false;
                    self.pos += i as u64 + 1;
                    self.line_start = self.pos;
                    data = &data[i + 1..];
                }
                None => {
                    if !self.dropping && self.line.len() + data.len() > self.max {
                        self.dropping = true;
                        self.line = Vec::new();
                    }
                    if !self.dropping {
                        self.line.extend_from_slice(data);
                    }
                    self.pos += data.len() as u64;
                    data = &[];
                }
            }
        }
    }

    /// The next complete frame, with its descriptors. Descriptors of
    /// earlier lines that were not taken are closed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let (start, mut frame) = self.ready.pop_front()?;
        while self.fds.front().is_some_and(|(owner, _)| *owner < start) {
            self.fds.pop_front();
        }
        while self.fds.front().is_some_and(|(owner, _)| *owner == start) {
            let (_, fd) = self.fds.pop_front().expect("just seen");
            if let Frame::Line(_, fds) = &mut frame {
                fds.push(fd);
            }
        }
        Some(frame)
    }
}

/// Read once from `stream` into `framer` (at most one buffer, and the
/// descriptors sent with it). `Ok(false)` at end of stream.
pub async fn fill(
    stream: &tokio::net::UnixStream,
    framer: &mut Framer,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let (n, fds) = stream
        .async_io(tokio::io::Interest::READABLE, || {
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                stream,
                &mut [std::io::IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut fds = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = message {
                    fds.extend(rights);
                }
            }
            Ok((got.bytes, fds))
        })
        .await?;
    if n == 0 && fds.is_empty() {
        return Ok(false);
    }
    framer.push(&buf[..n], fds);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn lines(f: &mut Framer) -> Vec<(String, usize)> {
        std::iter::from_fn(|| f.next_frame())
            .map(|fr| match fr {
                Frame::Line(l, fds) => (String::from_utf8(l).unwrap(), fds.len()),
                Frame::TooLong => ("<too long>".into(), 0),
            })
            .collect()
    }

    #[test]
    fn lines_split_across_reads_and_descriptors_follow_their_line() {
        let mut f = Framer::new(16);
        f.push(b"{\"a\":1}\n{\"b\"", vec![]);
        f.push(b":2}\n", vec![]);
        assert_eq!(
            lines(&mut f),
            [("{\"a\":1}".into(), 0), ("{\"b\":2}".into(), 0)]
        );
        // The end of one line and a whole line sent with a descriptor.
        f.push(b"x", vec![]);
        f.push(b"y\nstart\n", vec![fd()]);
        assert_eq!(lines(&mut f), [("xy".into(), 0), ("start".into(), 1)]);
        // A descriptor sent with the start of a line that ends later.
        f.push(b"sta", vec![fd()]);
        f.push(b"rt\nlist\n", vec![]);
        assert_eq!(lines(&mut f), [("start".into(), 1), ("list".into(), 0)]);
    }

    #[test]
    fn a_long_line_is_dropped_as_it_comes_and_the_next_one_served() {
        let mut f = Framer::new(8);
        for _ in 0..1000 {
            f.push(&[b'x'; 4096], vec![]);
            assert!(f.line.capacity() <= 8 + 4096, "never buffered");
        }
        f.push(b"x\nok\n", vec![fd()]);
        let got = lines(&mut f);
        assert_eq!(got, [("<too long>".into(), 0), ("ok".into(), 1)]);
        // Exactly the limit fits; one more does not.
        f.push(b"12345678\n123456789\n", vec![]);
        assert_eq!(
            lines(&mut f),
            [("12345678".into(), 0), ("<too long>".into(), 0)]
        );
    }

    #[test]
    fn descriptors_of_a_line_not_taken_are_closed_and_few_are_held() {
        let mut f = Framer::new(64);
        f.push(b"one\n", (0..MAX_FDS + 6).map(|_| fd()).collect());
        assert_eq!(lines(&mut f), [("one".into(), MAX_FDS)]);
        f.push(b"partial", vec![fd()]);
        f.push(b"\n", vec![]);
        f.push(b"next\n", vec![]);
        assert_eq!(lines(&mut f), [("partial".into(), 1), ("next".into(), 0)]);
        assert!(f.fds.is_empty());
    }
}
