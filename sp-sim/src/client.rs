//! Minimal MGS clients for the simulator's own tests, tools and benchmarks
//! (the daemon has the real one):
//!
//! - [`Client`] is async and stop-and-wait: one request in flight, identical
//!   resends on timeout, `Busy` backoff, and update recovery from the SP's
//!   `bytes_received`.
//! - [`ChunkStreamer`] is blocking and pipelined: it delivers an update
//!   with several `UpdateChunk`s in flight over a plain
//!   [`std::net::UdpSocket`], which makes it the baseline for what any
//!   gateway can get out of one SP.
//!
//! Both bind an ephemeral port on loopback, so they reach only SPs on the
//! same host, such as a [`SimRack`](crate::SimRack) started in-process.

use gateway_messages::mgs::{parse_response, RequestDatagram, ResponseError};
use gateway_messages::{
    ComponentUpdatePrepare, MgsRequest, SpComponent, SpError, SpResponse, UpdateChunk, UpdateId,
    UpdateInProgressStatus, UpdatePreparationStatus, UpdateStatus, MAX_UPDATE_CHUNK_DATA,
};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Duration, Instant};

/// Why an RPC or update failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket trouble.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No answer after every attempt.
    #[error("no response after {0} attempts")]
    Timeout(u32),
    /// The SP said no.
    #[error("SP error: {0}")]
    Sp(SpError),
    /// The SP answered something unexpected.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// Counters of what the client did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientStats {
    /// RPCs made.
    pub rpcs: u64,
    /// Datagrams resent after a timeout.
    pub resends: u64,
    /// `Busy` answers.
    pub busy: u64,
    /// Rewinds to the SP's `bytes_received`.
    pub rewinds: u64,
}

/// Stop-and-wait client for one SP.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    sp: SocketAddr,
    next_id: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts per RPC.
    pub attempts: u32,
    /// What happened so far.
    pub stats: ClientStats,
}

impl Client {
    /// A client bound to an ephemeral loopback port of `sp`'s family.
    pub async fn new(sp: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(loopback_for(sp)).await?,
            sp,
            next_id: 1,
            timeout: Duration::from_millis(200),
            attempts: 20,
            stats: ClientStats::default(),
        })
    }

    /// One request and its response (trailing data copied out).
    pub async fn rpc(
        &mut self,
        request: MgsRequest,
        trailing: &[u8],
    ) -> Result<(SpResponse, Vec<u8>), ClientError> {
        let datagram = RequestDatagram::new(self.next_id, request, trailing);
        self.next_id = self.next_id.wrapping_add(1);
        self.stats.rpcs += 1;
        let mut buf = [0u8; 2048];
        let mut attempt = 0;
        let mut backoff = Duration::from_millis(20);
        while attempt < self.attempts {
            self.socket.send_to(datagram.as_bytes(), self.sp).await?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let Ok(recv) = timeout_at(deadline, self.socket.recv_from(&mut buf)).await else {
                    attempt += 1;
                    self.stats.resends += 1;
                    break;
                };
                let (n, from) = recv?;
                if from != self.sp {
                    continue;
                }
                match parse_response(&buf[..n], datagram.message_id) {
                    Ok((response, trailing)) => return Ok((response, trailing.to_vec())),
                    Err(ResponseError::Sp(SpError::Busy)) => {
                        self.stats.busy += 1;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        break;
                    }
                    Err(ResponseError::Sp(e)) => return Err(ClientError::Sp(e)),
                    // Stale, duplicate, corrupt: not ours, keep waiting.
                    Err(_) => continue,
                }
            }
        }
        Err(ClientError::Timeout(self.attempts))
    }

    /// The SP's update status for `component`.
    pub async fn status(&mut self, component: SpComponent) -> Result<UpdateStatus, ClientError> {
        match self.rpc(MgsRequest::UpdateStatus(component), &[]).await? {
            (SpResponse::UpdateStatus(s), _) => Ok(s),
            (other, _) => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deliver `image` to a component slot, one chunk at a time, and return
    /// once the SP reports the update complete.
    pub async fn update(
        &mut self,
        component: SpComponent,
        slot: u16,
        id: UpdateId,
        image: &[u8],
    ) -> Result<(), ClientError> {
        let total_size = u32::try_from(image.len())
            .map_err(|_| ClientError::Unexpected("image larger than 4 GiB".into()))?;
        let prepare = ComponentUpdatePrepare {
            component,
            id,
            slot,
            total_size,
        };
        self.rpc(MgsRequest::ComponentUpdatePrepare(prepare), &[])
            .await?;
        let mut offset = loop {
            match self.status(component).await? {
                UpdateStatus::Preparing(p) if p.id == id => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                UpdateStatus::InProgress(p) if p.id == id => break p.bytes_received as usize,
                UpdateStatus::Complete(done) if done == id => return Ok(()),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        };
        while offset < image.len() {
            let end = (offset + MAX_UPDATE_CHUNK_DATA).min(image.len());
            let chunk = UpdateChunk {
                component,
                id,
                offset: offset as u32,
            };
            match self
                .rpc(MgsRequest::UpdateChunk(chunk), &image[offset..end])
                .await
            {
                Ok(_) => offset = end,
                // A resent chunk whose ack was lost, or a final chunk that
                // completed the update: the SP's status says where we are.
                Err(ClientError::Sp(SpError::InvalidUpdateChunk | SpError::UpdateNotPrepared)) => {
                    self.stats.rewinds += 1;
                    match self.status(component).await? {
                        UpdateStatus::InProgress(UpdateInProgressStatus {
                            id: sp_id,
                            bytes_received,
                            ..
                        }) if sp_id == id => offset = bytes_received as usize,
                        UpdateStatus::Complete(done) if done == id => return Ok(()),
                        other => return Err(ClientError::Unexpected(format!("{other:?}"))),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match self.status(component).await? {
            UpdateStatus::Complete(done) if done == id => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// An ephemeral loopback address of `sp`'s family.
fn loopback_for(sp: SocketAddr) -> SocketAddr {
    if sp.is_ipv6() {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    }
}

/// How a [`ChunkStreamer::update`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRun {
    /// From sending the prepare until the SP accepted chunks: mostly the
    /// host-flash erase, polled every millisecond.
    pub preparing: Duration,
    /// From sending the first chunk until the last one was acknowledged;
    /// the prepare, the erase and the final status check are not in it.
    pub elapsed: Duration,
    /// Chunk acks received: the image's chunk count when nothing was lost,
    /// more when chunks were sent again after a stall.
    pub chunks: u64,
    /// Times the window stalled (a chunk or its ack lost, or a chunk
    /// refused) and the stream restarted from the SP's `bytes_received`.
    pub stalls: u64,
}

/// Why a stream resumes from the SP's `bytes_received` (for error texts).
#[derive(Debug)]
enum Stall {
    /// Nothing came back within the timeout.
    Timeout,
    /// A later chunk was answered first; the SP answers in order, so the
    /// oldest chunk or its ack was lost.
    Overtaken,
    /// The SP refused the oldest chunk.
    Refused(SpError),
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Timeout => write!(f, "no answer in time"),
            Stall::Overtaken => write!(f, "a later chunk was answered first"),
            Stall::Refused(e) => write!(f, "chunk refused: {e}"),
        }
    }
}

/// Blocking client that delivers one update at a time with a window of
/// `UpdateChunk`s in flight, over a plain [`std::net::UdpSocket`].
///
/// Real SPs (and the simulator) queue 3 datagrams and answer them in
/// order, so with a window of up to 3 nothing is lost on an otherwise
/// clean path; beyond that, chunks overflow the queue. A loss shows as a
/// timeout or as an answer to a later chunk; a refused chunk as an SP
/// error. Either way the streamer drops its window, asks the SP for its
/// `bytes_received` and resumes from there.
///
/// Other requests (prepare, status) are stop-and-wait with identical
/// resends and `Busy` backoff, like [`Client`]. Every call blocks the
/// calling thread: inside a tokio runtime, run it on a blocking thread
/// (`spawn_blocking`) and make sure the SP is served by another thread.
#[derive(Debug)]
pub struct ChunkStreamer {
    socket: std::net::UdpSocket,
    sp: SocketAddr,
    next_id: u32,
    /// How long to wait for any answer before resending a request or
    /// declaring the window stalled; must not be zero. The default, 200 ms,
    /// is far longer than a loopback round trip and than the SP's hash of
    /// the unwritten rest of the flash when an update completes, so a trip
    /// means a lost datagram.
    pub timeout: Duration,
    /// Sends of one prepare or status request before giving up with
    /// [`ClientError::Timeout`].
    pub attempts: u32,
}

impl ChunkStreamer {
    /// A streamer for the SP at `sp`, bound to an ephemeral loopback port
    /// of `sp`'s family.
    pub fn new(sp: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            socket: std::net::UdpSocket::bind(loopback_for(sp))?,
            sp,
            next_id: 1,
            timeout: Duration::from_millis(200),
            attempts: 10,
        })
    }

    /// Prepare an update of `component`'s `slot` to `image`, wait until the
    /// SP accepts chunks (the erase, for the host boot flash), stream the
    /// image with `window` chunks in flight, and return once the SP
    /// reports update `id` complete.
    ///
    /// `ComponentUpdatePrepare` is what is sent, so `component` is the host
    /// boot flash, the RoT or stage0. Errors are a prepare the SP refuses,
    /// an SP that stops answering, or an update that the SP no longer has
    /// in progress after a stall (aborted, failed, or forgotten in a reset).
    ///
    /// # Panics
    ///
    /// If `window` is 0.
    pub fn update(
        &mut self,
        component: SpComponent,
        slot: u16,
        id: UpdateId,
        image: &[u8],
        window: usize,
    ) -> Result<StreamRun, ClientError> {
        assert!(window > 0, "a window of 0 chunks sends nothing");
        let total_size = u32::try_from(image.len())
            .map_err(|_| ClientError::Unexpected("image larger than 4 GiB".into()))?;
        self.socket.set_read_timeout(Some(self.timeout))?;

        let prepared = std::time::Instant::now();
        let prepare = ComponentUpdatePrepare {
            component,
            id,
            slot,
            total_size,
        };
        match self.rpc(MgsRequest::ComponentUpdatePrepare(prepare)) {
            Ok(SpResponse::ComponentUpdatePrepareAck) => {}
            Ok(other) => return Err(ClientError::Unexpected(format!("prepare: {other:?}"))),
            // Our own prepare, resent after its ack was lost.
            Err(ClientError::Sp(SpError::UpdateInProgress(
                UpdateStatus::Preparing(UpdatePreparationStatus { id: sp_id, .. })
                | UpdateStatus::InProgress(UpdateInProgressStatus { id: sp_id, .. }),
            ))) if sp_id == id => {}
            Err(e) => return Err(e),
        }
        let mut next = loop {
            match self.status(component)? {
                UpdateStatus::Preparing(p) if p.id == id => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                UpdateStatus::InProgress(p) if p.id == id => {
                    break resume_offset(p.bytes_received, image.len())?
                }
                other => return Err(ClientError::Unexpected(format!("after prepare: {other:?}"))),
            }
        };

        let mut run = StreamRun {
            preparing: prepared.elapsed(),
            elapsed: Duration::ZERO,
            chunks: 0,
            stalls: 0,
        };
        let start = std::time::Instant::now();
        let mut buf = [0u8; 2048];
        // (message id, end offset of the chunk) in send order.
        let mut in_flight: VecDeque<(u32, usize)> = VecDeque::with_capacity(window);
        let mut acked = next;
        while acked < image.len() {
            while in_flight.len() < window && next < image.len() {
                let end = (next + MAX_UPDATE_CHUNK_DATA).min(image.len());
                let chunk = UpdateChunk {
                    component,
                    id,
                    // In range: the image fits in a u32.
                    offset: next as u32,
                };
                let d = self.datagram(MgsRequest::UpdateChunk(chunk), &image[next..end]);
                debug_assert_eq!(d.trailing_len, end - next, "a full chunk fits");
                self.socket.send_to(d.as_bytes(), self.sp)?;
                in_flight.push_back((d.message_id, end));
                next = end;
            }
            // Never empty here: `acked < len` means something is unacked,
            // and the loop above just filled the window with it.
            let Some(&(expected, end)) = in_flight.front() else {
                unreachable!("nothing in flight with {acked} of {} acked", image.len());
            };
            let outcome = match self.recv(&mut buf)? {
                None => Err(Stall::Timeout),
                Some(n) => match parse_response(&buf[..n], expected) {
                    Ok((SpResponse::UpdateChunkAck, _)) => Ok(()),
                    Ok((other, _)) => {
                        return Err(ClientError::Unexpected(format!("chunk: {other:?}")))
                    }
                    Err(ResponseError::WrongMessageId { got, .. }) => {
                        if in_flight.iter().any(|&(m, _)| m == got) {
                            Err(Stall::Overtaken)
                        } else {
                            // A late answer to a chunk abandoned in an
                            // earlier stall.
                            continue;
                        }
                    }
                    Err(ResponseError::Sp(e)) => Err(Stall::Refused(e)),
                    // Not an answer we can use: the next one will tell.
                    Err(_) => continue,
                },
            };
            match outcome {
                Ok(()) => {
                    in_flight.pop_front();
                    acked = end;
                    run.chunks += 1;
                }
                Err(why) => {
                    run.stalls += 1;
                    in_flight.clear();
                    match self.status(component)? {
                        UpdateStatus::InProgress(p) if p.id == id => {
                            next = resume_offset(p.bytes_received, image.len())?;
                            acked = next;
                        }
                        UpdateStatus::Complete(done) if done == id => acked = image.len(),
                        other => {
                            return Err(ClientError::Unexpected(format!(
                                "stalled ({why}), then {other:?}"
                            )))
                        }
                    }
                }
            }
        }
        run.elapsed = start.elapsed();

        match self.status(component)? {
            UpdateStatus::Complete(done) if done == id => Ok(run),
            other => Err(ClientError::Unexpected(format!(
                "all chunks acked, then {other:?}"
            ))),
        }
    }

    /// `request` with a fresh message id.
    fn datagram(&mut self, request: MgsRequest, trailing: &[u8]) -> RequestDatagram {
        let d = RequestDatagram::new(self.next_id, request, trailing);
        self.next_id = self.next_id.wrapping_add(1);
        d
    }

    /// Length of the next datagram from the SP, or `None` on timeout.
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) if from == self.sp => return Ok(Some(n)),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stop-and-wait RPC without trailing data.
    fn rpc(&mut self, request: MgsRequest) -> Result<SpResponse, ClientError> {
        let d = self.datagram(request, &[]);
        let mut buf = [0u8; 2048];
        let mut backoff = Duration::from_millis(20);
        for _ in 0..self.attempts {
            self.socket.send_to(d.as_bytes(), self.sp)?;
            while let Some(n) = self.recv(&mut buf)? {
                match parse_response(&buf[..n], d.message_id) {
                    Ok((response, _)) => return Ok(response),
                    Err(ResponseError::Sp(SpError::Busy)) => {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        break;
                    }
                    Err(ResponseError::Sp(e)) => return Err(ClientError::Sp(e)),
                    // Stale, duplicate, corrupt: not ours, keep waiting.
                    Err(_) => continue,
                }
            }
        }
        Err(ClientError::Timeout(self.attempts))
    }

    fn status(&mut self, component: SpComponent) -> Result<UpdateStatus, ClientError> {
        match self.rpc(MgsRequest::UpdateStatus(component))? {
            SpResponse::UpdateStatus(s) => Ok(s),
            other => Err(ClientError::Unexpected(format!("status: {other:?}"))),
        }
    }
}

/// The SP's `bytes_received` as an offset into an image of `len` bytes.
fn resume_offset(bytes_received: u32, len: usize) -> Result<usize, ClientError> {
    match usize::try_from(bytes_received) {
        Ok(offset) if offset <= len => Ok(offset),
        _ => Err(ClientError::Unexpected(format!(
            "SP has {bytes_received} bytes of a {len}-byte image"
        ))),
    }
}
