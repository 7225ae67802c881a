//! The harness every end-to-end suite of the daemon starts from: a
//! simulated rack and an mgsd serving it ([`rig`]), raw connections to its
//! control socket ([`conn`]), and what the test binaries of one suite share
//! among themselves ([`hostile`], [`rollouts`]).

#![allow(dead_code, unused_imports)] // each test binary uses its own share

pub mod conn;
pub mod hostile;
pub mod http;
pub mod rig;
pub mod rollouts;

pub use conn::Conn;
pub use rig::{Rig, RigBuilder, SpDefaults};

use serde_json::Value;
use sp_sim::{RackConfig, Timings};
use std::path::Path;

/// The component most tests update.
pub const HBF: &str = "host-boot-flash";
pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

/// `RackConfig::standard` (sleds, then switches, then power shelves) with
/// `timings`.
pub fn standard_rack(
    sleds: usize,
    switches: usize,
    power_shelves: usize,
    timings: Timings,
) -> RackConfig {
    let mut rack = RackConfig::standard(sleds, switches, power_shelves);
    rack.timings = timings;
    rack
}

/// Run the real `mgsctl` against `socket`: exit code, stdout, stderr.
pub async fn mgsctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A host-flash image of `len` bytes: the reserved first 64 KiB erased,
/// then a pattern that differs with `seed`.
pub fn host_image(len: usize, seed: usize) -> Vec<u8> {
    let mut img = vec![0xFFu8; 64 * 1024];
    img.extend((0..len - img.len()).map(|i| ((i + seed) * 31 % 251) as u8));
    img
}

/// A new update or rollout id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `error.code` of an answer (`""` if it is no error).
pub fn err_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The `error.message` of an answer (`""` if it is no error).
pub fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

/// Poll `done` every 2 ms until it holds; panics after `limit`, naming
/// `what`.
pub async fn until(what: &str, limit: std::time::Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
