//! `UpdateDriver`: one per running update. Owns delivery — waiting out the
//! erase, the chunk pipeline, rewinding to the SP's `bytes_received` after a
//! refused or lost chunk, confirming completion with the SP and reading the
//! host-flash hash back — and reports its [`UpdateRecord`] to its SpActor.
//! It does not depend on the client that started the update.

use crate::image::Image;
use crate::rpc::RpcError;
use crate::sp::{DriverReport, Rpc, RpcKind, SpActor};
use crate::update_state::{FailureKind, UpdateRecord};
use crate::SpName;
use actix::prelude::*;
use gateway_messages::{
    HfError, MgsRequest, SpComponent, SpError, SpResponse, UpdateChunk, UpdateId, UpdateStatus,
    MAX_UPDATE_CHUNK_DATA,
};
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Delivery settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverSettings {
    /// Chunks in flight at once. Real SPs queue 3 datagrams; see the
    /// benchmark in the README for how the default was chosen.
    pub pipeline_depth: usize,
    /// How long to wait for one chunk's ack before asking the SP where it is.
    #[serde(rename = "chunk_timeout_ms", with = "crate::rpc::millis")]
    pub chunk_timeout: Duration,
    /// How often to poll the SP while it erases.
    #[serde(rename = "status_poll_interval_ms", with = "crate::rpc::millis")]
    pub status_poll_interval: Duration,
    /// Host-flash device size the SP hashes (MiB).
    pub host_flash_capacity_mib: u32,
    /// Read the host-flash hash back after an update and compare.
    pub verify_host_flash_hash: bool,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            pipeline_depth: 2,
            chunk_timeout: Duration::from_millis(500),
            status_poll_interval: Duration::from_millis(500),
            host_flash_capacity_mib: 32,
            verify_host_flash_hash: true,
        }
    }
}

/// Stop delivering now (abort).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopDriver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for the SP (erase, or after a rewind).
    Asking,
    /// Sending chunks.
    Delivering,
    /// Reading the hash back.
    Verifying,
    /// Finished, failed or stopped.
    Done,
}

/// Report at least every this many acknowledged bytes.
const REPORT_EVERY: u64 = 64 * 1024;

/// Retries of the hash start/read while the SP is busy hashing.
const MAX_HASH_POLLS: u32 = 600;

/// Delivers one update. See the module docs.
pub struct UpdateDriver {
    sp: Addr<SpActor>,
    name: SpName,
    component: SpComponent,
    slot: u16,
    id: UpdateId,
    image: Arc<Image>,
    settings: DriverSettings,
    record: UpdateRecord,
    step: Step,
    next_offset: u32,
    in_flight: usize,
    generation: u64,
    reported_at: u64,
    expected_hash: Option<[u8; 32]>,
    hash_polls: u32,
}

impl UpdateDriver {
    /// A driver for an update the SP has just acknowledged.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sp: Addr<SpActor>,
        name: SpName,
        component: SpComponent,
        slot: u16,
        id: UpdateId,
        image: Arc<Image>,
        settings: DriverSettings,
        record: UpdateRecord,
    ) -> Self {
        Self {
            sp,
            name,
            component,
            slot,
            id,
            image,
            settings,
            record,
            step: Step::Asking,
            next_offset: 0,
            in_flight: 0,
            generation: 0,
            reported_at: 0,
            expected_hash: None,
            hash_polls: 0,
        }
    }

    fn total(&self) -> u32 {
        self.image.len() as u32
    }

    fn rpc(
        &self,
        request: MgsRequest,
        trailing: Vec<u8>,
        kind: RpcKind,
    ) -> impl Future<Output = Result<(SpResponse, Vec<u8>), RpcError>> + 'static {
        let req = self.sp.send(Rpc {
            request,
            trailing,
            kind,
        });
        let sp = self.name.clone();
        async move { req.await.unwrap_or(Err(RpcError::Stopped { sp })) }
    }

    fn report(&mut self) {
        self.reported_at = self.record.bytes_acked;
        self.sp.do_send(DriverReport(self.record.clone()));
    }

    fn ask_status(&mut self, ctx: &mut Context<Self>) {
        self.step = Step::Asking;
        let fut = self.rpc(
            MgsRequest::UpdateStatus(self.component),
            Vec::new(),
            RpcKind::Normal,
        );
        ctx.spawn(
            fut.into_actor(self)
                .map(|res, act, ctx| act.on_status(res, ctx)),
        );
    }

    fn on_status(&mut self, res: Result<(SpResponse, Vec<u8>), RpcError>, ctx: &mut Context<Self>) {
        if self.step == Step::Done {
            return;
        }
        let status = match res {
            Ok((SpResponse::UpdateStatus(s), _)) => s,
            Ok((other, _)) => {
                return self.fail(
                    FailureKind::Other,
                    format!("unexpected answer to a status query: {other:?}"),
                    ctx,
                )
            }
            Err(e) => return self.fail(kind_of(&e), format!("lost contact with the SP: {e}"), ctx),
        };
        match status {
            UpdateStatus::Preparing(p) if p.id == self.id => {
                if let Some(progress) = p.progress {
                    self.record.erase(progress.current, progress.total);
                    self.report();
                }
                let wait = self.settings.status_poll_interval;
                ctx.run_later(wait, |act, ctx| {
                    if act.step != Step::Done {
                        act.ask_status(ctx)
                    }
                });
            }
            UpdateStatus::InProgress(p) if p.id == self.id => {
                if p.total_size != self.total() {
                    return self.fail(
                        FailureKind::Other,
                        format!(
                            "SP expects {} bytes, image has {}",
                            p.total_size,
                            self.total()
                        ),
                        ctx,
                    );
                }
                self.record
                    .delivering(u64::from(p.bytes_received), Instant::now());
                self.report();
                self.next_offset = p.bytes_received;
                self.in_flight = 0;
                self.step = Step::Delivering;
                self.fill(ctx);
            }
            UpdateStatus::Complete(done) if done == self.id => self.verify(ctx),
            other => {
                let what = crate::update_state::SpUpdateState::from(other);
                self.fail(
                    FailureKind::SpReset,
                    format!(
                        "the SP no longer has this update (it reports {:?}): it was reset, lost power, or the update was replaced",
                        what
                    ),
                    ctx,
                );
            }
        }
    }

    fn fill(&mut self, ctx: &mut Context<Self>) {
        let depth = self.settings.pipeline_depth.max(1);
        while self.step == Step::Delivering
            && self.in_flight < depth
            && self.next_offset < self.total()
        {
            let offset = self.next_offset;
            let end = (offset as usize + MAX_UPDATE_CHUNK_DATA).min(self.image.len());
            let data = self.image.data[offset as usize..end].to_vec();
            self.record
                .chunk_sent(u64::from(offset), (end - offset as usize) as u64);
            self.next_offset = end as u32;
            self.in_flight += 1;
            let chunk = UpdateChunk {
                component: self.component,
                id: self.id,
                offset,
            };
            let fut = self.rpc(
                MgsRequest::UpdateChunk(chunk),
                data,
                RpcKind::Once(self.settings.chunk_timeout),
            );
            let generation = self.generation;
            ctx.spawn(
                fut.into_actor(self).map(move |res, act, ctx| {
                    act.on_chunk(generation, offset, end as u64, res, ctx)
                }),
            );
        }
    }

    fn on_chunk(
        &mut self,
        generation: u64,
        offset: u32,
        end: u64,
        res: Result<(SpResponse, Vec<u8>), RpcError>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.generation || self.step != Step::Delivering {
            return; // an answer from before a rewind
        }
        self.in_flight -= 1;
        match res {
            Ok(_) => {
                self.record.acked(end);
                if self.record.bytes_acked >= u64::from(self.total()) {
                    self.record.verifying();
                    self.report();
                    // The SP is the truth: confirm it says Complete.
                    self.ask_status(ctx);
                } else {
                    if self.record.bytes_acked - self.reported_at >= REPORT_EVERY {
                        self.report();
                    }
                    self.fill(ctx);
                }
            }
            Err(RpcError::Timeout { .. }) => {
                self.record.timeout();
                self.rewind(format!("no ack for the chunk at offset {offset}"), ctx);
            }
            Err(RpcError::Sp {
                error: e @ (SpError::InvalidUpdateChunk | SpError::UpdateNotPrepared),
                ..
            }) => {
                self.rewind(format!("SP refused the chunk at offset {offset}: {e}"), ctx);
            }
            Err(RpcError::Stopped { .. }) => self.stop(ctx),
            Err(e) => self.fail(
                kind_of(&e),
                format!("SP refused the chunk at offset {offset}: {e}"),
                ctx,
            ),
        }
    }

    /// Forget everything in flight and ask the SP where it is.
    fn rewind(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.generation += 1;
        self.in_flight = 0;
        self.record.rewind(reason);
        crate::metrics::delivery_event(self.name.as_str(), &self.record.component, false);
        self.ask_status(ctx);
    }

    fn verify(&mut self, ctx: &mut Context<Self>) {
        self.record.verifying();
        self.report();
        if self.component != SpComponent::HOST_CPU_BOOT_FLASH
            || !self.settings.verify_host_flash_hash
        {
            return self.complete(ctx);
        }
        self.step = Step::Verifying;
        let image = self.image.clone();
        let capacity = self
            .settings
            .host_flash_capacity_mib
            .saturating_mul(1024 * 1024);
        let expected = tokio::task::spawn_blocking(move || image.host_flash_slot_hash(capacity));
        ctx.spawn(
            async move { expected.await.ok() }
                .into_actor(self)
                .map(|hash, act, ctx| {
                    act.expected_hash = hash;
                    act.start_hash(ctx);
                }),
        );
    }

    fn start_hash(&mut self, ctx: &mut Context<Self>) {
        let fut = self.rpc(
            MgsRequest::StartHostFlashHash { slot: self.slot },
            Vec::new(),
            RpcKind::Normal,
        );
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(_) => act.read_hash(ctx),
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => act.later(ctx, Self::start_hash),
            Err(RpcError::Sp {
                error: SpError::RequestUnsupportedForSp,
                ..
            }) => {
                act.record.last_error =
                    Some("this SP cannot hash its host flash; not verified".into());
                act.complete(ctx);
            }
            Err(e) => act.fail(
                kind_of(&e),
                format!("could not start the host-flash hash: {e}"),
                ctx,
            ),
        }));
    }

    fn read_hash(&mut self, ctx: &mut Context<Self>) {
        let fut = self.rpc(
            MgsRequest::GetHostFlashHash { slot: self.slot },
            Vec::new(),
            RpcKind::Normal,
        );
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((SpResponse::HostFlashHash(got), _)) => match act.expected_hash {
                Some(want) if want == got => {
                    act.record.hash_verified = true;
                    act.complete(ctx);
                }
                Some(want) => act.fail(
                    FailureKind::HashMismatch,
                    format!(
                        "host-flash slot {} hash mismatch: SP has {}, expected {}",
                        act.slot,
                        crate::image::ImageHash(got),
                        crate::image::ImageHash(want)
                    ),
                    ctx,
                ),
                None => act.fail(
                    FailureKind::Other,
                    "could not compute the expected hash".into(),
                    ctx,
                ),
            },
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::HashInProgress),
                ..
            }) => act.later(ctx, Self::read_hash),
            Err(RpcError::Sp {
                error: SpError::Hf(HfError::RecalculateHash | HfError::HashUncalculated),
                ..
            }) => act.later(ctx, Self::start_hash),
            Ok((other, _)) => act.fail(
                FailureKind::Other,
                format!("unexpected answer to a hash read: {other:?}"),
                ctx,
            ),
            Err(e) => act.fail(
                kind_of(&e),
                format!("could not read the host-flash hash: {e}"),
                ctx,
            ),
        }));
    }

    fn later(&mut self, ctx: &mut Context<Self>, then: fn(&mut Self, &mut Context<Self>)) {
        self.hash_polls += 1;
        if self.hash_polls > MAX_HASH_POLLS {
            return self.fail(
                FailureKind::Other,
                "the SP never finished hashing the host flash".into(),
                ctx,
            );
        }
        let wait = self
            .settings
            .status_poll_interval
            .min(Duration::from_millis(100));
        ctx.run_later(wait, move |act, ctx| {
            if act.step != Step::Done {
                then(act, ctx)
            }
        });
    }

    fn complete(&mut self, ctx: &mut Context<Self>) {
        self.record.complete(Instant::now());
        info!(sp = %self.name, update = %self.id, rewinds = self.record.rewinds, "update complete");
        self.finish(ctx);
    }

    fn fail(&mut self, kind: FailureKind, reason: String, ctx: &mut Context<Self>) {
        warn!(sp = %self.name, update = %self.id, %reason, "update failed");
        self.record.fail(kind, reason, Instant::now());
        self.finish(ctx);
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        self.report();
        self.stop(ctx);
    }

    fn stop(&mut self, ctx: &mut Context<Self>) {
        self.step = Step::Done;
        ctx.stop();
    }
}

/// Classify an RPC failure.
fn kind_of(e: &RpcError) -> FailureKind {
    match e {
        RpcError::Timeout { .. } | RpcError::NotDiscovered { .. } | RpcError::Io { .. } => {
            FailureKind::SpUnreachable
        }
        RpcError::Sp { .. } | RpcError::Busy { .. } => FailureKind::SpRefused,
        RpcError::Unexpected { .. } | RpcError::Stopped { .. } => FailureKind::Other,
    }
}

impl Actor for UpdateDriver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.ask_status(ctx);
    }
}

impl Handler<StopDriver> for UpdateDriver {
    type Result = ();
    fn handle(&mut self, _: StopDriver, ctx: &mut Context<Self>) {
        self.stop(ctx);
    }
}
