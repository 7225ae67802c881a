//! The SP reset watchdog of the device model, without sockets: the
//! trigger's rules, rollback when the new image is not confirmed in time
//! or does not boot, and kinds without a watchdog.

use gateway_messages::sp_impl::{ResetOutcome, SpHandler};
use gateway_messages::{
    SpComponent, SpError, SpUpdatePrepare, UpdateChunk, UpdateId, WatchdogError,
};
use sp_sim::device::{Device, DeviceConfig};
use sp_sim::{SpKind, Timings};
use tokio::time::{Duration, Instant};

const SP: SpComponent = SpComponent::SP_ITSELF;
const RESET: Duration = Duration::from_millis(50);

fn device(kind: SpKind) -> Device {
    Device::new(
        DeviceConfig {
            kind,
            serial: "BRM42000007".into(),
            revision: 6,
            timings: Timings {
                reset_ms: RESET.as_millis() as u64,
                ..Timings::instant()
            },
            store_dir: None,
            watchdog: kind.watchdog(),
        },
        Instant::now(),
    )
}

/// Deliver a new SP image: the update is complete, the other bank pending.
fn complete_update(dev: &mut Device) {
    let id = UpdateId([9; 16]);
    let img = sp_sim::artifacts::build::sp_image(dev.kind.board(), 8 * 1024, "2.0.0");
    let prepare = SpUpdatePrepare {
        id,
        aux_flash_size: 0,
        aux_flash_chck: [0; 32],
        sp_image_size: img.len() as u32,
    };
    dev.sp_update_prepare(prepare).unwrap();
    for (i, data) in img.chunks(978).enumerate() {
        let chunk = UpdateChunk {
            component: SP,
            id,
            offset: (i * 978) as u32,
        };
        dev.update_chunk(chunk, data).unwrap();
    }
    assert!(dev.completed_update);
}

fn trigger(dev: &mut Device, time_ms: u32) -> Result<ResetOutcome, SpError> {
    dev.reset_component_prepare(SP).unwrap();
    dev.reset_component_trigger_with_watchdog(SP, time_ms)
}

#[test]
fn the_watchdog_trigger_needs_a_prepare_and_a_completed_update() {
    let mut dev = device(SpKind::Sled);
    assert_eq!(dev.component_watchdog_supported(SP), Ok(()));
    assert_eq!(
        dev.reset_component_trigger_with_watchdog(SP, 1000),
        Err(SpError::ResetComponentTriggerWithoutPrepare)
    );
    assert_eq!(
        trigger(&mut dev, 1000),
        Err(SpError::Watchdog(WatchdogError::NoCompletedUpdate))
    );
    assert!(!dev.watchdog_armed());
    // Other components have no watchdog.
    assert_eq!(
        dev.component_watchdog_supported(SpComponent::ROT),
        Err(SpError::RequestUnsupportedForComponent)
    );
}

#[test]
fn a_kind_without_a_watchdog_refuses_every_watchdog_request() {
    let mut dev = device(SpKind::PowerShelf);
    complete_update(&mut dev);
    assert_eq!(
        dev.component_watchdog_supported(SP),
        Err(SpError::RequestUnsupportedForSp)
    );
    assert_eq!(
        trigger(&mut dev, 1000),
        Err(SpError::RequestUnsupportedForSp)
    );
    assert_eq!(
        dev.disable_component_watchdog(SP),
        Err(SpError::RequestUnsupportedForSp)
    );
}

#[test]
fn an_unconfirmed_new_image_falls_back_when_the_watchdog_expires() {
    let mut dev = device(SpKind::Sled);
    let old = dev.archive_id();
    complete_update(&mut dev);
    let t0 = Instant::now();
    dev.now = t0;
    assert_eq!(trigger(&mut dev, 1000), Ok(ResetOutcome::Rebooting));
    assert!(dev.rebooting && dev.watchdog_armed());
    assert_eq!(dev.reboot(t0, false), RESET);
    let new = dev.archive_id();
    assert_ne!(new, old, "the new image runs");
    assert_eq!(dev.poll_watchdog(t0 + Duration::from_millis(999)), None);
    let back = dev.poll_watchdog(t0 + Duration::from_millis(1000));
    assert_eq!(back, Some(t0 + Duration::from_millis(1000) + RESET));
    assert_eq!(dev.archive_id(), old, "rolled back");
    assert!(!dev.watchdog_armed());
}

#[test]
fn a_disabled_watchdog_keeps_the_new_image() {
    let mut dev = device(SpKind::Switch);
    complete_update(&mut dev);
    let t0 = Instant::now();
    dev.now = t0;
    trigger(&mut dev, 1000).unwrap();
    dev.reboot(t0, false);
    let new = dev.archive_id();
    dev.disabled_watchdog = false;
    assert_eq!(dev.disable_component_watchdog(SP), Ok(()));
    assert!(dev.disabled_watchdog);
    // A resent disable is acked too.
    assert_eq!(dev.disable_component_watchdog(SP), Ok(()));
    assert_eq!(dev.poll_watchdog(t0 + Duration::from_secs(60)), None);
    assert_eq!(dev.archive_id(), new);
}

#[test]
fn a_new_image_that_hangs_comes_back_old_only_under_the_watchdog() {
    let mut dev = device(SpKind::Sled);
    let old = dev.archive_id();
    complete_update(&mut dev);
    let t0 = Instant::now();
    dev.now = t0;
    trigger(&mut dev, 2000).unwrap();
    // Silent for the window, then the previous image boots.
    assert_eq!(dev.reboot(t0, true), Duration::from_millis(2000) + RESET);
    assert_eq!(dev.archive_id(), old);
    assert!(!dev.watchdog_armed());

    // The plain trigger into a hanging image: silent for good.
    let mut dev = device(SpKind::Sled);
    complete_update(&mut dev);
    dev.reset_component_prepare(SP).unwrap();
    assert_eq!(dev.reset_component_trigger(SP), Ok(ResetOutcome::Rebooting));
    assert!(dev.reboot(t0, true) > Duration::from_secs(365 * 24 * 3600));
}
