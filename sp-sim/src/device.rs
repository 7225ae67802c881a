//! One simulated SP's device model — identity, power, slots, cabooses,
//! reset, host flash and update state — and its [`SpHandler`], so the
//! protocol dispatcher in `gateway-messages` drives it directly.

use crate::flash::{HashCache, HostFlash};
use crate::update::{UpdateLimits, Updates};
use artifacts::image::{Caboose as ImageCaboose, ImageHeader, SP_HEADER_OFFSET};
use gateway_messages::sp_impl::{PowerStateTransition, ResetOutcome, SpHandler};
use gateway_messages::{
    ComponentUpdatePrepare, DiscoverResponse, Fwid, HfError, PowerState, RotBootInfo, RotSlotId,
    RotStateV2, RotStateV3, SpComponent, SpError, SpPort, SpStateV2, SpUpdatePrepare, UpdateChunk,
    UpdateId, UpdateStatus, WatchdogError, HF_PAGE_SIZE,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::time::{Duration, Instant};

/// What kind of board an SP sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpKind {
    /// Compute sled (gimlet): has a host boot flash.
    Sled,
    /// Rack switch (sidecar).
    Switch,
    /// Power shelf controller (psc).
    PowerShelf,
}

impl SpKind {
    /// Board name as cabooses spell it.
    pub fn board(self) -> &'static str {
        match self {
            SpKind::Sled => "gimlet-e",
            SpKind::Switch => "sidecar-c",
            SpKind::PowerShelf => "psc-c",
        }
    }

    /// Model number reported in the SP state.
    pub fn model(self) -> &'static str {
        match self {
            SpKind::Sled => "913-0000019",
            SpKind::Switch => "913-0000006",
            SpKind::PowerShelf => "913-0000003",
        }
    }

    /// Whether the SP answers `ComponentWatchdogSupported` with an ack.
    /// The power shelf is modelled without, so the plain reset path of an
    /// activation has a kind that takes it.
    pub fn watchdog(self) -> bool {
        !matches!(self, SpKind::PowerShelf)
    }

    /// Short name used for SP names (`sled-3`).
    pub fn short(self) -> &'static str {
        match self {
            SpKind::Sled => "sled",
            SpKind::Switch => "switch",
            SpKind::PowerShelf => "psc",
        }
    }
}

/// Timings and sizes of the simulated hardware.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// Erase time of one 64 KiB host-flash sector, in milliseconds.
    pub sector_erase_ms: f64,
    /// Flash write throughput in KiB/s; 0 means unlimited.
    pub write_kib_per_s: u64,
    /// Synchronous SP bank erase before `SpUpdatePrepareAck`, in ms.
    pub sp_bank_erase_ms: u64,
    /// How long an SP reset keeps the SP silent, in ms.
    pub reset_ms: u64,
    /// How long a host-flash hash takes, in ms.
    pub hash_ms: u64,
    /// Host-flash device size in MiB (whole 64 KiB sectors).
    pub host_flash_mib: u32,
}

impl Default for Timings {
    /// Roughly a gimlet: 32 MiB flash, ~1.3 s to erase it, ~1 MiB/s writes.
    fn default() -> Self {
        Self {
            sector_erase_ms: 2.5,
            write_kib_per_s: 1024,
            sp_bank_erase_ms: 200,
            reset_ms: 2000,
            hash_ms: 300,
            host_flash_mib: 32,
        }
    }
}

impl Timings {
    /// No waiting anywhere: for tests and benchmarks.
    pub fn instant() -> Self {
        Self {
            sector_erase_ms: 0.0,
            write_kib_per_s: 0,
            sp_bank_erase_ms: 0,
            reset_ms: 0,
            hash_ms: 0,
            host_flash_mib: 32,
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// Everything needed to build one [`Device`].
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Board kind.
    pub kind: SpKind,
    /// Serial number (at most 32 bytes).
    pub serial: String,
    /// Board revision.
    pub revision: u32,
    /// Hardware timings.
    pub timings: Timings,
    /// Where to keep written host-flash images (none: hashes only).
    pub store_dir: Option<PathBuf>,
    /// Supports the SP reset watchdog (default: [`SpKind::watchdog`]).
    pub watchdog: bool,
}

/// A watchdog armed by `ResetComponentTriggerWithWatchdog`. It is
/// hardware: it survives the reset it guards.
#[derive(Debug, Clone, Copy)]
struct Watchdog {
    /// Unless disabled by then, the SP resets into `fallback`.
    expires: Instant,
    /// The bank that ran before the reset.
    fallback: u16,
}

/// How long an SP whose image hangs at boot stays silent: for good, as
/// far as a test can tell (a real one needs hands-on recovery).
const HUNG: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Caboose contents for one component slot: the first chunk of each tag,
/// its value `None` when its CRC fails.
#[derive(Debug, Clone)]
struct Caboose {
    entries: Vec<([u8; 4], Option<Vec<u8>>)>,
}

impl Caboose {
    fn new(board: &str, name: &str, version: &str, seed: &str) -> Self {
        let gitc: String = Sha256::digest(seed)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        let entries = [
            (*b"GITC", gitc.as_str()),
            (*b"BORD", board),
            (*b"NAME", name),
            (*b"VERS", version),
        ];
        Self {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k, Some(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    /// The caboose of an SP image (header at 0x298), if it has one.
    fn of_sp_image(image: &[u8]) -> Option<Self> {
        let header = ImageHeader::at(image, SP_HEADER_OFFSET)?;
        let caboose = ImageCaboose::find(image, &header).ok()??;
        let mut entries: Vec<([u8; 4], Option<Vec<u8>>)> = Vec::new();
        for chunk in caboose.chunks() {
            if entries.iter().all(|(k, _)| *k != chunk.tag.0) {
                let value = chunk.checked_body().ok().map(<[u8]>::to_vec);
                entries.push((chunk.tag.0, value));
            }
        }
        Some(Self { entries })
    }

    fn get(&self, key: [u8; 4]) -> Option<&Option<Vec<u8>>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// One simulated SP.
#[derive(Debug)]
pub struct Device {
    /// Board kind.
    pub kind: SpKind,
    /// Serial number.
    pub serial: String,
    revision: u32,
    timings: Timings,
    power: PowerState,
    /// SP bank running now, and the one that boots next.
    sp_bank: u16,
    sp_pending_bank: u16,
    /// `hubris_archive_id` of each bank's image: derived from the serial
    /// at first, the first 8 bytes of the SHA-256 of an image written by
    /// an update.
    sp_archive: [[u8; 8]; 2],
    watchdog_supported: bool,
    watchdog: Option<Watchdog>,
    rot_active: RotSlotId,
    rot_persistent: RotSlotId,
    rot_transient: Option<RotSlotId>,
    /// Host boot flash (sleds only).
    pub flash: Option<HostFlash>,
    /// Update state machines.
    pub updates: Updates,
    reset_prepared: Option<SpComponent>,
    cabooses: Vec<(SpComponent, u16, Caboose)>,
    booted: Instant,
    /// The time the current request is handled at (set by the server).
    pub now: Instant,
    /// Work the current request took (flash writes, erases): the SP
    /// answers only after it.
    pub busy: Duration,
    /// Set when the current request rebooted the SP.
    pub rebooting: bool,
    /// Set when the current request completed an update.
    pub completed_update: bool,
    /// Set when the current request was an update prepare the SP accepted
    /// (so its reply is the prepare ack).
    pub accepted_prepare: bool,
    /// Set when the current request disabled the reset watchdog.
    pub disabled_watchdog: bool,
    /// Set when the current request was a reset prepare.
    pub reset_prepare_seen: bool,
}

impl Device {
    /// A freshly booted SP.
    pub fn new(cfg: DeviceConfig, now: Instant) -> Self {
        let flash = (cfg.kind == SpKind::Sled).then(|| {
            let mut f = HostFlash::new(
                cfg.timings.host_flash_mib.max(1) * 1024 * 1024,
                &cfg.serial,
                cfg.store_dir.clone(),
            );
            f.hash_time = Timings::ms(cfg.timings.hash_ms);
            f
        });
        let board = cfg.kind.board();
        let seed = &cfg.serial;
        let mut cabooses = vec![
            (
                SpComponent::SP_ITSELF,
                0,
                Caboose::new(board, board, "1.0.33", &format!("{seed}sp0")),
            ),
            (
                SpComponent::SP_ITSELF,
                1,
                Caboose::new(board, board, "1.0.32", &format!("{seed}sp1")),
            ),
        ];
        for slot in 0..2 {
            let v = if slot == 0 { "1.0.14" } else { "1.0.13" };
            let rot_seed = format!("{seed}rot{slot}");
            cabooses.push((
                SpComponent::ROT,
                slot,
                Caboose::new("oxide-rot-1", "oxide-rot-1", v, &rot_seed),
            ));
            let s0_seed = format!("{seed}stage0{slot}");
            cabooses.push((
                SpComponent::STAGE0,
                slot,
                Caboose::new("oxide-rot-1", "bootleby", "1.3.1", &s0_seed),
            ));
        }
        let limits = UpdateLimits {
            sector_erase: Duration::from_secs_f64(cfg.timings.sector_erase_ms.max(0.0) / 1000.0),
            sp_image_capacity: 2 * 1024 * 1024,
            rot_slot_capacity: 256 * 1024,
            has_host_flash: flash.is_some(),
            aux_flash_slots: if cfg.kind == SpKind::Switch { 16 } else { 0 },
        };
        let sp_archive = [0, 1].map(|bank| {
            let digest = Sha256::digest(format!("{}-bank{bank}", cfg.serial));
            let mut id = [0u8; 8];
            id.copy_from_slice(&digest[..8]);
            id
        });
        let mut device = Self {
            kind: cfg.kind,
            serial: cfg.serial,
            revision: cfg.revision,
            timings: cfg.timings,
            power: PowerState::A0,
            sp_bank: 0,
            sp_pending_bank: 0,
            sp_archive,
            watchdog_supported: cfg.watchdog,
            watchdog: None,
            rot_active: RotSlotId::A,
            rot_persistent: RotSlotId::A,
            rot_transient: None,
            flash,
            updates: Updates::new(limits),
            reset_prepared: None,
            cabooses,
            booted: now,
            now,
            busy: Duration::ZERO,
            rebooting: false,
            completed_update: false,
            accepted_prepare: false,
            disabled_watchdog: false,
            reset_prepare_seen: false,
        };
        device.sync_running_board();
        device
    }

    /// Where SP bank `bank`'s caboose is kept.
    fn sp_caboose_mut(&mut self, bank: u16) -> Option<&mut Caboose> {
        self.cabooses
            .iter_mut()
            .find(|(c, s, _)| *c == SpComponent::SP_ITSELF && *s == bank)
            .map(|(_, _, cab)| cab)
    }

    /// Tell the SP updater the running image's BORD.
    fn sync_running_board(&mut self) {
        let bank = self.sp_bank;
        let board = self
            .sp_caboose_mut(bank)
            .and_then(|c| c.get(*b"BORD").cloned().flatten());
        self.updates.set_running_sp_board(board);
    }

    /// How long a reset keeps this SP silent.
    pub fn reset_time(&self) -> Duration {
        Timings::ms(self.timings.reset_ms)
    }

    /// The SP reboots: RAM state is lost, pending slot choices take effect.
    /// Returns how long it stays silent. With `new_image_fails`, an image
    /// in the other bank hangs at boot: an armed watchdog brings the
    /// previous image back when it expires; without one the SP stays
    /// silent.
    pub fn reboot(&mut self, now: Instant, new_image_fails: bool) -> Duration {
        let reset = self.reset_time();
        let mut silent = reset;
        if new_image_fails && self.sp_pending_bank != self.sp_bank {
            match self.watchdog.take() {
                Some(w) => {
                    self.sp_pending_bank = w.fallback;
                    silent = w.expires.saturating_duration_since(now) + reset;
                }
                None => silent = HUNG,
            }
        }
        self.boot(now);
        silent
    }

    /// An armed watchdog that expired by `now` resets the SP into the
    /// previous image; returns when that reset ends.
    pub fn poll_watchdog(&mut self, now: Instant) -> Option<Instant> {
        let w = self.watchdog.filter(|w| now >= w.expires)?;
        self.watchdog = None;
        self.sp_pending_bank = w.fallback;
        self.boot(w.expires);
        Some(w.expires + self.reset_time())
    }

    fn boot(&mut self, now: Instant) {
        self.updates.reboot(self.flash.as_mut());
        self.reset_prepared = None;
        self.sp_bank = self.sp_pending_bank;
        self.sync_running_board();
        if let Some(f) = self.flash.as_mut() {
            f.active = f.persistent;
            for s in &mut f.slots {
                s.cache = HashCache::Uncalculated;
            }
        }
        self.booted = now;
    }

    /// Update status of `component` right now (for the library API).
    pub fn update_status(&mut self, component: SpComponent) -> Result<UpdateStatus, SpError> {
        self.updates
            .status(component, self.flash.as_mut(), self.now)
    }

    /// Lose the remembered reset prepare (another client's replaced it).
    pub fn forget_reset_prepare(&mut self) {
        self.reset_prepared = None;
    }

    /// Whether a reset watchdog is armed (not yet disabled or expired).
    pub fn watchdog_armed(&self) -> bool {
        self.watchdog.is_some()
    }

    /// `hubris_archive_id` of the running SP image.
    pub fn archive_id(&self) -> [u8; 8] {
        self.sp_archive[usize::from(self.sp_bank)]
    }

    /// The content hash of a host-flash slot, as the SP would compute it.
    pub fn slot_hash(&self, slot: u16) -> Option<[u8; 32]> {
        self.flash
            .as_ref()
            .map(|f| f.slots[usize::from(slot.min(1))].content_hash)
    }

    fn write_time(&self, bytes: usize) -> Duration {
        match self.timings.write_kib_per_s {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(bytes as f64 / (rate as f64 * 1024.0)),
        }
    }

    fn rot_slot(slot: u16) -> Result<RotSlotId, SpError> {
        match slot {
            0 => Ok(RotSlotId::A),
            1 => Ok(RotSlotId::B),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn rot_digest(&self, what: &str) -> [u8; 32] {
        Sha256::digest(format!("{}-rot-{what}", self.serial)).into()
    }

    fn rot_state(&self) -> RotStateV2 {
        RotStateV2 {
            active: self.rot_active,
            persistent_boot_preference: self.rot_persistent,
            pending_persistent_boot_preference: None,
            transient_boot_preference: self.rot_transient,
            slot_a_sha3_256_digest: Some(self.rot_digest("a")),
            slot_b_sha3_256_digest: Some(self.rot_digest("b")),
        }
    }

    fn flash_mut(&mut self) -> Result<&mut HostFlash, SpError> {
        self.flash
            .as_mut()
            .ok_or(SpError::RequestUnsupportedForComponent)
    }

    fn hf_slot(slot: u16) -> Result<u16, SpError> {
        if slot > 1 {
            Err(SpError::InvalidSlotForComponent)
        } else {
            Ok(slot)
        }
    }
}

fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

impl SpHandler for Device {
    fn discover(&mut self) -> Result<DiscoverResponse, SpError> {
        Ok(DiscoverResponse {
            sp_port: SpPort::One,
        })
    }

    fn sp_state(&mut self) -> Result<SpStateV2, SpError> {
        let archive = self.sp_archive[usize::from(self.sp_bank)];
        let mac = Sha256::digest(self.serial.as_bytes());
        Ok(SpStateV2 {
            hubris_archive_id: archive,
            serial_number: padded(&self.serial),
            model: padded(self.kind.model()),
            revision: self.revision,
            base_mac_address: [0xa8, 0x40, 0x25, mac[0], mac[1], mac[2] & 0xf8],
            power_state: self.power,
            rot: Ok(self.rot_state()),
        })
    }

    fn versioned_rot_boot_info(&mut self, version: u8) -> Result<RotBootInfo, SpError> {
        let v2 = self.rot_state();
        if version < 3 {
            return Ok(RotBootInfo::V2(v2));
        }
        let fwid = |n: &str| Fwid::Sha3_256(self.rot_digest(n));
        Ok(RotBootInfo::V3(RotStateV3 {
            active: v2.active,
            persistent_boot_preference: v2.persistent_boot_preference,
            pending_persistent_boot_preference: None,
            transient_boot_preference: v2.transient_boot_preference,
            slot_a_fwid: fwid("a"),
            slot_b_fwid: fwid("b"),
            stage0_fwid: fwid("stage0"),
            stage0next_fwid: fwid("stage0next"),
            slot_a_status: Ok(()),
            slot_b_status: Ok(()),
            stage0_status: Ok(()),
            stage0next_status: Ok(()),
        }))
    }

    fn component_watchdog_supported(&mut self, component: SpComponent) -> Result<(), SpError> {
        match component {
            SpComponent::SP_ITSELF if self.watchdog_supported => Ok(()),
            SpComponent::SP_ITSELF => Err(SpError::RequestUnsupportedForSp),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn reset_component_trigger_with_watchdog(
        &mut self,
        component: SpComponent,
        time_ms: u32,
    ) -> Result<ResetOutcome, SpError> {
        self.component_watchdog_supported(component)?;
        // The prepare is checked first, as for a plain trigger: a retried
        // trigger after the reboot must say "without prepare".
        if self.reset_prepared != Some(component) {
            self.reset_prepared = None;
            return Err(SpError::ResetComponentTriggerWithoutPrepare);
        }
        if !matches!(self.updates.sp, crate::update::State::Complete(_)) {
            self.reset_prepared = None;
            return Err(SpError::Watchdog(WatchdogError::NoCompletedUpdate));
        }
        self.watchdog = Some(Watchdog {
            expires: self.now + Duration::from_millis(u64::from(time_ms)),
            fallback: self.sp_bank,
        });
        self.reset_component_trigger(component)
    }

    /// The running image keeps its bank: the watchdog is disarmed (an ack
    /// also when none is armed, so a resent disable is harmless).
    fn disable_component_watchdog(&mut self, component: SpComponent) -> Result<(), SpError> {
        self.component_watchdog_supported(component)?;
        self.watchdog = None;
        self.disabled_watchdog = true;
        Ok(())
    }

    fn get_power_state(&mut self) -> Result<PowerState, SpError> {
        Ok(self.power)
    }

    fn set_power_state(&mut self, state: PowerState) -> Result<PowerStateTransition, SpError> {
        match state {
            PowerState::A1 => Err(SpError::PowerStateError(1)),
            s if s == self.power => Ok(PowerStateTransition::Unchanged),
            s => {
                self.power = s;
                Ok(PowerStateTransition::Changed)
            }
        }
    }

    fn sp_update_prepare(&mut self, req: SpUpdatePrepare) -> Result<(), SpError> {
        self.updates.sp_prepare(req, self.now)?;
        // The SP erases the other bank before it acks.
        self.busy += Timings::ms(self.timings.sp_bank_erase_ms);
        self.accepted_prepare = true;
        Ok(())
    }

    fn component_update_prepare(&mut self, req: ComponentUpdatePrepare) -> Result<(), SpError> {
        self.updates
            .component_prepare(req, self.flash.as_mut(), self.now)?;
        self.accepted_prepare = true;
        Ok(())
    }

    fn update_chunk(&mut self, chunk: UpdateChunk, data: &[u8]) -> Result<(), SpError> {
        self.updates
            .chunk(chunk, data, self.flash.as_mut(), self.now)?;
        let status = self
            .updates
            .status(chunk.component, self.flash.as_mut(), self.now);
        self.completed_update = status == Ok(UpdateStatus::Complete(chunk.id));
        if chunk.component == SpComponent::SP_ITSELF && self.completed_update {
            // The new image boots from the other bank at the next reset;
            // until then it is slot 1, whose caboose is now the image's.
            let other = 1 - self.sp_bank;
            self.sp_pending_bank = other;
            if let Some(image) = self.updates.take_completed_sp_image() {
                self.sp_archive[usize::from(other)].copy_from_slice(&Sha256::digest(&image)[..8]);
                let new = Caboose::of_sp_image(&image).unwrap_or(Caboose {
                    entries: Vec::new(),
                });
                if let Some(cab) = self.sp_caboose_mut(other) {
                    *cab = new;
                }
            }
        }
        self.busy += self.write_time(data.len());
        Ok(())
    }

    fn update_status(&mut self, component: SpComponent) -> Result<UpdateStatus, SpError> {
        self.updates
            .status(component, self.flash.as_mut(), self.now)
    }

    fn update_abort(&mut self, component: SpComponent, id: UpdateId) -> Result<(), SpError> {
        self.updates
            .abort(component, id, self.flash.as_mut(), self.now)
    }

    fn reset_component_prepare(&mut self, component: SpComponent) -> Result<(), SpError> {
        self.reset_prepared = Some(component);
        self.reset_prepare_seen = true;
        Ok(())
    }

    fn reset_component_trigger(&mut self, component: SpComponent) -> Result<ResetOutcome, SpError> {
        if self.reset_prepared.take() != Some(component) {
            return Err(SpError::ResetComponentTriggerWithoutPrepare);
        }
        match component {
            SpComponent::SP_ITSELF => {
                self.rebooting = true;
                Ok(ResetOutcome::Rebooting)
            }
            SpComponent::ROT => {
                self.rot_active = self.rot_transient.take().unwrap_or(self.rot_persistent);
                Ok(ResetOutcome::Acked)
            }
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_get_active_slot(&mut self, component: SpComponent) -> Result<u16, SpError> {
        match component {
            SpComponent::SP_ITSELF => Ok(self.sp_pending_bank),
            SpComponent::HOST_CPU_BOOT_FLASH => Ok(self.flash_mut()?.active),
            SpComponent::ROT => Ok(self.rot_active as u16),
            SpComponent::STAGE0 => Ok(0),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_get_persistent_slot(&mut self, component: SpComponent) -> Result<u16, SpError> {
        match component {
            SpComponent::SP_ITSELF => Ok(self.sp_pending_bank),
            SpComponent::HOST_CPU_BOOT_FLASH => Ok(self.flash_mut()?.persistent),
            SpComponent::ROT => Ok(self.rot_persistent as u16),
            SpComponent::STAGE0 => Ok(0),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn component_set_active_slot(
        &mut self,
        component: SpComponent,
        slot: u16,
        persist: bool,
    ) -> Result<(), SpError> {
        match component {
            SpComponent::SP_ITSELF if !persist => Err(SpError::RequestUnsupportedForComponent),
            SpComponent::SP_ITSELF => {
                if slot > 1 {
                    return Err(SpError::UpdateFailed(1));
                }
                self.sp_pending_bank = slot;
                Ok(())
            }
            SpComponent::HOST_CPU_BOOT_FLASH => {
                let slot = Self::hf_slot(slot)?;
                let f = self.flash_mut()?;
                if !f.muxed_to_sp {
                    return Err(SpError::UpdateSlotBusy);
                }
                f.active = slot;
                if persist {
                    f.persistent = slot;
                }
                // A mux switch invalidates both cached hashes.
                f.invalidate(0);
                f.invalidate(1);
                Ok(())
            }
            SpComponent::ROT => {
                let s = Self::rot_slot(slot)?;
                if persist {
                    self.rot_persistent = s;
                } else {
                    self.rot_transient = Some(s);
                }
                Ok(())
            }
            SpComponent::STAGE0 => Self::rot_slot(slot).map(|_| ()),
            _ => Err(SpError::RequestUnsupportedForComponent),
        }
    }

    fn read_caboose(
        &mut self,
        component: SpComponent,
        slot: u16,
        key: [u8; 4],
        out: &mut [u8],
    ) -> Result<usize, SpError> {
        let slot = match component {
            // Slot 0 is the running bank, 1 the other one.
            SpComponent::SP_ITSELF => match slot {
                0 => self.sp_bank,
                1 => 1 - self.sp_bank,
                _ => return Err(SpError::InvalidSlotForComponent),
            },
            SpComponent::ROT | SpComponent::STAGE0 if slot <= 1 => slot,
            SpComponent::ROT | SpComponent::STAGE0 => return Err(SpError::InvalidSlotForComponent),
            _ => return Err(SpError::RequestUnsupportedForComponent),
        };
        let caboose = self
            .cabooses
            .iter()
            .find(|(c, s, _)| *c == component && *s == slot)
            .map(|(_, _, cab)| cab)
            .ok_or(SpError::NoCaboose)?;
        let value = caboose
            .get(key)
            .ok_or(SpError::NoSuchCabooseKey(key))?
            .as_deref()
            .ok_or(SpError::BadCabooseChecksum)?;
        if value.len() > out.len() {
            return Err(SpError::CabooseValueOverflow(value.len() as u32));
        }
        out[..value.len()].copy_from_slice(value);
        Ok(value.len())
    }

    fn read_host_flash(
        &mut self,
        slot: u16,
        addr: u32,
        out: &mut [u8; HF_PAGE_SIZE],
    ) -> Result<(), SpError> {
        let slot = Self::hf_slot(slot)?;
        let f = self.flash_mut()?;
        if addr
            .checked_add(HF_PAGE_SIZE as u32)
            .is_none_or(|end| end > f.capacity)
        {
            return Err(SpError::Hf(HfError::BadAddress));
        }
        // Without a store directory written data is not kept.
        f.read_page(slot, addr, out)
            .map_err(|_| SpError::RequestUnsupportedForComponent)
    }

    fn start_host_flash_hash(&mut self, slot: u16) -> Result<(), SpError> {
        let slot = Self::hf_slot(slot)?;
        let now = self.now;
        let f = self.flash_mut()?;
        if !f.muxed_to_sp {
            return Err(SpError::Hf(HfError::NotMuxedToSp));
        }
        f.poll_hash(now);
        if f.hashing() {
            return Err(SpError::Hf(HfError::HashInProgress));
        }
        let s = &mut f.slots[usize::from(slot)];
        if !matches!(s.cache, HashCache::Valid(_)) {
            s.cache = HashCache::InProgress(now + f.hash_time);
            f.poll_hash(now);
        }
        Ok(())
    }

    fn get_host_flash_hash(&mut self, slot: u16) -> Result<[u8; 32], SpError> {
        let slot = Self::hf_slot(slot)?;
        let now = self.now;
        let f = self.flash_mut()?;
        f.poll_hash(now);
        match f.slots[usize::from(slot)].cache {
            HashCache::Valid(h) => Ok(h),
            HashCache::Uncalculated => Err(SpError::Hf(HfError::HashUncalculated)),
            HashCache::Recalculate => Err(SpError::Hf(HfError::RecalculateHash)),
            HashCache::InProgress(_) => Err(SpError::Hf(HfError::HashInProgress)),
        }
    }

    fn current_time(&mut self) -> Result<u64, SpError> {
        Ok(self.now.saturating_duration_since(self.booted).as_millis() as u64)
    }
}
