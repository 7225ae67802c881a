//! How an SpActor reaches its SP: a small datagram trait, the UDP socket
//! that implements it, and a seeded fault-injecting wrapper for tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A received datagram and its source.
pub type Datagram = (Vec<u8>, SocketAddr);

/// The future [`Transport::recv`] returns.
pub type RecvFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Datagram>> + Send + 'a>>;

/// A datagram socket.
pub trait Transport: Send + Sync + 'static {
    /// Send without waiting; like UDP, delivery is not promised.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;
    /// Next datagram.
    fn recv(&self) -> RecvFuture<'_>;
}

/// A UDP socket. Sends go straight to the OS (a UDP send does not wait), so
/// they do not depend on the async reactor having seen the socket writable.
#[derive(Debug)]
pub struct UdpTransport {
    send: std::net::UdpSocket,
    recv: tokio::net::UdpSocket,
}

impl UdpTransport {
    /// Wrap a bound socket (it is switched to non-blocking mode).
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let send = socket.try_clone()?;
        Ok(Self {
            send,
            recv: tokio::net::UdpSocket::from_std(socket)?,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.send.local_addr()
    }
}

impl Transport for UdpTransport {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        match self.send.send_to(datagram, to) {
            Ok(_) => Ok(()),
            // A full socket buffer is a lost datagram; retries cover it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn recv(&self) -> RecvFuture<'_> {
        Box::pin(async move {
            let mut buf = vec![0u8; 2048];
            let (n, from) = self.recv.recv_from(&mut buf).await?;
            buf.truncate(n);
            Ok((buf, from))
        })
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
    rng: Mutex<u64>,
}

impl FaultyTransport {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Transport>, faults: TransportFaults, seed: u64) -> Self {
        Self {
            inner,
            faults,
            rng: Mutex::new(seed),
        }
    }

    fn dice(&self) -> f64 {
        // SplitMix64.
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
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

    fn recv(&self) -> RecvFuture<'_> {
        Box::pin(async move {
            loop {
                let d = self.inner.recv().await?;
                if self.dice() >= self.faults.drop_recv {
                    return Ok(d);
                }
            }
        })
    }
}
