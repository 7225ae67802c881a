//! How an SpActor reaches its SP: a small datagram trait, the UDP socket
//! that implements it, and a seeded fault-injecting wrapper for tests.
//!
//! Receiving is poll-based into the caller's buffer, so the actor drains
//! its socket without an allocation or a message per datagram.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// A datagram socket.
pub trait Transport: Send + Sync + 'static {
    /// Send without waiting; like UDP, delivery is not promised.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;
    /// Receive the next datagram into `buf`: its length and source.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;
    /// Accept datagrams from `peer` only, from now on. For a real socket
    /// the kernel then drops everything else before it costs us anything.
    fn connect(&self, _peer: SocketAddr) -> io::Result<()> {
        Ok(())
    }
    /// The local address, where there is one.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A UDP socket. Sends go straight to the OS (a UDP send does not wait),
/// so they do not depend on the async reactor having seen the socket
/// writable; once connected, sends to the peer skip the route lookup.
#[derive(Debug)]
pub struct UdpTransport {
    send: std::net::UdpSocket,
    recv: tokio::net::UdpSocket,
    peer: Mutex<Option<SocketAddr>>,
}

impl UdpTransport {
    /// Wrap a bound socket (it is switched to non-blocking mode).
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let send = socket.try_clone()?;
        Ok(Self {
            send,
            recv: tokio::net::UdpSocket::from_std(socket)?,
            peer: Mutex::new(None),
        })
    }
}

impl Transport for UdpTransport {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        let connected = *self.peer.lock().unwrap_or_else(|e| e.into_inner()) == Some(to);
        let sent = if connected {
            self.send.send(datagram)
        } else {
            self.send.send_to(datagram, to)
        };
        match sent {
            Ok(_) => Ok(()),
            // A full socket buffer is a lost datagram; retries cover it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            // An ICMP error from an earlier send (SP not listening): the
            // datagram is as good as lost.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        match self.recv.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => Poll::Ready(Ok((read.filled().len(), from))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        // Both handles share one socket: connecting one connects it.
        self.send.connect(peer)?;
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
        Ok(())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.send.local_addr()
    }
}

/// What [`FaultyTransport`] does to outgoing and incoming datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransportFaults {
    /// Drop an outgoing datagram.
    pub drop_send: f64,
    /// Send an outgoing datagram twice.
    pub duplicate_send: f64,
    /// Drop an incoming datagram.
    pub drop_recv: f64,
    /// Delay outgoing datagrams by up to this long.
    pub max_send_delay: Duration,
}

/// Wraps a transport and injects seeded faults.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    faults: TransportFaults,
    rng: Mutex<fastrand::Rng>,
}

impl FaultyTransport {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Transport>, faults: TransportFaults, seed: u64) -> Self {
        Self {
            inner,
            faults,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        }
    }

    fn dice(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64()
    }
}

impl Transport for FaultyTransport {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        if self.dice() < self.faults.drop_send {
            return Ok(());
        }
        let copies = if self.dice() < self.faults.duplicate_send {
            2
        } else {
            1
        };
        let delay = self.faults.max_send_delay.mul_f64(self.dice());
        if delay.is_zero() {
            for _ in 0..copies {
                self.inner.send_to(datagram, to)?;
            }
        } else {
            let inner = self.inner.clone();
            let datagram = datagram.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for _ in 0..copies {
                    let _ = inner.send_to(&datagram, to);
                }
            });
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.inner.poll_recv(cx, buf) {
                Poll::Ready(Ok(got)) if self.dice() < self.faults.drop_recv => {
                    let _ = got;
                }
                other => return other,
            }
        }
    }

    fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.inner.connect(peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
