//! One simulated SP's device model — identity, power, slots, cabooses,
//! reset, host flash, update state, and the parts in `console`,
//! `recovery`, `inventory`, `ignition` and `dumps` — and its
//! [`SpHandler`](gateway_messages::sp_impl::SpHandler) (in the `handler`
//! submodule), so the protocol dispatcher in `gateway-messages` drives it
//! directly. SP-initiated packets (console output, phase-2 requests) come
//! out of [`Device::poll_outgoing`].

use crate::console::{Console, ConsoleConfig};
use crate::dumps::Dumps;
use crate::flash::{HashCache, HostFlash};
use crate::ignition::IgnitionController;
use crate::inventory::{Inventory, SensorFault};
use crate::recovery::{HostPhase2, Phase2Config};
use crate::update::{UpdateLimits, Updates};
use artifacts::image::{Caboose as ImageCaboose, ImageHeader, SP_HEADER_OFFSET};
use gateway_messages::{
    PowerState, RotSlotId, RotStateV2, SpComponent, SpError, UpdateStatus, MAX_SERIALIZED_SIZE,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::time::{Duration, Instant};

mod handler;

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
    /// Interval of the simulated host's periodic console lines, in ms;
    /// 0: none.
    pub console_line_ms: u64,
    /// Age (ms) of the oldest buffered console byte that makes the SP send.
    pub console_flush_ms: u64,
    /// Silence (ms) after which the SP drops its console gateway.
    pub console_idle_timeout_ms: u64,
    /// Host UART speed in baud (10 bits a byte); 0: unlimited.
    pub uart_baud: u64,
    /// Phase-2 requests: wait (ms) before asking the other port's gateway.
    pub phase2_try_other_ms: u64,
    /// Phase-2 requests: further wait (ms) before a new round.
    pub phase2_retry_ms: u64,
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
            console_line_ms: 1000,
            console_flush_ms: 500,
            console_idle_timeout_ms: 20_000,
            uart_baud: 3_000_000,
            phase2_try_other_ms: 500,
            phase2_retry_ms: 1000,
        }
    }
}

impl Timings {
    /// No waiting anywhere: for tests and benchmarks. The console sends at
    /// once and prints no periodic lines; phase-2 retries are short (10 and
    /// 20 ms) but not zero, so a lost request is resent, not flooded.
    pub fn instant() -> Self {
        Self {
            sector_erase_ms: 0.0,
            write_kib_per_s: 0,
            sp_bank_erase_ms: 0,
            reset_ms: 0,
            hash_ms: 0,
            host_flash_mib: 32,
            console_line_ms: 0,
            console_flush_ms: 0,
            console_idle_timeout_ms: 20_000,
            uart_baud: 0,
            phase2_try_other_ms: 10,
            phase2_retry_ms: 20,
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

/// State of the system LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedState {
    /// Off (at boot).
    Off,
    /// On.
    On,
    /// Blinking.
    Blink,
}

/// Behaviours of another SP implementation, switched on per request by the
/// server from the fault config.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// Host-flash hash of just the bytes the last update wrote.
    pub hash_written_bytes: bool,
    /// After booting a new SP image, keep reporting the old archive id.
    pub archive_id_unchanged: bool,
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
    /// Sender of the current request (set by the server).
    pub peer: Option<SocketAddr>,
    /// Address the last MGS request came from.
    pub last_mgs: Option<SocketAddr>,
    /// Gateways on switch ports 1 and 2, where phase-2 requests go (the
    /// real SP multicasts on the port); `None`: the last MGS heard.
    pub mgs_ports: [Option<SocketAddr>; 2],
    /// Quirks in force for the current request.
    pub quirks: Quirks,
    /// Host serial console (sleds).
    pub console: Option<Console>,
    /// Host phase-2 fetch (sleds).
    pub phase2: Option<HostPhase2>,
    /// The phase-2 image the host's recovery wants, kept across resets.
    pub recovery_hash: Option<[u8; 32]>,
    /// Installinator image id stored over IPCC (RAM).
    pub installinator_image_id: Vec<u8>,
    /// Inventory and sensors.
    pub inventory: Inventory,
    /// Sensor faults applied from the fault config.
    pub applied_sensor_faults: Vec<SensorFault>,
    /// Ignition controller (switches, once the rack wires it).
    pub ignition: Option<IgnitionController>,
    /// Task dumps.
    pub dumps: Dumps,
    /// System LED.
    pub led: LedState,
    /// Host NMIs sent.
    pub nmi_count: u64,
    /// Host startup options (raw bits; sleds).
    pub startup_options: u64,
    /// Seed of deterministic content (sensor noise, dump memory).
    pub seed: u64,
    /// Uptime (ms) of the last transition to A2.
    off_since_ms: u64,
    /// Archive id reported before the last boot switched banks.
    previous_archive: Option<[u8; 8]>,
    next_message_id: u32,
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
        let seed = u64::from_le_bytes(
            Sha256::digest(cfg.serial.as_bytes())[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        let t = &cfg.timings;
        let uart_bytes_per_s = t.uart_baud / 10;
        let sled = cfg.kind == SpKind::Sled;
        let console = sled.then(|| {
            Console::new(
                ConsoleConfig {
                    line_interval: (t.console_line_ms > 0).then(|| Timings::ms(t.console_line_ms)),
                    flush_after: Timings::ms(t.console_flush_ms),
                    idle_timeout: Timings::ms(t.console_idle_timeout_ms),
                    uart_bytes_per_s,
                },
                &cfg.serial,
                now,
            )
        });
        let phase2 = sled.then(|| {
            HostPhase2::new(Phase2Config {
                try_other: Timings::ms(t.phase2_try_other_ms),
                retry: Timings::ms(t.phase2_retry_ms),
                uart_bytes_per_s,
            })
        });
        let mut device = Self {
            inventory: Inventory::new(cfg.kind, seed),
            console,
            phase2,
            seed,
            peer: None,
            last_mgs: None,
            mgs_ports: [None, None],
            quirks: Quirks::default(),
            recovery_hash: None,
            installinator_image_id: Vec::new(),
            applied_sensor_faults: Vec::new(),
            ignition: None,
            dumps: Dumps::default(),
            led: LedState::Off,
            nmi_count: 0,
            startup_options: 0,
            off_since_ms: 0,
            previous_archive: None,
            next_message_id: 0,
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
        device.host_power_changed(now);
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
        // What another SP implementation keeps reporting (see `Quirks`).
        if self.sp_pending_bank != self.sp_bank {
            self.previous_archive = Some(self.previous_archive.unwrap_or(self.archive_id()));
        }
        self.sp_bank = self.sp_pending_bank;
        self.installinator_image_id.clear();
        self.dumps.clear();
        self.led = LedState::Off;
        self.startup_options = 0;
        if let Some(c) = self.console.as_mut() {
            c.sp_reset(now);
        }
        self.sync_running_board();
        if let Some(f) = self.flash.as_mut() {
            f.active = f.persistent;
            for s in &mut f.slots {
                s.cache = HashCache::Uncalculated;
            }
        }
        self.booted = now;
        self.off_since_ms = 0;
        self.host_power_changed(now);
    }

    /// Ignition restored power: a cold boot (the host comes up in A0).
    pub fn power_on_boot(&mut self, now: Instant) -> Duration {
        self.power = PowerState::A0;
        self.reboot(now, false)
    }

    /// Uptime in ms at `now`.
    pub fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.booted).as_millis() as u64
    }

    /// Whether the host (A0) is running.
    pub fn host_on(&self) -> bool {
        self.power == PowerState::A0
    }

    /// The host started (A0: banner, recovery fetch) or stopped (A2).
    fn host_power_changed(&mut self, now: Instant) {
        let on = self.host_on();
        if !on {
            self.off_since_ms = self.uptime_ms(now);
        }
        if let Some(c) = self.console.as_mut() {
            if on {
                c.host_power_on(now);
            } else {
                c.host_power_off();
            }
        }
        if let Some(p) = self.phase2.as_mut() {
            if on {
                p.host_booted();
                if let (None, Some(hash)) = (p.progress(), self.recovery_hash) {
                    p.start(hash);
                }
            } else {
                p.host_off();
            }
        }
    }

    /// The host's recovery fetches `hash` (from offset 0), now and at every
    /// boot until it completes; `None` stops it.
    pub fn set_recovery(&mut self, hash: Option<[u8; 32]>) {
        self.recovery_hash = hash;
        if let Some(p) = self.phase2.as_mut() {
            match hash {
                Some(h) => p.start(h),
                None => p.stop(),
            }
        }
    }

    /// Where a phase-2 request for `port` (0 or 1) goes.
    fn phase2_destination(&self, port: usize) -> Option<SocketAddr> {
        self.mgs_ports
            .get(port)
            .copied()
            .flatten()
            .or(self.last_mgs)
            .or(self.mgs_ports.iter().flatten().next().copied())
    }

    /// The port (0 or 1) a gateway at `from` serves.
    pub(crate) fn port_of(&self, from: Option<SocketAddr>) -> usize {
        usize::from(from.is_some() && from == self.mgs_ports[1])
    }

    /// The next SP-initiated packet due at `now` (console output first,
    /// then a phase-2 request), encoded into `out`, and where it goes.
    pub fn poll_outgoing(
        &mut self,
        now: Instant,
        out: &mut [u8; MAX_SERIALIZED_SIZE],
    ) -> Option<(usize, SocketAddr)> {
        let id = self.next_message_id;
        if let Some(sent) = self
            .console
            .as_mut()
            .and_then(|c| c.poll_packet(now, id, out))
        {
            self.next_message_id = id.wrapping_add(1);
            return Some(sent);
        }
        let (n, port) = self.phase2.as_mut()?.poll_packet(now, id, out)?;
        self.next_message_id = id.wrapping_add(1);
        // With nowhere to send it, the request is lost like a datagram.
        self.phase2_destination(port).map(|to| (n, to))
    }

    /// When something SP-initiated is next due without outside input.
    pub fn next_wake(&self) -> Option<Instant> {
        let console = self.console.as_ref().and_then(Console::next_wake);
        let phase2 = self.phase2.as_ref().and_then(HostPhase2::next_wake);
        match (console, phase2) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Apply the fault config's sensor faults where they changed.
    pub fn apply_sensor_faults(&mut self, faults: &[SensorFault], now: Instant) {
        if self.applied_sensor_faults == faults {
            return;
        }
        let ms = self.uptime_ms(now);
        for old in std::mem::take(&mut self.applied_sensor_faults) {
            self.inventory.set_fault(old.sensor, None, ms);
        }
        for f in faults {
            self.inventory.set_fault(f.sensor, Some(f.error.into()), ms);
        }
        self.applied_sensor_faults = faults.to_vec();
    }

    /// The archive id the SP reports (the previous image's under the
    /// `archive_id_unchanged` quirk after booting a new one).
    pub fn reported_archive_id(&self) -> [u8; 8] {
        match self.previous_archive {
            Some(old) if self.quirks.archive_id_unchanged => old,
            _ => self.archive_id(),
        }
    }

    /// A 512-byte RoT page: a fixed pattern per SP and page.
    pub fn rot_page(&self, page: &str) -> [u8; gateway_messages::ROT_PAGE_SIZE] {
        let mut out = [0u8; gateway_messages::ROT_PAGE_SIZE];
        for (i, chunk) in out.chunks_mut(32).enumerate() {
            let d = Sha256::digest(format!("{}-{page}-{i}", self.serial));
            chunk.copy_from_slice(&d[..chunk.len()]);
        }
        out
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
