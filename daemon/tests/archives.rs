//! Updates from Hubris build archives, end to end through the real control
//! socket and the real `mgsctl`, against an in-process simulated rack:
//! aux flash sent then skipped, board and slot checks before any traffic,
//! a corrupt aux image refused locally, and `artifact inspect`.

mod common;

use artifacts::build::{self, ArchiveSpec, ROT_CHIP, SP_CHIP, SP_IMAGE_BASE};
use artifacts::Tag;
use common::{mgsctl, standard_rack, Rig, SpDefaults};
use serde_json::Value;
use sp_sim::Timings;
use std::path::Path;
use std::time::Instant;

/// A sled, a switch and the daemon in this process, with the daemon's own
/// RPC patience and host-flash size.
async fn daemon() -> Rig {
    let rack = standard_rack(
        1,
        1,
        0,
        Timings {
            write_kib_per_s: 16 * 1024,
            ..Timings::instant()
        },
    );
    let sp_defaults = SpDefaults {
        per_attempt_timeout_ms: None,
        max_attempts: None,
        host_flash_capacity_mib: None,
        ..SpDefaults::default()
    };
    Rig::in_process(rack).sp_defaults(sp_defaults).start().await
}

/// Update prepares `sp` has accepted.
fn prepares(d: &Rig, sp: &str) -> u64 {
    d.sp(sp).fault_stats().prepares
}

/// A switch SP archive: a 1 MiB image for `board`, with aux flash.
fn switch_archive(board: &str, aux: Option<Vec<u8>>) -> Vec<u8> {
    build::archive(ArchiveSpec {
        image: build::sp_image(board, 1024 * 1024, "1.0.34"),
        base: SP_IMAGE_BASE,
        aux,
        image_name: Some("default"),
        board,
        name: "sidecar-rev-c",
        chip: SP_CHIP,
        git_rev: &build::fake_git_rev(board, "1.0.34"),
        bzip2: true,
    })
}

fn aux_image(len: usize) -> Vec<u8> {
    let blob: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    build::aux_flash(&[(Tag(*b"QSFP"), &blob)])
}

#[actix::test]
async fn a_switch_update_sends_its_aux_flash_once_then_skips_it() {
    let d = daemon().await;
    // 2 MiB in all: a whole aux-flash slot.
    let aux = aux_image(2 * 1024 * 1024 - 80);
    let aux_len = aux.len() as u64;
    let archive = d
        .file("sidecar.zip", &switch_archive("sidecar-c", Some(aux)))
        .display()
        .to_string();
    let mut times = Vec::new();
    let mut chunks = Vec::new();
    for round in 0..2 {
        let id = uuid::Uuid::new_v4().to_string();
        let t = Instant::now();
        let (code, v, err) = d
            .json(&[
                "update",
                "start",
                "switch-0",
                "sp",
                "--archive",
                &archive,
                "--id",
                &id,
                "--watch",
            ])
            .await;
        if code != 0 {
            let (_, s, _) = d.json(&["update", "status", "switch-0", "sp"]).await;
            panic!("round {round}: {v} {err}; status {s}");
        }
        times.push(t.elapsed());
        assert_eq!(v["ok"]["phase"], "complete", "{v}");
        assert_eq!(v["ok"]["aux_flash_bytes"], aux_len, "{v}");
        assert_eq!(v["ok"]["artifact"]["bord"], "sidecar-c", "{v}");
        assert_eq!(v["ok"]["artifact"]["vers"], "1.0.34", "{v}");
        chunks.push(v["ok"]["chunks_sent"].as_u64().unwrap());
        if round == 0 {
            // The SP takes no other update until reset: the new image
            // boots, the aux-flash slot stays.
            let (code, v, err) = d
                .json(&["update", "start", "switch-0", "sp", "--archive", &archive])
                .await;
            assert_eq!(code, 8, "{v} {err}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("reset"),
                "{v}"
            );
            let (code, v, err) = d.json(&["reset", "switch-0"]).await;
            assert_eq!(code, 0, "{v} {err}");
        }
    }
    // The first round sends the aux image and the SP image; the second
    // finds the aux image in a slot already and sends the SP image only.
    let sp_chunks = (1024 * 1024u64).div_ceil(gateway_messages::MAX_UPDATE_CHUNK_DATA as u64);
    assert!(chunks[0] > sp_chunks + aux_len / 2048, "{chunks:?}");
    assert!(chunks[1] <= sp_chunks + 16, "aux skipped: {chunks:?}");
    println!(
        "FIGURE 1 MiB SP image + {} KiB aux flash to a simulated switch: first {:.2} s ({} chunks), again {:.2} s ({} chunks, aux skipped)",
        aux_len / 1024,
        times[0].as_secs_f64(),
        chunks[0],
        times[1].as_secs_f64(),
        chunks[1]
    );
}

#[actix::test]
async fn an_archive_for_another_board_is_refused_before_any_traffic() {
    let d = daemon().await;
    let archive = d
        .file("sidecar.zip", &switch_archive("sidecar-c", None))
        .display()
        .to_string();
    let (code, v, err) = d
        .json(&["update", "start", "sled-0", "sp", "--archive", &archive])
        .await;
    assert_eq!(code, 5, "{v} {err}");
    assert_eq!(v["error"]["code"], "bad_image", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sidecar-c") && message.contains("gimlet"),
        "names both boards: {message}"
    );
    assert_eq!(prepares(&d, "sled-0"), 0, "nothing was sent");
    // An image without a header, or a broken caboose, is refused too.
    let mut bad = build::sp_image("gimlet-e", 64 * 1024, "1.0.0");
    bad[0x298] ^= 0xFF;
    let broken = d
        .file(
            "broken.zip",
            &build::archive(ArchiveSpec {
                image: bad,
                base: SP_IMAGE_BASE,
                aux: None,
                image_name: Some("default"),
                board: "gimlet-e",
                name: "gimlet",
                chip: SP_CHIP,
                git_rev: "0",
                bzip2: false,
            }),
        )
        .display()
        .to_string();
    let (code, v, _) = d
        .json(&["update", "start", "sled-0", "sp", "--archive", &broken])
        .await;
    assert_eq!(code, 5, "{v}");
    assert_eq!(prepares(&d, "sled-0"), 0);
}

#[actix::test]
async fn a_corrupt_aux_image_and_a_rot_image_for_the_other_slot_are_refused_locally() {
    let d = daemon().await;
    let mut aux = aux_image(4096);
    let last = aux.len() - 20;
    aux[last] ^= 0x01; // inside the blob: CRC and CHCK no longer hold
    let archive = d
        .file("corrupt.zip", &switch_archive("sidecar-c", Some(aux)))
        .display()
        .to_string();
    let (code, v, _) = d
        .json(&["update", "start", "switch-0", "sp", "--archive", &archive])
        .await;
    assert_eq!(code, 5, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("auxi"),
        "{v}"
    );
    assert_eq!(prepares(&d, "switch-0"), 0);

    let rot_b = build::archive(ArchiveSpec {
        image: build::rot_image_for_slot("oxide-rot-1", 128 * 1024, "1.0.14", 1),
        base: 0x0004_0000,
        aux: None,
        image_name: Some("b"),
        board: "oxide-rot-1",
        name: "oxide-rot-1",
        chip: ROT_CHIP,
        git_rev: "0",
        bzip2: true,
    });
    let rot_b = d.file("rot-b.zip", &rot_b).display().to_string();
    let (code, v, _) = d
        .json(&[
            "update",
            "start",
            "sled-0",
            "rot",
            "--slot",
            "0",
            "--archive",
            &rot_b,
        ])
        .await;
    assert_eq!(code, 5, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains('b'), "{v}");
    assert_eq!(prepares(&d, "sled-0"), 0);
}

#[actix::test]
async fn artifact_inspect_shows_the_caboose_and_the_aux_flash() {
    let d = daemon().await;
    let archive = d
        .file(
            "sidecar.zip",
            &switch_archive("sidecar-c", Some(aux_image(1000))),
        )
        .display()
        .to_string();
    let (code, v, err) = d.json(&["artifact", "inspect", &archive]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["caboose"]["BORD"], "sidecar-c", "{v}");
    assert_eq!(v["caboose"]["VERS"], "1.0.34", "{v}");
    assert_eq!(v["image"]["header_offset"], "0x298", "{v}");
    assert_eq!(v["aux_flash"]["chck_verified"], true, "{v}");
    assert_eq!(v["aux_flash"]["blobs"][0]["tag"], "QSFP", "{v}");
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        members.contains(&"img/final.elf") && members.contains(&"img/auxi.tlvc"),
        "{members:?}"
    );
    let (code, _, err) = mgsctl(
        Path::new("/nonexistent"),
        &["artifact", "inspect", "/etc/hostname"],
    )
    .await;
    assert_eq!(code, 5, "not an archive: {err}");
}
