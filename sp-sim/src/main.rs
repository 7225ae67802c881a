//! `sp-sim`: run a simulated rack until interrupted.
//!
//! Beyond the rack TOML (`sp_sim::RackConfig`), `--console-line-ms` sets the
//! simulated hosts' periodic console lines and `--mgs` the gateways that
//! phase-2 recovery requests go to (switch ports 1 and 2).

use clap::Parser;
use sp_sim::{FaultConfig, RackConfig, SimRack, Timings};
use std::net::IpAddr;
use std::path::PathBuf;

/// Simulated service processors speaking the MGS protocol over UDP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Rack description (TOML); replaces the --sleds/--switches/--power-shelves counts.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of compute sleds.
    #[arg(long, default_value_t = 2)]
    sleds: usize,
    /// Number of switches.
    #[arg(long, default_value_t = 1)]
    switches: usize,
    /// Number of power shelves.
    #[arg(long, default_value_t = 1)]
    power_shelves: usize,
    /// Address the SPs bind [default: ::1, or the --config file's `bind`].
    /// `::` with `--base-port 11111` and `--join-multicast` is one SP as
    /// on a real switch port.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Interfaces (comma-separated names, e.g. `port0,port1`) on which
    /// every SP joins the discovery group ff02::1de:2 and so answers a
    /// multicast `Discover` (overrides the --config file's `join_multicast`).
    #[arg(long, value_delimiter = ',')]
    join_multicast: Option<Vec<String>>,
    /// First UDP port; SPs take consecutive ports. 0 lets the OS choose.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No erase or write delays (benchmarks).
    #[arg(long)]
    instant: bool,
    /// Probability of dropping each request.
    #[arg(long, default_value_t = 0.0)]
    drop_requests: f64,
    /// Probability of dropping each response.
    #[arg(long, default_value_t = 0.0)]
    drop_responses: f64,
    /// Keep written host-flash images in this directory.
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Interval of the simulated hosts' periodic console lines in ms (0:
    /// none); overrides the timings.
    #[arg(long)]
    console_line_ms: Option<u64>,
    /// Gateways of switch ports 1 and 2 (comma-separated addresses) where
    /// the SPs send phase-2 requests [default: the address each SP last
    /// heard from].
    #[arg(long, value_delimiter = ',')]
    mgs: Option<Vec<std::net::SocketAddr>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            RackConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let mut c = RackConfig::standard(args.sleds, args.switches, args.power_shelves);
            c.seed = args.seed;
            c.store_dir = args.store_dir.clone();
            c.faults = FaultConfig {
                drop_request: args.drop_requests,
                drop_response: args.drop_responses,
                ..FaultConfig::default()
            };
            if args.instant {
                c.timings = Timings::instant();
            }
            c
        }
    };
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if let Some(interfaces) = &args.join_multicast {
        config.join_multicast = interfaces.clone();
    }
    if let Some(ms) = args.console_line_ms {
        config.timings.console_line_ms = ms;
    }
    if let Some(mgs) = &args.mgs {
        config.mgs = mgs.clone();
    }
    if args.base_port != 0 {
        for (i, sp) in config.sps.iter_mut().enumerate() {
            sp.port = args
                .base_port
                .checked_add(i as u16)
                .ok_or("port range overflows")?;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config_joins = config.join_multicast.clone();
    let bind_unspecified = config.bind.is_unspecified();
    rt.block_on(async move {
        let rack = SimRack::start(config).await?;
        println!("{:<10} {:<12} {:<12} ADDRESS", "NAME", "KIND", "SERIAL");
        for sp in &rack.sps {
            println!(
                "{:<10} {:<12} {:<12} {}",
                sp.name,
                format!("{:?}", sp.kind),
                sp.serial,
                sp.addr
            );
        }
        if !config_joins.is_empty() {
            println!(
                "\n# discovery group ff02::1de:2 joined on: {}",
                config_joins.join(", ")
            );
        }
        if bind_unspecified {
            // Every local address answers: the daemon finds the SP by
            // multicast on its side's interface (or by a link-local address
            // with the interface's scope).
            println!("\n# mgsd configuration (on the other end of the link):");
            for sp in &rack.sps {
                println!("[[sp]]\nname = \"{}\"\ninterface = \"IFACE\"\n", sp.name);
            }
        } else {
            println!("\n# mgsd configuration for this rack:");
            for sp in &rack.sps {
                println!("[[sp]]\nname = \"{}\"\naddr = \"{}\"\n", sp.name, sp.addr);
            }
        }
        println!("# {} SPs running; Ctrl-C to stop", rack.sps.len());
        tokio::signal::ctrl_c().await?;
        rack.stop().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
