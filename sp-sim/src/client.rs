//! A minimal stop-and-wait MGS client, for the simulator's own tests and
//! tools (the daemon has the real one): one request in flight, identical
//! resends on timeout, `Busy` backoff, and update recovery from the SP's
//! `bytes_received`.

use gateway_messages::mgs::{parse_response, RequestDatagram, ResponseError};
use gateway_messages::{
    ComponentUpdatePrepare, MgsRequest, SpComponent, SpError, SpResponse, UpdateChunk, UpdateId,
    UpdateInProgressStatus, UpdateStatus, MAX_UPDATE_CHUNK_DATA,
};
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
        let local: SocketAddr = if sp.is_ipv6() {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (Ipv4Addr::LOCALHOST, 0).into()
        };
        Ok(Self {
            socket: UdpSocket::bind(local).await?,
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
