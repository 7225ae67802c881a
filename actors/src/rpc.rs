//! The RPC policy — per-attempt timeout, attempt budget, `Busy` backoff —
//! as a pure type, and the errors an RPC can end with.
//!
//! Defaults are the reference client's (faux-mgs): 2 s per attempt, 5
//! attempts, 30 attempts for resets; `Busy` backs off from 20 ms doubling to
//! 1 s and does not use up attempts.

use crate::SpName;
use gateway_messages::SpError;
use serde::Deserialize;
use std::time::Duration;

/// Retry settings for one SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcPolicy {
    /// Wait this long for a response before resending.
    #[serde(rename = "per_attempt_timeout_ms", with = "millis")]
    pub per_attempt_timeout: Duration,
    /// Attempts for ordinary requests.
    pub max_attempts: u32,
    /// Attempts for resets (a rebooting SP is silent for a while: real
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

/// What to do after an attempt went unanswered or was answered `Busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Resend the identical datagram now.
    Resend,
    /// Resend after this backoff.
    ResendAfter(Duration),
    /// Give up.
    GiveUp,
}

/// The attempt bookkeeping of one RPC.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: RpcPolicy,
    max: u32,
    /// Attempts sent (counting the first).
    pub sent: u32,
    busy: u32,
    backoff: Duration,
}

impl Attempts {
    /// First attempt of an ordinary (`reset = false`) or reset RPC.
    pub fn new(policy: RpcPolicy, reset: bool) -> Self {
        let max = if reset {
            policy.max_attempts_reset
        } else {
            policy.max_attempts
        };
        Self {
            policy,
            max: max.max(1),
            sent: 1,
            busy: 0,
            backoff: policy.busy_backoff,
        }
    }

    /// The current attempt timed out.
    pub fn timed_out(&mut self) -> Next {
        if self.sent >= self.max {
            Next::GiveUp
        } else {
            self.sent += 1;
            Next::Resend
        }
    }

    /// The SP answered `Busy`: back off without using up an attempt.
    pub fn busy(&mut self) -> Next {
        self.busy += 1;
        if self.busy > self.policy.max_busy {
            return Next::GiveUp;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.busy_backoff_max);
        Next::ResendAfter(wait)
    }

    /// Resends so far.
    pub fn resends(&self) -> u32 {
        self.sent - 1
    }
}

/// Why an RPC failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// No response after every attempt.
    #[error("{sp}: no response after {attempts} attempts")]
    Timeout {
        /// SP name.
        sp: SpName,
        /// Attempts made.
        attempts: u32,
    },
    /// The SP kept answering `Busy`.
    #[error("{sp}: SP stayed busy")]
    Busy {
        /// SP name.
        sp: SpName,
    },
    /// The SP answered with an error.
    #[error("{sp}: {error}")]
    Sp {
        /// SP name.
        sp: SpName,
        /// What the SP said.
        error: SpError,
    },
    /// The SP answered something the request does not expect.
    #[error("{sp}: unexpected response {response}")]
    Unexpected {
        /// SP name.
        sp: SpName,
        /// Debug rendering of the response.
        response: String,
    },
    /// The SP has not been found yet.
    #[error("{sp}: SP not discovered yet")]
    NotDiscovered {
        /// SP name.
        sp: SpName,
    },
    /// Socket failure.
    #[error("{sp}: I/O error: {message}")]
    Io {
        /// SP name.
        sp: SpName,
        /// The OS error.
        message: String,
    },
    /// The actor went away (daemon shutting down or SP removed).
    #[error("{sp}: SP actor stopped")]
    Stopped {
        /// SP name.
        sp: SpName,
    },
}

impl RpcError {
    /// The SP's own error, if that is what this is.
    pub fn sp_error(&self) -> Option<SpError> {
        match self {
            RpcError::Sp { error, .. } => Some(*error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_use_up_attempts_then_give_up() {
        let mut a = Attempts::new(RpcPolicy::default(), false);
        for _ in 0..4 {
            assert_eq!(a.timed_out(), Next::Resend);
        }
        assert_eq!(a.timed_out(), Next::GiveUp);
        assert_eq!(a.resends(), 4);
        let mut r = Attempts::new(RpcPolicy::default(), true);
        assert_eq!(
            (0..29).filter(|_| r.timed_out() == Next::Resend).count(),
            29
        );
        assert_eq!(r.timed_out(), Next::GiveUp);
    }

    #[test]
    fn busy_backs_off_exponentially_without_using_attempts() {
        let mut a = Attempts::new(RpcPolicy::default(), false);
        let waits: Vec<_> = (0..8)
            .map(|_| match a.busy() {
                Next::ResendAfter(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(a.sent, 1);
        assert_eq!(a.timed_out(), Next::Resend);
    }

    #[test]
    fn endless_busy_gives_up() {
        let policy = RpcPolicy {
            max_busy: 3,
            ..RpcPolicy::default()
        };
        let mut a = Attempts::new(policy, false);
        for _ in 0..3 {
            assert!(matches!(a.busy(), Next::ResendAfter(_)));
        }
        assert_eq!(a.busy(), Next::GiveUp);
    }
}
