//! Shared helpers for the end-to-end tests and the benchmark: a simulated
//! rack in-process and the daemon's actors pointed at it.

pub mod raw_udp;

use actors::{RegistryConfig, RegistryHandle, SpEntry, SpSettings, SpTarget, UpdateRecord};
use sp_sim::{RackConfig, SimRack};
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
        .map(|s| SpEntry {
            name: s.name.as_str().into(),
            target: SpTarget::Addr(s.addr),
        })
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
        assert!(Instant::now() < deadline, "SPs not discovered: {list:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (rack, handle)
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
/// `limit`).
pub async fn wait_record(
    handle: &RegistryHandle,
    id: uuid::Uuid,
    limit: Duration,
    done: impl Fn(&UpdateRecord) -> bool,
) -> UpdateRecord {
    let deadline = Instant::now() + limit;
    loop {
        let r = handle.update_record(id).await.expect("record");
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting; record: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until the update reached a terminal phase.
pub async fn wait_terminal(
    handle: &RegistryHandle,
    id: uuid::Uuid,
    limit: Duration,
) -> UpdateRecord {
    wait_record(handle, id, limit, |r| r.phase.is_terminal()).await
}
