//! The embedded demo: a simulated rack (8 sleds, 2 switches, 2 power
//! shelves with realistic erase and write timings) in-process, the daemon
//! pointed at it, a generated host-flash image, and instructions.

use crate::config::{Config, SpConfig};
use sp_sim::{RackConfig, SimRack};
use std::path::{Path, PathBuf};

/// Size of the generated demo image.
pub const DEMO_IMAGE_BYTES: usize = 8 * 1024 * 1024;

/// A running demo: the simulated rack, and a private directory (mode 0700,
/// removed when the demo ends) for the socket, the image and the state.
pub struct Demo {
    /// The rack.
    pub rack: SimRack,
    /// The generated host-flash image.
    pub image: PathBuf,
    dir: tempfile::TempDir,
}

/// Start the simulated rack and point `config` at it. The socket and the
/// state directory go into the demo's private directory unless `config`
/// names others.
pub async fn start(config: &mut Config) -> std::io::Result<Demo> {
    let rack = SimRack::start(RackConfig::standard(8, 2, 2)).await?;
    // Each kind numbered from 0 in rack order, as MGS's location map does.
    let mut next = std::collections::BTreeMap::new();
    config.sps = rack
        .sps
        .iter()
        .map(|sp| {
            let sp_type = crate::http::SpType::of(sp.kind);
            let slot = next.entry(sp_type).or_insert(0u16);
            *slot += 1;
            SpConfig {
                name: sp.name.clone(),
                addr: Some(sp.addr),
                interface: None,
                sp_type: Some(sp_type),
                slot: Some(*slot - 1),
            }
        })
        .collect();
    // The scrimlet is wired to the first switch (`/local/switch-id`).
    config.http.switch_slot.get_or_insert(0);
    // mkdtemp: a new name, never a path someone could have planted.
    let dir = tempfile::Builder::new()
        .prefix("mgsd-demo-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()?;
    if config.control.socket == crate::config::ControlConfig::default().socket {
        config.control.socket = dir.path().join("mgsd.sock");
    }
    if config.state == crate::config::StateConfig::default() {
        config.state.dir = dir.path().join("state");
    }
    let image = dir.path().join("host-boot-flash.img");
    std::fs::write(&image, demo_image())?;
    std::fs::write(dir.path().join("rollout.toml"), DEMO_PLAN)?;
    for (name, bytes) in demo_archives() {
        std::fs::write(dir.path().join(name), bytes)?;
    }
    // sled-7's host wants a phase-2 image: it asks from its next boot on.
    let data: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    let (phase2, hash) = sp_sim::build_phase2_image(&data);
    std::fs::write(dir.path().join("phase2.img"), phase2)?;
    if let Some(sled) = rack.sps.iter().find(|sp| sp.name == "sled-7") {
        sled.start_recovery(hash);
    }
    Ok(Demo { rack, image, dir })
}

/// Small Hubris build archives for the demo rack's boards: a sled SP
/// image, a switch SP image with aux flash, and RoT images for slots A
/// and B.
fn demo_archives() -> Vec<(&'static str, Vec<u8>)> {
    use artifacts::build::{self, ArchiveSpec, ROT_CHIP, SP_CHIP, SP_IMAGE_BASE};
    let sp = |board: &'static str, name: &'static str, aux: Option<Vec<u8>>| {
        build::archive(ArchiveSpec {
            image: build::sp_image(board, 512 * 1024, "1.0.35"),
            base: SP_IMAGE_BASE,
            aux,
            image_name: Some("default"),
            board,
            name,
            chip: SP_CHIP,
            git_rev: &build::fake_git_rev(board, "1.0.35"),
            bzip2: true,
        })
    };
    let qsfp: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let aux = build::aux_flash(&[(artifacts::Tag(*b"QSFP"), &qsfp)]);
    let rot = |slot: u16, image_name: &'static str| {
        build::archive(ArchiveSpec {
            image: build::rot_image_for_slot("oxide-rot-1", 96 * 1024, "1.0.15", slot),
            base: build::rot_slot_range(slot).map_or(0, |r| r.start),
            aux: None,
            image_name: Some(image_name),
            board: "oxide-rot-1",
            name: "oxide-rot-1",
            chip: ROT_CHIP,
            git_rev: &build::fake_git_rev("oxide-rot-1", "1.0.15"),
            bzip2: true,
        })
    };
    vec![
        ("gimlet-sp.zip", sp("gimlet-e", "gimlet-e", None)),
        ("sidecar-sp.zip", sp("sidecar-c", "sidecar-c", Some(aux))),
        ("rot-a.zip", rot(0, "a")),
        ("rot-b.zip", rot(1, "b")),
    ]
}

impl Demo {
    /// The demo's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What to print for a newcomer.
    pub fn instructions(&self, socket: &Path) -> String {
        instructions(socket, &self.image, self.dir.path())
    }
}

/// A rollout of every demo sled's host boot flash: the canary alone, then
/// waves of 3, 3 at a time.
const DEMO_PLAN: &str = "\
# Every demo sled's host boot flash: sled-0 alone first (the canary), then
# waves of 3, at most 3 at a time; stop at the first failure.
max_concurrent = 3
canary = 1
waves = [3, 3]
stop_after_failures = 1

[[target]]
kind = \"sled\"
component = \"host-boot-flash\"
slot = 1
image = \"host-boot-flash.img\"
";

/// A host-flash image: the reserved first 64 KiB erased, then data.
pub fn demo_image() -> Vec<u8> {
    let mut img = vec![0xFFu8; 64 * 1024];
    img.extend(
        (0..(DEMO_IMAGE_BYTES - img.len()) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8),
    );
    img
}

/// What to print for a newcomer.
fn instructions(socket: &Path, image: &Path, dir: &Path) -> String {
    format!(
        "\nmgsd demo: a simulated rack of 8 sleds, 2 switches and 2 power shelves is running.\n\
         Control socket: {socket}\n\
         Private directory (mode 0700, removed when the demo stops): {dir}\n\n\
         In another shell, from this repository:\n\n\
         \x20 export MGSD_SOCKET={socket}\n\
         \x20 alias mgsctl='cargo run -q --release -p mgsd --bin mgsctl --'\n\
         \x20 mgsctl list\n\
         \x20 mgsctl state sled-0\n\
         \x20 mgsctl caboose sled-0\n\
         \x20 mgsctl update start sled-0 host-boot-flash --slot 1 --image {image} --watch\n\
         \x20 mgsctl update status sled-0 host-boot-flash\n\
         \x20 mgsctl update status sled-0 host-boot-flash --json\n\
         \x20 mgsctl history\n\
         \x20 mgsctl rollout start {dir}/rollout.toml --watch   # every sled, canary first\n\
         \x20 mgsctl artifact inspect {dir}/sidecar-sp.zip\n\
         \x20 mgsctl update start switch-0 sp --archive {dir}/sidecar-sp.zip --watch   # with aux flash\n\
         \x20 mgsctl update start sled-0 sp --archive {dir}/sidecar-sp.zip   # refused: wrong board\n\
         \x20 mgsctl update start sled-1 sp --archive {dir}/gimlet-sp.zip --activate   # then reset under the watchdog\n\
         \x20 mgsctl reset sled-1   # nothing left to activate: a plain reset\n\
         \x20 mgsctl update start sled-0 rot --slot 1 --archive {dir}/rot-b.zip --watch\n\n\
         Serial console (~. leaves, ~B sends a break, ~? lists the escapes):\n\n\
         \x20 mgsctl console sled-0\n\
         \x20 mgsctl console sled-0 --read-only   # watch only; another session may type\n\n\
         Host recovery: sled-7's host wants a phase-2 image and asks for it at boot:\n\n\
         \x20 mgsctl recovery upload {dir}/phase2.img\n\
         \x20 mgsctl power set sled-7 A2 && mgsctl power set sled-7 A0   # reboot the host\n\
         \x20 mgsctl recovery status sled-7   # offset and total as it fetches\n\n\
         Ctrl-C stops the demo.\n",
        socket = socket.display(),
        image = image.display(),
        dir = dir.display(),
    )
}
