//! A network test bed of Linux network namespaces: two scrimlets (A and B)
//! and one namespace per SP, joined by veth pairs as a rack's switch ports
//! join a sled's two SP ports. Each SP is a real `sp-sim` process bound to
//! `[::]:11111` that joins the discovery group `ff02::1de:2` on its ports
//! `port0` (towards A) and `port1` (towards B); each scrimlet sees SP `i` as
//! its interface `sp<i>`. IPv6 link-local only, without duplicate address
//! detection. The real `mgsd` runs inside a scrimlet namespace
//! ([`NetBed::start_daemon`]) and `mgsctl` talks to it from anywhere: its
//! control socket is a file.
//!
//! Everything is done with `ip` (iproute2) and needs root (or
//! `CAP_SYS_ADMIN` + `CAP_NET_ADMIN`); [`NetBed::available`] says whether
//! it works here. Names are unique per process and bed (`mgb<pid>x<n>…`),
//! so parallel runs never collide; dropping the bed (also when a test
//! panics) kills every process in its namespaces and deletes them, and a
//! new bed first removes what crashed runs left behind.
//!
//! ```no_run
//! use mgsd_tests::netbed::{NetBed, NetBedOptions, Scrimlet};
//! if let Err(why) = NetBed::available() {
//!     eprintln!("skipped: {why}");
//!     return;
//! }
//! let bed = NetBed::create(4, NetBedOptions::default()).unwrap();
//! let a = bed.start_daemon(Scrimlet::A, "").unwrap();
//! let out = a.ctl(&["list"]);
//! println!("{}", out.stdout);
//! ```
//!
//! Interactively: `cargo build --workspace && cargo run -p mgsd-tests --bin
//! mgsd-netbed -- --sps 4` (see `src/bin/netbed.rs`).

use sp_sim::{FaultConfig, Timings};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Every namespace (and temporary directory) a bed makes starts with this,
/// then the creating process's pid, `x` and a counter.
pub const PREFIX: &str = "mgb";

/// The UDP port SPs listen on.
pub const SP_PORT: u16 = gateway_messages::SP_PORT;

/// How long the bed waits for links, addresses and processes.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One of the two scrimlets (the switch-side hosts that run mgsd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scrimlet {
    /// Scrimlet A, wired to every SP's `port0`.
    A,
    /// Scrimlet B, wired to every SP's `port1`.
    B,
}

impl Scrimlet {
    /// Both, A first.
    pub const BOTH: [Scrimlet; 2] = [Scrimlet::A, Scrimlet::B];

    /// The SP-side interface wired to this scrimlet.
    pub fn sp_port(self) -> &'static str {
        match self {
            Scrimlet::A => "port0",
            Scrimlet::B => "port1",
        }
    }

    /// `a` or `b`.
    pub fn letter(self) -> char {
        match self {
            Scrimlet::A => 'a',
            Scrimlet::B => 'b',
        }
    }

    fn index(self) -> usize {
        match self {
            Scrimlet::A => 0,
            Scrimlet::B => 1,
        }
    }
}

/// The scrimlet-side interface of SP `i`.
pub fn sp_interface(i: usize) -> String {
    format!("sp{i}")
}

/// The name of SP `i` (`sled-<i>`).
pub fn sp_name(i: usize) -> String {
    format!("sled-{i}")
}

/// The serial number of SP `i` (`BRM42<220000+i>`).
pub fn sp_serial(i: usize) -> String {
    format!("BRM42{:06}", 220_000 + i)
}

/// How the simulated SPs behave.
#[derive(Debug, Clone)]
pub struct NetBedOptions {
    /// Flash and reset timings of every SP.
    pub timings: Timings,
    /// Faults of every SP without an entry in `sp_faults`.
    pub faults: FaultConfig,
    /// Faults of single SPs, by index.
    pub sp_faults: BTreeMap<usize, FaultConfig>,
    /// Fault dice seed (SP `i` uses `seed + i`).
    pub seed: u64,
    /// Keep the host-flash images the SPs receive (see
    /// [`NetBed::stored_host_image`]).
    pub store_images: bool,
}

impl Default for NetBedOptions {
    fn default() -> Self {
        Self {
            timings: Timings::default(),
            faults: FaultConfig::default(),
            sp_faults: BTreeMap::new(),
            seed: 0,
            store_images: true,
        }
    }
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct BedChild {
    child: Child,
}

impl BedChild {
    /// Take over `child`.
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// Kill it now (SIGKILL) and reap it.
    pub fn kill_now(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Deref for BedChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for BedChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for BedChild {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// `cmd` run inside network namespace `netns` (`ip netns exec NETNS
/// PROGRAM ARGS…`), with its environment and working directory; set stdio
/// on the result. `ip netns exec` replaces itself with the program, so the
/// child's pid is the program's.
pub fn in_netns(netns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", netns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Spawn `cmd` inside `netns`: stdin closed, stdout and stderr inherited.
/// The child is killed when the returned handle is dropped.
pub fn spawn_in(netns: &str, cmd: &Command) -> std::io::Result<BedChild> {
    in_netns(netns, cmd)
        .stdin(Stdio::null())
        .spawn()
        .map(BedChild::new)
}

/// Spawn `cmd` inside `netns` with stdout and stderr appended to `log`.
pub fn spawn_logged(netns: &str, cmd: &Command, log: &Path) -> std::io::Result<BedChild> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    in_netns(netns, cmd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .map(BedChild::new)
}

/// A workspace binary (`sp-sim`, `mgsd`, `mgsctl`) next to the running
/// executable: `target/<profile>/` for binaries, its `deps/` for tests.
/// Panics if it is not there.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let mut dir = exe.parent().expect("executable's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found (looked next to {}): run `cargo build --workspace` first \
         (`cargo test --workspace` builds it; `cargo test -p mgsd-tests` does not)",
        path.display(),
        exe.display()
    );
    path
}

/// Run `ip ARGS`: its stdout, or an error with its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ))
    }
}

/// Run `ip GLOBAL… -batch -` with `lines` on stdin (one process for many
/// commands).
fn ip_batch(global: &[&str], lines: &[String]) -> Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("ip")
        .args(global)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let mut input = String::new();
    for l in lines {
        input.push_str(l);
        input.push('\n');
    }
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} -batch: {} (commands: {})",
            global.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            lines.join("; ")
        ))
    }
}

/// Kill (SIGKILL) every process in `netns`.
fn kill_all_in(netns: &str) {
    let Ok(pids) = ip(&["netns", "pids", netns]) else {
        return;
    };
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
}

/// Delete `namespaces` (killing what runs in them first); errors ignored.
fn delete_namespaces(namespaces: &[String]) {
    for ns in namespaces {
        kill_all_in(ns);
    }
    let lines: Vec<String> = namespaces
        .iter()
        .map(|n| format!("netns del {n}"))
        .collect();
    let _ = ip_batch(&["-force"], &lines);
}

/// The pid a name made by a bed carries (`mgb<pid>x…`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Remove namespaces and directories left by beds whose process is gone
/// (a crashed or killed run).
pub fn cleanup_leftovers() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(list) = ip(&["netns", "list"]) {
        let dead: Vec<String> = list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| owner_pid(n).is_some_and(|p| !alive(p)))
            .map(str::to_string)
            .collect();
        if !dead.is_empty() {
            eprintln!("netbed: removing {} leftover namespaces", dead.len());
            delete_namespaces(&dead);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|p| !alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Link-local addresses of `netns`' interfaces: name → (address, usable:
/// neither tentative nor failed).
fn link_local_addrs(netns: &str) -> Result<BTreeMap<String, (Ipv6Addr, bool)>, String> {
    let out = ip(&["-n", netns, "-6", "-o", "addr", "show", "scope", "link"])?;
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some("inet6"), Some(addr)) =
            (tokens.get(1), tokens.get(2).copied(), tokens.get(3))
        else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        let Some(addr) = addr.split('/').next().and_then(|a| a.parse().ok()) else {
            continue;
        };
        let flags = tokens
            .iter()
            .skip(4)
            .take_while(|t| **t != "\\" && **t != "valid_lft");
        let usable = flags
            .clone()
            .all(|f| !matches!(*f, "tentative" | "dadfailed"));
        let entry = map.entry(name.to_string()).or_insert((addr, usable));
        // Prefer a usable address if an interface has several.
        if usable && !entry.1 {
            *entry = (addr, usable);
        }
    }
    Ok(map)
}

/// The index of interface `iface` in `netns`.
fn ifindex_in(netns: &str, iface: &str) -> Result<u32, String> {
    let out = ip(&["-n", netns, "-o", "link", "show", "dev", iface])?;
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no index for {iface} in {netns}: {out:?}"))
}

/// One SP: its namespace and its `sp-sim` process.
#[derive(Debug)]
struct SpSlot {
    netns: String,
    child: Option<BedChild>,
    /// `sp-sim` runs so far (each logs to its own file).
    runs: u32,
}

/// The test bed; see the module documentation. Dropping it tears it down.
#[derive(Debug)]
pub struct NetBed {
    prefix: String,
    scrimlets: [String; 2],
    sps: Vec<SpSlot>,
    dir: PathBuf,
    options: NetBedOptions,
    sp_sim: PathBuf,
    /// Namespaces this bed created (and deletes).
    made: Vec<String>,
    /// How long `create` took.
    setup_time: Duration,
}

impl NetBed {
    /// Whether namespaces can be made here: `Err` says why not (to print
    /// when skipping).
    pub fn available() -> Result<(), String> {
        let name = format!(
            "{PREFIX}{}x{}probe",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])
            .map_err(|e| format!("cannot create a network namespace (needs root): {e}"))?;
        let veth = ip(&[
            "-n", &name, "link", "add", "t0", "type", "veth", "peer", "name", "t1",
        ]);
        let exec = ip(&["netns", "exec", &name, "true"]);
        let _ = ip(&["netns", "del", &name]);
        veth.map_err(|e| format!("cannot create veth pairs: {e}"))?;
        exec.map_err(|e| format!("cannot run in a network namespace: {e}"))?;
        Ok(())
    }

    /// Build a bed of `n_sps` SPs and start their `sp-sim`s; returns once
    /// every interface has its link-local address and every SP listens.
    pub fn create(n_sps: usize, options: NetBedOptions) -> Result<Self, String> {
        let started = Instant::now();
        cleanup_leftovers();
        let sp_sim = bin_path("sp-sim");
        let prefix = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut bed = NetBed {
            scrimlets: [format!("{prefix}a"), format!("{prefix}b")],
            sps: (0..n_sps)
                .map(|i| SpSlot {
                    netns: format!("{prefix}s{i}"),
                    child: None,
                    runs: 0,
                })
                .collect(),
            prefix,
            dir,
            options,
            sp_sim,
            made: Vec::new(),
            setup_time: Duration::ZERO,
        };
        let all: Vec<String> = bed
            .scrimlets
            .iter()
            .cloned()
            .chain(bed.sps.iter().map(|s| s.netns.clone()))
            .collect();
        bed.add_namespaces(&all)?;
        bed.add_links(&(0..n_sps).collect::<Vec<_>>())?;
        for s in Scrimlet::BOTH {
            let mut lines = vec!["link set lo up".to_string()];
            lines.extend((0..n_sps).map(|i| format!("link set {} up", sp_interface(i))));
            ip_batch(&["-n", &bed.scrimlets[s.index()]], &lines)?;
        }
        for i in 0..n_sps {
            bed.sp_links_up(i)?;
        }
        let mut want: Vec<(String, Vec<String>)> = Scrimlet::BOTH
            .iter()
            .map(|s| {
                (
                    bed.scrimlets[s.index()].clone(),
                    (0..n_sps).map(sp_interface).collect(),
                )
            })
            .collect();
        want.extend((0..n_sps).map(|i| (bed.sps[i].netns.clone(), bed.sp_ports())));
        wait_addresses(&want, SETUP_LIMIT)?;
        for i in 0..n_sps {
            bed.start_sp(i)?;
        }
        bed.setup_time = started.elapsed();
        Ok(bed)
    }

    fn sp_ports(&self) -> Vec<String> {
        Scrimlet::BOTH
            .iter()
            .map(|s| s.sp_port().to_string())
            .collect()
    }

    /// Create namespaces, without DAD, loopback up.
    fn add_namespaces(&mut self, names: &[String]) -> Result<(), String> {
        // Recorded first: a failure half-way still deletes what was made.
        self.made.extend(names.iter().cloned());
        let lines: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
        ip_batch(&[], &lines)?;
        for ns in names {
            // Before any link exists: new interfaces take `default`.
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])?;
        }
        Ok(())
    }

    /// Create the veth pairs of SPs `sps`, each end directly in its
    /// namespace (so the names never meet in the root namespace).
    fn add_links(&self, sps: &[usize]) -> Result<(), String> {
        let mut lines = Vec::new();
        for &i in sps {
            for s in Scrimlet::BOTH {
                lines.push(format!(
                    "link add {} netns {} type veth peer name {} netns {}",
                    sp_interface(i),
                    self.scrimlets[s.index()],
                    s.sp_port(),
                    self.sps[i].netns
                ));
            }
        }
        ip_batch(&[], &lines)
    }

    fn sp_links_up(&self, i: usize) -> Result<(), String> {
        let mut lines = vec!["link set lo up".to_string()];
        lines.extend(self.sp_ports().iter().map(|p| format!("link set {p} up")));
        ip_batch(&["-n", &self.sps[i].netns], &lines)
    }

    /// The rack TOML of SP `i` (one SP per `sp-sim` process).
    pub fn rack_toml(&self, i: usize) -> String {
        let Timings {
            sector_erase_ms,
            write_kib_per_s,
            sp_bank_erase_ms,
            reset_ms,
            hash_ms,
            host_flash_mib,
            console_line_ms,
            console_flush_ms,
            console_idle_timeout_ms,
            uart_baud,
            phase2_try_other_ms,
            phase2_retry_ms,
        } = &self.options.timings;
        let faults = self
            .options
            .sp_faults
            .get(&i)
            .unwrap_or(&self.options.faults);
        let FaultConfig {
            drop_request,
            duplicate_request,
            drop_response,
            duplicate_response,
            corrupt_response,
            busy,
            max_delay_ms,
            reorder_delay_ms,
            reorder,
            drop_completion_ack,
            drop_prepare_acks,
            new_image_fails_boot,
            drop_watchdog_disable_acks,
            forget_reset_prepares,
            hash_written_bytes,
            archive_id_unchanged,
            sensor_errors,
        } = faults;
        assert!(
            sensor_errors.is_empty(),
            "the namespace bed does not pass sensor faults on"
        );
        let mut t = String::new();
        let _ = writeln!(t, "bind = \"::\"");
        let _ = writeln!(t, "seed = {}", self.options.seed.wrapping_add(i as u64));
        let _ = writeln!(
            t,
            "join_multicast = [{}]",
            self.sp_ports()
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.options.store_images {
            let _ = writeln!(
                t,
                "store_dir = {:?}",
                self.store_dir(i).display().to_string()
            );
        }
        let _ = writeln!(t, "\n[timings]");
        let _ = writeln!(t, "sector_erase_ms = {sector_erase_ms:?}");
        let _ = writeln!(t, "write_kib_per_s = {write_kib_per_s}");
        let _ = writeln!(t, "sp_bank_erase_ms = {sp_bank_erase_ms}");
        let _ = writeln!(t, "reset_ms = {reset_ms}");
        let _ = writeln!(t, "hash_ms = {hash_ms}");
        let _ = writeln!(t, "host_flash_mib = {host_flash_mib}");
        let _ = writeln!(t, "console_line_ms = {console_line_ms}");
        let _ = writeln!(t, "console_flush_ms = {console_flush_ms}");
        let _ = writeln!(t, "console_idle_timeout_ms = {console_idle_timeout_ms}");
        let _ = writeln!(t, "uart_baud = {uart_baud}");
        let _ = writeln!(t, "phase2_try_other_ms = {phase2_try_other_ms}");
        let _ = writeln!(t, "phase2_retry_ms = {phase2_retry_ms}");
        let _ = writeln!(t, "\n[faults]");
        let _ = writeln!(t, "drop_request = {drop_request:?}");
        let _ = writeln!(t, "duplicate_request = {duplicate_request:?}");
        let _ = writeln!(t, "drop_response = {drop_response:?}");
        let _ = writeln!(t, "duplicate_response = {duplicate_response:?}");
        let _ = writeln!(t, "corrupt_response = {corrupt_response:?}");
        let _ = writeln!(t, "busy = {busy:?}");
        let _ = writeln!(t, "max_delay_ms = {max_delay_ms}");
        let _ = writeln!(t, "reorder_delay_ms = {reorder_delay_ms}");
        let _ = writeln!(t, "reorder = {reorder:?}");
        let _ = writeln!(t, "drop_completion_ack = {drop_completion_ack}");
        let _ = writeln!(t, "drop_prepare_acks = {drop_prepare_acks}");
        let _ = writeln!(t, "new_image_fails_boot = {new_image_fails_boot}");
        let _ = writeln!(
            t,
            "drop_watchdog_disable_acks = {drop_watchdog_disable_acks}"
        );
        let _ = writeln!(t, "forget_reset_prepares = {forget_reset_prepares}");
        let _ = writeln!(t, "hash_written_bytes = {hash_written_bytes}");
        let _ = writeln!(t, "archive_id_unchanged = {archive_id_unchanged}");
        let _ = writeln!(t, "\n[[sp]]");
        let _ = writeln!(t, "name = \"{}\"", sp_name(i));
        let _ = writeln!(t, "kind = \"sled\"");
        let _ = writeln!(t, "serial = \"{}\"", sp_serial(i));
        let _ = writeln!(t, "port = {SP_PORT}");
        t
    }

    fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("sp{i}-flash"))
    }

    /// Start SP `i`'s `sp-sim` (it must not be running) and wait until it
    /// listens.
    pub fn start_sp(&mut self, i: usize) -> Result<(), String> {
        assert!(self.sps[i].child.is_none(), "sp-sim {i} already runs");
        let config = self.dir.join(format!("sp{i}.toml"));
        std::fs::write(&config, self.rack_toml(i))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        self.sps[i].runs += 1;
        let log = self.dir.join(format!("sp{i}.{}.log", self.sps[i].runs));
        let mut cmd = Command::new(&self.sp_sim);
        cmd.arg("--config").arg(&config);
        let mut child = spawn_logged(&self.sps[i].netns, &cmd, &log)
            .map_err(|e| format!("cannot start sp-sim {i}: {e}"))?;
        let deadline = Instant::now() + SETUP_LIMIT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("SPs running") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("sp-sim {i} exited ({status}):\n{text}"));
            }
            if Instant::now() > deadline {
                return Err(format!("sp-sim {i} did not start:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.sps[i].child = Some(child);
        Ok(())
    }

    /// Kill SP `i`'s `sp-sim` (the SP goes silent; its links stay up).
    pub fn kill_sp(&mut self, i: usize) {
        if let Some(mut c) = self.sps[i].child.take() {
            c.kill_now();
        }
    }

    /// Whether SP `i`'s `sp-sim` runs.
    pub fn sp_running(&mut self, i: usize) -> bool {
        self.sps[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Reboot SP `i` as a power cycle would: kill its `sp-sim`, delete and
    /// recreate its namespace and both veth pairs (so its link-local
    /// addresses, and the scrimlets' interface indices for it, change),
    /// start `sp-sim` again. Returns once the SP listens again.
    pub fn restart_sp(&mut self, i: usize) -> Result<(), String> {
        self.kill_sp(i);
        let iface = sp_interface(i);
        // Deleting one end deletes its peer, at once (a namespace's own
        // interfaces go only when the kernel gets round to it).
        for s in Scrimlet::BOTH {
            let _ = ip(&["-n", &self.scrimlets[s.index()], "link", "del", &iface]);
        }
        let ns = self.sps[i].netns.clone();
        kill_all_in(&ns);
        ip(&["netns", "del", &ns])?;
        self.made.retain(|n| *n != ns);
        self.add_namespaces(std::slice::from_ref(&ns))?;
        self.add_links(&[i])?;
        for s in Scrimlet::BOTH {
            ip(&[
                "-n",
                &self.scrimlets[s.index()],
                "link",
                "set",
                &iface,
                "up",
            ])?;
        }
        self.sp_links_up(i)?;
        let mut want = vec![(ns, self.sp_ports())];
        want.extend(
            self.scrimlets
                .iter()
                .map(|s| (s.clone(), vec![iface.clone()])),
        );
        wait_addresses(&want, SETUP_LIMIT)?;
        self.start_sp(i)
    }

    /// Bring the scrimlet-side end of SP `sp`'s link on `scrimlet` down or
    /// up (`ip -n NS link set sp<i> down|up`). Up returns once both ends
    /// have their link-local addresses again.
    pub fn set_link(&self, scrimlet: Scrimlet, sp: usize, up: bool) -> Result<(), String> {
        let ns = &self.scrimlets[scrimlet.index()];
        let iface = sp_interface(sp);
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            &iface,
            if up { "up" } else { "down" },
        ])?;
        if up {
            wait_addresses(
                &[
                    (ns.clone(), vec![iface]),
                    (
                        self.sps[sp].netns.clone(),
                        vec![scrimlet.sp_port().to_string()],
                    ),
                ],
                SETUP_LIMIT,
            )?;
        }
        Ok(())
    }

    /// Bring SP `sp`'s own port towards `scrimlet` down or up (`ip -n
    /// NS_SP link set portN down|up`): the scrimlet's `sp<i>` stays up
    /// without carrier, so what it sends is lost silently (a cable pulled
    /// at the SP). Up returns once both ends have their addresses again.
    pub fn set_sp_link(&self, sp: usize, scrimlet: Scrimlet, up: bool) -> Result<(), String> {
        let ns = &self.sps[sp].netns;
        let port = scrimlet.sp_port();
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            port,
            if up { "up" } else { "down" },
        ])?;
        if up {
            wait_addresses(
                &[
                    (ns.clone(), vec![port.to_string()]),
                    (
                        self.scrimlets[scrimlet.index()].clone(),
                        vec![sp_interface(sp)],
                    ),
                ],
                SETUP_LIMIT,
            )?;
        }
        Ok(())
    }

    /// The number of SPs.
    pub fn len(&self) -> usize {
        self.sps.len()
    }

    /// Whether the bed has no SPs.
    pub fn is_empty(&self) -> bool {
        self.sps.is_empty()
    }

    /// The bed's name prefix (`mgb<pid>x<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scrimlet's namespace.
    pub fn scrimlet_netns(&self, s: Scrimlet) -> &str {
        &self.scrimlets[s.index()]
    }

    /// SP `i`'s namespace.
    pub fn sp_netns(&self, i: usize) -> &str {
        &self.sps[i].netns
    }

    /// The bed's directory (configurations, logs, stored images); deleted
    /// with the bed unless a test is panicking.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`NetBed::create`] took.
    pub fn setup_time(&self) -> Duration {
        self.setup_time
    }

    /// The index of `sp<i>` in `scrimlet`'s namespace (the scope id of
    /// SP `i`'s addresses there).
    pub fn ifindex(&self, scrimlet: Scrimlet, sp: usize) -> Result<u32, String> {
        ifindex_in(&self.scrimlets[scrimlet.index()], &sp_interface(sp))
    }

    /// SP `i`'s link-local address on its port towards `scrimlet`.
    pub fn sp_addr(&self, i: usize, scrimlet: Scrimlet) -> Result<Ipv6Addr, String> {
        let port = scrimlet.sp_port();
        link_local_addrs(&self.sps[i].netns)?
            .get(port)
            .map(|a| a.0)
            .ok_or_else(|| format!("{port} of SP {i} has no link-local address"))
    }

    /// Where `scrimlet` should find SP `i`: its link-local address with
    /// the scope of `sp<i>`, port 11111.
    pub fn expected_sp_socket(&self, scrimlet: Scrimlet, i: usize) -> Result<SocketAddrV6, String> {
        Ok(SocketAddrV6::new(
            self.sp_addr(i, scrimlet)?,
            SP_PORT,
            0,
            self.ifindex(scrimlet, i)?,
        ))
    }

    /// What SP `i` last wrote to host-flash `slot` (needs
    /// `store_images`): the image as written, its first 64 KiB excepted
    /// (the SP keeps those erased).
    pub fn stored_host_image(&self, i: usize, slot: u16) -> Option<Vec<u8>> {
        std::fs::read(
            self.store_dir(i)
                .join(format!("{}-host-flash-{slot}.bin", sp_serial(i))),
        )
        .ok()
    }

    /// An mgsd configuration for `scrimlet`: `extra_toml` (settings; it
    /// must not end inside an `[[sp]]` table) followed by one `[[sp]]`
    /// table per SP, `name = "sled-<i>"`, `interface = "sp<i>"`.
    pub fn daemon_config(&self, scrimlet: Scrimlet, extra_toml: &str) -> String {
        let _ = scrimlet; // every scrimlet names its interfaces alike
        let mut t = String::from(extra_toml);
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        for i in 0..self.sps.len() {
            let _ = write!(
                t,
                "\n[[sp]]\nname = \"{}\"\ninterface = \"{}\"\n",
                sp_name(i),
                sp_interface(i)
            );
        }
        t
    }

    /// Write a complete mgsd configuration for `scrimlet` into the bed's
    /// directory: control socket `mgsd-<s>.sock`, state `state-<s>/`,
    /// metrics off, then `settings` (which must not set `[control]`,
    /// `[metrics]` or `[state]`) and the SPs. Returns (config, socket).
    pub fn write_daemon_config(
        &self,
        scrimlet: Scrimlet,
        settings: &str,
    ) -> Result<(PathBuf, PathBuf), String> {
        let l = scrimlet.letter();
        let socket = self.dir.join(format!("mgsd-{l}.sock"));
        let state = self.dir.join(format!("state-{l}"));
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let head = format!(
            "[control]\nsocket = {:?}\n\n[metrics]\nlisten = \"\"\n\n[state]\ndir = {:?}\n\n{settings}\n",
            socket.display().to_string(),
            state.display().to_string()
        );
        let config = self.dir.join(format!("mgsd-{l}.toml"));
        std::fs::write(&config, self.daemon_config(scrimlet, &head))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        Ok((config, socket))
    }

    /// Run the real `mgsd` inside `scrimlet`'s namespace with
    /// [`NetBed::write_daemon_config`]'s configuration (its log in the
    /// bed's directory); returns once its control socket answers.
    pub fn start_daemon(&self, scrimlet: Scrimlet, settings: &str) -> Result<Daemon, String> {
        let (config, socket) = self.write_daemon_config(scrimlet, settings)?;
        let _ = std::fs::remove_file(&socket);
        let log = self.dir.join(format!("mgsd-{}.log", scrimlet.letter()));
        let mut cmd = Command::new(bin_path("mgsd"));
        cmd.arg("--config").arg(&config);
        let started = Instant::now();
        let child = spawn_logged(&self.scrimlets[scrimlet.index()], &cmd, &log)
            .map_err(|e| format!("cannot start mgsd: {e}"))?;
        let mut d = Daemon {
            scrimlet,
            socket,
            config,
            log,
            started,
            child,
            mgsctl: bin_path("mgsctl"),
        };
        d.wait_ready(SETUP_LIMIT)?;
        Ok(d)
    }
}

/// Wait until every listed interface of every namespace has a usable
/// link-local address.
fn wait_addresses(want: &[(String, Vec<String>)], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<&(String, Vec<String>)> = want.iter().collect();
    loop {
        let mut still = Vec::new();
        let mut last = String::new();
        for w in pending {
            let addrs = link_local_addrs(&w.0)?;
            let missing: Vec<&String> =
                w.1.iter()
                    .filter(|i| !addrs.get(*i).is_some_and(|a| a.1))
                    .collect();
            if !missing.is_empty() {
                last = format!("{}: {missing:?} ({addrs:?})", w.0);
                still.push(w);
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no usable link-local address after {limit:?}: {last}"
            ));
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for NetBed {
    fn drop(&mut self) {
        for sp in &mut self.sps {
            sp.child.take();
        }
        delete_namespaces(&self.made);
        if std::thread::panicking() {
            eprintln!("netbed: kept {} (logs, configurations)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What an `mgsctl` run produced.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    /// Exit code (`None`: killed, e.g. on timeout).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Killed for taking too long.
    pub timed_out: bool,
}

impl CtlOutput {
    /// The JSON object on the last non-empty line of stdout (`--json`
    /// prints the daemon's response lines), or `Null`.
    pub fn last_json(&self) -> serde_json::Value {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Run `cmd`, killing it after `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> CtlOutput {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return CtlOutput {
                code: None,
                stdout: String::new(),
                stderr: format!("cannot run {:?}: {e}", cmd.get_program()),
                timed_out: false,
            }
        }
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out) = match rx.recv_timeout(limit) {
        Ok(out) => (out, false),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            (
                rx.recv()
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into())),
                true,
            )
        }
    };
    match out {
        Ok(o) => CtlOutput {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            timed_out,
        },
        Err(e) => CtlOutput {
            code: None,
            stdout: String::new(),
            stderr: e.to_string(),
            timed_out,
        },
    }
}

/// A running `mgsd` inside a scrimlet's namespace; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// Where it runs.
    pub scrimlet: Scrimlet,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
    child: BedChild,
    mgsctl: PathBuf,
}

impl Daemon {
    /// The daemon's process id (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th, in clock ticks (100 per second).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// Run `mgsctl --socket SOCKET ARGS…` (killed after 60 s).
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        self.ctl_for(args, Duration::from_secs(60))
    }

    /// Run `mgsctl --socket SOCKET ARGS…`, killed after `limit`.
    pub fn ctl_for(&self, args: &[&str], limit: Duration) -> CtlOutput {
        let mut cmd = Command::new(&self.mgsctl);
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_with_timeout(&mut cmd, limit)
    }

    /// `mgsctl --json ARGS…`: the response's `ok`, or the whole output.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, CtlOutput> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        match out.last_json().get("ok") {
            Some(v) if out.code == Some(0) => Ok(v.clone()),
            _ => Err(out),
        }
    }

    /// Wait until the control socket answers `version`.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.socket.exists() && self.ctl(&["version"]).code == Some(0) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("mgsd exited ({status}):\n{}", self.log_tail(40)));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "mgsd did not answer within {limit:?}:\n{}",
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kill it now.
    pub fn kill(mut self) {
        self.child.kill_now();
    }
}
