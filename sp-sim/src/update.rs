//! The SP firmware's update state machines (spec §8.6), as a plain struct
//! with no sockets and no clock of its own: callers pass `now`.
//!
//! Three updaters — the SP image, the host boot flash, the RoT (shared by
//! `rot` and `stage0`) — and one shared RAM buffer that whichever updater
//! prepared first owns until it completes, aborts or fails. All of it is RAM
//! state: [`Updates::reboot`] forgets everything.

use crate::flash::{HostFlash, SlotWriter, SECTOR_SIZE};
use gateway_messages::{
    ComponentUpdatePrepare, RotError, SpComponent, SpError, SpUpdatePrepare, UpdateChunk, UpdateId,
    UpdateInProgressStatus, UpdatePreparationProgress, UpdatePreparationStatus, UpdateStatus,
};
use tokio::time::{Duration, Instant};

/// Host-flash driver code for "sector 0 is reserved" (`HfError::Sector0IsReserved`).
pub const HF_SECTOR0_IS_RESERVED: u32 = 6;

/// Limits and timings of the updaters.
#[derive(Debug, Clone)]
pub struct UpdateLimits {
    /// Time to erase one 64 KiB host-flash sector.
    pub sector_erase: Duration,
    /// Largest SP image.
    pub sp_image_capacity: u32,
    /// Largest RoT / stage0 image.
    pub rot_slot_capacity: u32,
    /// Whether this board has a host boot flash (sleds only).
    pub has_host_flash: bool,
}

/// One updater's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing since boot.
    None,
    /// Host flash only: erasing sectors 1..N-1 since `started`.
    Erasing {
        /// Update id.
        id: UpdateId,
        /// Target slot.
        slot: u16,
        /// Image size.
        total: u32,
        /// When the erase began.
        started: Instant,
    },
    /// Taking chunks.
    Accepting {
        /// Update id.
        id: UpdateId,
        /// Target slot.
        slot: u16,
        /// Component the updater serves (rot or stage0 for the RoT).
        component: SpComponent,
        /// Bytes accepted: the next expected offset.
        received: u32,
        /// Image size.
        total: u32,
    },
    /// Every byte written.
    Complete(UpdateId),
    /// Aborted on request.
    Aborted(UpdateId),
    /// Failed with a driver code (host flash, SP).
    Failed {
        /// Update id.
        id: UpdateId,
        /// Opaque code.
        code: u32,
    },
    /// RoT failure.
    RotFailed {
        /// Update id.
        id: UpdateId,
        /// What the RoT said.
        error: RotError,
    },
}

impl State {
    fn id(&self) -> Option<UpdateId> {
        match *self {
            State::None => None,
            State::Erasing { id, .. }
            | State::Accepting { id, .. }
            | State::Complete(id)
            | State::Aborted(id)
            | State::Failed { id, .. }
            | State::RotFailed { id, .. } => Some(id),
        }
    }

    /// Holding the shared buffer.
    fn active(&self) -> bool {
        matches!(self, State::Erasing { .. } | State::Accepting { .. })
    }
}

/// Which updater a component belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Sp,
    Host,
    Rot,
}

/// All update state of one SP.
#[derive(Debug)]
pub struct Updates {
    /// SP image updater.
    pub sp: State,
    /// Host boot flash updater.
    pub host: State,
    /// RoT / stage0 updater.
    pub rot: State,
    host_writer: Option<(u16, SlotWriter)>,
    limits: UpdateLimits,
}

type R<T> = Result<T, SpError>;

fn rot_error_to_sp(e: RotError) -> SpError {
    match e {
        RotError::MessageError { code } => SpError::UpdateFailed(code),
        RotError::Sprot(e) => SpError::Sprot(e),
        RotError::Spi(e) => SpError::Spi(e),
        RotError::Sprockets(e) => SpError::Sprockets(e),
        RotError::Update(e) => SpError::Update(e),
        RotError::Watchdog(e) => SpError::Watchdog(e),
    }
}

impl Updates {
    /// Fresh (booted) state.
    pub fn new(limits: UpdateLimits) -> Self {
        Self {
            sp: State::None,
            host: State::None,
            rot: State::None,
            host_writer: None,
            limits,
        }
    }

    /// The SP rebooted: RAM state is gone. An interrupted host-flash write
    /// leaves what it wrote.
    pub fn reboot(&mut self, flash: Option<&mut HostFlash>) {
        self.abandon_host_write(flash);
        self.sp = State::None;
        self.host = State::None;
        self.rot = State::None;
    }

    fn which(&self, component: SpComponent) -> R<Which> {
        match component {
            SpComponent::SP_ITSELF => Ok(Which::Sp),
            SpComponent::HOST_CPU_BOOT_FLASH if self.limits.has_host_flash => Ok(Which::Host),
            SpComponent::ROT | SpComponent::STAGE0 => Ok(Which::Rot),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn state(&self, w: Which) -> State {
        match w {
            Which::Sp => self.sp,
            Which::Host => self.host,
            Which::Rot => self.rot,
        }
    }

    fn state_mut(&mut self, w: Which) -> &mut State {
        match w {
            Which::Sp => &mut self.sp,
            Which::Host => &mut self.host,
            Which::Rot => &mut self.rot,
        }
    }

    /// Who holds the shared update buffer.
    pub fn buffer_owner(&self) -> Option<SpComponent> {
        if self.sp.active() {
            Some(SpComponent::SP_ITSELF)
        } else if self.host.active() {
            Some(SpComponent::HOST_CPU_BOOT_FLASH)
        } else if let State::Accepting { component, .. } = self.rot {
            Some(component)
        } else {
            None
        }
    }

    /// Let time pass: finish the host-flash erase when it is due.
    pub fn tick(&mut self, flash: Option<&mut HostFlash>, now: Instant) {
        if let (
            State::Erasing {
                id,
                slot,
                total,
                started,
            },
            Some(flash),
        ) = (self.host, flash)
        {
            let to_erase = flash.sectors().saturating_sub(1);
            if self.erased_sectors(started, now, to_erase) >= to_erase {
                self.host_writer = Some((slot, flash.writer(slot)));
                self.host = State::Accepting {
                    id,
                    slot,
                    component: SpComponent::HOST_CPU_BOOT_FLASH,
                    received: 0,
                    total,
                };
            }
        }
    }

    fn erased_sectors(&self, started: Instant, now: Instant, to_erase: u32) -> u32 {
        let per = self.limits.sector_erase;
        if per.is_zero() {
            return to_erase;
        }
        let n = now.saturating_duration_since(started).as_nanos() / per.as_nanos();
        n.min(u128::from(to_erase)) as u32
    }

    /// Status as the SP reports it.
    pub fn status(
        &mut self,
        component: SpComponent,
        mut flash: Option<&mut HostFlash>,
        now: Instant,
    ) -> R<UpdateStatus> {
        let w = self.which(component)?;
        self.tick(flash.as_deref_mut(), now);
        Ok(match self.state(w) {
            State::None => UpdateStatus::None,
            State::Erasing { id, started, .. } => {
                let total = flash.map_or(1, |f| f.sectors());
                let erased = self.erased_sectors(started, now, total.saturating_sub(1));
                UpdateStatus::Preparing(UpdatePreparationStatus {
                    id,
                    progress: Some(UpdatePreparationProgress {
                        current: 1 + erased,
                        total,
                    }),
                })
            }
            State::Accepting {
                id,
                received,
                total,
                ..
            } => UpdateStatus::InProgress(UpdateInProgressStatus {
                id,
                bytes_received: received,
                total_size: total,
            }),
            State::Complete(id) => UpdateStatus::Complete(id),
            State::Aborted(id) => UpdateStatus::Aborted(id),
            State::Failed { id, code } => UpdateStatus::Failed { id, code },
            State::RotFailed { id, error } => UpdateStatus::RotError { id, error },
        })
    }

    /// Own state first, then the shared buffer (spec: prepare check order).
    fn check_free(
        &mut self,
        w: Which,
        blocks: impl Fn(&State) -> bool,
        flash: Option<&mut HostFlash>,
        now: Instant,
    ) -> R<()> {
        let component = match w {
            Which::Sp => SpComponent::SP_ITSELF,
            Which::Host => SpComponent::HOST_CPU_BOOT_FLASH,
            Which::Rot => SpComponent::ROT,
        };
        if blocks(&self.state(w)) {
            return Err(SpError::UpdateInProgress(
                self.status(component, flash, now)?,
            ));
        }
        match self.buffer_owner() {
            Some(owner) if self.which(owner) != Ok(w) => {
                Err(SpError::OtherComponentUpdateInProgress(owner))
            }
            _ => Ok(()),
        }
    }

    /// `SpUpdatePrepare`. Boards here have no aux flash.
    pub fn sp_prepare(&mut self, req: SpUpdatePrepare, now: Instant) -> R<()> {
        // A Complete or Failed SP update blocks a new one until reset/abort.
        self.check_free(
            Which::Sp,
            |s| !matches!(s, State::None | State::Aborted(_)),
            None,
            now,
        )?;
        if req.aux_flash_size > 0 {
            return Err(SpError::RequestUnsupportedForSp);
        }
        if req.sp_image_size > self.limits.sp_image_capacity {
            return Err(SpError::UpdateIsTooLarge);
        }
        self.sp = State::Accepting {
            id: req.id,
            slot: 0,
            component: SpComponent::SP_ITSELF,
            received: 0,
            total: req.sp_image_size,
        };
        Ok(())
    }

    /// `ComponentUpdatePrepare` (host boot flash, rot, stage0).
    pub fn component_prepare(
        &mut self,
        req: ComponentUpdatePrepare,
        mut flash: Option<&mut HostFlash>,
        now: Instant,
    ) -> R<()> {
        let w = self.which(req.component)?;
        match w {
            Which::Sp => Err(SpError::RequestUnsupportedForComponent),
            Which::Host => {
                self.check_free(w, State::active, flash.as_deref_mut(), now)?;
                let flash = flash.ok_or(SpError::RequestUnsupportedForComponent)?;
                if req.slot > 1 {
                    return Err(SpError::InvalidSlotForComponent);
                }
                if !flash.muxed_to_sp {
                    return Err(SpError::UpdateSlotBusy);
                }
                if req.total_size > flash.capacity {
                    return Err(SpError::UpdateIsTooLarge);
                }
                self.abandon_host_write(Some(flash));
                flash.invalidate(req.slot);
                self.host = State::Erasing {
                    id: req.id,
                    slot: req.slot,
                    total: req.total_size,
                    started: now,
                };
                self.tick(Some(flash), now);
                Ok(())
            }
            Which::Rot => {
                self.check_free(w, |s| matches!(s, State::Accepting { .. }), flash, now)?;
                let valid = matches!(
                    (req.component, req.slot),
                    (SpComponent::ROT, 0 | 1) | (SpComponent::STAGE0, 1)
                );
                if !valid {
                    return Err(SpError::InvalidSlotForComponent);
                }
                if req.total_size > self.limits.rot_slot_capacity {
                    return Err(SpError::UpdateIsTooLarge);
                }
                self.rot = State::Accepting {
                    id: req.id,
                    slot: req.slot,
                    component: req.component,
                    received: 0,
                    total: req.total_size,
                };
                Ok(())
            }
        }
    }

    /// `UpdateChunk`: accept `data` at exactly the next offset.
    pub fn chunk(
        &mut self,
        chunk: UpdateChunk,
        data: &[u8],
        mut flash: Option<&mut HostFlash>,
        now: Instant,
    ) -> R<()> {
        let w = match chunk.component {
            SpComponent::SP_AUX_FLASH => Which::Sp,
            c => self.which(c)?,
        };
        self.tick(flash.as_deref_mut(), now);
        let state = self.state(w);
        let Some(current) = state.id() else {
            return Err(SpError::UpdateNotPrepared);
        };
        // The SP updater checks the id before anything else; the others
        // look at their state first.
        let id_err = SpError::InvalidUpdateId {
            sp_update_id: current,
        };
        if w == Which::Sp && chunk.id != current {
            return Err(id_err);
        }
        let (received, total) = match state {
            State::Accepting {
                received,
                total,
                component,
                ..
            } => {
                if w == Which::Sp && chunk.component != component {
                    return Err(SpError::InvalidUpdateChunk);
                }
                (received, total)
            }
            State::Failed { code, .. } => return Err(SpError::UpdateFailed(code)),
            State::RotFailed { error, .. } => return Err(rot_error_to_sp(error)),
            _ => return Err(SpError::UpdateNotPrepared),
        };
        if chunk.id != current {
            return Err(id_err);
        }
        let len = u32::try_from(data.len()).map_err(|_| SpError::InvalidUpdateChunk)?;
        if chunk.offset != received || received.checked_add(len).is_none_or(|end| end > total) {
            return Err(SpError::InvalidUpdateChunk);
        }
        if w == Which::Host {
            let sector0 = SECTOR_SIZE.saturating_sub(received).min(len) as usize;
            if data[..sector0].iter().any(|&b| b != 0xFF) {
                self.host = State::Failed {
                    id: current,
                    code: HF_SECTOR0_IS_RESERVED,
                };
                self.abandon_host_write(flash);
                return Err(SpError::UpdateFailed(HF_SECTOR0_IS_RESERVED));
            }
            if let Some((_, wr)) = self.host_writer.as_mut() {
                wr.write(data);
            }
        }
        let received = received + len;
        if let State::Accepting { received: r, .. } = self.state_mut(w) {
            *r = received;
        }
        if received == total {
            *self.state_mut(w) = State::Complete(current);
            if w == Which::Host {
                self.abandon_host_write(flash);
            }
        }
        Ok(())
    }

    /// `UpdateAbort`: the SP aborts only the update with the matching id.
    pub fn abort(
        &mut self,
        component: SpComponent,
        id: UpdateId,
        mut flash: Option<&mut HostFlash>,
        now: Instant,
    ) -> R<()> {
        let w = self.which(component)?;
        self.tick(flash.as_deref_mut(), now);
        let state = self.state(w);
        let Some(current) = state.id() else {
            return Err(SpError::UpdateNotPrepared);
        };
        if current != id || matches!(state, State::Complete(_)) {
            return Err(SpError::UpdateInProgress(
                self.status(component, flash, now)?,
            ));
        }
        if w == Which::Host {
            self.abandon_host_write(flash);
        }
        *self.state_mut(w) = State::Aborted(id);
        Ok(())
    }

    /// Record whatever a host-flash write left behind.
    fn abandon_host_write(&mut self, flash: Option<&mut HostFlash>) {
        let Some(flash) = flash else { return };
        if let Some((slot, writer)) = self.host_writer.take() {
            flash.commit(slot, writer);
        } else if let State::Erasing { slot, .. } = self.host {
            // Interrupted mid-erase: count the slot as erased.
            let writer = flash.writer(slot);
            flash.commit(slot, writer);
        }
    }
}
