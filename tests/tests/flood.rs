//! A stranger floods the daemon's socket for an SP while an update runs:
//! the socket is connected to the SP, so the kernel drops the flood before
//! it reaches the SP actor, and delivery keeps its pace.

use actors::registry::{udp_transport, RegistryConfig, RegistryHandle, SpEntry};
use actors::transport::Transport;
use actors::Phase;
use mgsd_tests::{entries, fast_settings, host_image};
use sp_sim::{RackConfig, SimRack, Timings};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const HBF: &str = "host-boot-flash";

/// A UDP transport that counts what reaches the actor from whom.
struct Counted {
    inner: Arc<dyn Transport>,
    sp: SocketAddr,
    from_sp: AtomicU64,
    from_others: AtomicU64,
}

impl Transport for Counted {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
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

/// Deliver `image` to sled-0; the daemon's own delivery time.
async fn deliver(h: &RegistryHandle, image: &[u8]) -> Duration {
    let id = uuid::Uuid::new_v4();
    h.start_update("sled-0", HBF, 0, id, image.to_vec())
        .await
        .unwrap();
    let mut rx = h.update(id).await.unwrap().watch();
    let r = rx
        .wait_for(|r| r.phase.is_terminal())
        .await
        .unwrap()
        .clone();
    assert_eq!(r.phase, Phase::Complete, "{r:?}");
    Duration::from_millis(r.delivered_in_ms.unwrap())
}

#[actix::test]
async fn a_flood_from_a_stranger_does_not_reach_the_sp_actor_or_slow_delivery() {
    // The SP writes at 1 MiB/s: delivery is paced by the SP, not by CPU,
    // so the flood's own CPU cost on this machine does not blur the result.
    let mut config = RackConfig::standard(1, 0, 0);
    config.timings = Timings {
        host_flash_mib: 4,
        write_kib_per_s: 1024,
        ..Timings::instant()
    };
    let rack = SimRack::start(config).await.unwrap();
    let counted: Arc<Mutex<Option<Arc<Counted>>>> = Arc::default();
    let slot = counted.clone();
    let mut cfg = RegistryConfig::new(entries(&rack), fast_settings(4));
    cfg.transport = Arc::new(move |entry: &SpEntry| {
        let actors::SpTarget::Addr(sp) = entry.target else {
            unreachable!("loopback SPs")
        };
        let t = Arc::new(Counted {
            inner: udp_transport(entry)?,
            sp,
            from_sp: AtomicU64::new(0),
            from_others: AtomicU64::new(0),
        });
        *slot.lock().unwrap() = Some(t.clone());
        Ok(t as Arc<dyn Transport>)
    });
    let h = RegistryHandle::start(cfg).unwrap();
    while !h.info("sled-0").await.unwrap().reachable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let transport = counted.lock().unwrap().clone().unwrap();
    let target = transport.local_addr().unwrap();
    let image = host_image(MIB, 3);

    let quiet = deliver(&h, &image).await;

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind((target.ip(), 0)).unwrap();
            let junk = [0x5Au8; 512];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if socket.send_to(&junk, target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    let flooded = deliver(&h, &image).await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();

    println!("delivery of 1 MiB: {quiet:?} quiet, {flooded:?} under a flood of {sent} datagrams");
    assert!(sent > 10_000, "the flood was real: {sent} datagrams");
    assert_eq!(
        transport.from_others.load(Ordering::Relaxed),
        0,
        "the kernel dropped every stranger's datagram"
    );
    assert!(transport.from_sp.load(Ordering::Relaxed) > 0);
    assert!(
        flooded.as_secs_f64() <= quiet.as_secs_f64() * 1.2,
        "delivery took {flooded:?} under the flood, {quiet:?} without"
    );
    rack.stop().await;
}
