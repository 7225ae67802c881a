//! Settings of the SP actors and the update engine (`[sp_defaults]` in the
//! daemon's configuration), with their defaults. Every field has one; the
//! daemon's shipped `config/mgsd.toml` spells them all out.

use serde::Deserialize;
use std::time::Duration;

/// Per-SP settings (the `[sp_defaults]` of the daemon's config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpSettings {
    /// Request timeouts and patience.
    pub rpc: RpcPolicy,
    /// Datagrams in flight to one SP at most: its receive queue (real SPs
    /// queue 3 and drop the rest).
    pub window: usize,
    /// Discover this often until the SP answers.
    #[serde(rename = "discovery_interval_ms", with = "millis")]
    pub discovery_interval: Duration,
    /// Rediscover after this long without traffic (a failed probe marks
    /// the SP unreachable).
    #[serde(rename = "idle_rediscover_ms", with = "millis")]
    pub idle_rediscover: Duration,
    /// Read the SP's state again this often while it is reachable: what
    /// `list` and `state` show is never older than this (plus a round
    /// trip), however many clients ask.
    #[serde(rename = "state_refresh_ms", with = "millis")]
    pub state_refresh: Duration,
    /// Update delivery.
    pub delivery: DeliverySettings,
    /// Host serial consoles.
    pub console: ConsoleSettings,
}

/// Serial console settings (`[sp_defaults.console]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Attach to every sled's host console as soon as its SP answers, and
    /// keep it attached (the scrollback fills with nobody watching). Off:
    /// mgsd serves no consoles.
    pub attach: bool,
    /// Scrollback per SP (KiB): the output kept for a session that
    /// attaches later, and all a slow reader can fall behind by.
    pub scrollback_kib: usize,
    /// Keep-alive interval (the SP drops a gateway it has not heard from
    /// in 20 s); also how often a held console is asked for again.
    pub keepalive_ms: u64,
    /// Wait before attaching again after a failed attach or a reset.
    pub retry_ms: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            attach: true,
            scrollback_kib: 256,
            keepalive_ms: 5000,
            retry_ms: 1000,
        }
    }
}

impl ConsoleSettings {
    pub fn scrollback_bytes(&self) -> usize {
        self.scrollback_kib.max(1).saturating_mul(1024)
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms.max(1))
    }

    pub fn retry(&self) -> Duration {
        Duration::from_millis(self.retry_ms.max(1))
    }
}

impl Default for SpSettings {
    fn default() -> Self {
        Self {
            rpc: RpcPolicy::default(),
            window: 3,
            discovery_interval: Duration::from_secs(1),
            idle_rediscover: Duration::from_secs(60),
            state_refresh: Duration::from_secs(10),
            delivery: DeliverySettings::default(),
            console: ConsoleSettings::default(),
        }
    }
}

/// Delivery settings (`[sp_defaults.delivery]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// How often to read the SP's status while it erases, and while data
    /// flows (status questions are answered from that reading, so it is
    /// never older than this plus a round trip).
    #[serde(rename = "status_poll_interval_ms", with = "millis")]
    pub status_poll_interval: Duration,
    /// Host-flash device size the SP hashes (MiB); also the largest
    /// host-flash image.
    pub host_flash_capacity_mib: u32,
    /// Largest SP image (KiB): a bigger one is refused before it is read
    /// or the SP asked.
    pub sp_image_capacity_kib: u32,
    /// Largest RoT or stage0 image (KiB), likewise.
    pub rot_image_capacity_kib: u32,
    /// Read the host-flash hash back after an update and compare.
    pub verify_host_flash_hash: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            status_poll_interval: Duration::from_millis(500),
            host_flash_capacity_mib: 32,
            sp_image_capacity_kib: 2048,
            rot_image_capacity_kib: 256,
            verify_host_flash_hash: true,
        }
    }
}

/// Retry settings for one SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcPolicy {
    /// Ceiling of the adaptive per-attempt timeout, and the timeout used
    /// before any round trip has been measured.
    #[serde(rename = "per_attempt_timeout_ms", with = "millis")]
    pub per_attempt_timeout: Duration,
    /// Floor of the adaptive per-attempt timeout.
    #[serde(rename = "min_attempt_timeout_ms", with = "millis")]
    pub min_attempt_timeout: Duration,
    /// Ordinary requests fail after `max_attempts × per_attempt_timeout`
    /// without an answer.
    pub max_attempts: u32,
    /// Same for resets: a rebooting SP is silent for a while (real
    /// sidecars take 25–30 s).
    pub max_attempts_reset: u32,
    /// First `Busy` backoff; doubles up to [`RpcPolicy::busy_backoff_max`].
    #[serde(rename = "busy_backoff_ms", with = "millis")]
    pub busy_backoff: Duration,
    /// Longest `Busy` backoff.
    #[serde(rename = "busy_backoff_max_ms", with = "millis")]
    pub busy_backoff_max: Duration,
    /// Give up after this many consecutive `Busy` answers.
    pub max_busy: u32,
}

impl Default for RpcPolicy {
    fn default() -> Self {
        Self {
            per_attempt_timeout: Duration::from_millis(2000),
            min_attempt_timeout: Duration::from_millis(2),
            max_attempts: 5,
            max_attempts_reset: 30,
            busy_backoff: Duration::from_millis(20),
            busy_backoff_max: Duration::from_secs(1),
            max_busy: 600,
        }
    }
}

/// (De)serialise a `Duration` as whole milliseconds.
pub mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Read milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
