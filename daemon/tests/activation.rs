//! Activating a new SP image, end to end through the real control socket
//! and the real `mgsctl`, against an in-process simulated rack: the
//! watchdog-protected reset and its outcomes (activated, rolled back,
//! unreachable), the plain reset where there is no watchdog or nothing to
//! activate, and a lost `DisableComponentWatchdog` ack.

mod common;

use artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
use common::{standard_rack, Rig, SpDefaults};
use serde_json::Value;
use sp_sim::{FaultConfig, Timings};

use std::time::Duration;

/// A sled and a power shelf (which has no reset watchdog), flash writes
/// at 1 MiB/s, and the daemon in this process. Attempts of 100 ms, 10 for
/// a reset: a reset budget of 1 s and a default watchdog window of 1.5 s.
async fn daemon() -> Rig {
    let rack = standard_rack(
        1,
        0,
        1,
        Timings {
            reset_ms: 50,
            // A 64 KiB image takes 64 ms to write, a 1 MiB one a second.
            write_kib_per_s: 1024,
            ..Timings::instant()
        },
    );
    let sp_defaults = SpDefaults {
        max_attempts_reset: Some(10),
        host_flash_capacity_mib: None,
        ..SpDefaults::default()
    };
    Rig::in_process(rack).sp_defaults(sp_defaults).start().await
}

/// This suite's helpers: archives to activate, faults and the device state
/// of the rig's SPs, and mgsctl's answers.
impl Rig {
    /// An SP archive for `board` at version `vers`, written to a file.
    fn archive(&self, board: &str, vers: &str) -> String {
        let bytes = build::archive(ArchiveSpec {
            image: build::sp_image(board, 64 * 1024, vers),
            base: SP_IMAGE_BASE,
            aux: None,
            image_name: Some("default"),
            board,
            name: board,
            chip: SP_CHIP,
            git_rev: &build::fake_git_rev(board, vers),
            bzip2: false,
        });
        let path = self.file(&format!("{board}-{vers}.zip"), &bytes);
        path.display().to_string()
    }

    /// `mgsctl --json ARGS`: exit code, the last JSON line's `ok` (or the
    /// whole line), stderr.
    async fn answer(&self, args: &[&str]) -> (i32, Value, String) {
        let (code, last, err) = self.json(args).await;
        let ok = last.get("ok").cloned().unwrap_or(last);
        (code, ok, err)
    }

    fn faults(&self, sp: &str, faults: FaultConfig) {
        self.sp(sp).set_faults(faults);
    }

    fn archive_id(&self, sp: &str) -> String {
        let id = self.sp(sp).device().archive_id();
        id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn watchdog_armed(&self, sp: &str) -> bool {
        self.sp(sp).device().watchdog_armed()
    }

    /// An SP image written by an update hangs at boot on `sp`.
    fn new_image_fails_boot(&self, sp: &str) {
        self.faults(
            sp,
            FaultConfig {
                new_image_fails_boot: true,
                ..FaultConfig::default()
            },
        );
    }

    /// `update start SP sp --archive ARCHIVE --activate`.
    async fn activate(&self, sp: &str, archive: &str) -> (i32, Value, String) {
        self.answer(&[
            "update",
            "start",
            sp,
            "sp",
            "--archive",
            archive,
            "--activate",
        ])
        .await
    }

    /// Deliver `archive` to `sp` without activating it.
    async fn deliver(&self, sp: &str, archive: &str) {
        let (code, v, err) = self
            .answer(&["update", "start", sp, "sp", "--archive", archive, "--watch"])
            .await;
        assert_eq!(code, 0, "{v} {err}");
        assert_eq!(v["phase"], "complete", "{v}");
    }
}

#[actix::test]
async fn update_then_activate_runs_the_new_image_and_disables_the_watchdog() {
    let d = daemon().await;
    let before = d.archive_id("sled-0");
    let archive = d.archive("gimlet-e", "1.0.40");
    let (code, v, err) = d.activate("sled-0", &archive).await;
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["phase"], "complete", "{v}");
    let a = &v["activation"];
    assert_eq!(a["outcome"], "activated", "{a}");
    assert_eq!(a["method"], "watchdog", "{a}");
    assert_eq!(a["watchdog_ms"], 1500, "1.5 × 100 ms × 10 attempts: {a}");
    assert_eq!(a["watchdog_disabled"], true, "{a}");
    assert_eq!(a["update_id"], v["id"], "{a}");
    assert_eq!(a["archive_id_before"], before.as_str(), "{a}");
    let after = d.archive_id("sled-0");
    assert_ne!(after, before);
    assert_eq!(a["archive_id_after"], after.as_str(), "{a}");
    assert_eq!(a["running"]["vers"], "1.0.40", "{a}");
    assert!(!d.watchdog_armed("sled-0"));
    // Well past the window the new image still runs: the watchdog is off.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (code, state, _) = d.answer(&["state", "sled-0"]).await;
    assert_eq!(code, 0);
    assert_eq!(d.archive_id("sled-0"), after);
    assert_eq!(d.sp("sled-0").fault_stats().resets, 1);
    assert_eq!(
        state["state"]["hubris_archive_id"],
        after.as_str(),
        "{state}"
    );
}

#[actix::test]
async fn a_new_image_that_does_not_boot_is_rolled_back_and_reported() {
    let d = daemon().await;
    let before = d.archive_id("sled-0");
    d.new_image_fails_boot("sled-0");
    let archive = d.archive("gimlet-e", "1.0.41");
    let (code, v, err) = d.activate("sled-0", &archive).await;
    assert_eq!(code, 10, "rolled back: {v} {err}");
    assert!(err.contains("rolled_back"), "{err}");
    assert_eq!(v["phase"], "failed", "{v}");
    assert_eq!(v["failure_kind"], "rolled_back", "{v}");
    let a = &v["activation"];
    assert_eq!(a["outcome"], "rolled_back", "{a}");
    assert_eq!(a["method"], "watchdog", "{a}");
    assert_eq!(a["archive_id_after"], before.as_str(), "{a}");
    assert!(
        a["took_ms"].as_u64().unwrap() >= 1500,
        "after the window: {a}"
    );
    assert_eq!(d.archive_id("sled-0"), before);
}

#[actix::test]
async fn an_sp_that_never_comes_back_is_unreachable() {
    let d = daemon().await;
    let archive = d.archive("gimlet-e", "1.0.42");
    d.deliver("sled-0", &archive).await;
    // Without the watchdog nothing brings the old image back.
    d.new_image_fails_boot("sled-0");
    let (code, v, err) = d.answer(&["reset", "sled-0", "--no-watchdog"]).await;
    assert_eq!(code, 11, "{v} {err}");
    assert_eq!(v["outcome"], "unreachable", "{v}");
    assert_eq!(v["method"], "plain", "{v}");
    assert!(
        v["plain_because"].as_str().unwrap().contains("no-watchdog"),
        "{v}"
    );
    let (code, text, _) = d.mgsctl(&["reset", "sled-0", "--no-watchdog"]).await;
    assert_eq!(code, 6, "the SP is gone now: {text}");
}

#[actix::test]
async fn an_sp_without_a_watchdog_is_activated_with_the_plain_reset() {
    let d = daemon().await;
    let before = d.archive_id("psc-0");
    let archive = d.archive("psc-c", "1.0.43");
    let (code, v, err) = d.activate("psc-0", &archive).await;
    assert_eq!(code, 0, "{v} {err}");
    let a = &v["activation"];
    assert_eq!(a["outcome"], "activated", "{a}");
    assert_eq!(a["method"], "plain", "{a}");
    assert_eq!(a["watchdog_ms"], Value::Null, "{a}");
    assert!(
        a["plain_because"]
            .as_str()
            .unwrap()
            .contains("no reset watchdog"),
        "{a}"
    );
    assert_ne!(d.archive_id("psc-0"), before);
}

#[actix::test]
async fn a_reset_with_nothing_to_activate_uses_the_plain_trigger() {
    let d = daemon().await;
    let before = d.archive_id("sled-0");
    let (code, v, err) = d.answer(&["reset", "sled-0"]).await;
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["outcome"], "reset", "{v}");
    assert_eq!(v["method"], "plain", "{v}");
    assert_eq!(v["reset"], true, "{v}");
    assert!(
        v["plain_because"]
            .as_str()
            .unwrap()
            .contains("no completed"),
        "{v}"
    );
    assert_eq!(d.archive_id("sled-0"), before);
    assert_eq!(d.sp("sled-0").fault_stats().resets, 1);
    // The human form says the same.
    let (code, text, _) = d.mgsctl(&["reset", "sled-0"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("sled-0 sp: reset (plain trigger)"), "{text}");
}

#[actix::test]
async fn a_lost_disable_ack_is_resent_and_the_activation_stands() {
    let d = daemon().await;
    let archive = d.archive("gimlet-e", "1.0.44");
    d.deliver("sled-0", &archive).await;
    d.faults(
        "sled-0",
        FaultConfig {
            drop_watchdog_disable_acks: 2,
            ..FaultConfig::default()
        },
    );
    let (code, v, err) = d
        .answer(&["reset", "sled-0", "--watchdog-ms", "3000"])
        .await;
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["outcome"], "activated", "{v}");
    assert_eq!(v["watchdog_ms"], 3000, "{v}");
    assert_eq!(v["watchdog_disabled"], true, "{v}");
    let stats = d.sp("sled-0").fault_stats();
    assert_eq!(stats.responses_dropped, 2, "{stats:?}");
    assert!(!d.watchdog_armed("sled-0"));
    // Past the window: no rollback.
    let after = d.archive_id("sled-0");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (code, _, _) = d.answer(&["state", "sled-0"]).await;
    assert_eq!(code, 0);
    assert_eq!(d.archive_id("sled-0"), after);
}

#[actix::test]
async fn bad_reset_options_are_refused_before_anything_is_sent() {
    let d = daemon().await;
    let (code, _, err) = d.answer(&["reset", "sled-0", "--watchdog-ms", "0"]).await;
    assert_eq!(code, 5, "{err}");
    // A JSON client gets the same checks as mgsctl's flags.
    let (code, _, err) = d
        .answer(&["reset", "sled-0", "--no-watchdog", "--watchdog-ms", "10"])
        .await;
    assert_eq!(code, 2, "clap refuses: {err}");
    // Activation is for SP images.
    let path = d.file("host.img", &common::host_image(128 * 1024, 1));
    let (code, _, err) = d
        .answer(&[
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--image",
            path.to_str().unwrap(),
            "--activate",
        ])
        .await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("activation resets the SP"), "{err}");
    // The options go with --activate (clap), and with "activate" on the wire.
    let (code, _, err) = d
        .answer(&[
            "update",
            "start",
            "sled-0",
            "sp",
            "--image",
            path.to_str().unwrap(),
            "--no-watchdog",
        ])
        .await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(d.sp("sled-0").fault_stats().resets, 0);
    assert_eq!(d.sp("sled-0").fault_stats().prepares, 0);
}

#[actix::test]
async fn a_rollout_that_resets_activates_and_fails_a_target_that_rolls_back() {
    let d = daemon().await;
    let psc_before = d.archive_id("psc-0");
    let sled_before = d.archive_id("sled-0");
    d.new_image_fails_boot("sled-0");
    let image = |board: &str| {
        d.file(
            &format!("{board}.bin"),
            &build::sp_image(board, 64 * 1024, "1.0.46"),
        )
    };
    image("psc-c");
    image("gimlet-e");
    let plan = d.file(
        "plan.toml",
        b"stop_after_failures = 2\nafter = \"reset\"\n\
         [[target]]\nsps = [\"psc-0\"]\ncomponent = \"sp\"\nimage = \"psc-c.bin\"\n\
         [[target]]\nsps = [\"sled-0\"]\ncomponent = \"sp\"\nimage = \"gimlet-e.bin\"\n",
    );
    let plan = plan.display().to_string();
    let (code, _, err) = d.answer(&["rollout", "start", &plan, "--watch"]).await;
    assert_ne!(code, 0, "a target failed: {err}");
    let (code, list, _) = d.answer(&["rollout", "list"]).await;
    assert_eq!(code, 0);
    let id = list[0]["id"].as_str().unwrap().to_string();
    let (_, r, _) = d.answer(&["rollout", "status", &id]).await;
    let targets = r["targets"].as_array().unwrap();
    let of = |sp: &str| targets.iter().find(|t| t["sp"] == sp).unwrap();
    assert_eq!(of("psc-0")["state"], "complete", "{r}");
    assert_eq!(of("sled-0")["state"], "failed", "{r}");
    let why = of("sled-0")["failure"].as_str().unwrap_or_default();
    assert!(why.contains("rolled_back"), "{r}");
    assert_ne!(d.archive_id("psc-0"), psc_before, "activated");
    assert_eq!(d.archive_id("sled-0"), sled_before, "rolled back");
}

#[actix::test]
async fn a_trigger_refused_at_once_is_an_error_not_a_rollback() {
    let d = daemon().await;
    let archive = d.archive("gimlet-e", "1.0.47");
    d.deliver("sled-0", &archive).await;
    // Another client's prepare replaced ours: the SP refuses the trigger
    // and does not reset; the SP's uptime says so.
    d.faults(
        "sled-0",
        FaultConfig {
            forget_reset_prepares: true,
            ..FaultConfig::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (code, v, err) = d.answer(&["reset", "sled-0"]).await;
    assert_eq!(code, 6, "{v} {err}");
    assert!(err.contains("without prepare"), "{err}");
    assert_eq!(d.sp("sled-0").fault_stats().resets, 0);
    assert!(!d.watchdog_armed("sled-0"));
}

#[actix::test]
async fn an_update_whose_image_hangs_without_a_watchdog_ends_unreachable() {
    let d = daemon().await;
    d.new_image_fails_boot("psc-0");
    let archive = d.archive("psc-c", "1.0.48");
    let (code, v, err) = d.activate("psc-0", &archive).await;
    assert_eq!(code, 11, "{v} {err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(v["phase"], "failed", "{v}");
    assert_eq!(v["failure_kind"], "sp_unreachable", "{v}");
    let a = &v["activation"];
    assert_eq!(a["outcome"], "unreachable", "{a}");
    assert_eq!(a["method"], "plain", "{a}");
    assert!(
        a["took_ms"].as_u64().unwrap() >= 1000,
        "the reset budget: {a}"
    );
    // `history` shows it as failed, with the reason.
    let (code, text, _) = d.mgsctl(&["history"]).await;
    assert_eq!(code, 0);
    assert!(
        text.contains("failed") && text.contains("did not answer"),
        "{text}"
    );
}

#[actix::test]
async fn a_reset_is_refused_while_an_update_runs_on_the_sp() {
    let d = daemon().await;
    let path = d.file("host.img", &common::host_image(1024 * 1024, 3));
    let id = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = d
        .answer(&[
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--image",
            path.to_str().unwrap(),
            "--id",
            &id,
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.answer(&["reset", "sled-0"]).await;
    assert_eq!(code, 8, "{err}");
    assert!(err.contains(&id) && err.contains("abort it first"), "{err}");
    assert_eq!(d.sp("sled-0").fault_stats().resets, 0);
    // The update goes on to its end; then the reset is allowed.
    let (code, _, err) = d.answer(&["watch", &id]).await;
    assert_eq!(code, 0, "{err}");
    let (code, v, err) = d.answer(&["reset", "sled-0"]).await;
    assert_eq!(code, 0, "{v} {err}");
}
