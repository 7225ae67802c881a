//! `mgsd-netbed`: build the network-namespace test bed (two scrimlets, one
//! namespace per SP, veth pairs as switch ports, a real `sp-sim` per SP
//! answering multicast discovery on its two ports), print how to run
//! `mgsd` and `mgsctl` in it, and tear it down on Enter, end of input or
//! Ctrl-C.
//!
//! ```sh
//! cargo build --workspace        # sp-sim, mgsd and mgsctl must be built
//! sudo target/debug/mgsd-netbed --sps 4
//! # or: cargo run -p mgsd-tests --bin mgsd-netbed -- --sps 4   (as root)
//! ```
//!
//! Options: `--sps N` (4), `--host-flash-mib M` (32), `--write-kib-per-s K`
//! (1024), `--instant` (no flash delays), `--drop P` (sp-sim drops each
//! request and each reply with probability P), `--daemons` (also start
//! `mgsd` in both scrimlets and print `mgsctl` commands).

use mgsd_tests::netbed::{bin_path, sp_serial, NetBed, NetBedOptions, Scrimlet};
use sp_sim::{FaultConfig, Timings};

const USAGE: &str = "usage: mgsd-netbed [--sps N] [--host-flash-mib M] \
[--write-kib-per-s K] [--instant] [--drop P] [--daemons]";

struct Args {
    sps: usize,
    timings: Timings,
    drop: f64,
    daemons: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sps: 4,
        timings: Timings::default(),
        drop: 0.0,
        daemons: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let bad = |name: &str, v: &str| format!("{name}: bad value {v:?}\n{USAGE}");
        match flag.as_str() {
            "--sps" => {
                let v = value("--sps")?;
                args.sps = v.parse().map_err(|_| bad("--sps", &v))?;
            }
            "--host-flash-mib" => {
                let v = value("--host-flash-mib")?;
                args.timings.host_flash_mib = v.parse().map_err(|_| bad("--host-flash-mib", &v))?;
            }
            "--write-kib-per-s" => {
                let v = value("--write-kib-per-s")?;
                args.timings.write_kib_per_s =
                    v.parse().map_err(|_| bad("--write-kib-per-s", &v))?;
            }
            "--drop" => {
                let v = value("--drop")?;
                args.drop = v.parse().map_err(|_| bad("--drop", &v))?;
            }
            "--instant" => {
                let mib = args.timings.host_flash_mib;
                args.timings = Timings {
                    host_flash_mib: mib,
                    ..Timings::instant()
                };
            }
            "--daemons" => args.daemons = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.sps == 0 {
        return Err("--sps must be at least 1".into());
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mgsd-netbed: {e}");
            std::process::exit(2);
        }
    };
    if let Err(why) = NetBed::available() {
        eprintln!("mgsd-netbed: {why}");
        std::process::exit(1);
    }
    let options = NetBedOptions {
        timings: args.timings.clone(),
        faults: FaultConfig {
            drop_request: args.drop,
            drop_response: args.drop,
            ..FaultConfig::default()
        },
        ..NetBedOptions::default()
    };
    let bed = match NetBed::create(args.sps, options) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mgsd-netbed: {e}");
            std::process::exit(1);
        }
    };
    let settings = format!(
        "[sp_defaults.delivery]\nhost_flash_capacity_mib = {}\n",
        args.timings.host_flash_mib
    );
    println!(
        "test bed {} ready in {:.2?}: {} SPs, files in {}",
        bed.prefix(),
        bed.setup_time(),
        bed.len(),
        bed.dir().display()
    );
    println!("\nnamespaces:");
    for s in Scrimlet::BOTH {
        println!(
            "  scrimlet {:?}: {}  (interfaces sp0..sp{})",
            s,
            bed.scrimlet_netns(s),
            bed.len() - 1
        );
    }
    for i in 0..bed.len() {
        let addrs: Vec<String> = Scrimlet::BOTH
            .iter()
            .map(|&s| {
                bed.sp_addr(i, s)
                    .map(|a| format!("{} {a}", s.sp_port()))
                    .unwrap_or_else(|e| e)
            })
            .collect();
        println!(
            "  sled-{i} ({}): {}  {}",
            sp_serial(i),
            bed.sp_netns(i),
            addrs.join(", ")
        );
    }
    let (mgsd, mgsctl) = (bin_path("mgsd"), bin_path("mgsctl"));
    let mut daemons = Vec::new();
    for s in Scrimlet::BOTH {
        let (config, socket) = match bed.write_daemon_config(s, &settings) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("mgsd-netbed: {e}");
                return;
            }
        };
        println!("\nscrimlet {s:?}:");
        if args.daemons {
            match bed.start_daemon(s, &settings) {
                Ok(d) => {
                    println!("  mgsd runs (log {})", d.log.display());
                    daemons.push(d);
                }
                Err(e) => {
                    eprintln!("mgsd-netbed: {e}");
                    return;
                }
            }
        } else {
            println!(
                "  ip netns exec {} {} --config {}",
                bed.scrimlet_netns(s),
                mgsd.display(),
                config.display()
            );
        }
        println!("  {} --socket {} list", mgsctl.display(), socket.display());
        println!(
            "  ip netns exec {} ip -6 addr show scope link",
            bed.scrimlet_netns(s)
        );
    }
    println!(
        "\nsp-sim logs: {}/sp<i>.<run>.log\npress Enter (or Ctrl-D, or Ctrl-C) to tear the bed down",
        bed.dir().display()
    );
    wait_for_enter_or_signal();
    drop(daemons);
    drop(bed);
    println!("torn down");
}

/// Return on a line (or end) of standard input, SIGINT or SIGTERM.
fn wait_for_enter_or_signal() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return,
    };
    rt.block_on(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = rx => {}
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
    });
}
