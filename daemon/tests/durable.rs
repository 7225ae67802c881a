//! Updates survive the daemon: the real `mgsd` binary, killed (SIGKILL)
//! or stopped (SIGTERM) mid-update and started again on the same state
//! directory, against a simulated rack in this process that lives on.

mod common;

use common::{host_image, standard_rack, until, Rig, RigBuilder, SpDefaults, HBF, MIB};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::Value;
use sp_sim::{RackConfig, Timings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Discovery every 50 ms, the SP's update status read every 100 ms, and
/// the daemon's own RPC patience.
fn sp_defaults() -> SpDefaults {
    SpDefaults {
        per_attempt_timeout_ms: None,
        max_attempts: None,
        status_poll_interval_ms: Some(100),
        ..SpDefaults::default()
    }
}

/// The real `mgsd` for `rack`, with a state directory.
fn rig(rack: RackConfig) -> RigBuilder {
    Rig::child(rack).state().sp_defaults(sp_defaults())
}

/// The daemon's record of the update of `sp`'s host flash.
async fn delivery(rig: &Rig, sp: &str) -> Value {
    rig.ok(&["update", "status", sp, HBF]).await["delivery"].clone()
}

/// A sled with realistic timings (4 MiB of host flash, resets of 300 ms).
fn realistic() -> RackConfig {
    standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            reset_ms: 300,
            ..Timings::default()
        },
    )
}

/// The daemon started from `rig`, and an update of `len` bytes started on
/// its sled and past byte `past`.
async fn update_under_way(rig: RigBuilder, len: usize, past: u64) -> (Rig, String) {
    let rig = rig.build().await;
    let image = rig
        .file("host.img", &host_image(len, len / MIB))
        .display()
        .to_string();
    rig.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let start = [
        "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
    ];
    rig.ok(&start).await;
    until(
        "delivery is under way",
        Duration::from_secs(30),
        async || delivery(&rig, "sled-0").await["bytes_acked"].as_u64() > Some(past),
    )
    .await;
    (rig, id)
}

#[actix::test]
async fn sigkill_at_twenty_moments_never_starts_an_update_over() {
    let rig = rig(realistic()).build().await;
    let image_bytes = host_image(4 * MIB, 1);
    let image = rig.file("host.img", &image_bytes).display().to_string();
    let sp = &rig.rack().sps[0];
    // Seeded: the same moments every run.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |max: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % max
    };
    rig.start().await;
    for i in 0..20usize {
        let id = uuid::Uuid::new_v4();
        let slot = (i % 2).to_string();
        let start = [
            "update", "start", "sled-0", HBF, "--slot", &slot, "--image", &image,
        ];
        rig.ok(&[&start[..], &["--id", &id.to_string()][..]].concat())
            .await;
        let prepares = sp.fault_stats().prepares;
        match i % 4 {
            // During the erase (0.16 s).
            0 => tokio::time::sleep(Duration::from_millis(random(150))).await,
            // During delivery (4 s).
            1 => tokio::time::sleep(Duration::from_millis(300 + random(3500))).await,
            // Right after the last chunk.
            2 => {
                until(
                    "the SP has every byte",
                    Duration::from_secs(30),
                    async || {
                        sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH)
                            == Ok(UpdateStatus::Complete(id.into()))
                    },
                )
                .await
            }
            // While the host-flash hash is read back.
            _ => {
                until("verifying", Duration::from_secs(30), async || {
                    delivery(&rig, "sled-0").await["phase"] == "verifying"
                })
                .await
            }
        }
        rig.restart().await;
        let (code, out, err) = rig.mgsctl(&["watch", &id.to_string()]).await;
        assert_eq!(code, 0, "moment {i}: {out}{err}\n{}", rig.log());
        assert!(out.contains("hash verified"), "moment {i}: {out}");
        assert_eq!(
            sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
            Ok(UpdateStatus::Complete(id.into()))
        );
        assert_eq!(
            sp.slot_hash((i % 2) as u16),
            Some(sp_sim::expected_slot_hash(&image_bytes, 4 * MIB as u32))
        );
        assert_eq!(
            sp.fault_stats().prepares,
            prepares,
            "moment {i}: the update was not prepared again (it went on, not over)"
        );
    }
    assert!(rig.log().contains("update taken up again after a restart"));
}

#[actix::test]
async fn sigterm_mid_update_exits_in_time_and_the_next_start_finishes_it() {
    let shutdown = rig(realistic()).tables("[shutdown]\ntimeout_ms = 2000");
    let (rig, id) = update_under_way(shutdown, 4 * MIB, MIB as u64).await;
    let (took, code) = rig.term().await;
    assert!(took < Duration::from_millis(2500), "stopping took {took:?}");
    assert_eq!(code, Some(0));
    let log = rig.log();
    assert!(
        log.contains(&id) && log.contains("they are journalled and resume at the next start"),
        "{log}"
    );
    let sp = &rig.rack().sps[0];
    let prepares = sp.fault_stats().prepares;
    rig.start().await;
    let (code, out, err) = rig.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let record = delivery(&rig, "sled-0").await;
    assert_eq!(record["resumed"], 1, "{record}");
    assert_eq!(sp.fault_stats().prepares, prepares);
}

#[actix::test]
async fn an_sp_reset_while_mgsd_is_down_fails_the_update_and_sends_nothing() {
    let (rig, id) = update_under_way(rig(realistic()), 2 * MIB, 100_000).await;
    let sp = &rig.rack().sps[0];
    rig.kill9().await;
    sp.reset_now();
    let prepares = sp.fault_stats().prepares;
    rig.start().await;
    let (code, _, err) = rig.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 7, "{err}");
    let record = delivery(&rig, "sled-0").await;
    assert_eq!(record["failure_kind"], "sp_reset", "{record}");
    assert!(
        record["failure"]
            .as_str()
            .unwrap()
            .contains("while mgsd was down"),
        "{record}"
    );
    assert_eq!(sp.fault_stats().prepares, prepares, "never re-sent");
    assert_eq!(
        sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
        Ok(UpdateStatus::None)
    );
}

/// The files in `dir` whose names start with `prefix` that the daemon
/// moved aside (`.corrupt-` in the name).
fn aside(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.contains(".corrupt-")
        })
        .collect()
}

#[actix::test]
async fn bad_state_files_are_named_moved_aside_and_the_daemon_serves_on() {
    let rack = standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            write_kib_per_s: 512,
            ..Timings::instant()
        },
    );
    let rig = rig(rack).build().await;
    let state = rig.state_dir();
    let db = state.join("mgsd.db");
    std::fs::create_dir_all(&state).unwrap();

    // Not a database, a truncated one, and one that is a directory.
    for (what, make) in [("garbage", 0), ("truncated", 1), ("a directory", 2)] {
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        match make {
            0 => std::fs::write(&db, vec![0x5Au8; 8192]).unwrap(),
            1 => {
                // A real database cut short.
                rig.start().await;
                rig.kill9().await;
                let full = std::fs::read(&db).unwrap();
                std::fs::write(&db, &full[..100]).unwrap();
                let _ = std::fs::remove_file(state.join("mgsd.db-wal"));
            }
            _ => std::fs::create_dir_all(db.join("inside")).unwrap(),
        }
        let before = std::fs::read(&db).ok();
        rig.start().await;
        let log = rig.log();
        assert!(
            log.contains(&db.display().to_string()) && log.contains("moved it aside"),
            "{what}: {log}"
        );
        let moved = aside(&state, "mgsd.db");
        assert_eq!(moved.len(), 1, "{what}: {moved:?}");
        if let Some(before) = before {
            assert_eq!(
                std::fs::read(&moved[0]).unwrap(),
                before,
                "{what}: kept as it was"
            );
        }
        assert_eq!(rig.ok(&["health"]).await["status"], "ok", "{what}");
        rig.kill9().await;
    }

    // A spooled image that is not what its name says: the update that
    // needs it fails, naming the file; the file is kept aside.
    let _ = std::fs::remove_dir_all(&state);
    let image = rig
        .file("host.img", &host_image(MIB, 4))
        .display()
        .to_string();
    rig.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let started = rig
        .ok(&[
            "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
        ])
        .await;
    rig.kill9().await;
    let spooled = state
        .join("images")
        .join(started["image_sha256"].as_str().unwrap());
    std::fs::write(&spooled, b"not the image").unwrap();
    rig.start().await;
    let (code, _, err) = rig.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains(&spooled.display().to_string()), "{err}");
    assert_eq!(aside(&state.join("images"), "").len(), 1);
    assert_eq!(rig.ok(&["health"]).await["status"], "ok");
}

#[actix::test]
async fn history_survives_restarts_and_retention_shrinks_it_and_the_spool() {
    let rack = standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            ..Timings::instant()
        },
    );
    let rig = rig(rack).tables("[updates]\nhistory = 2").build().await;
    let spool = rig.state_dir().join("images");
    // A refused start (no slot 9) leaves nothing behind.
    let refused = uuid::Uuid::new_v4().to_string();
    {
        let image = rig
            .file("refused.img", &host_image(100_000, 9))
            .display()
            .to_string();
        rig.start().await;
        let args = [
            "update", "start", "sled-0", HBF, "--slot", "9", "--image", &image, "--id", &refused,
        ];
        assert_eq!(rig.mgsctl(&args).await.0, 5);
        rig.term().await;
    }
    let mut ids = Vec::new();
    for n in 0..3 {
        let image = rig
            .file(&format!("host-{n}.img"), &host_image(200_000, 10 + n))
            .display()
            .to_string();
        rig.start().await;
        let id = uuid::Uuid::new_v4().to_string();
        rig.ok(&[
            "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
        ])
        .await;
        assert_eq!(rig.mgsctl(&["watch", &id]).await.0, 0);
        ids.push(id);
        rig.term().await;
    }
    rig.start().await;
    let history = rig.ok(&["history"]).await;
    let listed: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        [ids[2].clone(), ids[1].clone()],
        "newest first, two kept"
    );
    let row = &history[0];
    assert_eq!(row["phase"], "complete");
    assert!(
        row["duration_ms"].as_u64().is_some() && row["mean_bytes_per_second"].as_u64() > Some(0)
    );
    // The forgotten update's id is unknown now; its image left the spool.
    let (code, _, _) = rig.mgsctl(&["watch", &ids[0]]).await;
    assert_eq!(code, 4);
    assert_eq!(rig.mgsctl(&["watch", &refused]).await.0, 4);
    let spooled = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(spooled, 2);
    // The human table shows them too.
    let (code, out, _) = rig
        .mgsctl(&["history", "--sp", "sled-0", "--since", "1h"])
        .await;
    assert_eq!(code, 0);
    assert!(out.contains(&ids[2]) && out.contains("complete"), "{out}");
}

#[actix::test]
async fn sigkill_mid_activation_recognises_the_new_image_after_restart() {
    use artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
    let mut rack = realistic();
    // Silent long enough after the trigger to kill the daemon meanwhile.
    rack.timings.reset_ms = 3000;
    // A reset budget of 10 s, a watchdog window of 15 s.
    let rig = rig(rack)
        .sp_defaults(SpDefaults {
            per_attempt_timeout_ms: Some(200),
            max_attempts_reset: Some(50),
            ..sp_defaults()
        })
        .build()
        .await;
    let sp = &rig.rack().sps[0];
    let board = "gimlet-e";
    let archive = rig
        .file(
            "sp.zip",
            &build::archive(ArchiveSpec {
                image: build::sp_image(board, 64 * 1024, "1.0.50"),
                base: SP_IMAGE_BASE,
                aux: None,
                image_name: Some("default"),
                board,
                name: board,
                chip: SP_CHIP,
                git_rev: &build::fake_git_rev(board, "1.0.50"),
                bzip2: false,
            }),
        )
        .display()
        .to_string();
    let before = sp.device().archive_id();
    rig.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let args = [
        "update",
        "start",
        "sled-0",
        "sp",
        "--archive",
        &archive,
        "--id",
        &id,
        "--activate",
    ];
    let client = rig.mgsctl(&args);
    let trigger = async {
        until("the reset trigger", Duration::from_secs(30), async || {
            sp.fault_stats().resets == 1
        })
        .await;
    };
    // The client is cut off when the daemon dies.
    let ((code, _, _), ()) = tokio::join!(client, async {
        trigger.await;
        rig.kill9().await;
    });
    assert_ne!(code, 0);
    rig.start().await;
    let (code, out, err) = rig.mgsctl(&["--json", "watch", &id]).await;
    assert_eq!(code, 0, "{out} {err} {}", rig.log());
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let record = &last["ok"];
    assert_eq!(record["phase"], "complete", "{record}");
    let a = &record["activation"];
    assert_eq!(a["outcome"], "activated", "{a}");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("after a daemon restart"),
        "{a}"
    );
    assert_eq!(a["watchdog_disabled"], true, "{a}");
    assert_eq!(a["running"]["vers"], "1.0.50", "{a}");
    let (armed, after) = {
        let device = sp.device();
        (device.watchdog_armed(), device.archive_id())
    };
    assert!(!armed, "disabled before its window ran out");
    assert_ne!(after, before);
    assert_eq!(sp.fault_stats().resets, 1, "reset once");
}
