//! One simulated SP on the network: its UDP socket, a receive queue of a
//! few datagrams (real SPs queue 3; bursts beyond it are lost), and a loop
//! that only moves bytes — decisions are `gateway-messages`' dispatcher and
//! the [`Device`]'s.
//!
//! The loop is a single task, like the SP firmware's: it drains the socket
//! without blocking into a fixed ring of `queue_depth` buffers (what does
//! not fit is dropped), then answers the queued requests one at a time, in
//! order. While the SP is busy with flash work it keeps draining, so what
//! arrives meanwhile meets the same queue limit. On the normal path nothing
//! is allocated per datagram.
//!
//! Besides datagrams the loop wakes when the device has something of its
//! own to send (console output, a phase-2 request or its retry:
//! [`Device::next_wake`]) and when ignition switches the SP's power. An SP
//! without power drops everything and sends nothing; power back makes it
//! boot (silent for the reset time, RAM state gone).

use crate::device::{Device, Quirks};
use crate::faults::Faults;
use crate::ignition::TargetPower;
use gateway_messages::sp_impl::handle_request;
use gateway_messages::{
    version, Header, Message, MessageKind, SpError, SpResponse, MAX_SERIALIZED_SIZE,
};
use std::io::ErrorKind;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};
use tracing::{debug, Instrument};

/// Receive buffer per queued datagram. Larger than the SP's 1024 bytes so
/// an over-long datagram reaches the dispatcher whole, as it always did.
const RECV_BUF: usize = 2048;

/// At most this many datagrams per drain, so a flood cannot keep the loop
/// from answering (or from noticing `stop`).
const DRAIN_BATCH: usize = 64;

/// Flash work shorter than this is owed rather than slept: timers are
/// coarser than one chunk's write.
const MIN_SLEEP: Duration = Duration::from_millis(2);

/// State shared between an SP's server task and its library handle.
#[derive(Debug)]
pub struct Shared {
    /// The device model.
    pub device: Mutex<Device>,
    /// Fault injection.
    pub faults: Mutex<Faults>,
    /// SP is rebooting (silent) until then.
    pub down_until: Mutex<Option<Instant>>,
    /// The power ignition gives the SP.
    pub power: Arc<TargetPower>,
}

impl Shared {
    /// Reboot now: state lost, silent for the configured reset time.
    pub fn reset_now(&self) {
        let now = Instant::now();
        let fails = self.faults().config.new_image_fails_boot;
        let silent = self
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reboot(now, fails);
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + silent);
        self.faults().stats.resets += 1;
    }

    /// A reset watchdog that expired resets the SP (seen lazily, when a
    /// datagram arrives: nothing else could tell).
    fn poll_watchdog(&self, now: Instant) {
        let back = self
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll_watchdog(now);
        if let Some(back) = back {
            *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(back);
            self.faults().stats.resets += 1;
        }
    }

    /// Power came back: boot now. Returns whether it did.
    fn boot_if_powered_on(&self, now: Instant) -> bool {
        if !self.power.take_boot() {
            return false;
        }
        let silent = self
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .power_on_boot(now);
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + silent);
        self.faults().stats.resets += 1;
        true
    }

    /// Whether the SP can send now (powered, not resetting, not hung).
    fn can_send(&self, now: Instant) -> bool {
        self.power.is_on() && !self.resetting(now) && !self.faults().hung(now)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resetting(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| now < t)
    }
}

/// One queued datagram.
struct Slot {
    buf: [u8; RECV_BUF],
    len: usize,
    from: SocketAddr,
    /// When it was taken off the socket: the SP's work on it starts then,
    /// or when the work before it ends, whichever is later.
    arrived: Instant,
}

/// The SP's socket receive queue: a fixed ring, allocated once.
struct Queue {
    slots: Box<[Slot]>,
    head: usize,
    len: usize,
    /// Where datagrams that do not fit are read to be discarded.
    scratch: [u8; RECV_BUF],
}

impl Queue {
    fn new(depth: usize) -> Self {
        let empty = || Slot {
            buf: [0; RECV_BUF],
            len: 0,
            from: (Ipv6Addr::UNSPECIFIED, 0).into(),
            arrived: Instant::now(),
        };
        Self {
            slots: (0..depth.max(1)).map(|_| empty()).collect(),
            head: 0,
            len: 0,
            scratch: [0; RECV_BUF],
        }
    }

    fn is_full(&self) -> bool {
        self.len == self.slots.len()
    }

    fn tail(&self) -> usize {
        (self.head + self.len) % self.slots.len()
    }

    /// Queue the slot at the tail, which the caller has just filled.
    fn commit(&mut self, len: usize, from: SocketAddr, arrived: Instant) {
        let tail = self.tail();
        self.slots[tail].len = len;
        self.slots[tail].from = from;
        self.slots[tail].arrived = arrived;
        self.len += 1;
    }

    /// Queue a second copy of the datagram queued last (which exists).
    fn duplicate_last(&mut self) {
        let last = (self.head + self.len - 1) % self.slots.len();
        let tail = self.tail();
        let (len, from, arrived) = {
            let last = &self.slots[last];
            (last.len, last.from, last.arrived)
        };
        let copy = self.slots[last].buf;
        self.slots[tail].buf[..len].copy_from_slice(&copy[..len]);
        self.commit(len, from, arrived);
    }

    /// Take the oldest datagram: its slot index. The slot stays intact
    /// until the next drain, which only happens once it has been handled.
    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        Some(i)
    }

    /// Read everything waiting on `socket` without blocking, applying the
    /// request-path faults; what finds the queue full is dropped.
    fn drain(&mut self, socket: &UdpSocket, shared: &Shared) {
        for _ in 0..DRAIN_BATCH {
            let target = if self.is_full() {
                &mut self.scratch
            } else {
                let tail = self.tail();
                &mut self.slots[tail].buf
            };
            let (n, from) = match socket.try_recv_from(target) {
                Ok(received) => received,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // A pending socket error (an ICMP report, say) is consumed
                // by reporting it; the datagrams behind it are still there.
                Err(_) => continue,
            };
            let mut f = shared.faults();
            f.stats.received += 1;
            let (drop, dup) = (f.config.drop_request, f.config.duplicate_request);
            let copies = if f.roll(drop) {
                f.stats.requests_dropped += 1;
                0
            } else if f.roll(dup) {
                f.stats.requests_duplicated += 1;
                2
            } else {
                1
            };
            for copy in 0..copies {
                if self.is_full() {
                    f.stats.queue_overflows += 1;
                } else if copy == 0 {
                    self.commit(n, from, Instant::now());
                } else {
                    self.duplicate_last();
                }
            }
        }
    }
}

/// What handling one request produced.
struct Handled {
    reply_len: Option<usize>,
    work: Duration,
    rebooting: bool,
}

/// Serve `socket` until `stop` turns true (or its sender is gone).
pub async fn serve(
    socket: UdpSocket,
    shared: Arc<Shared>,
    queue_depth: usize,
    mut stop: watch::Receiver<bool>,
    name: String,
) {
    let span = tracing::info_span!("sp", sp = %name);
    // The loop awaits only at the socket, the flash-work timer and the
    // coop budget; stopping drops it at whichever it is at.
    let run = async move {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {}
            () = run_sp(socket, &shared, queue_depth) => {}
        }
    };
    run.instrument(span).await;
}

/// The SP's firmware loop. Returns only if the runtime's I/O driver is gone.
async fn run_sp(socket: UdpSocket, shared: &Shared, queue_depth: usize) {
    // Shared only with the rare delayed replies.
    let socket = Arc::new(socket);
    let mut queue = Queue::new(queue_depth);
    let mut out = [0u8; MAX_SERIALIZED_SIZE];
    let mut busy_until = Instant::now();
    let mut own = [0u8; MAX_SERIALIZED_SIZE];
    loop {
        if queue.len == 0 {
            let wake = next_wake(shared);
            tokio::select! {
                ready = socket.readable() => {
                    if ready.is_err() {
                        return;
                    }
                }
                () = sleep_until(wake) => {}
                () = shared.power.changed.notified() => {}
            }
            shared.boot_if_powered_on(Instant::now());
            send_own(&socket, shared, &mut own).await;
        } else {
            // Non-blocking socket calls never yield: under a flood, let
            // the other SPs on this runtime (and `stop`) have a turn.
            tokio::task::consume_budget().await;
        }
        queue.drain(&socket, shared);
        let Some(i) = queue.pop() else { continue };
        let now = Instant::now();
        let (from, arrived, handled) = {
            let slot = &queue.slots[i];
            (
                slot.from,
                slot.arrived,
                handle(shared, &slot.buf[..slot.len], slot.from, now, &mut out),
            )
        };
        let Some(handled) = handled else { continue };
        if handled.rebooting {
            shared.reset_now();
            continue;
        }
        if !handled.work.is_zero() {
            // The SP answers only after the flash work is done; the work
            // is accounted exactly but slept in coarse steps. A request
            // that waited in the queue starts when the one before it ended
            // (not when a late timer woke us), so timer slack costs the SP
            // nothing it would not lose on real hardware.
            busy_until = busy_until.max(arrived) + handled.work;
            if busy_until > Instant::now() + MIN_SLEEP {
                let sleep = tokio::time::sleep_until(busy_until);
                tokio::pin!(sleep);
                // What arrives meanwhile meets the queue (with this request
                // already taken out of it) as it arrives.
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut sleep => break,
                        ready = socket.readable() => {
                            if ready.is_err() {
                                return;
                            }
                            queue.drain(&socket, shared);
                        }
                    }
                }
                queue.drain(&socket, shared);
            }
        }
        if let Some(n) = handled.reply_len {
            send_reply(&socket, shared, &mut out[..n], from).await;
        }
        send_own(&socket, shared, &mut own).await;
    }
}

/// When the device next wants to send on its own (far off if never).
/// When the SP next has something of its own to do (`None`: not until a
/// request or a power change comes): no timer per datagram when nothing
/// is due.
fn next_wake(shared: &Shared) -> Option<Instant> {
    if !shared.power.is_on() {
        return None;
    }
    let wake = shared
        .device
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .next_wake()?;
    // While resetting, wake when the reset ends.
    let down = *shared.down_until.lock().unwrap_or_else(|e| e.into_inner());
    Some(down.map_or(wake, |d| wake.max(d)))
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// At most this many SP-initiated packets per turn of the loop.
const OWN_BATCH: usize = 16;

/// Send what the device wants to send on its own, with the response-path
/// faults.
async fn send_own(socket: &Arc<UdpSocket>, shared: &Shared, buf: &mut [u8; MAX_SERIALIZED_SIZE]) {
    for _ in 0..OWN_BATCH {
        // Most turns: nothing due, and no more locks taken to find out.
        let due = shared
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_wake();
        let now = Instant::now();
        if due.is_none_or(|t| t > now) || !shared.can_send(now) {
            return;
        }
        let next = shared
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll_outgoing(now, buf);
        let Some((n, to)) = next else { return };
        shared.faults().stats.sp_requests += 1;
        send_reply(socket, shared, &mut buf[..n], to).await;
    }
}

/// Handle one request into `out`, with the SP-side faults. `None` when the
/// SP is down and ignores it.
fn handle(
    shared: &Shared,
    request: &[u8],
    from: SocketAddr,
    now: Instant,
    out: &mut [u8; MAX_SERIALIZED_SIZE],
) -> Option<Handled> {
    shared.boot_if_powered_on(now);
    if !shared.power.is_on() {
        shared.faults().stats.ignored_while_off += 1;
        return None;
    }
    shared.poll_watchdog(now);
    let resetting = shared.resetting(now);
    let busy_injected = {
        let mut f = shared.faults();
        if resetting || f.hung(now) {
            f.stats.ignored_while_down += 1;
            return None;
        }
        let p = f.config.busy;
        let hit = f.roll(p);
        if hit {
            f.stats.busy_injected += 1;
        }
        hit
    };
    if busy_injected {
        return Some(Handled {
            reply_len: busy_reply(request, out),
            work: Duration::ZERO,
            rebooting: false,
        });
    }
    let (quirks, sensor_faults) = {
        let f = shared.faults();
        let quirks = Quirks {
            hash_written_bytes: f.config.hash_written_bytes,
            archive_id_unchanged: f.config.archive_id_unchanged,
        };
        (quirks, f.config.sensor_errors.clone())
    };
    let (mut reply_len, work, rebooting, completed, prepared, disabled) = {
        let mut dev = shared.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.now = now;
        dev.peer = Some(from);
        dev.last_mgs = Some(from);
        dev.quirks = quirks;
        dev.apply_sensor_faults(&sensor_faults, now);
        dev.busy = Duration::ZERO;
        dev.rebooting = false;
        dev.completed_update = false;
        dev.accepted_prepare = false;
        dev.disabled_watchdog = false;
        dev.reset_prepare_seen = false;
        let n = handle_request(request, &mut *dev, out);
        if dev.reset_prepare_seen && shared.faults().config.forget_reset_prepares {
            dev.forget_reset_prepare();
        }
        (
            n,
            dev.busy,
            dev.rebooting,
            dev.completed_update,
            dev.accepted_prepare,
            dev.disabled_watchdog,
        )
    };
    if prepared {
        shared.faults().stats.prepares += 1;
    }
    if disabled && reply_len.is_some() {
        let mut f = shared.faults();
        if f.config.drop_watchdog_disable_acks > 0 {
            f.config.drop_watchdog_disable_acks -= 1;
            f.stats.responses_dropped += 1;
            reply_len = None;
        }
    }
    if (completed || prepared) && reply_len.is_some() {
        let mut f = shared.faults();
        if completed && f.config.drop_completion_ack {
            f.stats.responses_dropped += 1;
            reply_len = None;
        } else if prepared && f.config.drop_prepare_acks > 0 {
            f.config.drop_prepare_acks -= 1;
            f.stats.responses_dropped += 1;
            f.stats.prepare_acks_dropped += 1;
            reply_len = None;
        }
    }
    debug!(bytes = request.len(), reply = ?reply_len, "request");
    Some(Handled {
        reply_len,
        work,
        rebooting,
    })
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

/// Send `reply` with the response-path faults. Delayed replies are copied
/// and sent from their own task.
async fn send_reply(socket: &Arc<UdpSocket>, shared: &Shared, reply: &mut [u8], to: SocketAddr) {
    let (copies, delay) = {
        let mut f = shared.faults();
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
            f.corrupt(reply);
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
            send_now(socket, reply, to).await;
        }
    } else {
        let (socket, reply) = (socket.clone(), reply.to_vec());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..copies {
                let _ = socket.send_to(&reply, to).await;
            }
        });
    }
}

/// Send one datagram, waiting for the socket only if its buffer is full.
/// Errors are ignored, as a real SP's lost transmissions are.
async fn send_now(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    loop {
        match socket.try_send_to(datagram, to) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => return,
        }
        if socket.writable().await.is_err() {
            return;
        }
    }
}
