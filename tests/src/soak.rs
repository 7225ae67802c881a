//! The soak: many host-flash updates across a rack of simulated SPs over a
//! lossy network (loss, duplication, reordering both ways, see
//! [`crate::lossy`]), with the daemon SIGKILLed at seeded moments and
//! started again on the same state. Clients behave as the control plane
//! does: each update's id is chosen before it starts, a start that got no
//! answer is sent again with the same id and image, and status is polled
//! until the update ends.
//!
//! It holds when every update ended `complete` with the SP's slot hash
//! that of its image, no SP still holds an update, and the daemon's
//! descriptors and memory are back where they started.

use crate::child::{self, Daemon, Rack};
use crate::host_image;
use crate::lossy::{Impairment, Relays};
use gateway_messages::{SpComponent, UpdateStatus};
use mgsd::api::views::{SpRow, UpdateRecord, UpdateStatusView};
use mgsd::api::{self, Command, ErrorCode, Response};
use mgsd::client::Client;
use sp_sim::faults::Rng;
use sp_sim::{RackConfig, SimSp, Timings};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const HBF: &str = "host-boot-flash";
const FLASH_MIB: u32 = 2;
/// One update may take this long, restarts included, before the soak
/// calls it stuck.
const UPDATE_LIMIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);
/// The end daemon's resident memory may exceed the fresh one's by this
/// much (MiB): allocator slack, not growth per update.
const RSS_SLACK_MIB: f64 = 32.0;

/// The soak's size.
#[derive(Debug, Clone)]
pub struct Soak {
    pub updates: usize,
    pub sps: usize,
    /// SIGKILLs of the daemon, each followed by a restart.
    pub kills: usize,
    /// Each way.
    pub network: Impairment,
    pub image_kib: usize,
    pub seed: u64,
}

impl Soak {
    /// The size: 100 updates on 8 SPs, 5% loss, 2% duplication
    /// and 5% reordering each way, 3 kills.
    pub fn full() -> Self {
        Self {
            updates: 100,
            sps: 8,
            kills: 3,
            network: Impairment {
                loss: 0.05,
                duplicate: 0.02,
                reorder: 0.05,
                reorder_delay: Duration::from_millis(5),
            },
            image_kib: 512,
            seed: 1,
        }
    }

    /// A few seconds' worth for CI: the same faults, fewer and smaller
    /// updates on fewer SPs.
    pub fn short() -> Self {
        Self {
            updates: 24,
            sps: 4,
            kills: 2,
            image_kib: 128,
            ..Self::full()
        }
    }
}

/// What a soak measured.
#[derive(Debug, Default)]
pub struct Report {
    pub complete: usize,
    pub wall: Duration,
    /// Per kill: updates done by then, and the phases of those in flight.
    pub kills: Vec<(usize, Vec<String>)>,
    pub resumed: u64,
    pub rewinds: u64,
    pub retransmitted: u64,
    pub timeouts: u64,
    /// Starts sent again after getting no answer (the daemon was down).
    pub start_retries: usize,
    pub datagrams: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Descriptors and resident memory (MiB) of the fresh daemon, and of
    /// the last one at the end.
    pub fds: (usize, usize),
    pub rss_mib: (f64, f64),
    pub peak_rss_mib: f64,
    /// Slowest update, restarts included.
    pub slowest: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} updates complete in {:.1} s (slowest {:.1} s), every slot hash matched, no SP holds an update",
            self.complete,
            self.wall.as_secs_f64(),
            self.slowest.as_secs_f64()
        )?;
        for (i, (done, phases)) in self.kills.iter().enumerate() {
            writeln!(
                f,
                "  kill {}: after {done} done, in flight: {}",
                i + 1,
                phases.join(" ")
            )?;
        }
        writeln!(
            f,
            "  resumed {}, rewinds {}, chunks resent {}, chunk timeouts {}, starts sent again {}",
            self.resumed, self.rewinds, self.retransmitted, self.timeouts, self.start_retries
        )?;
        writeln!(
            f,
            "  network: {} datagrams passed on, {} dropped, {} duplicated, {} reordered",
            self.datagrams, self.dropped, self.duplicated, self.reordered
        )?;
        write!(
            f,
            "  daemon: fds {} fresh -> {} at the end; RSS {:.1} MiB fresh -> {:.1} MiB at the end (peak {:.1})",
            self.fds.0, self.fds.1, self.rss_mib.0, self.rss_mib.1, self.peak_rss_mib
        )
    }
}

/// One update of the soak.
struct Job {
    sp: SimSp,
    slot: u16,
    id: uuid::Uuid,
    image: PathBuf,
    expected: [u8; 32],
}

/// Run `soak` in `dir` with `exe --daemon CONFIG` as the daemon.
pub fn run(soak: &Soak, exe: &Path, dir: &Path) -> Result<Report, String> {
    let mut config = RackConfig::standard(soak.sps, 0, 0);
    config.timings = Timings {
        host_flash_mib: FLASH_MIB,
        // A 160 ms erase and 8 MiB/s writes: kills land in every phase.
        sector_erase_ms: 5.0,
        write_kib_per_s: 8192,
        hash_ms: 20,
        ..Timings::instant()
    };
    let rack = Rack::start(config);
    let addrs: Vec<_> = rack.sps.iter().map(|s| s.addr).collect();
    let relays = Relays::start(&addrs, soak.network, soak.seed);
    let sps_at: Vec<_> = rack
        .sps
        .iter()
        .map(|s| s.name.clone())
        .zip(relays.addrs.iter().copied())
        .collect();
    let socket = dir.join("mgsd.sock");
    let sp_defaults = format!(
        "discovery_interval_ms = 100\n[sp_defaults.delivery]\nstatus_poll_interval_ms = 50\n\
         host_flash_capacity_mib = {FLASH_MIB}"
    );
    let text = child::config(&socket, &dir.join("state"), &sp_defaults, &sps_at);
    let config = dir.join("mgsd.toml");
    std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;

    let mut rng = Rng::new(soak.seed);
    let jobs = jobs(soak, &rack.sps, dir, &mut rng)?;
    let mut daemon = Daemon::start_exe(exe, &config, socket.clone(), soak.sps);
    let fresh = (daemon.fds(), daemon.rss_mib());
    let t0 = Instant::now();
    let done = AtomicUsize::new(0);
    let mut report = Report::default();
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = jobs
            .iter()
            .map(|queue| {
                let (socket, done) = (&socket, &done);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for job in queue {
                        let r = run_job(socket, job);
                        done.fetch_add(1, Ordering::SeqCst);
                        let failed = r.is_err();
                        out.push(r);
                        if failed {
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        // The kills, each once a seeded share of the updates is done and
        // a seeded moment after that.
        let share = soak.updates / (soak.kills + 1);
        for k in 0..soak.kills {
            let at = share * (k + 1) - rng.below(share as u64 / 2 + 1) as usize;
            let limit = Instant::now() + UPDATE_LIMIT;
            while done.load(Ordering::SeqCst) < at && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.below(250)));
            let phases = in_flight(&socket);
            report.kills.push((done.load(Ordering::SeqCst), phases));
            daemon.kill9_and_restart();
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a soak worker"))
            .collect::<Vec<_>>()
    });
    report.wall = t0.elapsed();
    let log = || tail(&config.with_extension("log"));
    let mut records = Vec::new();
    for r in results {
        records.push(r.map_err(|e| format!("{e}\ndaemon log:\n{}", log()))?);
    }
    if records.len() != soak.updates {
        return Err(format!("{} of {} updates ran", records.len(), soak.updates));
    }
    for sp in &rack.sps {
        let status = sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH);
        if let Ok(UpdateStatus::Preparing(_) | UpdateStatus::InProgress(_)) = status {
            return Err(format!("{} still holds an update: {status:?}", sp.name));
        }
    }
    let rows: Vec<SpRow> = request(&socket, &Command::List(api::NoArgs {}))?;
    if let Some(row) = rows
        .iter()
        .find(|r| !r.unknown_updates.is_empty() || r.active_update.is_some())
    {
        return Err(format!("{} is not idle at the end: {row:?}", row.name));
    }
    // Descriptors close as the last connections wind down.
    let limit = Instant::now() + Duration::from_secs(10);
    while daemon.fds() > fresh.0 && Instant::now() < limit {
        std::thread::sleep(POLL);
    }
    report.fds = (fresh.0, daemon.fds());
    report.rss_mib = (fresh.1, daemon.rss_mib());
    report.peak_rss_mib = daemon.peak_rss_mib();
    for Done {
        record,
        took,
        start_retries,
    } in &records
    {
        report.start_retries += start_retries;
        report.resumed += u64::from(record.resumed);
        report.rewinds += record.rewinds;
        report.retransmitted += record.chunks_retransmitted;
        report.timeouts += record.timeouts;
        report.slowest = report.slowest.max(*took);
    }
    report.complete = records.len();
    let stats = &relays.stats;
    report.datagrams = stats.forwarded.load(Ordering::Relaxed);
    report.dropped = stats.dropped.load(Ordering::Relaxed);
    report.duplicated = stats.duplicated.load(Ordering::Relaxed);
    report.reordered = stats.reordered.load(Ordering::Relaxed);
    if report.fds.1 > report.fds.0 {
        return Err(format!("descriptors not back to baseline:\n{report}"));
    }
    if report.rss_mib.1 > report.rss_mib.0 + RSS_SLACK_MIB {
        return Err(format!("memory not back to baseline:\n{report}"));
    }
    Ok(report)
}

/// Per SP, its updates in order: round robin over the SPs, alternating
/// slots, each image its own.
fn jobs(soak: &Soak, sps: &[SimSp], dir: &Path, rng: &mut Rng) -> Result<Vec<Vec<Job>>, String> {
    let mut jobs: Vec<Vec<Job>> = sps.iter().map(|_| Vec::new()).collect();
    for k in 0..soak.updates {
        let queue = &mut jobs[k % sps.len()];
        let bytes = host_image(soak.image_kib * 1024, k as u32);
        let image = dir.join(format!("image-{k}.bin"));
        std::fs::write(&image, &bytes).map_err(|e| format!("write {}: {e}", image.display()))?;
        queue.push(Job {
            sp: sps[k % sps.len()].clone(),
            slot: (queue.len() % 2) as u16,
            id: uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()),
            image,
            expected: sp_sim::expected_slot_hash(&bytes, FLASH_MIB << 20),
        });
    }
    Ok(jobs)
}

/// Whether a failed request is worth sending again: the daemon was down
/// or restarting, or the SP out of reach for a moment.
fn transient(e: &Failure) -> bool {
    match e {
        Failure::Io(_) => true,
        Failure::Refused(code, _) => matches!(
            code,
            ErrorCode::Busy | ErrorCode::ShuttingDown | ErrorCode::SpUnreachable
        ),
        Failure::Shape(_) => false,
    }
}

#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    Refused(ErrorCode, String),
    Shape(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Refused(code, message) => write!(f, "{code:?}: {message}"),
            Failure::Shape(why) => write!(f, "{why}"),
        }
    }
}

fn answer<T: serde::de::DeserializeOwned>(r: std::io::Result<Response>) -> Result<T, Failure> {
    let r = r.map_err(Failure::Io)?;
    if let Some(e) = r.error {
        return Err(Failure::Refused(e.code, e.message));
    }
    let ok =
        r.ok.ok_or_else(|| Failure::Shape("an empty answer".into()))?;
    serde_json::from_value(ok).map_err(|e| Failure::Shape(e.to_string()))
}

fn request<T: serde::de::DeserializeOwned>(socket: &Path, command: &Command) -> Result<T, String> {
    let asked = Client::connect(socket).and_then(|mut c| c.request(command));
    answer(asked).map_err(|e| e.to_string())
}

/// An update that ended complete.
struct Done {
    record: UpdateRecord,
    /// Restarts included.
    took: Duration,
    start_retries: usize,
}

/// Start `job` (again, with the same id and image, until it is
/// answered) and follow it to its end.
fn run_job(socket: &Path, job: &Job) -> Result<Done, String> {
    let t0 = Instant::now();
    let sp = &job.sp.name;
    let what = format!("update {} of {sp} slot {}", job.id, job.slot);
    let start = Command::UpdateStart(api::UpdateStartArgs {
        sp: sp.clone(),
        component: HBF.into(),
        slot: job.slot,
        id: Some(job.id),
        archive: false,
        force_board: false,
        take_over: false,
        activate: false,
        no_watchdog: false,
        watchdog_ms: None,
    });
    let mut tries = 0;
    loop {
        let image = std::fs::File::open(&job.image).map_err(|e| format!("{what}: {e}"))?;
        let sent = Client::connect(socket)
            .and_then(|mut c| c.request_with(&start, Some(std::os::fd::AsFd::as_fd(&image))));
        match answer::<UpdateRecord>(sent) {
            Ok(_) => break,
            Err(e) if transient(&e) && t0.elapsed() < UPDATE_LIMIT => {
                tries += 1;
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(format!("{what}: start: {e}")),
        }
    }
    let status = Command::UpdateStatus(api::ComponentArgs {
        sp: sp.clone(),
        component: HBF.into(),
    });
    loop {
        let asked = Client::connect(socket).and_then(|mut c| c.request(&status));
        match answer::<UpdateStatusView>(asked) {
            Ok(UpdateStatusView {
                delivery: Some(record),
                ..
            }) if record.id == job.id && record.phase.is_terminal() => {
                if record.phase != actors::Phase::Complete {
                    return Err(format!(
                        "{what} ended {:?}: {:?}",
                        record.phase, record.failure
                    ));
                }
                let hash = job.sp.slot_hash(job.slot);
                if hash != Some(job.expected) {
                    return Err(format!("{what}: the SP's slot hash is {hash:02x?}"));
                }
                let took = t0.elapsed();
                return Ok(Done {
                    record,
                    took,
                    start_retries: tries,
                });
            }
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(format!("{what}: status: {e}")),
        }
        if t0.elapsed() > UPDATE_LIMIT {
            return Err(format!("{what} did not end within {UPDATE_LIMIT:?}"));
        }
        std::thread::sleep(POLL);
    }
}

/// The phases of the updates in flight, as the daemon sees them.
fn in_flight(socket: &Path) -> Vec<String> {
    let rows: Vec<SpRow> = request(socket, &Command::List(api::NoArgs {})).unwrap_or_default();
    rows.into_iter()
        .filter_map(|r| r.active_update.map(|u| u.phase.as_str().to_string()))
        .collect()
}

/// The last lines of the daemon's log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
