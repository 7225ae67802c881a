//! Host phase-2 recovery end to end: an image uploaded (socket, HTTP,
//! mgsctl), a simulated host fetching it chunk by chunk through its SP,
//! under loss, the protocol's answers to an unknown image and a bad
//! offset, the cache's bound, progress, and the installinator image id.

mod common;

use common::http::{validate, Client};
use common::{err_code, standard_rack, until, Rig, SpDefaults};
use serde_json::json;
use sp_sim::{build_phase2_image, FaultConfig, Phase2State, Timings};
use std::os::fd::AsFd;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

async fn daemon(tables: &str) -> Rig {
    let rack = standard_rack(1, 0, 0, Timings::instant());
    Rig::in_process(rack)
        .sp_defaults(SpDefaults::default())
        .tables(&format!(
            "[http]\nswitch_slot = 0\n[[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n{tables}"
        ))
        .start()
        .await
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn upload(rig: &Rig, image: &[u8]) -> serde_json::Value {
    let path = rig.file("phase2.img", image);
    let file = std::fs::File::open(path).unwrap();
    let mut c = rig.conn().await;
    c.ask_fds(&json!({"cmd": "recovery_upload"}), &[file.as_fd()])
        .await
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn completes(rig: &Rig) {
    until("the host's fetch completes", LIMIT, async || {
        let p = rig.sp("sled-0").phase2_progress().unwrap();
        assert!(!matches!(p.state, Phase2State::Failed(_)), "{:?}", p.state);
        p.state == Phase2State::Complete
    })
    .await;
}

#[actix::test]
async fn a_host_recovers_through_its_sp_under_loss() {
    let rig = daemon("").await;
    let (image, hash) = build_phase2_image(&data(8 * 1024 * 1024, 1));
    let kept = upload(&rig, &image).await;
    assert_eq!(kept["ok"]["sha256_hash"], hex(&hash), "{kept}");
    assert_eq!(kept["ok"]["len"], image.len(), "{kept}");
    let sled = rig.sp("sled-0");
    sled.set_faults(FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        ..FaultConfig::default()
    });
    sled.start_recovery(hash);
    completes(&rig).await;
    let p = sled.phase2_progress().unwrap();
    assert_eq!(p.total, Some(image.len() as u64));
    // The daemon's view of the SP's latest request.
    let s = rig
        .ask(&json!({"cmd": "recovery_status", "sp": "sled-0"}))
        .await;
    assert_eq!(s["ok"]["progress"], "available", "{s}");
    assert_eq!(s["ok"]["image_id"]["sha256_hash"], hex(&hash));
    assert_eq!(s["ok"]["total_size"], image.len());
    // Cleared, it says none.
    rig.ask(&json!({"cmd": "recovery_clear", "sp": "sled-0"}))
        .await;
    until("cleared", LIMIT, async || {
        let s = rig
            .ask(&json!({"cmd": "recovery_status", "sp": "sled-0"}))
            .await;
        s["ok"]["progress"] == "none"
    })
    .await;
}

#[actix::test]
async fn unknown_images_and_bad_offsets_get_the_protocols_answers() {
    let rig = daemon("").await;
    let sled = rig.sp("sled-0");
    // Nothing held: the host hears HostPhase2Unavailable.
    sled.start_recovery([9; 32]);
    until("the host is told the image is unavailable", LIMIT, async || {
        let p = sled.phase2_progress().unwrap();
        p.errors
            .iter()
            .any(|e| matches!(e, gateway_messages::MgsError::HostPhase2Unavailable { hash } if *hash == [9; 32]))
    })
    .await;
    // An image whose header promises more than it holds: the host asks
    // past its end and hears HostPhase2ImageBadOffset.
    let (mut image, _) = build_phase2_image(&data(10_000, 2));
    image[16..24].copy_from_slice(&20_000u64.to_le_bytes());
    let kept = upload(&rig, &image).await;
    let id = kept["ok"]["sha256_hash"].as_str().unwrap().to_string();
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    sled.start_recovery(hash);
    until("the host is told the offset is bad", LIMIT, async || {
        let p = sled.phase2_progress().unwrap();
        p.errors.iter().any(|e| {
            matches!(e, gateway_messages::MgsError::HostPhase2ImageBadOffset { offset, .. } if *offset == image.len() as u64)
        })
    })
    .await;
}

#[actix::test]
async fn the_cache_keeps_its_bound_and_evicts_the_least_recently_requested() {
    let rig = daemon("[recovery]\nmax_images = 2\nmax_mib = 1\n").await;
    let images: Vec<(Vec<u8>, [u8; 32])> = (0..3)
        .map(|i| build_phase2_image(&data(300 * 1024, i)))
        .collect();
    upload(&rig, &images[0].0).await;
    upload(&rig, &images[1].0).await;
    // The host asks for the first: the second is now the least recent.
    rig.sp("sled-0").start_recovery(images[0].1);
    completes(&rig).await;
    upload(&rig, &images[2].0).await;
    let held = rig.ask(&json!({"cmd": "recovery_images"})).await;
    let ids: Vec<&str> = held["ok"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sha256_hash"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [hex(&images[2].1), hex(&images[0].1)], "{held}");
    // Too large for the cache: refused, naming the bound.
    let big = upload(&rig, &data(2 * 1024 * 1024, 5)).await;
    assert_eq!(err_code(&big), "bad_image", "{big}");
    assert!(big.to_string().contains("max_mib"), "{big}");
}

#[actix::test]
async fn the_http_paths_match_the_reference() {
    let rig = daemon("").await;
    let c = Client::new(rig.http_addr().await);
    let (image, hash) = build_phase2_image(&data(200_000, 3));
    let a = c
        .post_bytes(
            "/recovery/host-phase2",
            image.clone(),
            "application/octet-stream",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("post", "/recovery/host-phase2", &a);
    assert_eq!(a.json["sha256_hash"], hex(&hash));
    let p = c.get("/sp/sled/0/host-phase2-progress").await;
    validate("get", "/sp/{type}/{slot}/host-phase2-progress", &p);
    assert_eq!(p.json["progress"], "none", "{}", p.text);
    rig.sp("sled-0").start_recovery(hash);
    completes(&rig).await;
    let p = c.get("/sp/sled/0/host-phase2-progress").await;
    assert_eq!(p.status, 200, "{}", p.text);
    validate("get", "/sp/{type}/{slot}/host-phase2-progress", &p);
    assert_eq!(p.json["progress"], "available");
    assert_eq!(p.json["total_size"], image.len());
    let d = c
        .send("DELETE", "/sp/sled/0/host-phase2-progress", None, None)
        .await;
    assert_eq!(d.status, 204, "{}", d.text);

    let id = json!({
        "update_id": "6ec3c3a6-7a8e-4c1b-9d0e-0c4b1b0c9f51",
        "host_phase_2": hex(&hash),
        "control_plane": hex(&[7; 32]),
    });
    let s = c
        .send(
            "PUT",
            "/sp/sled/0/ipcc/installinator-image-id",
            Some(serde_json::to_vec(&id).unwrap()),
            Some("application/json"),
        )
        .await;
    assert_eq!(s.status, 204, "{}", s.text);
    let value = rig.sp("sled-0").installinator_image_id();
    assert_eq!(value.len(), 80);
    assert_eq!(&value[16..48], &hash);
    let bad = c
        .send(
            "PUT",
            "/sp/sled/0/ipcc/installinator-image-id",
            Some(
                serde_json::to_vec(&json!({"update_id": "6ec3c3a6-7a8e-4c1b-9d0e-0c4b1b0c9f51", "host_phase_2": "zz", "control_plane": "00"}))
                    .unwrap(),
            ),
            Some("application/json"),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let d = c
        .send(
            "DELETE",
            "/sp/sled/0/ipcc/installinator-image-id",
            None,
            None,
        )
        .await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert!(rig.sp("sled-0").installinator_image_id().is_empty());
}

#[actix::test]
async fn mgsctl_uploads_and_reports() {
    let rig = daemon("").await;
    let (image, hash) = build_phase2_image(&data(100_000, 4));
    let path = rig.file("p2.img", &image);
    let (code, out, err) = rig
        .mgsctl(&["recovery", "upload", path.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&hex(&hash)), "{out}");
    rig.sp("sled-0").start_recovery(hash);
    completes(&rig).await;
    let (code, out, err) = rig.mgsctl(&["recovery", "status", "sled-0"]).await;
    assert_eq!(code, 0, "{out}{err}");
    // The latest request is for the last chunk: its offset, of the whole.
    assert!(out.contains(&format!("of {}", image.len())), "{out}");
}
