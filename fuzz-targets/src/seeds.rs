//! The seed corpora, made from the project's own data: the golden wire
//! vectors, request sequences that take a simulated SP through its update,
//! reset and console states, request lines and plans as the docs show
//! them, and artifacts built with `artifacts::build`.
//!
//! `cargo run -p mgsd-fuzz --bin fuzz-seeds` writes them to
//! `fuzz-targets/corpus/<target>/` (deterministic: the same files each
//! time).

use artifacts::build::{self, ArchiveSpec};
use artifacts::tlvc::{encode_chunk, Tag};
use gateway_messages::mgs::RequestDatagram;
use gateway_messages::{
    ComponentUpdatePrepare, IgnitionCommand, MgsRequest, SpComponent, SpUpdatePrepare, UpdateChunk,
    UpdateId, MAX_UPDATE_CHUNK_DATA,
};

/// One seed: its target, its file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// The golden vectors of the wire protocol.
const GOLDEN: &str = include_str!("../../gateway-messages/tests/data/messages.jsonl");

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    wire(&mut seeds);
    dispatch(&mut seeds);
    framing(&mut seeds);
    requests(&mut seeds);
    plans(&mut seeds);
    artifacts(&mut seeds);
    seeds
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("golden hex"))
        .collect()
}

/// Datagrams by name.
type Named = Vec<(String, Vec<u8>)>;

/// `(name, request datagram)` of each golden vector an SP receives, and
/// `(name, datagram)` of each vector at all.
fn golden() -> (Named, Named) {
    let mut to_sp = Vec::new();
    let mut every = Vec::new();
    for line in GOLDEN.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("golden line");
        let name = v["name"].as_str().expect("name").to_string();
        let hex = unhex(v["hex"].as_str().expect("hex"));
        if let Some(request) = v["request_hex"].as_str() {
            to_sp.push((format!("{name}.request"), unhex(request)));
        } else if v["direction"] == "mgs_to_sp" {
            to_sp.push((name.clone(), hex.clone()));
        }
        every.push((name, hex));
    }
    (to_sp, every)
}

fn wire(seeds: &mut Vec<Seed>) {
    let (to_sp, every) = golden();
    for (name, bytes) in every.into_iter().chain(to_sp) {
        seeds.push(("wire_decode", name, bytes));
    }
}

/// One `sp_dispatch` input: the board, then each datagram after `step`
/// (an index into its time steps).
fn session(board: u8, requests: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![board];
    for (control, datagram) in requests {
        out.push(*control);
        out.extend_from_slice(&(datagram.len() as u16).to_le_bytes());
        out.extend_from_slice(datagram);
    }
    out
}

/// Datagrams of a request sequence, numbered from 1; each is
/// `(control byte, request, trailing data)`.
fn numbered(requests: &[(u8, MgsRequest, &[u8])]) -> Vec<(u8, Vec<u8>)> {
    requests
        .iter()
        .enumerate()
        .map(|(i, (c, r, t))| {
            (
                *c,
                RequestDatagram::new(i as u32 + 1, *r, t)
                    .as_bytes()
                    .to_vec(),
            )
        })
        .collect()
}

/// The chunk requests of an update of `image` to `component`.
fn chunks(component: SpComponent, id: UpdateId, image: &[u8]) -> Vec<(u8, MgsRequest, Vec<u8>)> {
    image
        .chunks(MAX_UPDATE_CHUNK_DATA)
        .enumerate()
        .map(|(i, data)| {
            let chunk = UpdateChunk {
                component,
                id,
                offset: (i * MAX_UPDATE_CHUNK_DATA) as u32,
            };
            (0, MgsRequest::UpdateChunk(chunk), data.to_vec())
        })
        .collect()
}

/// Golden requests (to a sled, and the ignition ones to a switch) and
/// sequences through an SP's states.
fn dispatch(seeds: &mut Vec<Seed>) {
    const SLED: u8 = 0;
    const SWITCH: u8 = 1;
    const PSC: u8 = 2;
    let (to_sp, _) = golden();
    for (name, bytes) in to_sp {
        let board = if name.contains("ignition") {
            SWITCH
        } else {
            SLED
        };
        seeds.push(("sp_dispatch", name, session(board, &[(0, bytes)])));
    }
    let id = UpdateId([0x11; 16]);
    let hbf = SpComponent::HOST_CPU_BOOT_FLASH;
    // A host-flash update (an image inside the erased first sector), its
    // status and hash, then another slot made active.
    let image = vec![0xFF; 3000];
    let mut reqs: Vec<(u8, MgsRequest, Vec<u8>)> = vec![(
        0,
        MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
            component: hbf,
            id,
            slot: 1,
            total_size: image.len() as u32,
        }),
        Vec::new(),
    )];
    reqs.push((2, MgsRequest::UpdateStatus(hbf), Vec::new()));
    reqs.extend(chunks(hbf, id, &image));
    reqs.push((0, MgsRequest::UpdateStatus(hbf), Vec::new()));
    reqs.push((0, MgsRequest::StartHostFlashHash { slot: 1 }, Vec::new()));
    reqs.push((4, MgsRequest::GetHostFlashHash { slot: 1 }, Vec::new()));
    reqs.push((
        0,
        MgsRequest::ComponentSetAndPersistActiveSlot {
            component: hbf,
            slot: 1,
        },
        Vec::new(),
    ));
    seeds.push((
        "sp_dispatch",
        "seq_host_flash_update".into(),
        sequence(SLED, &reqs),
    ));
    // An SP update, a reset under the watchdog, the new image confirmed.
    let sp = SpComponent::SP_ITSELF;
    let image = build::sp_image("gimlet-e", build::MIN_IMAGE_LEN + 1000, "9.9.9");
    let mut reqs: Vec<(u8, MgsRequest, Vec<u8>)> = vec![(
        0,
        MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
            id,
            aux_flash_size: 0,
            aux_flash_chck: [0; 32],
            sp_image_size: image.len() as u32,
        }),
        Vec::new(),
    )];
    reqs.extend(chunks(sp, id, &image));
    reqs.push((0, MgsRequest::UpdateStatus(sp), Vec::new()));
    reqs.push((
        0,
        MgsRequest::ComponentWatchdogSupported { component: sp },
        Vec::new(),
    ));
    reqs.push((
        0,
        MgsRequest::ResetComponentPrepare { component: sp },
        Vec::new(),
    ));
    reqs.push((
        0,
        MgsRequest::ResetComponentTriggerWithWatchdog {
            component: sp,
            time_ms: 5_000,
        },
        Vec::new(),
    ));
    reqs.push((4, MgsRequest::SpState, Vec::new()));
    reqs.push((
        0,
        MgsRequest::DisableComponentWatchdog { component: sp },
        Vec::new(),
    ));
    reqs.push((
        0,
        MgsRequest::ReadComponentCaboose {
            component: sp,
            slot: 0,
            key: *b"VERS",
        },
        Vec::new(),
    ));
    seeds.push((
        "sp_dispatch",
        "seq_sp_update_and_reset".into(),
        sequence(SLED, &reqs),
    ));
    // A RoT update of slot B.
    let rot = SpComponent::ROT;
    let image = build::rot_image_for_slot("oxide-rot-1", build::MIN_IMAGE_LEN + 500, "2.0.0", 1);
    let mut reqs: Vec<(u8, MgsRequest, Vec<u8>)> = vec![(
        0,
        MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
            component: rot,
            id,
            slot: 1,
            total_size: image.len() as u32,
        }),
        Vec::new(),
    )];
    reqs.extend(chunks(rot, id, &image));
    reqs.push((0, MgsRequest::UpdateStatus(rot), Vec::new()));
    reqs.push((
        0,
        MgsRequest::UpdateAbort { component: rot, id },
        Vec::new(),
    ));
    seeds.push(("sp_dispatch", "seq_rot_update".into(), sequence(PSC, &reqs)));
    // The host console: attach, write, output over time, detach.
    let cpu = SpComponent::SP3_HOST_CPU;
    let reqs = vec![
        (0, MgsRequest::SerialConsoleAttach(cpu), Vec::new()),
        (
            0,
            MgsRequest::SerialConsoleWrite { offset: 0 },
            b"help\n".to_vec(),
        ),
        (4, MgsRequest::SerialConsoleKeepAlive, Vec::new()),
        (0x0c, MgsRequest::SerialConsoleAttach(cpu), Vec::new()),
        (0, MgsRequest::SerialConsoleBreak, Vec::new()),
        (5, MgsRequest::SerialConsoleDetach, Vec::new()),
    ];
    seeds.push(("sp_dispatch", "seq_console".into(), sequence(SLED, &reqs)));
    // Ignition: a target powered off and on, and the switch itself.
    let reqs = vec![
        (0, MgsRequest::BulkIgnitionState { offset: 0 }, Vec::new()),
        (
            0,
            MgsRequest::IgnitionCommand {
                target: 1,
                command: IgnitionCommand::PowerOff,
            },
            Vec::new(),
        ),
        (0, MgsRequest::IgnitionState { target: 1 }, Vec::new()),
        (
            0,
            MgsRequest::IgnitionCommand {
                target: 35,
                command: IgnitionCommand::PowerReset,
            },
            Vec::new(),
        ),
        (
            0x14,
            MgsRequest::BulkIgnitionLinkEvents { offset: 2 },
            Vec::new(),
        ),
    ];
    seeds.push((
        "sp_dispatch",
        "seq_ignition".into(),
        sequence(SWITCH, &reqs),
    ));
}

/// A session of `(control, request, trailing)` for `board`.
fn sequence(board: u8, reqs: &[(u8, MgsRequest, Vec<u8>)]) -> Vec<u8> {
    let borrowed: Vec<(u8, MgsRequest, &[u8])> = reqs
        .iter()
        .map(|(c, r, t)| (*c, *r, t.as_slice()))
        .collect();
    session(board, &numbered(&borrowed))
}

/// Request lines as the docs show them.
const REQUEST_LINES: &[&str] = &[
    r#"{"cmd": "version"}"#,
    r#"{"cmd": "health"}"#,
    r#"{"cmd": "list"}"#,
    r#"{"cmd": "state", "sp": "sled-0"}"#,
    r#"{"v": 1, "request_id": 7, "cmd": "caboose", "sp": "sled-0", "component": "rot", "slot": 1, "key": "VERS"}"#,
    r#"{"cmd": "power_get", "sp": "sled-1"}"#,
    r#"{"cmd": "power_set", "sp": "sled-1", "state": "A2"}"#,
    r#"{"cmd": "slot_get", "sp": "sled-0", "component": "host-boot-flash"}"#,
    r#"{"cmd": "slot_set", "sp": "sled-0", "component": "host-boot-flash", "slot": 1, "persist": true}"#,
    r#"{"cmd": "reset", "sp": "sled-0", "watchdog_ms": 120000}"#,
    r#"{"cmd": "reset", "sp": "psc-0", "no_watchdog": true}"#,
    r#"{"cmd": "update_start", "sp": "sled-0", "component": "host-boot-flash", "slot": 1, "id": "6f0e3c1a-5a7e-4f43-9a62-1d5d2b9d0c11"}"#,
    r#"{"cmd": "update_start", "sp": "sled-0", "component": "sp", "archive": true, "activate": true, "watchdog_ms": 5000}"#,
    r#"{"cmd": "update_status", "sp": "sled-0", "component": "host-boot-flash"}"#,
    r#"{"cmd": "update_abort", "sp": "sled-0", "component": "host-boot-flash", "id": "6f0e3c1a-5a7e-4f43-9a62-1d5d2b9d0c11"}"#,
    r#"{"cmd": "history", "sp": "sled-0", "component": "rot", "since_unix_ms": 1780000000000, "limit": 1}"#,
    r#"{"cmd": "audit", "limit": 1}"#,
    r#"{"cmd": "watch", "id": "6f0e3c1a-5a7e-4f43-9a62-1d5d2b9d0c11"}"#,
    r#"{"cmd": "rollout_start", "id": "0ddd3c1a-5a7e-4f43-9a62-1d5d2b9d0c11", "plan": {"max_concurrent": 3, "canary": 1, "waves": [3, "50%"], "pause_between_waves": "10m", "after": "reset", "target": [{"kind": "sled", "component": "host-boot-flash", "slot": 1, "image": 0, "line": 7}]}}"#,
    r#"{"cmd": "rollout_status", "id": "0ddd3c1a-5a7e-4f43-9a62-1d5d2b9d0c11"}"#,
    r#"{"cmd": "rollout_pause", "id": "0ddd3c1a-5a7e-4f43-9a62-1d5d2b9d0c11"}"#,
    r#"{"cmd": "rollout_list"}"#,
    r#"{"cmd": "list", "cmd": "version"}"#,
    r#"{"cmd": "update_start", "sp": "a", "component": "sp", "image": "/etc/shadow"}"#,
];

fn requests(seeds: &mut Vec<Seed>) {
    for (i, line) in REQUEST_LINES.iter().enumerate() {
        seeds.push((
            "control_request",
            format!("line_{i:02}"),
            line.as_bytes().to_vec(),
        ));
    }
}

/// Streams of request lines, cut into reads as a client might send them.
fn framing(seeds: &mut Vec<Seed>) {
    // `max` 64, then reads of (length, control) and bytes.
    let read = |out: &mut Vec<u8>, bytes: &[u8], control: u8| {
        out.push(bytes.len() as u8);
        out.push(control);
        out.extend_from_slice(bytes);
    };
    let mut a = 64u16.to_le_bytes().to_vec();
    read(&mut a, br#"{"cmd":"list"}"#, 0);
    read(&mut a, b"\n{\"cmd\":\"upd", 0);
    read(&mut a, b"ate_start\"}\n", 0x81);
    read(&mut a, b"x\n", 0x80);
    seeds.push(("control_framing", "two_lines".into(), a));
    let mut b = 16u16.to_le_bytes().to_vec();
    read(&mut b, &[b'y'; 40], 0);
    read(&mut b, b"yy\nok\nnext", 0x03);
    read(&mut b, b"\n", 0x80);
    read(&mut b, b"", 0x11);
    read(&mut b, b"tail\n", 0x80);
    seeds.push(("control_framing", "too_long_then_fds".into(), b));
}

/// The docs' plan file.
const PLAN: &str = r#"max_concurrent = 8
canary = 1
waves = ["25%", "100%"]
stop_after_failures = 1
pause_between_waves = "0s"
after = "nothing"
allow_self = false

[[target]]
kind = "sled"
component = "host-boot-flash"
slot = 1
image = "images/host-42.img"     # relative to the plan file

[[target]]
sps = ["switch-0", "switch-1"]
component = "sp"
image = "images/sidecar-42.bin"
"#;

fn plans(seeds: &mut Vec<Seed>) {
    let more = [
        ("docs_example", PLAN.to_string()),
        (
            "manual_waves",
            "canary = 2\nwaves = [1, \"50%\"]\npause_between_waves = \"manual\"\n\
             after = \"activate_and_reset\"\n\n[[target]]\nall = true\ncomponent = \"rot\"\n\
             slot = 1\nimage = \"rot-b.zip\"\n"
                .to_string(),
        ),
        (
            "timed_pause",
            "max_concurrent = 2\nstop_after_failures = 3\npause_between_waves = \"1h 30m\"\n\
             after = \"reset\"\n\n[[target]]\nsps = [\"sled-0\", \"BRM42220017\"]\n\
             component = \"sp\"\nimage = \"a.zip\"\n\n[[target]]\nkind = \"psc\"\n\
             component = \"stage0\"\nslot = 1\nimage = \"a.zip\"\n"
                .to_string(),
        ),
        (
            "inline_targets",
            "waves = [3]\ntarget = [{ kind = \"switch\", component = \"sp\", image = \"s.bin\" }]\n"
                .to_string(),
        ),
        (
            "json_plan",
            r#"{"max_concurrent": 3, "canary": 1, "waves": [3, "50%"], "pause_between_waves": "10m", "target": [{"kind": "sled", "component": "host-boot-flash", "slot": 1, "image": 0}]}"#
                .to_string(),
        ),
    ];
    for (name, text) in more {
        seeds.push(("rollout_plan", name.into(), text.into_bytes()));
    }
}

/// Artifacts built as the Hubris build writes them.
fn artifacts(seeds: &mut Vec<Seed>) {
    let sp = build::sp_image("gimlet-e", build::MIN_IMAGE_LEN + 256, "1.0.33");
    let rot = build::rot_image_for_slot("oxide-rot-1", build::MIN_IMAGE_LEN, "1.0.14", 1);
    let aux = build::aux_flash(&[
        (Tag(*b"QSFP"), b"qsfp bitstream"),
        (Tag(*b"FPGA"), &[7; 64]),
    ]);
    seeds.push(("artifacts_image", "sp_image".into(), sp.clone()));
    seeds.push(("artifacts_image", "rot_image".into(), rot.clone()));
    seeds.push(("artifacts_auxflash", "two_blobs".into(), aux.clone()));
    seeds.push(("artifacts_auxflash", "empty".into(), build::aux_flash(&[])));
    let nested = encode_chunk(
        Tag(*b"OUTR"),
        &[
            encode_chunk(Tag::BORD, b"gimlet-e"),
            encode_chunk(Tag::VERS, b"1.0"),
        ]
        .concat(),
    );
    seeds.push(("artifacts_tlvc", "nested".into(), nested));
    seeds.push(("artifacts_tlvc", "auxi".into(), aux.clone()));
    let caboose = &sp[sp.len() - build::CABOOSE_SIZE + 4..sp.len() - 4];
    seeds.push(("artifacts_tlvc", "caboose_payload".into(), caboose.to_vec()));
    let spec = |image: Vec<u8>, base, aux: Option<Vec<u8>>, chip, bzip2| ArchiveSpec {
        image,
        base,
        aux,
        image_name: Some("default"),
        board: "sidecar-c",
        name: "sidecar-c",
        chip,
        git_rev: "0123456789abcdef",
        bzip2,
    };
    let archives = [
        (
            "sp_deflate",
            build::archive(spec(
                sp.clone(),
                build::SP_IMAGE_BASE,
                None,
                build::SP_CHIP,
                false,
            )),
        ),
        (
            "sp_aux_bzip2",
            build::archive(spec(
                sp.clone(),
                build::SP_IMAGE_BASE,
                Some(aux),
                build::SP_CHIP,
                true,
            )),
        ),
        (
            "rot_b",
            build::archive(ArchiveSpec {
                image_name: Some("b"),
                ..spec(
                    rot.clone(),
                    build::ROT_SLOT_B_BASE,
                    None,
                    build::ROT_CHIP,
                    false,
                )
            }),
        ),
    ];
    for (name, zip) in archives {
        seeds.push(("artifacts_archive", name.into(), zip));
    }
    // Members for the target to zip itself: mode, then records.
    let member = |out: &mut Vec<u8>, index: u8, bytes: &[u8]| {
        out.push(index);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    let mut members = vec![0x80];
    member(&mut members, 0, &build::elf(&sp, build::SP_IMAGE_BASE));
    member(&mut members, 1, &sp);
    member(
        &mut members,
        3,
        b"name = \"gimlet-e\"\nboard = \"gimlet-e\"\nchip = \"../../chips/stm32h7\"\n",
    );
    member(&mut members, 4, b"default");
    member(&mut members, 5, b"0123456789abcdef");
    seeds.push(("artifacts_archive", "members_sp".into(), members));
    seeds.push((
        "artifacts_archive",
        "elf_alone".into(),
        build::elf(&rot, build::ROT_SLOT_B_BASE),
    ));
}
