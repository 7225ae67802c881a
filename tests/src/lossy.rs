//! A lossy UDP relay between the daemon and simulated SPs: loss,
//! duplication and reordering in both directions, from a seed. The SPs
//! stay faithful; the network between is what misbehaves, as a real
//! management network's would.

use sp_sim::faults::Rng;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What the network does to each datagram, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a datagram arrives twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by `reorder_delay`, so later
    /// ones overtake it.
    pub reorder: f64,
    pub reorder_delay: Duration,
}

/// Counts over every relay of a [`Relays`], both directions.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

/// One relay per SP, on a thread of its own; stopped when dropped.
pub struct Relays {
    /// Where the daemon is to address each SP, in the order given.
    pub addrs: Vec<SocketAddr>,
    pub stats: Arc<RelayStats>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relays {
    /// Relay to each of `sps`, impaired by `how`; relay `i` draws from
    /// `seed + i`.
    pub fn start(sps: &[SocketAddr], how: Impairment, seed: u64) -> Self {
        let sps = sps.to_vec();
        let stats = Arc::new(RelayStats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("lossy-relay".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("relay runtime");
                rt.block_on(async move {
                    let mut addrs = Vec::new();
                    let mut tasks = Vec::new();
                    for (i, sp) in sps.into_iter().enumerate() {
                        let relay = Relay::bind(sp, how, seed + i as u64, shared.clone())
                            .await
                            .expect("bind a relay on loopback");
                        addrs.push(relay.facing_daemon.local_addr().expect("relay addr"));
                        tasks.push(tokio::spawn(relay.run(stopped.clone())));
                    }
                    tx.send(addrs).expect("the caller waits");
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })
            .expect("relay thread");
        Self {
            addrs: rx.recv().expect("relays bound"),
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A datagram held back until `due`.
struct Held {
    due: Instant,
    to_sp: bool,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    // Earliest first out of a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

struct Relay {
    facing_daemon: UdpSocket,
    /// Connected to the SP, so only its datagrams come back here.
    facing_sp: UdpSocket,
    how: Impairment,
    rng: Rng,
    stats: Arc<RelayStats>,
    /// The daemon's address, once it has sent something.
    daemon: Option<SocketAddr>,
    held: BinaryHeap<Held>,
}

impl Relay {
    async fn bind(
        sp: SocketAddr,
        how: Impairment,
        seed: u64,
        stats: Arc<RelayStats>,
    ) -> std::io::Result<Self> {
        let facing_daemon = UdpSocket::bind((sp.ip(), 0)).await?;
        let facing_sp = UdpSocket::bind((sp.ip(), 0)).await?;
        facing_sp.connect(sp).await?;
        Ok(Self {
            facing_daemon,
            facing_sp,
            how,
            rng: Rng::new(seed),
            stats,
            daemon: None,
            held: BinaryHeap::new(),
        })
    }

    async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let (mut down, mut up) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            let wake = self.held.peek().map(|h| h.due);
            tokio::select! {
                _ = stop.changed() => return,
                got = self.facing_daemon.recv_from(&mut down) => {
                    let Ok((n, from)) = got else { continue };
                    self.daemon = Some(from);
                    self.impair(true, &down[..n]).await;
                }
                got = self.facing_sp.recv(&mut up) => {
                    // An ICMP report of a rebooting SP, say: nothing to pass on.
                    let Ok(n) = got else { continue };
                    self.impair(false, &up[..n]).await;
                }
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    while self.held.peek().is_some_and(|h| h.due <= now) {
                        let h = self.held.pop().expect("peeked");
                        self.send(h.to_sp, &h.bytes).await;
                    }
                }
            }
        }
    }

    async fn impair(&mut self, to_sp: bool, bytes: &[u8]) {
        let how = self.how;
        if self.rng.chance(how.loss) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.rng.chance(how.duplicate) {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.chance(how.reorder) {
                self.stats.reordered.fetch_add(1, Ordering::Relaxed);
                let due = Instant::now() + how.reorder_delay;
                let bytes = bytes.to_vec();
                self.held.push(Held { due, to_sp, bytes });
            } else {
                self.send(to_sp, bytes).await;
            }
        }
    }

    async fn send(&self, to_sp: bool, bytes: &[u8]) {
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        // A send that fails (a full buffer, an SP gone for a reboot) is
        // one more loss.
        if to_sp {
            let _ = self.facing_sp.send(bytes).await;
        } else if let Some(daemon) = self.daemon {
            let _ = self.facing_daemon.send_to(bytes, daemon).await;
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
