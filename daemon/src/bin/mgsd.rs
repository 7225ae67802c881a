//! `mgsd`: parse arguments, load configuration, run.

use clap::Parser;
use mgsd::config::{Config, LogFormat};
use std::path::PathBuf;

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
    /// Print the HTTP API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

fn main() {
    let args = Args::parse();
    if args.openapi {
        print!("{}", mgsd::http::openapi::document());
        return;
    }
    // What the daemon creates is its own: the state directory's files
    // are also chmodded explicitly, this covers what libraries create.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mgsd: {e}");
            std::process::exit(2);
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
        let _demo = if args.demo {
            let demo = match mgsd::demo::start(&mut config).await {
                Ok(d) => d,
                Err(e) => return Err(format!("demo rack: {e}")),
            };
            println!("{}", demo.instructions(&config.control.socket));
            Some(demo)
        } else {
            None
        };
        mgsd::run(config, mgsd::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    // Exit now: a blocking read some client caused must not hold the
    // process up (the runtime would wait for it).
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mgsd: {e}");
            1
        }
    })
}
