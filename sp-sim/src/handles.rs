//! [`SimSp`] handle methods for the SP-initiated half of the protocol and
//! the inspection and power requests: what tests read and drive. Each one
//! takes the device lock briefly; none waits.

use crate::console::ConsoleStats;
use crate::device::LedState;
use crate::rack::SimSp;
use crate::recovery::Phase2Progress;
use gateway_messages::{
    LinkEvents, SensorDataMissing, SensorRequest, SensorRequestKind, SensorResponse, SpError,
    TransceiverSelect,
};
use std::net::SocketAddr;
use tokio::time::Instant;

impl SimSp {
    /// Let the device model catch up with the clock (console, phase 2).
    fn stepped(&self) -> std::sync::MutexGuard<'_, crate::device::Device> {
        let mut dev = self.device();
        let now = Instant::now();
        dev.now = now;
        if let Some(c) = dev.console.as_mut() {
            c.step(now);
        }
        dev
    }

    /// Everything the host printed on its console so far (banners,
    /// periodic lines, echoes, injected output), whether or not a gateway
    /// was attached to see it. Empty on boards without a host.
    pub fn console_output(&self) -> Vec<u8> {
        self.stepped()
            .console
            .as_ref()
            .map_or_else(Vec::new, |c| c.transcript())
    }

    /// Every byte the host received from the console (in order).
    pub fn console_input(&self) -> Vec<u8> {
        self.stepped()
            .console
            .as_ref()
            .map_or_else(Vec::new, |c| c.input_received().to_vec())
    }

    /// Breaks the host received.
    pub fn console_breaks(&self) -> u64 {
        self.device().console.as_ref().map_or(0, |c| c.breaks())
    }

    /// The gateway attached to the console.
    pub fn console_attached(&self) -> Option<SocketAddr> {
        self.device().console.as_ref().and_then(|c| c.attached())
    }

    /// Console counters (packets sent, bytes dropped, idle detaches...).
    pub fn console_stats(&self) -> ConsoleStats {
        self.device()
            .console
            .as_ref()
            .map_or_else(ConsoleStats::default, |c| c.stats())
    }

    /// Make the host print `bytes`, as if its OS wrote them to the UART.
    pub fn inject_host_output(&self, bytes: &[u8]) {
        let mut dev = self.stepped();
        if let Some(c) = dev.console.as_mut() {
            c.host_print(bytes);
        }
        drop(dev);
        self.shared.power.changed.notify_one();
    }

    /// Hold the host's console input (hardware flow control): the SP's
    /// 1024-byte input buffer stops draining, so writes are only partly
    /// taken. `false` releases it.
    pub fn hold_console_input(&self, held: bool) {
        let mut dev = self.device();
        if let Some(c) = dev.console.as_mut() {
            c.hold_input(held, Instant::now());
        }
        drop(dev);
        self.shared.power.changed.notify_one();
    }

    /// Start the host's phase-2 recovery: it fetches the image whose
    /// SHA-256 is `hash` from offset 0, now and at every boot until it
    /// completes. Sleds only (others ignore it).
    pub fn start_recovery(&self, hash: [u8; 32]) {
        self.device().set_recovery(Some(hash));
        self.shared.power.changed.notify_one();
    }

    /// Stop the host's recovery.
    pub fn stop_recovery(&self) {
        self.device().set_recovery(None);
    }

    /// Progress of the host's phase-2 fetch, if it wants an image.
    pub fn phase2_progress(&self) -> Option<Phase2Progress> {
        self.device()
            .phase2
            .as_ref()
            .and_then(|p| p.progress().cloned())
    }

    /// The installinator image id stored over IPCC (empty: none).
    pub fn installinator_image_id(&self) -> Vec<u8> {
        self.device().installinator_image_id.clone()
    }

    /// Whether ignition gives this SP power.
    pub fn ignition_powered(&self) -> bool {
        self.shared.power.is_on()
    }

    /// Switch this SP's power as its ignition target would (`true` after
    /// being off makes it boot).
    pub fn set_ignition_power(&self, on: bool) {
        self.shared.power.set(on);
    }

    /// On a switch: record link errors on a transceiver of ignition
    /// `target`. Returns false without a controller or such a target.
    pub fn inject_link_event(&self, target: u8, transceiver: TransceiverSelect) -> bool {
        self.device()
            .ignition
            .as_mut()
            .is_some_and(|c| c.inject_link_event(target, transceiver))
    }

    /// On a switch: link events of ignition `target`.
    pub fn link_events(&self, target: u8) -> Option<LinkEvents> {
        self.device().ignition.as_ref()?.link_events(target).ok()
    }

    /// Sensors: (id, name) in id order.
    pub fn sensors(&self) -> Vec<(u32, String)> {
        self.device()
            .inventory
            .sensors()
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s.name.clone()))
            .collect()
    }

    /// Sensor `id` as a `ReadSensor(LastReading)` would read it now.
    pub fn sensor_reading(&self, id: u32) -> Result<SensorResponse, SpError> {
        let mut dev = self.device();
        dev.now = Instant::now();
        gateway_messages::sp_impl::SpHandler::read_sensor(
            &mut *dev,
            SensorRequest {
                kind: SensorRequestKind::LastReading,
                id,
            },
        )
    }

    /// Make sensor `id` fail with `error` from now on (`None`: recover).
    /// Returns false for an unknown sensor.
    pub fn set_sensor_fault(&self, id: u32, error: Option<SensorDataMissing>) -> bool {
        let mut dev = self.device();
        let ms = dev.uptime_ms(Instant::now());
        dev.inventory.set_fault(id, error, ms)
    }

    /// Task `task` crashes: a dump appears. Returns its index (`None` when
    /// the dump areas are full).
    pub fn inject_task_crash(&self, task: u16) -> Option<u32> {
        let mut dev = self.device();
        let ms = dev.uptime_ms(Instant::now());
        let seed = dev.seed;
        dev.dumps.crash(task, ms, seed)
    }

    /// Task dumps held.
    pub fn task_dump_count(&self) -> u32 {
        self.device().dumps.count()
    }

    /// The memory a dump holds, uncompressed: (address, bytes) per region.
    pub fn task_dump_memory(&self, index: u32) -> Vec<(u32, Vec<u8>)> {
        let dev = self.device();
        dev.dumps.regions(index as usize, dev.seed)
    }

    /// The system LED.
    pub fn system_led(&self) -> LedState {
        self.device().led
    }

    /// Host NMIs the SP sent.
    pub fn host_nmi_count(&self) -> u64 {
        self.device().nmi_count
    }

    /// The 512-byte RoT page `ReadRot` returns: `cmpa`, `cfpa-active`,
    /// `cfpa-inactive` or `cfpa-scratch`.
    pub fn rot_page(&self, page: &str) -> [u8; gateway_messages::ROT_PAGE_SIZE] {
        self.device().rot_page(page)
    }
}
