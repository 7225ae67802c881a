//! How fast one simulated SP takes update chunks, without any gateway in
//! the way: a 32 MiB host-boot-flash update streamed from a plain blocking
//! socket with `W` chunk requests in flight, for each `W` given (default
//! 1, 2 and 3).
//!
//! ```sh
//! cargo run --release -p sp-sim --example chunk_rate                  # W = 1, 2, 3
//! cargo run --release -p sp-sim --example chunk_rate -- --mib=2 3 4   # 2 MiB, W = 3, 4
//! ```
//!
//! Real SPs queue 3 datagrams, and so does the simulator: with more than 3
//! in flight chunks are lost. The SP answers in order, so an answer to a
//! later chunk shows the loss; the stream then resumes from the SP's
//! `bytes_received` (a "stall"). The client is [`ChunkStreamer`].
//!
//! The SP runs in-process with [`Timings::instant`] on its own thread and
//! single-threaded runtime, so the figures are the simulator's own cost per
//! datagram plus loopback UDP. Wall-clock rates on an otherwise idle VM
//! depend a lot on how fast a sleeping CPU wakes up, so on Linux the CPU
//! time each side spent per chunk is printed too (from `schedstat`).

use gateway_messages::{SpComponent, UpdateId, UpdateStatus, MAX_UPDATE_CHUNK_DATA};
use sp_sim::client::ChunkStreamer;
use sp_sim::{RackConfig, SimRack, SimSp, Timings};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

const MIB: usize = 1024 * 1024;
const HBF: SpComponent = SpComponent::HOST_CPU_BOOT_FLASH;

fn main() -> Result<(), Error> {
    let usage = "usage: chunk_rate [--mib=1..32] [WINDOW...]";
    let mut image_len = 32 * MIB;
    let mut windows = Vec::new();
    for arg in std::env::args().skip(1) {
        if let Some(mib) = arg.strip_prefix("--mib=") {
            match mib.parse::<usize>() {
                // The simulated host flash holds 32 MiB.
                Ok(n @ 1..=32) => image_len = n * MIB,
                _ => return Err(usage.into()),
            }
        } else {
            match arg.parse::<usize>() {
                Ok(w) if w > 0 => windows.push(w),
                _ => return Err(usage.into()),
            }
        }
    }
    if windows.is_empty() {
        windows = vec![1, 2, 3];
    }

    let (sp_tx, sp_rx) = std::sync::mpsc::channel::<std::io::Result<(SimSp, Option<String>)>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<(), Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut config = RackConfig::standard(1, 0, 0);
            config.timings = Timings::instant();
            match SimRack::start(config).await {
                Ok(rack) => {
                    let _ = sp_tx.send(Ok((rack.sps[0].clone(), schedstat_path())));
                    // Runs until main is done (or gone).
                    let _ = stop_rx.await;
                    rack.stop().await;
                }
                Err(e) => {
                    let _ = sp_tx.send(Err(e));
                }
            }
        });
        Ok(())
    });
    let (sp, sp_thread) = sp_rx.recv()??;
    let client_thread = schedstat_path();

    let mut image = vec![0xFFu8; image_len];
    for (i, b) in image.iter_mut().enumerate().skip(64 * 1024) {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let mut client = ChunkStreamer::new(sp.addr)?;
    println!(
        "{} MiB host-boot-flash update, {} data bytes per chunk, SP {} (instant timings)",
        image_len / MIB,
        MAX_UPDATE_CHUNK_DATA,
        sp.addr
    );
    println!(
        "{:>3} {:>9} {:>9} {:>10} {:>7} {:>10} {:>14} {:>14}",
        "W",
        "seconds",
        "MiB/s",
        "chunks/s",
        "stalls",
        "overflows",
        "SP µs/chunk",
        "client µs/chunk"
    );
    for (n, &window) in windows.iter().enumerate() {
        let id = UpdateId([n as u8 + 1; 16]);
        let overflows_before = sp.fault_stats().queue_overflows;
        let cpu_before = (cpu_time(&sp_thread), cpu_time(&client_thread));
        let run = client.update(HBF, 1, id, &image, window)?;
        let cpu_after = (cpu_time(&sp_thread), cpu_time(&client_thread));
        let overflows = sp.fault_stats().queue_overflows - overflows_before;
        let per_chunk = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
            (Some(b), Some(a)) => format!("{:.2}", (a - b).as_secs_f64() * 1e6 / run.chunks as f64),
            _ => "-".to_string(),
        };
        let status = sp.update_status(HBF);
        if status != Ok(UpdateStatus::Complete(id)) {
            return Err(format!("W={window}: SP reports {status:?}").into());
        }
        let secs = run.elapsed.as_secs_f64();
        println!(
            "{window:>3} {secs:>9.3} {:>9.1} {:>10.0} {:>7} {overflows:>10} {:>14} {:>14}",
            image_len as f64 / MIB as f64 / secs,
            run.chunks as f64 / secs,
            run.stalls,
            per_chunk(cpu_before.0, cpu_after.0),
            per_chunk(cpu_before.1, cpu_after.1),
        );
    }

    let _ = stop_tx.send(());
    server.join().map_err(|_| "SP thread panicked")??;
    Ok(())
}

/// Where the calling thread's scheduler statistics live (Linux only), so
/// another thread can read them.
fn schedstat_path() -> Option<String> {
    let task = std::fs::read_link("/proc/thread-self").ok()?;
    Some(format!("/proc/{}/schedstat", task.display()))
}

/// CPU time a thread has run so far: the first `schedstat` field, in ns.
fn cpu_time(schedstat: &Option<String>) -> Option<Duration> {
    let text = std::fs::read_to_string(schedstat.as_ref()?).ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
