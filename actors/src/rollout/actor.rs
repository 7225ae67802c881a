//! `RolloutActor`: one per rollout. Owns the rollout's [`RolloutRecord`]
//! (published on a `watch`, journalled at every change of state) and the
//! images of its targets. It starts each target's update through the
//! registry, the same owner as single updates (with an id derived from
//! the rollout's, so a start made again after a restart is the same
//! update), follows it to its end, runs the after-action, and keeps to the
//! plan's waves, concurrency cap and stop rule. How a target's update goes
//! is read from that update, never copied here. Pause, resume and abort
//! are messages to it; the clients that asked are never needed.

use crate::error::{RegistryError, UpdateError};
use crate::image::Image;
use crate::intake::{ImageSource, StartUpdate};
use crate::journal::JournalHandle;
use crate::record::Phase;
use crate::registry::RegistryHandle;
use crate::reset::{Outcome, ResetOptions};
use crate::rollout_state::{After, RolloutPhase, RolloutRecord, Target, TargetState};
use crate::types::unix_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn, Instrument};

/// What a client may ask of a running rollout.
enum Command {
    Pause(oneshot::Sender<bool>),
    Resume(oneshot::Sender<bool>),
    Abort(oneshot::Sender<bool>),
}

/// A target's driver ended: target, state, reason.
struct Ended(usize, TargetState, Option<String>);

/// A typed handle on a rollout actor (or on a rollout that has ended).
#[derive(Clone)]
pub struct RolloutHandle {
    commands: mpsc::UnboundedSender<Command>,
    record: watch::Receiver<RolloutRecord>,
}

impl RolloutHandle {
    /// Start (or, after a restart, take up again) the rollout `record`
    /// with its `images` (by SHA-256 hex).
    pub fn start(
        record: RolloutRecord,
        images: HashMap<String, Arc<Image>>,
        registry: RegistryHandle,
        journal: Option<JournalHandle>,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (tx, watch) = watch::channel(record);
        super::rollout_metrics::follow(watch.clone());
        let span = tracing::info_span!("rollout", rollout = %tx.borrow().id);
        let actor = RolloutActor {
            record: tx,
            images,
            registry,
            journal,
        };
        actix::spawn(actor.run(rx).instrument(span));
        Self {
            commands,
            record: watch,
        }
    }

    /// The record now.
    pub fn record(&self) -> RolloutRecord {
        self.record.borrow().clone()
    }

    /// Follow the record.
    pub fn watch(&self) -> watch::Receiver<RolloutRecord> {
        self.record.clone()
    }

    async fn ask(&self, command: impl FnOnce(oneshot::Sender<bool>) -> Command) -> bool {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).is_ok() && rx.await.unwrap_or(false)
    }

    /// Start no new target until `resume`; false if it could not pause.
    pub async fn pause(&self) -> bool {
        self.ask(Command::Pause).await
    }

    /// Go on after a pause; false if it was not paused.
    pub async fn resume(&self) -> bool {
        self.ask(Command::Resume).await
    }

    /// Abort: no new target starts, running target updates are aborted
    /// on their SPs; false if it had ended.
    pub async fn abort(&self) -> bool {
        self.ask(Command::Abort).await
    }
}

struct RolloutActor {
    record: watch::Sender<RolloutRecord>,
    images: HashMap<String, Arc<Image>>,
    registry: RegistryHandle,
    journal: Option<JournalHandle>,
}

impl RolloutActor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        // Targets running when the rollout was journalled last (a restart):
        // start them again; their updates are the same ones.
        let running: Vec<usize> = self
            .record
            .borrow()
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TargetState::Running)
            .map(|(i, _)| i)
            .collect();
        for i in running {
            self.drive(i, &events_tx);
        }
        loop {
            let due = {
                let mut changed = false;
                self.record.send_modify(|r| {
                    let before = (r.phase, r.current_wave);
                    r.settle(unix_ms());
                    changed = before != (r.phase, r.current_wave);
                });
                if changed {
                    self.journal_now().await;
                }
                self.record.borrow().due()
            };
            for i in due {
                self.record.send_modify(|r| {
                    let t = &mut r.targets[i];
                    t.state = TargetState::Running;
                    t.started_unix_ms = Some(unix_ms());
                });
                self.journal_now().await;
                self.drive(i, &events_tx);
            }
            let (phase, resume_at) = {
                let r = self.record.borrow();
                (r.phase, r.resume_at_unix_ms)
            };
            if phase.is_terminal() {
                self.journal_now().await;
                let r = self.record.borrow();
                let c = r.counts();
                info!(
                    phase = phase.as_str(),
                    complete = c.complete,
                    failed = c.failed,
                    skipped = c.skipped,
                    "rollout ended"
                );
                return;
            }
            let wait = resume_at
                .filter(|_| phase == RolloutPhase::Waiting)
                .map(|t| Duration::from_millis(t.saturating_sub(unix_ms())));
            tokio::select! {
                Some(command) = commands.recv() => self.command(command).await,
                Some(ended) = events.recv() => self.ended(ended).await,
                _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(86_400))), if wait.is_some() => {}
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let now = unix_ms();
        let (done, reply) = match command {
            Command::Pause(reply) => (self.record.send_if_modified(|r| r.pause()), reply),
            Command::Resume(reply) => (self.record.send_if_modified(|r| r.resume(now)), reply),
            Command::Abort(reply) => {
                let done = self.record.send_if_modified(|r| r.abort(now));
                if done {
                    self.abort_running();
                }
                (done, reply)
            }
        };
        if done {
            let r = self.record.borrow().clone();
            info!(
                phase = r.phase.as_str(),
                "rollout {}",
                r.reason.as_deref().unwrap_or("resumed")
            );
            self.journal_now().await;
        }
        let _ = reply.send(done);
    }

    /// Ask each running target's SP to abort its update.
    fn abort_running(&self) {
        let r = self.record.borrow();
        for t in r.targets.iter().filter(|t| t.state == TargetState::Running) {
            let (registry, sp, component, id) = (
                self.registry.clone(),
                t.sp.clone(),
                t.component.clone(),
                t.update_id,
            );
            actix::spawn(async move {
                if let Err(e) = registry.abort_update(sp.as_str(), &component, id).await {
                    warn!(%sp, %component, update = %id, error = %e, "could not abort a target's update");
                }
            });
        }
    }

    async fn ended(&mut self, Ended(i, state, failure): Ended) {
        self.record.send_modify(|r| {
            let t = &mut r.targets[i];
            t.state = state;
            t.failure = failure;
            t.finished_unix_ms = Some(unix_ms());
        });
        let r = self.record.borrow().clone();
        let t = &r.targets[i];
        info!(sp = %t.sp, component = %t.component, update = %t.update_id, state = state.as_str(), failure = t.failure.as_deref(), "rollout target ended");
        self.journal_now().await;
    }

    /// Start driving target `i`: its update, then its after-action.
    fn drive(&self, i: usize, events: &mpsc::UnboundedSender<Ended>) {
        let r = self.record.borrow();
        let t = r.targets[i].clone();
        let image = self.images.get(&t.image_sha256).cloned();
        let (registry, events, after) = (self.registry.clone(), events.clone(), r.after);
        let rollout = self.record.subscribe();
        let span = tracing::info_span!("target", sp = %t.sp, update = %t.update_id);
        actix::spawn(
            async move {
                let ended = match image {
                    Some(image) => drive(&registry, &t, image, after, rollout).await,
                    None => Some((
                        TargetState::Failed,
                        Some(format!(
                            "its image {} is gone from the spool",
                            t.image_sha256
                        )),
                    )),
                };
                // None: the daemon is stopping; the target stays running in
                // the journal and is taken up at the next start.
                if let Some((state, failure)) = ended {
                    let _ = events.send(Ended(i, state, failure));
                }
            }
            .instrument(span),
        );
    }

    /// Journal the record and wait until it is written (before anything
    /// it records reaches an SP).
    async fn journal_now(&mut self) {
        if let Some(j) = self.journal.clone() {
            j.write_rollout_now(self.record.borrow().clone()).await;
        }
    }
}

/// One target: start (or find again) its update, follow it to its end,
/// then run the after-action. `None` if the daemon stops first.
async fn drive(
    registry: &RegistryHandle,
    t: &Target,
    image: Arc<Image>,
    after: After,
    rollout: watch::Receiver<RolloutRecord>,
) -> Option<(TargetState, Option<String>)> {
    let failed = |why: String| Some((TargetState::Failed, Some(why)));
    let start = StartUpdate::new(
        t.sp.as_str(),
        &t.component,
        t.slot,
        t.update_id,
        ImageSource::Image(image),
    );
    let handle = match registry.start_update(start).await {
        Ok(handle) => handle,
        Err(RegistryError::Update(UpdateError::ShuttingDown) | RegistryError::Stopped) => {
            return None
        }
        Err(e) => return failed(e.to_string()),
    };
    // An abort that came while the prepare was on its way found nothing to
    // abort yet: it wins now that the SP holds the update.
    if rollout.borrow().phase == RolloutPhase::Aborting {
        if let Some(Err(e)) = handle.abort().await {
            warn!(update = %t.update_id, error = %e, "could not abort the target's update");
        }
    }
    let mut rx = handle.watch();
    let Ok(last) = rx
        .wait_for(|p| p.phase.is_terminal())
        .await
        .map(|p| p.clone())
    else {
        return None;
    };
    let reason = last.failure.map(|f| f.reason);
    match last.phase {
        Phase::Complete => {}
        Phase::Aborted => return Some((TargetState::Aborted, reason)),
        _ => return failed(reason.unwrap_or_else(|| "the update did not finish".into())),
    }
    // An SP image is activated under the watchdog, as `mgsctl reset` does.
    let reset = || registry.reset(t.sp.as_str(), &t.component, ResetOptions::default());
    let result = match after {
        After::Nothing => return Some((TargetState::Complete, None)),
        After::Reset => reset().await,
        After::ActivateAndReset => {
            let persisted = match registry.sp(t.sp.as_str()).await {
                Ok(sp) => sp
                    .set_active_slot(handle.spec().component, t.slot, true)
                    .await
                    .map_err(RegistryError::from),
                Err(e) => Err(e),
            };
            match persisted {
                Ok(()) => reset().await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(a) if matches!(a.outcome, Outcome::Activated | Outcome::Reset) => {
            Some((TargetState::Complete, None))
        }
        Ok(a) => failed(format!(
            "updated, but the reset ended {}: {}",
            a.outcome.as_str(),
            a.detail
        )),
        Err(e) => failed(format!("updated, but the after-action failed: {e}")),
    }
}
