//! Host phase-2 recovery over loopback: the test plays the gateway serving
//! (or refusing) an image; plus the IPCC installinator image id.

mod common;

use common::{rack, wait_for, Gateway, RpcError};
use gateway_messages::{
    IpccKeyLookupValueError, MgsError, MgsRequest, MgsResponse, SpError, SpRequest, SpResponse,
};
use sp_sim::{build_phase2_image, FaultConfig, Phase2Failure, Phase2State, SimRack, SimSp};
use tokio::time::{Duration, Instant};

/// Bytes of image data the gateway puts in one answer (1024 − 50).
const CHUNK: usize = 974;

/// What the test gateway does with a request for `offset` of `hash`.
enum Serve<'a> {
    /// Serve `image` for `hash`; past its end: `HostPhase2ImageBadOffset`.
    Image(&'a [u8], [u8; 32]),
    /// Know no image at all: `HostPhase2Unavailable`.
    Nothing,
}

/// Answer the SP's phase-2 requests until `done` holds or `limit` passes.
async fn serve(g: &mut Gateway, sp: &SimSp, what: Serve<'_>, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut answered = 0;
    while Instant::now() < deadline {
        if sp
            .phase2_progress()
            .is_some_and(|p| p.state != Phase2State::Fetching)
        {
            break;
        }
        let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
        let Some(p) = g.next_sp_packet(step).await else {
            continue;
        };
        let SpRequest::HostPhase2Data { hash, offset } = p.request else {
            continue;
        };
        let id = p.header.message_id;
        match what {
            Serve::Image(image, known) if known == hash => {
                let at = offset as usize;
                if at >= image.len() {
                    let e = MgsError::HostPhase2ImageBadOffset { hash, offset };
                    g.respond(id, MgsResponse::Error(e), &[]).await;
                } else {
                    let end = (at + CHUNK).min(image.len());
                    let r = MgsResponse::HostPhase2Data { hash, offset };
                    g.respond(id, r, &image[at..end]).await;
                }
            }
            _ => {
                let e = MgsError::HostPhase2Unavailable { hash };
                g.respond(id, MgsResponse::Error(e), &[]).await;
            }
        }
        answered += 1;
    }
    answered
}

/// A gateway the SP has heard from (so it knows where to send).
async fn gateway(sp: &SimSp) -> Gateway {
    let mut g = Gateway::new(sp.addr).await;
    g.rpc(MgsRequest::Discover, &[]).await.unwrap();
    g
}

fn data(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_image_arrives_whole_under_5_percent_loss() {
    let mut cfg = rack(1, 0, 0);
    cfg.faults = FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        duplicate_response: 0.02,
        ..FaultConfig::default()
    };
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = gateway(sp).await;
    let (image, hash) = build_phase2_image(&data(2 * 1024 * 1024));
    sp.start_recovery(hash);
    serve(
        &mut g,
        sp,
        Serve::Image(&image, hash),
        Duration::from_secs(60),
    )
    .await;

    let p = sp.phase2_progress().unwrap();
    assert_eq!(p.state, Phase2State::Complete, "{:?}", p.state);
    assert_eq!(p.offset, image.len() as u64);
    assert_eq!(p.total, Some(image.len() as u64));
    let chunks = image.len().div_ceil(CHUNK) as u64;
    assert_eq!(p.chunks, chunks);
    assert!(p.requests > chunks, "lost requests were resent: {p:?}");
    let stats = sp.fault_stats();
    assert!(
        stats.requests_dropped > 0 && stats.responses_dropped > 0,
        "{stats:?}"
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_hash_is_refused_until_the_host_gives_up() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = gateway(sp).await;
    sp.start_recovery([0x42; 32]);
    let answered = serve(&mut g, sp, Serve::Nothing, Duration::from_secs(10)).await;
    let p = sp.phase2_progress().unwrap();
    let unavailable = MgsError::HostPhase2Unavailable { hash: [0x42; 32] };
    assert_eq!(
        p.state,
        Phase2State::Failed(Phase2Failure::NoData {
            offset: 0,
            last_error: Some(unavailable)
        })
    );
    // The firmware keeps asking: 6 rounds on both ports.
    assert_eq!(answered, 12);
    assert_eq!(p.requests, 12);
    assert!(p.errors.iter().all(|e| *e == unavailable));
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_image_gets_bad_offset_and_a_corrupt_one_fails_its_hash() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = gateway(sp).await;
    let (image, hash) = build_phase2_image(&data(100_000));
    // The gateway has only part of the image the header describes.
    let short = &image[..50_000];
    sp.start_recovery(hash);
    serve(
        &mut g,
        sp,
        Serve::Image(short, hash),
        Duration::from_secs(10),
    )
    .await;
    let p = sp.phase2_progress().unwrap();
    let bad = MgsError::HostPhase2ImageBadOffset {
        hash,
        offset: 50_000,
    };
    assert_eq!(
        p.state,
        Phase2State::Failed(Phase2Failure::NoData {
            offset: 50_000,
            last_error: Some(bad)
        })
    );

    // Data that does not hash to the header's value.
    let mut corrupt = image.clone();
    corrupt[60_000] ^= 1;
    sp.start_recovery(hash);
    serve(
        &mut g,
        sp,
        Serve::Image(&corrupt, hash),
        Duration::from_secs(10),
    )
    .await;
    let p = sp.phase2_progress().unwrap();
    assert!(
        matches!(p.state, Phase2State::Failed(Phase2Failure::HashMismatch(_))),
        "{:?}",
        p.state
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_restarts_the_fetch_from_the_start() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = gateway(sp).await;
    let (image, hash) = build_phase2_image(&data(300_000));
    sp.start_recovery(hash);
    // Serve until a third of the image is through, then reset the SP.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sp.phase2_progress().unwrap().offset < 100_000 && Instant::now() < deadline {
        let Some(p) = g.next_sp_packet(deadline).await else {
            break;
        };
        if let SpRequest::HostPhase2Data { hash, offset } = p.request {
            let at = offset as usize;
            let end = (at + CHUNK).min(image.len());
            let r = MgsResponse::HostPhase2Data { hash, offset };
            g.respond(p.header.message_id, r, &image[at..end]).await;
        }
    }
    sp.reset_now();
    let p = sp.phase2_progress().unwrap();
    assert_eq!((p.offset, p.restarts), (0, 1));
    g.rpc(MgsRequest::Discover, &[]).await.unwrap();
    serve(
        &mut g,
        sp,
        Serve::Image(&image, hash),
        Duration::from_secs(30),
    )
    .await;
    let p = sp.phase2_progress().unwrap();
    assert_eq!((p.state, p.restarts), (Phase2State::Complete, 1));
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installinator_image_id_is_stored_over_ipcc_on_sleds_only() {
    let rack = SimRack::start(rack(1, 1, 0)).await.unwrap();
    let (sled, switch) = (&rack.sps[0], &rack.sps[1]);
    let mut g = Gateway::new(sled.addr).await;
    let set = |key| MgsRequest::SetIpccKeyLookupValue { key };
    let id = vec![0xAB; 40];
    assert_eq!(
        g.rpc(set(1), &id).await.map(|r| r.0),
        Ok(SpResponse::SetIpccKeyLookupValueAck)
    );
    assert_eq!(sled.installinator_image_id(), id);
    assert_eq!(
        g.rpc(set(1), &[0; 513]).await.map(|r| r.0),
        Err(RpcError::Sp(SpError::SetIpccKeyLookupValueFailed(
            IpccKeyLookupValueError::ValueTooLong { max_len: 512 }
        )))
    );
    assert_eq!(
        sled.installinator_image_id(),
        id,
        "a refused value changes nothing"
    );
    assert_eq!(
        g.rpc(set(0), b"ping").await.map(|r| r.0),
        Err(RpcError::Sp(SpError::SetIpccKeyLookupValueFailed(
            IpccKeyLookupValueError::InvalidKey
        )))
    );
    // An empty value clears it; a reset loses it.
    g.rpc(set(1), &id).await.unwrap();
    sled.reset_now();
    assert!(
        wait_for(Duration::from_secs(5), || sled
            .installinator_image_id()
            .is_empty())
        .await
    );
    let mut s = Gateway::new(switch.addr).await;
    assert_eq!(
        s.rpc(set(1), &id).await.map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForSp))
    );
    rack.stop().await;
}
