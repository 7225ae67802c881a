//! The rollout gauges (targets by state, rollouts by phase, over every
//! rollout since the daemon started). Each rollout's follower adds what
//! changed in its own record: no table of all rollouts is kept anywhere.

use crate::metrics::{ROLLOUT_STATE, ROLLOUT_STOPS, ROLLOUT_TARGETS};
use crate::rollout_state::{Counts, RolloutPhase, RolloutRecord, TargetState};
use metrics::{counter, gauge};
use tokio::sync::watch;

/// Keep the rollout gauges in step with a rollout's record, until it
/// ends.
pub fn follow(mut rx: watch::Receiver<RolloutRecord>) {
    actix::spawn(async move {
        let mut was: Option<(RolloutPhase, Counts)> = None;
        loop {
            let (phase, counts) = {
                let r = rx.borrow_and_update();
                (r.phase, r.counts())
            };
            match was {
                Some((p, _)) if p != phase => {
                    gauge!(ROLLOUT_STATE, "state" => p.as_str()).decrement(1.0);
                    gauge!(ROLLOUT_STATE, "state" => phase.as_str()).increment(1.0);
                    if phase == RolloutPhase::Stopping {
                        counter!(ROLLOUT_STOPS).increment(1);
                    }
                }
                Some(_) => {}
                None => gauge!(ROLLOUT_STATE, "state" => phase.as_str()).increment(1.0),
            }
            for s in TargetState::ALL {
                let before = was.map_or(0, |(_, c)| c.of(s)) as f64;
                let delta = counts.of(s) as f64 - before;
                if delta != 0.0 {
                    gauge!(ROLLOUT_TARGETS, "state" => s.as_str()).increment(delta);
                }
            }
            was = Some((phase, counts));
            if phase.is_terminal() || rx.changed().await.is_err() {
                return;
            }
        }
    });
}
