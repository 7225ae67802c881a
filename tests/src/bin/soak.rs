//! `mgsd-soak`: updates across simulated SPs over a lossy network, the
//! daemon SIGKILLed and restarted along the way (see `mgsd_tests::soak`).
//!
//! ```sh
//! cargo run --release -p mgsd-tests --bin mgsd-soak            # 100 updates, 8 SPs, 3 kills
//! cargo run --release -p mgsd-tests --bin mgsd-soak -- --short # the CI size
//! ```
//!
//! `--seed=N` picks other kill moments, ids and network faults. Exits 1,
//! naming what did not hold, on failure.

use mgsd_tests::child::daemon_main;
use mgsd_tests::soak::{self, Soak};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if daemon_main(&args) {
        return;
    }
    let mut size = if args.iter().any(|a| a == "--short") {
        Soak::short()
    } else {
        Soak::full()
    };
    if let Some(seed) = args.iter().find_map(|a| a.strip_prefix("--seed=")) {
        size.seed = seed.parse().expect("--seed=N takes a number");
    }
    let dir = std::env::temp_dir().join(format!("mgsd-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("soak dir");
    let exe = std::env::current_exe().expect("own path");
    println!(
        "mgsd-soak: {} updates of {} KiB on {} SPs, {} kills; each way {:.0}% loss, {:.0}% duplication, {:.0}% reordering; seed {}",
        size.updates,
        size.image_kib,
        size.sps,
        size.kills,
        size.network.loss * 100.0,
        size.network.duplicate * 100.0,
        size.network.reorder * 100.0,
        size.seed
    );
    let result = soak::run(&size, &exe, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(report) => println!("{report}"),
        Err(why) => {
            eprintln!("mgsd-soak: FAILED: {why}");
            std::process::exit(1);
        }
    }
}
