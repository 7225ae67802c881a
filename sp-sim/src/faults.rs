//! Seeded, deterministic fault injection for one simulated SP.
//!
//! The response-path faults (drop, duplicate, corrupt, delay, reorder)
//! apply to every datagram the SP sends, including the ones it initiates
//! (serial console output, phase-2 requests); the request-path ones to
//! everything it receives, including the gateway's phase-2 answers.

use serde::Deserialize;
use tokio::time::{Duration, Instant};

/// What to inject. Probabilities are in `0.0..=1.0`; all default to none.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Drop an incoming request before the SP sees it.
    pub drop_request: f64,
    /// Deliver an incoming request twice.
    pub duplicate_request: f64,
    /// Drop the SP's response.
    pub drop_response: f64,
    /// Send the SP's response twice.
    pub duplicate_response: f64,
    /// Flip one byte of the response.
    pub corrupt_response: f64,
    /// Answer `Busy` instead of handling the request.
    pub busy: f64,
    /// Delay every response by a random time up to this many ms (responses
    /// overtake each other, so this also reorders).
    pub max_delay_ms: u64,
    /// Hold a response back this many ms with probability `reorder`.
    pub reorder_delay_ms: u64,
    /// Probability of holding a response back by `reorder_delay_ms`.
    pub reorder: f64,
    /// Drop the ack of every chunk that completes an update (the case the
    /// reference client gets wrong).
    pub drop_completion_ack: bool,
    /// Drop the acks (`SpUpdatePrepareAck`, `ComponentUpdatePrepareAck`) of
    /// the next this-many prepares the SP accepts; the SP still prepares,
    /// so a retried prepare meets `UpdateInProgress` with its own id.
    /// Counts down as acks are dropped; setting the faults again re-arms it.
    pub drop_prepare_acks: u32,
    /// An SP image booted from the other bank (a new one) hangs at boot:
    /// with a reset watchdog armed the SP comes back on the previous image
    /// when it expires; without one it stays silent.
    pub new_image_fails_boot: bool,
    /// Drop the acks of the next this-many `DisableComponentWatchdog`s the
    /// SP carries out (the watchdog is disabled all the same). Counts
    /// down like `drop_prepare_acks`.
    pub drop_watchdog_disable_acks: u32,
    /// Acknowledge `ResetComponentPrepare` but forget it, as when another
    /// client's prepare replaces it: the next trigger is refused
    /// ("without prepare") and nothing resets.
    pub forget_reset_prepares: bool,
    /// Another SP implementation's host-flash hash: `GetHostFlashHash` is
    /// the SHA-256 of just the bytes the last update wrote to the slot (as
    /// another SP simulator computes it), not the real firmware's hash of
    /// the whole device with its first 64 KiB read as 0xFF. Slots no
    /// update wrote keep the real hash.
    pub hash_written_bytes: bool,
    /// Another SP implementation's state: after an SP-image update and a
    /// reset into it, `SpState` keeps reporting the previous image's
    /// `hubris_archive_id`, although the running caboose (VERS, GITC, ...)
    /// is the new image's.
    pub archive_id_unchanged: bool,
    /// Sensors that fail, each with a `SensorDataMissing` kind
    /// (`[[faults.sensor_errors]] sensor = 3, error = "device_timeout"`):
    /// readings are that error, one error counted per second, until the
    /// fault is removed.
    pub sensor_errors: Vec<crate::inventory::SensorFault>,
}

/// Counts of what was injected or dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Datagrams that reached the SP's socket.
    pub received: u64,
    /// Requests dropped by injection.
    pub requests_dropped: u64,
    /// Requests duplicated by injection.
    pub requests_duplicated: u64,
    /// Datagrams dropped because the 3-deep receive queue was full.
    pub queue_overflows: u64,
    /// Datagrams ignored while the SP was resetting or hung.
    pub ignored_while_down: u64,
    /// `Busy` answers injected.
    pub busy_injected: u64,
    /// Responses dropped by injection (including the prepare and
    /// completion acks dropped on purpose).
    pub responses_dropped: u64,
    /// Prepare acks dropped by `drop_prepare_acks`.
    pub prepare_acks_dropped: u64,
    /// Prepares the SP accepted: each starts an update from byte 0.
    pub prepares: u64,
    /// Responses duplicated.
    pub responses_duplicated: u64,
    /// Responses corrupted.
    pub responses_corrupted: u64,
    /// Responses delayed or held back.
    pub responses_delayed: u64,
    /// Resets (requested or injected).
    pub resets: u64,
    /// SP-initiated packets sent (console output, phase-2 requests),
    /// before response-path faults.
    pub sp_requests: u64,
    /// Datagrams dropped because ignition had the SP's power off.
    pub ignored_while_off: u64,
}

/// SplitMix64: tiny, seedable, good enough for fault dice.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Live fault state of one SP.
#[derive(Debug)]
pub struct Faults {
    /// Current settings.
    pub config: FaultConfig,
    /// What happened so far.
    pub stats: FaultStats,
    /// Ignore everything until then (hang).
    pub hang_until: Option<Instant>,
    rng: Rng,
}

impl Faults {
    /// Faults with a seed.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            stats: FaultStats::default(),
            hang_until: None,
            rng: Rng::new(seed),
        }
    }

    /// Roll a die with probability `p`.
    pub fn roll(&mut self, p: f64) -> bool {
        self.rng.chance(p)
    }

    /// Delay for the next response (zero for most).
    pub fn response_delay(&mut self) -> Duration {
        let mut ms = self.rng.below(self.config.max_delay_ms + 1);
        if self.rng.chance(self.config.reorder) {
            ms += self.config.reorder_delay_ms;
        }
        if ms > 0 {
            self.stats.responses_delayed += 1;
        }
        Duration::from_millis(ms)
    }

    /// Corrupt one byte of `datagram`.
    pub fn corrupt(&mut self, datagram: &mut [u8]) {
        if !datagram.is_empty() {
            let i = self.rng.below(datagram.len() as u64) as usize;
            datagram[i] ^= 1 << self.rng.below(8);
        }
    }

    /// Whether the SP ignores input because it hangs.
    pub fn hung(&self, now: Instant) -> bool {
        self.hang_until.is_some_and(|t| now < t)
    }
}
