//! A blocking control-socket client (what `mgsctl` uses).

use crate::api::{Command, Response, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the socket at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Send `command` and read the first response line.
    pub fn request(&mut self, command: &Command) -> std::io::Result<Response> {
        self.request_with(command, None)
    }

    /// Send `command` with the descriptor `fd` (the image of an
    /// `update_start`) and read the first response line.
    pub fn request_with(
        &mut self,
        command: &Command,
        fd: Option<BorrowedFd<'_>>,
    ) -> std::io::Result<Response> {
        self.request_with_fds(command, fd.as_slice())
    }

    /// Send `command` with the descriptors `fds` (the images of a
    /// `rollout_start`, in index order) and read the first response line.
    pub fn request_with_fds(
        &mut self,
        command: &Command,
        fds: &[BorrowedFd<'_>],
    ) -> std::io::Result<Response> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut value = serde_json::to_value(command)?;
        value["v"] = PROTOCOL_VERSION.into();
        let mut line = serde_json::to_vec(&value)?;
        line.push(b'\n');
        let mut sent = 0;
        if !fds.is_empty() {
            // The descriptors travel with the line's first bytes.
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(16))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(std::io::Error::other(
                    "at most 16 descriptors go with one request",
                ));
            }
            sent = rustix::net::sendmsg(
                &self.writer,
                &[std::io::IoSlice::new(&line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?;
        }
        self.writer.write_all(&line[sent..])?;
        self.next_response()?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "daemon closed the connection",
            )
        })
    }

    /// The next response line (streams such as `watch`), `None` at EOF.
    pub fn next_response(&mut self) -> std::io::Result<Option<Response>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(std::io::Error::other)
    }
}
