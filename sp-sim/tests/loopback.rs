//! The simulator over real loopback sockets, driven by the minimal
//! stop-and-wait client.

use gateway_messages::{MgsRequest, SpComponent, SpError, SpResponse, UpdateId, UpdateStatus};
use sp_sim::client::{Client, ClientError};
use sp_sim::{FaultConfig, RackConfig, SimRack, Timings};
use std::time::Duration;

fn image(len: usize) -> Vec<u8> {
    let mut img = vec![0xFF; 64 * 1024];
    img.extend(
        (0..len - img.len()).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]),
    );
    img
}

fn rack(sleds: usize) -> RackConfig {
    let mut c = RackConfig::standard(sleds, 0, 0);
    c.timings = Timings {
        host_flash_mib: 8,
        ..Timings::instant()
    };
    c.seed = 42;
    c
}

async fn client(sp: &sp_sim::SimSp) -> Client {
    let mut c = Client::new(sp.addr).await.unwrap();
    c.timeout = Duration::from_millis(25);
    c.attempts = 100;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_flash_update_of_4_mib_survives_loss_and_duplication() {
    let mut cfg = rack(1);
    cfg.faults = FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        duplicate_request: 0.05,
        duplicate_response: 0.05,
        ..FaultConfig::default()
    };
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let img = image(4 * 1024 * 1024);
    let id = UpdateId([0x42; 16]);
    let mut c = client(sp).await;
    c.update(SpComponent::HOST_CPU_BOOT_FLASH, 1, id, &img)
        .await
        .unwrap();

    assert_eq!(
        sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
        Ok(UpdateStatus::Complete(id))
    );
    assert_eq!(
        sp.slot_hash(1),
        Some(sp_sim::expected_slot_hash(&img, 8 * 1024 * 1024))
    );
    let stats = sp.fault_stats();
    assert!(
        stats.requests_dropped > 0 && stats.responses_dropped > 0,
        "{stats:?}"
    );
    assert!(
        stats.requests_duplicated > 0 && stats.responses_duplicated > 0,
        "{stats:?}"
    );
    assert!(
        c.stats.rewinds > 0,
        "duplicated chunks force rewinds: {:?}",
        c.stats
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_update_forgets_it() {
    let rack = SimRack::start(rack(1)).await.unwrap();
    let sp = &rack.sps[0];
    let id = UpdateId([7; 16]);
    let img = image(200_000);
    let mut c = client(sp).await;
    let prep = gateway_messages::ComponentUpdatePrepare {
        component: SpComponent::HOST_CPU_BOOT_FLASH,
        id,
        slot: 0,
        total_size: img.len() as u32,
    };
    c.rpc(MgsRequest::ComponentUpdatePrepare(prep), &[])
        .await
        .unwrap();
    let chunk = |offset: u32| {
        MgsRequest::UpdateChunk(gateway_messages::UpdateChunk {
            component: SpComponent::HOST_CPU_BOOT_FLASH,
            id,
            offset,
        })
    };
    c.rpc(chunk(0), &img[..978]).await.unwrap();

    // Reset through the protocol: prepare is acked, the trigger never is.
    let sp_itself = SpComponent::SP_ITSELF;
    let (r, _) = c
        .rpc(
            MgsRequest::ResetComponentPrepare {
                component: sp_itself,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r, SpResponse::ResetComponentPrepareAck);
    c.attempts = 2;
    let trigger = c
        .rpc(
            MgsRequest::ResetComponentTrigger {
                component: sp_itself,
            },
            &[],
        )
        .await;
    // The rebooted SP answers a retried trigger: it has lost the prepare.
    assert!(
        matches!(
            trigger,
            Err(ClientError::Sp(
                SpError::ResetComponentTriggerWithoutPrepare
            ))
        ),
        "{trigger:?}"
    );
    c.attempts = 100;
    assert_eq!(
        c.status(SpComponent::HOST_CPU_BOOT_FLASH).await.unwrap(),
        UpdateStatus::None
    );
    let after = c.rpc(chunk(978), &img[978..1956]).await;
    assert!(
        matches!(after, Err(ClientError::Sp(SpError::UpdateNotPrepared))),
        "{after:?}"
    );
    let again = c.rpc(chunk(0), &img[..978]).await;
    assert!(
        matches!(again, Err(ClientError::Sp(SpError::UpdateNotPrepared))),
        "{again:?}"
    );

    // A reset from the library (power loss) does the same.
    c.update(SpComponent::HOST_CPU_BOOT_FLASH, 0, id, &img[..100_000])
        .await
        .unwrap();
    sp.reset_now();
    assert_eq!(
        c.status(SpComponent::HOST_CPU_BOOT_FLASH).await.unwrap(),
        UpdateStatus::None
    );
    assert_eq!(sp.fault_stats().resets, 2);
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_beyond_the_receive_queue_are_dropped() {
    let mut cfg = rack(1);
    // 100 KiB/s: each full chunk keeps the SP busy ~10 ms.
    cfg.timings.write_kib_per_s = 100;
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let id = UpdateId([9; 16]);
    let mut c = client(sp).await;
    let prep = gateway_messages::ComponentUpdatePrepare {
        component: SpComponent::HOST_CPU_BOOT_FLASH,
        id,
        slot: 0,
        total_size: 100_000,
    };
    c.rpc(MgsRequest::ComponentUpdatePrepare(prep), &[])
        .await
        .unwrap();
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let ff = [0xFFu8; 978];
    for i in 0..10u32 {
        let chunk = gateway_messages::UpdateChunk {
            component: SpComponent::HOST_CPU_BOOT_FLASH,
            id,
            offset: i * 978,
        };
        let d = gateway_messages::mgs::RequestDatagram::new(
            100 + i,
            MgsRequest::UpdateChunk(chunk),
            &ff,
        );
        sock.send_to(d.as_bytes(), sp.addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sp.fault_stats();
    assert_eq!(stats.received, 10 + 1, "{stats:?}");
    assert!(stats.queue_overflows >= 5, "{stats:?}");
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_identity() {
    let mut cfg = RackConfig::standard(1, 1, 1);
    cfg.bind = "127.0.0.1".parse().unwrap();
    let rack = SimRack::start(cfg).await.unwrap();
    for sp in &rack.sps {
        assert!(sp.addr.is_ipv4());
        let mut c = client(sp).await;
        let (r, _) = c.rpc(MgsRequest::SpState, &[]).await.unwrap();
        let SpResponse::SpStateV2(state) = r else {
            panic!("{r:?}")
        };
        assert!(state.serial_number.starts_with(sp.serial.as_bytes()));
        let (r, value) = c
            .rpc(MgsRequest::ReadCaboose { key: *b"BORD" }, &[])
            .await
            .unwrap();
        assert_eq!(r, SpResponse::CabooseValue);
        assert_eq!(value, sp.kind.board().as_bytes());
        // Only sleds have a host boot flash.
        let hbf = c.status(SpComponent::HOST_CPU_BOOT_FLASH).await;
        assert_eq!(hbf.is_ok(), sp.kind == sp_sim::SpKind::Sled, "{hbf:?}");
    }
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sp_image_update_then_watchdog_reset_boots_the_other_bank() {
    use gateway_messages::{RotBootInfo, SpUpdatePrepare, UpdateChunk};
    let rack = SimRack::start(rack(1)).await.unwrap();
    let sp = &rack.sps[0];
    let mut c = client(sp).await;
    let sp_itself = SpComponent::SP_ITSELF;
    let id = UpdateId([3; 16]);
    let img = sp_sim::artifacts::build::sp_image(sp.kind.board(), 100_000, "9.8.7");
    let (r, _) = c
        .rpc(MgsRequest::ReadCaboose { key: *b"BORD" }, &[])
        .await
        .unwrap();
    assert_eq!(r, SpResponse::CabooseValue);
    let prep = SpUpdatePrepare {
        id,
        aux_flash_size: 0,
        aux_flash_chck: [0; 32],
        sp_image_size: img.len() as u32,
    };
    c.rpc(MgsRequest::SpUpdatePrepare(prep), &[]).await.unwrap();
    for (i, data) in img.chunks(978).enumerate() {
        let chunk = UpdateChunk {
            component: sp_itself,
            id,
            offset: (i * 978) as u32,
        };
        c.rpc(MgsRequest::UpdateChunk(chunk), data).await.unwrap();
    }
    assert_eq!(
        c.status(sp_itself).await.unwrap(),
        UpdateStatus::Complete(id)
    );
    let (r, _) = c
        .rpc(MgsRequest::ComponentGetActiveSlot(sp_itself), &[])
        .await
        .unwrap();
    assert_eq!(r, SpResponse::ComponentActiveSlot(1), "pending boot bank");
    // Slot 1 (the other bank) now has the new image's caboose.
    let read_vers = |slot| MgsRequest::ReadComponentCaboose {
        component: sp_itself,
        slot,
        key: *b"VERS",
    };
    let (_, value) = c.rpc(read_vers(1), &[]).await.unwrap();
    assert_eq!(value, b"9.8.7");
    let (_, value) = c.rpc(read_vers(0), &[]).await.unwrap();
    assert_ne!(value, b"9.8.7");

    // What the reference client does after a completed SP update.
    let (r, _) = c
        .rpc(
            MgsRequest::ComponentWatchdogSupported {
                component: sp_itself,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r, SpResponse::ComponentWatchdogSupportedAck);
    c.rpc(
        MgsRequest::ResetComponentPrepare {
            component: sp_itself,
        },
        &[],
    )
    .await
    .unwrap();
    c.attempts = 2;
    let wd = MgsRequest::ResetComponentTriggerWithWatchdog {
        component: sp_itself,
        time_ms: 3000,
    };
    let r = c.rpc(wd, &[]).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Sp(
                SpError::ResetComponentTriggerWithoutPrepare
            ))
        ),
        "{r:?}"
    );
    c.attempts = 100;
    let (r, _) = c
        .rpc(
            MgsRequest::DisableComponentWatchdog {
                component: sp_itself,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r, SpResponse::DisableComponentWatchdogAck);
    assert_eq!(c.status(sp_itself).await.unwrap(), UpdateStatus::None);
    // Now running bank 1: caboose slot 0 is what bank 1 holds.
    let (r, value) = c.rpc(read_vers(0), &[]).await.unwrap();
    assert_eq!(r, SpResponse::CabooseValue);
    assert_eq!(value, b"9.8.7");
    let (r, _) = c
        .rpc(MgsRequest::VersionedRotBootInfo { version: 3 }, &[])
        .await
        .unwrap();
    assert!(
        matches!(r, SpResponse::RotBootInfo(RotBootInfo::V3(_))),
        "{r:?}"
    );
    rack.stop().await;
}

/// Prepares an SP update of `img` with aux flash `aux` over the socket.
async fn sp_prepare(
    c: &mut Client,
    id: UpdateId,
    aux: &[u8],
    img: &[u8],
) -> Result<(), ClientError> {
    use gateway_messages::SpUpdatePrepare;
    let chck = match aux {
        [] => [0; 32],
        aux => sp_sim::artifacts::AuxFlash::parse(aux.to_vec())
            .unwrap()
            .chck(),
    };
    let prep = SpUpdatePrepare {
        id,
        aux_flash_size: aux.len() as u32,
        aux_flash_chck: chck,
        sp_image_size: img.len() as u32,
    };
    c.rpc(MgsRequest::SpUpdatePrepare(prep), &[])
        .await
        .map(|_| ())
}

/// Sends `data` as chunks of `component`, from offset 0.
async fn send(
    c: &mut Client,
    component: SpComponent,
    id: UpdateId,
    data: &[u8],
) -> Result<(), ClientError> {
    use gateway_messages::UpdateChunk;
    for (i, d) in data.chunks(978).enumerate() {
        let chunk = UpdateChunk {
            component,
            id,
            offset: (i * 978) as u32,
        };
        c.rpc(MgsRequest::UpdateChunk(chunk), d).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_sp_update_writes_aux_flash_once_and_checks_the_board() {
    use sp_sim::artifacts::build::{aux_flash, sp_image};
    use sp_sim::artifacts::Tag;
    let mut cfg = RackConfig::standard(1, 1, 0);
    cfg.timings = Timings::instant();
    let rack = SimRack::start(cfg).await.unwrap();
    let (sled, switch) = (&rack.sps[0], &rack.sps[1]);
    assert_eq!(switch.kind.board(), "sidecar-c");
    let aux = aux_flash(&[(Tag(*b"QSFP"), &[3; 3000])]);
    let img = sp_image("sidecar-c", 50_000, "1.1.0");
    let total = (aux.len() + img.len()) as u32;

    // Sleds have no aux flash.
    let mut c = client(sled).await;
    let r = sp_prepare(&mut c, UpdateId([4; 16]), &aux, &img).await;
    assert!(
        matches!(r, Err(ClientError::Sp(SpError::RequestUnsupportedForSp))),
        "{r:?}"
    );

    let mut c = client(switch).await;
    let sp_itself = SpComponent::SP_ITSELF;
    for (found_match, id) in [(false, UpdateId([5; 16])), (true, UpdateId([6; 16]))] {
        sp_prepare(&mut c, id, &aux, &img).await.unwrap();
        assert_eq!(
            c.status(sp_itself).await.unwrap(),
            UpdateStatus::SpUpdateAuxFlashChckScan {
                id,
                found_match,
                total_size: total
            }
        );
        if !found_match {
            send(&mut c, SpComponent::SP_AUX_FLASH, id, &aux)
                .await
                .unwrap();
        }
        send(&mut c, sp_itself, id, &img).await.unwrap();
        assert_eq!(
            c.status(sp_itself).await.unwrap(),
            UpdateStatus::Complete(id)
        );
        switch.reset_now();
        while c.status(sp_itself).await.unwrap() != UpdateStatus::None {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(
        switch.device().updates.aux_flash().unwrap().slot(0),
        &aux[..]
    );

    // A sled image is refused by the switch at the last chunk.
    let id = UpdateId([7; 16]);
    let gimlet = sp_image(sled.kind.board(), 50_000, "1.1.0");
    sp_prepare(&mut c, id, &[], &gimlet).await.unwrap();
    let r = send(&mut c, sp_itself, id, &gimlet).await;
    assert!(
        matches!(r, Err(ClientError::Sp(SpError::ImageBoardMismatch))),
        "{r:?}"
    );
    assert_eq!(
        c.status(sp_itself).await.unwrap(),
        UpdateStatus::Failed { id, code: 22 }
    );
    rack.stop().await;
}
