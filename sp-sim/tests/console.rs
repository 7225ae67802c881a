//! The host serial console over loopback: attachment rules, output packets
//! and their offsets, write ingestion with a bounded buffer, faults on the
//! console packets, and a reset ending the attachment.

mod common;

use common::{rack, wait_for, Gateway, RpcError};
use gateway_messages::{MgsRequest, SpComponent, SpError, SpRequest, SpResponse};
use sp_sim::{FaultConfig, SimRack};
use std::collections::BTreeMap;
use tokio::time::{Duration, Instant};

const HOST: SpComponent = SpComponent::SP3_HOST_CPU;

async fn attach(g: &mut Gateway) -> Result<SpResponse, RpcError> {
    g.rpc(MgsRequest::SerialConsoleAttach(HOST), &[])
        .await
        .map(|(r, _)| r)
}

/// Console packets until `want` bytes arrived (or `limit` passed).
async fn collect(g: &mut Gateway, want: usize, limit: Duration) -> Vec<(u64, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut bytes = 0;
    while bytes < want {
        let Some(p) = g.next_sp_packet(deadline).await else {
            break;
        };
        if let SpRequest::SerialConsole { component, offset } = p.request {
            assert_eq!(component, HOST);
            bytes += p.data.len();
            got.push((offset, p.data));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_at_a_time_and_the_rules_for_the_others() {
    let rack = SimRack::start(rack(1, 1, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut a = Gateway::new(sp.addr).await;
    let mut b = Gateway::new(sp.addr).await;

    assert_eq!(
        a.rpc(MgsRequest::SerialConsoleAttach(SpComponent::ROT), &[])
            .await,
        Err(RpcError::Sp(SpError::RequestUnsupportedForComponent))
    );
    assert_eq!(attach(&mut a).await, Ok(SpResponse::SerialConsoleAttachAck));
    assert_eq!(sp.console_attached(), Some(a.addr()));
    // A second attach is refused, from another gateway and from the same.
    let refused = Err(RpcError::Sp(SpError::SerialConsoleAlreadyAttached));
    assert_eq!(attach(&mut b).await, refused);
    assert_eq!(attach(&mut a).await, refused);
    // Only the attached gateway may write, keep alive or break.
    let not = Err(RpcError::Sp(SpError::SerialConsoleNotAttached));
    assert_eq!(
        b.rpc(MgsRequest::SerialConsoleWrite { offset: 0 }, b"x")
            .await
            .map(|r| r.0),
        not
    );
    assert_eq!(
        b.rpc(MgsRequest::SerialConsoleKeepAlive, &[])
            .await
            .map(|r| r.0),
        not
    );
    assert_eq!(
        b.rpc(MgsRequest::SerialConsoleBreak, &[])
            .await
            .map(|r| r.0),
        not
    );
    assert_eq!(
        a.rpc(MgsRequest::SerialConsoleKeepAlive, &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::SerialConsoleKeepAliveAck)
    );
    for _ in 0..2 {
        assert_eq!(
            a.rpc(MgsRequest::SerialConsoleBreak, &[])
                .await
                .map(|r| r.0),
            Ok(SpResponse::SerialConsoleBreakAck)
        );
    }
    assert_eq!(sp.console_breaks(), 2);
    // Detach is accepted from anyone, attached or not.
    assert_eq!(
        b.rpc(MgsRequest::SerialConsoleDetach, &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::SerialConsoleDetachAck)
    );
    assert_eq!(sp.console_attached(), None);
    assert_eq!(
        b.rpc(MgsRequest::SerialConsoleDetach, &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::SerialConsoleDetachAck)
    );
    assert_eq!(
        a.rpc(MgsRequest::SerialConsoleKeepAlive, &[])
            .await
            .map(|r| r.0),
        not
    );
    assert_eq!(attach(&mut b).await, Ok(SpResponse::SerialConsoleAttachAck));

    // A switch has no console.
    let mut s = Gateway::new(rack.sps[1].addr).await;
    assert_eq!(
        attach(&mut s).await,
        Err(RpcError::Sp(SpError::RequestUnsupportedForSp))
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_out_in_packets_of_at_most_990_bytes_with_increasing_offsets() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    // What the host printed before anyone attached is not sent.
    sp.inject_host_output(b"before attach\r\n");
    attach(&mut g).await.unwrap();
    let text: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    sp.inject_host_output(&text);
    let got = collect(&mut g, text.len(), Duration::from_secs(5)).await;
    let mut next = 0;
    let mut all = Vec::new();
    for (offset, data) in &got {
        assert_eq!(*offset, next, "offsets are contiguous");
        assert!(data.len() <= sp_sim::console::MAX_PACKET_DATA);
        next += data.len() as u64;
        all.extend_from_slice(data);
    }
    assert!(
        all == text,
        "{} bytes received of {}",
        all.len(),
        text.len()
    );
    assert!(got.len() >= 6, "{} packets", got.len());
    assert!(sp.console_output().ends_with(&text));
    assert!(sp.console_stats().dropped_unattached > 0);
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_taken_up_to_the_buffer_and_resent_from_the_ingested_offset() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    attach(&mut g).await.unwrap();
    let data: Vec<u8> = (0..2000u32).map(|i| b'0' + (i % 10) as u8).collect();
    let write = |offset: u64| MgsRequest::SerialConsoleWrite { offset };
    let acked = |r: Result<(SpResponse, Vec<u8>), RpcError>| match r {
        Ok((
            SpResponse::SerialConsoleWriteAck {
                furthest_ingested_offset,
            },
            _,
        )) => furthest_ingested_offset,
        other => panic!("{other:?}"),
    };

    sp.hold_console_input(true);
    assert_eq!(acked(g.rpc(write(0), &data[..1000]).await), 1000);
    // The 1024-byte buffer holds 1000: only 24 more are taken.
    assert_eq!(acked(g.rpc(write(1000), &data[1000..]).await), 1024);
    // A duplicate of what was taken is skipped (answered with its end).
    assert_eq!(acked(g.rpc(write(0), &data[..1000]).await), 1000);
    sp.hold_console_input(false);
    assert!(wait_for(Duration::from_secs(5), || sp.console_input().len() == 1024).await);
    assert_eq!(acked(g.rpc(write(1024), &data[1024..]).await), 2000);
    assert!(wait_for(Duration::from_secs(5), || sp.console_input().len() == 2000).await);
    assert!(sp.console_input() == data);

    // The host echoes what it reads, turning CR into CR LF.
    assert_eq!(acked(g.rpc(write(2000), b"uname\r").await), 2006);
    let echoed = wait_for(Duration::from_secs(5), || {
        sp.console_output().windows(7).any(|w| w == b"uname\r\n")
    })
    .await;
    assert!(echoed);
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_packets_are_lost_duplicated_and_reordered_by_the_faults() {
    let mut cfg = rack(1, 0, 0);
    cfg.faults = FaultConfig {
        drop_response: 0.15,
        duplicate_response: 0.15,
        reorder: 0.2,
        reorder_delay_ms: 30,
        ..FaultConfig::default()
    };
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    g.timeout = Duration::from_millis(40);
    attach(&mut g).await.unwrap();
    let text: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    sp.inject_host_output(&text);
    // Everything sent has arrived (or been lost) well within a second.
    let got = collect(&mut g, usize::MAX, Duration::from_millis(1500)).await;
    let mut by_offset: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut duplicates, mut out_of_order, mut last) = (0, 0, None);
    for (offset, data) in got {
        let start = offset as usize;
        assert!(
            text[start..start + data.len()] == data[..],
            "bytes at {offset}"
        );
        if last.is_some_and(|l| offset < l) {
            out_of_order += 1;
        }
        last = Some(offset);
        if by_offset.insert(offset, data).is_some() {
            duplicates += 1;
        }
    }
    let received: usize = by_offset.values().map(Vec::len).sum();
    assert!(
        duplicates > 0 && out_of_order > 0,
        "{duplicates} {out_of_order}"
    );
    assert!(received < text.len(), "some packets were lost");
    let stats = sp.fault_stats();
    assert!(
        stats.sp_requests >= 41 && stats.responses_dropped > 0,
        "{stats:?}"
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_the_attachment_and_the_host_boots_again() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    attach(&mut g).await.unwrap();
    let boots = sp.console_stats().boots;
    sp.reset_now();
    assert_eq!(sp.console_attached(), None);
    assert_eq!(sp.console_stats().boots, boots + 1);
    assert_eq!(
        g.rpc(MgsRequest::SerialConsoleKeepAlive, &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::SerialConsoleNotAttached))
    );
    assert_eq!(attach(&mut g).await, Ok(SpResponse::SerialConsoleAttachAck));
    let banner = String::from_utf8_lossy(&sp.console_output())
        .matches("boot ")
        .count();
    assert_eq!(banner, 2, "a banner per boot");
    rack.stop().await;
}
