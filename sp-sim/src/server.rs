//! One simulated SP on the network: its UDP socket, a receive queue of a
//! few datagrams (real SPs queue 3; bursts beyond it are lost), and a loop
//! that only moves bytes — decisions are `gateway-messages`' dispatcher and
//! the [`Device`]'s.

use crate::device::Device;
use crate::faults::Faults;
use gateway_messages::sp_impl::handle_request;
use gateway_messages::{
    version, Header, Message, MessageKind, SpError, SpResponse, MAX_SERIALIZED_SIZE,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, Instrument};

/// State shared between an SP's server tasks and its library handle.
#[derive(Debug)]
pub struct Shared {
    /// The device model.
    pub device: Mutex<Device>,
    /// Fault injection.
    pub faults: Mutex<Faults>,
    /// SP is rebooting (silent) until then.
    pub down_until: Mutex<Option<Instant>>,
}

impl Shared {
    /// Reboot now: state lost, silent for the configured reset time.
    pub fn reset_now(&self) {
        let now = Instant::now();
        let mut dev = self.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.reboot(now);
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + dev.reset_time());
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .resets += 1;
    }

    fn down(&self, now: Instant) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| now < t);
        down || self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hung(now)
    }
}

/// Serve `socket` until `stop` turns true.
pub async fn serve(
    socket: UdpSocket,
    shared: Arc<Shared>,
    queue_depth: usize,
    mut stop: watch::Receiver<bool>,
    name: String,
) {
    let socket = Arc::new(socket);
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, SocketAddr)>(queue_depth.max(1));
    let span = tracing::info_span!("sp", sp = %name);

    // Reader: the NIC side. Applies request-path faults and the small queue.
    let reader = {
        let (socket, shared) = (socket.clone(), shared.clone());
        async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let copies = {
                    let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
                    f.stats.received += 1;
                    let (drop, dup) = (f.config.drop_request, f.config.duplicate_request);
                    if f.roll(drop) {
                        f.stats.requests_dropped += 1;
                        0
                    } else if f.roll(dup) {
                        f.stats.requests_duplicated += 1;
                        2
                    } else {
                        1
                    }
                };
                for _ in 0..copies {
                    if tx.try_send((buf[..n].to_vec(), from)).is_err() {
                        let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
                        f.stats.queue_overflows += 1;
                    }
                }
            }
        }
    };

    // Processor: the firmware's task, one request at a time.
    let processor = {
        let (socket, shared) = (socket.clone(), shared.clone());
        async move {
            let mut out = [0u8; MAX_SERIALIZED_SIZE];
            let mut busy_until = Instant::now();
            while let Some((request, from)) = rx.recv().await {
                let now = Instant::now();
                if shared.down(now) {
                    shared
                        .faults
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .stats
                        .ignored_while_down += 1;
                    continue;
                }
                let busy_injected = {
                    let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
                    let p = f.config.busy;
                    let hit = f.roll(p);
                    if hit {
                        f.stats.busy_injected += 1;
                    }
                    hit
                };
                let (mut reply_len, work, rebooting, completed) = if busy_injected {
                    (
                        busy_reply(&request, &mut out),
                        Default::default(),
                        false,
                        false,
                    )
                } else {
                    let mut dev = shared.device.lock().unwrap_or_else(|e| e.into_inner());
                    dev.now = now;
                    dev.busy = Default::default();
                    dev.rebooting = false;
                    dev.completed_update = false;
                    let n = handle_request(&request, &mut *dev, &mut out);
                    (n, dev.busy, dev.rebooting, dev.completed_update)
                };
                if completed {
                    let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
                    if f.config.drop_completion_ack {
                        f.stats.responses_dropped += 1;
                        reply_len = None;
                    }
                }
                debug!(bytes = request.len(), reply = ?reply_len, "request");
                if rebooting {
                    shared.reset_now();
                    continue;
                }
                if !work.is_zero() {
                    // The SP answers only after the flash work is done;
                    // meanwhile its queue fills up. Work is accounted
                    // exactly but slept in steps of at least 2 ms, since
                    // timers are coarser than one chunk's write.
                    busy_until = busy_until.max(now) + work;
                    if busy_until > Instant::now() + std::time::Duration::from_millis(2) {
                        tokio::time::sleep_until(busy_until).await;
                    }
                }
                if let Some(n) = reply_len {
                    send_reply(&socket, &shared, out[..n].to_vec(), from).await;
                }
            }
        }
    };

    let run = async {
        tokio::select! {
            _ = reader => {}
            _ = processor => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    };
    run.instrument(span).await;
}

/// `Busy` with the request's id (or nothing if the header is unreadable).
fn busy_reply(request: &[u8], out: &mut [u8; MAX_SERIALIZED_SIZE]) -> Option<usize> {
    let header = gateway_messages::decode_header(request).ok()?;
    let message = Message {
        header: Header {
            version: version::CURRENT,
            message_id: header.message_id,
        },
        kind: MessageKind::SpResponse(SpResponse::Error(SpError::Busy)),
    };
    gateway_messages::encode(out, &message, &[])
        .ok()
        .map(|(n, _)| n)
}

async fn send_reply(socket: &Arc<UdpSocket>, shared: &Shared, mut reply: Vec<u8>, to: SocketAddr) {
    let (copies, delay) = {
        let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        let (drop, dup, corrupt) = (
            f.config.drop_response,
            f.config.duplicate_response,
            f.config.corrupt_response,
        );
        if f.roll(drop) {
            f.stats.responses_dropped += 1;
            return;
        }
        if f.roll(corrupt) {
            f.stats.responses_corrupted += 1;
            f.corrupt(&mut reply);
        }
        let copies = if f.roll(dup) {
            f.stats.responses_duplicated += 1;
            2
        } else {
            1
        };
        (copies, f.response_delay())
    };
    if delay.is_zero() {
        for _ in 0..copies {
            let _ = socket.send_to(&reply, to).await;
        }
    } else {
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..copies {
                let _ = socket.send_to(&reply, to).await;
            }
        });
    }
}
