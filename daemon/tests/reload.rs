//! Reconfiguration on SIGHUP, against the real `mgsd` binary: an SP an
//! update holds is neither removed nor renamed (the reload is refused,
//! naming the update, and nothing changes), a file that does not parse or
//! names no SP is refused with the running SPs still served, and an SP
//! that comes back under another name is found again by its serial.

mod common;

use common::{host_image, new_id, standard_rack, Rig, SpDefaults, HBF, MIB};
use sp_sim::Timings;
use std::time::{Duration, Instant};

/// Two sleds writing at 512 KiB/s (a 2 MiB update takes four seconds),
/// and the daemon as a child with a state directory.
async fn rig() -> Rig {
    let rack = standard_rack(
        2,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            write_kib_per_s: 512,
            ..Timings::instant()
        },
    );
    Rig::child(rack)
        .state()
        .sp_defaults(SpDefaults::default())
        .start()
        .await
}

async fn names(r: &Rig) -> Vec<String> {
    let list = r.ok(&["list"]).await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Start a 2 MiB update on sled-0 and wait until it delivers.
async fn update_under_way(r: &Rig) -> String {
    let img = r.file("host.img", &host_image(2 * MIB, 3));
    let id = new_id();
    let img = img.to_str().unwrap();
    r.ok(&[
        "update", "start", "sled-0", HBF, "--image", img, "--id", &id,
    ])
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.ok(&["update", "status", "sled-0", HBF]).await["delivery"]["phase"] != "delivering" {
        assert!(Instant::now() < deadline, "the update never delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

async fn until_complete(r: &Rig, sp: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.ok(&["update", "status", sp, HBF]).await["delivery"]["phase"] != "complete" {
        assert!(Instant::now() < deadline, "the update never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn a_reload_that_drops_or_renames_an_sp_mid_update_is_refused_and_changes_nothing() {
    let r = rig().await;
    let (a, b) = (r.rack().sps[0].addr, r.rack().sps[1].addr);
    let id = update_under_way(&r).await;
    for (what, sps) in [
        ("dropped", vec![("sled-1", b)]),
        ("renamed", vec![("sled-x", a), ("sled-1", b)]),
    ] {
        let line = r.reload(&sps).await;
        assert!(line.contains("reload refused"), "{what}: {line}");
        assert!(line.contains("WARN"), "{what}: logged at WARN: {line}");
        assert!(
            line.contains("sled-0") && line.contains(&id),
            "{what}: the refusal names the SP and its update: {line}"
        );
        assert_eq!(names(&r).await, ["sled-0", "sled-1"], "{what}");
    }
    // The update was never disturbed, and nothing runs once it ended.
    until_complete(&r, "sled-0").await;
    assert_eq!(r.ok(&["health"]).await["active_updates"], 0);
    // Now the rename is taken, and the renamed SP is found again by its
    // serial: its update status shows the update.
    let line = r.reload(&[("sled-x", a), ("sled-1", b)]).await;
    assert!(line.contains("configuration reloaded"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = r.ok(&["list"]).await;
        let x = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "sled-x");
        if x.is_some_and(|x| x["serial"].is_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "sled-x not found again: {list}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = r.ok(&["update", "status", "sled-x", HBF]).await;
    assert_eq!(status["delivery"]["id"], id.as_str(), "{status}");
    assert_eq!(status["sp_status"]["state"], "complete", "{status}");
    assert_eq!(status["sp_status_holder"], "ours", "{status}");
}

#[actix::test]
async fn an_empty_or_broken_configuration_is_refused_and_the_sps_stay() {
    let r = rig().await;
    let before = names(&r).await;
    let sps: Vec<_> = r
        .rack()
        .sps
        .iter()
        .map(|s| (s.name.as_str(), s.addr))
        .collect();
    for (what, text) in [
        ("no [[sp]]", r.config_text(&[])),
        ("empty", String::new()),
        ("broken", "[control\nsocket = ".to_string()),
    ] {
        r.write_config(&text);
        let line = r.hup().await;
        assert!(line.contains("reload refused"), "{what}: {line}");
        assert!(line.contains("WARN"), "{what}: {line}");
        assert_eq!(names(&r).await, before, "{what}: still served");
        assert_eq!(r.ok(&["health"]).await["reachable"], 2, "{what}");
    }
    // A good file again is taken.
    let line = r.reload(&sps[..1]).await;
    assert!(line.contains("configuration reloaded"), "{line}");
    assert_eq!(names(&r).await, ["sled-0"]);
}
