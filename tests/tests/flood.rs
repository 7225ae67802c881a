//! A stranger floods the daemon's socket for an SP while an update runs:
//! the socket is connected to the SP, so the kernel drops the flood before
//! it reaches the SP actor, and delivery keeps its pace.

use actors::registry::RegistryHandle;
use actors::transport::Transport;
use actors::Phase;
use mgsd_tests::{bytes, fast_settings, host_image, wait_terminal, CountedSockets};
use sp_sim::{RackConfig, SimRack, Timings};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const HBF: &str = "host-boot-flash";

/// Deliver `image` to sled-0; the daemon's own delivery time.
async fn deliver(h: &RegistryHandle, image: &[u8]) -> Duration {
    let id = uuid::Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, image.to_vec()))
        .await
        .unwrap();
    let r = wait_terminal(h, id, Duration::from_secs(60)).await;
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
    let sockets = CountedSockets::default();
    let h = RegistryHandle::start(sockets.config(&rack, fast_settings(4))).unwrap();
    while !h.info("sled-0").await.unwrap().reachable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let transport = sockets.of("sled-0");
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
