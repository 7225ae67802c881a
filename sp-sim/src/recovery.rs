//! Host phase-2 recovery: a sled's host fetches a phase-2 image, by its
//! SHA-256, from the gateway through the SP, one packet at a time. A plain
//! state machine: callers pass `now` and take the packets it wants to send.
//!
//! The SP side is the firmware's requester:
//! - one request outstanding at a time (no pipelining); the host asks for
//!   the next chunk only once the previous one reached it over the UART;
//! - `SpRequest::HostPhase2Data{hash, offset}` goes to the gateway of the
//!   port that last answered (port 1 at first). With no answer after
//!   `try_other` (500 ms) it asks the gateway of the other port; with none
//!   after a further `retry` (1 s) it starts over, and after 6 such rounds
//!   the host's fetch fails. The real SP sends to the multicast group
//!   `[ff02::1de:1]:22222` on the port's VLAN; the simulator sends to the
//!   port's configured gateway address, or to the address it last heard an
//!   MGS request from;
//! - an answer counts only if its hash and offset are those asked for (else
//!   it is stale and ignored); `MgsError`s (`HostPhase2Unavailable`,
//!   `HostPhase2ImageBadOffset`) are only logged by the firmware, so the
//!   request goes on until it runs out of rounds. They are recorded here.
//!
//! The host side reads the image in the gateway's on-disk format: a
//! 4096-byte header block (magic `0x1DEB0075`, version 2, `data_size`, the
//! SHA-256 of the data, ...) then `data_size` bytes. It learns the total
//! from the header. The hash it asks for is the SHA-256 of the whole file
//! (the id a gateway's upload answers); at the end it checks that, and the
//! data's SHA-256 against the header's. [`build_image`] makes such an
//! image.

use gateway_messages::{
    encode, version, Header, Message, MessageKind, MgsError, SpRequest, MAX_SERIALIZED_SIZE,
};
use sha2::{Digest, Sha256};
use tokio::time::{Duration, Instant};

/// Size of the image's header block.
pub const HEADER_BLOCK: u64 = 4096;
/// Header magic.
pub const MAGIC: u32 = 0x1DEB_0075;
/// Header version.
pub const VERSION: u32 = 2;
/// Bytes of the header the host reads (magic, version, flags, data_size,
/// image_size, target_size, sha256, dataset name[128]).
const HEADER_LEN: usize = 4 + 4 + 8 + 8 + 8 + 8 + 32 + 128;
/// Rounds (both ports) before a fetch fails.
pub const MAX_ATTEMPTS: u8 = 6;
/// `MgsError`s remembered at most.
const ERRORS_KEPT: usize = 64;

/// A phase-2 image of `data` in the on-disk format, and its id (the
/// SHA-256 of the whole image; the header holds the data's).
pub fn build_image(data: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let data_hash: [u8; 32] = Sha256::digest(data).into();
    let mut image = vec![0u8; HEADER_BLOCK as usize];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        image[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MAGIC.to_le_bytes());
    put(&VERSION.to_le_bytes());
    put(&1u64.to_le_bytes());
    put(&(data.len() as u64).to_le_bytes());
    put(&(data.len() as u64).to_le_bytes());
    put(&(data.len() as u64).to_le_bytes());
    put(&data_hash);
    put(b"rpool/ROOT/ramdisk");
    image.extend_from_slice(data);
    let hash = Sha256::digest(&image).into();
    (image, hash)
}

/// Phase-2 timings.
#[derive(Debug, Clone, Copy)]
pub struct Phase2Config {
    /// Wait before asking the other port's gateway.
    pub try_other: Duration,
    /// Further wait before starting a new round.
    pub retry: Duration,
    /// Host UART throughput in bytes/s (each chunk crosses it); 0: unlimited.
    pub uart_bytes_per_s: u64,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Phase2Failure {
    /// A chunk got no usable answer in [`MAX_ATTEMPTS`] rounds.
    #[error("no data for offset {offset} after {MAX_ATTEMPTS} rounds (last gateway error: {last_error:?})")]
    NoData {
        /// The offset asked for.
        offset: u64,
        /// The last `MgsError` received meanwhile.
        last_error: Option<MgsError>,
    },
    /// The header block is not a phase-2 header.
    #[error("bad image header: {0}")]
    BadHeader(&'static str),
    /// The data's SHA-256 is not the hash asked for.
    #[error("image hash mismatch: got {}", hex(.0))]
    HashMismatch([u8; 32]),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a fetch stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase2State {
    /// Fetching.
    Fetching,
    /// Every byte arrived and the hash matched.
    Complete,
    /// Gave up.
    Failed(Phase2Failure),
}

/// Progress of the host's fetch, readable by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase2Progress {
    /// The hash asked for.
    pub hash: [u8; 32],
    /// Bytes received: the next offset.
    pub offset: u64,
    /// Image size (header block + data), once the header arrived.
    pub total: Option<u64>,
    /// Where it stands.
    pub state: Phase2State,
    /// `HostPhase2Data` requests sent (resends included).
    pub requests: u64,
    /// Answers that carried the chunk asked for.
    pub chunks: u64,
    /// Answers for another hash or offset (late or duplicated), ignored.
    pub stale: u64,
    /// Gateway errors received, oldest first (at most 64 kept).
    pub errors: Vec<MgsError>,
    /// Times the fetch started over from 0 because the host rebooted.
    pub restarts: u64,
}

/// The outstanding request, as the firmware tracks it.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// To send on `port`.
    Send { port: usize },
    /// Sent on `port`; the other port is tried at `deadline`.
    First { port: usize, deadline: Instant },
    /// Sent on the other port too; a new round starts at `deadline`.
    Second { port: usize, deadline: Instant },
}

/// The host's fetch and the SP's requester.
#[derive(Debug)]
pub struct HostPhase2 {
    cfg: Phase2Config,
    progress: Option<Phase2Progress>,
    request: Option<Request>,
    rounds: u8,
    /// The host is busy taking the last chunk over the UART until then.
    relay_until: Option<Instant>,
    /// Port (0 = port 1) whose gateway answered last.
    last_responsive: usize,
    header: Vec<u8>,
    data_hash: Sha256,
    image_hash: Sha256,
    /// The host is up (powered, booted).
    host_up: bool,
}

impl HostPhase2 {
    /// No fetch.
    pub fn new(cfg: Phase2Config) -> Self {
        Self {
            cfg,
            progress: None,
            request: None,
            rounds: 0,
            relay_until: None,
            last_responsive: 0,
            header: Vec::new(),
            data_hash: Sha256::new(),
            image_hash: Sha256::new(),
            host_up: false,
        }
    }

    /// The host (re)starts fetching `hash` from offset 0.
    pub fn start(&mut self, hash: [u8; 32]) {
        let restarts = self
            .progress
            .as_ref()
            .filter(|p| p.hash == hash)
            .map_or(0, |p| p.restarts);
        self.progress = Some(Phase2Progress {
            hash,
            offset: 0,
            total: None,
            state: Phase2State::Fetching,
            requests: 0,
            chunks: 0,
            stale: 0,
            errors: Vec::new(),
            restarts,
        });
        self.header.clear();
        self.data_hash = Sha256::new();
        self.image_hash = Sha256::new();
        self.relay_until = None;
        self.rounds = 0;
        self.request = self.host_up.then_some(Request::Send {
            port: self.last_responsive,
        });
    }

    /// The host stops wanting an image.
    pub fn stop(&mut self) {
        self.progress = None;
        self.request = None;
    }

    /// The host booted (power-on, or the SP reset and restarted it): an
    /// unfinished fetch starts over. The SP's requester state is RAM and
    /// was lost with any reset.
    pub fn host_booted(&mut self) {
        self.host_up = true;
        self.last_responsive = 0;
        if let Some(p) = self.progress.clone() {
            if p.state != Phase2State::Complete {
                let restart = p.offset > 0 || p.requests > 0;
                self.start(p.hash);
                if let Some(q) = self.progress.as_mut() {
                    q.restarts += u64::from(restart);
                }
            }
        }
    }

    /// The host lost power: nothing is asked for until it boots.
    pub fn host_off(&mut self) {
        self.host_up = false;
        self.request = None;
        self.relay_until = None;
    }

    /// Progress, if the host wants an image.
    pub fn progress(&self) -> Option<&Phase2Progress> {
        self.progress.as_ref()
    }

    fn fetching(&self) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|p| p.state == Phase2State::Fetching)
    }

    /// Let time pass: the host takes a relayed chunk and asks for the next.
    pub fn step(&mut self, now: Instant) {
        if self.relay_until.is_some_and(|t| now >= t) {
            self.relay_until = None;
            if self.fetching() && self.host_up {
                self.rounds = 0;
                self.request = Some(Request::Send {
                    port: self.last_responsive,
                });
            }
        }
    }

    /// The next request to send, encoded into `out`, and the port (0 or 1)
    /// whose gateway it goes to.
    pub fn poll_packet(
        &mut self,
        now: Instant,
        message_id: u32,
        out: &mut [u8; MAX_SERIALIZED_SIZE],
    ) -> Option<(usize, usize)> {
        self.step(now);
        if !self.fetching() {
            return None;
        }
        let port = match self.request? {
            Request::Send { port } => {
                self.request = Some(Request::First {
                    port,
                    deadline: now + self.cfg.try_other,
                });
                port
            }
            Request::First { port, deadline } if now >= deadline => {
                let port = 1 - port;
                self.request = Some(Request::Second {
                    port,
                    deadline: now + self.cfg.retry,
                });
                port
            }
            Request::Second { port, deadline } if now >= deadline => {
                self.rounds += 1;
                if self.rounds >= MAX_ATTEMPTS {
                    self.request = None;
                    if let Some(p) = self.progress.as_mut() {
                        p.state = Phase2State::Failed(Phase2Failure::NoData {
                            offset: p.offset,
                            last_error: p.errors.last().copied(),
                        });
                    }
                    return None;
                }
                let port = 1 - port;
                self.request = Some(Request::First {
                    port,
                    deadline: now + self.cfg.try_other,
                });
                port
            }
            _ => return None,
        };
        let p = self.progress.as_mut()?;
        p.requests += 1;
        let message = Message {
            header: Header {
                version: version::CURRENT,
                message_id,
            },
            kind: MessageKind::SpRequest(SpRequest::HostPhase2Data {
                hash: p.hash,
                offset: p.offset,
            }),
        };
        let (n, _) = encode(out, &message, &[]).ok()?;
        Some((n, port))
    }

    /// `MgsResponse::HostPhase2Data` from the gateway on `port`.
    pub fn data(&mut self, port: usize, hash: [u8; 32], offset: u64, data: &[u8], now: Instant) {
        let waiting = matches!(
            self.request,
            Some(Request::First { .. } | Request::Second { .. })
        );
        let Some(p) = self.progress.as_mut() else {
            return;
        };
        if !waiting || p.hash != hash || p.offset != offset || p.state != Phase2State::Fetching {
            p.stale += 1;
            return;
        }
        self.request = None;
        self.last_responsive = port;
        p.chunks += 1;
        // The SP's buffer holds one datagram; the host takes no more than
        // the image has.
        let mut data = &data[..data.len().min(MAX_SERIALIZED_SIZE)];
        if let Some(total) = p.total {
            let left = total.saturating_sub(offset) as usize;
            data = &data[..data.len().min(left)];
        }
        let header_part = (HEADER_BLOCK.saturating_sub(offset) as usize).min(data.len());
        let keep = HEADER_LEN
            .saturating_sub(self.header.len())
            .min(header_part);
        self.header.extend_from_slice(&data[..keep]);
        self.data_hash.update(&data[header_part..]);
        self.image_hash.update(data);
        p.offset = offset + data.len() as u64;
        if p.total.is_none() && self.header.len() == HEADER_LEN {
            match parse_header(&self.header) {
                Ok(data_size) => p.total = Some(HEADER_BLOCK + data_size),
                Err(why) => {
                    p.state = Phase2State::Failed(Phase2Failure::BadHeader(why));
                    return;
                }
            }
        }
        if p.total == Some(p.offset) {
            let data: [u8; 32] = std::mem::take(&mut self.data_hash).finalize().into();
            let got: [u8; 32] = std::mem::take(&mut self.image_hash).finalize().into();
            let declared = &self.header[40..72];
            p.state = if got == p.hash && declared == data {
                Phase2State::Complete
            } else {
                Phase2State::Failed(Phase2Failure::HashMismatch(got))
            };
            return;
        }
        if data.is_empty() {
            // Nothing to wait for: ask again at once.
            self.request = Some(Request::Send { port });
            return;
        }
        let relay = match self.cfg.uart_bytes_per_s {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(data.len() as f64 / rate as f64),
        };
        self.relay_until = Some(now + relay);
    }

    /// `MgsResponse::Error` from a gateway: logged, nothing else.
    pub fn error(&mut self, error: MgsError) {
        if let Some(p) = self.progress.as_mut() {
            if p.errors.len() == ERRORS_KEPT {
                p.errors.remove(0);
            }
            p.errors.push(error);
        }
    }

    /// When something next happens without outside input.
    pub fn next_wake(&self) -> Option<Instant> {
        if !self.fetching() {
            return None;
        }
        match (self.relay_until, self.request) {
            (Some(t), _) => Some(t),
            (None, Some(Request::Send { .. })) => Some(Instant::now()),
            (None, Some(Request::First { deadline, .. } | Request::Second { deadline, .. })) => {
                Some(deadline)
            }
            (None, None) => None,
        }
    }
}

/// `data_size` from a header, or why it is not one.
fn parse_header(h: &[u8]) -> Result<u64, &'static str> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if u32_at(0) != MAGIC {
        return Err("wrong magic");
    }
    if u32_at(4) != VERSION {
        return Err("unsupported version");
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&h[16..24]);
    Ok(u64::from_le_bytes(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase2() -> HostPhase2 {
        let mut p = HostPhase2::new(Phase2Config {
            try_other: Duration::from_millis(500),
            retry: Duration::from_millis(1000),
            uart_bytes_per_s: 0,
        });
        p.host_booted();
        p
    }

    #[test]
    fn fetches_an_image_chunk_by_chunk_and_checks_its_hash() {
        let (image, hash) = build_image(&[7u8; 5000]);
        let now = Instant::now();
        let mut p = phase2();
        p.start(hash);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        for _ in 0..100 {
            let Some(_) = p.poll_packet(now, 0, &mut out) else {
                break;
            };
            let offset = p.progress().unwrap().offset as usize;
            let end = (offset + 974).min(image.len());
            p.data(0, hash, offset as u64, &image[offset..end], now);
        }
        let progress = p.progress().unwrap();
        assert_eq!(progress.state, Phase2State::Complete);
        assert_eq!(progress.total, Some(image.len() as u64));
    }

    #[test]
    fn unanswered_request_alternates_ports_then_fails() {
        let now = Instant::now();
        let mut p = phase2();
        p.start([1; 32]);
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let mut ports = Vec::new();
        let mut t = now;
        for _ in 0..40 {
            if let Some((_, port)) = p.poll_packet(t, 0, &mut out) {
                ports.push(port);
            }
            t += Duration::from_millis(250);
        }
        assert_eq!(&ports[..4], &[0, 1, 0, 1]);
        assert_eq!(ports.len(), 2 * MAX_ATTEMPTS as usize);
        assert!(matches!(
            p.progress().unwrap().state,
            Phase2State::Failed(Phase2Failure::NoData { offset: 0, .. })
        ));
    }
}
