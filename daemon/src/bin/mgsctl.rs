//! `mgsctl`: the operator's command-line client for mgsd's control socket.
//!
//! Exit codes: 0 success; 1 other error; 2 usage; 3 the daemon cannot be
//! reached; 4 unknown SP or update id; 5 invalid request (bad component,
//! slot or image); 6 SP error or SP unreachable; 7 the update failed or was
//! aborted (watched, or started again with its id after it ended);
//! 8 conflict (update id in use, another update running, abort refused);
//! 9 permission denied (see the daemon's `[control.access]`); 10 after a
//! reset the SP runs its previous image (rolled back); 11 after a reset
//! the SP did not answer again within the budget.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mgsd::api::{self, Command, ErrorCode, Response, RolloutSpec};
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
4 unknown SP or update, 5 invalid request, 6 SP error or unreachable, 7 update failed or aborted, 8 conflict, \
9 permission denied, 10 rolled back (the SP came back on its previous image), 11 the SP did not come back \
after a reset.";

// Each command's arguments are the wire's request structs (`mgsd::api`),
// declared once; `run` maps each subcommand to its request in one line.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Daemon and protocol versions.
    Version,
    /// Daemon health summary.
    Health,
    /// All SPs: reachability, identity, firmware versions, running updates.
    List,
    /// One SP's state (as mgsd last read it, at most a second old when the
    /// SP answers).
    State(api::SpArgs),
    /// Caboose (firmware metadata) of a component slot.
    Caboose(api::CabooseArgs),
    /// Host power state.
    #[command(subcommand)]
    Power(PowerCmd),
    /// Active and persistent slots.
    #[command(subcommand)]
    Slot(SlotCmd),
    /// Reset a component (the SP itself by default).
    Reset(api::ResetArgs),
    /// Firmware updates.
    #[command(subcommand)]
    Update(UpdateCmd),
    /// Finished updates, newest first: outcome, duration, mean rate.
    History(api::HistoryArgs),
    /// Who started, aborted, reset or refused what, newest first.
    Audit(api::AuditArgs),
    /// Follow update progress events (one update, or all).
    Watch(WatchCli),
    /// Firmware artifacts, read here (no daemon needed).
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// Rack rollouts: many SPs updated as one plan, with a canary, waves,
    /// a concurrency cap and a stop rule (see docs/rollouts.md).
    #[command(subcommand)]
    Rollout(RolloutCmd),
}

#[derive(Debug, Subcommand)]
enum ArtifactCmd {
    /// What a Hubris build archive holds: its image header and caboose,
    /// aux flash (and whether its CHCK verifies), image name, signature
    /// data, warnings.
    Inspect {
        /// The archive (zip).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RolloutCmd {
    /// Check a plan (a TOML file) and start it; the images it names are
    /// opened here, with your rights, and handed to the daemon.
    Start(RolloutStartCli),
    /// Targets, counts, rate and ETA.
    Status(api::RolloutArgs),
    /// Follow a rollout: a bar per running target and one for the total.
    Watch(api::RolloutArgs),
    /// Start no new target until resumed (running ones go on).
    Pause(api::RolloutArgs),
    /// Go on after a pause.
    Resume(api::RolloutArgs),
    /// Start no new target and abort the running ones on their SPs.
    Abort(api::RolloutArgs),
    /// Every rollout, oldest first.
    List,
}

/// `rollout start`.
#[derive(Debug, clap::Args)]
struct RolloutStartCli {
    /// The plan file (TOML). Image paths in it are relative to its
    /// directory.
    plan: PathBuf,
    /// Rollout id (UUID); chosen for you if absent. Starting again with
    /// the same id and plan is safe.
    #[arg(long)]
    id: Option<uuid::Uuid>,
    /// Follow it, and exit 0 only if every target completes.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Subcommand)]
enum PowerCmd {
    /// Read the host power state.
    Get(api::SpArgs),
    /// Set the host power state (A0 or A2).
    Set(api::PowerSetArgs),
}

#[derive(Debug, Subcommand)]
enum SlotCmd {
    /// Active and persistent slot of a component.
    Get(api::ComponentArgs),
    /// Select a slot.
    Set(api::SlotSetArgs),
}

#[derive(Debug, Subcommand)]
enum UpdateCmd {
    /// Start an update; returns once the SP accepted it (see --watch).
    Start(StartCli),
    /// The SP's status of a component and the daemon's delivery view.
    Status(api::ComponentArgs),
    /// Abort an update (the SP aborts only if the id is its current update).
    Abort(api::UpdateAbortArgs),
}

/// `update start`: the request, plus what only the client side knows.
#[derive(Debug, clap::Args)]
#[group(id = "source", required = true, multiple = false, args = ["image", "archive"])]
struct StartCli {
    #[command(flatten)]
    request: api::UpdateStartArgs,
    /// Raw image file (host flash; experts). mgsctl opens it with your
    /// rights and hands the daemon the open file, so any file you can
    /// read works (even under the daemon's sandbox).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Hubris build archive (`sp`, `rot`, `stage0`): its image (and, for
    /// `sp`, its aux flash) is sent once its board matches the target's.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Show progress and exit 0 only once the update is complete.
    #[arg(long)]
    watch: bool,
}

/// `watch`.
#[derive(Debug, clap::Args)]
struct WatchCli {
    /// Update id; every update if absent.
    id: Option<uuid::Uuid>,
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
        PermissionDenied => 9,
        BadPlan => 5,
        UnknownRollout => 4,
        RolloutState => 8,
        Busy => 3,
        ShuttingDown | Internal => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            // With --json the daemon's error line is on stdout already.
            eprintln!("mgsctl: {message}");
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
fn call(cli: &Cli, command: &Command) -> Result<Value, Failure> {
    let mut client = connect(cli)?;
    let response = client
        .request(command)
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
    let command = match &cli.cmd {
        Cmd::Version => Command::Version(api::NoArgs {}),
        Cmd::Health => Command::Health(api::NoArgs {}),
        Cmd::List => Command::List(api::NoArgs {}),
        Cmd::State(a) => Command::State(a.clone()),
        Cmd::Caboose(a) => Command::Caboose(a.clone()),
        Cmd::Power(PowerCmd::Get(a)) => Command::PowerGet(a.clone()),
        Cmd::Power(PowerCmd::Set(a)) => Command::PowerSet(a.clone()),
        Cmd::Slot(SlotCmd::Get(a)) => Command::SlotGet(a.clone()),
        Cmd::Slot(SlotCmd::Set(a)) => Command::SlotSet(a.clone()),
        Cmd::Reset(a) => return reset(cli, a),
        Cmd::Update(UpdateCmd::Start(a)) => return start(cli, a),
        Cmd::Update(UpdateCmd::Status(a)) => Command::UpdateStatus(a.clone()),
        Cmd::Update(UpdateCmd::Abort(a)) => Command::UpdateAbort(a.clone()),
        Cmd::History(a) => Command::History(a.clone()),
        Cmd::Audit(a) => Command::Audit(a.clone()),
        Cmd::Watch(WatchCli { id: Some(id) }) => return watch_update(cli, *id),
        Cmd::Watch(WatchCli { id: None }) => return watch_all(cli),
        Cmd::Artifact(ArtifactCmd::Inspect { file }) => return inspect(cli, file),
        Cmd::Rollout(RolloutCmd::Start(a)) => return rollout_start(cli, a),
        Cmd::Rollout(RolloutCmd::Status(a)) => Command::RolloutStatus(a.clone()),
        Cmd::Rollout(RolloutCmd::Watch(a)) => return rollout_watch(cli, a.id),
        Cmd::Rollout(RolloutCmd::Pause(a)) => Command::RolloutPause(a.clone()),
        Cmd::Rollout(RolloutCmd::Resume(a)) => Command::RolloutResume(a.clone()),
        Cmd::Rollout(RolloutCmd::Abort(a)) => Command::RolloutAbort(a.clone()),
        Cmd::Rollout(RolloutCmd::List) => Command::RolloutList(api::NoArgs {}),
    };
    let value = call(cli, &command)?;
    if cli.json {
        return Ok(());
    }
    match command {
        Command::List(_) => print_list(&value),
        Command::UpdateStatus(_) => print_status(&value),
        Command::History(_) => print_history(&value),
        Command::Audit(_) => print_audit(&value),
        Command::RolloutStatus(_)
        | Command::RolloutPause(_)
        | Command::RolloutResume(_)
        | Command::RolloutAbort(_) => print_rollout(&value),
        Command::RolloutList(_) => print_rollouts(&value),
        _ => print_value(&value, 0),
    }
    Ok(())
}

/// Exit code of a reset that came back on the previous image.
const EXIT_ROLLED_BACK: u8 = 10;
/// Exit code of a reset after which the SP did not answer again.
const EXIT_NOT_BACK: u8 = 11;

/// A reset's (or activation's) outcome: its line, and its failure.
fn reset_outcome(a: &Value) -> Result<String, Failure> {
    let outcome = a["outcome"].as_str().unwrap_or("?");
    let line = format!(
        "{} {}: {outcome} ({} trigger{}): {}",
        scalar(&a["sp"]),
        scalar(&a["component"]),
        scalar(&a["method"]),
        a["watchdog_ms"]
            .as_u64()
            .map_or_else(String::new, |ms| format!(", watchdog {ms} ms")),
        scalar(&a["detail"]),
    );
    match outcome {
        "rolled_back" => Err(Failure(EXIT_ROLLED_BACK, line)),
        "unreachable" => Err(Failure(EXIT_NOT_BACK, line)),
        _ => Ok(line),
    }
}

/// `reset`: exit by outcome (activated and reset 0, rolled back 10,
/// unreachable 11).
fn reset(cli: &Cli, a: &api::ResetArgs) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if !cli.json && std::io::stderr().is_terminal() {
        // An activation can take the reset budget plus the watchdog window.
        eprintln!(
            "resetting {} {}: waiting until it answers again…",
            a.sp, a.component
        );
    }
    let v = call(cli, &Command::Reset(a.clone()))?;
    let line = reset_outcome(&v)?;
    if !cli.json {
        println!("{line}");
        if let Some(why) = v["plain_because"].as_str() {
            println!("  plain trigger: {why}");
        }
    }
    Ok(())
}

/// `update start`: open the image with the caller's rights, hand the
/// daemon the open file.
fn start(cli: &Cli, a: &StartCli) -> Result<(), Failure> {
    let path = a
        .archive
        .as_ref()
        .or(a.image.as_ref())
        .expect("clap requires one");
    let image = open_image(path)?;
    let mut client = connect(cli)?;
    let mut request = a.request.clone();
    request.archive = a.archive.is_some();
    let command = Command::UpdateStart(request);
    let response = client
        .request_with(&command, Some(std::os::fd::AsFd::as_fd(&image)))
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    drop(image);
    let v = settle(cli, response)?;
    let (sp, component, slot) = (&a.request.sp, &a.request.component, a.request.slot);
    // The same id again names the same update, in whatever state it is:
    // one that already ended is reported as it ended.
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
            "update {} started: {sp} {component} slot {slot}",
            scalar(&v["id"])
        );
        print_artifact(&v["artifact"]);
    }
    match (
        a.watch || a.request.activate,
        v["id"].as_str().and_then(|s| s.parse().ok()),
    ) {
        (true, Some(id)) => watch_update(cli, id),
        _ => Ok(()),
    }
}

/// Open `path` for reading as the caller: a regular file (a FIFO or a
/// device is refused here rather than hanging or streaming forever).
fn open_image(path: &std::path::Path) -> Result<std::fs::File, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |why: String| Failure(5, format!("image {}: {why}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    Ok(file)
}

/// `artifact inspect`: what the reader sees in an archive.
fn inspect(cli: &Cli, path: &std::path::Path) -> Result<(), Failure> {
    let file = open_image(path)?;
    let archive = artifacts::HubrisArchive::read(std::io::BufReader::new(file))
        .map_err(|e| Failure(5, format!("{}: {e}", path.display())))?;
    let caboose = archive.caboose();
    let key = |tag: artifacts::Tag| -> Value {
        match caboose.map(|c| c.get(tag)) {
            None | Some(Ok(None)) => Value::Null,
            Some(Ok(Some(v))) => Value::from(String::from_utf8_lossy(v).into_owned()),
            Some(Err(e)) => serde_json::json!({ "error": e.to_string() }),
        }
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let header = &archive.info.header;
    let v = serde_json::json!({
        "file": path.display().to_string(),
        "archive_version": archive.archive_version,
        "app": { "name": archive.app.name, "board": archive.app.board, "chip": archive.app.chip },
        "chip": format!("{:?}", archive.chip).to_lowercase(),
        "image_name": archive.image_name,
        "git_rev": archive.git_rev,
        "image": {
            "base": format!("{:#010x}", archive.image_base),
            "bytes": archive.image.len(),
            "header_offset": format!("{:#x}", header.offset),
            "header_magic": format!("{:?}", header.magic).to_lowercase(),
            "total_image_len": header.total_image_len,
            "signed_data_after_caboose": archive.info.signed_data_after_caboose,
        },
        "caboose": caboose.map(|c| serde_json::json!({
            "bytes": c.payload().len() + 8,
            "empty": c.is_empty(),
            "NAME": key(artifacts::Tag::NAME),
            "VERS": key(artifacts::Tag::VERS),
            "GITC": key(artifacts::Tag::GITC),
            "BORD": key(artifacts::Tag::BORD),
            "SIGN": key(artifacts::Tag::SIGN),
        })),
        "aux_flash": archive.aux_flash.as_ref().map(|a| serde_json::json!({
            "bytes": a.aux_flash_size(),
            "chck": hex(&a.chck()),
            "chck_verified": true,
            "blobs": a.blobs().map(|(t, b)| serde_json::json!({ "tag": t.to_string(), "bytes": b.len() })).collect::<Vec<_>>(),
        })),
        "members": archive.members,
        "warnings": archive.warnings.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>(),
    });
    if cli.json {
        println!("{v}");
    } else {
        print_value(&v, 0);
    }
    Ok(())
}

/// Read a plan file, open the images it names (relative to its
/// directory): the plan with images as descriptor indices, and the files.
fn load_plan(path: &std::path::Path) -> Result<(RolloutSpec<usize>, Vec<std::fs::File>), Failure> {
    let bad = |why: String| Failure(5, format!("plan {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let spec: RolloutSpec<PathBuf> = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    // Each [[target]] header's line, so the daemon's errors can name it.
    let lines: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[target]]"))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut files = Vec::new();
    let mut targets = Vec::new();
    let count = spec.targets.len();
    for (n, t) in spec.targets.into_iter().enumerate() {
        let image = base.join(&t.image);
        let index = match paths.iter().position(|p| *p == image) {
            Some(i) => i,
            None => {
                files.push(open_image(&image)?);
                paths.push(image);
                paths.len() - 1
            }
        };
        targets.push(api::TargetSpec {
            sps: t.sps,
            kind: t.kind,
            all: t.all,
            component: t.component,
            slot: t.slot,
            image: index,
            // Trusted only if every target is a [[target]] table.
            line: lines.get(n).copied().filter(|_| lines.len() == count),
        });
    }
    let plan = RolloutSpec {
        max_concurrent: spec.max_concurrent,
        canary: spec.canary,
        waves: spec.waves,
        stop_after_failures: spec.stop_after_failures,
        pause_between_waves: spec.pause_between_waves,
        after: spec.after,
        allow_self: spec.allow_self,
        targets,
    };
    Ok((plan, files))
}

/// `rollout start`: the plan with its images' descriptors.
fn rollout_start(cli: &Cli, a: &RolloutStartCli) -> Result<(), Failure> {
    let (plan, files) = load_plan(&a.plan)?;
    let mut client = connect(cli)?;
    let fds: Vec<std::os::fd::BorrowedFd<'_>> =
        files.iter().map(std::os::fd::AsFd::as_fd).collect();
    let command = Command::RolloutStart(api::RolloutStartArgs { id: a.id, plan });
    let response = client
        .request_with_fds(&command, &fds)
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    drop(files);
    let v = settle(cli, response)?;
    let id: Option<uuid::Uuid> = v["id"].as_str().and_then(|s| s.parse().ok());
    if !cli.json {
        let c = &v["counts"];
        println!(
            "rollout {} started: {} targets in {} waves (canary first), {} at a time",
            scalar(&v["id"]),
            v["targets"].as_array().map_or(0, Vec::len),
            scalar(&v["waves"]),
            scalar(&v["max_concurrent"]),
        );
        if c["complete"].as_u64().unwrap_or(0) > 0 || v["phase"] != "running" {
            println!("(already under way: {})", scalar(&v["phase"]));
        }
    }
    match (a.watch, id) {
        (true, Some(id)) => rollout_watch(cli, id),
        _ => Ok(()),
    }
}

/// Follow a rollout: a bar per running target and a total bar; exit 0
/// only if every target completed.
fn rollout_watch(cli: &Cli, id: uuid::Uuid) -> Result<(), Failure> {
    let mut client = connect(cli)?;
    let mut response = client
        .request(&Command::RolloutWatch(api::RolloutArgs { id }))
        .map_err(|e| Failure(3, e.to_string()))?;
    let multi = indicatif::MultiProgress::new();
    if cli.json {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let total = multi.add(ProgressBar::new(1));
    total.set_style(style("total      [{bar:40}] {bytes}/{total_bytes} {msg}"));
    let mut bars: std::collections::HashMap<String, ProgressBar> = Default::default();
    loop {
        let Some(record) = response.event.clone() else {
            total.finish_and_clear();
            for (_, b) in bars.drain() {
                b.finish_and_clear();
            }
            let record = settle(cli, response)?;
            if !cli.json {
                print_rollout(&record);
            }
            let c = &record["counts"];
            return if record["phase"] == "complete" && c["failed"].as_u64() == Some(0) {
                Ok(())
            } else {
                Err(Failure(
                    7,
                    format!(
                        "rollout {} {}: {}",
                        scalar(&record["id"]),
                        scalar(&record["phase"]),
                        record["reason"]
                            .as_str()
                            .unwrap_or("not every target completed")
                    ),
                ))
            };
        };
        if cli.json {
            println!("{}", serde_json::to_string(&response).unwrap_or_default());
        }
        let targets = record["targets"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| targets.iter().filter_map(|t| t[k].as_u64()).sum::<u64>();
        total.set_length(sum("total_bytes").max(1));
        total.set_position(sum("bytes_acked"));
        let c = &record["counts"];
        total.set_message(format!(
            "{} done, {} running, {} failed, {} pending; {} eta {}",
            scalar(&c["complete"]),
            scalar(&c["running"]),
            scalar(&c["failed"]),
            scalar(&c["pending"]),
            rate(&record["rate_bytes_per_second"]),
            eta(&record["eta_s"]),
        ));
        for t in &targets {
            let key = format!("{} {}", scalar(&t["sp"]), scalar(&t["component"]));
            if t["state"] == "running" {
                let bar = bars.entry(key.clone()).or_insert_with(|| {
                    let b = multi.insert_before(&total, ProgressBar::new(1));
                    b.set_style(style(&format!(
                        "{key:<28} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}}"
                    )));
                    b
                });
                bar.set_length(t["total_bytes"].as_u64().unwrap_or(1));
                bar.set_position(t["bytes_acked"].as_u64().unwrap_or(0));
                bar.set_message(format!(
                    "{} {} eta {}",
                    scalar(&t["phase"]),
                    rate(&t["rate_bytes_per_second"]),
                    eta(&t["eta_s"])
                ));
            } else if let Some(b) = bars.remove(&key) {
                b.finish_and_clear();
                if t["state"] != "pending" {
                    let _ = multi.println(format!("{key}: {}", scalar(&t["state"])));
                }
            }
        }
        response = match client.next_response() {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Failure(3, "mgsd closed the connection".into())),
            Err(e) => return Err(Failure(3, e.to_string())),
        };
    }
}

fn rate(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |b| format!("{:.1} MiB/s", b as f64 / 1048576.0))
}

fn eta(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |s| {
        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
    })
}

fn print_rollout(v: &Value) {
    let c = &v["counts"];
    println!(
        "rollout {}: {} (wave {} of {}), {} complete, {} running, {} failed, {} pending, {} skipped; {} eta {}",
        scalar(&v["id"]),
        scalar(&v["phase"]),
        v["current_wave"].as_u64().unwrap_or(0) + 1,
        scalar(&v["waves"]),
        scalar(&c["complete"]),
        scalar(&c["running"]),
        scalar(&c["failed"]),
        scalar(&c["pending"]),
        scalar(&c["skipped"]),
        rate(&v["rate_bytes_per_second"]),
        eta(&v["eta_s"]),
    );
    if let Some(reason) = v["reason"].as_str() {
        println!("  {reason}");
    }
    println!(
        "  {:<10} {:<16} {:>4} {:<9} {:<10} {:>5} {:>11} {:>8}  FAILURE",
        "SP", "COMPONENT", "WAVE", "STATE", "PHASE", "DONE", "RATE", "ETA"
    );
    for t in v["targets"].as_array().into_iter().flatten() {
        println!(
            "  {:<10} {:<16} {:>4} {:<9} {:<10} {:>4}% {:>11} {:>8}  {}",
            scalar(&t["sp"]),
            scalar(&t["component"]),
            scalar(&t["wave"]),
            scalar(&t["state"]),
            scalar(&t["phase"]),
            percent(t),
            rate(&t["rate_bytes_per_second"]),
            eta(&t["eta_s"]),
            t["failure"].as_str().unwrap_or("")
        );
    }
}

fn print_rollouts(v: &Value) {
    println!(
        "{:<36} {:<9} {:>7} {:>8} {:>6} {:>7}",
        "ID", "PHASE", "TARGETS", "COMPLETE", "FAILED", "RUNNING"
    );
    for r in v.as_array().into_iter().flatten() {
        let c = &r["counts"];
        println!(
            "{:<36} {:<9} {:>7} {:>8} {:>6} {:>7}",
            scalar(&r["id"]),
            scalar(&r["phase"]),
            r["targets"].as_array().map_or(0, Vec::len),
            scalar(&c["complete"]),
            scalar(&c["failed"]),
            scalar(&c["running"]),
        );
    }
}

fn print_audit(v: &Value) {
    println!(
        "{:<20} {:>6} {:>6} {:>8} {:<13} {:<10} {:<16} {:<36} RESULT",
        "TIME (UTC)", "UID", "GID", "PID", "COMMAND", "SP", "COMPONENT", "UPDATE"
    );
    for e in v.as_array().into_iter().flatten() {
        let time = e["time_unix_ms"]
            .as_u64()
            .map(|ms| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(t).to_string()
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:>6} {:>6} {:>8} {:<13} {:<10} {:<16} {:<36} {}",
            time.trim_end_matches('Z'),
            scalar(&e["uid"]),
            scalar(&e["gid"]),
            scalar(&e["pid"]),
            scalar(&e["command"]),
            scalar(&e["sp"]),
            scalar(&e["component"]),
            scalar(&e["update_id"]),
            scalar(&e["result"])
        );
    }
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
        "{:<10} {:<5} {:<7} {:<13} {:<12} {:<5} {:<8} {:<8} UPDATE",
        "NAME", "UP", "LINK", "SERIAL", "MODEL", "POWER", "SP", "ROT"
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
            "{:<10} {:<5} {:<7} {:<13} {:<12} {:<5} {:<8} {:<8} {}",
            scalar(&sp["name"]),
            if sp["reachable"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            scalar(&sp["link"]),
            scalar(&sp["serial"]),
            scalar(&sp["model"]),
            scalar(&sp["power_state"]),
            scalar(&sp["versions"]["sp"]),
            scalar(&sp["versions"]["rot"]),
            update
        );
    }
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
            // An activated update says so.
            match (r["phase"].as_str(), r["activation"]["outcome"].as_str()) {
                (Some("complete"), Some("activated")) => "activated".to_string(),
                _ => scalar(&r["phase"]),
            },
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

/// An archive's caboose, as an update's record carries it.
fn print_artifact(a: &Value) {
    if a.is_object() {
        println!(
            "  archive: {} {} for {} (git {}){}",
            scalar(&a["name"]),
            scalar(&a["vers"]),
            scalar(&a["bord"]),
            scalar(&a["gitc"]),
            a["image_name"]
                .as_str()
                .map_or(String::new(), |n| format!(", image {n}"))
        );
    }
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
        if d["aux_flash_bytes"].as_u64().unwrap_or(0) > 0 {
            println!(
                "    of which aux flash: {} bytes",
                scalar(&d["aux_flash_bytes"])
            );
        }
        print_artifact(&d["artifact"]);
        let a = &d["activation"];
        if a.is_object() {
            println!(
                "    activation: {} ({} trigger): {}",
                scalar(&a["outcome"]),
                scalar(&a["method"]),
                scalar(&a["detail"])
            );
        } else if d["phase"] == "activating" {
            println!("    activation: resetting the SP into the new image");
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
        .request(&Command::Watch(api::WatchArgs { id: Some(id) }))
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
    if let Some(activation) = record.get("activation").filter(|a| !a.is_null()) {
        let line = reset_outcome(activation).map_err(|Failure(code, line)| {
            Failure(
                code,
                format!("update {} delivered; {line}", scalar(&record["id"])),
            )
        })?;
        if !cli.json {
            println!("{line}");
        }
    }
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
        .request(&Command::Watch(api::WatchArgs { id: None }))
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
    activating: bool,
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
            activating: false,
        }
    }

    fn show(&mut self, record: &Value) {
        if self.hidden {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| ProgressBar::new(1));
        if record["phase"] == "activating" {
            if !self.activating {
                self.activating = true;
                bar.set_style(style(
                    "activating {spinner} resetting the SP into the new image ({elapsed})",
                ));
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
            }
        } else if record["phase"] == "preparing" {
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
