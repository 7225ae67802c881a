//! Helpers shared by the daemon's end-to-end tests.

#![allow(dead_code)] // each test file uses its own share

use std::path::Path;

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
