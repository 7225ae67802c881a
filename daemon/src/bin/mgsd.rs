//! `mgsd`: parse arguments, load configuration, run.

use clap::Parser;
use mgsd::config::{Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// Management gateway daemon: talks to every SP of a rack and serves
/// operators and the control plane on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). `MGSD_...` environment variables override
    /// it, e.g. `MGSD_CONTROL__SOCKET=/tmp/mgsd.sock`.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run against an in-process simulated rack (8 sleds, 2 switches,
    /// 2 power shelves) and print commands to try.
    #[arg(long)]
    demo: bool,
    /// Control socket path (overrides the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mgsd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(socket) = args.socket {
        config.control.socket = socket;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let system = actix::System::new();
    let result = system.block_on(async move {
        let _rack = if args.demo {
            let (rack, image) = match mgsd::demo::start(&mut config).await {
                Ok(r) => r,
                Err(e) => return Err(format!("demo rack: {e}")),
            };
            println!(
                "{}",
                mgsd::demo::instructions(&config.control.socket, &image)
            );
            Some(rack)
        } else {
            None
        };
        mgsd::run(config, mgsd::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mgsd: {e}");
            ExitCode::FAILURE
        }
    }
}
