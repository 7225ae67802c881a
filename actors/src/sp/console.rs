//! The SP actor's serial console and host phase-2 parts: the traffic the SP
//! starts (console output, a recovering host's image requests) and the
//! console attachment the actor keeps.
//!
//! The actor attaches to a sled's `sp3-host-cpu` console as soon as the SP
//! answers and keeps the attachment alive, so the scrollback fills with
//! nobody watching. Sessions are the daemon's: any number may watch; one at
//! a time may type ([`ConsoleOpen`] with `write`), and a second is refused
//! naming the holder. [`ConsoleDetach`] ends the typing session by force and
//! detaches the SP, which is attached again at once.
//!
//! Attaching: an `SerialConsoleAlreadyAttached` answer may be our own
//! attach whose acknowledgement was lost (the SP refuses a second attach
//! even from the same address), so a keep-alive asks: the attached
//! gateway's is acknowledged. If it is refused, another gateway holds the
//! console; on the first attach since the actor started that is most
//! likely our own previous run, and the actor takes it over (detach,
//! attach, logged); later it waits and asks again.

use super::{Reply, SpActor, Wake};
use crate::console::{ConsoleCounts, Link, LinkState, SharedScrollback};
use crate::error::RpcError;
use crate::phase2::{Lookup, Phase2Seen};
use crate::sp::RpcKind;
use crate::types::SpName;
use actix::prelude::*;
use gateway_messages::{
    encode, version, Header, Message, MessageKind, MgsError, MgsRequest, MgsResponse, SpComponent,
    SpError, SpRequest, SpResponse, MAX_SERIALIZED_SIZE,
};
use metrics::{counter, gauge, Counter};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Most input bytes in one `SerialConsoleWrite` (the datagram's room after
/// the header and the offset).
const MAX_WRITE: usize = MAX_SERIALIZED_SIZE - 8 - 2 - 8;

/// Why a console operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsoleError {
    #[error("{sp}: {component} has no serial console mgsd can attach to")]
    Unavailable { sp: SpName, component: String },
    #[error("{sp}: {component}'s console is held by {holder}; `console detach` ends that session")]
    Held {
        sp: SpName,
        component: String,
        holder: String,
    },
    #[error("{sp}: this console session was ended ({why})")]
    Ended { sp: SpName, why: String },
    #[error("{sp}: read-only console session cannot type")]
    ReadOnly { sp: SpName },
    #[error("{sp}: {source}")]
    Rpc {
        sp: SpName,
        #[source]
        source: RpcError,
    },
    #[error("{sp}: SP actor stopped")]
    Stopped { sp: SpName },
}

/// The typing session, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleHolder {
    pub session: u64,
    /// Who it is (for the refusal of a second one): the client's
    /// description, e.g. `uid 0 (pid 1234)` or an HTTP peer.
    pub holder: String,
}

/// What the actor publishes of its console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleStatus {
    pub state: LinkState,
    pub writer: Option<ConsoleHolder>,
    /// Sessions open (typing and watching).
    pub sessions: usize,
    pub counts: ConsoleCounts,
    /// Why the last attachment ended, if it did.
    pub last_loss: Option<String>,
}

/// The console's parts the SP actor holds.
pub(super) struct ConsoleSide {
    link: Link,
    ring: SharedScrollback,
    end: watch::Sender<u64>,
    status: watch::Sender<ConsoleStatus>,
    writer: Option<ConsoleHolder>,
    sessions: usize,
    next_session: u64,
    /// Sessions' writes waiting for the SP to take their bytes: the input
    /// total each ends at.
    waiters: VecDeque<(u64, oneshot::Sender<Result<(), ConsoleError>>)>,
    /// An attach, keep-alive or detach is under way.
    busy: bool,
    /// Taken over from another holder already (see the module docs).
    took_over: bool,
    /// When an attach or keep-alive is next due.
    due: Instant,
    last_loss: Option<String>,
    metrics: ConsoleMetrics,
}

struct ConsoleMetrics {
    bytes_in: Counter,
    bytes_out: Counter,
    gap: Counter,
    duplicate: Counter,
    resent: Counter,
    ring_dropped: Counter,
}

impl ConsoleMetrics {
    fn new(sp: &str) -> Self {
        let c = |name: &'static str, label: (&'static str, &'static str)| counter!(name, "sp" => sp.to_string(), label.0 => label.1);
        Self {
            bytes_in: c("mgsd_console_bytes_total", ("direction", "in")),
            bytes_out: c("mgsd_console_bytes_total", ("direction", "out")),
            gap: c("mgsd_console_dropped_bytes_total", ("reason", "gap")),
            duplicate: c("mgsd_console_dropped_bytes_total", ("reason", "duplicate")),
            resent: counter!("mgsd_console_resent_bytes_total", "sp" => sp.to_string()),
            ring_dropped: c("mgsd_console_dropped_bytes_total", ("reason", "scrollback")),
        }
    }
}

impl ConsoleSide {
    pub(super) fn new(sp: &str, capacity: usize, enabled: bool) -> Self {
        let (ring, end) = SharedScrollback::new(capacity);
        let state = if enabled {
            LinkState::Detached
        } else {
            LinkState::Unavailable
        };
        let status = watch::Sender::new(ConsoleStatus {
            state,
            writer: None,
            sessions: 0,
            counts: ConsoleCounts::default(),
            last_loss: None,
        });
        Self {
            link: Link::new(state),
            ring,
            end,
            status,
            writer: None,
            sessions: 0,
            next_session: 0,
            waiters: VecDeque::new(),
            busy: false,
            took_over: false,
            due: Instant::now(),
            last_loss: None,
            metrics: ConsoleMetrics::new(sp),
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<ConsoleStatus> {
        self.status.subscribe()
    }

    fn publish(&mut self, sp: &str) {
        let status = ConsoleStatus {
            state: self.link.state,
            writer: self.writer.clone(),
            sessions: self.sessions,
            counts: self.link.counts,
            last_loss: self.last_loss.clone(),
        };
        gauge!("mgsd_console_attached", "sp" => sp.to_string())
            .set(f64::from(u8::from(status.state == LinkState::Attached)));
        gauge!("mgsd_console_sessions", "sp" => sp.to_string()).set(self.sessions as f64);
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

/// A console session: reads the scrollback at its own cursor; a typing
/// session's writes go through the actor. Dropping it ends it.
pub struct ConsoleSession {
    pub id: u64,
    pub write: bool,
    pub sp: SpName,
    pub scrollback: SharedScrollback,
    pub status: watch::Receiver<ConsoleStatus>,
    addr: Addr<SpActor>,
}

impl ConsoleSession {
    /// Type `data`: done once the SP took all of it (or the session ended).
    pub async fn write(&self, data: Vec<u8>) -> Result<(), ConsoleError> {
        let stopped = || ConsoleError::Stopped {
            sp: self.sp.clone(),
        };
        let rx = self
            .addr
            .send(ConsoleInput {
                session: self.id,
                data,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Send a break.
    pub async fn send_break(&self) -> Result<(), ConsoleError> {
        let stopped = || ConsoleError::Stopped {
            sp: self.sp.clone(),
        };
        let rx = self
            .addr
            .send(ConsoleBreak(self.id))
            .await
            .map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Whether this (typing) session still holds the console.
    pub fn holds(&self) -> bool {
        !self.write
            || self
                .status
                .borrow()
                .writer
                .as_ref()
                .is_some_and(|w| w.session == self.id)
    }
}

impl Drop for ConsoleSession {
    fn drop(&mut self) {
        self.addr.do_send(ConsoleClose(self.id));
    }
}

/// Open a session; `holder` names it (shown to a refused second typist).
#[derive(Message)]
#[rtype(result = "Result<ConsoleSession, ConsoleError>")]
pub struct ConsoleOpen {
    pub write: bool,
    pub holder: String,
}

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<(), ConsoleError>>")]
struct ConsoleInput {
    session: u64,
    data: Vec<u8>,
}

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<(), ConsoleError>>")]
struct ConsoleBreak(u64);

#[derive(Message)]
#[rtype(result = "()")]
struct ConsoleClose(u64);

/// End the typing session (if any) and detach the SP's console; the
/// answer names the session ended. The actor attaches again at once.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<Option<ConsoleHolder>, ConsoleError>>")]
pub struct ConsoleDetach;

/// Clear the SP's last phase-2 request.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClearPhase2;

/// What a console request's answer is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum ConsoleReply {
    Attach,
    /// A keep-alive; `probe`: after an `AlreadyAttached` answer.
    KeepAlive {
        probe: bool,
    },
    Write,
    /// A detach; the console is attached again after it.
    Detach,
}

impl SpActor {
    fn console_unavailable(&self) -> ConsoleError {
        ConsoleError::Unavailable {
            sp: self.name.clone(),
            component: SpComponent::SP3_HOST_CPU.as_str().unwrap_or("?").into(),
        }
    }

    pub(super) fn console_publish(&mut self) {
        let name = self.name.clone();
        if let Some(c) = self.console.as_mut() {
            c.publish(name.as_str());
        }
    }

    /// Attach or keep alive, when due. Called from the actor's tick and
    /// whenever the SP may have lost the attachment.
    pub(super) fn console_tick(&mut self, now: Instant) {
        let reachable = self.reachable && self.peer.is_some();
        let settings = self.settings.console.clone();
        let others = !self.requests.is_empty();
        let Some(c) = self.console.as_mut() else {
            return;
        };
        if c.busy || !reachable || now < c.due {
            return;
        }
        // Background traffic: it waits for a moment with no other request
        // under way (an update's status, a client's), unless it is a whole
        // keep-alive interval late.
        if others && now < c.due + settings.keepalive() {
            return;
        }
        let (request, reply) = match c.link.state {
            LinkState::Unavailable | LinkState::Attaching => return,
            LinkState::Detached | LinkState::HeldElsewhere => (
                MgsRequest::SerialConsoleAttach(SpComponent::SP3_HOST_CPU),
                ConsoleReply::Attach,
            ),
            LinkState::Attached => (
                MgsRequest::SerialConsoleKeepAlive,
                ConsoleReply::KeepAlive { probe: false },
            ),
        };
        if matches!(reply, ConsoleReply::Attach) {
            c.link.state = LinkState::Attaching;
        }
        c.busy = true;
        c.due = now + settings.keepalive();
        self.submit(request, RpcKind::Normal, Reply::Console(reply));
        self.console_publish();
    }

    /// Wake the console at `at` (its tick is on the actor's one deadline
    /// structure).
    fn console_wake(&mut self, at: Instant) {
        if let Some(c) = self.console.as_mut() {
            c.due = c.due.min(at);
        }
        self.deadlines.insert(at, Wake::Console);
    }

    /// The SP lost the attachment (it said so, or it was reset): attach
    /// again as soon as it answers.
    pub(super) fn console_lost(&mut self, why: &str) {
        let Some(c) = self.console.as_mut() else {
            return;
        };
        if !matches!(c.link.state, LinkState::Attached | LinkState::Attaching) {
            return;
        }
        info!(why, "serial console attachment lost; attaching again");
        c.link.lost();
        c.last_loss = Some(why.to_string());
        let now = Instant::now();
        self.console_publish();
        self.console_wake(now);
    }

    /// We asked the SP to reset: its attachment goes. Attach again once
    /// it is back (after the retry interval: an attach that beats the
    /// reset would be lost with it).
    pub(super) fn console_reset(&mut self) {
        let retry = self.settings.console.retry();
        self.console_lost("the SP was reset");
        if let Some(c) = self.console.as_mut() {
            c.due = Instant::now() + retry;
        }
    }

    pub(super) fn console_answered(&mut self, reply: ConsoleReply, result: super::RpcResult) {
        let now = Instant::now();
        let retry = self.settings.console.retry();
        let Some(c) = self.console.as_mut() else {
            return;
        };
        let sp_error = |r: &super::RpcResult| match r {
            Err(RpcError::Sp { error, .. }) => Some(*error),
            _ => None,
        };
        match reply {
            ConsoleReply::Attach => {
                c.busy = false;
                match (&result, sp_error(&result)) {
                    (Ok((SpResponse::SerialConsoleAttachAck, _)), _) => {
                        if c.link.state != LinkState::Attached {
                            c.link.attached();
                        }
                        info!("serial console attached");
                    }
                    (_, Some(SpError::SerialConsoleAlreadyAttached)) => {
                        // Ours, with its ack lost? A keep-alive tells.
                        c.busy = true;
                        self.submit(
                            MgsRequest::SerialConsoleKeepAlive,
                            RpcKind::Normal,
                            Reply::Console(ConsoleReply::KeepAlive { probe: true }),
                        );
                    }
                    (
                        _,
                        Some(
                            SpError::RequestUnsupportedForComponent
                            | SpError::RequestUnsupportedForSp,
                        ),
                    ) => {
                        debug!("SP has no host serial console");
                        c.link.state = LinkState::Unavailable;
                    }
                    _ => {
                        debug!(?result, "console attach failed; trying again later");
                        c.link.state = LinkState::Detached;
                        c.due = now + retry;
                        self.deadlines.insert(now + retry, Wake::Console);
                    }
                }
            }
            ConsoleReply::KeepAlive { probe } => {
                c.busy = false;
                match (&result, sp_error(&result)) {
                    (Ok(_), _) if probe => {
                        // The attach was ours after all.
                        c.link.attached();
                        info!("serial console attached (acknowledgement was lost)");
                    }
                    (Ok(_), _) => {}
                    (_, Some(SpError::SerialConsoleNotAttached)) if probe => {
                        if !c.took_over {
                            c.took_over = true;
                            warn!("serial console held by another gateway (likely a previous mgsd); taking it over");
                            c.busy = true;
                            self.submit(
                                MgsRequest::SerialConsoleDetach,
                                RpcKind::Normal,
                                Reply::Console(ConsoleReply::Detach),
                            );
                        } else {
                            c.link.state = LinkState::HeldElsewhere;
                            c.due = now + retry;
                            self.deadlines.insert(now + retry, Wake::Console);
                        }
                    }
                    (_, Some(SpError::SerialConsoleNotAttached)) => {
                        self.console_lost("the SP no longer had us attached (reset or idle)");
                    }
                    _ if probe => {
                        c.link.state = LinkState::Detached;
                    }
                    _ => {}
                }
            }
            ConsoleReply::Detach => {
                c.busy = false;
                c.link.lost();
                c.due = now;
                self.deadlines.insert(now, Wake::Console);
            }
            ConsoleReply::Write => {
                match (&result, sp_error(&result)) {
                    (
                        Ok((
                            SpResponse::SerialConsoleWriteAck {
                                furthest_ingested_offset,
                            },
                            _,
                        )),
                        _,
                    ) => {
                        let took = c.link.write_acked(*furthest_ingested_offset);
                        c.metrics.bytes_out.increment(took as u64);
                    }
                    (_, Some(SpError::SerialConsoleNotAttached)) => {
                        c.link.write_failed();
                        self.console_lost("the SP refused a write: not attached (reset or idle)");
                    }
                    _ => {
                        // Sent again from what the SP took, at the next
                        // tick (the request had its retries already).
                        c.link.write_failed();
                        self.console_wake(now + retry.min(self.settings.console.keepalive()));
                    }
                }
                self.console_writes_done();
            }
        }
        self.console_flush();
        self.console_publish();
    }

    /// Answer the writes the SP has taken.
    fn console_writes_done(&mut self) {
        let Some(c) = self.console.as_mut() else {
            return;
        };
        let done = c.link.done_total();
        while c.waiters.front().is_some_and(|(end, _)| *end <= done) {
            let (_, tx) = c.waiters.pop_front().expect("front");
            let _ = tx.send(Ok(()));
        }
    }

    /// Send the next write, if one is due.
    pub(super) fn console_flush(&mut self) {
        let Some(c) = self.console.as_mut() else {
            return;
        };
        let before = c.link.counts.resent_bytes;
        let Some((offset, data)) = c.link.next_write(MAX_WRITE) else {
            return;
        };
        c.metrics
            .resent
            .increment(c.link.counts.resent_bytes - before);
        self.submit_with(
            MgsRequest::SerialConsoleWrite { offset },
            &data,
            RpcKind::Normal,
            Reply::Console(ConsoleReply::Write),
        );
    }

    /// An SP-initiated request: console output, or a phase-2 image request.
    pub(super) fn on_sp_request(
        &mut self,
        request: SpRequest,
        message_id: u32,
        trailing: &[u8],
        from: SocketAddr,
    ) {
        match request {
            SpRequest::SerialConsole { component, offset } => {
                if component != SpComponent::SP3_HOST_CPU {
                    return;
                }
                let Some(c) = self.console.as_mut() else {
                    return;
                };
                match c.link.state {
                    // Output proves the attach was taken.
                    LinkState::Attaching => c.link.attached(),
                    LinkState::Attached => {}
                    _ => return,
                }
                let arrived = c.link.arrived(offset, trailing);
                c.metrics.gap.increment(arrived.gap);
                c.metrics.duplicate.increment(arrived.duplicate);
                if !arrived.fresh.is_empty() {
                    c.metrics.bytes_in.increment(arrived.fresh.len() as u64);
                    let before = c.ring.bounds().0;
                    c.ring.push(arrived.fresh, &c.end);
                    c.metrics.ring_dropped.increment(c.ring.bounds().0 - before);
                }
                if arrived.gap > 0 {
                    debug!(gap = arrived.gap, offset, "console output lost on the way");
                }
                self.console_publish();
            }
            SpRequest::HostPhase2Data { hash, offset } => {
                self.answer_phase2(hash, offset, message_id, from)
            }
        }
    }

    fn answer_phase2(&mut self, hash: [u8; 32], offset: u64, message_id: u32, to: SocketAddr) {
        let lookup = self.phase2.lookup(&hash, offset);
        let total = match &lookup {
            Lookup::Data { len, .. } | Lookup::BadOffset { len } => Some(*len),
            Lookup::Unavailable => None,
        };
        self.phase2_seen.send_replace(Some(Phase2Seen {
            hash,
            offset,
            total,
            at: Instant::now(),
        }));
        let header = Header {
            version: version::CURRENT,
            message_id,
        };
        let (kind, result) = match &lookup {
            Lookup::Data { .. } => (MgsResponse::HostPhase2Data { hash, offset }, "data"),
            Lookup::Unavailable => (
                MgsResponse::Error(MgsError::HostPhase2Unavailable { hash }),
                "unavailable",
            ),
            Lookup::BadOffset { .. } => (
                MgsResponse::Error(MgsError::HostPhase2ImageBadOffset { hash, offset }),
                "bad_offset",
            ),
        };
        let message = Message {
            header,
            kind: MessageKind::MgsResponse(kind),
        };
        let mut out = [0u8; MAX_SERIALIZED_SIZE];
        let data: &[u8] = match &lookup {
            Lookup::Data { image, len } => {
                let end = (*len).min(offset + MAX_SERIALIZED_SIZE as u64) as usize;
                match image.slice(offset as usize..end, &mut self.chunk_buf) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(error = %e, offset, "cannot read the phase-2 image");
                        return;
                    }
                }
            }
            _ => &[],
        };
        let Ok((n, taken)) = encode(&mut out, &message, data) else {
            return;
        };
        counter!("mgsd_recovery_requests_total", "sp" => self.name.to_string(), "result" => result)
            .increment(1);
        counter!("mgsd_recovery_bytes_total", "sp" => self.name.to_string())
            .increment(taken as u64);
        if let Err(e) = self.transport.send_to(&out[..n], to) {
            debug!(error = %e, "phase-2 answer send failed");
        }
    }
}

impl Handler<ConsoleOpen> for SpActor {
    type Result = Result<ConsoleSession, ConsoleError>;
    fn handle(&mut self, msg: ConsoleOpen, ctx: &mut Context<Self>) -> Self::Result {
        let unavailable = self.console_unavailable();
        let name = self.name.clone();
        let Some(c) = self.console.as_mut() else {
            return Err(unavailable);
        };
        if c.link.state == LinkState::Unavailable {
            return Err(unavailable);
        }
        if msg.write {
            if let Some(w) = &c.writer {
                return Err(ConsoleError::Held {
                    sp: name,
                    component: "sp3-host-cpu".into(),
                    holder: w.holder.clone(),
                });
            }
        }
        c.next_session += 1;
        let id = c.next_session;
        if msg.write {
            c.writer = Some(ConsoleHolder {
                session: id,
                holder: msg.holder,
            });
        }
        c.sessions += 1;
        let session = ConsoleSession {
            id,
            write: msg.write,
            sp: name,
            scrollback: c.ring.clone(),
            status: c.status.subscribe(),
            addr: ctx.address(),
        };
        self.console_publish();
        Ok(session)
    }
}

impl Handler<ConsoleClose> for SpActor {
    type Result = ();
    fn handle(&mut self, msg: ConsoleClose, _: &mut Context<Self>) {
        let Some(c) = self.console.as_mut() else {
            return;
        };
        c.sessions = c.sessions.saturating_sub(1);
        if c.writer.as_ref().is_some_and(|w| w.session == msg.0) {
            c.writer = None;
            // What the session typed and the SP has not taken goes with it.
            c.link.clear_input();
            for (_, tx) in c.waiters.drain(..) {
                let _ = tx.send(Ok(()));
            }
        }
        self.console_publish();
    }
}

impl SpActor {
    /// `Ok` if `session` is the typing session.
    fn console_writer(&self, session: u64) -> Result<(), ConsoleError> {
        let sp = self.name.clone();
        let c = self
            .console
            .as_ref()
            .ok_or(ConsoleError::Stopped { sp: sp.clone() })?;
        match &c.writer {
            Some(w) if w.session == session => Ok(()),
            _ => Err(ConsoleError::Ended {
                sp,
                why: "detached by another client".into(),
            }),
        }
    }
}

impl Handler<ConsoleInput> for SpActor {
    type Result = MessageResult<ConsoleInput>;
    fn handle(&mut self, msg: ConsoleInput, _: &mut Context<Self>) -> Self::Result {
        let _in_span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.console_writer(msg.session) {
            let _ = tx.send(Err(e));
            return MessageResult(rx);
        }
        let c = self.console.as_mut().expect("checked");
        // A session sends its next write once the last is taken, so the
        // queue holds one write at most: always room.
        let n = c.link.queue(&msg.data);
        if n < msg.data.len() {
            warn!(
                dropped = msg.data.len() - n,
                "console input over the queue's bound dropped"
            );
        }
        c.waiters.push_back((c.link.queued_total(), tx));
        self.console_flush();
        MessageResult(rx)
    }
}

impl Handler<ConsoleBreak> for SpActor {
    type Result = MessageResult<ConsoleBreak>;
    fn handle(&mut self, msg: ConsoleBreak, _: &mut Context<Self>) -> Self::Result {
        let _in_span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.console_writer(msg.0) {
            let _ = tx.send(Err(e));
            return MessageResult(rx);
        }
        let (rpc_tx, rpc_rx) = oneshot::channel();
        self.submit(
            MgsRequest::SerialConsoleBreak,
            RpcKind::Normal,
            Reply::Client(rpc_tx),
        );
        let sp = self.name.clone();
        actix::spawn(async move {
            let result = match rpc_rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(source)) => Err(ConsoleError::Rpc { sp, source }),
                Err(_) => Err(ConsoleError::Stopped { sp }),
            };
            let _ = tx.send(result);
        });
        MessageResult(rx)
    }
}

impl Handler<ConsoleDetach> for SpActor {
    type Result = MessageResult<ConsoleDetach>;
    fn handle(&mut self, _: ConsoleDetach, _: &mut Context<Self>) -> Self::Result {
        let _in_span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        let unavailable = self.console_unavailable();
        let Some(c) = self.console.as_mut() else {
            let _ = tx.send(Err(unavailable));
            return MessageResult(rx);
        };
        let ended = c.writer.take();
        if let Some(w) = &ended {
            info!(holder = %w.holder, "console session detached by force");
            c.link.clear_input();
            for (_, tx) in c.waiters.drain(..) {
                let _ = tx.send(Err(ConsoleError::Ended {
                    sp: self.name.clone(),
                    why: "detached by another client".into(),
                }));
            }
        }
        // The SP's attachment goes too (as the reference's detach does),
        // which frees a console another gateway held; we attach again.
        if c.link.state != LinkState::Unavailable {
            c.busy = true;
            c.took_over = true;
            self.submit(
                MgsRequest::SerialConsoleDetach,
                RpcKind::Normal,
                Reply::Console(ConsoleReply::Detach),
            );
        }
        let _ = tx.send(Ok(ended));
        self.console_publish();
        MessageResult(rx)
    }
}

impl Handler<ClearPhase2> for SpActor {
    type Result = ();
    fn handle(&mut self, _: ClearPhase2, _: &mut Context<Self>) {
        self.phase2_seen.send_replace(None);
    }
}
