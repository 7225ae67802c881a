//! A raw test gateway over a loopback socket: RPCs with identical resends,
//! and the SP-initiated packets (console output, phase-2 requests) that
//! arrive meanwhile kept aside for the test to read.

#![allow(dead_code)]

use gateway_messages::mgs::{decode_any, RequestDatagram};
use gateway_messages::{
    encode, version, Header, Message, MessageKind, MgsRequest, MgsResponse, SpError, SpRequest,
    SpResponse, MAX_SERIALIZED_SIZE,
};
use sp_sim::{RackConfig, Timings};
use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddr};
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Duration, Instant};

/// How an RPC failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RpcError {
    /// The SP answered an error.
    Sp(SpError),
    /// No answer in any attempt.
    Timeout,
}

/// A packet the SP sent on its own.
#[derive(Debug, Clone)]
pub struct SpPacket {
    /// Its header.
    pub header: Header,
    /// The request.
    pub request: SpRequest,
    /// Trailing data.
    pub data: Vec<u8>,
}

/// The test gateway.
pub struct Gateway {
    pub socket: UdpSocket,
    pub sp: SocketAddr,
    next_id: u32,
    pub timeout: Duration,
    pub attempts: u32,
    pub sp_packets: VecDeque<SpPacket>,
}

impl Gateway {
    pub async fn new(sp: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap(),
            sp,
            next_id: 1,
            timeout: Duration::from_millis(100),
            attempts: 20,
            sp_packets: VecDeque::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Take one datagram before `deadline`: `Some(Some(reply))` for a
    /// reply, `Some(None)` after queueing an SP-initiated packet (or
    /// dropping something else), `None` at the deadline.
    async fn recv_one(
        &mut self,
        deadline: Instant,
    ) -> Option<Option<(Header, SpResponse, Vec<u8>)>> {
        let mut buf = [0u8; 2048];
        let (n, from) = timeout_at(deadline, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from != self.sp {
            return Some(None);
        }
        let Ok((kind, header, trailing)) = decode_any(&buf[..n]) else {
            return Some(None);
        };
        match kind {
            MessageKind::SpRequest(request) => {
                self.sp_packets.push_back(SpPacket {
                    header,
                    request,
                    data: trailing.to_vec(),
                });
                Some(None)
            }
            MessageKind::SpResponse(r) => Some(Some((header, r, trailing.to_vec()))),
            _ => Some(None),
        }
    }

    /// The next reply before `deadline` (SP-initiated packets are queued).
    async fn recv_until(&mut self, deadline: Instant) -> Option<(Header, SpResponse, Vec<u8>)> {
        loop {
            if let Some(reply) = self.recv_one(deadline).await? {
                return Some(reply);
            }
        }
    }

    /// One request, resent identically until answered.
    pub async fn rpc(
        &mut self,
        request: MgsRequest,
        trailing: &[u8],
    ) -> Result<(SpResponse, Vec<u8>), RpcError> {
        let d = RequestDatagram::new(self.next_id, request, trailing);
        self.next_id += 1;
        for _ in 0..self.attempts {
            self.socket.send_to(d.as_bytes(), self.sp).await.unwrap();
            let deadline = Instant::now() + self.timeout;
            while let Some((header, response, data)) = self.recv_until(deadline).await {
                if header.message_id != d.message_id {
                    continue;
                }
                return match response {
                    SpResponse::Error(SpError::Busy) => break,
                    SpResponse::Error(e) => Err(RpcError::Sp(e)),
                    r => Ok((r, data)),
                };
            }
        }
        Err(RpcError::Timeout)
    }

    /// The next SP-initiated packet, waiting until `deadline`.
    pub async fn next_sp_packet(&mut self, deadline: Instant) -> Option<SpPacket> {
        loop {
            if let Some(p) = self.sp_packets.pop_front() {
                return Some(p);
            }
            // A stray reply is dropped; the loop is bounded by the deadline.
            self.recv_one(deadline).await?;
        }
    }

    /// Send an `MgsResponse` (answer to an SP request `message_id`).
    pub async fn respond(&self, message_id: u32, response: MgsResponse, trailing: &[u8]) {
        let message = Message {
            header: Header {
                version: version::CURRENT,
                message_id,
            },
            kind: MessageKind::MgsResponse(response),
        };
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let (n, _) = encode(&mut out, &message, trailing).unwrap();
        self.socket.send_to(&out[..n], self.sp).await.unwrap();
    }
}

/// A rack with instant timings and a fixed seed.
pub fn rack(sleds: usize, switches: usize, shelves: usize) -> RackConfig {
    let mut c = RackConfig::standard(sleds, switches, shelves);
    c.timings = Timings {
        host_flash_mib: 8,
        ..Timings::instant()
    };
    c.seed = 11;
    c
}

/// Wait until `cond` holds, checking every 5 ms for at most `limit`.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
