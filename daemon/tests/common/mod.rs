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

/// A simulated rack and mgsd serving it in this process.
pub struct InProcess {
    /// The daemon's control socket.
    pub socket: std::path::PathBuf,
    /// Private directory (the socket, and files a test writes).
    pub dir: tempfile::TempDir,
    /// The rack.
    pub rack: sp_sim::SimRack,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Start `rack` and mgsd for it: its socket in a new private directory, no
/// metrics listener, no state directory, then `settings` (TOML sections),
/// then one `[[sp]]` per SP. Returns once every SP is reachable.
pub async fn in_process(rack: sp_sim::RackConfig, settings: &str) -> InProcess {
    use std::time::{Duration, Instant};
    let rack = sp_sim::SimRack::start(rack).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"\"\n[state]\ndir = \"\"\n{settings}\n",
        dir.path().join("mgsd.sock").display()
    );
    for sp in &rack.sps {
        text += &format!("[[sp]]\nname = \"{}\"\naddr = \"{}\"\n", sp.name, sp.addr);
    }
    let config = mgsd::config::Config::from_toml(&text).unwrap();
    let socket = config.control.socket.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    actix::spawn(async move {
        mgsd::run(config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let (0, out, _) = mgsctl(&socket, &["--json", "health"]).await {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            if v["ok"]["reachable"] == rack.sps.len() {
                return InProcess {
                    socket,
                    dir,
                    rack,
                    _stop: stop,
                };
            }
        }
        assert!(Instant::now() < deadline, "daemon did not become ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
