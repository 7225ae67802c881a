//! Another SP implementation's behaviours, modelled by sp-sim faults, met
//! through the registry's typed API: an SP that hashes only the bytes an
//! update wrote, and one that keeps its archive id after an SP update.

use actors::record::HashForm;
use actors::reset::{Outcome, ResetOptions};
use actors::{ImageSource, Phase, StartUpdate};
use mgsd_tests::{bytes, fast_settings, host_image, start, wait_terminal};
use sp_sim::artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
use sp_sim::{FaultConfig, RackConfig, Timings};
use std::time::Duration;
use uuid::Uuid;

const LONG: Duration = Duration::from_secs(60);

fn rack_with(faults: FaultConfig) -> RackConfig {
    let mut r = RackConfig::standard(1, 0, 0);
    r.timings = Timings {
        host_flash_mib: 4,
        reset_ms: 50,
        ..Timings::instant()
    };
    r.faults = faults;
    r
}

#[actix::test]
async fn a_hash_of_just_the_image_verifies_the_update_and_says_so() {
    let faults = FaultConfig {
        hash_written_bytes: true,
        ..FaultConfig::default()
    };
    let (rack, h) = start(rack_with(faults), fast_settings(4)).await;
    // 2 MiB into a 4 MiB slot: the two forms of the hash differ.
    let id = Uuid::new_v4();
    h.start_update(bytes(
        "sled-0",
        "host-boot-flash",
        1,
        id,
        host_image(2 << 20, 9),
    ))
    .await
    .unwrap();
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    assert!(done.hash_verified);
    assert_eq!(done.hash_form, Some(HashForm::Image));
    rack.stop().await;

    // Real firmware's form is named as such.
    let (rack, h) = start(rack_with(FaultConfig::default()), fast_settings(4)).await;
    let id = Uuid::new_v4();
    h.start_update(bytes(
        "sled-0",
        "host-boot-flash",
        1,
        id,
        host_image(2 << 20, 9),
    ))
    .await
    .unwrap();
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.hash_form, Some(HashForm::Slot), "{done:?}");
    rack.stop().await;
}

#[actix::test]
async fn an_sp_that_keeps_its_archive_id_is_activated_not_rolled_back() {
    let faults = FaultConfig {
        archive_id_unchanged: true,
        ..FaultConfig::default()
    };
    let mut settings = fast_settings(4);
    settings.rpc.max_attempts_reset = 10;
    let (rack, h) = start(rack_with(faults), settings).await;
    let before = h
        .info("sled-0")
        .await
        .unwrap()
        .identity
        .unwrap()
        .hubris_archive_id;
    let (board, vers) = ("gimlet-e", "1.0.77");
    let archive = build::archive(ArchiveSpec {
        image: build::sp_image(board, 64 * 1024, vers),
        base: SP_IMAGE_BASE,
        aux: None,
        image_name: Some("default"),
        board,
        name: board,
        chip: SP_CHIP,
        git_rev: &build::fake_git_rev(board, vers),
        bzip2: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.zip");
    std::fs::write(&path, archive).unwrap();
    let id = Uuid::new_v4();
    let start = StartUpdate {
        activate: Some(ResetOptions::default()),
        ..StartUpdate::new(
            "sled-0",
            "sp",
            0,
            id,
            ImageSource::Archive(std::fs::File::open(&path).unwrap()),
        )
    };
    h.start_update(start).await.unwrap();
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    let a = done.activation.unwrap();
    assert_eq!(a.outcome, Outcome::Activated, "{}", a.detail);
    assert!(a.watchdog_disabled, "{}", a.detail);
    assert!(
        a.detail.contains("archive id did not change"),
        "{}",
        a.detail
    );
    assert_eq!(a.archive_id_after.as_deref(), Some(before.as_str()));
    assert_eq!(a.running.and_then(|r| r.vers).as_deref(), Some(vers));
    // The watchdog is off: long past its window the SP has not gone back.
    let resets = rack.sps[0].fault_stats().resets;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(rack.sps[0].fault_stats().resets, resets);
    rack.stop().await;
}
