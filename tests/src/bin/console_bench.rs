//! `mgsd-console-bench`: serial console and host recovery figures.
//!
//! ```sh
//! cargo run --release -p mgsd-tests --bin mgsd-console-bench   # --quick: shorter runs
//! ```
//!
//! The daemon runs as a child process (this binary with `--daemon
//! CONFIG`), the simulated SPs in this process. Figures:
//!
//! 1. keystroke to echo through `console_attach` on the socket: a byte
//!    typed, the simulated host's echo read back; p50, p99, worst;
//! 2. a 64 MiB phase-2 image fetched by a recovering simulated host through
//!    its SP, uploaded over the socket: time and rate, clean and with 5%
//!    loss each way;
//! 3. the daemon's CPU while 32 consoles stream output (each host printing
//!    about 100 KB/s, each console read by a watching session).

use base64::Engine;
use mgsd::api::views::{ConsoleInputLine, ConsoleLine};
use mgsd::api::{self, Command, ConsoleAttachArgs};
use mgsd_tests::child::{self, Daemon, Rack};
use sp_sim::{FaultConfig, Phase2State, RackConfig, Timings};
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if child::daemon_main(&args) {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let dir = std::env::temp_dir().join(format!("mgsd-console-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    latency(&dir, if quick { 200 } else { 2000 });
    recovery(&dir, if quick { 16 } else { 64 });
    streaming(&dir, if quick { 3 } else { 10 });
    let _ = std::fs::remove_dir_all(&dir);
}

fn daemon(dir: &std::path::Path, rack: &Rack, name: &str) -> Daemon {
    let sps: Vec<(String, std::net::SocketAddr)> =
        rack.sps.iter().map(|s| (s.name.clone(), s.addr)).collect();
    let socket = dir.join(format!("{name}.sock"));
    let state = dir.join(format!("{name}-state"));
    let text = child::config(&socket, &state, "discovery_interval_ms = 50", &sps);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).expect("config");
    Daemon::start(&config, socket, sps.len())
}

fn rack(sleds: usize) -> Rack {
    let mut config = RackConfig::standard(sleds, 0, 0);
    config.timings = Timings::instant();
    Rack::start(config)
}

/// A console session on `sp` over the daemon's socket: its two halves.
fn attach(
    d: &Daemon,
    sp: &str,
    read_only: bool,
) -> (
    std::io::BufReader<std::os::unix::net::UnixStream>,
    std::os::unix::net::UnixStream,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = d.client();
        let r = c
            .request(&Command::ConsoleAttach(ConsoleAttachArgs {
                sp: sp.into(),
                component: "sp3-host-cpu".into(),
                read_only,
                no_scrollback: true,
            }))
            .expect("attach");
        if r.ok.as_ref().is_some_and(|v| v["attached"] == true) {
            return c.into_unix().expect("socket");
        }
        assert!(Instant::now() < deadline, "console not attached: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(dir: &std::path::Path, keystrokes: usize) {
    let rack = rack(1);
    let d = daemon(dir, &rack, "latency");
    let (mut reader, mut writer) = attach(&d, "sled-0", false);
    let mut times = Vec::with_capacity(keystrokes);
    let mut line = String::new();
    for i in 0..keystrokes {
        let key = b'a' + (i % 26) as u8;
        let input = ConsoleInputLine::Write(B64.encode([key]));
        let mut text = serde_json::to_vec(&input).unwrap();
        text.push(b'\n');
        let t = Instant::now();
        writer.write_all(&text).unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if let Ok(ConsoleLine::Output { data }) = serde_json::from_str(&line) {
                if B64.decode(data).unwrap().contains(&key) {
                    break;
                }
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "1. keystroke to echo ({keystrokes} keystrokes, socket): p50 {:.3} ms, p99 {:.3} ms, worst {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
}

fn recovery(dir: &std::path::Path, mib: usize) {
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let (image, hash) = sp_sim::build_phase2_image(&data);
    let path = dir.join("phase2.img");
    std::fs::write(&path, &image).unwrap();
    for (what, faults) in [
        ("clean", FaultConfig::default()),
        (
            "5% loss each way",
            FaultConfig {
                drop_request: 0.05,
                drop_response: 0.05,
                ..FaultConfig::default()
            },
        ),
    ] {
        let rack = rack(1);
        let d = daemon(dir, &rack, "recovery");
        let file = std::fs::File::open(&path).unwrap();
        let r = d
            .client()
            .request_with(&Command::RecoveryUpload(api::NoArgs {}), Some(file.as_fd()))
            .unwrap();
        assert!(r.ok.is_some(), "{r:?}");
        let sled = &rack.sps[0];
        sled.set_faults(faults);
        let cpu0 = d.cpu();
        let t = Instant::now();
        sled.start_recovery(hash);
        let deadline = t + Duration::from_secs(600);
        loop {
            let p = sled.phase2_progress().unwrap();
            match p.state {
                Phase2State::Complete => break,
                Phase2State::Failed(f) => panic!("recovery failed: {f}"),
                Phase2State::Fetching => {}
            }
            assert!(Instant::now() < deadline, "recovery did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t.elapsed();
        let cpu = d.cpu() - cpu0;
        println!(
            "2. recovery of a {mib} MiB phase-2 image ({what}): {:.2} s, {:.2} MiB/s, daemon {:.2} CPU-s",
            took.as_secs_f64(),
            image.len() as f64 / 1048576.0 / took.as_secs_f64(),
            cpu.as_secs_f64()
        );
    }
}

fn streaming(dir: &std::path::Path, seconds: u64) {
    let rack = rack(32);
    let d = daemon(dir, &rack, "streaming");
    let mut readers = Vec::new();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for sp in &rack.sps {
        let (mut reader, writer) = attach(&d, &sp.name, true);
        let received = received.clone();
        readers.push(std::thread::spawn(move || {
            let _keep = writer;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Ok(ConsoleLine::Output { data }) = serde_json::from_str(&line) {
                    let n = B64.decode(data).map_or(0, |b| b.len());
                    received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                line.clear();
            }
        }));
    }
    // Each host prints a 1000-byte line every 10 ms: ~100 KB/s.
    let line = [b'y'; 999];
    let cpu0 = d.cpu();
    let t = Instant::now();
    let mut printed = 0u64;
    while t.elapsed() < Duration::from_secs(seconds) {
        for sp in &rack.sps {
            sp.inject_host_output(&line);
            sp.inject_host_output(b"\n");
            printed += 1000;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed();
    let cpu = d.cpu() - cpu0;
    std::thread::sleep(Duration::from_millis(500));
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "3. 32 consoles streaming {:.0} KB/s each for {:.1} s: daemon {:.2} CPU-s ({:.1}% of one core), {:.1}% of the output read by the watchers",
        printed as f64 / 32.0 / took.as_secs_f64() / 1000.0,
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / took.as_secs_f64() * 100.0,
        got as f64 / printed as f64 * 100.0
    );
    drop(d);
    for r in readers {
        let _ = r.join();
    }
}
