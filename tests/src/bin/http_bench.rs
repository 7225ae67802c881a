//! `mgsd-http-bench`: the HTTP API's figures next to the control socket's.
//!
//! ```sh
//! cargo run --release -p mgsd-tests --bin mgsd-http-bench   # --quick: one round
//! ```
//!
//! The daemon runs as a child process (this binary with `--daemon
//! CONFIG`, which is `mgsd::run`), the simulated SPs in this process.
//! Figures, in order:
//!
//! 1. a 32 MiB host-flash update of an instant SP posted over HTTP, from
//!    the POST to the verified end, with the daemon's CPU-seconds and peak
//!    RSS, next to the same update through the control socket;
//! 2. the upload itself: the POST's time to its 204 (the body streamed
//!    to the spool, the SP's prepare acked) and the rate;
//! 3. 100 update POSTs at once to 100 instant SPs: all accepted, and the
//!    POSTs' latency;
//! 4. `update-status` over HTTP at 500 requests/s while 36 updates run:
//!    p50, p99 and the worst.

use mgsd::api::{self, Command};
use mgsd_tests::child::{self, ok, Daemon, Rack};
use mgsd_tests::host_image;
use serde_json::Value;
use sp_sim::{RackConfig, SimSp, Timings};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const HBF: &str = "host-boot-flash";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if child::daemon_main(&args) {
        return;
    }
    let rounds = if args.iter().any(|a| a == "--quick") {
        1
    } else {
        3
    };
    let dir = tempfile_dir();
    one_update(&dir, rounds);
    hundred_posts(&dir);
    status_under_load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mgsd-http-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

fn rack(sleds: usize, timings: Timings) -> Rack {
    let mut config = RackConfig::standard(sleds, 0, 0);
    config.timings = timings;
    Rack::start(config)
}

/// The daemon for `sps`, its HTTP API on loopback (trusted), the SPs
/// placed as `sled/0..`.
fn start_daemon(dir: &Path, name: &str, sps: &[SimSp], sp_defaults: &str) -> (Daemon, SocketAddr) {
    let socket = dir.join(format!("{name}.sock"));
    let state = dir.join(format!("state-{name}"));
    let sps_at: Vec<_> = sps.iter().map(|s| (s.name.clone(), s.addr)).collect();
    let mut text = child::config(&socket, &state, sp_defaults, &sps_at);
    // Place each SP: `name = "sled-N"` gets `type`/`slot`.
    for (i, sp) in sps.iter().enumerate() {
        let line = format!("name = \"{}\"\n", sp.name);
        text = text.replacen(&line, &format!("{line}type = \"sled\"\nslot = {i}\n"), 1);
    }
    text = text.replacen(
        "[sp_defaults]",
        "[http]\n[[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n[sp_defaults]",
        1,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    let daemon = Daemon::start(&path, socket, sps.len());
    let health = ok(daemon.client().request(&Command::Health(api::NoArgs {}))).expect("health");
    let addr = health["http_listeners"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the HTTP API listens");
    (daemon, addr)
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post_update(agent: &ureq::Agent, addr: SocketAddr, slot: usize, id: uuid::Uuid, image: &[u8]) {
    let url =
        format!("http://{addr}/sp/sled/{slot}/component/{HBF}/update?firmware_slot=1&id={id}");
    let r = agent
        .post(&url)
        .header("content-type", "application/octet-stream")
        .send(image)
        .expect("POST update");
    assert_eq!(r.status(), 204, "POST update to sled {slot}");
}

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    let mut r = agent.get(url).call().expect("GET");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or(Value::Null)
}

/// Poll mgsd's record of `id` until it ends; panics unless complete.
fn until_complete(agent: &ureq::Agent, addr: SocketAddr, id: uuid::Uuid) {
    let url = format!("http://{addr}/mgsd/v1/updates/{id}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = get_json(agent, &url);
        match r["phase"].as_str() {
            Some("complete") => {
                assert_eq!(r["hash_verified"], true, "{r}");
                return;
            }
            Some("failed" | "aborted") => panic!("update {id}: {r}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "update {id} did not end: {r}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn one_update(dir: &Path, rounds: usize) {
    println!("1, 2. a 32 MiB host-flash update of an instant SP (slot capacity 32 MiB)");
    let r = rack(1, Timings::instant());
    let image = host_image(32 * MIB, 9);
    let image_path = dir.join("hbf-32m.img");
    std::fs::write(&image_path, &image).expect("write image");
    let agent = new_agent();
    for round in 0..rounds {
        let (d, addr) = start_daemon(
            dir,
            &format!("one-{round}"),
            &r.sps,
            "discovery_interval_ms = 100\n[sp_defaults.delivery]\nhost_flash_capacity_mib = 32",
        );
        let (cpu0, rss0) = (d.cpu(), d.rss_mib());
        let id = uuid::Uuid::new_v4();
        let t0 = Instant::now();
        post_update(&agent, addr, 0, id, &image);
        let accepted = t0.elapsed();
        until_complete(&agent, addr, id);
        let done = t0.elapsed();
        let (cpu, peak) = (d.cpu() - cpu0, d.peak_rss_mib());
        drop(d);
        let (d, _) = start_daemon(
            dir,
            &format!("sock-{round}"),
            &r.sps,
            "discovery_interval_ms = 100\n[sp_defaults.delivery]\nhost_flash_capacity_mib = 32",
        );
        let cpu1 = d.cpu();
        let socket = child::update(&d, "sled-0", &image_path).2;
        let (socket_cpu, socket_peak) = (d.cpu() - cpu1, d.peak_rss_mib());
        println!(
            "  round {round}: HTTP POST to verified end {:.2} s, {:.2} CPU-s, peak RSS {:.1} MiB \
             (idle {:.1}); POST answered in {:.0} ms ({:.0} MiB/s to the spool and the prepare) \
             | socket {:.2} s, {:.2} CPU-s, peak RSS {:.1} MiB",
            done.as_secs_f64(),
            cpu.as_secs_f64(),
            peak,
            rss0,
            accepted.as_secs_f64() * 1000.0,
            32.0 / accepted.as_secs_f64(),
            socket.as_secs_f64(),
            socket_cpu.as_secs_f64(),
            socket_peak,
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn hundred_posts(dir: &Path) {
    println!("3. 100 update POSTs at once to 100 instant SPs (1 MiB images, 64 places)");
    let r = rack(
        100,
        Timings {
            host_flash_mib: 4,
            ..Timings::instant()
        },
    );
    let (d, addr) = start_daemon(
        dir,
        "hundred",
        &r.sps,
        "discovery_interval_ms = 100\n[sp_defaults.delivery]\nhost_flash_capacity_mib = 4",
    );
    let image = host_image(MIB, 3);
    let t0 = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let posts: Vec<_> = (0..100)
            .map(|slot| {
                let image = &image;
                s.spawn(move || {
                    let t = Instant::now();
                    post_update(&new_agent(), addr, slot, uuid::Uuid::new_v4(), image);
                    t.elapsed()
                })
            })
            .collect();
        posts.into_iter().map(|p| p.join().expect("POST")).collect()
    });
    let wall = t0.elapsed();
    latencies.sort();
    println!(
        "  all 100 accepted in {:.2} s; POST latency p50 {:.0} ms, p99 {:.0} ms; daemon peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        d.peak_rss_mib()
    );
}

fn status_under_load(dir: &Path) {
    println!("4. update-status over HTTP at 500 requests/s while 36 updates run");
    // 8 MiB at 2 MiB/s: each update runs ~4 s.
    let r = rack(
        36,
        Timings {
            host_flash_mib: 8,
            write_kib_per_s: 2048,
            ..Timings::instant()
        },
    );
    let (d, addr) = start_daemon(
        dir,
        "status",
        &r.sps,
        "discovery_interval_ms = 100\n[sp_defaults.delivery]\nhost_flash_capacity_mib = 8",
    );
    let image = host_image(8 * MIB, 5);
    let agent = new_agent();
    let ids: Vec<uuid::Uuid> = (0..36)
        .map(|slot| {
            let id = uuid::Uuid::new_v4();
            post_update(&agent, addr, slot, id, &image);
            id
        })
        .collect();
    // 8 clients, each 62.5 requests/s on its own schedule (open loop).
    let t0 = Instant::now();
    let run = Duration::from_secs(3);
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..8)
            .map(|c| {
                s.spawn(move || {
                    let client = new_agent();
                    let every = Duration::from_micros(16_000);
                    let mut next = Instant::now() + every * c / 8;
                    let mut out = Vec::new();
                    let mut slot = c as usize;
                    while t0.elapsed() < run {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let url = format!(
                            "http://{addr}/sp/sled/{}/component/{HBF}/update-status",
                            slot % 36
                        );
                        let t = Instant::now();
                        let v = get_json(&client, &url);
                        out.push(t.elapsed());
                        assert!(v["state"].is_string(), "{v}");
                        slot += 8;
                        next += every;
                    }
                    out
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    let elapsed = t0.elapsed();
    latencies.sort();
    let running = ids
        .iter()
        .filter(|id| {
            let r = get_json(&agent, &format!("http://{addr}/mgsd/v1/updates/{id}"));
            !matches!(r["phase"].as_str(), Some("complete" | "failed" | "aborted"))
        })
        .count();
    println!(
        "  {} requests in {:.1} s ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms, worst {:.1} ms; \
         {running} of 36 updates still running at the end",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().map_or(0.0, |l| l.as_secs_f64() * 1000.0),
    );
    for id in ids {
        until_complete(&agent, addr, id);
    }
    drop(d);
}
