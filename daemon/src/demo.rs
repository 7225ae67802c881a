//! The embedded demo: a simulated rack (8 sleds, 2 switches, 2 power
//! shelves with realistic erase and write timings) in-process, the daemon
//! pointed at it, a generated host-flash image, and instructions.

use crate::config::{Config, SpConfig};
use sp_sim::{RackConfig, SimRack};
use std::path::{Path, PathBuf};

/// Size of the generated demo image.
pub const DEMO_IMAGE_BYTES: usize = 8 * 1024 * 1024;

/// Where the demo keeps its socket and image.
pub fn demo_dir() -> PathBuf {
    std::env::temp_dir().join("mgsd-demo")
}

/// Start the simulated rack and point `config` at it.
pub async fn start(config: &mut Config) -> std::io::Result<(SimRack, PathBuf)> {
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
    let dir = demo_dir();
    std::fs::create_dir_all(&dir)?;
    if config.control.socket == crate::config::ControlConfig::default().socket {
        config.control.socket = dir.join("mgsd.sock");
    }
    let image = dir.join("host-boot-flash.img");
    std::fs::write(&image, demo_image())?;
    Ok((rack, image))
}

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
pub fn instructions(socket: &Path, image: &Path) -> String {
    format!(
        "\nmgsd demo: a simulated rack of 8 sleds, 2 switches and 2 power shelves is running.\n\
         Control socket: {socket}\n\n\
         In another shell, from this repository:\n\n\
         \x20 export MGSD_SOCKET={socket}\n\
         \x20 alias mgsctl='cargo run -q --release -p mgsd --bin mgsctl --'\n\
         \x20 mgsctl list\n\
         \x20 mgsctl state sled-0\n\
         \x20 mgsctl caboose sled-0\n\
         \x20 mgsctl update start sled-0 host-boot-flash --slot 1 --image {image} --watch\n\
         \x20 mgsctl update status sled-0 host-boot-flash\n\
         \x20 mgsctl update status sled-0 host-boot-flash --json\n\n\
         Ctrl-C stops the demo.\n",
        socket = socket.display(),
        image = image.display(),
    )
}
