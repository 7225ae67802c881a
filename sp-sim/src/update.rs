//! The SP firmware's update state machines (spec §8.6), as a plain struct
//! with no sockets and no clock of its own: callers pass `now`.
//!
//! Three updaters — the SP image, the host boot flash, the RoT (shared by
//! `rot` and `stage0`) — and one shared RAM buffer that whichever updater
//! prepared first owns until it completes, aborts or fails. All of it is RAM
//! state: [`Updates::reboot`] forgets everything, except the aux flash of
//! boards that have one (switches), which is flash.
//!
//! The content checks follow `firmware-artifacts.md`:
//! - SP image with aux flash (§4): the SP scans its aux flash slots for the
//!   requested CHCK; without a match it erases a slot and takes the aux
//!   image as `sp-aux-flash` chunks first, then verifies it.
//! - End of an SP update (§6): the new image needs a header at 0x298 with
//!   the current magic, its end within the bank, and a caboose BORD of at
//!   most 32 bytes equal to the running image's BORD (if that has one).
//! - RoT (§5): block 0 of a `rot` image needs the current header magic at
//!   0x130 and a reset vector inside the target slot's execution range.

use crate::flash::{HostFlash, SlotWriter, SECTOR_SIZE};
use artifacts::build::rot_slot_range;
use artifacts::image::{Caboose, HeaderMagic, ImageHeader, HEADER_MAGIC};
use artifacts::image::{ROT_HEADER_OFFSET, SP_HEADER_OFFSET};
use artifacts::AuxFlash;
use gateway_messages::{
    ComponentUpdatePrepare, RotError, SpComponent, SpError, SpUpdatePrepare, UpdateChunk,
    UpdateError, UpdateId, UpdateInProgressStatus, UpdatePreparationProgress,
    UpdatePreparationStatus, UpdateStatus,
};
use tokio::time::{Duration, Instant};

/// Host-flash driver code for "sector 0 is reserved" (`HfError::Sector0IsReserved`).
pub const HF_SECTOR0_IS_RESERVED: u32 = 6;
/// SP update code: the written aux flash slot does not yield the requested
/// CHCK (`ChckMismatch`).
pub const SP_AUX_CHCK_MISMATCH: u32 = 9;
/// SP update code: the new image's BORD differs from the running one's.
pub const SP_IMAGE_BOARD_MISMATCH: u32 = 22;
/// SP update code: the new image's BORD can't be read.
pub const SP_IMAGE_BOARD_UNKNOWN: u32 = 23;
/// Size of one aux flash slot (Sidecar: 32 MiB in 16 slots).
pub const AUX_SLOT_SIZE: u32 = 2 * 1024 * 1024;
/// Sectors of an aux flash slot, each erased in `sector_erase`.
pub const AUX_SLOT_SECTORS: u32 = AUX_SLOT_SIZE / SECTOR_SIZE;
/// The RoT takes images in blocks of this size; block 0 is checked (and
/// written) last.
pub const ROT_BLOCK_SIZE: usize = 512;
/// Longest BORD the SP can compare.
const MAX_BORD_LEN: usize = 32;

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
    /// Aux flash slots of [`AUX_SLOT_SIZE`] (switches); 0: no aux flash.
    pub aux_flash_slots: u32,
}

/// The aux flash of a switch: slots of [`AUX_SLOT_SIZE`], each holding only
/// the bytes written since its last erase (the rest reads as erased).
#[derive(Debug, Clone)]
pub struct AuxFlashChip {
    slots: Vec<Vec<u8>>,
    /// The slot the running image uses; scans start there.
    pub active: usize,
}

impl AuxFlashChip {
    /// `slots` erased slots.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: vec![Vec::new(); slots.max(1)],
            active: 0,
        }
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// What was written to slot `i` since its last erase.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.slots[i]
    }

    /// The CHCK of slot `i`, if it holds a valid aux image (layout, CRCs
    /// and CHCK = SHA3-256 of AUXI).
    pub fn chck(&self, i: usize) -> Option<[u8; 32]> {
        AuxFlash::parse(self.slots[i].clone())
            .ok()
            .map(|a| a.chck())
    }

    /// The first slot, from the active one on, holding `chck`.
    fn find(&self, chck: &[u8; 32]) -> Option<usize> {
        let n = self.slots.len();
        (0..n)
            .map(|k| (self.active + k) % n)
            .find(|&i| self.chck(i).as_ref() == Some(chck))
    }

    /// The slot to erase: the first empty or invalid even slot, else the
    /// next even slot after the active one.
    fn pick_for_write(&self) -> usize {
        let n = self.slots.len();
        (0..n)
            .step_by(2)
            .find(|&i| self.chck(i).is_none())
            .unwrap_or(((self.active & !1) + 2) % n)
    }
}

/// The aux flash part of the current SP update.
#[derive(Debug, Clone, Copy)]
struct SpAux {
    size: u32,
    chck: [u8; 32],
    slot: usize,
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
    /// SP image with aux flash: the scan (and erase, without a match) is
    /// done; the first chunk is `sp` if `found_match`, else `sp-aux-flash`.
    AuxScanned {
        /// Update id.
        id: UpdateId,
        /// Whether a slot already holds the requested aux image.
        found_match: bool,
        /// Aux plus SP image size.
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
            | State::AuxScanned { id, .. }
            | State::Complete(id)
            | State::Aborted(id)
            | State::Failed { id, .. }
            | State::RotFailed { id, .. } => Some(id),
        }
    }

    /// Holding the shared buffer.
    fn active(&self) -> bool {
        matches!(
            self,
            State::Erasing { .. } | State::Accepting { .. } | State::AuxScanned { .. }
        )
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
    /// Aux flash (switches): survives reboots.
    aux: Option<AuxFlashChip>,
    /// Aux part of the current SP update.
    sp_aux: Option<SpAux>,
    /// SP image bytes received so far.
    sp_image: Vec<u8>,
    /// The image of a completed SP update, until taken.
    sp_completed: Option<Vec<u8>>,
    /// BORD of the running SP image (None: no caboose or no BORD).
    running_sp_board: Option<Vec<u8>>,
    /// The first [`ROT_BLOCK_SIZE`] bytes of the current RoT image.
    rot_block0: Vec<u8>,
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
            aux: (limits.aux_flash_slots > 0)
                .then(|| AuxFlashChip::new(limits.aux_flash_slots as usize)),
            limits,
            sp_aux: None,
            sp_image: Vec::new(),
            sp_completed: None,
            running_sp_board: None,
            rot_block0: Vec::new(),
        }
    }

    /// The aux flash, on boards that have one.
    pub fn aux_flash(&self) -> Option<&AuxFlashChip> {
        self.aux.as_ref()
    }

    /// Set the BORD of the running SP image, which a new image must match.
    pub fn set_running_sp_board(&mut self, board: Option<Vec<u8>>) {
        self.running_sp_board = board;
    }

    /// The image of the SP update that just completed (once).
    pub fn take_completed_sp_image(&mut self) -> Option<Vec<u8>> {
        self.sp_completed.take()
    }

    /// The SP rebooted: RAM state is gone. An interrupted host-flash write
    /// leaves what it wrote.
    pub fn reboot(&mut self, flash: Option<&mut HostFlash>) {
        self.abandon_host_write(flash);
        self.sp = State::None;
        self.host = State::None;
        self.rot = State::None;
        self.sp_aux = None;
        self.sp_image = Vec::new();
        self.sp_completed = None;
        self.rot_block0 = Vec::new();
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

    /// Let time pass: finish the host-flash or aux-flash erase when due.
    pub fn tick(&mut self, flash: Option<&mut HostFlash>, now: Instant) {
        if let State::Erasing {
            id, total, started, ..
        } = self.sp
        {
            if self.erased_sectors(started, now, AUX_SLOT_SECTORS) >= AUX_SLOT_SECTORS {
                self.sp = State::AuxScanned {
                    id,
                    found_match: false,
                    total,
                };
            }
        }
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
            State::Erasing { id, started, .. } if w == Which::Sp => {
                let erased = self.erased_sectors(started, now, AUX_SLOT_SECTORS);
                UpdateStatus::Preparing(UpdatePreparationStatus {
                    id,
                    progress: Some(UpdatePreparationProgress {
                        current: erased,
                        total: AUX_SLOT_SECTORS,
                    }),
                })
            }
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
            State::AuxScanned {
                id,
                found_match,
                total,
            } => UpdateStatus::SpUpdateAuxFlashChckScan {
                id,
                found_match,
                total_size: total,
            },
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

    /// `SpUpdatePrepare`. With aux flash: scan the slots for the requested
    /// CHCK; without a match, start erasing a slot.
    pub fn sp_prepare(&mut self, req: SpUpdatePrepare, now: Instant) -> R<()> {
        // A Complete or Failed SP update blocks a new one until reset/abort.
        self.check_free(
            Which::Sp,
            |s| !matches!(s, State::None | State::Aborted(_)),
            None,
            now,
        )?;
        if req.aux_flash_size > 0 && self.aux.is_none() {
            return Err(SpError::RequestUnsupportedForSp);
        }
        if req.sp_image_size > self.limits.sp_image_capacity || req.aux_flash_size > AUX_SLOT_SIZE {
            return Err(SpError::UpdateIsTooLarge);
        }
        self.sp_image = Vec::new();
        self.sp_completed = None;
        self.sp_aux = None;
        let total = req.aux_flash_size + req.sp_image_size;
        let Some(aux) = self.aux.as_mut().filter(|_| req.aux_flash_size > 0) else {
            self.sp = State::Accepting {
                id: req.id,
                slot: 0,
                component: SpComponent::SP_ITSELF,
                received: 0,
                total,
            };
            return Ok(());
        };
        let (slot, found) = match aux.find(&req.aux_flash_chck) {
            Some(slot) => (slot, true),
            None => (aux.pick_for_write(), false),
        };
        self.sp_aux = Some(SpAux {
            size: req.aux_flash_size,
            chck: req.aux_flash_chck,
            slot,
        });
        if found {
            self.sp = State::AuxScanned {
                id: req.id,
                found_match: true,
                total,
            };
        } else {
            aux.slots[slot] = Vec::new();
            self.sp = State::Erasing {
                id: req.id,
                slot: slot as u16,
                total,
                started: now,
            };
            self.tick(None, now);
        }
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
                self.rot_block0 = Vec::new();
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
        if w == Which::Sp {
            return self.sp_chunk(chunk, data);
        }
        let state = self.state(w);
        let Some(current) = state.id() else {
            return Err(SpError::UpdateNotPrepared);
        };
        let (slot, component, received, total) = match state {
            State::Accepting {
                slot,
                component,
                received,
                total,
                ..
            } => (slot, component, received, total),
            State::Failed { code, .. } => return Err(SpError::UpdateFailed(code)),
            State::RotFailed { error, .. } => return Err(rot_error_to_sp(error)),
            _ => return Err(SpError::UpdateNotPrepared),
        };
        if chunk.id != current {
            return Err(SpError::InvalidUpdateId {
                sp_update_id: current,
            });
        }
        let len = u32::try_from(data.len()).map_err(|_| SpError::InvalidUpdateChunk)?;
        if chunk.offset != received || received.checked_add(len).is_none_or(|end| end > total) {
            return Err(SpError::InvalidUpdateChunk);
        }
        match w {
            Which::Host => {
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
            Which::Rot => {
                let keep = ROT_BLOCK_SIZE.saturating_sub(self.rot_block0.len());
                self.rot_block0
                    .extend_from_slice(&data[..keep.min(data.len())]);
            }
            Which::Sp => unreachable!("handled by sp_chunk"),
        }
        let received = received + len;
        if let State::Accepting { received: r, .. } = self.state_mut(w) {
            *r = received;
        }
        if received == total {
            if w == Which::Rot && component == SpComponent::ROT && !self.rot_block0_valid(slot) {
                // Block 0 is written last, at finish: the RoT refuses it.
                let error = RotError::Update(UpdateError::InvalidHeaderBlock);
                self.rot = State::RotFailed { id: current, error };
                return Err(rot_error_to_sp(error));
            }
            *self.state_mut(w) = State::Complete(current);
            if w == Which::Host {
                self.abandon_host_write(flash);
            }
        }
        Ok(())
    }

    /// The RoT update server's check of block 0 of a Hubris image for
    /// `slot`: the current header magic at 0x130, and the reset vector
    /// (word 0x04, bit 28 masked) inside the slot's execution range.
    fn rot_block0_valid(&self, slot: u16) -> bool {
        let word = |at: usize| {
            self.rot_block0
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let reset_ok = match (word(4), rot_slot_range(slot)) {
            (Some(reset), Some(range)) => range.contains(&(reset & !(1 << 28))),
            _ => false,
        };
        reset_ok && word(ROT_HEADER_OFFSET) == Some(HEADER_MAGIC)
    }

    /// An `sp` or `sp-aux-flash` chunk. The SP updater checks the id
    /// before anything else. With aux flash, the aux image (if the scan
    /// found no match) comes first as `sp-aux-flash` at offsets
    /// 0..aux_size, then the image as `sp` at 0..sp_size; progress counts
    /// both (the aux size when it was skipped).
    fn sp_chunk(&mut self, chunk: UpdateChunk, data: &[u8]) -> R<()> {
        let Some(current) = self.sp.id() else {
            return Err(SpError::UpdateNotPrepared);
        };
        if chunk.id != current {
            return Err(SpError::InvalidUpdateId {
                sp_update_id: current,
            });
        }
        let aux_size = self.sp_aux.map_or(0, |a| a.size);
        let (component, received, total) = match self.sp {
            State::Accepting {
                component,
                received,
                total,
                ..
            } => (component, received, total),
            State::AuxScanned {
                found_match: true,
                total,
                ..
            } => (SpComponent::SP_ITSELF, aux_size, total),
            State::AuxScanned {
                found_match: false,
                total,
                ..
            } => (SpComponent::SP_AUX_FLASH, 0, total),
            State::Failed { code, .. } => return Err(SpError::UpdateFailed(code)),
            _ => return Err(SpError::UpdateNotPrepared),
        };
        if chunk.component != component {
            return Err(SpError::InvalidUpdateChunk);
        }
        let (base, end) = if component == SpComponent::SP_AUX_FLASH {
            (0, aux_size)
        } else {
            (aux_size, total)
        };
        let len = u32::try_from(data.len()).map_err(|_| SpError::InvalidUpdateChunk)?;
        if chunk.offset.checked_add(base) != Some(received)
            || received.checked_add(len).is_none_or(|e| e > end)
        {
            return Err(SpError::InvalidUpdateChunk);
        }
        let received = received + len;
        let mut component = component;
        if component == SpComponent::SP_AUX_FLASH {
            let (aux, sp_aux) = match (self.aux.as_mut(), self.sp_aux) {
                (Some(aux), Some(sp_aux)) => (aux, sp_aux),
                _ => return Err(SpError::UpdateNotPrepared),
            };
            aux.slots[sp_aux.slot].extend_from_slice(data);
            if received == aux_size {
                if aux.chck(sp_aux.slot) != Some(sp_aux.chck) {
                    self.sp = State::Failed {
                        id: current,
                        code: SP_AUX_CHCK_MISMATCH,
                    };
                    return Err(SpError::UpdateFailed(SP_AUX_CHCK_MISMATCH));
                }
                component = SpComponent::SP_ITSELF;
            }
        } else {
            self.sp_image.extend_from_slice(data);
        }
        self.sp = State::Accepting {
            id: current,
            slot: 0,
            component,
            received,
            total,
        };
        if received == total {
            let image = std::mem::take(&mut self.sp_image);
            let bank = self.limits.sp_image_capacity;
            if let Err((code, error)) =
                check_sp_image(&image, bank, self.running_sp_board.as_deref())
            {
                self.sp = State::Failed { id: current, code };
                return Err(error);
            }
            self.sp = State::Complete(current);
            self.sp_completed = Some(image);
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

/// The SP's checks when an SP update completes (spec §6): the new image's
/// header at 0x298 with the current magic, its end within the `bank`, a
/// caboose with a readable BORD of at most 32 bytes, equal to `running`
/// when the running image has a BORD. Errors are the `Failed` code and the
/// error the final chunk gets.
pub fn check_sp_image(
    image: &[u8],
    bank: u32,
    running: Option<&[u8]>,
) -> Result<(), (u32, SpError)> {
    let unknown = (SP_IMAGE_BOARD_UNKNOWN, SpError::ImageBoardUnknown);
    let header = ImageHeader::at(image, SP_HEADER_OFFSET)
        .filter(|h| h.magic == HeaderMagic::Current && h.total_image_len <= bank)
        .ok_or(unknown)?;
    let caboose = match Caboose::find(image, &header) {
        Ok(Some(c)) => c,
        _ => return Err(unknown),
    };
    let board = match caboose.bord() {
        Ok(Some(b)) if b.len() <= MAX_BORD_LEN => b,
        _ => return Err(unknown),
    };
    match running {
        Some(r) if r != board => Err((SP_IMAGE_BOARD_MISMATCH, SpError::ImageBoardMismatch)),
        _ => Ok(()),
    }
}
