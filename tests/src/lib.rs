//! Shared helpers for the end-to-end tests and the benchmark: a simulated
//! rack in-process and the daemon's actors pointed at it.

pub mod child;
pub mod lossy;
pub mod netbed;
pub mod raw_udp;
pub mod soak;

use actors::registry::udp_transport;
use actors::transport::Transport;
use actors::{
    ImageSource, Progress, RegistryConfig, RegistryHandle, SpEntry, SpSettings, SpTarget,
    StartUpdate,
};
use gateway_messages::{MessageKind, MgsRequest};
use sp_sim::{RackConfig, SimRack};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Settings scaled for loopback: short timeouts, fast polling.
pub fn fast_settings(host_flash_mib: u32) -> SpSettings {
    let mut s = SpSettings::default();
    s.rpc.per_attempt_timeout = Duration::from_millis(100);
    s.rpc.max_attempts = 10;
    s.discovery_interval = Duration::from_millis(50);
    s.delivery.status_poll_interval = Duration::from_millis(10);
    s.delivery.host_flash_capacity_mib = host_flash_mib;
    s
}

/// The registry's view of `rack`'s SPs.
pub fn entries(rack: &SimRack) -> Vec<SpEntry> {
    rack.sps
        .iter()
        .map(|s| SpEntry::new(&s.name, SpTarget::Addr(s.addr)))
        .collect()
}

/// A rack and a registry pointed at it, every SP discovered.
pub async fn start(rack: RackConfig, settings: SpSettings) -> (SimRack, RegistryHandle) {
    let rack = SimRack::start(rack).await.expect("rack starts");
    let handle =
        RegistryHandle::start(RegistryConfig::new(entries(&rack), settings)).expect("registry");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = handle.list().await.expect("list");
        if list
            .iter()
            .all(|s| s.info.reachable && s.info.identity.is_some())
        {
            break;
        }
        let names: Vec<_> = list
            .iter()
            .map(|s| (&s.info.name, s.info.reachable))
            .collect();
        assert!(Instant::now() < deadline, "SPs not discovered: {names:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (rack, handle)
}

/// A start of the raw image `img`.
pub fn bytes(sp: &str, component: &str, slot: u16, id: uuid::Uuid, img: Vec<u8>) -> StartUpdate {
    StartUpdate::new(sp, component, slot, id, ImageSource::Bytes(img))
}

/// A host-flash image: 64 KiB of 0xFF, then a pattern.
pub fn host_image(len: usize, seed: u32) -> Vec<u8> {
    let mut img = vec![0xFFu8; 64 * 1024];
    img.extend((0..len.saturating_sub(img.len()) as u32).map(|i| {
        (i.wrapping_add(seed))
            .wrapping_mul(2_654_435_761)
            .to_le_bytes()[2]
    }));
    img.truncate(len);
    img
}

/// Wait until update `id`'s record satisfies `done` (or panic after
/// `limit`), following its published record.
pub async fn wait_record(
    handle: &RegistryHandle,
    id: uuid::Uuid,
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    let mut rx = handle.update(id).await.expect("update").watch();
    let waited = tokio::time::timeout(limit, rx.wait_for(|r| done(r)))
        .await
        .map(|r| r.map(|r| r.clone()));
    match waited {
        Ok(Ok(r)) => r,
        _ => panic!("timed out waiting; record: {:?}", *rx.borrow()),
    }
}

/// Wait until the update reached a terminal phase.
pub async fn wait_terminal(handle: &RegistryHandle, id: uuid::Uuid, limit: Duration) -> Progress {
    wait_record(handle, id, limit, |r| r.phase.is_terminal()).await
}

/// A real UDP transport that counts what goes through it: status requests
/// sent, datagrams received from the SP and from anyone else. Live ones
/// are counted too: a dropped transport is a closed socket.
pub struct Counted {
    inner: Arc<dyn Transport>,
    sp: SocketAddr,
    live: Arc<AtomicUsize>,
    /// `UpdateStatus` requests sent.
    pub status_requests: AtomicU64,
    /// Datagrams that reached the actor from its SP.
    pub from_sp: AtomicU64,
    /// Datagrams that reached the actor from anyone else.
    pub from_others: AtomicU64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Transport for Counted {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
        if let Ok((m, _)) = gateway_messages::decode(datagram) {
            if let MessageKind::MgsRequest(MgsRequest::UpdateStatus(_)) = m.kind {
                self.status_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.inner.send_to(datagram, to)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<(usize, SocketAddr)>> {
        let got = self.inner.poll_recv(cx, buf);
        if let Poll::Ready(Ok((_, from))) = &got {
            let counter = if *from == self.sp {
                &self.from_sp
            } else {
                &self.from_others
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    fn connect(&self, peer: SocketAddr) -> std::io::Result<()> {
        self.inner.connect(peer)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Counted transports as a registry makes them: the latest one per SP
/// name, and how many are alive.
#[derive(Default, Clone)]
pub struct CountedSockets {
    /// The latest transport made for each SP.
    pub latest: Arc<Mutex<std::collections::BTreeMap<String, Arc<Counted>>>>,
    /// Transports not yet dropped.
    pub live: Arc<AtomicUsize>,
}

impl CountedSockets {
    /// A registry configuration for `rack` whose SP actors use counted UDP
    /// transports.
    pub fn config(&self, rack: &SimRack, settings: SpSettings) -> RegistryConfig {
        let mut cfg = RegistryConfig::new(entries(rack), settings);
        let me = self.clone();
        cfg.transport = Arc::new(move |entry: &SpEntry| {
            let SpTarget::Addr(sp) = entry.target else {
                unreachable!("simulated SPs have addresses")
            };
            me.live.fetch_add(1, Ordering::SeqCst);
            let t = Arc::new(Counted {
                inner: udp_transport(entry)?,
                sp,
                live: me.live.clone(),
                status_requests: AtomicU64::new(0),
                from_sp: AtomicU64::new(0),
                from_others: AtomicU64::new(0),
            });
            me.latest
                .lock()
                .unwrap()
                .insert(entry.name.to_string(), t.clone());
            Ok(t as Arc<dyn Transport>)
        });
        cfg
    }

    /// The latest transport of SP `name`.
    pub fn of(&self, name: &str) -> Arc<Counted> {
        self.latest.lock().unwrap()[name].clone()
    }
}
