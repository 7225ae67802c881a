//! `mgsctl`: the operator's command-line client for mgsd's control socket.
//!
//! Exit codes: 0 success; 1 other error; 2 usage; 3 the daemon cannot be
//! reached; 4 unknown SP or update id; 5 invalid request (bad component,
//! slot or image); 6 SP error or SP unreachable; 7 the update failed or was
//! aborted (watched, or started again with its id after it ended);
//! 8 conflict (update id in use, another update running, abort refused).

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mgsd::api::{Command, ErrorCode, Response};
use mgsd::client::Client;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Talk to mgsd: list and inspect SPs, reset them, update their firmware.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The daemon's control socket.
    #[arg(
        long,
        env = "MGSD_SOCKET",
        default_value = "/run/mgsd/mgsd.sock",
        global = true
    )]
    socket: PathBuf,
    /// Print the daemon's JSON instead of tables (stable, for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 other error, 2 usage, 3 daemon unreachable, \
4 unknown SP or update, 5 invalid request, 6 SP error or unreachable, 7 update failed or aborted, 8 conflict.";

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Daemon and protocol versions.
    Version,
    /// Daemon health summary.
    Health,
    /// All SPs: reachability, identity, firmware versions, running updates.
    List,
    /// One SP's state.
    State {
        /// SP name or serial number.
        sp: String,
    },
    /// Caboose (firmware metadata) of a component slot.
    Caboose {
        /// SP name or serial number.
        sp: String,
        /// Component.
        #[arg(long, default_value = "sp")]
        component: String,
        /// Slot (0: running image).
        #[arg(long, default_value_t = 0)]
        slot: u16,
        /// One key (BORD, GITC, NAME, VERS); all by default.
        #[arg(long)]
        key: Option<String>,
    },
    /// Host power state.
    #[command(subcommand)]
    Power(PowerCmd),
    /// Active and persistent slots.
    #[command(subcommand)]
    Slot(SlotCmd),
    /// Reset a component (the SP itself by default).
    Reset {
        /// SP name or serial number.
        sp: String,
        /// Component.
        #[arg(default_value = "sp")]
        component: String,
    },
    /// Firmware updates.
    #[command(subcommand)]
    Update(UpdateCmd),
    /// Finished updates, newest first: outcome, duration, mean rate.
    History {
        /// Only this SP's (name or serial number).
        #[arg(long)]
        sp: Option<String>,
        /// Only this component's.
        #[arg(long)]
        component: Option<String>,
        /// Only those finished since: a time (2026-11-25T10:00:00Z) or how
        /// long ago (90m, 12h, 7d).
        #[arg(long, value_parser = parse_since)]
        since: Option<std::time::SystemTime>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Follow update progress events (one update, or all).
    Watch {
        /// Update id.
        id: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
enum PowerCmd {
    /// Read the host power state.
    Get {
        /// SP name or serial number.
        sp: String,
    },
    /// Set the host power state (A0 or A2).
    Set {
        /// SP name or serial number.
        sp: String,
        /// A0 (on) or A2 (off).
        state: String,
    },
}

#[derive(Debug, Subcommand)]
enum SlotCmd {
    /// Active and persistent slot of a component.
    Get {
        /// SP name or serial number.
        sp: String,
        /// Component.
        component: String,
    },
    /// Select a slot.
    Set {
        /// SP name or serial number.
        sp: String,
        /// Component.
        component: String,
        /// Slot.
        slot: u16,
        /// Also make it the persistent choice.
        #[arg(long)]
        persist: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UpdateCmd {
    /// Start an update; returns once the SP accepted it (see --watch).
    Start {
        /// SP name or serial number.
        sp: String,
        /// sp, host-boot-flash, rot or stage0.
        component: String,
        /// Image file (read by the daemon).
        #[arg(long)]
        image: PathBuf,
        /// Target slot.
        #[arg(long, default_value_t = 0)]
        slot: u16,
        /// Update id (UUID); chosen for you if absent. Starting again with
        /// the same id and image is safe.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        /// Show progress and exit 0 only once the update is complete.
        #[arg(long)]
        watch: bool,
    },
    /// The SP's status of a component and the daemon's delivery view.
    Status {
        /// SP name or serial number.
        sp: String,
        /// Component.
        component: String,
    },
    /// Abort an update (the SP aborts only if the id is its current update).
    Abort {
        /// SP name or serial number.
        sp: String,
        /// Component.
        component: String,
        /// Update id.
        id: uuid::Uuid,
    },
}

/// A failure and its exit code.
struct Failure(u8, String);

fn exit_code(code: ErrorCode) -> u8 {
    use ErrorCode::*;
    match code {
        UnknownSp | UnknownUpdate => 4,
        BadRequest | RequestTooLarge | UnsupportedVersion | BadComponent | BadSlot
        | ImageUnreadable | BadImage => 5,
        SpError | SpUnreachable => 6,
        UpdateConflict | UpdateRunning | AbortRefused => 8,
        ShuttingDown | Internal => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            if cli.json {
                // The JSON error was already printed on stdout.
                eprintln!("mgsctl: {message}");
            } else {
                eprintln!("mgsctl: {message}");
            }
            ExitCode::from(code)
        }
    }
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    Client::connect(&cli.socket).map_err(|e| {
        Failure(
            3,
            format!(
                "cannot reach mgsd at {}: {e} (is it running? see --socket or MGSD_SOCKET)",
                cli.socket.display()
            ),
        )
    })
}

/// One request, one answer; prints it and maps errors to exit codes.
fn call(cli: &Cli, command: Command) -> Result<Value, Failure> {
    let mut client = connect(cli)?;
    let response = client
        .request(&command)
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    settle(cli, response)
}

fn settle(cli: &Cli, response: Response) -> Result<Value, Failure> {
    if cli.json {
        println!("{}", serde_json::to_string(&response).unwrap_or_default());
    }
    match (response.ok, response.error) {
        (Some(v), _) => Ok(v),
        (_, Some(e)) => Err(Failure(exit_code(e.code), e.message)),
        _ => Err(Failure(1, "empty response from mgsd".into())),
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let value = match &cli.cmd {
        Cmd::Version => call(cli, Command::Version)?,
        Cmd::Health => call(cli, Command::Health)?,
        Cmd::List => {
            let v = call(cli, Command::List)?;
            if !cli.json {
                print_list(&v);
            }
            return Ok(());
        }
        Cmd::State { sp } => call(cli, Command::State { sp: sp.clone() })?,
        Cmd::Caboose {
            sp,
            component,
            slot,
            key,
        } => call(
            cli,
            Command::Caboose {
                sp: sp.clone(),
                component: component.clone(),
                slot: *slot,
                key: key.clone(),
            },
        )?,
        Cmd::Power(PowerCmd::Get { sp }) => call(cli, Command::PowerGet { sp: sp.clone() })?,
        Cmd::Power(PowerCmd::Set { sp, state }) => call(
            cli,
            Command::PowerSet {
                sp: sp.clone(),
                state: state.clone(),
            },
        )?,
        Cmd::Slot(SlotCmd::Get { sp, component }) => call(
            cli,
            Command::SlotGet {
                sp: sp.clone(),
                component: component.clone(),
            },
        )?,
        Cmd::Slot(SlotCmd::Set {
            sp,
            component,
            slot,
            persist,
        }) => call(
            cli,
            Command::SlotSet {
                sp: sp.clone(),
                component: component.clone(),
                slot: *slot,
                persist: *persist,
            },
        )?,
        Cmd::Reset { sp, component } => call(
            cli,
            Command::Reset {
                sp: sp.clone(),
                component: component.clone(),
            },
        )?,
        Cmd::Update(UpdateCmd::Start {
            sp,
            component,
            image,
            slot,
            id,
            watch,
        }) => {
            // The daemon reads the file: give it an absolute path.
            let image = std::path::absolute(image).unwrap_or_else(|_| image.clone());
            let v = call(
                cli,
                Command::UpdateStart {
                    sp: sp.clone(),
                    component: component.clone(),
                    slot: *slot,
                    image: image.display().to_string(),
                    id: *id,
                },
            )?;
            let id = v["id"].as_str().and_then(|s| s.parse().ok());
            // The same id again names the same update, in whatever state
            // it is: one that already ended is reported as it ended.
            match v["phase"].as_str() {
                Some("complete") => {
                    if !cli.json {
                        println!(
                            "update {} already complete: {sp} {component} slot {slot}",
                            scalar(&v["id"])
                        );
                    }
                    return Ok(());
                }
                Some("failed" | "aborted") => return finished(cli, &v),
                _ => {}
            }
            if !cli.json {
                println!(
                    "update {} started: {} {} slot {}",
                    v["id"].as_str().unwrap_or("?"),
                    sp,
                    component,
                    slot
                );
            }
            return match (watch, id) {
                (true, Some(id)) => watch_update(cli, id),
                _ => Ok(()),
            };
        }
        Cmd::Update(UpdateCmd::Status { sp, component }) => {
            let v = call(
                cli,
                Command::UpdateStatus {
                    sp: sp.clone(),
                    component: component.clone(),
                },
            )?;
            if !cli.json {
                print_status(&v);
            }
            return Ok(());
        }
        Cmd::Update(UpdateCmd::Abort { sp, component, id }) => call(
            cli,
            Command::UpdateAbort {
                sp: sp.clone(),
                component: component.clone(),
                id: *id,
            },
        )?,
        Cmd::History {
            sp,
            component,
            since,
            limit,
        } => {
            let since_unix_ms = since.map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            });
            let v = call(
                cli,
                Command::History {
                    sp: sp.clone(),
                    component: component.clone(),
                    since_unix_ms,
                    limit: Some(*limit),
                },
            )?;
            if !cli.json {
                print_history(&v);
            }
            return Ok(());
        }
        Cmd::Watch { id: Some(id) } => return watch_update(cli, *id),
        Cmd::Watch { id: None } => return watch_all(cli),
    };
    if !cli.json {
        print_value(&value, 0);
    }
    Ok(())
}

fn print_value(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) => {
                        println!("{pad}{k}:");
                        print_value(v, indent + 2);
                    }
                    other => println!("{pad}{k}: {}", scalar(other)),
                }
            }
        }
        other => println!("{pad}{}", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_list(v: &Value) {
    println!(
        "{:<10} {:<5} {:<13} {:<12} {:<5} {:<8} {:<8} UPDATE",
        "NAME", "UP", "SERIAL", "MODEL", "POWER", "SP", "ROT"
    );
    for sp in v.as_array().into_iter().flatten() {
        let update = match &sp["active_update"] {
            Value::Null => "-".to_string(),
            u => format!(
                "{} {} {}%",
                u["component"].as_str().unwrap_or("?"),
                u["phase"].as_str().unwrap_or("?"),
                percent(u)
            ),
        };
        println!(
            "{:<10} {:<5} {:<13} {:<12} {:<5} {:<8} {:<8} {}",
            scalar(&sp["name"]),
            if sp["reachable"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            scalar(&sp["serial"]),
            scalar(&sp["model"]),
            scalar(&sp["power_state"]),
            scalar(&sp["versions"]["sp"]),
            scalar(&sp["versions"]["rot"]),
            update
        );
    }
}

/// A point in time: RFC 3339 (`2026-11-25T10:00:00Z`), or a span ago
/// (`90m`, `12h`, `7d`).
fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?}: give a time (2026-11-25T10:00:00Z) or a span ago (12h, 7d)")
    })?;
    std::time::SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text:?} is too long ago"))
}

fn print_history(v: &Value) {
    println!(
        "{:<20} {:<10} {:<16} {:<36} {:<9} {:>9} {:>10}  FAILURE",
        "FINISHED (UTC)", "SP", "COMPONENT", "ID", "OUTCOME", "DURATION", "RATE"
    );
    for r in v.as_array().into_iter().flatten() {
        let finished = r["finished_unix_ms"]
            .as_u64()
            .map(|ms| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(t).to_string()
            })
            .unwrap_or_else(|| "-".into());
        let duration = r["duration_ms"]
            .as_u64()
            .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        let rate = r["mean_bytes_per_second"]
            .as_u64()
            .map_or("-".into(), |b| format!("{:.1} MiB/s", b as f64 / 1048576.0));
        println!(
            "{:<20} {:<10} {:<16} {:<36} {:<9} {:>9} {:>10}  {}",
            finished.trim_end_matches('Z'),
            scalar(&r["sp"]),
            scalar(&r["component"]),
            scalar(&r["id"]),
            scalar(&r["phase"]),
            duration,
            rate,
            r["failure"].as_str().unwrap_or("")
        );
    }
}

fn percent(record: &Value) -> u64 {
    let total = record["total_bytes"].as_u64().unwrap_or(0).max(1);
    record["bytes_acked"].as_u64().unwrap_or(0) * 100 / total
}

fn print_status(v: &Value) {
    let s = &v["sp_status"];
    let state = s["state"].as_str().unwrap_or("?");
    let detail = match state {
        "preparing" => format!(
            " (erasing sector {}/{})",
            scalar(&s["erase_current"]),
            scalar(&s["erase_total"])
        ),
        "in_progress" => format!(
            " ({}/{} bytes received)",
            scalar(&s["bytes_received"]),
            scalar(&s["total_size"])
        ),
        "failed" => format!(" (code {})", scalar(&s["code"])),
        _ => String::new(),
    };
    println!(
        "{} {}: {}{}",
        scalar(&v["sp"]),
        scalar(&v["component"]),
        state.replace('_', " "),
        detail
    );
    if let Some(id) = s["id"].as_str() {
        println!("  update id: {id}");
    }
    if let Some(age) = v["sp_status_age_ms"].as_u64().filter(|a| *a > 0) {
        println!("  (as the SP reported {age} ms ago)");
    }
    let d = &v["delivery"];
    if d.is_object() {
        println!("  daemon delivery of {}:", scalar(&d["id"]));
        println!("    phase: {}", scalar(&d["phase"]));
        println!(
            "    bytes: {}/{} ({}%)",
            scalar(&d["bytes_acked"]),
            scalar(&d["total_bytes"]),
            percent(d)
        );
        println!(
            "    chunks sent: {}, retransmitted: {}, rewinds: {}, timeouts: {}",
            scalar(&d["chunks_sent"]),
            scalar(&d["chunks_retransmitted"]),
            scalar(&d["rewinds"]),
            scalar(&d["timeouts"])
        );
        if d["hash_verified"].as_bool() == Some(true) {
            println!("    host-flash hash verified");
        }
        if let Some(f) = d["failure"].as_str() {
            println!("    failure: {f}");
        }
    }
}

/// Follow one update with progress bars; exit 0 only on completion.
fn watch_update(cli: &Cli, id: uuid::Uuid) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let first = client
        .request(&Command::Watch { id: Some(id) })
        .map_err(|e| Failure(3, e.to_string()))?;
    let mut bars = Bars::new(cli.json);
    let mut response = first;
    loop {
        if let Some(event) = &response.event {
            if cli.json {
                println!("{}", serde_json::to_string(&response).unwrap_or_default());
            }
            bars.show(event);
        } else {
            bars.finish();
            let record = settle(cli, response)?;
            return finished(cli, &record);
        }
        response = match client.next_response() {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Failure(3, "mgsd closed the connection".into())),
            Err(e) => return Err(Failure(3, e.to_string())),
        };
    }
}

fn finished(cli: &Cli, record: &Value) -> Result<(), Failure> {
    let phase = record["phase"].as_str().unwrap_or("?");
    if phase == "complete" {
        if !cli.json {
            let verified = if record["hash_verified"].as_bool() == Some(true) {
                ", hash verified"
            } else {
                ""
            };
            println!("update {} complete{verified}", scalar(&record["id"]));
        }
        Ok(())
    } else {
        let why = record["failure"].as_str().unwrap_or(phase);
        Err(Failure(
            7,
            format!("update {} {phase}: {why}", scalar(&record["id"])),
        ))
    }
}

fn watch_all(cli: &Cli) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let mut response = client
        .request(&Command::Watch { id: None })
        .map_err(|e| Failure(3, e.to_string()))?;
    loop {
        if cli.json {
            println!("{}", serde_json::to_string(&response).unwrap_or_default());
        } else if let Some(e) = &response.event {
            println!(
                "{} {} {} {} {}/{}",
                scalar(&e["sp"]),
                scalar(&e["component"]),
                scalar(&e["id"]),
                scalar(&e["phase"]),
                scalar(&e["bytes_acked"]),
                scalar(&e["total_bytes"])
            );
        } else if let Some(err) = response.error {
            return Err(Failure(exit_code(err.code), err.message));
        }
        response = match client.next_response() {
            Ok(Some(r)) => r,
            _ => return Ok(()),
        };
    }
}

/// One progress bar: erase progress, then delivery (bytes, rate, ETA).
struct Bars {
    hidden: bool,
    bar: Option<ProgressBar>,
    delivering: bool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Bars {
    fn new(hidden: bool) -> Self {
        Self {
            hidden,
            bar: None,
            delivering: false,
        }
    }

    fn show(&mut self, record: &Value) {
        if self.hidden {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| ProgressBar::new(1));
        if record["phase"] == "preparing" {
            if let Some([cur, total]) = record["erase_progress"]
                .as_array()
                .map(|a| [a[0].as_u64(), a[1].as_u64()])
            {
                bar.set_style(style("erasing    [{bar:40}] sector {pos}/{len}"));
                bar.set_length(total.unwrap_or(1));
                bar.set_position(cur.unwrap_or(0));
            }
        } else {
            if !self.delivering {
                self.delivering = true;
                bar.set_style(style(
                    "delivering [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ));
                bar.set_length(record["total_bytes"].as_u64().unwrap_or(1));
                bar.reset();
            }
            bar.set_position(record["bytes_acked"].as_u64().unwrap_or(0));
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
