//! End to end through the real control socket and the real `mgsctl`
//! binary, against an in-process simulated rack: inspecting SPs, power,
//! slots and resets; updates started, watched, aborted and started again;
//! a client that goes away mid-watch; bad requests and a bad configuration
//! file; one watch of every update.

mod common;

use common::{host_image, mgsctl, standard_rack, Rig};
use serde_json::Value;
use sp_sim::Timings;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Two sleds, a switch and a power shelf with 4 MiB of host flash (writes
/// at `write_kib_per_s`, 0 = unlimited), and the daemon in this process
/// with a state directory.
async fn daemon(write_kib_per_s: u64) -> Rig {
    let rack = standard_rack(
        2,
        1,
        1,
        Timings {
            host_flash_mib: 4,
            reset_ms: 100,
            write_kib_per_s,
            ..Timings::instant()
        },
    );
    Rig::in_process(rack).state().start().await
}

/// `line` as it is, on a connection of its own: the answer.
async fn raw(d: &Rig, line: &[u8]) -> Value {
    let mut c = d.conn().await;
    c.write(line).await;
    c.next().await.expect("an answer, not end of stream")
}

/// A host-flash image of `len` bytes in the rig's directory.
fn image(d: &Rig, name: &str, len: usize) -> PathBuf {
    d.file(name, &host_image(len, 0))
}

#[actix::test]
async fn inspect_power_slots_and_reset() {
    let d = daemon(0).await;
    let list = d.ok(&["list"]).await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["psc-0", "sled-0", "sled-1", "switch-0"]);
    assert_eq!(list[1]["versions"]["sp"], "1.0.33");
    assert_eq!(list[1]["serial"], d.rack().sps[0].serial.as_str());
    let (code, table, _) = d.mgsctl(&["list"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("sled-0") && table.contains("BRM42220000"),
        "{table}"
    );

    let state = d.ok(&["state", "sled-0"]).await;
    assert_eq!(state["state"]["serial"], "BRM42220000");
    // By serial number too.
    let by_serial = d.ok(&["state", "BRM42220000"]).await;
    assert_eq!(by_serial["name"], "sled-0");

    let cab = d.ok(&["caboose", "sled-0"]).await;
    assert_eq!(cab["values"]["BORD"], "gimlet-e");
    let rot = d
        .ok(&[
            "caboose",
            "switch-0",
            "--component",
            "rot",
            "--slot",
            "1",
            "--key",
            "VERS",
        ])
        .await;
    assert_eq!(rot["values"]["VERS"], "1.0.13");

    assert_eq!(d.ok(&["power", "get", "sled-1"]).await["power_state"], "A0");
    assert_eq!(
        d.ok(&["power", "set", "sled-1", "A2"]).await["changed"],
        true
    );
    assert_eq!(
        d.ok(&["power", "set", "sled-1", "a2"]).await["changed"],
        false
    );
    assert_eq!(d.ok(&["power", "get", "sled-1"]).await["power_state"], "A2");

    d.ok(&["slot", "set", "sled-0", "host-boot-flash", "1", "--persist"])
        .await;
    let slots = d.ok(&["slot", "get", "sled-0", "host-boot-flash"]).await;
    assert_eq!(
        (slots["active"].as_u64(), slots["persistent"].as_u64()),
        (Some(1), Some(1))
    );

    d.ok(&["reset", "sled-0"]).await;
    assert_eq!(d.rack().sps[0].fault_stats().resets, 1);
    d.ok(&["reset", "switch-0", "rot"]).await;
}

#[actix::test]
async fn update_start_watch_status_and_abort() {
    let d = daemon(0).await;
    let img = image(&d, "a.img", 300_000);
    let id = uuid::Uuid::new_v4().to_string();
    let img_s = img.to_str().unwrap();
    let (code, out, err) = d
        .mgsctl(&[
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--slot",
            "1",
            "--image",
            img_s,
            "--id",
            &id,
            "--watch",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("complete, hash verified"), "{out}");
    let status = d
        .ok(&["update", "status", "sled-0", "host-boot-flash"])
        .await;
    assert_eq!(status["sp_status"]["state"], "complete");
    assert_eq!(status["sp_status"]["id"], id.as_str());
    assert_eq!(status["delivery"]["phase"], "complete");
    let (code, human, _) = d
        .mgsctl(&["update", "status", "sled-0", "host-boot-flash"])
        .await;
    assert_eq!(code, 0);
    assert!(human.contains("complete") && human.contains(&id), "{human}");

    // Same id, same image: idempotent. Other image: conflict (exit 8).
    let again = d
        .ok(&[
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--slot",
            "1",
            "--image",
            img_s,
            "--id",
            &id,
        ])
        .await;
    assert_eq!(again["phase"], "complete");
    let other = image(&d, "b.img", 200_000);
    let (code, _, err) = d
        .mgsctl(&[
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--slot",
            "1",
            "--image",
            other.to_str().unwrap(),
            "--id",
            &id,
        ])
        .await;
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("conflicts"), "{err}");

    // Abort: a slow SP so the update is still running.
    let slow = daemon(200).await;
    let started = slow
        .ok(&[
            "update",
            "start",
            "sled-1",
            "host-boot-flash",
            "--image",
            img_s,
        ])
        .await;
    let sid = started["id"].as_str().unwrap().to_string();
    let (code, _, err) = slow
        .mgsctl(&[
            "update",
            "abort",
            "sled-1",
            "host-boot-flash",
            &uuid::Uuid::new_v4().to_string(),
        ])
        .await;
    assert_eq!(code, 8, "wrong id is refused by the SP: {err}");
    slow.ok(&["update", "abort", "sled-1", "host-boot-flash", &sid])
        .await;
    let status = slow
        .ok(&["update", "status", "sled-1", "host-boot-flash"])
        .await;
    assert_eq!(status["sp_status"]["state"], "aborted");
    let (code, _, err) = slow.mgsctl(&["watch", &sid]).await;
    assert_eq!(code, 7, "watching an aborted update: {err}");
}

#[actix::test]
async fn client_disconnect_mid_watch_does_not_cancel_the_update() {
    let d = daemon(300).await;
    let img = image(&d, "c.img", 400_000);
    let id = uuid::Uuid::new_v4().to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsctl"))
        .arg("--socket")
        .arg(d.socket())
        .args([
            "update",
            "start",
            "sled-0",
            "host-boot-flash",
            "--image",
            img.to_str().unwrap(),
            "--id",
            &id,
            "--watch",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the client once delivery is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d
            .ok(&["update", "status", "sled-0", "host-boot-flash"])
            .await;
        if s["delivery"]["bytes_acked"].as_u64().unwrap_or(0) > 50_000 {
            break;
        }
        assert!(Instant::now() < deadline, "delivery not under way: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    let (code, _, err) = d.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 0, "{err}");
    let s = d
        .ok(&["update", "status", "sled-0", "host-boot-flash"])
        .await;
    assert_eq!(s["sp_status"]["state"], "complete");
}

#[actix::test]
async fn bad_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    let d = daemon(0).await;
    let img = image(&d, "d.img", 100_000);
    let img_s = img.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 5] = [
        (&["state", "sled-42"], 4, "unknown SP"),
        (
            &["update", "start", "sled-0", "fan-ctrl", "--image", img_s],
            5,
            "fan-ctrl",
        ),
        (
            &[
                "update",
                "start",
                "sled-0",
                "host-boot-flash",
                "--slot",
                "9",
                "--image",
                img_s,
            ],
            5,
            "invalid slot",
        ),
        (
            &[
                "update",
                "start",
                "sled-0",
                "host-boot-flash",
                "--image",
                "/nonexistent/image.bin",
            ],
            5,
            "/nonexistent/image.bin",
        ),
        (
            &["update", "status", "switch-0", "host-boot-flash"],
            5,
            "not supported",
        ),
    ];
    for (args, want, text) in cases {
        let (code, _, err) = d.mgsctl(args).await;
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
    }
    let malformed = raw(&d, b"{\"cmd\": \"list\"\n").await;
    assert_eq!(malformed["error"]["code"], "bad_request");
    let unknown_field = raw(
        &d,
        b"{\"cmd\":\"state\",\"sp\":\"sled-0\",\"verbose\":true}\n",
    )
    .await;
    assert_eq!(unknown_field["error"]["code"], "bad_request");
    assert!(unknown_field["error"]["message"]
        .as_str()
        .unwrap()
        .contains("verbose"));
    let unknown_cmd = raw(&d, b"{\"cmd\":\"selfdestruct\",\"request_id\":\"x1\"}\n").await;
    assert_eq!(unknown_cmd["error"]["code"], "bad_request");
    assert_eq!(unknown_cmd["request_id"], "x1");
    let mut huge = vec![b'x'; 100_000];
    huge.push(b'\n');
    let too_large = raw(&d, &huge).await;
    assert_eq!(too_large["error"]["code"], "request_too_large");
    // Still serving, and nothing changed.
    assert_eq!(d.ok(&["version"]).await["protocol"], 1);
    assert_eq!(
        d.ok(&["update", "status", "sled-0", "host-boot-flash"])
            .await["sp_status"]["state"],
        "none"
    );
    // Unreachable daemon: exit 3.
    let (code, _, err) = mgsctl(&PathBuf::from("/nonexistent/mgsd.sock"), &["list"]).await;
    assert_eq!(code, 3, "{err}");
}

#[test]
fn bad_config_file_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mgsd.toml");
    std::fs::write(&path, "[sp_defaults.delivery]\npipeline_depht = 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("pipeline_depht"),
        "{err}"
    );
}

#[actix::test]
async fn an_ended_update_started_again_is_reported_as_it_ended() {
    let d = daemon(200).await;
    let img = image(&d, "e.img", 400_000);
    let img_s = img.to_str().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let start = [
        "update",
        "start",
        "sled-1",
        "host-boot-flash",
        "--image",
        img_s,
        "--id",
        &id,
    ];
    d.ok(&start).await;
    // The SP forgets the update halfway: a reset.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d
            .ok(&["update", "status", "sled-1", "host-boot-flash"])
            .await;
        if s["delivery"]["bytes_acked"].as_u64().unwrap_or(0) > 100_000 {
            break;
        }
        assert!(Instant::now() < deadline, "delivery not halfway: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.rack().sps[1].reset_now();
    let (code, _, err) = d.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("failed") && err.contains(&id), "{err}");
    // Starting it again names the same, failed update: exit 7, nothing sent.
    let (code, out, err) = d.mgsctl(&start).await;
    assert_eq!(code, 7, "{out}{err}");
    assert!(err.contains("no longer has this update"), "{err}");
    let (code, out, _) = d.mgsctl(&[&["--json"][..], &start[..]].concat()).await;
    assert_eq!(code, 7);
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"]["phase"], "failed");
    assert_eq!(v["ok"]["id"], id.as_str());

    // A complete one is reported complete (exit 0).
    let done = uuid::Uuid::new_v4().to_string();
    let again = [
        "update",
        "start",
        "sled-0",
        "host-boot-flash",
        "--image",
        img_s,
        "--id",
        &done,
    ];
    let (code, _, err) = d.mgsctl(&[&again[..], &["--watch"][..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = d.mgsctl(&again).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already complete"), "{out}");
}

#[actix::test]
async fn watching_all_updates_shows_each_one_through_its_end() {
    let d = daemon(0).await;
    let img = image(&d, "f.img", 200_000);
    let mut watcher = d.conn().await;
    watcher.write(b"{\"cmd\":\"watch\"}\n").await;
    let ids: Vec<String> = (0..2).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (sp, id) in ["sled-0", "sled-1"].iter().zip(&ids) {
        let args = [
            "update",
            "start",
            sp,
            "host-boot-flash",
            "--image",
            img.to_str().unwrap(),
            "--id",
            id,
        ];
        d.ok(&args).await;
    }
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < 2 {
        let v = watcher
            .next_within(Duration::from_secs(60))
            .await
            .expect("the stream stays open");
        let event = &v["event"];
        assert!(ids.iter().any(|id| event["id"] == id.as_str()), "{v}");
        assert_ne!(event["phase"], "starting", "{v}");
        if event["phase"] == "complete" {
            ended.insert(event["id"].as_str().unwrap().to_string());
        }
    }
}
