//! Rack rollouts end to end: the real `mgsd` binary (a child process)
//! against a simulated rack in this process. Plans are files handed to the
//! real `mgsctl`; progress is followed over raw `rollout_watch` streams and
//! checked against what the simulated SPs saw (prepares, update states,
//! host-flash slot hashes).

mod common;

use common::{host_image, mgsctl};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::{json, Value};
use sp_sim::{expected_slot_hash, RackConfig, SimRack, SimSp, Timings};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const HBF: &str = "host-boot-flash";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Host flash of every simulated sled (MiB), and what the daemon is told.
const FLASH_MIB: u32 = 1;

// ---------------------------------------------------------------------
// The rig: a simulated rack, a daemon on it, files in a private directory.

struct Rig {
    dir: tempfile::TempDir,
    rack: SimRack,
    daemon: tokio::process::Child,
}

impl Rig {
    /// `sleds` sleds and `switches` switches whose flash writes run at
    /// `write_kib_per_s`; `extra` (whole TOML tables) goes into the
    /// daemon's configuration.
    async fn start(sleds: usize, switches: usize, write_kib_per_s: u64, extra: &str) -> Rig {
        let mut rc = RackConfig::standard(sleds, switches, 0);
        rc.timings = Timings {
            host_flash_mib: FLASH_MIB,
            write_kib_per_s,
            reset_ms: 100,
            ..Timings::instant()
        };
        let rack = SimRack::start(rc).await.unwrap();
        let dir = tempfile::Builder::new()
            .prefix("mgsd-rollouts-")
            .tempdir()
            .unwrap();
        let mut config = format!(
            "[control]\nsocket = \"{socket}\"\n\
             [metrics]\nlisten = \"\"\n\
             [state]\ndir = \"{state}\"\n\
             [sp_defaults]\ndiscovery_interval_ms = 50\n\
             state_refresh_ms = 3600000\nidle_rediscover_ms = 3600000\n\
             [sp_defaults.rpc]\nper_attempt_timeout_ms = 200\nmax_attempts = 10\n\
             [sp_defaults.delivery]\nstatus_poll_interval_ms = 10\n\
             host_flash_capacity_mib = {FLASH_MIB}\n\
             {extra}\n",
            socket = dir.path().join("mgsd.sock").display(),
            state = dir.path().join("state").display(),
        );
        for sp in &rack.sps {
            config += &format!("[[sp]]\nname = \"{}\"\naddr = \"{}\"\n", sp.name, sp.addr);
        }
        std::fs::write(dir.path().join("mgsd.toml"), config).unwrap();
        let daemon = spawn_daemon(dir.path());
        let mut rig = Rig { dir, rack, daemon };
        rig.wait_ready().await;
        rig
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mgsd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mgsd.log")).unwrap_or_default()
    }

    /// Until the daemon answers and has found every SP.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (0, out, _) = mgsctl(&self.socket(), &["--json", "health"]).await {
                let v: Value = serde_json::from_str(out.trim()).unwrap();
                if v["ok"]["reachable"] == self.rack.sps.len() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!("mgsd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mgsd did not find every SP within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL the daemon; start it again on the same state directory.
    async fn kill_and_restart(&mut self) {
        self.daemon.kill().await.unwrap();
        self.daemon = spawn_daemon(self.dir.path());
        self.wait_ready().await;
    }

    /// A file of `bytes` in the rig's directory.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `mgsctl --json ARGS`, expecting exit 0: the last line's `ok`.
    async fn ok(&self, args: &[&str]) -> Value {
        let all = [&["--json"][..], args].concat();
        let (code, out, err) = mgsctl(&self.socket(), &all).await;
        assert_eq!(code, 0, "mgsctl {args:?}: {out}{err}\n{}", self.log());
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str::<Value>(last).unwrap()["ok"].clone()
    }

    /// `mgsctl --json rollout start PLAN --id ID`, expecting success.
    async fn start_rollout(&self, plan: &Path, id: &str) -> Value {
        self.ok(&["rollout", "start", plan.to_str().unwrap(), "--id", id])
            .await
    }

    async fn conn(&self) -> Conn {
        Conn::open(&self.socket()).await
    }

    /// The rollout's record, asked on a connection of its own.
    async fn status(&self, id: &str) -> Value {
        let v = self
            .conn()
            .await
            .ask(&json!({"cmd": "rollout_status", "id": id}))
            .await;
        assert!(v["ok"].is_object(), "rollout_status: {v}");
        v["ok"].clone()
    }

    /// Until the rollout has ended (its phase is terminal): its record.
    async fn until_ended(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.status(id).await;
            if ["complete", "stopped", "aborted"].contains(&phase(&r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "rollout not ended after {limit:?}: {}\n{}",
                summary(&r),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `rollout_watch` on a connection of its own, once its first line
    /// has come: a task reading the stream to its end (the events, and the
    /// last line).
    async fn watch(&self, id: &str) -> tokio::task::JoinHandle<(Vec<Value>, Value)> {
        let mut c = self.conn().await;
        let first = c.ask(&json!({"cmd": "rollout_watch", "id": id})).await;
        actix::spawn(async move {
            let mut events = Vec::new();
            let mut line = first;
            while line["event"].is_object() {
                events.push(line["event"].clone());
                line = c
                    .next_within(Duration::from_secs(60))
                    .await
                    .expect("the watch ends with an ok line, not end of stream");
            }
            (events, line)
        })
    }

    fn sim(&self, name: &str) -> &SimSp {
        self.rack
            .sp(name)
            .unwrap_or_else(|| panic!("no simulated SP {name}"))
    }

    /// Prepares every simulated SP accepted, by name.
    fn prepares(&self) -> Vec<(String, u64)> {
        self.rack
            .sps
            .iter()
            .map(|sp| (sp.name.clone(), sp.fault_stats().prepares))
            .collect()
    }
}

fn spawn_daemon(dir: &Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("mgsd.log"))
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .arg("--config")
        .arg(dir.join("mgsd.toml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// One connection to the control socket, line by line.
struct Conn(BufReader<UnixStream>);

impl Conn {
    async fn open(socket: &Path) -> Conn {
        let s = UnixStream::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        Conn(BufReader::new(s))
    }

    async fn send(&mut self, request: &Value) {
        let line = format!("{request}\n");
        self.0.get_mut().write_all(line.as_bytes()).await.unwrap();
    }

    /// The next line within `limit`; `None` at end of stream.
    async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(limit, self.0.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no line within {limit:?}"))
            .unwrap_or(0);
        (n > 0).then(|| serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
    }

    async fn ask(&mut self, request: &Value) -> Value {
        self.send(request).await;
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an answer, not end of stream")
    }
}

// ---------------------------------------------------------------------
// Reading records.

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn err_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn phase(r: &Value) -> &str {
    r["phase"].as_str().unwrap_or("")
}

fn targets(r: &Value) -> &[Value] {
    r["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("a record without targets: {r}"))
}

fn state(t: &Value) -> &str {
    t["state"].as_str().unwrap_or("")
}

fn sp_of(t: &Value) -> &str {
    t["sp"].as_str().unwrap_or("")
}

fn wave(t: &Value) -> u64 {
    t["wave"].as_u64().unwrap()
}

/// The target left `pending` (`skipped` ones never started).
fn started(t: &Value) -> bool {
    !matches!(state(t), "pending" | "skipped")
}

fn ended(t: &Value) -> bool {
    !matches!(state(t), "pending" | "running")
}

fn update_id(t: &Value) -> uuid::Uuid {
    uuid::Uuid::parse_str(t["update_id"].as_str().unwrap()).unwrap()
}

fn count(r: &Value, key: &str) -> u64 {
    r["counts"][key].as_u64().unwrap_or(0)
}

/// Names of the targets for which `pick` holds (SP and component).
fn names(r: &Value, pick: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    targets(r)
        .iter()
        .filter(|t| pick(t))
        .map(|t| format!("{} {}", sp_of(t), t["component"].as_str().unwrap_or("")))
        .collect()
}

/// One line about a record, for assertion messages.
fn summary(r: &Value) -> String {
    let per: Vec<String> = targets(r)
        .iter()
        .map(|t| format!("{}:w{}:{}", sp_of(t), wave(t), state(t)))
        .collect();
    format!(
        "phase {} wave {} reason {} counts {} [{}]",
        phase(r),
        r["current_wave"],
        r["reason"],
        r["counts"],
        per.join(" ")
    )
}

/// What one snapshot breaks of the plan's rules: more than `max` targets
/// running, or a target started while one of an earlier wave has not
/// ended.
fn snapshot_breaks(r: &Value, max: usize) -> Vec<String> {
    let ts = targets(r);
    let mut breaks = Vec::new();
    let running = ts.iter().filter(|t| state(t) == "running").count();
    if running > max {
        breaks.push(format!("{running} running (max_concurrent {max})"));
    }
    if count(r, "running") as usize != running {
        breaks.push(format!(
            "counts.running {} but {running} targets running",
            r["counts"]["running"]
        ));
    }
    for t in ts.iter().filter(|t| started(t)) {
        for early in ts.iter().filter(|e| wave(e) < wave(t) && !ended(e)) {
            breaks.push(format!(
                "{} (wave {}) is {} while {} (wave {}) is {}",
                sp_of(t),
                wave(t),
                state(t),
                sp_of(early),
                wave(early),
                state(early)
            ));
        }
    }
    breaks
}

/// The same rules over the final record's start and end times (Unix ms):
/// the most targets running at any moment, and any target that started
/// before every target of the wave before it had ended.
fn timeline_breaks(r: &Value, max: usize) -> (usize, Vec<String>) {
    let ts = targets(r);
    let mut edges: Vec<(u64, i32)> = Vec::new();
    let mut breaks = Vec::new();
    for t in ts {
        let (start, end) = (
            t["started_unix_ms"].as_u64(),
            t["finished_unix_ms"].as_u64(),
        );
        match (start, end) {
            (Some(s), Some(e)) => {
                // An end before the start at the same ms counts first.
                edges.push((s, 1));
                edges.push((e, -1));
            }
            (None, None) => {}
            _ => breaks.push(format!("{}: started {start:?}, finished {end:?}", sp_of(t))),
        }
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in &edges {
        now += d;
        most = most.max(now);
    }
    if most as usize > max {
        breaks.push(format!("{most} targets ran at once (max_concurrent {max})"));
    }
    let waves = ts.iter().map(wave).max().unwrap_or(0);
    for w in 1..=waves {
        let last_end = ts
            .iter()
            .filter(|t| wave(t) == w - 1)
            .filter_map(|t| t["finished_unix_ms"].as_u64())
            .max();
        for t in ts.iter().filter(|t| wave(t) == w) {
            if let (Some(s), Some(e)) = (t["started_unix_ms"].as_u64(), last_end) {
                if s < e {
                    breaks.push(format!(
                        "{} (wave {w}) started at {s}, before wave {} ended at {e}",
                        sp_of(t),
                        w - 1
                    ));
                }
            }
        }
    }
    (most as usize, breaks)
}

/// The simulated SP's update in progress of `component`: bytes received
/// and total.
fn in_progress(sp: &SimSp, component: SpComponent) -> Option<(u32, u32)> {
    match sp.update_status(component) {
        Ok(UpdateStatus::InProgress(s)) => Some((s.bytes_received, s.total_size)),
        _ => None,
    }
}

fn plan_path(r: &Rig, name: &str, text: &str) -> PathBuf {
    r.file(name, text.as_bytes())
}

/// Line (1-based) of the first line of `text` containing `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in the plan"))
        + 1
}

// ---------------------------------------------------------------------
// 1. A whole rack, in waves.

#[actix::test]
async fn a_rack_rollout_keeps_to_canary_waves_and_the_cap() {
    let t0 = Instant::now();
    let r = Rig::start(32, 2, 1024, "").await;
    let host = host_image(768 * KIB, 11);
    // Valid for the switches: header, caboose and their board.
    let sp_image = sp_sim::artifacts::build::sp_image("sidecar-c", 256 * KIB, "1.0.40");
    r.file("host.img", &host);
    r.file("sp.img", &sp_image);
    let plan = plan_path(
        &r,
        "rack.toml",
        "max_concurrent = 8\ncanary = 1\nwaves = [\"25%\", \"100%\"]\n\
         stop_after_failures = 1\npause_between_waves = \"0s\"\nafter = \"nothing\"\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n\
         [[target]]\nkind = \"switch\"\ncomponent = \"sp\"\nimage = \"sp.img\"\n",
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    assert_eq!(first["id"], id.as_str(), "{first}");
    assert_eq!(targets(&first).len(), 34, "{}", summary(&first));
    let sizes: Vec<usize> = (0..3)
        .map(|w| targets(&first).iter().filter(|t| wave(t) == w).count())
        .collect();
    assert_eq!(first["waves"], 3, "{}", summary(&first));
    assert_eq!(
        sizes,
        [1, 8, 25],
        "canary, up to 25% of 34 (9 in all), the rest"
    );
    let watch = r.watch(&id).await;
    let (events, last) = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("the rollout ends within 60 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "complete", "{last}\n{}", r.log());
    assert_eq!(count(&fin, "complete"), 34, "{}", summary(&fin));
    assert!(fin["reason"].is_null(), "{}", summary(&fin));
    assert!(!events.is_empty(), "the watch sent events before its end");

    // Each snapshot kept to the cap and the waves, and so did the times.
    let mut most = 0;
    let mut wave_seen = 0;
    for (i, e) in events.iter().chain([&fin]).enumerate() {
        let breaks = snapshot_breaks(e, 8);
        assert!(breaks.is_empty(), "event {i}: {breaks:?}\n{}", summary(e));
        most = most.max(count(e, "running"));
        let w = e["current_wave"].as_u64().unwrap();
        assert!(
            w >= wave_seen,
            "event {i}: wave went back from {wave_seen} to {w}"
        );
        wave_seen = w;
    }
    let (most_at_once, breaks) = timeline_breaks(&fin, 8);
    assert!(breaks.is_empty(), "{breaks:?}");
    eprintln!(
        "{} events; at most {most} running in an event, {most_at_once} by the timestamps",
        events.len()
    );

    // What the SPs hold.
    let want = expected_slot_hash(&host, FLASH_MIB * MIB as u32);
    for t in targets(&fin) {
        let sp = r.sim(sp_of(t));
        let id = update_id(t);
        if t["component"] == HBF {
            assert_eq!(sp.slot_hash(1), Some(want), "{} slot 1", sp.name);
            assert_eq!(
                sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
                Ok(UpdateStatus::Complete(id.into())),
                "{}",
                sp.name
            );
        } else {
            assert_eq!(t["component"], "sp", "{t}");
            assert_eq!(
                sp.update_status(SpComponent::SP_ITSELF),
                Ok(UpdateStatus::Complete(id.into())),
                "{}",
                sp.name
            );
        }
        assert_eq!(sp.fault_stats().prepares, 1, "{}: one prepare", sp.name);
    }

    // Clients see the same: a watch of an ended rollout exits 0 at once,
    // the target's update is an ordinary update, and the list has it.
    let (code, out, err) = mgsctl(&r.socket(), &["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let t = &targets(&fin)[0];
    let mut c = r.conn().await;
    let v = c.ask(&json!({"cmd": "watch", "id": t["update_id"]})).await;
    assert_eq!(v["ok"]["phase"], "complete", "{v}");
    let list = r.ok(&["rollout", "list"]).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str() && phase(x) == "complete"),
        "{list}"
    );
    eprintln!("rack rollout test took {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------
// 2. A failing canary.

#[actix::test]
async fn a_failed_canary_stops_the_rollout_and_nothing_else_starts() {
    let r = Rig::start(6, 0, 1024, "").await;
    let image = host_image(960 * KIB, 21);
    r.file("host.img", &image);
    let plan = plan_path(
        &r,
        "canary.toml",
        "max_concurrent = 4\nwaves = [\"50%\"]\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n",
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    let canaries: Vec<&Value> = targets(&first).iter().filter(|t| wave(t) == 0).collect();
    assert_eq!(canaries.len(), 1, "{}", summary(&first));
    let canary = sp_of(canaries[0]).to_string();
    let watch = r.watch(&id).await;

    // Reset the canary's SP once a quarter of its image is in.
    let sim = r.sim(&canary);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((got, total)) = in_progress(sim, SpComponent::HOST_CPU_BOOT_FLASH) {
            if got >= total / 4 {
                assert!(got < total, "the canary was not slow enough to interrupt");
                sim.reset_now();
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the canary never got a quarter in: {}",
            summary(&r.status(&id).await)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the rollout ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "stopped", "{last}\n{}", r.log());
    let reason = fin["reason"].as_str().unwrap_or("");
    assert!(reason.contains("stop_after_failures"), "reason: {reason:?}");
    for e in events.iter().chain([&fin]) {
        let moved = names(e, |t| {
            sp_of(t) != canary && state(t) != "pending" && state(t) != "skipped"
        });
        assert!(moved.is_empty(), "{moved:?} left pending: {}", summary(e));
    }
    for t in targets(&fin) {
        if sp_of(t) == canary {
            assert_eq!(state(t), "failed", "{t}");
            assert!(t["failure"].as_str().is_some_and(|f| !f.is_empty()), "{t}");
        } else {
            assert_eq!(state(t), "skipped", "{t}");
            assert!(t["started_unix_ms"].is_null(), "{t}");
        }
    }
    assert_eq!(
        (count(&fin, "failed"), count(&fin, "skipped")),
        (1, 5),
        "{}",
        summary(&fin)
    );
    for (name, prepares) in r.prepares() {
        let want = u64::from(name == canary);
        assert_eq!(prepares, want, "{name}: prepares");
    }
    let (code, out, err) = mgsctl(&r.socket(), &["rollout", "watch", &id]).await;
    assert_eq!(code, 7, "{out}{err}");
    let failure = targets(&fin).iter().find(|t| sp_of(t) == canary).unwrap()["failure"].clone();
    eprintln!("failed canary {canary}: {failure}; reason: {reason}");
}

// ---------------------------------------------------------------------
// 3. Two failures mid-wave.

#[actix::test]
async fn the_second_failure_stops_new_starts_and_running_targets_finish() {
    let r = Rig::start(10, 0, 1024, "").await;
    let image = host_image(960 * KIB, 31);
    r.file("host.img", &image);
    let plan = plan_path(
        &r,
        "two.toml",
        "max_concurrent = 4\nstop_after_failures = 2\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n",
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    let canary = targets(&first)
        .iter()
        .find(|t| wave(t) == 0)
        .map(|t| sp_of(t).to_string())
        .unwrap();
    let watch = r.watch(&id).await;

    // Two SPs of wave 1, a fifth of the way in: reset both.
    let deadline = Instant::now() + Duration::from_secs(20);
    let victims: Vec<String> = loop {
        let mid: Vec<&SimSp> = r
            .rack
            .sps
            .iter()
            .filter(|sp| sp.name != canary)
            .filter(|sp| {
                in_progress(sp, SpComponent::HOST_CPU_BOOT_FLASH)
                    .is_some_and(|(got, total)| got >= total / 5 && got < total - 128 * KIB as u32)
            })
            .collect();
        if mid.len() >= 2 {
            for sp in &mid[..2] {
                sp.reset_now();
            }
            break mid[..2].iter().map(|sp| sp.name.clone()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "never two wave-1 targets mid-delivery: {}",
            summary(&r.status(&id).await)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the rollout ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "stopped", "{last}\n{}", r.log());
    let reason = fin["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("stop_after_failures") && reason.contains('2'),
        "reason: {reason:?}"
    );
    let failed: BTreeSet<String> = targets(&fin)
        .iter()
        .filter(|t| state(t) == "failed")
        .map(|t| sp_of(t).to_string())
        .collect();
    assert_eq!(
        failed,
        victims.iter().cloned().collect::<BTreeSet<_>>(),
        "{}",
        summary(&fin)
    );
    assert!(count(&fin, "skipped") > 0, "{}", summary(&fin));
    assert_eq!(
        (
            count(&fin, "pending"),
            count(&fin, "running"),
            count(&fin, "aborted")
        ),
        (0, 0, 0),
        "{}",
        summary(&fin)
    );

    // No start after the second failure: by the daemon's own times...
    let second = targets(&fin)
        .iter()
        .filter(|t| state(t) == "failed")
        .filter_map(|t| t["finished_unix_ms"].as_u64())
        .max()
        .unwrap();
    for t in targets(&fin) {
        if let Some(s) = t["started_unix_ms"].as_u64() {
            assert!(
                s <= second,
                "{} started at {s}, after the second failure at {second}",
                sp_of(t)
            );
        }
    }
    // ...and by what watchers saw: once two had failed, no target left
    // pending, and those running then finished (complete).
    let stop = events
        .iter()
        .chain([&fin])
        .position(|e| count(e, "failed") >= 2)
        .unwrap();
    let all: Vec<&Value> = events.iter().chain([&fin]).collect();
    let begun = names(all[stop], started);
    let running_then = names(all[stop], |t| state(t) == "running");
    for e in &all[stop..] {
        assert_eq!(
            names(e, started),
            begun,
            "a start after the stop: {}",
            summary(e)
        );
    }
    let complete = names(&fin, |t| state(t) == "complete");
    assert!(
        running_then.is_subset(&complete),
        "running at the stop: {running_then:?}; complete: {complete:?}"
    );
    for t in targets(&fin) {
        let sp = r.sim(sp_of(t));
        let prepares = sp.fault_stats().prepares;
        match state(t) {
            "skipped" => assert_eq!(prepares, 0, "{}", sp.name),
            _ => assert_eq!(prepares, 1, "{}", sp.name),
        }
    }
    eprintln!("two failures: {}", summary(&fin));
}

// ---------------------------------------------------------------------
// 4. kill -9 mid-rollout.

#[actix::test]
async fn a_rollout_survives_sigkill_and_updates_no_target_twice() {
    let mut r = Rig::start(12, 0, 1024, "").await;
    let image = host_image(960 * KIB, 41);
    r.file("host.img", &image);
    let plan = plan_path(
        &r,
        "kill.toml",
        "max_concurrent = 3\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n",
    );
    let id = new_id();
    r.start_rollout(&plan, &id).await;

    // Kill once some targets are complete and a running one is mid-image.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let s = r.status(&id).await;
        let mid = targets(&s)
            .iter()
            .filter(|t| state(t) == "running")
            .any(|t| {
                in_progress(r.sim(sp_of(t)), SpComponent::HOST_CPU_BOOT_FLASH).is_some_and(
                    |(got, total)| got >= 64 * KIB as u32 && got < total - 192 * KIB as u32,
                )
            });
        if count(&s, "complete") >= 3 && mid {
            r.kill_and_restart().await;
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "never mid-rollout: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let done_before = names(&before, |t| state(t) == "complete");
    let after = r.status(&id).await;
    eprintln!(
        "killed at: {}\nafter the restart: {}",
        summary(&before),
        summary(&after)
    );
    assert!(
        done_before.is_subset(&names(&after, |t| state(t) == "complete")),
        "complete before the kill: {done_before:?}; after: {}",
        summary(&after)
    );
    assert!(
        !["complete", "stopped", "aborted"].contains(&phase(&after)),
        "still under way after the restart: {}",
        summary(&after)
    );
    assert_eq!(after["resumed"], 1, "{}", summary(&after));

    let fin = r.until_ended(&id, Duration::from_secs(40)).await;
    assert_eq!(phase(&fin), "complete", "{}\n{}", summary(&fin), r.log());
    assert_eq!(count(&fin, "complete"), 12, "{}", summary(&fin));
    let (code, out, err) = mgsctl(&r.socket(), &["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let want = expected_slot_hash(&image, FLASH_MIB * MIB as u32);
    for t in targets(&fin) {
        let sp = r.sim(sp_of(t));
        assert_eq!(
            sp.fault_stats().prepares,
            1,
            "{}: prepared once (an update taken up again is not prepared again)",
            sp.name
        );
        assert_eq!(
            sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
            Ok(UpdateStatus::Complete(update_id(t).into())),
            "{}",
            sp.name
        );
        assert_eq!(sp.slot_hash(1), Some(want), "{} slot 1", sp.name);
    }
    let (_, breaks) = timeline_breaks(&fin, 3);
    assert!(breaks.is_empty(), "{breaks:?}");
}

// ---------------------------------------------------------------------
// 5. Pause, resume and abort from another client.

#[actix::test]
async fn pause_resume_and_abort_from_a_second_client_while_a_watch_runs() {
    let r = Rig::start(12, 0, 1024, "").await;
    let image = host_image(960 * KIB, 51);
    r.file("host.img", &image);
    let plan = plan_path(
        &r,
        "ops.toml",
        "max_concurrent = 2\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n",
    );
    let id = new_id();
    r.start_rollout(&plan, &id).await;
    let watch = r.watch(&id).await;
    let mut ops = r.conn().await;
    let ask = |cmd: &str| json!({"cmd": cmd, "id": id});

    // What cannot be done.
    let v = ops.ask(&ask("rollout_resume")).await;
    assert_eq!(err_code(&v), "rollout_state", "resume while running: {v}");
    let (code, _, err) = mgsctl(&r.socket(), &["rollout", "resume", &id]).await;
    assert_eq!(code, 8, "{err}");
    let unknown = new_id();
    let v = ops
        .ask(&json!({"cmd": "rollout_status", "id": unknown}))
        .await;
    assert_eq!(err_code(&v), "unknown_rollout", "{v}");
    let (code, _, err) = mgsctl(&r.socket(), &["rollout", "pause", &unknown]).await;
    assert_eq!(code, 4, "{err}");

    // Pause once wave 1 runs two targets.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        if s["current_wave"] == 1 && count(&s, "running") == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "wave 1 never ran two: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v = ops.ask(&ask("rollout_pause")).await;
    let paused = v["ok"].clone();
    assert_eq!(phase(&paused), "paused", "{v}");
    let begun = names(&paused, started);
    let running = names(&paused, |t| state(t) == "running");
    assert!(!running.is_empty(), "{}", summary(&paused));

    // The running ones finish; nothing new starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let idle = loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        assert_eq!(phase(&s), "paused", "{}", summary(&s));
        assert_eq!(
            names(&s, started),
            begun,
            "a start while paused: {}",
            summary(&s)
        );
        if count(&s, "running") == 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "running targets never finished: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        running.is_subset(&names(&idle, |t| state(t) == "complete")),
        "running at the pause: {running:?}; then {}",
        summary(&idle)
    );
    // Had the daemon meant to start more, it would have as the places
    // freed; look once more a little later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = ops.ask(&ask("rollout_status")).await["ok"].clone();
    assert_eq!(phase(&still), "paused", "{}", summary(&still));
    assert_eq!(names(&still, started), begun, "{}", summary(&still));
    let v = ops.ask(&ask("rollout_pause")).await;
    assert_eq!(err_code(&v), "rollout_state", "pause while paused: {v}");

    // Resume: it goes on.
    let v = ops.ask(&ask("rollout_resume")).await;
    assert!(v["ok"].is_object(), "{v}");
    assert_ne!(phase(&v["ok"]), "paused", "{v}");
    // Then abort while the new targets are early in their images.
    let deadline = Instant::now() + Duration::from_secs(20);
    let early_snapshot = loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        let run: Vec<&Value> = targets(&s)
            .iter()
            .filter(|t| state(t) == "running")
            .collect();
        let early = !run.is_empty()
            && run.iter().all(|t| {
                in_progress(r.sim(sp_of(t)), SpComponent::HOST_CPU_BOOT_FLASH)
                    .is_some_and(|(got, total)| got >= 32 * KIB as u32 && got < total / 2)
            });
        if early {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no new target under way: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let early = names(&early_snapshot, |t| state(t) == "running");
    let v = ops.ask(&ask("rollout_abort")).await;
    let aborting = v["ok"].clone();
    assert!(["aborting", "aborted"].contains(&phase(&aborting)), "{v}");
    // Running when the abort came (the answer is read after the actor
    // took the abort, so a target whose SP abort landed already shows as
    // aborted).
    let hit = names(&aborting, |t| matches!(state(t), "running" | "aborted"));
    assert!(
        early.is_subset(&hit),
        "running before the abort: {early:?}; in the abort's answer: {}",
        summary(&aborting)
    );
    assert!(!hit.is_empty(), "{}", summary(&aborting));
    assert!(
        !hit.iter().any(|n| begun.contains(n)),
        "resumed targets were new: {hit:?} vs {begun:?}"
    );

    // The watch, on the first connection, ends with the final record.
    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the watch ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "aborted", "{last}\n{}", r.log());
    assert_eq!(fin["id"], id.as_str());
    assert_eq!(
        names(&fin, |t| state(t) == "aborted"),
        hit,
        "final: {}\nthe abort's answer: {}",
        summary(&fin),
        summary(&aborting)
    );
    assert_eq!((count(&fin, "pending"), count(&fin, "running")), (0, 0));
    assert!(count(&fin, "skipped") > 0, "{}", summary(&fin));
    assert_eq!(
        count(&fin, "skipped") + count(&fin, "aborted") + count(&fin, "complete"),
        12,
        "{}",
        summary(&fin)
    );
    for t in targets(&fin) {
        let sp = r.sim(sp_of(t));
        match state(t) {
            "aborted" => assert_eq!(
                sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
                Ok(UpdateStatus::Aborted(update_id(t).into())),
                "{}",
                sp.name
            ),
            "skipped" => assert_eq!(sp.fault_stats().prepares, 0, "{}", sp.name),
            _ => {}
        }
    }
    // While paused, the watch saw no new start either.
    for e in events.iter().filter(|e| phase(e) == "paused") {
        assert!(
            names(e, started).is_subset(&begun),
            "a start while paused: {}",
            summary(e)
        );
    }
    assert!(
        events.iter().any(|e| phase(e) == "paused"),
        "the watch saw the pause"
    );
    let v = ops.ask(&ask("rollout_abort")).await;
    assert_eq!(err_code(&v), "rollout_state", "abort after the end: {v}");
    let v = ops.ask(&ask("rollout_resume")).await;
    assert_eq!(err_code(&v), "rollout_state", "resume after the end: {v}");
    let (code, out, err) = mgsctl(&r.socket(), &["rollout", "watch", &id]).await;
    assert_eq!(code, 7, "{out}{err}");
}

// ---------------------------------------------------------------------
// 6. Plans that are wrong.

/// `mgsctl --json rollout start PLAN`: exit code, the daemon's answer (if
/// mgsctl got as far as asking), stderr.
async fn try_start(r: &Rig, plan: &Path) -> (i32, Option<Value>, String) {
    let (code, out, err) = mgsctl(
        &r.socket(),
        &["--json", "rollout", "start", plan.to_str().unwrap()],
    )
    .await;
    let answer = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok());
    (code, answer, err)
}

#[actix::test]
async fn every_plan_error_is_named_with_its_line_and_nothing_starts() {
    let r = Rig::start(4, 0, 2048, "[rollout]\nown_sp = \"sled-3\"\n").await;
    r.file("host.img", &host_image(192 * KIB, 61));
    let mut wrong: Vec<String> = Vec::new();

    // Each problem the daemon finds, alone: (what, plan, what the message
    // must also say).
    let target = |head: &str, body: &str| {
        format!("{head}\n{body}\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown SP",
            format!(
                "max_concurrent = 2\n\n{}",
                target("[[target]]", "sps = [\"sled-0\", \"sled-9\"]")
            ),
            "sled-9",
        ),
        (
            "kind matching no SP",
            format!("canary = 1\n{}", target("[[target]]", "kind = \"psc\"")),
            "psc",
        ),
        (
            "the same SP and component twice (by name, then by serial)",
            format!(
                "{}\n{}",
                target("[[target]]", "sps = [\"sled-0\"]"),
                target("[[target]]", "sps = [\"BRM42220000\"]\nslot = 1")
            ),
            "twice",
        ),
        (
            "the own sled without allow_self",
            format!("\n\n{}", target("[[target]]", "sps = [\"sled-3\"]")),
            "allow_self",
        ),
        (
            "the own sled picked by kind",
            target("[[target]]", "kind = \"sled\""),
            "allow_self",
        ),
        (
            "no selector",
            target("[[target]]", "slot = 1"),
            "exactly one",
        ),
        (
            "two selectors",
            format!(
                "{}\n{}",
                target("[[target]]", "sps = [\"sled-1\"]"),
                target("[[target]]", "kind = \"sled\"\nall = true")
            ),
            "exactly one",
        ),
    ];
    for (i, (what, text, says)) in cases.iter().enumerate() {
        let plan = plan_path(&r, &format!("bad-{i}.toml"), text);
        // The [[target]] the problem is in: the last one.
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("[[target]]"))
            .map(|(n, _)| n + 1)
            .last()
            .unwrap();
        let (code, answer, err) = try_start(&r, &plan).await;
        let answer = answer.unwrap_or(Value::Null);
        let message = answer["error"]["message"].as_str().unwrap_or("");
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({err})"));
        }
        if err_code(&answer) != "bad_plan" {
            wrong.push(format!(
                "{what}: error code {:?}, not bad_plan: {answer}",
                err_code(&answer)
            ));
        }
        if !message.contains(&format!("line {line}")) {
            wrong.push(format!(
                "{what}: the message does not name line {line}: {message:?}"
            ));
        }
        if !message.contains(says) {
            wrong.push(format!(
                "{what}: the message does not say {says:?}: {message:?}"
            ));
        }
    }

    // All of them in one plan: every one listed, each with its line.
    let all = "max_concurrent = 2\n\
        [[target]] # unknown\nsps = [\"sled-0\", \"sled-9\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n\
        [[target]] # kind\nkind = \"psc\"\ncomponent = \"sp\"\nimage = \"host.img\"\n\
        [[target]] # twice\nsps = [\"BRM42220000\"]\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n\
        [[target]] # own\nsps = [\"sled-3\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n\
        [[target]] # none\ncomponent = \"rot\"\nimage = \"host.img\"\n\
        [[target]] # two\nkind = \"sled\"\nall = true\ncomponent = \"stage0\"\nimage = \"host.img\"\n";
    let plan = plan_path(&r, "bad-all.toml", all);
    let (code, answer, err) = try_start(&r, &plan).await;
    let answer = answer.unwrap_or(Value::Null);
    let message = answer["error"]["message"].as_str().unwrap_or("");
    if code != 5 || err_code(&answer) != "bad_plan" {
        wrong.push(format!("all in one: exit {code}, {answer} {err}"));
    }
    for marker in ["# unknown", "# kind", "# twice", "# own", "# none", "# two"] {
        let line = line_of(all, marker);
        if !message.contains(&format!("line {line}")) {
            wrong.push(format!(
                "all in one: line {line} ({marker}) not named: {message:?}"
            ));
        }
    }
    // The duplicate names where the first was given, too.
    if !message.contains(&format!("(line {})", line_of(all, "# unknown"))) {
        wrong.push(format!(
            "all in one: the duplicate does not name the first target's line: {message:?}"
        ));
    }

    // What mgsctl cannot read names its line too: a wave out of range, and
    // a TOML syntax error.
    let client_side = [
        (
            "a wave of 200%",
            "max_concurrent = 2\nwaves = [\"200%\"]\n[[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n",
            2,
        ),
        (
            "a TOML syntax error",
            "max_concurrent = 2\n\n[[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\nimage = \"host.img\"\n",
            5,
        ),
    ];
    for (i, (what, text, line)) in client_side.iter().enumerate() {
        let plan = plan_path(&r, &format!("unreadable-{i}.toml"), text);
        let (code, answer, err) = try_start(&r, &plan).await;
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({answer:?} {err})"));
        }
        let said = format!(
            "{err} {}",
            answer.map(|a| a.to_string()).unwrap_or_default()
        );
        if !said.contains(&format!("line {line}")) {
            wrong.push(format!("{what}: line {line} not named: {said:?}"));
        }
    }

    // Nothing was started anywhere.
    for (name, prepares) in r.prepares() {
        if prepares != 0 {
            wrong.push(format!("{name}: {prepares} prepare(s) after refused plans"));
        }
    }
    let list = r.ok(&["rollout", "list"]).await;
    if list.as_array().is_none_or(|l| !l.is_empty()) {
        wrong.push(format!("rollouts after refused plans: {list}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // With allow_self the own sled is a target like any other.
    let plan = plan_path(
        &r,
        "self.toml",
        "allow_self = true\n[[target]]\nsps = [\"sled-3\"]\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n",
    );
    let id = new_id();
    let started_rec = r.start_rollout(&plan, &id).await;
    assert_eq!(sp_of(&targets(&started_rec)[0]), "sled-3");
    let (code, out, err) = mgsctl(&r.socket(), &["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[actix::test]
async fn an_image_too_large_for_its_component_is_a_plan_error_naming_its_line() {
    let r = Rig::start(4, 0, 2048, "").await;
    r.file("host.img", &host_image(192 * KIB, 71));
    // Over the 256 KiB a RoT slot holds.
    r.file("big.img", &vec![0x5Au8; 300 * KIB]);
    let mut wrong: Vec<String> = Vec::new();
    let alone = "max_concurrent = 1\n[[target]]\nsps = [\"sled-1\"]\ncomponent = \"rot\"\nimage = \"big.img\"\n";
    // With another problem: both are to be listed.
    let with_other = "[[target]] # big\nsps = [\"sled-1\"]\ncomponent = \"rot\"\nimage = \"big.img\"\n\
        [[target]] # unknown\nsps = [\"sled-9\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n";
    for (what, text, lines) in [
        ("alone", alone, vec![2]),
        (
            "with an unknown SP",
            with_other,
            vec![
                line_of(with_other, "# big"),
                line_of(with_other, "# unknown"),
            ],
        ),
    ] {
        let plan = plan_path(&r, &format!("big-{}.toml", lines.len()), text);
        let (code, answer, err) = try_start(&r, &plan).await;
        let answer = answer.unwrap_or(Value::Null);
        let message = answer["error"]["message"].as_str().unwrap_or("");
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({err})"));
        }
        if err_code(&answer) != "bad_plan" {
            wrong.push(format!(
                "{what}: error code {:?}, not bad_plan: {answer}",
                err_code(&answer)
            ));
        }
        for line in lines {
            if !message.contains(&format!("line {line}")) {
                wrong.push(format!("{what}: line {line} not named: {message:?}"));
            }
        }
    }
    for (name, prepares) in r.prepares() {
        if prepares != 0 {
            wrong.push(format!("{name}: {prepares} prepare(s) after refused plans"));
        }
    }
    let list = r.ok(&["rollout", "list"]).await;
    if list.as_array().is_none_or(|l| !l.is_empty()) {
        wrong.push(format!("rollouts after refused plans: {list}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
