//! A blocking control-socket client (what `mgsctl` uses).

use crate::api::{Command, Response, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Write};
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
        let mut value = serde_json::to_value(command)?;
        value["v"] = PROTOCOL_VERSION.into();
        let mut line = serde_json::to_vec(&value)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
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
