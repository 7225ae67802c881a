//! [`Rig`]: a simulated rack in the test's process and an mgsd serving it,
//! either in the same process or as the real `mgsd` binary, with its files
//! in a private directory of its own: `mgsd.toml`, `mgsd.sock`, `state/`
//! (if asked for), `mgsd.log` (a child's stderr) and whatever the test
//! writes there.
//!
//! The daemon is controlled through `&self` (its process handle lives in a
//! cell), so a test may hold on to a simulated SP while it kills and starts
//! the daemon.
//!
//! ```ignore
//! let r = Rig::child(standard_rack(2, 0, 0, Timings::instant()))
//!     .state()
//!     .control("max_connections = 4")
//!     .start()
//!     .await;
//! let list = r.ok(&["list"]).await;
//! r.restart().await;
//! ```

use super::{mgsctl, Conn};
use futures_util::FutureExt;
use serde_json::Value;
use sp_sim::{RackConfig, SimRack, SimSp};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long [`Rig::ready`] waits for the daemon to find every SP.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long [`Rig::hup`] waits for the daemon to log the reload's outcome.
const RELOAD_WITHIN: Duration = Duration::from_secs(10);

/// An interval (ms) that never comes round during a test.
pub const HOUR_MS: u64 = 3_600_000;

/// What the rig writes under `[sp_defaults]` and its `rpc` and `delivery`
/// tables; `None` leaves the daemon's own default. [`Default`]: discovery
/// every 50 ms, RPC attempts of 100 ms (10 of them), the SP's update
/// status read every 10 ms, and 4 MiB of host flash (a rack with
/// `host_flash_mib: 4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpDefaults {
    pub discovery_interval_ms: Option<u64>,
    /// How often a reachable SP's state is read again.
    pub state_refresh_ms: Option<u64>,
    /// Silence after which an SP is probed again.
    pub idle_rediscover_ms: Option<u64>,
    /// `[sp_defaults.rpc]`.
    pub per_attempt_timeout_ms: Option<u64>,
    /// `[sp_defaults.rpc]`.
    pub max_attempts: Option<u64>,
    /// `[sp_defaults.rpc]`: attempts at a reset (its budget, with the
    /// attempt timeout).
    pub max_attempts_reset: Option<u64>,
    /// `[sp_defaults.delivery]`.
    pub status_poll_interval_ms: Option<u64>,
    /// `[sp_defaults.delivery]`: the host flash the SP hashes, and the
    /// largest host-flash image.
    pub host_flash_capacity_mib: Option<u64>,
    /// `[sp_defaults.console]`.
    pub console_keepalive_ms: Option<u64>,
    pub console_retry_ms: Option<u64>,
    pub console_scrollback_kib: Option<u64>,
}

impl Default for SpDefaults {
    fn default() -> Self {
        Self {
            discovery_interval_ms: Some(50),
            state_refresh_ms: None,
            idle_rediscover_ms: None,
            per_attempt_timeout_ms: Some(100),
            max_attempts: Some(10),
            max_attempts_reset: None,
            status_poll_interval_ms: Some(10),
            host_flash_capacity_mib: Some(4),
            console_keepalive_ms: None,
            console_retry_ms: None,
            console_scrollback_kib: None,
        }
    }
}

impl SpDefaults {
    /// The defaults, but once an SP is found and its console attached the
    /// daemon sends it nothing of its own accord (state refresh, idle
    /// rediscovery and console keep-alives an hour apart): what the SPs
    /// receive is what clients asked for.
    pub fn quiet() -> Self {
        Self {
            state_refresh_ms: Some(HOUR_MS),
            idle_rediscover_ms: Some(HOUR_MS),
            console_keepalive_ms: Some(HOUR_MS),
            ..Self::default()
        }
    }

    fn toml(&self) -> String {
        fn table(name: &str, keys: &[(&str, Option<u64>)]) -> String {
            let set: String = keys
                .iter()
                .filter_map(|(key, value)| value.map(|v| format!("{key} = {v}\n")))
                .collect();
            if set.is_empty() {
                set
            } else {
                format!("[{name}]\n{set}")
            }
        }
        [
            table(
                "sp_defaults",
                &[
                    ("discovery_interval_ms", self.discovery_interval_ms),
                    ("state_refresh_ms", self.state_refresh_ms),
                    ("idle_rediscover_ms", self.idle_rediscover_ms),
                ],
            ),
            table(
                "sp_defaults.rpc",
                &[
                    ("per_attempt_timeout_ms", self.per_attempt_timeout_ms),
                    ("max_attempts", self.max_attempts),
                    ("max_attempts_reset", self.max_attempts_reset),
                ],
            ),
            table(
                "sp_defaults.delivery",
                &[
                    ("status_poll_interval_ms", self.status_poll_interval_ms),
                    ("host_flash_capacity_mib", self.host_flash_capacity_mib),
                ],
            ),
            table(
                "sp_defaults.console",
                &[
                    ("keepalive_ms", self.console_keepalive_ms),
                    ("retry_ms", self.console_retry_ms),
                    ("scrollback_kib", self.console_scrollback_kib),
                ],
            ),
        ]
        .concat()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    InProcess,
    Child,
}

/// How the rig runs the daemon and what its configuration says besides the
/// `[[sp]]` list.
#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    state: bool,
    sp_defaults: SpDefaults,
    control: String,
    tables: String,
    dir_mode: Option<u32>,
    rust_log: String,
}

/// A [`Rig`] to be: the rack, and how to run mgsd for it.
#[must_use]
pub struct RigBuilder {
    rack: RackConfig,
    settings: Settings,
}

impl RigBuilder {
    fn new(rack: RackConfig, mode: Mode) -> Self {
        Self {
            rack,
            settings: Settings {
                mode,
                state: false,
                sp_defaults: SpDefaults::default(),
                control: String::new(),
                tables: String::new(),
                dir_mode: None,
                rust_log: "info".into(),
            },
        }
    }

    /// Journal updates in `state/` in the rig's directory, so that they
    /// survive a restart (default: no state directory).
    pub fn state(mut self) -> Self {
        self.settings.state = true;
        self
    }

    pub fn sp_defaults(mut self, sp_defaults: SpDefaults) -> Self {
        self.settings.sp_defaults = sp_defaults;
        self
    }

    /// `key = value` lines for `[control]`, after the socket's path.
    pub fn control(mut self, toml: &str) -> Self {
        self.settings.control += toml;
        self.settings.control.push('\n');
        self
    }

    /// Whole tables (`[rollout]`, `[control.access]`, `[shutdown]`, ...),
    /// written after the rig's own and before the `[[sp]]` list. The
    /// `[sp_defaults]` tables are the rig's: set them with
    /// [`RigBuilder::sp_defaults`].
    pub fn tables(mut self, toml: &str) -> Self {
        let parsed: toml::Table = toml::from_str(toml)
            .unwrap_or_else(|e| panic!("tables for the rig do not parse: {e}\n{toml}"));
        assert!(
            !parsed.contains_key("sp_defaults"),
            "[sp_defaults] is written by the rig: use RigBuilder::sp_defaults\n{toml}"
        );
        self.settings.tables += toml;
        self.settings.tables.push('\n');
        self
    }

    /// The mode of the rig's directory (default 0700); 0755 lets other
    /// users reach the socket.
    pub fn dir_mode(mut self, mode: u32) -> Self {
        self.settings.dir_mode = Some(mode);
        self
    }

    /// `RUST_LOG` for a child (default `info`); an in-process daemon logs
    /// nothing of its own.
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.settings.rust_log = filter.into();
        self
    }

    /// Start the rack and the daemon; returns once every SP is reachable.
    pub async fn start(self) -> Rig {
        let rig = self.build().await;
        rig.start().await;
        rig
    }

    /// Start the rack and write the configuration, but not the daemon: for
    /// a test that prepares the directory first, then calls [`Rig::start`].
    pub async fn build(self) -> Rig {
        let rack = SimRack::start(self.rack).await.unwrap();
        let dir = tempfile::Builder::new()
            .prefix(concat!("mgsd-", env!("CARGO_CRATE_NAME"), "-"))
            .tempdir()
            .unwrap();
        if let Some(mode) = self.settings.dir_mode {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let rig = Rig {
            daemon: RefCell::new(Daemon::Stopped),
            rack,
            dir,
            settings: self.settings,
        };
        let sps: Vec<(&str, SocketAddr)> = rig
            .rack
            .sps
            .iter()
            .map(|sp| (sp.name.as_str(), sp.addr))
            .collect();
        rig.write_config(&rig.config_text(&sps));
        rig
    }
}

/// The daemon, as far as the rig runs one.
enum Daemon {
    Stopped,
    InProcess {
        /// Dropped or sent: `mgsd::run` shuts down.
        stop: tokio::sync::oneshot::Sender<()>,
        run: tokio::task::JoinHandle<Result<(), mgsd::DaemonError>>,
    },
    Child(tokio::process::Child),
}

/// A simulated rack and the mgsd serving it (see the module docs). Dropping
/// it stops the daemon (a child is killed) and removes the directory.
pub struct Rig {
    // Declared first, so dropped before the rack and the directory.
    daemon: RefCell<Daemon>,
    rack: SimRack,
    dir: tempfile::TempDir,
    settings: Settings,
}

impl Rig {
    /// mgsd in the test's own process (`mgsd::run` on the test's actix
    /// system): quick to start, its panics are the test's.
    pub fn in_process(rack: RackConfig) -> RigBuilder {
        RigBuilder::new(rack, Mode::InProcess)
    }

    /// The real `mgsd` binary as a child process, its stderr in
    /// [`Rig::log`]: for tests that kill, signal or restart it, or that a
    /// daemon which hangs or bloats must not take down.
    pub fn child(rack: RackConfig) -> RigBuilder {
        RigBuilder::new(rack, Mode::Child)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("mgsd.sock")
    }

    /// The file the daemon's configuration is read from.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("mgsd.toml")
    }

    /// The state directory (the rig must have one: [`RigBuilder::state`]).
    pub fn state_dir(&self) -> PathBuf {
        assert!(
            self.settings.state,
            "the rig has no state directory (RigBuilder::state)"
        );
        self.dir().join("state")
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("mgsd.log")
    }

    /// Everything a child has written to stderr, over all its starts (`""`
    /// in process).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// [`crate::common::until`], but a timeout prints the daemon's log.
    pub async fn until(&self, what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; mgsd's log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn rack(&self) -> &SimRack {
        &self.rack
    }

    /// The simulated SP called `name` (which must exist).
    pub fn sp(&self, name: &str) -> &SimSp {
        self.rack
            .sp(name)
            .unwrap_or_else(|| panic!("no simulated SP {name}"))
    }

    /// Datagrams all the SPs have received.
    pub fn received(&self) -> u64 {
        self.rack
            .sps
            .iter()
            .map(|sp| sp.fault_stats().received)
            .sum()
    }

    /// Datagrams per second the SPs receive over half a second in which no
    /// client asks anything: the daemon's own periodic traffic (none with
    /// [`SpDefaults::quiet`]).
    pub async fn idle_rate(&self) -> f64 {
        let before = self.received();
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        (self.received() - before) as f64 / t.elapsed().as_secs_f64()
    }

    /// The configuration the rig writes, with `sps` as its `[[sp]]` list.
    pub fn config_text(&self, sps: &[(&str, SocketAddr)]) -> String {
        let s = &self.settings;
        let state = if s.state {
            self.dir().join("state").display().to_string()
        } else {
            String::new()
        };
        let mut text = format!(
            "[control]\nsocket = \"{socket}\"\n{control}\
             [metrics]\nlisten = \"\"\n\
             [state]\ndir = \"{state}\"\n\
             {sp_defaults}{tables}",
            socket = self.socket().display(),
            control = s.control,
            sp_defaults = s.sp_defaults.toml(),
            tables = s.tables,
        );
        for (name, addr) in sps {
            text += &format!("[[sp]]\nname = \"{name}\"\naddr = \"{addr}\"\n");
            if let Some((kind, slot)) = self.place(name) {
                text += &format!("type = \"{kind}\"\nslot = {slot}\n");
            }
        }
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            panic!("the rig's configuration does not parse: {e}\n{text}");
        }
        text
    }

    /// The HTTP API's place (`type`, `slot`) of the rack's SP `name`:
    /// each kind numbered from 0 in rack order.
    pub fn place(&self, name: &str) -> Option<(&'static str, usize)> {
        let sp = self.rack.sps.iter().find(|sp| sp.name == name)?;
        let kind = match sp.kind {
            sp_sim::SpKind::Sled => "sled",
            sp_sim::SpKind::Switch => "switch",
            sp_sim::SpKind::PowerShelf => "power",
        };
        let slot = self
            .rack
            .sps
            .iter()
            .take_while(|other| other.name != name)
            .filter(|other| other.kind == sp.kind)
            .count();
        Some((kind, slot))
    }

    /// The first HTTP listener's address, as `health` reports it.
    pub async fn http_addr(&self) -> SocketAddr {
        let (code, out, err) = self.mgsctl(&["--json", "health"]).await;
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["ok"]["http_listeners"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no HTTP listener: {v}"))
            .parse()
            .unwrap()
    }

    /// Replace the configuration file (read at the next start, and its
    /// `[[sp]]` list at [`Rig::hup`]).
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Start the daemon (which must not be running) on the rig's directory
    /// and state; returns once every SP is reachable.
    pub async fn start(&self) {
        assert!(
            matches!(*self.daemon.borrow(), Daemon::Stopped),
            "mgsd is running already"
        );
        let daemon = match self.settings.mode {
            Mode::Child => Daemon::Child(self.spawn_child()),
            Mode::InProcess => self.spawn_in_process(),
        };
        *self.daemon.borrow_mut() = daemon;
        self.ready().await;
    }

    fn spawn_child(&self) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", &self.settings.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn spawn_in_process(&self) -> Daemon {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        let config = mgsd::config::Config::from_toml(&text)
            .unwrap_or_else(|e| panic!("configuration refused: {e}\n{text}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = actix::spawn(mgsd::run(config, async move {
            let _ = stopped.await;
        }));
        Daemon::InProcess { stop, run }
    }

    /// Wait (at most 30 s) until the daemon answers and has found every SP
    /// of the rack; panics, with the log, if it exits first.
    pub async fn ready(&self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let (0, out, _) = self.mgsctl(&["--json", "health"]).await {
                let v: Value = serde_json::from_str(&out).unwrap();
                if v["ok"]["reachable"] == self.rack.sps.len() {
                    return;
                }
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "mgsd did not find every SP within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn assert_running(&self) {
        let exited = match &mut *self.daemon.borrow_mut() {
            Daemon::Stopped => panic!("mgsd is not running (Rig::start)"),
            Daemon::Child(child) => child.try_wait().unwrap().map(|s| s.to_string()),
            Daemon::InProcess { run, .. } => run
                .now_or_never()
                .map(|returned| format!("mgsd::run returned {returned:?}")),
        };
        if let Some(status) = exited {
            panic!("mgsd exited ({status}):\n{}", self.log());
        }
    }

    /// Stop the daemon, start it again on the same directory and state,
    /// and wait until it is ready: a child is killed (SIGKILL); an
    /// in-process daemon is shut down and waited for.
    pub async fn restart(&self) {
        let daemon = std::mem::replace(&mut *self.daemon.borrow_mut(), Daemon::Stopped);
        match daemon {
            Daemon::Child(mut child) => child.kill().await.unwrap(),
            Daemon::InProcess { stop, run } => {
                drop(stop);
                run.await.unwrap().unwrap();
            }
            Daemon::Stopped => {}
        }
        self.start().await;
    }

    /// The child, taken out of the rig (which then counts as stopped).
    fn take_child(&self) -> tokio::process::Child {
        let mut daemon = self.daemon.borrow_mut();
        match std::mem::replace(&mut *daemon, Daemon::Stopped) {
            Daemon::Child(child) => child,
            Daemon::Stopped => panic!("mgsd is not running"),
            in_process @ Daemon::InProcess { .. } => {
                *daemon = in_process;
                panic!("mgsd runs in process: use Rig::child")
            }
        }
    }

    /// SIGKILL the child and wait for it.
    pub async fn kill9(&self) {
        self.take_child().kill().await.unwrap();
    }

    /// SIGTERM the child: how long it took to exit, and its exit code.
    pub async fn term(&self) -> (Duration, Option<i32>) {
        let mut child = self.take_child();
        let t = Instant::now();
        signal(child.id().unwrap(), rustix::process::Signal::TERM);
        let status = child.wait().await.unwrap();
        (t.elapsed(), status.code())
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        match &*self.daemon.borrow() {
            Daemon::Child(child) => child.id().expect("mgsd has been waited for"),
            Daemon::Stopped => panic!("mgsd is not running"),
            Daemon::InProcess { .. } => panic!("mgsd runs in process: use Rig::child"),
        }
    }

    /// SIGHUP the child, which reads its configuration file's `[[sp]]` list
    /// again ([`Rig::write_config`]), and wait for the line it logs about
    /// that: the configuration reloaded, or why not. Needs `info` in
    /// `RUST_LOG`.
    pub async fn hup(&self) -> String {
        let outcomes = |log: String| -> Vec<String> {
            log.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .filter(|l| l.contains("configuration reloaded") || l.contains("reload refused"))
                .map(str::to_string)
                .collect()
        };
        let before = outcomes(self.log()).len();
        signal(self.pid(), rustix::process::Signal::HUP);
        let deadline = Instant::now() + RELOAD_WITHIN;
        loop {
            if let Some(line) = outcomes(self.log()).into_iter().nth(before) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no reload logged within {RELOAD_WITHIN:?} (RUST_LOG {}):\n{}",
                self.settings.rust_log,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Configure `sps` as the `[[sp]]` list and SIGHUP the child: the line
    /// it logs about the reload.
    pub async fn reload(&self, sps: &[(&str, SocketAddr)]) -> String {
        self.write_config(&self.config_text(sps));
        self.hup().await
    }

    /// `mgsctl ARGS` on the rig's socket: exit code, stdout, stderr.
    pub async fn mgsctl(&self, args: &[&str]) -> (i32, String, String) {
        mgsctl(&self.socket(), args).await
    }

    /// `mgsctl --json ARGS`: exit code, the last line of stdout (`null` if
    /// there is none or it is not JSON), stderr.
    pub async fn json(&self, args: &[&str]) -> (i32, Value, String) {
        let (code, out, err) = self.mgsctl(&[&["--json"][..], args].concat()).await;
        let last = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        (code, last, err)
    }

    /// `mgsctl --json ARGS`, which must exit 0: the last line's `ok`.
    pub async fn ok(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.mgsctl(&[&["--json"][..], args].concat()).await;
        assert_eq!(code, 0, "mgsctl {args:?}: {out}{err}\n{}", self.log());
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str::<Value>(last).unwrap()["ok"].clone()
    }

    pub async fn conn(&self) -> Conn {
        Conn::open(&self.socket()).await
    }

    /// `request` on a connection of its own: the answer.
    pub async fn ask(&self, request: &Value) -> Value {
        self.conn().await.ask(request).await
    }

    /// A file of `bytes` in the rig's directory.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A file of `bytes` in the rig's directory, with file mode `mode`.
    pub fn file_mode(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.file(name, bytes);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a process id");
    rustix::process::kill_process(pid, signal).unwrap();
}
