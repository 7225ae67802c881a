//! `mgsd-bench`: how fast and how lean the daemon delivers updates, next
//! to what the wire allows.
//!
//! ```sh
//! cargo run --release -p mgsd-tests --bin mgsd-bench
//! ```
//!
//! `--quick` runs one round of each figure instead of three, `--only=2,5`
//! some sections, `--sps=N` sizes the fleets of sections 4 and 5 (36).
//!
//! The daemon runs as a child process (this binary with `--daemon CONFIG`,
//! which is `mgsd::run`, exactly what `mgsd --config CONFIG` runs), so its
//! CPU time and peak memory are its own; the simulated SPs run in this
//! process on their own thread, and the bench drives the daemon through
//! its control socket as `mgsctl` would. Figures, in order:
//!
//! 1. the raw UDP request/ack rate on loopback for windows 1–4: a plain
//!    socket pair and an echo, no daemon code: the ceiling;
//! 2. one 32 MiB host-flash update of an instant SP per window: time from
//!    the start request to the verified end, delivery rate, its share of
//!    the raw rate and of what a plain blocking client streams to the
//!    same simulated SP, rewinds, timeouts, daemon CPU-seconds per GiB;
//! 3. the same under 5% request loss and 5% reply loss, next to lossless;
//! 4. 36 instant SPs updated at once: aggregate rate, status latency;
//! 5. 36 SPs with sp-sim's realistic timings (erase, 1 MiB/s writes):
//!    delivery as a share of the sum of the SPs' own limits, status
//!    latency meanwhile, the daemon's peak RSS;
//! 6. a rollout of the 36 realistic SPs (8 MiB host-flash image, canary 1,
//!    waves 25% and 100%, 12 at a time): total time next to the slowest
//!    single target times the waves (and times the rounds the cap makes),
//!    the daemon's CPU and peak RSS.

use gateway_messages::SpComponent;
use mgsd::api::{self, Command};
use mgsd::client::Client;
use mgsd_tests::child::{self, ok, threads_cpu, update, Daemon, Rack};
use mgsd_tests::host_image;
use mgsd_tests::raw_udp::request_ack_rate;
use serde_json::Value;
use sp_sim::client::ChunkStreamer;
use sp_sim::{FaultConfig, RackConfig, SimSp, Timings};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const HBF: &str = "host-boot-flash";
/// A full `UpdateChunk` datagram and the SP's `UpdateChunkAck`.
const REQUEST_BYTES: usize = 1024;
const ACK_BYTES: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if child::daemon_main(&args) {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<u32> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--only="))
        .flat_map(|s| s.split(',').filter_map(|n| n.parse().ok()))
        .collect();
    let fleet: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--sps=")?.parse().ok())
        .unwrap_or(36);
    bench(quick, fleet, |section| {
        only.is_empty() || only.contains(&section)
    });
}

fn rack(sleds: usize, timings: Timings) -> Rack {
    let mut config = RackConfig::standard(sleds, 0, 0);
    config.timings = timings;
    Rack::start(config)
}

/// The daemon pointed at `sps`, `window` datagrams in flight to each.
fn start_daemon(dir: &Path, sps: &[SimSp], window: usize) -> Daemon {
    let socket = dir.join(format!("mgsd-{window}-{}.sock", sps.len()));
    let state = dir.join(format!("state-{window}-{}", sps.len()));
    let sp_defaults = format!("window = {window}\ndiscovery_interval_ms = 100");
    let sps_at: Vec<_> = sps.iter().map(|s| (s.name.clone(), s.addr)).collect();
    let path = dir.join("mgsd.toml");
    let text = child::config(&socket, &state, &sp_defaults, &sps_at);
    std::fs::write(&path, text).expect("write config");
    Daemon::start(&path, socket, sps.len())
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn delivery(record: &Value) -> Duration {
    Duration::from_millis(record["delivered_in_ms"].as_u64().unwrap_or(0).max(1))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Ask `update_status` of the SPs in turn until `stop`: the latencies.
fn status_load(
    socket: PathBuf,
    sps: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&socket).expect("connect");
        let mut latencies = Vec::new();
        for sp in sps.iter().cycle() {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let t = Instant::now();
            ok(c.request(&Command::UpdateStatus(api::ComponentArgs {
                sp: sp.clone(),
                component: HBF.into(),
            })))
            .expect("status");
            latencies.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.sort();
        latencies
    })
}

/// Updates on every SP at once: per SP the final record and when (since
/// its start) it was delivered and done; status latencies meanwhile.
type Fleet = (Vec<(Value, Duration, Duration)>, Vec<Duration>, Duration);

fn all_at_once(d: &Daemon, sps: &[SimSp], image: &Path) -> Fleet {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let names: Vec<String> = sps.iter().map(|s| s.name.clone()).collect();
    let load = status_load(d.socket.clone(), names.clone(), stop.clone());
    let t0 = Instant::now();
    let times = std::thread::scope(|s| {
        let runs: Vec<_> = names
            .iter()
            .map(|sp| s.spawn(move || update(d, sp, image)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("update"))
            .collect::<Vec<_>>()
    });
    let wall = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (times, load.join().expect("status load"), wall)
}

fn bench(quick: bool, fleet_size: usize, run: impl Fn(u32) -> bool) {
    let dir = std::env::temp_dir().join(format!("mgsd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let image_len = 32 * MIB;
    let image = dir.join("host.img");
    let image_bytes = host_image(image_len, 1);
    std::fs::write(&image, &image_bytes).expect("write image");
    let rounds = if quick { 1 } else { 3 };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "mgsd-bench: {} cores ({cpu_model}); daemon in a child process, sp-sim in this one",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let one = rack(1, Timings::instant());
    let mut lossless = Duration::ZERO;
    if run(1) || run(2) {
        println!("\n1. Raw UDP request/ack on loopback ({REQUEST_BYTES}-byte request, {ACK_BYTES}-byte reply, plain sockets):");
        println!("{:>7} {:>10} {:>8}", "window", "req/s", "MiB/s");
        let mut raw = Vec::new();
        for window in 1..=4 {
            let r = (0..rounds)
                .map(|_| request_ack_rate(window, REQUEST_BYTES, ACK_BYTES, 100_000))
                .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
                .expect("a round");
            println!(
                "{window:>7} {:>10.0} {:>8.1}",
                r.per_second, r.mib_per_second
            );
            raw.push(r.mib_per_second);
        }

        // The best a client does against this SP: a plain blocking socket
        // streaming chunks, no actors, no control socket.
        let mut plain = Vec::new();
        for window in 1..=3 {
            let best = (0..rounds)
                .map(|_| {
                    let id = gateway_messages::UpdateId::from(uuid::Uuid::new_v4());
                    let mut c = ChunkStreamer::new(one.sps[0].addr).expect("plain client");
                    let run = c
                        .update(
                            SpComponent::HOST_CPU_BOOT_FLASH,
                            1,
                            id,
                            &image_bytes,
                            window,
                        )
                        .expect("plain client update");
                    mib_per_s(image_len, run.elapsed)
                })
                .fold(0.0, f64::max);
            plain.push(best);
        }
        println!("\n2. One SP, instant (no erase, unlimited writes): 32 MiB host-boot-flash, best of {rounds}:");
        println!(
            "   (plain: a blocking socket streaming chunks to the same simulated SP, no daemon)"
        );
        println!(
            "{:>7} {:>8} {:>7} {:>9} {:>12} {:>10} {:>8} {:>9} {:>10} {:>9}",
            "window",
            "total s",
            "MiB/s",
            "% of raw",
            "plain MiB/s",
            "% of plain",
            "rewinds",
            "timeouts",
            "CPU-s/GiB",
            "peak RSS"
        );
        for window in 1..=4 {
            let d = start_daemon(&dir, &one.sps, window);
            let cpu0 = d.cpu();
            let mut best: Option<(Value, Duration)> = None;
            for _ in 0..rounds {
                let (record, _, done) = update(&d, "sled-0", &image);
                if best.as_ref().is_none_or(|(_, b)| done < *b) {
                    best = Some((record, done));
                }
            }
            let cpu = (d.cpu() - cpu0).as_secs_f64();
            let gib = (rounds * image_len) as f64 / (1u64 << 30) as f64;
            let (record, done) = best.expect("a round");
            let rate = mib_per_s(image_len, delivery(&record));
            if window == 3 {
                lossless = done;
            }
            let (plain, of_plain) = match plain.get(window - 1) {
                Some(p) => (format!("{p:.1}"), format!("{:.0}%", 100.0 * rate / p)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{window:>7} {:>8.2} {rate:>7.1} {:>8.0}% {plain:>12} {of_plain:>10} {:>8} {:>9} {:>10.1} {:>5.1} MiB",
                done.as_secs_f64(),
                100.0 * rate / raw[window - 1],
                record["rewinds"],
                record["timeouts"],
                cpu / gib,
                d.peak_rss_mib()
            );
        }
    }
    if run(3) {
        println!("\n3. Loss (window 3, 32 MiB, instant SP; time from start to verified end, median of {rounds}):");
        let d = start_daemon(&dir, &one.sps, 3);
        if lossless.is_zero() {
            lossless = (0..rounds)
                .map(|_| update(&d, "sled-0", &image).2)
                .min()
                .expect("a round");
        }
        for (what, faults) in [
            (
                "5% request loss",
                FaultConfig {
                    drop_request: 0.05,
                    ..FaultConfig::default()
                },
            ),
            (
                "5% reply loss",
                FaultConfig {
                    drop_response: 0.05,
                    ..FaultConfig::default()
                },
            ),
        ] {
            one.sps[0].set_faults(faults);
            let mut runs: Vec<_> = (0..rounds).map(|_| update(&d, "sled-0", &image)).collect();
            runs.sort_by_key(|r| r.2);
            let (record, _, done) = &runs[runs.len() / 2];
            let list = ok(d.client().request(&Command::List(api::NoArgs {}))).expect("list");
            println!(
                "   {what:<16} {:>6.2} s = {:.2} x lossless ({:.2} s); rewinds {}, chunks resent {}, timeouts {}; srtt {} µs, RTO {} µs",
                done.as_secs_f64(),
                done.as_secs_f64() / lossless.as_secs_f64(),
                lossless.as_secs_f64(),
                record["rewinds"],
                record["chunks_retransmitted"],
                record["timeouts"],
                list[0]["srtt_us"],
                list[0]["rto_us"]
            );
        }
        drop(d);
    }
    drop(one);

    if run(4) {
        let fleet = rack(fleet_size, Timings::instant());
        let d = start_daemon(&dir, &fleet.sps, 3);
        let (times, status, wall) = all_at_once(&d, &fleet.sps, &image);
        let slowest = times.iter().map(|t| t.2).max().unwrap_or(wall);
        println!(
        "\n4. {fleet_size} instant SPs at once, 32 MiB each: {:.2} s, {:.1} MiB/s aggregate; status p50 {:.2} ms, p99 {:.2} ms (n={}); daemon peak RSS {:.1} MiB",
        slowest.as_secs_f64(),
        mib_per_s(fleet_size * image_len, slowest),
        percentile(&status, 0.5).as_secs_f64() * 1e3,
        percentile(&status, 0.99).as_secs_f64() * 1e3,
        status.len(),
        d.peak_rss_mib()
    );
        drop(d);
        drop(fleet);
    }

    if run(5) {
        let timings = Timings::default();
        let fleet = rack(fleet_size, timings.clone());
        let d = start_daemon(&dir, &fleet.sps, 3);
        let (cpu0, sim0) = (d.cpu(), threads_cpu("self", Some("sp-sim")));
        let (times, status, wall) = all_at_once(&d, &fleet.sps, &image);
        let (cpu, sim) = (d.cpu() - cpu0, threads_cpu("self", Some("sp-sim")) - sim0);
        // What an SP needs on its own: erase every sector but the first, then
        // write at its rate.
        let sectors = timings.host_flash_mib as f64 * 16.0 - 1.0;
        let limit = sectors * timings.sector_erase_ms / 1e3
            + image_len as f64 / (timings.write_kib_per_s as f64 * 1024.0);
        let delivered: f64 = times.iter().map(|t| t.1.as_secs_f64()).sum();
        let total = |k: &str| {
            times
                .iter()
                .map(|t| t.0[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        println!(
        "\n5. {fleet_size} SPs at sp-sim's realistic timings ({} ms/sector erase, {} KiB/s writes), 32 MiB each:",
        timings.sector_erase_ms, timings.write_kib_per_s
    );
        println!(
        "   each SP's own limit {limit:.2} s (erase + writes); delivered in {:.2} s on average: {:.1}% of the SPs' limits",
        delivered / times.len() as f64,
        100.0 * limit * times.len() as f64 / delivered
    );
        println!(
            "   of which the chunks took {:.2} s on average (writes alone: {:.2} s)",
            total("delivered_in_ms") as f64 / 1e3 / times.len() as f64,
            image_len as f64 / (timings.write_kib_per_s as f64 * 1024.0)
        );
        println!(
            "   in all: {} rewinds, {} chunks resent, {} chunk timeouts; busy: daemon {:.0}%, simulator thread {:.0}%",
            total("rewinds"),
            total("chunks_retransmitted"),
            total("timeouts"),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            100.0 * sim.as_secs_f64() / wall.as_secs_f64()
        );
        println!(
        "   all verified after {:.2} s; status p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={}); daemon peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        percentile(&status, 0.5).as_secs_f64() * 1e3,
        percentile(&status, 0.99).as_secs_f64() * 1e3,
        status.last().map_or(0.0, |m| m.as_secs_f64() * 1e3),
        status.len(),
        d.peak_rss_mib()
    );
        drop(d);
        drop(fleet);
    }

    if run(6) {
        rollout_figure(&dir, fleet_size);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Section 6: a rollout of `fleet_size` realistic SPs.
fn rollout_figure(dir: &Path, fleet_size: usize) {
    use api::WaveSize;
    use api::{RolloutSpec, TargetSpec};
    let timings = Timings::default();
    let fleet = rack(fleet_size, timings.clone());
    let d = start_daemon(dir, &fleet.sps, 3);
    let image_len = 8 * MIB;
    let path = dir.join("rollout.img");
    std::fs::write(&path, host_image(image_len, 6)).expect("write image");
    let file = std::fs::File::open(&path).expect("open image");
    let max_concurrent = 12;
    let plan = RolloutSpec {
        max_concurrent,
        canary: 1,
        waves: vec![WaveSize::Share(25), WaveSize::Share(100)],
        stop_after_failures: 1,
        pause_between_waves: Default::default(),
        after: Default::default(),
        allow_self: false,
        targets: vec![TargetSpec {
            sps: Vec::new(),
            kind: None,
            all: true,
            component: HBF.into(),
            slot: 1,
            image: 0,
            line: None,
        }],
    };
    let cpu0 = d.cpu();
    let t0 = Instant::now();
    let start = Command::RolloutStart(api::RolloutStartArgs { id: None, plan });
    let fds = [std::os::fd::AsFd::as_fd(&file)];
    let record = ok(d.client().request_with_fds(&start, &fds)).expect("rollout starts");
    let id: uuid::Uuid = record["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    let record = loop {
        std::thread::sleep(Duration::from_millis(250));
        let r = ok(d
            .client()
            .request(&Command::RolloutStatus(api::RolloutArgs { id })))
        .expect("status");
        if ["complete", "stopped", "aborted"].contains(&r["phase"].as_str().unwrap_or("")) {
            break r;
        }
    };
    let total = t0.elapsed();
    let cpu = d.cpu() - cpu0;
    assert_eq!(record["phase"], "complete", "{}", record["reason"]);
    let targets = record["targets"].as_array().cloned().unwrap_or_default();
    let slowest = targets
        .iter()
        .filter_map(|t| Some(t["finished_unix_ms"].as_u64()? - t["started_unix_ms"].as_u64()?))
        .max()
        .map_or(Duration::ZERO, Duration::from_millis);
    let waves = record["waves"].as_u64().unwrap_or(1) as u32;
    let mut sizes = vec![0u32; waves as usize];
    for t in &targets {
        sizes[t["wave"].as_u64().unwrap_or(0) as usize] += 1;
    }
    let rounds: u32 = sizes
        .iter()
        .map(|n| n.div_ceil(max_concurrent as u32))
        .sum();
    println!(
        "\n6. a rollout of {fleet_size} SPs at sp-sim's realistic timings, {} MiB host-flash image, canary 1, waves 25% and 100%, {max_concurrent} at a time:",
        image_len / MIB
    );
    println!(
        "   waves of {sizes:?}: {:.1} s in all; slowest single target {:.1} s; x {waves} waves = {:.1} s ({:.2}x), x {rounds} rounds of at most {max_concurrent} = {:.1} s ({:.2}x)",
        total.as_secs_f64(),
        slowest.as_secs_f64(),
        slowest.as_secs_f64() * f64::from(waves),
        total.as_secs_f64() / (slowest.as_secs_f64() * f64::from(waves)),
        slowest.as_secs_f64() * f64::from(rounds),
        total.as_secs_f64() / (slowest.as_secs_f64() * f64::from(rounds)),
    );
    println!(
        "   daemon CPU {:.2} s ({:.1}% of one core), peak RSS {:.1} MiB",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / total.as_secs_f64(),
        d.peak_rss_mib()
    );
}
