//! The ceiling for any gateway: how many request/ack exchanges per second
//! plain UDP sockets manage on loopback, with nothing but an echo behind
//! them. Compare the gateway's and the simulator's chunk rates with this.
//!
//! An echo thread answers every request datagram with a `reply_len`-byte
//! datagram that starts with the request's sequence number. The client keeps
//! `window` requests outstanding, in order: it sends until the oldest
//! unanswered request is `window` behind, then blocks on a receive. A
//! receive that times out means every unanswered request in the window was
//! lost (request or reply); those are resent and counted in
//! [`RawRate::lost`], so loss slows the measurement down but cannot hang it.
//!
//! Depends only on `std`, so it can be checked on its own.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of an `UpdateChunk` datagram that are not image data (header, kind,
/// request tag and the chunk's fields): a 1024-byte request carries 978.
pub const CHUNK_OVERHEAD: usize = 46;

/// Shortest request or reply: room for the sequence number.
pub const MIN_DATAGRAM: usize = 8;

/// Largest UDP payload over IPv4 (IPv6 loopback allows more; keep one rule).
pub const MAX_DATAGRAM: usize = 65_507;

/// Unanswered for this long means lost; loopback answers in microseconds.
const LOSS_TIMEOUT: Duration = Duration::from_millis(200);

/// How often the echo thread looks whether it should stop.
const ECHO_POLL: Duration = Duration::from_millis(20);

/// Result of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawRate {
    /// From the first request sent to the last one answered.
    pub seconds: f64,
    /// Requests answered per second.
    pub per_second: f64,
    /// Image data per second, in MiB, counting each request as an
    /// `UpdateChunk`: [`RawRate::payload_bytes`] per request.
    pub mib_per_second: f64,
    /// What one request counted as data: `request_len - CHUNK_OVERHEAD`
    /// (978 for a full 1024-byte chunk datagram).
    pub payload_bytes: usize,
    /// Requests resent because neither they nor their reply arrived within
    /// the loss timeout (0 on a healthy loopback).
    pub lost: u64,
}

/// Measure `requests` exchanges of a `request_len`-byte request and a
/// `reply_len`-byte reply with `window` requests in flight, over loopback
/// (`[::1]`, or `127.0.0.1` where IPv6 is unavailable).
///
/// Lengths are clamped to `MIN_DATAGRAM..=MAX_DATAGRAM` and `window` to at
/// least 1.
///
/// # Panics
///
/// If loopback sockets cannot be bound or used.
pub fn request_ack_rate(
    window: usize,
    request_len: usize,
    reply_len: usize,
    requests: usize,
) -> RawRate {
    run(
        window,
        request_len,
        reply_len,
        requests,
        &Setup {
            loss_timeout: LOSS_TIMEOUT,
            echo_drops_every: None,
        },
    )
    .0
}

/// Knobs the tests turn.
struct Setup {
    loss_timeout: Duration,
    /// The echo ignores every n-th datagram it receives.
    echo_drops_every: Option<u64>,
}

/// The measurement, and how many datagrams the echo dropped on purpose.
fn run(
    window: usize,
    request_len: usize,
    reply_len: usize,
    requests: usize,
    setup: &Setup,
) -> (RawRate, u64) {
    let window = window.max(1);
    let request_len = request_len.clamp(MIN_DATAGRAM, MAX_DATAGRAM);
    let reply_len = reply_len.clamp(MIN_DATAGRAM, MAX_DATAGRAM);

    let (server, client) = socket_pair().expect("bind a loopback socket pair");
    let server_addr = server.local_addr().expect("echo address");
    let done = Arc::new(AtomicBool::new(false));
    let echo = spawn_echo(server, reply_len, setup.echo_drops_every, done.clone());
    client.connect(server_addr).expect("connect to the echo");
    client
        .set_read_timeout(Some(setup.loss_timeout))
        .expect("set a receive timeout");

    let mut request = vec![0u8; request_len];
    let mut reply = vec![0u8; MAX_DATAGRAM + 1];
    // Sequence numbers `oldest..next` are outstanding; `answered[i]` is for
    // `oldest + i`.
    let mut answered = std::collections::VecDeque::with_capacity(window);
    let (mut oldest, mut next, mut lost) = (0u64, 0u64, 0u64);
    let total = requests as u64;
    let send = |seq: u64, request: &mut [u8]| {
        request[..8].copy_from_slice(&seq.to_le_bytes());
        client.send(request).expect("send a request");
    };

    let start = Instant::now();
    while oldest < total {
        while next < total && next - oldest < window as u64 {
            send(next, &mut request);
            answered.push_back(false);
            next += 1;
        }
        match client.recv(&mut reply) {
            Ok(n) if n >= 8 => {
                let seq = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
                // Late duplicates of what was already answered are ignored.
                if seq >= oldest && seq < next {
                    answered[(seq - oldest) as usize] = true;
                }
                while answered.front() == Some(&true) {
                    answered.pop_front();
                    oldest += 1;
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                for (i, ok) in answered.iter().enumerate() {
                    if !ok {
                        send(oldest + i as u64, &mut request);
                        lost += 1;
                    }
                }
            }
            Err(e) => panic!("receive a reply: {e}"),
        }
    }
    // Never zero, so the rates stay finite even for zero requests.
    let seconds = start.elapsed().as_secs_f64().max(1e-9);

    done.store(true, Ordering::Relaxed);
    let dropped = echo.join().expect("echo thread");
    let payload_bytes = request_len.saturating_sub(CHUNK_OVERHEAD);
    let per_second = requests as f64 / seconds;
    let rate = RawRate {
        seconds,
        per_second,
        mib_per_second: per_second * payload_bytes as f64 / (1024.0 * 1024.0),
        payload_bytes,
        lost,
    };
    (rate, dropped)
}

fn is_timeout(e: &std::io::Error) -> bool {
    // Unix reports an expired read timeout as WouldBlock, Windows as TimedOut.
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Two sockets on the same loopback address: echo side, client side.
fn socket_pair() -> std::io::Result<(UdpSocket, UdpSocket)> {
    let v6: SocketAddr = (Ipv6Addr::LOCALHOST, 0).into();
    let v4: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    let pair = |addr| Ok((UdpSocket::bind(addr)?, UdpSocket::bind(addr)?));
    pair(v6).or_else(|_: std::io::Error| pair(v4))
}

/// Answer every datagram until `done`; returns how many it dropped.
fn spawn_echo(
    socket: UdpSocket,
    reply_len: usize,
    drops_every: Option<u64>,
    done: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        socket
            .set_read_timeout(Some(ECHO_POLL))
            .expect("set the echo's receive timeout");
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut reply = vec![0u8; reply_len];
        let (mut received, mut dropped) = (0u64, 0u64);
        while !done.load(Ordering::Relaxed) {
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => panic!("echo receive: {e}"),
            };
            received += 1;
            if drops_every.is_some_and(|every| received % every == 0) {
                dropped += 1;
                continue;
            }
            let seq = n.min(8);
            reply[..seq].copy_from_slice(&buf[..seq]);
            // A failed reply is a lost one; the client resends.
            let _ = socket.send_to(&reply, from);
        }
        dropped
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_answered_at_each_window() {
        for window in 1..=3 {
            let r = request_ack_rate(window, 1024, 40, 300);
            assert!(r.seconds > 0.0 && r.per_second > 0.0, "{r:?}");
            assert_eq!(r.payload_bytes, 978);
            let mib = r.per_second * 978.0 / (1024.0 * 1024.0);
            assert!((r.mib_per_second - mib).abs() < 1e-9, "{r:?}");
        }
    }

    #[test]
    fn lost_requests_are_resent_and_counted() {
        let setup = Setup {
            loss_timeout: Duration::from_millis(50),
            echo_drops_every: Some(10),
        };
        let (r, dropped) = run(3, 64, 16, 100, &setup);
        // 100 requests plus their resends make at least 11 drops.
        assert!(dropped >= 11, "{dropped}");
        // Each drop leaves a request unanswered: one resend each (more only
        // if the machine stalled past the timeout).
        assert!(r.lost >= dropped, "{r:?}, {dropped} dropped");
    }

    #[test]
    fn tiny_lengths_still_carry_the_sequence_number() {
        let r = request_ack_rate(0, 0, 0, 20);
        assert_eq!(r.payload_bytes, 0);
        assert_eq!(r.mib_per_second, 0.0);
    }
}
