//! The daemon as a child process and a simulated rack on a thread of its
//! own, for the bench and the soak: the daemon's CPU time, memory and
//! descriptors are then its own, and it can be killed like the real one.
//!
//! The child is a binary of this crate run with `--daemon CONFIG` (see
//! [`daemon_main`]), which is `mgsd::run`, exactly what `mgsd --config`
//! runs: the caller itself by default.

use mgsd::api::{self, Command, Response};
use mgsd::client::Client;
use serde_json::Value;
use sp_sim::{RackConfig, SimRack, SimSp};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// If `args` are `[_, "--daemon", CONFIG]`, run the daemon on CONFIG and
/// return true once it stops.
pub fn daemon_main(args: &[String]) -> bool {
    let [_, flag, config] = args else {
        return false;
    };
    if flag != "--daemon" {
        return false;
    }
    let config = mgsd::config::Config::load(Some(Path::new(config))).expect("daemon config");
    actix::System::new()
        .block_on(mgsd::run(config, mgsd::shutdown_signal()))
        .expect("daemon runs");
    true
}

/// CPU time so far of process `pid`'s threads (`self` for this one),
/// only those named `name` if given.
pub fn threads_cpu(pid: &str, name: Option<&str>) -> Duration {
    let mut ns = 0u64;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.is_some_and(|n| comm.trim() != n) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// Simulated SPs on their own thread and runtime (`sp-sim`), stopped
/// when dropped.
pub struct Rack {
    pub sps: Vec<SimSp>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rack {
    pub fn start(config: RackConfig) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sp-sim".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let rack = SimRack::start(config).await.expect("rack starts");
                    tx.send(rack.sps.clone()).expect("the caller waits");
                    let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
                    rack.stop().await;
                });
            })
            .expect("thread");
        Self {
            sps: rx.recv().expect("rack started"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Rack {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A daemon config: the control socket, a state directory, metrics on an
/// ephemeral port, warnings only, `sp_defaults` (TOML lines) and one
/// `[[sp]]` per `(name, addr)`.
pub fn config(
    socket: &Path,
    state: &Path,
    sp_defaults: &str,
    sps: &[(String, SocketAddr)],
) -> String {
    let mut text = format!(
        "[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n\
         [state]\ndir = \"{}\"\n[sp_defaults]\n{sp_defaults}\n",
        socket.display(),
        state.display()
    );
    for (name, addr) in sps {
        text += &format!("[[sp]]\nname = \"{name}\"\naddr = \"{addr}\"\n");
    }
    text
}

/// The daemon as a child process; killed when dropped.
pub struct Daemon {
    child: Child,
    exe: PathBuf,
    pub socket: PathBuf,
    config: PathBuf,
    /// SPs it must have found before it counts as ready.
    sps: usize,
}

impl Daemon {
    /// Run this binary as the daemon on `config` (which serves `socket`)
    /// and wait until it reaches `sps` SPs.
    pub fn start(config: &Path, socket: PathBuf, sps: usize) -> Self {
        let exe = std::env::current_exe().expect("own path");
        Self::start_exe(&exe, config, socket, sps)
    }

    /// As [`Daemon::start`], with `exe --daemon CONFIG` as the daemon.
    pub fn start_exe(exe: &Path, config: &Path, socket: PathBuf, sps: usize) -> Self {
        let child = Self::spawn(exe, config);
        let daemon = Self {
            child,
            exe: exe.to_owned(),
            socket,
            config: config.to_owned(),
            sps,
        };
        daemon.wait_ready();
        daemon
    }

    /// Its stderr goes to the config's path with `.log` for an extension,
    /// over every start.
    fn spawn(exe: &Path, config: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_extension("log"))
            .expect("open the daemon's log");
        std::process::Command::new(exe)
            .arg("--daemon")
            .arg(config)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Client::connect(&self.socket) {
                if let Ok(h) = ok(c.request(&Command::Health(api::NoArgs {}))) {
                    if h["reachable"] == self.sps {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "the daemon did not find its SPs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL it, then start it again on the same config and state.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.exe, &self.config);
        self.wait_ready();
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to the daemon")
    }

    /// CPU time of every thread of the daemon so far.
    pub fn cpu(&self) -> Duration {
        threads_cpu(&self.child.id().to_string(), None)
    }

    /// Peak resident memory (VmHWM), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// Resident memory now (VmRSS), MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }

    /// Open file descriptors now.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A response's `ok` value, or its error's message.
pub fn ok(response: std::io::Result<Response>) -> Result<Value, String> {
    let r = response.map_err(|e| e.to_string())?;
    match (r.ok, r.error) {
        (Some(v), _) => Ok(v),
        (_, Some(e)) => Err(e.message),
        _ => Err("empty response".into()),
    }
}

/// Start an update of `sp`'s host flash (slot 1) with `image` through
/// the control socket and follow it to its end; the final record, and when
/// (since the start request) every byte was acknowledged.
pub fn update(d: &Daemon, sp: &str, image: &Path) -> (Value, Duration, Duration) {
    let id = uuid::Uuid::new_v4();
    let t0 = Instant::now();
    let file = std::fs::File::open(image).expect("open the image");
    let start = Command::UpdateStart(api::UpdateStartArgs {
        sp: sp.into(),
        component: "host-boot-flash".into(),
        slot: 1,
        id: Some(id),
        archive: false,
        force_board: false,
        take_over: false,
        activate: false,
        no_watchdog: false,
        watchdog_ms: None,
    });
    ok(d.client()
        .request_with(&start, Some(std::os::fd::AsFd::as_fd(&file))))
    .unwrap_or_else(|e| panic!("start on {sp}: {e}"));
    let mut c = d.client();
    let mut r = c
        .request(&Command::Watch(api::WatchArgs { id: Some(id) }))
        .expect("watch");
    let mut delivered = None;
    loop {
        let record = r.event.as_ref().or(r.ok.as_ref()).cloned();
        if let Some(record) = &record {
            if delivered.is_none()
                && record["phase"] != "delivering"
                && record["bytes_acked"] == record["total_bytes"]
            {
                delivered = Some(t0.elapsed());
            }
        }
        if r.ok.is_some() || r.error.is_some() {
            let record = ok(Ok(r)).expect("update ends");
            assert_eq!(record["phase"], "complete", "{record}");
            let done = t0.elapsed();
            return (record, delivered.unwrap_or(done), done);
        }
        r = c
            .next_response()
            .expect("watch")
            .expect("watch ends with the record");
    }
}
