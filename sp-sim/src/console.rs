//! A sled's host serial console (`sp3-host-cpu`) as the SP firmware proxies
//! it between its UART and one attached gateway, with a simulated host on
//! the far side of the UART. A plain state machine: callers pass `now` and
//! take the packets it wants to send.
//!
//! What the firmware does, and so what this models:
//! - One gateway address at a time. A second attach, from anyone and even
//!   from the same address, is refused with `SerialConsoleAlreadyAttached`;
//!   write, keep-alive and break from any other address get
//!   `SerialConsoleNotAttached`; detach is accepted from anyone, attached or
//!   not. Attaching restarts both byte offsets at 0. Only
//!   `sp3-host-cpu` can be attached (`RequestUnsupportedForComponent`).
//! - Keep-alive: every attach, write, break and keep-alive from the
//!   attached gateway counts as hearing from it. The SP drops an attachment
//!   it has not heard from for the idle timeout (20 s), but only notices when
//!   it has output to send: a stale attachment with a silent host still
//!   refuses a new attach.
//! - Host output goes through a 4096-byte buffer. It is sent once 1024 bytes
//!   wait or the oldest waiting byte is 500 ms old, in `SpRequest::
//!   SerialConsole{component, offset}` packets of at most
//!   [`MAX_PACKET_DATA`] bytes, `offset` being the console offset of the
//!   first byte; nothing is acknowledged or resent. Output produced while
//!   nobody is attached is dropped, not buffered. Should the buffer overflow,
//!   the oldest bytes are dropped and the offset skips over them (a gap the
//!   gateway sees); with a gateway attached the SP drains faster than the
//!   UART fills, so in this model the UART never brings more than fits and
//!   nothing is lost.
//! - Writes: data before the SP's ingested offset is a duplicate and is
//!   skipped (a write entirely behind it is answered with its own end
//!   offset, as the firmware does); a write starting past the ingested
//!   offset is not refused: the firmware appends it as if it were contiguous
//!   and moves the offset to its end. At most what fits in the 1024-byte
//!   input buffer is taken; the reply carries the new ingested offset.
//!   The buffer drains into the host at the UART rate (3 Mbaud: 300 kB/s),
//!   unless the host holds its input (flow control, for tests).
//! - A reset loses all of it (RAM): the attachment ends without notice.

use gateway_messages::{
    encode, version, Header, Message, MessageKind, SerializedSize, SpComponent, SpError, SpRequest,
    MAX_SERIALIZED_SIZE,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::time::{Duration, Instant};

/// SP → gateway buffer (bytes).
pub const OUTPUT_BUFFER: usize = 4096;
/// Buffered bytes that make the SP send at once.
pub const FLUSH_WATERMARK: usize = MAX_SERIALIZED_SIZE;
/// Gateway → SP buffer (bytes): what one write can be taken into.
pub const INPUT_BUFFER: usize = MAX_SERIALIZED_SIZE;
/// Most console bytes in one `SerialConsole` packet (1024 − 34).
pub const MAX_PACKET_DATA: usize = MAX_SERIALIZED_SIZE - SERIAL_CONSOLE_MESSAGE_LEN;
/// Encoded size of a `SerialConsole` request without data.
const SERIAL_CONSOLE_MESSAGE_LEN: usize = 8 + 1 + 1 + SpComponent::MAX_SIZE + 8;
/// The host transcript kept for tests, at most (older bytes are dropped).
const TRANSCRIPT_LIMIT: usize = 8 * 1024 * 1024;
/// Periodic lines caught up in one step at most (a long pause skips ahead).
const MAX_LINES_PER_STEP: u32 = 64;

/// Console timings.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleConfig {
    /// Interval of the host's periodic lines; `None`: none.
    pub line_interval: Option<Duration>,
    /// Age of the oldest buffered byte that makes the SP send.
    pub flush_after: Duration,
    /// Silence after which the SP drops the attached gateway.
    pub idle_timeout: Duration,
    /// UART throughput in bytes/s; 0: unlimited.
    pub uart_bytes_per_s: u64,
}

/// The attached gateway.
#[derive(Debug, Clone, Copy)]
struct Attachment {
    peer: SocketAddr,
    last_heard: Instant,
}

/// What the console did (counters for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleStats {
    /// `SerialConsole` packets handed to the network.
    pub packets: u64,
    /// Console bytes in them.
    pub bytes_sent: u64,
    /// Host output dropped because nobody was attached.
    pub dropped_unattached: u64,
    /// Host output dropped because the buffer overflowed.
    pub dropped_overflow: u64,
    /// Attachments dropped for silence.
    pub idle_detaches: u64,
    /// Host boots (banners printed).
    pub boots: u64,
}

/// A UART direction's throughput, as credit that accrues with time.
#[derive(Debug, Clone, Copy)]
struct Uart {
    bytes_per_s: u64,
    /// Bytes may be moved as if the wire had been idle since then.
    since: Instant,
}

impl Uart {
    /// Bytes the wire can move by `now`, at most `want`; consumes them.
    fn take(&mut self, now: Instant, want: usize) -> usize {
        if self.bytes_per_s == 0 {
            return want;
        }
        let rate = self.bytes_per_s as f64;
        // An idle wire accrues at most one buffer's worth of credit.
        let cap = Duration::from_secs_f64(OUTPUT_BUFFER as f64 / rate);
        if now.saturating_duration_since(self.since) > cap {
            self.since = now - cap;
        }
        let credit = (now.saturating_duration_since(self.since).as_secs_f64() * rate) as usize;
        let n = credit.min(want);
        self.since += Duration::from_secs_f64(n as f64 / rate);
        n
    }

    /// When `bytes` more can move.
    fn ready_at(&self, bytes: usize) -> Instant {
        if self.bytes_per_s == 0 {
            return self.since;
        }
        self.since + Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64)
    }
}

/// The console of one sled.
#[derive(Debug)]
pub struct Console {
    cfg: ConsoleConfig,
    serial: String,
    attached: Option<Attachment>,
    /// SP → gateway buffer and the console offset of its first byte.
    out_buf: VecDeque<u8>,
    out_offset: u64,
    flush_deadline: Option<Instant>,
    /// Host output not yet through the UART.
    host_tx: VecDeque<u8>,
    uart_out: Uart,
    /// Gateway → SP buffer and the furthest offset ingested.
    in_buf: VecDeque<u8>,
    write_offset: u64,
    uart_in: Uart,
    input_held: bool,
    /// The host.
    host_running: bool,
    booted: Instant,
    next_line: Option<Instant>,
    lines: u64,
    transcript: VecDeque<u8>,
    input_received: Vec<u8>,
    breaks: u64,
    stats: ConsoleStats,
}

impl Console {
    /// A console whose host is off.
    pub fn new(cfg: ConsoleConfig, serial: &str, now: Instant) -> Self {
        let uart = Uart {
            bytes_per_s: cfg.uart_bytes_per_s,
            since: now,
        };
        Self {
            cfg,
            serial: serial.to_string(),
            attached: None,
            out_buf: VecDeque::new(),
            out_offset: 0,
            flush_deadline: None,
            host_tx: VecDeque::new(),
            uart_out: uart,
            in_buf: VecDeque::new(),
            write_offset: 0,
            uart_in: uart,
            input_held: false,
            host_running: false,
            booted: now,
            next_line: None,
            lines: 0,
            transcript: VecDeque::new(),
            input_received: Vec::new(),
            breaks: 0,
            stats: ConsoleStats::default(),
        }
    }

    fn check_sender(&mut self, peer: SocketAddr, now: Instant) -> Result<(), SpError> {
        match self.attached.as_mut() {
            Some(a) if a.peer == peer => {
                a.last_heard = now;
                Ok(())
            }
            _ => Err(SpError::SerialConsoleNotAttached),
        }
    }

    /// `SerialConsoleAttach` from `peer`.
    pub fn attach(
        &mut self,
        peer: SocketAddr,
        component: SpComponent,
        now: Instant,
    ) -> Result<(), SpError> {
        if component != SpComponent::SP3_HOST_CPU {
            return Err(SpError::RequestUnsupportedForComponent);
        }
        if self.attached.is_some() {
            return Err(SpError::SerialConsoleAlreadyAttached);
        }
        self.step(now);
        self.attached = Some(Attachment {
            peer,
            last_heard: now,
        });
        self.write_offset = 0;
        self.out_offset = 0;
        self.out_buf.clear();
        self.flush_deadline = None;
        Ok(())
    }

    /// `SerialConsoleDetach` (from anyone).
    pub fn detach(&mut self) {
        self.attached = None;
    }

    /// `SerialConsoleKeepAlive` from `peer`.
    pub fn keepalive(&mut self, peer: SocketAddr, now: Instant) -> Result<(), SpError> {
        self.check_sender(peer, now)
    }

    /// `SerialConsoleBreak` from `peer`: the host sees a break.
    pub fn send_break(&mut self, peer: SocketAddr, now: Instant) -> Result<(), SpError> {
        self.check_sender(peer, now)?;
        self.breaks += 1;
        Ok(())
    }

    /// `SerialConsoleWrite` of `data` at console input offset `offset`;
    /// returns the furthest offset ingested.
    pub fn write(
        &mut self,
        peer: SocketAddr,
        mut offset: u64,
        mut data: &[u8],
        now: Instant,
    ) -> Result<u64, SpError> {
        self.check_sender(peer, now)?;
        self.step(now);
        let len = data.len() as u64;
        if self.write_offset > offset {
            let skip = self.write_offset - offset;
            if skip >= len {
                return Ok(offset + len);
            }
            offset = self.write_offset;
            data = &data[skip as usize..];
        }
        // Bytes past offset u64::MAX have no offset: they are not taken,
        // as if the buffer were full.
        let addressable = usize::try_from(u64::MAX - offset).unwrap_or(usize::MAX);
        let take = (INPUT_BUFFER - self.in_buf.len())
            .min(data.len())
            .min(addressable);
        self.in_buf.extend(&data[..take]);
        self.write_offset = offset + take as u64;
        self.step(now);
        Ok(self.write_offset)
    }

    /// The host powers on (or reboots): it prints its banner.
    pub fn host_power_on(&mut self, now: Instant) {
        self.host_running = true;
        self.booted = now;
        self.stats.boots += 1;
        self.lines = 0;
        self.next_line = self.cfg.line_interval.map(|i| now + i);
        let banner = format!(
            "\r\nsp-sim host {}: boot {} (console on sp3-host-cpu)\r\n{} console login: ",
            self.serial, self.stats.boots, self.serial
        );
        self.host_print(banner.as_bytes());
    }

    /// The host loses power.
    pub fn host_power_off(&mut self) {
        self.host_running = false;
        self.next_line = None;
        self.host_tx.clear();
        self.in_buf.clear();
    }

    /// The SP rebooted: everything in SP RAM is gone.
    pub fn sp_reset(&mut self, now: Instant) {
        self.attached = None;
        self.out_buf.clear();
        self.out_offset = 0;
        self.flush_deadline = None;
        self.in_buf.clear();
        self.write_offset = 0;
        self.uart_out.since = now;
        self.uart_in.since = now;
    }

    /// Make the host print `bytes` (they go through the UART first).
    pub fn host_print(&mut self, bytes: &[u8]) {
        self.host_tx.extend(bytes);
        self.transcript.extend(bytes);
        let excess = self.transcript.len().saturating_sub(TRANSCRIPT_LIMIT);
        self.transcript.drain(..excess);
    }

    /// Hold (or release) the host's input: the input buffer stops draining.
    pub fn hold_input(&mut self, held: bool, now: Instant) {
        self.step(now);
        self.input_held = held;
        self.uart_in.since = now;
    }

    /// Let time pass: periodic lines, input drained into the host (which
    /// echoes it), host output through the UART into the SP's buffer.
    pub fn step(&mut self, now: Instant) {
        if let (true, Some(interval)) = (self.host_running, self.cfg.line_interval) {
            let mut caught_up = 0;
            while let Some(at) = self.next_line.filter(|&at| at <= now) {
                if caught_up == MAX_LINES_PER_STEP {
                    self.next_line = Some(now + interval);
                    break;
                }
                self.lines += 1;
                let uptime = at.saturating_duration_since(self.booted).as_millis();
                let line = format!(
                    "[{uptime:>9} ms] {}: periodic line {}\r\n",
                    self.serial, self.lines
                );
                self.host_print(line.as_bytes());
                self.next_line = Some(at + interval);
                caught_up += 1;
            }
        }
        if !self.input_held && self.host_running {
            let n = self.uart_in.take(now, self.in_buf.len());
            let got: Vec<u8> = self.in_buf.drain(..n).collect();
            self.input_received.extend_from_slice(&got);
            let mut echo = Vec::with_capacity(got.len());
            for b in got {
                if b == b'\r' {
                    echo.extend_from_slice(b"\r\n");
                } else {
                    echo.push(b);
                }
            }
            if !echo.is_empty() {
                self.host_print(&echo);
            }
        } else {
            self.uart_in.since = self.uart_in.since.max(now);
        }
        // The SP drains its buffer to the network far faster than the UART
        // fills it, so the UART never moves more than fits.
        let room = match self.attached {
            Some(_) => OUTPUT_BUFFER - self.out_buf.len(),
            None => usize::MAX,
        };
        let n = self.uart_out.take(now, self.host_tx.len().min(room));
        if n > 0 {
            let bytes: Vec<u8> = self.host_tx.drain(..n).collect();
            self.receive(&bytes, now);
        }
    }

    /// Bytes from the UART into the SP's buffer (dropped when nobody is
    /// attached; the oldest dropped on overflow).
    fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.attached.is_none() {
            self.stats.dropped_unattached += bytes.len() as u64;
            return;
        }
        self.out_buf.extend(bytes);
        let excess = self.out_buf.len().saturating_sub(OUTPUT_BUFFER);
        if excess > 0 {
            self.out_buf.drain(..excess);
            self.out_offset += excess as u64;
            self.stats.dropped_overflow += excess as u64;
        }
        if self.flush_deadline.is_none() && !self.out_buf.is_empty() {
            self.flush_deadline = Some(now + self.cfg.flush_after);
        }
    }

    /// The next `SerialConsole` packet to send (encoded into `out` with
    /// `message_id`) and where to, if one is due.
    pub fn poll_packet(
        &mut self,
        now: Instant,
        message_id: u32,
        out: &mut [u8; MAX_SERIALIZED_SIZE],
    ) -> Option<(usize, SocketAddr)> {
        self.step(now);
        let due =
            self.out_buf.len() >= FLUSH_WATERMARK || self.flush_deadline.is_some_and(|d| now >= d);
        if self.out_buf.is_empty() || !due {
            return None;
        }
        let attached = self.attached?;
        if now.saturating_duration_since(attached.last_heard) > self.cfg.idle_timeout {
            self.attached = None;
            self.stats.idle_detaches += 1;
            self.stats.dropped_unattached += self.out_buf.len() as u64;
            self.out_buf.clear();
            self.flush_deadline = None;
            return None;
        }
        let message = Message {
            header: Header {
                version: version::CURRENT,
                message_id,
            },
            kind: MessageKind::SpRequest(SpRequest::SerialConsole {
                component: SpComponent::SP3_HOST_CPU,
                offset: self.out_offset,
            }),
        };
        let take = self.out_buf.len().min(MAX_PACKET_DATA);
        let data: Vec<u8> = self.out_buf.drain(..take).collect();
        let (len, _) = encode(out, &message, &data).ok()?;
        self.out_offset += take as u64;
        self.stats.packets += 1;
        self.stats.bytes_sent += take as u64;
        self.flush_deadline = (!self.out_buf.is_empty()).then(|| now + self.cfg.flush_after);
        Some((len, attached.peer))
    }

    /// When something next happens without outside input.
    pub fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(t) = self.next_line.filter(|_| self.host_running) {
            at(t);
        }
        if !self.out_buf.is_empty() {
            if self.out_buf.len() >= FLUSH_WATERMARK {
                at(self.uart_out.since);
            } else if let Some(d) = self.flush_deadline {
                at(d);
            }
        }
        if !self.host_tx.is_empty() {
            at(self
                .uart_out
                .ready_at(self.host_tx.len().min(FLUSH_WATERMARK)));
        }
        if !self.in_buf.is_empty() && !self.input_held && self.host_running {
            at(self.uart_in.ready_at(self.in_buf.len()));
        }
        wake
    }

    /// The attached gateway.
    pub fn attached(&self) -> Option<SocketAddr> {
        self.attached.map(|a| a.peer)
    }

    /// Everything the host printed (banner, lines, echoes, injected output),
    /// attached or not.
    pub fn transcript(&self) -> Vec<u8> {
        self.transcript.iter().copied().collect()
    }

    /// Every byte the host received from the console.
    pub fn input_received(&self) -> &[u8] {
        &self.input_received
    }

    /// Breaks the host saw.
    pub fn breaks(&self) -> u64 {
        self.breaks
    }

    /// The furthest console input offset ingested.
    pub fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Counters.
    pub fn stats(&self) -> ConsoleStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(now: Instant) -> Console {
        let cfg = ConsoleConfig {
            line_interval: None,
            flush_after: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(20),
            uart_bytes_per_s: 0,
        };
        let mut c = Console::new(cfg, "BRM42220000", now);
        c.host_power_on(now);
        c
    }

    fn peer(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[test]
    fn packet_size_is_990_and_offsets_advance() {
        assert_eq!(MAX_PACKET_DATA, 990);
        let now = Instant::now();
        let mut c = console(now);
        c.attach(peer(1), SpComponent::SP3_HOST_CPU, now).unwrap();
        c.host_print(&[b'x'; 2000]);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let (n, to) = c.poll_packet(now, 1, &mut out).unwrap();
        assert_eq!((n, to), (MAX_SERIALIZED_SIZE, peer(1)));
        // 1010 bytes left are under the watermark: they wait for the timer.
        assert!(c.poll_packet(now, 2, &mut out).is_none());
        let later = now + Duration::from_millis(500);
        let (n, _) = c.poll_packet(later, 2, &mut out).unwrap();
        assert_eq!(n, SERIAL_CONSOLE_MESSAGE_LEN + 990);
        assert!(c.poll_packet(later, 3, &mut out).is_none());
        let (n, _) = c
            .poll_packet(later + Duration::from_millis(500), 3, &mut out)
            .unwrap();
        assert_eq!(n, SERIAL_CONSOLE_MESSAGE_LEN + 20);
        let (msg, data) = gateway_messages::decode(&out[..n]).unwrap();
        assert_eq!(data.len(), 20);
        assert!(matches!(
            msg.kind,
            MessageKind::SpRequest(SpRequest::SerialConsole { offset: 1980, .. })
        ));
    }

    #[test]
    fn stale_attachment_is_dropped_only_when_output_is_due() {
        let now = Instant::now();
        let mut c = console(now);
        c.attach(peer(1), SpComponent::SP3_HOST_CPU, now).unwrap();
        let late = now + Duration::from_secs(21);
        assert_eq!(
            c.attach(peer(2), SpComponent::SP3_HOST_CPU, late),
            Err(SpError::SerialConsoleAlreadyAttached)
        );
        c.host_print(&[b'y'; 1100]);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        assert!(c.poll_packet(late, 1, &mut out).is_none());
        assert_eq!(c.attached(), None);
        assert_eq!(c.stats().idle_detaches, 1);
        c.attach(peer(2), SpComponent::SP3_HOST_CPU, late).unwrap();
    }

    #[test]
    fn a_write_running_past_offset_u64_max_takes_what_has_an_offset() {
        let now = Instant::now();
        let mut c = console(now);
        c.attach(peer(1), SpComponent::SP3_HOST_CPU, now).unwrap();
        let near_end = c.write(peer(1), u64::MAX - 2, b"abcdef", now);
        assert_eq!(near_end, Ok(u64::MAX));
        assert_eq!(c.write(peer(1), u64::MAX, b"x", now), Ok(u64::MAX));
    }
}
