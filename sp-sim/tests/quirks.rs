//! The two faults that model another SP implementation: the host-flash hash
//! of just the written bytes, and an archive id that does not change after
//! booting a new SP image.

mod common;

use common::{rack, Gateway};
use gateway_messages::sp_impl::SpHandler;
use gateway_messages::{
    MgsRequest, SpComponent, SpResponse, SpUpdatePrepare, UpdateChunk, UpdateId,
};
use sha2::{Digest, Sha256};
use sp_sim::client::Client;
use sp_sim::device::{Device, DeviceConfig};
use sp_sim::{FaultConfig, SimRack, SpKind, Timings};
use tokio::time::{Duration, Instant};

fn host_image(len: usize) -> Vec<u8> {
    let mut img = vec![0xFF; 64 * 1024];
    img.extend((0..len - img.len()).map(|i| (i % 253) as u8));
    img
}

/// Update host-flash slot 1 with `img` and return the hash the SP reports.
async fn hash_after_update(faults: FaultConfig, img: &[u8]) -> [u8; 32] {
    let mut cfg = rack(1, 0, 0);
    cfg.faults = faults;
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let mut c = Client::new(sp.addr).await.unwrap();
    c.timeout = Duration::from_millis(50);
    c.update(SpComponent::HOST_CPU_BOOT_FLASH, 1, UpdateId([3; 16]), img)
        .await
        .unwrap();
    let mut g = Gateway::new(sp.addr).await;
    g.rpc(MgsRequest::StartHostFlashHash { slot: 1 }, &[])
        .await
        .unwrap();
    let hash = loop {
        match g.rpc(MgsRequest::GetHostFlashHash { slot: 1 }, &[]).await {
            Ok((SpResponse::HostFlashHash(h), _)) => break h,
            Err(common::RpcError::Sp(gateway_messages::SpError::Hf(
                gateway_messages::HfError::HashInProgress,
            ))) => continue,
            other => panic!("{other:?}"),
        }
    };
    rack.stop().await;
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_written_bytes_reports_the_hash_of_the_image_alone() {
    let img = host_image(300_000);
    let real = hash_after_update(FaultConfig::default(), &img).await;
    assert_eq!(real, sp_sim::expected_slot_hash(&img, 8 * 1024 * 1024));
    let other = hash_after_update(
        FaultConfig {
            hash_written_bytes: true,
            ..FaultConfig::default()
        },
        &img,
    )
    .await;
    let digest: [u8; 32] = Sha256::digest(&img).into();
    assert_eq!(other, digest);
    assert_ne!(other, real);
}

fn device() -> Device {
    Device::new(
        DeviceConfig {
            kind: SpKind::Sled,
            serial: "BRM42000009".into(),
            revision: 6,
            timings: Timings::instant(),
            store_dir: None,
            watchdog: true,
        },
        Instant::now(),
    )
}

fn vers(dev: &mut Device) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = dev
        .read_caboose(SpComponent::SP_ITSELF, 0, *b"VERS", &mut buf)
        .unwrap();
    buf[..n].to_vec()
}

/// Deliver a new SP image, then reset into it.
fn update_and_boot(dev: &mut Device) {
    let id = UpdateId([5; 16]);
    let img = sp_sim::artifacts::build::sp_image(dev.kind.board(), 8 * 1024, "9.9.9");
    dev.sp_update_prepare(SpUpdatePrepare {
        id,
        aux_flash_size: 0,
        aux_flash_chck: [0; 32],
        sp_image_size: img.len() as u32,
    })
    .unwrap();
    for (i, data) in img.chunks(978).enumerate() {
        let chunk = UpdateChunk {
            component: SpComponent::SP_ITSELF,
            id,
            offset: (i * 978) as u32,
        };
        dev.update_chunk(chunk, data).unwrap();
    }
    dev.reboot(Instant::now(), false);
}

#[test]
fn archive_id_unchanged_keeps_the_old_id_with_the_new_caboose() {
    // The real firmware: a new image, a new archive id.
    let mut real = device();
    let before = real.sp_state().unwrap().hubris_archive_id;
    update_and_boot(&mut real);
    assert_ne!(real.sp_state().unwrap().hubris_archive_id, before);
    assert_eq!(vers(&mut real), b"9.9.9");

    // The other implementation: the caboose is new, the id is not, even
    // after a further plain reset.
    let mut other = device();
    other.quirks.archive_id_unchanged = true;
    let before = other.sp_state().unwrap().hubris_archive_id;
    update_and_boot(&mut other);
    assert_eq!(vers(&mut other), b"9.9.9");
    assert_eq!(other.sp_state().unwrap().hubris_archive_id, before);
    other.reboot(Instant::now(), false);
    assert_eq!(other.sp_state().unwrap().hubris_archive_id, before);
    // Turned off, the running image's id shows again.
    other.quirks.archive_id_unchanged = false;
    assert_eq!(
        other.sp_state().unwrap().hubris_archive_id,
        other.archive_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_id_unchanged_is_a_fault_config_switch() {
    let mut cfg = rack(1, 0, 0);
    cfg.faults.archive_id_unchanged = true;
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let before = {
        let mut dev = sp.device();
        let id = dev.sp_state().unwrap().hubris_archive_id;
        update_and_boot(&mut dev);
        id
    };
    let mut g = Gateway::new(sp.addr).await;
    let (r, _) = g.rpc(MgsRequest::SpState, &[]).await.unwrap();
    let SpResponse::SpStateV2(state) = r else {
        panic!("{r:?}")
    };
    assert_eq!(state.hubris_archive_id, before);
    assert_ne!(sp.device().archive_id(), before);
    rack.stop().await;
}
