//! Updates survive the daemon: the real `mgsd` binary, killed (SIGKILL)
//! or stopped (SIGTERM) mid-update and started again on the same state
//! directory, against a simulated rack in this process that lives on.

mod common;

use common::{host_image, mgsctl};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::Value;
use sp_sim::{RackConfig, SimRack, Timings};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const HBF: &str = "host-boot-flash";
const MIB: usize = 1024 * 1024;

/// One test's directory: config, socket, state, log, images.
struct Setup {
    dir: PathBuf,
    sps: usize,
}

impl Setup {
    fn new(name: &str, rack: &SimRack, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mgsd-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!(
            "[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"\"\n[state]\ndir = \"{}\"\n\
             [sp_defaults]\ndiscovery_interval_ms = 50\n\
             [sp_defaults.delivery]\nstatus_poll_interval_ms = 100\nhost_flash_capacity_mib = 4\n{extra}\n",
            dir.join("mgsd.sock").display(),
            dir.join("state").display(),
        );
        for sp in &rack.sps {
            text += &format!("[[sp]]\nname = \"{}\"\naddr = \"{}\"\n", sp.name, sp.addr);
        }
        std::fs::write(dir.join("mgsd.toml"), text).unwrap();
        Self {
            dir,
            sps: rack.sps.len(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mgsd.sock")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mgsd.log")).unwrap_or_default()
    }

    fn image(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    /// Start `mgsd` and wait until it has found every SP.
    async fn start(&self) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mgsd.log"))
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
            .arg("--config")
            .arg(self.dir.join("mgsd.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (0, out, _) = mgsctl(&self.socket(), &["--json", "health"]).await {
                let v: Value = serde_json::from_str(&out).unwrap();
                if v["ok"]["reachable"] == self.sps {
                    return Daemon { child };
                }
            }
            assert!(
                Instant::now() < deadline,
                "mgsd did not come up: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ok(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = mgsctl(&self.socket(), &all).await;
        assert_eq!(code, 0, "mgsctl {args:?}: {out} {err}");
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str::<Value>(last).unwrap()["ok"].clone()
    }

    /// The daemon's record of `id`, via `update status` on `sp`.
    async fn delivery(&self, sp: &str) -> Value {
        self.ok(&["update", "status", sp, HBF]).await["delivery"].clone()
    }
}

struct Daemon {
    child: tokio::process::Child,
}

impl Daemon {
    async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM; how long until it exited, and its exit code.
    async fn term(mut self) -> (Duration, Option<i32>) {
        let pid = self.child.id().unwrap().to_string();
        let t = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = self.child.wait().await.unwrap();
        (t.elapsed(), status.code())
    }
}

fn realistic(sleds: usize) -> RackConfig {
    let mut rack = RackConfig::standard(sleds, 0, 0);
    rack.timings = Timings {
        host_flash_mib: 4,
        ..Timings::default()
    };
    rack.timings.reset_ms = 300;
    rack
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A realistic SP, the daemon, and an update of `len` bytes started on it
/// and past byte `past`.
async fn update_under_way(
    name: &str,
    extra: &str,
    len: usize,
    past: u64,
) -> (SimRack, Setup, Daemon, String) {
    let rack = SimRack::start(realistic(1)).await.unwrap();
    let setup = Setup::new(name, &rack, extra);
    let image = setup.image("host.img", &host_image(len, len / MIB));
    let daemon = setup.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let start = [
        "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
    ];
    setup.ok(&start).await;
    until(
        "delivery is under way",
        Duration::from_secs(30),
        async || setup.delivery("sled-0").await["bytes_acked"].as_u64() > Some(past),
    )
    .await;
    (rack, setup, daemon, id)
}

#[actix::test]
async fn sigkill_at_twenty_moments_never_starts_an_update_over() {
    let rack = SimRack::start(realistic(1)).await.unwrap();
    let setup = Setup::new("kill", &rack, "");
    let image_bytes = host_image(4 * MIB, 1);
    let image = setup.image("host.img", &image_bytes);
    let sp = &rack.sps[0];
    // Seeded: the same moments every run.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |max: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % max
    };
    let mut daemon = setup.start().await;
    for i in 0..20usize {
        let id = uuid::Uuid::new_v4();
        let slot = (i % 2).to_string();
        let start = [
            "update", "start", "sled-0", HBF, "--slot", &slot, "--image", &image,
        ];
        setup
            .ok(&[&start[..], &["--id", &id.to_string()][..]].concat())
            .await;
        let prepares = sp.fault_stats().prepares;
        match i % 4 {
            // During the erase (0.16 s).
            0 => tokio::time::sleep(Duration::from_millis(random(150))).await,
            // During delivery (4 s).
            1 => tokio::time::sleep(Duration::from_millis(300 + random(3500))).await,
            // Right after the last chunk.
            2 => {
                until(
                    "the SP has every byte",
                    Duration::from_secs(30),
                    async || {
                        sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH)
                            == Ok(UpdateStatus::Complete(id.into()))
                    },
                )
                .await
            }
            // While the host-flash hash is read back.
            _ => {
                until("verifying", Duration::from_secs(30), async || {
                    setup.delivery("sled-0").await["phase"] == "verifying"
                })
                .await
            }
        }
        daemon.kill9().await;
        daemon = setup.start().await;
        let (code, out, err) = mgsctl(&setup.socket(), &["watch", &id.to_string()]).await;
        assert_eq!(code, 0, "moment {i}: {out}{err}\n{}", setup.log());
        assert!(out.contains("hash verified"), "moment {i}: {out}");
        assert_eq!(
            sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
            Ok(UpdateStatus::Complete(id.into()))
        );
        assert_eq!(
            sp.slot_hash((i % 2) as u16),
            Some(sp_sim::expected_slot_hash(&image_bytes, 4 * MIB as u32))
        );
        assert_eq!(
            sp.fault_stats().prepares,
            prepares,
            "moment {i}: the update was not prepared again (it went on, not over)"
        );
    }
    assert!(setup
        .log()
        .contains("update taken up again after a restart"));
    daemon.kill9().await;
    rack.stop().await;
}

#[actix::test]
async fn sigterm_mid_update_exits_in_time_and_the_next_start_finishes_it() {
    let (rack, setup, daemon, id) =
        update_under_way("term", "[shutdown]\ntimeout_ms = 2000", 4 * MIB, MIB as u64).await;
    let (took, code) = daemon.term().await;
    assert!(took < Duration::from_millis(2500), "stopping took {took:?}");
    assert_eq!(code, Some(0));
    let log = setup.log();
    assert!(
        log.contains(&id) && log.contains("they are journalled and resume at the next start"),
        "{log}"
    );
    let prepares = rack.sps[0].fault_stats().prepares;
    let daemon = setup.start().await;
    let (code, out, err) = mgsctl(&setup.socket(), &["watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let record = setup.delivery("sled-0").await;
    assert_eq!(record["resumed"], 1, "{record}");
    assert_eq!(rack.sps[0].fault_stats().prepares, prepares);
    daemon.kill9().await;
    rack.stop().await;
}

#[actix::test]
async fn an_sp_reset_while_mgsd_is_down_fails_the_update_and_sends_nothing() {
    let (rack, setup, daemon, id) = update_under_way("reset", "", 2 * MIB, 100_000).await;
    daemon.kill9().await;
    rack.sps[0].reset_now();
    let prepares = rack.sps[0].fault_stats().prepares;
    let daemon = setup.start().await;
    let (code, _, err) = mgsctl(&setup.socket(), &["watch", &id]).await;
    assert_eq!(code, 7, "{err}");
    let record = setup.delivery("sled-0").await;
    assert_eq!(record["failure_kind"], "sp_reset", "{record}");
    assert!(
        record["failure"]
            .as_str()
            .unwrap()
            .contains("while mgsd was down"),
        "{record}"
    );
    assert_eq!(
        rack.sps[0].fault_stats().prepares,
        prepares,
        "never re-sent"
    );
    assert_eq!(
        rack.sps[0].update_status(SpComponent::HOST_CPU_BOOT_FLASH),
        Ok(UpdateStatus::None)
    );
    daemon.kill9().await;
    rack.stop().await;
}

fn aside(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.contains(".corrupt-")
        })
        .collect()
}

#[actix::test]
async fn bad_state_files_are_named_moved_aside_and_the_daemon_serves_on() {
    let mut rack_config = RackConfig::standard(1, 0, 0);
    rack_config.timings = Timings {
        host_flash_mib: 4,
        write_kib_per_s: 512,
        ..Timings::instant()
    };
    let rack = SimRack::start(rack_config).await.unwrap();
    let setup = Setup::new("bad", &rack, "");
    let db = setup.state().join("mgsd.db");
    std::fs::create_dir_all(setup.state()).unwrap();

    // Not a database, a truncated one, and one that is a directory.
    for (what, make) in [("garbage", 0), ("truncated", 1), ("a directory", 2)] {
        let _ = std::fs::remove_dir_all(setup.state());
        std::fs::create_dir_all(setup.state()).unwrap();
        match make {
            0 => std::fs::write(&db, vec![0x5Au8; 8192]).unwrap(),
            1 => {
                // A real database cut short.
                let d = setup.start().await;
                d.kill9().await;
                let full = std::fs::read(&db).unwrap();
                std::fs::write(&db, &full[..100]).unwrap();
                let _ = std::fs::remove_file(setup.state().join("mgsd.db-wal"));
            }
            _ => std::fs::create_dir_all(db.join("inside")).unwrap(),
        }
        let before = std::fs::read(&db).ok();
        let daemon = setup.start().await;
        let log = setup.log();
        assert!(
            log.contains(&db.display().to_string()) && log.contains("moved it aside"),
            "{what}: {log}"
        );
        let moved = aside(&setup.state(), "mgsd.db");
        assert_eq!(moved.len(), 1, "{what}: {moved:?}");
        if let Some(before) = before {
            assert_eq!(
                std::fs::read(&moved[0]).unwrap(),
                before,
                "{what}: kept as it was"
            );
        }
        assert_eq!(setup.ok(&["health"]).await["status"], "ok", "{what}");
        daemon.kill9().await;
    }

    // A spooled image that is not what its name says: the update that
    // needs it fails, naming the file; the file is kept aside.
    let _ = std::fs::remove_dir_all(setup.state());
    let image = setup.image("host.img", &host_image(MIB, 4));
    let daemon = setup.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let started = setup
        .ok(&[
            "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
        ])
        .await;
    daemon.kill9().await;
    let spooled = setup
        .state()
        .join("images")
        .join(started["image_sha256"].as_str().unwrap());
    std::fs::write(&spooled, b"not the image").unwrap();
    let daemon = setup.start().await;
    let (code, _, err) = mgsctl(&setup.socket(), &["watch", &id]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains(&spooled.display().to_string()), "{err}");
    assert_eq!(aside(&setup.state().join("images"), "").len(), 1);
    assert_eq!(setup.ok(&["health"]).await["status"], "ok");
    daemon.kill9().await;
    rack.stop().await;
}

#[actix::test]
async fn history_survives_restarts_and_retention_shrinks_it_and_the_spool() {
    let mut rack_config = RackConfig::standard(1, 0, 0);
    rack_config.timings = Timings {
        host_flash_mib: 4,
        ..Timings::instant()
    };
    let rack = SimRack::start(rack_config).await.unwrap();
    let setup = Setup::new("history", &rack, "[updates]\nhistory = 2");
    let spool = setup.state().join("images");
    // A start the SP refuses (no slot 9) leaves nothing behind.
    let refused = uuid::Uuid::new_v4().to_string();
    {
        let image = setup.image("refused.img", &host_image(100_000, 9));
        let daemon = setup.start().await;
        let args = [
            "update", "start", "sled-0", HBF, "--slot", "9", "--image", &image, "--id", &refused,
        ];
        assert_eq!(mgsctl(&setup.socket(), &args).await.0, 5);
        daemon.term().await;
    }
    let mut ids = Vec::new();
    for n in 0..3 {
        let image = setup.image(&format!("host-{n}.img"), &host_image(200_000, 10 + n));
        let daemon = setup.start().await;
        let id = uuid::Uuid::new_v4().to_string();
        setup
            .ok(&[
                "update", "start", "sled-0", HBF, "--image", &image, "--id", &id,
            ])
            .await;
        assert_eq!(mgsctl(&setup.socket(), &["watch", &id]).await.0, 0);
        ids.push(id);
        daemon.term().await;
    }
    let daemon = setup.start().await;
    let history = setup.ok(&["history"]).await;
    let listed: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        [ids[2].clone(), ids[1].clone()],
        "newest first, two kept"
    );
    let row = &history[0];
    assert_eq!(row["phase"], "complete");
    assert!(
        row["duration_ms"].as_u64().is_some() && row["mean_bytes_per_second"].as_u64() > Some(0)
    );
    // The forgotten update's id is unknown now; its image left the spool.
    let (code, _, _) = mgsctl(&setup.socket(), &["watch", &ids[0]]).await;
    assert_eq!(code, 4);
    assert_eq!(mgsctl(&setup.socket(), &["watch", &refused]).await.0, 4);
    let spooled = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(spooled, 2);
    // The human table shows them too.
    let (code, out, _) = mgsctl(
        &setup.socket(),
        &["history", "--sp", "sled-0", "--since", "1h"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains(&ids[2]) && out.contains("complete"), "{out}");
    daemon.kill9().await;
    rack.stop().await;
}

#[actix::test]
async fn sigkill_mid_activation_recognises_the_new_image_after_restart() {
    use artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
    let mut config = realistic(1);
    // Silent long enough after the trigger to kill the daemon meanwhile.
    config.timings.reset_ms = 3000;
    let rack = SimRack::start(config).await.unwrap();
    // A reset budget of 10 s, a watchdog window of 15 s.
    let extra = "[sp_defaults.rpc]\nper_attempt_timeout_ms = 200\nmax_attempts_reset = 50\n";
    let setup = Setup::new("activation", &rack, extra);
    let board = "gimlet-e";
    let archive = setup.image(
        "sp.zip",
        &build::archive(ArchiveSpec {
            image: build::sp_image(board, 64 * 1024, "1.0.50"),
            base: SP_IMAGE_BASE,
            aux: None,
            image_name: Some("default"),
            board,
            name: board,
            chip: SP_CHIP,
            git_rev: &build::fake_git_rev(board, "1.0.50"),
            bzip2: false,
        }),
    );
    let before = rack.sps[0].device().archive_id();
    let daemon = setup.start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let socket = setup.socket();
    let args = [
        "update",
        "start",
        "sled-0",
        "sp",
        "--archive",
        &archive,
        "--id",
        &id,
        "--activate",
    ];
    let client = mgsctl(&socket, &args);
    let trigger = async {
        until("the reset trigger", Duration::from_secs(30), async || {
            rack.sps[0].fault_stats().resets == 1
        })
        .await;
    };
    // The client is cut off when the daemon dies.
    let ((code, _, _), ()) = tokio::join!(client, async {
        trigger.await;
        daemon.kill9().await;
    });
    assert_ne!(code, 0);
    let daemon = setup.start().await;
    let (code, out, err) = mgsctl(&socket, &["--json", "watch", &id]).await;
    assert_eq!(code, 0, "{out} {err} {}", setup.log());
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let record = &last["ok"];
    assert_eq!(record["phase"], "complete", "{record}");
    let a = &record["activation"];
    assert_eq!(a["outcome"], "activated", "{a}");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("after a daemon restart"),
        "{a}"
    );
    assert_eq!(a["watchdog_disabled"], true, "{a}");
    assert_eq!(a["running"]["vers"], "1.0.50", "{a}");
    let (armed, after) = {
        let device = rack.sps[0].device();
        (device.watchdog_armed(), device.archive_id())
    };
    assert!(!armed, "disabled before its window ran out");
    assert_ne!(after, before);
    assert_eq!(rack.sps[0].fault_stats().resets, 1, "reset once");
    daemon.kill9().await;
    rack.stop().await;
}
