//! The server loop's own behaviour over loopback: dropped prepare acks,
//! the receive queue limit while the SP is busy with flash work, and
//! stopping in the middle of that work.

use gateway_messages::mgs::{parse_response, RequestDatagram};
use gateway_messages::{
    ComponentUpdatePrepare, MgsRequest, SpComponent, SpError, SpResponse, SpUpdatePrepare,
    UpdateId, UpdateInProgressStatus, UpdateStatus,
};
use sp_sim::client::{Client, ClientError};
use sp_sim::{RackConfig, SimRack, Timings};
use std::time::Duration;

const HBF: SpComponent = SpComponent::HOST_CPU_BOOT_FLASH;

fn rack(timings: Timings) -> RackConfig {
    let mut c = RackConfig::standard(1, 0, 0);
    c.timings = Timings {
        host_flash_mib: 8,
        ..timings
    };
    c.seed = 7;
    c
}

fn in_progress(id: UpdateId, total_size: u32) -> UpdateStatus {
    UpdateStatus::InProgress(UpdateInProgressStatus {
        id,
        bytes_received: 0,
        total_size,
    })
}

fn host_prepare(id: UpdateId, slot: u16, total_size: u32) -> MgsRequest {
    MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
        component: HBF,
        id,
        slot,
        total_size,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_prepare_ack_makes_the_resend_meet_its_own_update() {
    let mut cfg = rack(Timings::instant());
    cfg.faults.drop_prepare_acks = 2;
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let mut c = Client::new(sp.addr).await.unwrap();
    c.timeout = Duration::from_millis(25);
    let (a, b, d) = (
        UpdateId([0xa; 16]),
        UpdateId([0xb; 16]),
        UpdateId([0xd; 16]),
    );

    // A refused prepare is answered and does not use up the fault.
    let refused = c.rpc(host_prepare(a, 2, 100_000), &[]).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Sp(SpError::InvalidSlotForComponent))
        ),
        "{refused:?}"
    );
    assert_eq!(c.stats.resends, 0);

    // The accepted prepare's ack is lost; its identical resend finds the
    // update that very prepare started.
    let retried = c.rpc(host_prepare(a, 1, 100_000), &[]).await;
    match retried {
        Err(ClientError::Sp(SpError::UpdateInProgress(status))) => {
            assert_eq!(status, in_progress(a, 100_000))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.stats.resends, 1);

    // The same for the SP image, once the host update lets go of the buffer.
    let (r, _) = c
        .rpc(
            MgsRequest::UpdateAbort {
                component: HBF,
                id: a,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r, SpResponse::UpdateAbortAck);
    let sp_prepare = MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
        id: b,
        aux_flash_size: 0,
        aux_flash_chck: [0; 32],
        sp_image_size: 1000,
    });
    let retried = c.rpc(sp_prepare, &[]).await;
    match retried {
        Err(ClientError::Sp(SpError::UpdateInProgress(status))) => {
            assert_eq!(status, in_progress(b, 1000))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.stats.resends, 2);

    let stats = sp.fault_stats();
    assert_eq!(stats.prepare_acks_dropped, 2, "{stats:?}");
    assert_eq!(stats.responses_dropped, 2, "{stats:?}");

    // Both were used up: the next accepted prepare is acked at once.
    let (r, _) = c
        .rpc(
            MgsRequest::UpdateAbort {
                component: SpComponent::SP_ITSELF,
                id: b,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r, SpResponse::UpdateAbortAck);
    let (r, _) = c.rpc(host_prepare(d, 0, 5000), &[]).await.unwrap();
    assert_eq!(r, SpResponse::ComponentUpdatePrepareAck);
    assert_eq!(c.stats.resends, 2);
    assert_eq!(sp.update_status(HBF), Ok(in_progress(d, 5000)));
    assert_eq!(sp.fault_stats().prepare_acks_dropped, 2);
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_during_flash_work_meet_the_queue_limit() {
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let rack = SimRack::start(rack(Timings {
        // Far longer than sending a burst takes.
        sp_bank_erase_ms: 500,
        ..Timings::instant()
    }))
    .await
    .unwrap();
    let sp = &rack.sps[0];
    let id = UpdateId([3; 16]);
    // From the prepare on until the erase is over the SP answers nothing.
    prepare_sp_image(&sock, sp, id).await;
    for n in 0..10u32 {
        let d = RequestDatagram::new(100 + n, MgsRequest::Discover, &[]);
        sock.send_to(d.as_bytes(), sp.addr).await.unwrap();
    }

    // The ack comes after the erase, then the three queued Discovers in
    // the order they were sent.
    let mut buf = [0u8; 2048];
    for expected in [1, 100, 101, 102] {
        let n = sock.recv(&mut buf).await.unwrap();
        let (r, _) = parse_response(&buf[..n], expected).unwrap();
        let want = if expected == 1 {
            SpResponse::SpUpdatePrepareAck
        } else {
            SpResponse::Discover(gateway_messages::DiscoverResponse {
                sp_port: gateway_messages::SpPort::One,
            })
        };
        assert_eq!(r, want);
    }
    let stats = sp.fault_stats();
    assert_eq!(stats.received, 11, "{stats:?}");
    assert_eq!(stats.queue_overflows, 7, "{stats:?}");

    // Nothing else was queued: the next answer is to the next request.
    let d = RequestDatagram::new(200, MgsRequest::Discover, &[]);
    sock.send_to(d.as_bytes(), sp.addr).await.unwrap();
    let n = sock.recv(&mut buf).await.unwrap();
    assert!(parse_response(&buf[..n], 200).is_ok());
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_flash_work() {
    let rack = SimRack::start(rack(Timings {
        sp_bank_erase_ms: 600_000,
        ..Timings::instant()
    }))
    .await
    .unwrap();
    let sp = rack.sps[0].clone();
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let id = UpdateId([4; 16]);
    prepare_sp_image(&sock, &sp, id).await;
    // Ten minutes of erase must not hold up the stop.
    tokio::time::timeout(Duration::from_secs(10), rack.stop())
        .await
        .expect("the SP stops during flash work");
}

/// Send an SP-image prepare of update `id` (1000 bytes) and wait until
/// the SP has handled it (its state shows).
async fn prepare_sp_image(sock: &tokio::net::UdpSocket, sp: &sp_sim::SimSp, id: UpdateId) {
    let prepare = RequestDatagram::new(
        1,
        MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
            id,
            aux_flash_size: 0,
            aux_flash_chck: [0; 32],
            sp_image_size: 1000,
        }),
        &[],
    );
    sock.send_to(prepare.as_bytes(), sp.addr).await.unwrap();
    while sp.update_status(SpComponent::SP_ITSELF) != Ok(in_progress(id, 1000)) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
