//! The state directory is the daemon's alone, and bad or missing state
//! never strands an SP, against the real `mgsd` binary killed and started
//! again on its state directory: modes whatever the umask, a directory
//! others may write refused, spool files that are no images moved aside
//! without blocking, updates given up aborted on their SPs, updates the
//! daemon no longer knows reported and taken over, a full disk refused
//! before anything is sent, a damaged spool copy written again.

mod common;

use common::{host_image, new_id, standard_rack, until, Rig, RigBuilder, SpDefaults, HBF, MIB};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::Value;
use sp_sim::Timings;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One sled writing at 512 KiB/s, and the real `mgsd` with a state
/// directory.
fn rig() -> RigBuilder {
    let rack = standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            write_kib_per_s: 512,
            reset_ms: 100,
            ..Timings::instant()
        },
    );
    Rig::child(rack).state().sp_defaults(SpDefaults::default())
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The one spooled image.
fn spooled(r: &Rig) -> PathBuf {
    let images = r.state_dir().join("images");
    std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 64)
        .unwrap_or_else(|| panic!("nothing spooled in {}", images.display()))
}

fn sp_status(r: &Rig) -> UpdateStatus {
    r.sp("sled-0")
        .update_status(SpComponent::HOST_CPU_BOOT_FLASH)
        .unwrap()
}

/// Start a 2 MiB update and wait until it is past its first 256 KiB.
async fn under_way(r: &Rig) -> String {
    let img = r.file("host.img", &host_image(2 * MIB, 1));
    let id = new_id();
    let img = img.to_str().unwrap();
    r.ok(&[
        "update", "start", "sled-0", HBF, "--image", img, "--id", &id,
    ])
    .await;
    until(
        "delivery is under way",
        Duration::from_secs(30),
        async || {
            r.ok(&["update", "status", "sled-0", HBF]).await["delivery"]["bytes_acked"].as_u64()
                > Some(256 * 1024)
        },
    )
    .await;
    id
}

/// Remove the database with its write-ahead log.
fn lose_the_database(r: &Rig) {
    for name in ["mgsd.db", "mgsd.db-wal", "mgsd.db-shm"] {
        let _ = std::fs::remove_file(r.state_dir().join(name));
    }
}

async fn delivery(r: &Rig) -> Value {
    r.ok(&["update", "status", "sled-0", HBF]).await["delivery"].clone()
}

#[actix::test]
async fn the_state_directory_and_its_files_are_private_whatever_the_umask() {
    // mgsd run by hand under a permissive umask.
    let r = rig().rust_log("info").build().await;
    let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o000));
    r.start().await;
    rustix::process::umask(before);
    let img = r.file_mode("host.img", &host_image(200_000, 2), 0o600);
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
    ])
    .await;
    let state = r.state_dir();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("images")), 0o700);
    assert_eq!(mode(&state.join("mgsd.db")), 0o600);
    assert_eq!(
        mode(&spooled(&r)),
        0o600,
        "the spooled copy of a 0600 image"
    );
}

#[actix::test]
async fn a_state_directory_another_user_may_write_is_refused_at_start() {
    let r = rig().build().await;
    let state = r.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Owned by someone else, too (we run as root).
    std::os::unix::fs::chown(&state, Some(65533), Some(65533)).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .arg("--config")
        .arg(r.config_path())
        .output()
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&state.display().to_string()) && err.contains("uid 65533"),
        "names the path and the problem: {err}"
    );
    assert!(!r.socket().exists(), "it did not serve");
    assert_eq!(
        std::fs::metadata(&state).unwrap().uid(),
        65533,
        "left alone"
    );
}

#[actix::test]
async fn a_spool_file_that_is_no_image_is_moved_aside_the_update_ends_and_the_sp_is_freed() {
    for what in [
        "fifo",
        "link to /dev/zero",
        "flipped byte",
        "deleted",
        "truncated",
    ] {
        let r = rig().start().await;
        let id = under_way(&r).await;
        r.kill9().await;
        let spool = spooled(&r);
        match what {
            "fifo" => {
                std::fs::remove_file(&spool).unwrap();
                let made = std::process::Command::new("mkfifo")
                    .arg(&spool)
                    .status()
                    .unwrap();
                assert!(made.success());
            }
            "link to /dev/zero" => {
                std::fs::remove_file(&spool).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &spool).unwrap();
            }
            "flipped byte" => {
                let mut bytes = std::fs::read(&spool).unwrap();
                bytes[100_000] ^= 1;
                std::fs::write(&spool, bytes).unwrap();
            }
            "deleted" => std::fs::remove_file(&spool).unwrap(),
            _ => {
                let bytes = std::fs::read(&spool).unwrap();
                std::fs::write(&spool, &bytes[..bytes.len() / 2]).unwrap();
            }
        }
        let t = Instant::now();
        r.start().await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            t.elapsed()
        );
        let d = delivery(&r).await;
        assert_eq!(d["phase"], "failed", "{what}: {d}");
        assert_eq!(d["id"], id.as_str(), "{what}");
        // The SP does not keep an update the daemon gave up.
        until(
            &format!("{what}: the SP is freed"),
            Duration::from_secs(10),
            async || matches!(sp_status(&r), UpdateStatus::Aborted(_)),
        )
        .await;
        // The SP aborts before its ack reaches the daemon, which logs it.
        until(
            &format!("{what}: says so"),
            Duration::from_secs(10),
            async || r.log().contains("aborted the given-up update"),
        )
        .await;
        // A new start is not refused as "already running".
        let img = r.file("other.img", &host_image(100_000, 7));
        let v = r
            .ok(&[
                "update",
                "start",
                "sled-0",
                HBF,
                "--image",
                img.to_str().unwrap(),
            ])
            .await;
        assert_eq!(v["phase"], "preparing", "{what}: {v}");
        drop(r);
    }
}

#[actix::test]
async fn an_update_the_daemon_no_longer_knows_is_reported_and_can_be_aborted_or_taken_over() {
    let r = rig().start().await;
    let id = under_way(&r).await;
    r.kill9().await;
    // The state is lost.
    lose_the_database(&r);
    std::fs::write(r.state_dir().join("mgsd.db"), b"garbage, not a database").unwrap();
    r.start().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.log().contains("holds an update of an unknown client") {
        assert!(Instant::now() < deadline, "not reported: {}", r.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let list = r.ok(&["list"]).await;
    let held = &list[0]["unknown_updates"][0];
    assert_eq!(held["sp_status"]["id"], id.as_str(), "{list}");
    let (_, table, _) = r.mgsctl(&["list"]).await;
    assert!(table.contains("unknown client"), "{table}");
    let status = r.ok(&["update", "status", "sled-0", HBF]).await;
    assert_eq!(status["sp_status_holder"], "unknown_client", "{status}");
    // Taken over: aborted and replaced, and the audit says so.
    let img = r.file("new.img", &host_image(100_000, 9));
    let new = new_id();
    let img = img.to_str().unwrap();
    let (code, _, err) = r
        .mgsctl(&[
            "update", "start", "sled-0", HBF, "--image", img, "--id", &new,
        ])
        .await;
    assert_eq!(code, 8, "without --take-over it is refused: {err}");
    let v = r
        .ok(&[
            "update",
            "start",
            "sled-0",
            HBF,
            "--image",
            img,
            "--id",
            &new,
            "--take-over",
        ])
        .await;
    assert_eq!(v["took_over"], id.as_str(), "{v}");
    let audit = r.ok(&["audit", "--limit", "5"]).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains(&id))),
        "{audit}"
    );
    until(
        "the new update completes",
        Duration::from_secs(30),
        async || delivery(&r).await["phase"] == "complete",
    )
    .await;
}

#[actix::test]
async fn an_unknown_update_can_be_aborted_by_its_id() {
    let r = rig().start().await;
    let id = under_way(&r).await;
    r.kill9().await;
    lose_the_database(&r);
    r.start().await;
    r.ok(&["update", "abort", "sled-0", HBF, &id]).await;
    assert!(matches!(sp_status(&r), UpdateStatus::Aborted(_)));
}

/// A tmpfs of `kib` KiB mounted on `dir`, if this machine lets us.
fn tmpfs(dir: &Path, kib: u64) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kib}k,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
    }
    mounted
}

fn umount(dir: &Path) {
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .status();
}

#[actix::test]
async fn a_start_that_cannot_be_journalled_or_spooled_is_refused_and_nothing_is_sent() {
    let r = rig().build().await;
    let state = r.state_dir();
    if !tmpfs(&state, 4096) {
        return;
    }
    r.start().await;
    let small = r.file("small.img", &host_image(100_000, 3));
    let small = small.to_str().unwrap();
    r.ok(&["update", "start", "sled-0", HBF, "--image", small])
        .await;
    until(
        "the first update ends",
        Duration::from_secs(30),
        async || delivery(&r).await["phase"] == "complete",
    )
    .await;
    // Fill the disk.
    let filler = state.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .status();
    let prepares = r.sp("sled-0").fault_stats().prepares;
    // A new image cannot be spooled; the image already spooled cannot be
    // journalled: both refused, naming the path.
    let big = r.file("big.img", &host_image(MIB, 4));
    for image in [big.to_str().unwrap(), small] {
        let (code, out, _) = r
            .mgsctl(&[
                "--json", "update", "start", "sled-0", HBF, "--slot", "1", "--image", image,
            ])
            .await;
        assert_eq!(code, 1, "{out}");
        let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "state_unwritable", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(&state.display().to_string()), "the path: {m}");
    }
    assert_eq!(
        r.sp("sled-0").fault_stats().prepares,
        prepares,
        "nothing sent"
    );
    // No half-written image is left.
    let leftovers: Vec<_> = std::fs::read_dir(state.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    r.kill9().await;
    umount(&state);
}

#[actix::test]
async fn a_damaged_spool_copy_is_written_again_when_its_image_is_sent_again() {
    let r = rig().start().await;
    let bytes = host_image(200_000, 5);
    let img = r.file("host.img", &bytes);
    let img = img.to_str().unwrap();
    r.ok(&["update", "start", "sled-0", HBF, "--image", img])
        .await;
    until("the update ends", Duration::from_secs(30), async || {
        delivery(&r).await["phase"] == "complete"
    })
    .await;
    let spool = spooled(&r);
    let mut damaged = std::fs::read(&spool).unwrap();
    damaged[70_000] ^= 0xFF;
    std::fs::write(&spool, &damaged).unwrap();
    r.restart().await;
    r.ok(&[
        "update", "start", "sled-0", HBF, "--slot", "1", "--image", img,
    ])
    .await;
    assert_eq!(
        std::fs::read(&spool).unwrap(),
        bytes,
        "the copy is whole again"
    );
}
