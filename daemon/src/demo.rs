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
    config.sps = rack
        .sps
        .iter()
        .map(|sp| SpConfig {
            name: sp.name.clone(),
            addr: Some(sp.addr),
            interface: None,
        })
        .collect();
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
    Ok(Demo { rack, image, dir })
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
         \x20 mgsctl rollout start {dir}/rollout.toml --watch   # every sled, canary first\n\n\
         Ctrl-C stops the demo.\n",
        socket = socket.display(),
        image = image.display(),
        dir = dir.display(),
    )
}
