//! Smaller holes, against the real `mgsd` binary: an abort that comes
//! before the canary's prepare is answered still wins, plans name only
//! components their targets have, `power_set` takes only what an SP can be
//! asked, restarts during an erase are all counted, and archives that
//! inflate past their members' limits cost no memory, however many come
//! at once.

mod common;

use artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
use common::rollouts::{self, phase, targets};
use common::{err_code, host_image, message, new_id, standard_rack, Rig, SpDefaults, HBF};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::Value;
use sp_sim::{FaultConfig, Timings};
use std::time::Duration;

#[actix::test]
async fn a_rollout_aborted_before_its_canary_is_prepared_aborts_the_canary() {
    let r = rollouts::rig(1, 0, 256).build().await;
    // The prepare's first ack is lost: its answer comes a resend later,
    // after the abort.
    r.sp("sled-0").set_faults(FaultConfig {
        drop_prepare_acks: 1,
        ..FaultConfig::default()
    });
    r.start().await;
    let img = r.file("host.img", &host_image(512 * 1024, 3));
    let plan = r.file(
        "plan.toml",
        format!(
            "[[target]]\nsps = [\"sled-0\"]\ncomponent = \"{HBF}\"\nimage = \"{}\"\n",
            img.display()
        )
        .as_bytes(),
    );
    let id = new_id();
    r.start_rollout(&plan, &id).await;
    r.ok(&["rollout", "abort", &id]).await;
    let ended = r.until_rollout_ended(&id, Duration::from_secs(30)).await;
    assert_eq!(phase(&ended), "aborted", "{ended}");
    assert_eq!(targets(&ended)[0]["state"], "aborted", "{ended}");
    let status = r
        .sp("sled-0")
        .update_status(SpComponent::HOST_CPU_BOOT_FLASH)
        .unwrap();
    assert!(matches!(status, UpdateStatus::Aborted(_)), "{status:?}");
}

#[actix::test]
async fn plans_and_power_requests_are_checked_against_what_the_sp_has() {
    let r = rollouts::rig(1, 1, 0).start().await;
    let img = r.file("host.img", &host_image(128 * 1024, 4));
    let plan = r.file(
        "plan.toml",
        format!(
            "[[target]]\nkind = \"switch\"\ncomponent = \"{HBF}\"\nimage = \"{}\"\n",
            img.display()
        )
        .as_bytes(),
    );
    let (code, out, _) = r
        .mgsctl(&["--json", "rollout", "start", plan.to_str().unwrap()])
        .await;
    assert_eq!(code, 5, "{out}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(err_code(&v), "bad_plan", "{v}");
    assert!(
        message(&v).contains("switch-0") && message(&v).contains("line 1"),
        "{v}"
    );
    // The console's attach is the one other request a quiet rig sends.
    r.until(
        "the console is attached",
        Duration::from_secs(10),
        async || r.sp("sled-0").console_attached().is_some(),
    )
    .await;
    let before = r.sp("sled-0").fault_stats().received;
    let (code, out, _) = r.mgsctl(&["--json", "power", "set", "sled-0", "A1"]).await;
    assert_eq!(code, 5, "{out}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(err_code(&v), "bad_request", "{v}");
    assert!(message(&v).contains("A0 or A2"), "{v}");
    assert_eq!(
        r.sp("sled-0").fault_stats().received,
        before,
        "nothing sent"
    );
    assert_eq!(r.sp("switch-0").fault_stats().prepares, 0);
}

#[actix::test]
async fn every_restart_during_an_erase_is_counted() {
    // 64 sectors of 500 ms: a 32 s erase to kill the daemon in three
    // times, even on a loaded machine.
    let rack = standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            sector_erase_ms: 500.0,
            ..Timings::instant()
        },
    );
    let r = Rig::child(rack)
        .state()
        .sp_defaults(SpDefaults::default())
        .start()
        .await;
    let img = r.file("host.img", &host_image(256 * 1024, 5));
    let id = new_id();
    let img = img.to_str().unwrap();
    r.ok(&[
        "update", "start", "sled-0", HBF, "--image", img, "--id", &id,
    ])
    .await;
    for kill in 0..3 {
        r.kill9().await;
        r.start().await;
        // The count grows once the SP has said where it stands.
        r.until(
            "the SP's answer after the restart",
            Duration::from_secs(30),
            async || {
                r.ok(&["update", "status", "sled-0", HBF]).await["delivery"]["resumed"] == kill + 1
            },
        )
        .await;
        let d = r.ok(&["update", "status", "sled-0", HBF]).await["delivery"].clone();
        assert_eq!(d["phase"], "preparing", "kill {kill}: still erasing: {d}");
    }
    r.until("the update ends", Duration::from_secs(90), async || {
        r.ok(&["update", "status", "sled-0", HBF]).await["delivery"]["phase"] == "complete"
    })
    .await;
    let d = r.ok(&["update", "status", "sled-0", HBF]).await["delivery"].clone();
    assert_eq!(d["resumed"], 3, "{d}");
    let chunks = (256 * 1024u64).div_ceil(978);
    assert!(d["chunks_sent"].as_u64() >= Some(chunks), "{d}");
}

/// Peak resident memory of `pid` (KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

#[actix::test]
async fn twenty_archive_bombs_at_once_cost_no_memory() {
    let r = rollouts::rig(1, 0, 0).start().await;
    // 64 MiB of image that bzip2 packs into a few hundred bytes.
    let bomb = build::archive(ArchiveSpec {
        image: vec![0; 64 << 20],
        base: SP_IMAGE_BASE,
        aux: None,
        image_name: Some("default"),
        board: "gimlet-e",
        name: "gimlet-e",
        chip: SP_CHIP,
        git_rev: &build::fake_git_rev("gimlet-e", "1.0.0"),
        bzip2: true,
    });
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let path = r.file("bomb.zip", &bomb);
    let pid = r.pid();
    let before = peak_rss_kib(pid);
    let path = path.to_str().unwrap().to_string();
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let (socket, path) = (r.socket(), path.clone());
            actix::spawn(async move {
                common::mgsctl(
                    &socket,
                    &["update", "start", "sled-0", "sp", "--archive", &path],
                )
                .await
            })
        })
        .collect();
    for s in sends {
        let (code, _, err) = s.await.unwrap();
        assert_eq!(code, 5, "refused: {err}");
        assert!(err.contains("final.elf"), "{err}");
    }
    let grew = peak_rss_kib(pid).saturating_sub(before);
    assert!(grew < 64 * 1024, "peak RSS grew by {grew} KiB");
    assert_eq!(r.sp("sled-0").fault_stats().prepares, 0);
}
