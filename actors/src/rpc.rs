//! The RPC policy — adaptive per-attempt timeouts, patience, `Busy`
//! backoff — as pure types (the settings are [`crate::settings::RpcPolicy`]).
//!
//! Each attempt waits for the SP's round-trip timeout (smoothed RTT plus
//! four times its variance, as TCP computes it, clamped to the configured
//! floor and ceiling), doubling with every resend. A request fails only
//! after `max_attempts × per_attempt_timeout` of silence (10 s by default,
//! the reference client's patience), so a fast network recovers a lost
//! datagram in milliseconds while a slow SP (a synchronous bank erase) is
//! still waited for. `Busy` backs off from 20 ms doubling to 1 s and does
//! not count as silence.

use crate::settings::RpcPolicy;
use std::time::Duration;
use tokio::time::Instant;

/// Smoothed round-trip time and its variance (RFC 6298), giving the
/// retransmission timeout.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    floor: Duration,
    ceiling: Duration,
}

impl RttEstimator {
    /// An estimator without samples; its timeout is `policy`'s ceiling.
    pub fn new(policy: &RpcPolicy) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            floor: policy.min_attempt_timeout,
            ceiling: policy.per_attempt_timeout.max(policy.min_attempt_timeout),
        }
    }

    /// A round trip of a request answered on its first attempt (Karn: a
    /// resent request's answer cannot be matched to one send).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// How long the first attempt of a request waits.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => self.ceiling,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(self.floor, self.ceiling),
        }
    }

    /// How long attempt `n` (0 for the first) waits: the timeout doubles
    /// with each resend, up to the ceiling.
    pub fn timeout_for_attempt(&self, n: u32) -> Duration {
        self.rto().saturating_mul(1 << n.min(20)).min(self.ceiling)
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
    patience: Duration,
    /// Start of the current silence: the first send, or the last send
    /// after a `Busy` answer.
    silent_since: Option<Instant>,
    /// Attempts sent so far.
    pub sent: u32,
    busy: u32,
    backoff: Duration,
}

impl Attempts {
    /// An ordinary (`reset = false`) or reset RPC, not yet sent.
    pub fn new(policy: RpcPolicy, reset: bool) -> Self {
        let n = if reset {
            policy.max_attempts_reset
        } else {
            policy.max_attempts
        };
        Self::with_patience(policy, policy.per_attempt_timeout * n.max(1))
    }

    /// An RPC that gives up after `patience` of silence.
    pub fn with_patience(policy: RpcPolicy, patience: Duration) -> Self {
        Self {
            policy,
            patience,
            silent_since: None,
            sent: 0,
            busy: 0,
            backoff: policy.busy_backoff,
        }
    }

    /// An attempt goes out at `now`; returns how long to wait for it,
    /// given the SP's current round-trip estimate (never past the end of
    /// the patience, so a silent SP fails after exactly that).
    pub fn send(&mut self, now: Instant, rtt: &RttEstimator) -> Duration {
        let since = *self.silent_since.get_or_insert(now);
        let left = self.patience.saturating_sub(now - since);
        let wait = rtt.timeout_for_attempt(self.sent).min(left);
        self.sent += 1;
        wait
    }

    /// The current attempt went unanswered by `now`.
    pub fn timed_out(&mut self, now: Instant) -> Next {
        match self.silent_since {
            Some(since) if now - since < self.patience => Next::Resend,
            _ => Next::GiveUp,
        }
    }

    /// The SP answered `Busy`: back off; the SP is alive, so the silence
    /// starts again with the next send.
    pub fn busy(&mut self) -> Next {
        self.busy += 1;
        self.silent_since = None;
        if self.busy > self.policy.max_busy {
            return Next::GiveUp;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.busy_backoff_max);
        Next::ResendAfter(wait)
    }

    /// Whether the request went out more than once (its round trip is
    /// then no sample).
    pub fn resent(&self) -> bool {
        self.sent > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn silent_sp_gets_the_reference_patience_exactly() {
        let policy = RpcPolicy::default();
        let rtt = RttEstimator::new(&policy);
        let mut a = Attempts::new(policy, false);
        let mut now = Instant::now();
        let t0 = now;
        let mut waits = Vec::new();
        loop {
            let w = a.send(now, &rtt);
            waits.push(w.as_millis());
            now += w;
            if a.timed_out(now) == Next::GiveUp {
                break;
            }
        }
        // No round trip measured yet: 2 s per attempt, five attempts.
        assert_eq!(waits, [2000; 5]);
        assert_eq!(now - t0, Duration::from_secs(10));
        let mut reset = Attempts::new(policy, true);
        let mut t = t0;
        while {
            t += reset.send(t, &rtt);
            reset.timed_out(t) == Next::Resend
        } {}
        assert_eq!((reset.sent, t - t0), (30, Duration::from_secs(60)));
    }

    #[test]
    fn measured_round_trips_shorten_the_timeout_and_resends_double_it() {
        let policy = RpcPolicy::default();
        let mut rtt = RttEstimator::new(&policy);
        rtt.sample(ms(4));
        // 4 ms + 4 × 2 ms.
        assert_eq!(rtt.rto(), ms(12));
        for _ in 0..100 {
            rtt.sample(ms(4));
        }
        // The variance decays.
        assert_eq!(rtt.rto(), ms(4));
        let waits: Vec<_> = (0..12).map(|n| rtt.timeout_for_attempt(n)).collect();
        assert_eq!(&waits[..4], [ms(4), ms(8), ms(16), ms(32)]);
        assert_eq!(waits[11], ms(2000), "capped at the ceiling");
        // Loopback-fast answers: the floor holds.
        let mut fast = RttEstimator::new(&policy);
        for _ in 0..100 {
            fast.sample(Duration::from_micros(80));
        }
        assert_eq!(fast.rto(), ms(2));
        // A burst of slow answers raises it.
        rtt.sample(ms(300));
        assert!(rtt.rto() > ms(300), "{:?}", rtt.rto());
        // Patience is still 10 s of silence, spread over more attempts.
        let mut a = Attempts::new(policy, false);
        let t0 = Instant::now();
        let mut now = t0;
        while {
            now += a.send(now, &rtt);
            a.timed_out(now) == Next::Resend
        } {}
        assert_eq!(now - t0, Duration::from_secs(10));
        assert!(a.sent > 5, "{}", a.sent);
    }

    #[test]
    fn busy_backs_off_exponentially_and_restarts_the_silence() {
        let policy = RpcPolicy::default();
        let rtt = RttEstimator::new(&policy);
        let mut a = Attempts::new(policy, false);
        let t0 = Instant::now();
        a.send(t0, &rtt);
        let waits: Vec<_> = (0..8)
            .map(|_| match a.busy() {
                Next::ResendAfter(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000]);
        // Long after the first send, the SP was busy, not silent.
        let later = t0 + Duration::from_secs(30);
        assert_eq!(a.send(later, &rtt), ms(2000));
        assert_eq!(a.timed_out(later + ms(2000)), Next::Resend);
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
