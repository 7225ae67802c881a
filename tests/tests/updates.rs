//! End-to-end update delivery: the daemon's actors against a simulated rack
//! over loopback, driven through the registry handle (the API the control
//! socket uses).

use actors::RegistryHandle;
use actors::{Phase, RegistryError, SpUpdateState, UpdateError};
use gateway_messages::SpError;
use mgsd_tests::{
    bytes, fast_settings, host_image, start, wait_record, wait_terminal, CountedSockets,
};
use sp_sim::artifacts::build::rot_image;
use sp_sim::SimRack;
use sp_sim::{FaultConfig, RackConfig, Timings};
use std::time::Duration;
use uuid::Uuid;

const MIB: usize = 1024 * 1024;
const HBF: &str = "host-boot-flash";
const LONG: Duration = Duration::from_secs(120);

fn rack(sleds: usize) -> RackConfig {
    let mut r = RackConfig::standard(sleds, 0, 0);
    r.timings = Timings {
        host_flash_mib: 4,
        ..Timings::instant()
    };
    r.seed = 7;
    r
}

/// Writes at 1 MiB/s and 2 ms per sector: phases last long enough to see.
fn slow_rack() -> RackConfig {
    let mut r = rack(1);
    r.timings.sector_erase_ms = 2.0;
    r.timings.write_kib_per_s = 1024;
    r
}

#[actix::test]
async fn full_update_completes_with_verified_hash() {
    let (rack, h) = start(rack(1), fast_settings(4)).await;
    let id = Uuid::new_v4();
    let img = host_image(MIB, 1);
    let started = h
        .start_update(bytes("sled-0", HBF, 1, id, img.clone()))
        .await
        .unwrap();
    assert_eq!(
        (started.id(), started.spec().total_bytes),
        (id, img.len() as u64)
    );
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    assert!(done.hash_verified);
    assert_eq!(done.bytes_acked, img.len() as u64);
    let view = h.update_status("sled-0", HBF).await.unwrap();
    assert_eq!(view.sp_status, SpUpdateState::Complete { id });
    assert_eq!(view.delivery.unwrap().id(), id);
    assert_eq!(
        rack.sps[0].slot_hash(1),
        Some(sp_sim::expected_slot_hash(&img, 4 * MIB as u32))
    );
    // One copy of the image, freed when the update is done with it.
    assert!(h.images().is_empty());
    rack.stop().await;
}

#[actix::test]
async fn status_shows_erase_progress_then_delivery_progress() {
    let (rack, h) = start(slow_rack(), fast_settings(4)).await;
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, host_image(300_000, 2)))
        .await
        .unwrap();
    // Right after the prepare the SP is erasing 63 sectors at 2 ms each.
    let view = h.update_status("sled-0", HBF).await.unwrap();
    let SpUpdateState::Preparing {
        id: sp_id,
        erase_current: Some(cur),
        erase_total: Some(64),
    } = view.sp_status
    else {
        panic!("{view:?}")
    };
    assert_eq!(sp_id, id);
    assert!((1..64).contains(&cur));
    let erasing = wait_record(&h, id, LONG, |r| r.erase_progress.is_some()).await;
    assert_eq!(erasing.phase, Phase::Preparing);
    let delivering = wait_record(&h, id, LONG, |r| {
        r.phase == Phase::Delivering && r.bytes_acked > 0
    })
    .await;
    assert_eq!(delivering.erase_progress, Some((64, 64)));
    let view = h.update_status("sled-0", HBF).await.unwrap();
    let SpUpdateState::InProgress {
        bytes_received,
        total_size: 300_000,
        ..
    } = view.sp_status
    else {
        panic!("{view:?}")
    };
    assert!(bytes_received > 0 && bytes_received < 300_000);
    assert_eq!(wait_terminal(&h, id, LONG).await.phase, Phase::Complete);
    rack.stop().await;
}

#[actix::test]
async fn abort_mid_delivery_leaves_the_sp_aborted() {
    let (rack, h) = start(slow_rack(), fast_settings(4)).await;
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, host_image(MIB, 3)))
        .await
        .unwrap();
    wait_record(&h, id, LONG, |r| r.bytes_acked > 100_000).await;
    // Another id is refused by the SP; nothing changes.
    let wrong = h
        .abort_update("sled-0", HBF, Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        matches!(
            wrong,
            RegistryError::Update(UpdateError::AbortRefused {
                error: SpError::UpdateInProgress(_),
                ..
            })
        ),
        "{wrong}"
    );
    h.abort_update("sled-0", HBF, id).await.unwrap();
    let view = h.update_status("sled-0", HBF).await.unwrap();
    assert_eq!(view.sp_status, SpUpdateState::Aborted { id });
    let r = h.update(id).await.unwrap().progress();
    assert_eq!(r.phase, Phase::Aborted);
    // Delivery really stopped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.update(id).await.unwrap().progress().bytes_acked,
        r.bytes_acked
    );
    rack.stop().await;
}

#[actix::test]
async fn dropping_the_callers_future_does_not_cancel_delivery() {
    let (rack, h) = start(slow_rack(), fast_settings(4)).await;
    let id = Uuid::new_v4();
    let caller = {
        let h = h.clone();
        actix::spawn(async move {
            h.start_update(bytes("sled-0", HBF, 1, id, host_image(200_000, 4)))
                .await
        })
    };
    // Drop the caller as soon as the prepare reached the SP.
    while rack.sps[0].update_status(gateway_messages::SpComponent::HOST_CPU_BOOT_FLASH)
        == Ok(gateway_messages::UpdateStatus::None)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    caller.abort();
    // The registry knows the update once the SP's prepare ack is back,
    // which may be a moment after the SP saw the prepare.
    let known = tokio::time::timeout(LONG, async {
        while h.update(id).await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(known.is_ok(), "the update was never accepted");
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    rack.stop().await;
}

#[actix::test]
async fn sp_reset_mid_update_fails_it_with_a_reason() {
    let mut r = slow_rack();
    r.timings.reset_ms = 50;
    let (rack, h) = start(r, fast_settings(4)).await;
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, host_image(MIB, 5)))
        .await
        .unwrap();
    wait_record(&h, id, LONG, |r| r.bytes_acked > 50_000).await;
    rack.sps[0].reset_now();
    let r = wait_terminal(&h, id, LONG).await;
    assert_eq!(r.phase, Phase::Failed);
    let why = r.failure.unwrap();
    assert!(
        why.reason.contains("no longer has this update") && why.reason.contains("None"),
        "{why}"
    );
    rack.stop().await;
}

#[actix::test]
async fn same_id_same_image_is_idempotent_other_image_conflicts() {
    let (rack, h) = start(rack(1), fast_settings(4)).await;
    let id = Uuid::new_v4();
    let img = host_image(200_000, 6);
    h.start_update(bytes("sled-0", HBF, 1, id, img.clone()))
        .await
        .unwrap();
    let again = h
        .start_update(bytes("sled-0", HBF, 1, id, img.clone()))
        .await
        .unwrap();
    assert_eq!(again.id(), id);
    let other = h
        .start_update(bytes("sled-0", HBF, 1, id, host_image(200_000, 99)))
        .await
        .unwrap_err();
    assert!(
        matches!(other, RegistryError::Update(UpdateError::Conflict { .. })),
        "{other}"
    );
    assert!(other.to_string().contains(&id.to_string()));
    wait_terminal(&h, id, LONG).await;
    // After completion the same start still answers with the same update.
    let after = h
        .start_update(bytes("sled-0", HBF, 1, id, img))
        .await
        .unwrap();
    assert_eq!(after.progress().phase, Phase::Complete);
    assert_eq!(
        rack.sps[0].fault_stats().received,
        rack.sps[0].fault_stats().received
    );
    rack.stop().await;
}

#[actix::test]
async fn another_update_already_running_is_named() {
    let (rack, h) = start(slow_rack(), fast_settings(4)).await;
    let first = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, first, host_image(MIB, 7)))
        .await
        .unwrap();
    let second = Uuid::new_v4();
    let err = h
        .start_update(bytes(
            "sled-0",
            "rot",
            0,
            second,
            rot_image("oxide-rot-1", 1000, "1.0.0"),
        ))
        .await
        .unwrap_err();
    let RegistryError::Update(UpdateError::AlreadyRunning {
        id, ref component, ..
    }) = err
    else {
        panic!("{err}")
    };
    assert_eq!((id, component.to_string()), (first, HBF.to_string()));
    assert!(err.to_string().contains(&first.to_string()));
    // The refused id stays free for later.
    h.abort_update("sled-0", HBF, first).await.unwrap();
    h.start_update(bytes(
        "sled-0",
        "rot",
        0,
        second,
        rot_image("oxide-rot-1", 1000, "1.0.0"),
    ))
    .await
    .unwrap();
    assert_eq!(wait_terminal(&h, second, LONG).await.phase, Phase::Complete);
    rack.stop().await;
}

#[actix::test]
async fn eight_sps_update_at_once() {
    let (rack, h) = start(rack(8), fast_settings(4)).await;
    let img = host_image(MIB, 8);
    let mut ids = Vec::new();
    for sp in &rack.sps {
        let id = Uuid::new_v4();
        h.start_update(bytes(&sp.name, HBF, 1, id, img.clone()))
            .await
            .unwrap();
        ids.push(id);
    }
    assert_eq!(h.images().len(), 1, "one copy for eight SPs");
    for (sp, id) in rack.sps.iter().zip(ids) {
        let r = wait_terminal(&h, id, LONG).await;
        assert_eq!(r.phase, Phase::Complete, "{r:?}");
        assert!(r.hash_verified);
        assert_eq!(
            sp.slot_hash(1),
            Some(sp_sim::expected_slot_hash(&img, 4 * MIB as u32))
        );
    }
    rack.stop().await;
}

#[actix::test]
async fn five_percent_loss_each_way_plus_duplication_completes() {
    let mut r = rack(1);
    r.faults = FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        duplicate_request: 0.05,
        duplicate_response: 0.05,
        ..FaultConfig::default()
    };
    let (rack, h) = start(r, fast_settings(4)).await;
    let id = Uuid::new_v4();
    let img = host_image(MIB, 9);
    h.start_update(bytes("sled-0", HBF, 0, id, img.clone()))
        .await
        .unwrap();
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    assert!(
        done.hash_verified && done.rewinds > 0 && done.chunks_retransmitted > 0,
        "{done:?}"
    );
    assert_eq!(
        rack.sps[0].slot_hash(0),
        Some(sp_sim::expected_slot_hash(&img, 4 * MIB as u32))
    );
    rack.stop().await;
}

#[actix::test]
async fn lost_ack_of_the_final_chunk_still_completes() {
    let mut r = rack(1);
    r.faults.drop_completion_ack = true;
    let (rack, h) = start(r, fast_settings(4)).await;
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 1, id, host_image(100_000, 10)))
        .await
        .unwrap();
    let done = wait_terminal(&h, id, LONG).await;
    assert_eq!(done.phase, Phase::Complete, "{done:?}");
    assert!(done.hash_verified);
    // The ack was lost; the SP's status (asked when the last chunk went
    // unanswered, or by the periodic refresh, whichever came first) said
    // Complete, and nothing was sent again.
    let stats = rack.sps[0].fault_stats();
    assert_eq!(stats.responses_dropped, 1, "{stats:?}");
    assert_eq!(done.chunks_retransmitted, 0, "{done:?}");
    rack.stop().await;
}

#[actix::test]
async fn unknown_sp_bad_component_and_bad_slot_are_clear_errors() {
    let (rack, h) = start(rack(1), fast_settings(4)).await;
    let id = Uuid::new_v4();
    let e = h
        .start_update(bytes("sled-99", HBF, 0, id, vec![0xFF; 10]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::UnknownSp(n) if n == "sled-99"),
        "{e}"
    );
    let e = h
        .start_update(bytes("sled-0", "fan-ctrl", 0, id, vec![0xFF; 10]))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadComponent { .. }), "{e}");
    assert!(e.to_string().contains("fan-ctrl"));
    let e = h
        .start_update(bytes(
            "sled-0",
            "a-very-long-component-name",
            0,
            id,
            vec![1],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadComponent { .. }), "{e}");
    // No such slot: refused here, before the SP hears of it.
    let e = h
        .start_update(bytes("sled-0", HBF, 7, id, vec![0xFF; 10]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::BadSlot {
                slot: 7,
                slots: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("sled-0"), "{e}");
    // Nothing was started: the id is still free.
    h.start_update(bytes("sled-0", HBF, 1, id, vec![0xFF; 10]))
        .await
        .unwrap();
    // And SPs are found by serial number too.
    let serial = rack.sps[0].serial.clone();
    assert_eq!(h.info(&serial).await.unwrap().name.as_str(), "sled-0");
    rack.stop().await;
}

#[actix::test]
async fn reconfiguration_starts_and_stops_sp_actors_and_their_sockets() {
    let rack = SimRack::start(rack(2)).await.unwrap();
    let sockets = CountedSockets::default();
    let h = RegistryHandle::start(sockets.config(&rack, fast_settings(4))).unwrap();
    let all = mgsd_tests::entries(&rack);
    for _ in 0..10 {
        h.reconfigure(all[..1].to_vec()).await.unwrap();
        assert_eq!(h.list().await.unwrap().len(), 1);
        let e = h.info("sled-1").await.unwrap_err();
        assert!(
            matches!(&e, RegistryError::UnknownSp(n) if n == "sled-1"),
            "{e}"
        );
        h.reconfigure(all.clone()).await.unwrap();
    }
    let names: Vec<_> = h
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.info.name.to_string())
        .collect();
    assert_eq!(names, ["sled-0", "sled-1"]);
    // Every removed actor closed its socket: two remain.
    let deadline = std::time::Instant::now() + LONG;
    while sockets.live.load(std::sync::atomic::Ordering::SeqCst) != 2 {
        assert!(std::time::Instant::now() < deadline, "sockets leak");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // And the one actor left for sled-1 works.
    h.rpc("sled-1", gateway_messages::MgsRequest::GetPowerState)
        .await
        .unwrap();
    rack.stop().await;
}

#[actix::test]
async fn status_during_delivery_comes_from_the_update_not_a_request_per_question() {
    let mut settings = fast_settings(4);
    settings.delivery.status_poll_interval = Duration::from_millis(500);
    let rack = SimRack::start(slow_rack()).await.unwrap();
    let sockets = CountedSockets::default();
    let h = RegistryHandle::start(sockets.config(&rack, settings)).unwrap();
    while !h.info("sled-0").await.unwrap().reachable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, host_image(MIB, 12)))
        .await
        .unwrap();
    wait_record(&h, id, LONG, |r| r.phase == Phase::Delivering).await;
    let asked = || {
        sockets
            .of("sled-0")
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = asked();
    for _ in 0..100 {
        let view = h.update_status("sled-0", HBF).await.unwrap();
        assert!(
            matches!(view.sp_status, SpUpdateState::InProgress { id: i, .. } if i == id),
            "{view:?}"
        );
        assert!(view.sp_status_age <= Duration::from_secs(1), "{view:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A hundred questions in ~0.1 s; the update reads the SP every 0.5 s.
    assert!(
        asked() - before <= 2,
        "{} status requests",
        asked() - before
    );
    rack.stop().await;
}
