//! Careless and hostile clients on the control socket, against the real
//! `mgsd` binary (a child process, so a daemon that hangs or bloats cannot
//! take the test down with it) and a simulated rack in this process:
//! images passed as descriptors, peer credentials, the audit log, bounds
//! on requests and connections, slow watchers, request storms, ids in
//! error texts, and the demo's private directory.

mod common;

use common::{host_image, mgsctl};
use serde_json::{json, Value};
use sp_sim::{RackConfig, SimRack, Timings};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const HBF: &str = "host-boot-flash";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// A uid (and gid) other clients run as; it has no name.
const OTHER: u32 = 65533;
/// `nobody`, named in an access list by name.
const NOBODY: u32 = 65534;
/// A uid in no access list.
const STRANGER: u32 = 65532;

/// A simulated rack and a real `mgsd` serving it, files in a private
/// directory (mode 0755 so other users reach the socket).
struct Rig {
    dir: tempfile::TempDir,
    rack: SimRack,
    daemon: tokio::process::Child,
}

impl Rig {
    /// `sleds` sleds writing at `write_kib_per_s` (0: unlimited); `control`
    /// is added to `[control]`, `extra` (whole tables) after the rest.
    async fn start(sleds: usize, write_kib_per_s: u64, control: &str, extra: &str) -> Rig {
        let mut rc = RackConfig::standard(sleds, 0, 0);
        rc.timings = Timings {
            host_flash_mib: 4,
            reset_ms: 100,
            write_kib_per_s,
            ..Timings::instant()
        };
        let rack = SimRack::start(rc).await.unwrap();
        let dir = tempfile::Builder::new()
            .prefix("mgsd-hostile-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut text = format!(
            "[control]\nsocket = \"{}\"\n{control}\n[metrics]\nlisten = \"\"\n[state]\ndir = \"{}\"\n\
             [sp_defaults]\ndiscovery_interval_ms = 50\n\
             state_refresh_ms = 3600000\nidle_rediscover_ms = 3600000\n\
             [sp_defaults.rpc]\nper_attempt_timeout_ms = 100\nmax_attempts = 10\n\
             [sp_defaults.delivery]\nstatus_poll_interval_ms = 10\nhost_flash_capacity_mib = 4\n\
             {extra}\n",
            dir.path().join("mgsd.sock").display(),
            dir.path().join("state").display(),
        );
        for sp in &rack.sps {
            text += &format!("[[sp]]\nname = \"{}\"\naddr = \"{}\"\n", sp.name, sp.addr);
        }
        std::fs::write(dir.path().join("mgsd.toml"), text).unwrap();
        let daemon = spawn_mgsd(dir.path());
        let mut rig = Rig { dir, rack, daemon };
        rig.ready().await;
        rig
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mgsd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mgsd.log")).unwrap_or_default()
    }

    /// Wait until the daemon has found every SP.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (0, out, _) = mgsctl(&self.socket(), &["--json", "health"]).await {
                let v: Value = serde_json::from_str(&out).unwrap();
                if v["ok"]["reachable"] == self.rack.sps.len() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!("mgsd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mgsd did not come up: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL the daemon and start it again on the same directory.
    async fn restart(&mut self) {
        self.daemon.kill().await.unwrap();
        self.daemon = spawn_mgsd(self.dir.path());
        self.ready().await;
    }

    /// `mgsctl --json ARGS` as root, expecting success: the `ok` value.
    async fn ok(&self, args: &[&str]) -> Value {
        let all = [&["--json"][..], args].concat();
        let (code, out, err) = mgsctl(&self.socket(), &all).await;
        assert_eq!(code, 0, "mgsctl {args:?}: {out} {err}\n{}", self.log());
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str::<Value>(last).unwrap()["ok"].clone()
    }

    async fn conn(&self) -> Conn {
        Conn::open(&self.socket()).await
    }

    /// A file in the rig's directory with `bytes` and file mode `mode`.
    fn file(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A sparse file of `len` bytes (nothing in it is ever written).
    fn sparse(&self, name: &str, len: u64) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        path
    }

    /// Datagrams all the SPs have received.
    fn received(&self) -> u64 {
        self.rack
            .sps
            .iter()
            .map(|sp| sp.fault_stats().received)
            .sum()
    }

    /// Datagrams per second the SPs receive while no client asks anything
    /// (the daemon's own periodic traffic, none with the rig's hour-long
    /// refresh intervals), over half a second.
    async fn idle_rate(&self) -> f64 {
        let before = self.received();
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        (self.received() - before) as f64 / t.elapsed().as_secs_f64()
    }

    /// The newest `limit` audit entries, asked as root over the socket.
    async fn audit(&self, limit: u64) -> Vec<Value> {
        let v = self
            .conn()
            .await
            .ask(&json!({"cmd": "audit", "limit": limit}))
            .await;
        v["ok"]
            .as_array()
            .unwrap_or_else(|| panic!("audit: {v}"))
            .clone()
    }
}

fn spawn_mgsd(dir: &Path) -> tokio::process::Child {
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

/// One raw connection to the control socket.
struct Conn(BufReader<UnixStream>);

impl Conn {
    /// Connect, retrying while the listener's backlog is full.
    async fn open(socket: &Path) -> Conn {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(socket).await {
                Ok(s) => return Conn(BufReader::new(s)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "connect: {e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("connect {}: {e}", socket.display()),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.0.get_mut().write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, request: &Value) {
        self.write(format!("{request}\n").as_bytes()).await;
    }

    /// `request` and its newline in one `sendmsg`, with `fds` attached.
    async fn send_fds(&mut self, request: &Value, fds: &[BorrowedFd<'_>]) {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let line = format!("{request}\n");
        let stream = self.0.get_ref();
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let sent = stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
                sendmsg(
                    stream,
                    &[IoSlice::new(line.as_bytes())],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            })
            .await
            .unwrap();
        assert_eq!(sent, line.len(), "the whole request in one sendmsg");
    }

    /// The next line, `None` at end of stream (or a reset connection).
    async fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), self.0.read_line(&mut line))
            .await
            .expect("an answer within 10 s");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
        }
    }

    async fn ask(&mut self, request: &Value) -> Value {
        self.send(request).await;
        self.next().await.expect("an answer, not end of stream")
    }

    async fn ask_fds(&mut self, request: &Value, fds: &[BorrowedFd<'_>]) -> Value {
        self.send_fds(request, fds).await;
        self.next().await.expect("an answer, not end of stream")
    }
}

fn err_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn update_start(sp: &str, component: &str, slot: u16, id: &str) -> Value {
    json!({"cmd": "update_start", "sp": sp, "component": component, "slot": slot, "id": id})
}

/// Whether a key named `key` occurs anywhere in `v`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| k == key || has_key(v, key)),
        Value::Array(items) => items.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

/// Why this process cannot run a client as another user, if it cannot.
async fn cannot_switch_user() -> Option<String> {
    let id = OTHER.to_string();
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", "true"])
        .output()
        .await;
    match out {
        Err(e) => Some(format!("setpriv: {e}")),
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
    }
}

macro_rules! skip_unless_setpriv {
    () => {
        if let Some(why) = cannot_switch_user().await {
            eprintln!("skipped: cannot run mgsctl as another user: {why}");
            return;
        }
    };
}

/// `mgsctl ARGS` run as `uid` (and gid `uid`, no other groups).
async fn mgsctl_as(uid: u32, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let id = uid.to_string();
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mgsctl"))
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

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The daemon's resident memory (KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

// 1. Images by descriptor.

#[actix::test]
async fn update_start_takes_its_image_as_exactly_one_descriptor() {
    let r = Rig::start(2, 0, "", "").await;
    let img = r.file("host.img", &host_image(300_000, 1), 0o644);
    let mut c = r.conn().await;
    let id = new_id();

    let mut by_path = update_start("sled-0", HBF, 1, &id);
    by_path["image"] = json!(img.display().to_string());
    let v = c.ask(&by_path).await;
    assert_eq!(err_code(&v), "bad_request", "{v}");
    assert!(message(&v).contains("descriptor"), "{v}");

    let v = c.ask(&update_start("sled-0", HBF, 1, &id)).await;
    assert_eq!(err_code(&v), "bad_request", "no descriptor: {v}");

    let (a, b) = (
        std::fs::File::open(&img).unwrap(),
        std::fs::File::open(&img).unwrap(),
    );
    let v = c
        .ask_fds(
            &update_start("sled-0", HBF, 1, &id),
            &[a.as_fd(), b.as_fd()],
        )
        .await;
    assert!(v["error"].is_object(), "two descriptors: {v}");
    assert_eq!(r.rack.sps[0].fault_stats().prepares, 0, "nothing started");

    let v = c
        .ask_fds(&update_start("sled-0", HBF, 1, &id), &[a.as_fd()])
        .await;
    assert_eq!(v["ok"]["id"], id.as_str(), "{v}");
    drop((a, b));
    let (code, out, err) = mgsctl(&r.socket(), &["watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");

    // mgsctl opens the file and passes the descriptor itself.
    let img_s = img.to_str().unwrap();
    let args = [
        "update", "start", "sled-1", HBF, "--image", img_s, "--watch",
    ];
    let (code, out, err) = mgsctl(&r.socket(), &args).await;
    assert_eq!(code, 0, "{out}{err}\n{}", r.log());
    assert!(out.contains("hash verified"), "{out}");
}

#[actix::test]
async fn descriptors_of_non_regular_files_are_refused_at_once() {
    let r = Rig::start(1, 0, "", "").await;
    let fifo = r.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Read and write: opening does not wait for a writer, and a read
    // would wait forever.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let cases: [(&str, BorrowedFd<'_>); 3] = [
        ("a FIFO", fifo.as_fd()),
        ("/dev/zero", zero.as_fd()),
        ("a socket", socket.as_fd()),
    ];
    let mut c = r.conn().await;
    for (what, fd) in cases {
        let t = Instant::now();
        let v = c
            .ask_fds(&update_start("sled-0", HBF, 1, &new_id()), &[fd])
            .await;
        assert_eq!(err_code(&v), "bad_image", "{what}: {v}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: answered after {:?}",
            t.elapsed()
        );
    }
    assert_eq!(r.rack.sps[0].fault_stats().prepares, 0);
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert_eq!(v["ok"]["protocol"], 1, "still serving: {v}");
}

#[actix::test]
async fn images_larger_than_the_component_are_refused_before_reading() {
    let r = Rig::start(1, 0, "", "").await;
    let rate = r.idle_rate().await;
    let before = r.received();
    let t = Instant::now();
    let cases = [
        (HBF, r.sparse("host", 4 * MIB + 1)),
        // Reading this would take minutes: the answer must not.
        (HBF, r.sparse("huge", 64 * 1024 * MIB)),
        ("sp", r.sparse("sp", 2048 * KIB + 1)),
        ("rot", r.sparse("rot", 256 * KIB + 1)),
        ("stage0", r.sparse("stage0", 256 * KIB + 1)),
    ];
    let mut c = r.conn().await;
    for (component, path) in &cases {
        let file = std::fs::File::open(path).unwrap();
        let asked = Instant::now();
        let v = c
            .ask_fds(
                &update_start("sled-0", component, 0, &new_id()),
                &[file.as_fd()],
            )
            .await;
        assert_eq!(
            err_code(&v),
            "bad_image",
            "{component} {}: {v}",
            path.display()
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{component}: answered after {:?}",
            asked.elapsed()
        );
    }
    let huge = cases[1].1.to_str().unwrap();
    let (code, _, err) = mgsctl(
        &r.socket(),
        &["update", "start", "sled-0", HBF, "--image", huge],
    )
    .await;
    assert_eq!(code, 5, "{err}");
    let sp = &r.rack.sps[0];
    assert_eq!(sp.fault_stats().prepares, 0);
    let sent = r.received() - before;
    let allowed = (rate * t.elapsed().as_secs_f64() * 2.0).ceil() as u64 + 2;
    assert!(
        sent <= allowed,
        "{sent} datagrams reached the SP (periodic traffic alone: {rate:.1}/s, allowed {allowed})"
    );
}

#[actix::test]
async fn mgsctl_opens_the_image_with_the_callers_rights() {
    skip_unless_setpriv!();
    let access = format!("[control.access]\noperate_users = [\"root\", \"{OTHER}\"]\n");
    let r = Rig::start(2, 0, "", &access).await;
    let secret = r.file("secret.img", &host_image(200_000, 2), 0o600);
    let open = r.file("open.img", &host_image(200_000, 2), 0o644);
    let start = |sp: &str, path: &Path| -> Vec<String> {
        let path = path.to_str().unwrap();
        ["update", "start", sp, HBF, "--image", path]
            .map(String::from)
            .to_vec()
    };
    let args = start("sled-0", &secret);
    let (code, out, err) = mgsctl_as(OTHER, &r.socket(), &strs(&args)).await;
    assert_eq!(code, 5, "{out}{err}");
    assert_eq!(r.rack.sps[0].fault_stats().prepares, 0);
    let audit = r.audit(100).await;
    assert!(
        !audit.iter().any(|e| e["uid"] == OTHER),
        "nothing reached the daemon: {audit:?}"
    );
    // The same user may update from a file it can read.
    let args = start("sled-1", &open);
    let (code, out, err) = mgsctl_as(OTHER, &r.socket(), &strs(&args)).await;
    assert_eq!(code, 0, "{out}{err}");
    let audit = r.audit(100).await;
    assert!(
        audit
            .iter()
            .any(|e| e["uid"] == OTHER && e["command"] == "update_start" && e["result"] == "ok"),
        "{audit:?}"
    );
}

// 2. Peer credentials.

#[actix::test]
async fn peers_in_no_access_list_are_refused_everything() {
    skip_unless_setpriv!();
    // Default lists: operate = user root + group mgsd, read = group mgsd-ro.
    let r = Rig::start(1, 0, "", "").await;
    let id = new_id();
    let commands: [&[&str]; 12] = [
        &["version"],
        &["health"],
        &["list"],
        &["state", "sled-0"],
        &["power", "get", "sled-0"],
        &["update", "status", "sled-0", HBF],
        &["history"],
        &["audit"],
        &["watch", &id],
        &["reset", "sled-0"],
        &["power", "set", "sled-0", "A2"],
        &["slot", "set", "sled-0", HBF, "1"],
    ];
    for args in commands {
        let all = [&["--json"][..], args].concat();
        let (code, out, err) = mgsctl_as(STRANGER, &r.socket(), &all).await;
        assert_eq!(code, 9, "{args:?}: {out}{err}");
        let v: Value = serde_json::from_str(out.lines().last().unwrap_or("null")).unwrap();
        assert_eq!(v["error"]["code"], "permission_denied", "{args:?}: {out}");
    }
    let sp = &r.rack.sps[0];
    assert_eq!(sp.fault_stats().resets, 0);
    // Root still may.
    assert_eq!(r.ok(&["power", "get", "sled-0"]).await["power_state"], "A0");
}

#[actix::test]
async fn read_only_peers_may_look_but_not_operate() {
    skip_unless_setpriv!();
    let access = format!(
        "[control.access]\noperate_users = [\"root\"]\noperate_groups = []\n\
         read_users = [\"nobody\"]\nread_groups = [\"{OTHER}\"]\n"
    );
    let r = Rig::start(1, 0, "", &access).await;
    let img = r.file("host.img", &host_image(100_000, 3), 0o644);
    let img = img.to_str().unwrap();
    let unknown = new_id();
    let reads: [(&[&str], i32); 12] = [
        (&["version"], 0),
        (&["health"], 0),
        (&["list"], 0),
        (&["state", "sled-0"], 0),
        (&["caboose", "sled-0"], 0),
        (&["power", "get", "sled-0"], 0),
        (&["slot", "get", "sled-0", HBF], 0),
        (&["update", "status", "sled-0", HBF], 0),
        (&["history"], 0),
        (&["audit"], 0),
        // Let through, and then not found.
        (&["watch", &unknown], 4),
        (&["state", "sled-42"], 4),
    ];
    for (args, want) in reads {
        let (code, out, err) = mgsctl_as(OTHER, &r.socket(), args).await;
        assert_eq!(code, want, "read {args:?} by gid {OTHER}: {out}{err}");
    }
    let operates: [&[&str]; 5] = [
        &["reset", "sled-0"],
        &["power", "set", "sled-0", "A2"],
        &["slot", "set", "sled-0", HBF, "1"],
        &["update", "abort", "sled-0", HBF, &unknown],
        &["update", "start", "sled-0", HBF, "--image", img],
    ];
    for args in operates {
        let (code, out, err) = mgsctl_as(OTHER, &r.socket(), args).await;
        assert_eq!(code, 9, "operate {args:?} by gid {OTHER}: {out}{err}");
    }
    // A user named in the read list.
    let (code, _, err) = mgsctl_as(NOBODY, &r.socket(), &["list"]).await;
    assert_eq!(code, 0, "list by nobody: {err}");
    let (code, _, err) = mgsctl_as(NOBODY, &r.socket(), &["reset", "sled-0"]).await;
    assert_eq!(code, 9, "reset by nobody: {err}");
    // A user in neither.
    let (code, _, err) = mgsctl_as(STRANGER, &r.socket(), &["list"]).await;
    assert_eq!(code, 9, "list by a stranger: {err}");
    let stats = r.rack.sps[0].fault_stats();
    assert_eq!((stats.resets, stats.prepares), (0, 0));
    assert_eq!(r.ok(&["power", "get", "sled-0"]).await["power_state"], "A0");
}

// 3. Audit.

#[actix::test]
async fn operate_commands_and_refusals_are_audited_newest_first_and_kept() {
    skip_unless_setpriv!();
    let access =
        format!("[control.access]\noperate_users = [\"root\"]\nread_users = [\"{OTHER}\"]\n");
    let mut r = Rig::start(2, 0, "", &access).await;
    let img = r.file("host.img", &host_image(100_000, 4), 0o644);
    let id = new_id();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    r.ok(&["reset", "sled-0"]).await;
    let started = r
        .ok(&[
            "update",
            "start",
            "sled-1",
            HBF,
            "--image",
            img.to_str().unwrap(),
            "--id",
            &id,
        ])
        .await;
    let (code, _, err) = mgsctl_as(OTHER, &r.socket(), &["power", "set", "sled-0", "A2"]).await;
    assert_eq!(code, 9, "{err}");
    let (code, _, err) = mgsctl_as(STRANGER, &r.socket(), &["version"]).await;
    assert_eq!(code, 9, "{err}");
    let (code, _, err) = mgsctl_as(OTHER, &r.socket(), &["list"]).await;
    assert_eq!(code, 0, "reads are not audited: {err}");

    let audit = r.audit(10).await;
    assert_eq!(audit.len(), 4, "{audit:#?}");
    for e in &audit {
        for key in [
            "time_unix_ms",
            "uid",
            "gid",
            "pid",
            "command",
            "sp",
            "component",
            "update_id",
            "image_sha256",
            "result",
        ] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        assert!(e["time_unix_ms"].as_u64() >= Some(t0), "{e}");
        assert!(e["pid"].as_u64() > Some(0), "{e}");
    }
    let times: Vec<_> = audit.iter().map(|e| e["time_unix_ms"].as_u64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let summary: Vec<_> = audit
        .iter()
        .map(|e| {
            (
                e["uid"].as_u64().unwrap_or(u64::MAX),
                e["command"].as_str().unwrap_or("").to_string(),
                e["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let row = |uid: u32, cmd: &str, res: &str| (uid as u64, cmd.to_string(), res.to_string());
    assert_eq!(
        summary,
        [
            row(STRANGER, "version", "permission_denied"),
            row(OTHER, "power_set", "permission_denied"),
            row(0, "update_start", "ok"),
            row(0, "reset", "ok"),
        ]
    );
    assert_eq!(audit[0]["gid"], STRANGER);
    assert_eq!(audit[1]["sp"], "sled-0");
    assert_eq!(audit[2]["sp"], "sled-1");
    assert_eq!(audit[2]["component"], HBF);
    assert_eq!(audit[2]["update_id"], id.as_str());
    assert_eq!(audit[2]["image_sha256"], started["image_sha256"]);
    assert_eq!(audit[3]["sp"], "sled-0");

    assert_eq!(r.audit(2).await, audit[..2]);
    let (code, out, err) = mgsctl(&r.socket(), &["audit", "--json", "--limit", "2"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"].as_array().map(Vec::len), Some(2), "{out}");
    let (code, out, err) = mgsctl(&r.socket(), &["audit", "--json", "--since", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"].as_array().map(Vec::len), Some(4), "{out}");
    let (code, table, err) = mgsctl(&r.socket(), &["audit"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("permission_denied") && table.contains("power_set"),
        "{table}"
    );
    let log = r.log();
    assert!(
        log.lines()
            .any(|l| l.contains("audit") && l.contains("permission_denied")),
        "refusals are logged (target audit): {log}"
    );

    // Kept in the state directory across a restart.
    r.restart().await;
    assert_eq!(r.audit(10).await, audit);
}

// 4. Bounds.

#[actix::test]
async fn an_over_long_line_is_answered_and_the_connection_serves_on() {
    let r = Rig::start(1, 0, "max_request_bytes = 1024", "").await;
    let mut c = r.conn().await;
    let pad = "x".repeat(5000);
    let v = c
        .ask(&json!({"cmd": "version", "request_id": 1, "pad": pad}))
        .await;
    assert_eq!(err_code(&v), "request_too_large", "{v}");
    let v = c.ask(&json!({"cmd": "version", "request_id": 2})).await;
    assert_eq!(v["request_id"], 2, "{v}");
    assert_eq!(v["ok"]["protocol"], 1, "{v}");
    // Under the limit, the unknown field is what is wrong.
    let v = c
        .ask(&json!({"cmd": "version", "request_id": 3, "pad": "x"}))
        .await;
    assert_eq!(err_code(&v), "bad_request", "{v}");
}

#[actix::test]
async fn a_gibibyte_without_a_newline_does_not_grow_the_daemon() {
    let r = Rig::start(1, 0, "", "").await;
    let pid = r.daemon.id().unwrap();
    r.ok(&["list"]).await;
    let base = rss_kib(pid);
    let mut peak = base;
    let mut c = r.conn().await;
    let chunk = vec![b'x'; MIB as usize];
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..1024 {
        c.write(&chunk).await;
        if i % 16 == 15 {
            peak = peak.max(rss_kib(pid));
            assert!(
                Instant::now() < deadline,
                "only {} MiB taken in 120 s",
                i + 1
            );
        }
    }
    c.write(b"\n").await;
    let v = c.next().await.expect("an answer");
    assert_eq!(err_code(&v), "request_too_large", "{v}");
    peak = peak.max(rss_kib(pid));
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert_eq!(v["ok"]["protocol"], 1, "the connection serves on: {v}");
    eprintln!("1 GiB without a newline: RSS {base} KiB before, {peak} KiB at most");
    assert!(
        peak - base < 32 * 1024,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

#[actix::test]
async fn requests_are_strict_json_objects() {
    let r = Rig::start(1, 0, "", "").await;
    let mut c = r.conn().await;
    let lines: [&[u8]; 8] = [
        b"{\"cmd\":\"list\",\"x\":1}\n",
        b"{\"cmd\":\"version\",\"x\":1}\n",
        b"{\"cmd\":\"health\",\"x\":1}\n",
        b"{\"cmd\":\"list\",\"cmd\":\"version\"}\n",
        b"{\"cmd\":\"state\",\"sp\":\"sled-0\",\"sp\":\"sled-1\"}\n",
        b"{\"cmd\":\"version\",\"v\":1,\"v\":1}\n",
        b"   \t  \n",
        b"[\"list\"]\n",
    ];
    for line in lines {
        c.write(line).await;
        let v = c.next().await.expect("an answer");
        assert_eq!(
            err_code(&v),
            "bad_request",
            "{:?}: {v}",
            String::from_utf8_lossy(line)
        );
    }
    let v = c
        .ask(&json!({"cmd": "version", "request_id": "last"}))
        .await;
    assert_eq!(v["request_id"], "last", "one answer per line: {v}");
}

#[actix::test]
async fn connections_beyond_the_limit_are_told_busy_and_closed() {
    let r = Rig::start(1, 0, "max_connections = 4", "").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = r.conn().await;
        let v = c.ask(&json!({"cmd": "version"})).await;
        assert_eq!(v["ok"]["protocol"], 1, "{v}");
        held.push(c);
    }
    let mut fifth = r.conn().await;
    let v = fifth.next().await.expect("one line");
    assert_eq!(err_code(&v), "busy", "{v}");
    assert_eq!(fifth.next().await, None, "then closed");
    let (code, _, err) = mgsctl(&r.socket(), &["list"]).await;
    assert_eq!(code, 3, "mgsctl on a busy daemon: {err}");
    // A place frees once a client leaves.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = r.conn().await;
        let asked = c.0.get_mut().write_all(b"{\"cmd\":\"version\"}\n").await;
        let v = c.next().await;
        if asked.is_ok() && v.as_ref().is_some_and(|v| v["ok"]["protocol"] == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {v:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix::test]
async fn requests_on_one_connection_are_answered_in_order() {
    let r = Rig::start(2, 0, "", "").await;
    let requests = [
        json!({"cmd": "reset", "sp": "sled-0"}),
        json!({"cmd": "version"}),
        json!({"cmd": "state", "sp": "sled-42"}),
        json!({"cmd": "caboose", "sp": "sled-1"}),
        json!({"cmd": "no_such_command"}),
        json!({"cmd": "power_get", "sp": "sled-1"}),
        json!({"cmd": "health"}),
        json!({"cmd": "list"}),
        json!({"cmd": "update_status", "sp": "sled-0", "component": HBF}),
        json!({"cmd": "version"}),
    ];
    let mut batch = String::new();
    for (i, mut req) in requests.into_iter().enumerate() {
        req["request_id"] = json!(i);
        batch += &format!("{req}\n");
    }
    let mut c = r.conn().await;
    c.write(batch.as_bytes()).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = c.next().await.expect("an answer");
        if ids.is_empty() {
            assert_eq!(v["ok"]["reset"], true, "the reset first: {v}");
        }
        ids.push(v["request_id"].as_u64());
    }
    assert_eq!(ids, (0..10).map(Some).collect::<Vec<_>>());
    assert_eq!(r.rack.sps[0].fault_stats().resets, 1);
}

// 5. Slow watcher.

#[actix::test]
async fn a_watcher_that_stops_reading_still_gets_the_final_record() {
    let r = Rig::start(1, 2048, "", "").await;
    let img = r.file("host.img", &host_image(4 * MIB as usize, 5), 0o644);
    let id = new_id();
    let mut c = r.conn().await;
    // A small receive buffer, so the daemon's writes back up soon.
    rustix::net::sockopt::set_socket_recv_buffer_size(c.0.get_ref(), 4096).unwrap();
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
        "--id",
        &id,
    ])
    .await;
    let first = c.ask(&json!({"cmd": "watch", "id": id})).await;
    assert!(first["event"].is_object(), "{first}");
    // Read nothing until the update has ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = r.ok(&["update", "status", "sled-0", HBF]).await["delivery"].clone();
        if ["complete", "failed", "aborted"].contains(&d["phase"].as_str().unwrap_or("")) {
            assert_eq!(d["phase"], "complete", "{d}");
            break;
        }
        assert!(Instant::now() < deadline, "update not done: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = 1;
    let last = loop {
        let v = c.next().await.expect("the stream ends with an ok line");
        if v["event"].is_object() {
            events += 1;
            continue;
        }
        break v;
    };
    assert_eq!(
        last["ok"]["phase"], "complete",
        "after {events} events: {last}"
    );
    assert_eq!(last["ok"]["id"], id.as_str());
}

// 6. No fan-out storms.

/// Each of `requests` on its own connection, all written before any
/// answer is read: the answers, and the datagrams the SPs received
/// meanwhile beyond `rate` per second (twice over, plus `slack`).
async fn storm(r: &Rig, requests: Vec<Value>, rate: f64) -> (Vec<Value>, u64, u64) {
    let before = r.received();
    let t = Instant::now();
    let mut conns = Vec::new();
    for request in &requests {
        let mut c = r.conn().await;
        c.send(request).await;
        conns.push(c);
    }
    let mut answers = Vec::new();
    for c in &mut conns {
        answers.push(c.next().await.expect("an answer"));
    }
    let sent = r.received() - before;
    let allowed = (rate * t.elapsed().as_secs_f64() * 2.0).ceil() as u64 + 2;
    (answers, sent, allowed)
}

#[actix::test]
async fn a_thousand_lists_and_states_cost_the_sps_nothing() {
    let r = Rig::start(4, 0, "max_connections = 1100", "").await;
    // Let what the actors know age past a second, so that a daemon that
    // refreshes a stale answer on demand shows it every run.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = r.ok(&["list"]).await;
        let ages: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|sp| sp["age_ms"].as_u64())
            .collect();
        if ages.iter().all(|age| *age >= Some(1500)) {
            break;
        }
        assert!(Instant::now() < deadline, "ages: {ages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = r.idle_rate().await;

    let lists = vec![json!({"cmd": "list"}); 1000];
    let (answers, sent, allowed) = storm(&r, lists, rate).await;
    for v in &answers {
        assert_eq!(v["ok"].as_array().map(Vec::len), Some(4), "{v}");
    }
    assert!(
        sent <= allowed,
        "1000 lists: the SPs received {sent} datagrams (idle: {rate:.1}/s, allowed {allowed})"
    );

    let states = (0..1000)
        .map(|i| json!({"cmd": "state", "sp": format!("sled-{}", i % 4)}))
        .collect();
    let (answers, sent, allowed) = storm(&r, states, rate).await;
    for v in &answers {
        assert!(v["ok"]["state"]["serial"].is_string(), "{v}");
        assert!(has_key(&v["ok"], "age_ms"), "state carries age_ms: {v}");
    }
    assert!(
        sent <= allowed,
        "1000 states: the SPs received {sent} datagrams (idle: {rate:.1}/s, allowed {allowed})"
    );
}

// 7. Ids in error texts.

#[actix::test]
async fn error_messages_spell_update_ids_as_uuids() {
    let r = Rig::start(1, 200, "", "").await;
    let img = r.file("host.img", &host_image(400_000, 6), 0o644);
    let other = r.file("other.img", &host_image(200_000, 7), 0o644);
    let running = new_id();
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
        "--id",
        &running,
    ])
    .await;
    let wrong = new_id();
    let mut c = r.conn().await;
    let v = c
        .ask(&json!({"cmd": "update_abort", "sp": "sled-0", "component": HBF, "id": wrong}))
        .await;
    assert!(v["error"].is_object(), "{v}");
    let text = message(&v);
    assert!(!text.contains("UpdateId("), "{text}");
    assert!(text.contains(&wrong), "names the id asked for: {text}");
    if !text.contains(&running) {
        eprintln!("note: the abort refusal does not name the running update: {text}");
    }
    let (code, _, err) = mgsctl(&r.socket(), &["update", "abort", "sled-0", HBF, &wrong]).await;
    assert_eq!(code, 8, "{err}");
    assert!(err.contains(&wrong) && !err.contains("UpdateId("), "{err}");
    // Other errors that name an id.
    let unknown = new_id();
    let v = c.ask(&json!({"cmd": "watch", "id": unknown})).await;
    assert_eq!(err_code(&v), "unknown_update", "{v}");
    assert!(message(&v).contains(&unknown), "{v}");
    let args = [
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        other.to_str().unwrap(),
        "--id",
        &running,
    ];
    let (code, _, err) = mgsctl(&r.socket(), &args).await;
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains(&running) && !err.contains("UpdateId("),
        "{err}"
    );
}

// 8. Demo.

/// Removes `/tmp/mgsd-demo` if this test planted it.
struct Planted(Option<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        if let Some(link) = &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[actix::test]
async fn the_demo_uses_a_new_private_directory() {
    let tmp = std::env::temp_dir();
    let listed = || -> std::collections::HashSet<PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    };
    let decoy = tempfile::tempdir().unwrap();
    let link = Path::new("/tmp/mgsd-demo");
    let planted = std::fs::symlink_metadata(link).is_err()
        && std::os::unix::fs::symlink(decoy.path(), link).is_ok();
    let _planted = Planted(planted.then(|| link.to_path_buf()));
    let before = listed();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .arg("--demo")
        .env("MGSD_METRICS__LISTEN", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The socket, and the private directory if printed on its own line.
    let (socket, printed) = tokio::time::timeout(Duration::from_secs(30), async {
        let (mut socket, mut dir) = (None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix("Control socket:") {
                socket = Some(PathBuf::from(s.trim()));
            } else if line.contains("directory") {
                dir = line.rsplit(": ").next().map(PathBuf::from);
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        (socket.expect("the demo printed its control socket"), dir)
    })
    .await
    .expect("the demo starts within 30 s");
    let dir = printed.unwrap_or_else(|| socket.parent().unwrap().to_path_buf());
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    let through_link = std::fs::read_dir(decoy.path()).unwrap().count();
    // The instructions come before the socket is bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, err) = loop {
        let (code, _, err) = mgsctl(&socket, &["version"]).await;
        if code == 0 || Instant::now() > deadline {
            break (code, err);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Stop it (SIGTERM, so the demo removes its directory) before judging.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    if planted {
        assert_eq!(through_link, 0, "nothing went through the planted link");
    } else {
        eprintln!("note: /tmp/mgsd-demo already exists; not replaced by a planted link");
    }
    assert_eq!(code, 0, "the demo serves: {err}");
    assert_eq!(socket.parent(), Some(dir.as_path()), "the socket is inside");
    assert_ne!(dir, link, "never the fixed name");
    assert!(!before.contains(&dir), "{} existed before", dir.display());
    assert!(
        meta.is_dir(),
        "{} is a directory, not a link",
        dir.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        dir.display()
    );
}
