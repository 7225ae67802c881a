//! [`Conn`]: one raw connection to the control socket, a JSON line each
//! way, for what `mgsctl` cannot or would not send.

use serde_json::Value;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long [`Conn::next`] waits for a line.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

pub struct Conn(BufReader<UnixStream>);

impl Conn {
    /// Connect, retrying (for at most 10 s) while the listener's backlog
    /// is full.
    pub async fn open(socket: &Path) -> Conn {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(socket).await {
                Ok(s) => return Conn(BufReader::new(s)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "connect: {e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("connect {}: {e}", socket.display()),
            }
        }
    }

    /// The socket itself, for socket options and ancillary data.
    pub fn stream(&self) -> &UnixStream {
        self.0.get_ref()
    }

    /// Write `bytes` as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.try_write(bytes).await.unwrap();
    }

    /// Write `bytes` as they are; an error if the daemon has closed the
    /// connection.
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.get_mut().write_all(bytes).await
    }

    /// `request` as one line.
    pub async fn send(&mut self, request: &Value) {
        self.write(format!("{request}\n").as_bytes()).await;
    }

    /// The next line, within 10 s; `None` at end of stream (or a reset
    /// connection).
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(ANSWER_WITHIN).await
    }

    /// The next line, within `limit`; `None` at end of stream (or a reset
    /// connection).
    pub async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        let mut line = String::new();
        let read = tokio::time::timeout(limit, self.0.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no line within {limit:?}"));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
        }
    }

    /// Send `request`: its answer.
    pub async fn ask(&mut self, request: &Value) -> Value {
        self.send(request).await;
        self.next().await.expect("an answer, not end of stream")
    }

    /// `request` and its newline in one `sendmsg`, with `fds` attached: the
    /// answer.
    pub async fn ask_fds(&mut self, request: &Value, fds: &[std::os::fd::BorrowedFd<'_>]) -> Value {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let line = format!("{request}\n");
        let stream = self.stream();
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let sent = stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
                sendmsg(
                    stream,
                    &[IoSlice::new(line.as_bytes())],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            })
            .await
            .unwrap();
        assert_eq!(sent, line.len(), "the whole request in one sendmsg");
        self.next().await.expect("an answer, not end of stream")
    }
}
