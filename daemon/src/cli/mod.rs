//! `mgsctl`, the operator's command-line client for mgsd's control socket,
//! as a library: [`main`] parses the arguments and runs the command. Every
//! answer is read into its typed view (`crate::api::views`); tables and
//! progress bars are in [`print`] and [`watch`], rollouts in [`rollout`].
//!
//! Exit codes: 0 success; 1 other error; 2 usage; 3 the daemon cannot be
//! reached; 4 unknown SP or update id; 5 invalid request (bad component,
//! slot or image); 6 SP error or SP unreachable; 7 the update failed or was
//! aborted (watched, or started again with its id after it ended);
//! 8 conflict (update id in use, another update running, abort refused);
//! 9 permission denied (see the daemon's `[control.access]`); 10 after a
//! reset the SP runs its previous image (rolled back); 11 after a reset
//! the SP did not answer again within the budget.

mod artifact;
pub mod console;
mod print;
mod rollout;
mod watch;

use crate::api::views::{ResetView, UpdateRecord};
use crate::api::{self, Command, ErrorCode, Response};
use crate::client::Client;
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::process::ExitCode;

/// Talk to mgsd: list and inspect SPs, reset them, update their firmware.
#[derive(Debug, Parser)]
#[command(name = "mgsctl", version, about, after_help = EXIT_CODES)]
pub struct Cli {
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
    /// Talk to a remote daemon through its HTTP API instead of the
    /// socket (`https://scrimlet-1:12225`); the commands are the same.
    /// Given before the command, as are --cacert, --cert and --key.
    #[arg(long, env = "MGSD_HTTP", value_name = "URL")]
    http: Option<String>,
    /// With --http: PEM CA certificates to trust the daemon by.
    #[arg(long, requires = "http")]
    cacert: Option<PathBuf>,
    /// With --http: PEM client certificate (its CN decides what you may do).
    #[arg(long, requires = "http")]
    cert: Option<PathBuf>,
    /// With --http: the client certificate's PEM key.
    #[arg(long, requires = "http")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 other error, 2 usage, 3 daemon unreachable, \
4 unknown SP or update, 5 invalid request, 6 SP error or unreachable, 7 update failed or aborted, 8 conflict, \
9 permission denied, 10 rolled back (the SP came back on its previous image), 11 the SP did not come back \
after a reset.";

// Each command's arguments are the wire's request structs (`crate::api`),
// declared once; `run` maps each subcommand to its request in one line.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Daemon and protocol versions.
    Version,
    /// Daemon health summary.
    Health,
    /// All SPs: reachability, identity, firmware versions, running updates.
    List,
    /// One SP's state (as mgsd last read it: see state_refresh_ms).
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
    Artifact(artifact::ArtifactCmd),
    /// Rack rollouts: many SPs updated as one plan, with a canary, waves,
    /// a concurrency cap and a stop rule (see docs/rollouts.md).
    #[command(subcommand)]
    Rollout(rollout::RolloutCmd),
    /// A sled's host serial console in this terminal, starting with the
    /// scrollback. Escapes after a newline: ~. leaves, ~B sends a break,
    /// ~? lists them. Typing needs operate access and is one session at a
    /// time; --read-only watches.
    Console(api::ConsoleAttachArgs),
    /// End the typing session on an SP's console by force (its client is
    /// told), freeing it for you.
    ConsoleDetach(api::ConsoleDetachArgs),
    /// Host phase-2 recovery: images for recovering hosts, and their
    /// progress.
    #[command(subcommand)]
    Recovery(RecoveryCmd),
}

#[derive(Debug, Subcommand)]
enum RecoveryCmd {
    /// Keep a phase-2 image for recovering hosts; prints its id (SHA-256).
    Upload {
        /// The phase-2 image file (mgsctl opens it and hands mgsd the open
        /// file).
        file: PathBuf,
    },
    /// The phase-2 images held, most recently requested first.
    Images,
    /// How far the SP's recovering host has fetched (its most recent
    /// phase-2 request).
    Status(api::SpArgs),
    /// Forget the SP's most recent phase-2 request.
    Clear(api::SpArgs),
    /// Set the installinator image ids the sled reads over IPCC.
    InstallinatorSet(api::InstallinatorArgs),
    /// Clear them.
    InstallinatorClear(api::SpArgs),
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
pub(crate) struct Failure(u8, String);

/// Exit code of a reset that came back on the previous image.
const EXIT_ROLLED_BACK: u8 = 10;
/// Exit code of a reset after which the SP did not answer again.
const EXIT_NOT_BACK: u8 = 11;
/// Exit code of an update that failed or was aborted.
const EXIT_UPDATE_FAILED: u8 = 7;

fn exit_code(code: ErrorCode) -> u8 {
    use ErrorCode::*;
    match code {
        UnknownSp | UnknownUpdate | UnknownRollout | UnknownImage => 4,
        BadRequest | RequestTooLarge | UnsupportedVersion | BadComponent | BadSlot
        | ImageUnreadable | BadImage | BadPlan | ConsoleUnavailable => 5,
        SpError | SpUnreachable => 6,
        UpdateConflict | UpdateRunning | AbortRefused | RolloutState | ConsoleHeld => 8,
        PermissionDenied => 9,
        Busy => 3,
        ShuttingDown | StateUnwritable | Internal => 1,
    }
}

/// Parse the arguments and run the command; the process's exit code.
pub fn main() -> ExitCode {
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

impl Cli {
    fn connect(&self) -> Result<Client, Failure> {
        if let Some(url) = &self.http {
            let remote = crate::client::Remote {
                url: url.clone(),
                cacert: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            };
            return Client::http(&remote)
                .map_err(|e| Failure(3, format!("cannot use mgsd's HTTP API at {url}: {e}")));
        }
        Client::connect(&self.socket).map_err(|e| {
            Failure(
                3,
                format!(
                    "cannot reach mgsd at {}: {e} (is it running? see --socket or MGSD_SOCKET)",
                    self.socket.display()
                ),
            )
        })
    }

    /// One request, one answer, read as `T`.
    fn call<T: DeserializeOwned>(&self, command: &Command) -> Result<T, Failure> {
        let mut client = self.connect()?;
        let response = client
            .request(command)
            .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
        self.settle(response)
    }

    /// The `ok` value of `response` as `T` (printed first with --json),
    /// or its error as a failure.
    fn settle<T: DeserializeOwned>(&self, response: Response) -> Result<T, Failure> {
        if self.json {
            println!("{}", serde_json::to_string(&response).unwrap_or_default());
        }
        match (response.ok, response.error) {
            (Some(v), _) => serde_json::from_value(v)
                .map_err(|e| Failure(1, format!("mgsd answered something unexpected: {e}"))),
            (_, Some(e)) => Err(Failure(exit_code(e.code), e.message)),
            _ => Err(Failure(1, "empty response from mgsd".into())),
        }
    }

    /// A command whose answer is shown as it is (keys and values).
    fn show<T: DeserializeOwned + serde::Serialize>(
        &self,
        command: Command,
    ) -> Result<(), Failure> {
        let answer: T = self.call(&command)?;
        if !self.json {
            print::value(&serde_json::to_value(&answer).unwrap_or_default(), 0);
        }
        Ok(())
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    use crate::api::views::*;
    let print = |f: fn(&Cli, Command) -> Result<(), Failure>, c| f(cli, c);
    match &cli.cmd {
        Cmd::Version => print(Cli::show::<VersionInfo>, Command::Version(api::NoArgs {})),
        Cmd::Health => print(Cli::show::<Health>, Command::Health(api::NoArgs {})),
        Cmd::List => {
            let rows: Vec<SpRow> = cli.call(&Command::List(api::NoArgs {}))?;
            if !cli.json {
                print::list(&rows);
            }
            Ok(())
        }
        Cmd::State(a) => print(Cli::show::<SpStateView>, Command::State(a.clone())),
        Cmd::Caboose(a) => print(Cli::show::<CabooseView>, Command::Caboose(a.clone())),
        Cmd::Power(PowerCmd::Get(a)) => print(Cli::show::<PowerView>, Command::PowerGet(a.clone())),
        Cmd::Power(PowerCmd::Set(a)) => print(Cli::show::<PowerView>, Command::PowerSet(a.clone())),
        Cmd::Slot(SlotCmd::Get(a)) => print(Cli::show::<SlotView>, Command::SlotGet(a.clone())),
        Cmd::Slot(SlotCmd::Set(a)) => print(Cli::show::<SlotSetView>, Command::SlotSet(a.clone())),
        Cmd::Reset(a) => reset(cli, a),
        Cmd::Update(UpdateCmd::Start(a)) => start(cli, a),
        Cmd::Update(UpdateCmd::Status(a)) => {
            let v: UpdateStatusView = cli.call(&Command::UpdateStatus(a.clone()))?;
            if !cli.json {
                print::status(&v);
            }
            Ok(())
        }
        Cmd::Update(UpdateCmd::Abort(a)) => {
            print(Cli::show::<AbortView>, Command::UpdateAbort(a.clone()))
        }
        Cmd::History(a) => {
            let rows: Vec<HistoryRow> = cli.call(&Command::History(a.clone()))?;
            if !cli.json {
                print::history(&rows);
            }
            Ok(())
        }
        Cmd::Audit(a) => {
            let rows: Vec<AuditEntry> = cli.call(&Command::Audit(a.clone()))?;
            if !cli.json {
                print::audit(&rows);
            }
            Ok(())
        }
        Cmd::Watch(WatchCli { id: Some(id) }) => watch::update(cli, *id),
        Cmd::Watch(WatchCli { id: None }) => watch::all(cli),
        Cmd::Artifact(a) => artifact::run(cli, a),
        Cmd::Rollout(a) => rollout::run(cli, a),
        Cmd::Console(a) => console::run(cli, a),
        Cmd::ConsoleDetach(a) => {
            let v: serde_json::Value = cli.call(&Command::ConsoleDetach(a.clone()))?;
            if !cli.json {
                match v.get("ended").and_then(|e| e.as_str()) {
                    Some(holder) => println!("{} console: ended the session of {holder}", a.sp),
                    None => println!("{} console: no typing session was attached", a.sp),
                }
            }
            Ok(())
        }
        Cmd::Recovery(r) => recovery(cli, r),
    }
}

fn recovery(cli: &Cli, r: &RecoveryCmd) -> Result<(), Failure> {
    use api::views::{Phase2ImageView, Phase2ProgressView};
    match r {
        RecoveryCmd::Upload { file } => {
            let image = open_image(file)?;
            let mut client = cli.connect()?;
            let response = client
                .request_with(
                    &Command::RecoveryUpload(api::NoArgs {}),
                    Some(std::os::fd::AsFd::as_fd(&image)),
                )
                .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
            let v: Phase2ImageView = cli.settle(response)?;
            if !cli.json {
                println!("{} ({} bytes) kept for recovery", v.sha256_hash, v.len);
            }
        }
        RecoveryCmd::Images => {
            let v: Vec<Phase2ImageView> = cli.call(&Command::RecoveryImages(api::NoArgs {}))?;
            if !cli.json {
                for i in &v {
                    println!("{}  {} bytes", i.sha256_hash, i.len);
                }
            }
        }
        RecoveryCmd::Status(a) => {
            let v: Phase2ProgressView = cli.call(&Command::RecoveryStatus(a.clone()))?;
            if !cli.json {
                match v {
                    Phase2ProgressView::None => println!("{}: no phase-2 request seen", a.sp),
                    Phase2ProgressView::Available {
                        image_id,
                        offset,
                        total_size,
                        age_ms,
                    } => {
                        let pct = match total_size {
                            0 => "image not held here".to_string(),
                            t => format!("{:.1}%", offset as f64 * 100.0 / t as f64),
                        };
                        println!(
                            "{}: image {} offset {offset} of {total_size} ({pct}), {age_ms} ms ago",
                            a.sp, image_id.sha256_hash
                        );
                    }
                }
            }
        }
        RecoveryCmd::Clear(a) => {
            let _: serde_json::Value = cli.call(&Command::RecoveryClear(a.clone()))?;
        }
        RecoveryCmd::InstallinatorSet(a) => {
            let _: serde_json::Value = cli.call(&Command::InstallinatorSet(a.clone()))?;
        }
        RecoveryCmd::InstallinatorClear(a) => {
            let _: serde_json::Value = cli.call(&Command::InstallinatorClear(a.clone()))?;
        }
    }
    Ok(())
}

/// A reset's (or activation's) outcome: its line, and its failure.
fn reset_outcome(a: &api::views::Activation) -> Result<String, Failure> {
    use api::views::Outcome;
    let line = format!(
        "{} {}: {} ({} trigger{}): {}",
        a.sp,
        a.component,
        a.outcome.as_str(),
        a.method.as_str(),
        a.watchdog_ms
            .map_or_else(String::new, |ms| format!(", watchdog {ms} ms")),
        a.detail,
    );
    match a.outcome {
        Outcome::RolledBack => Err(Failure(EXIT_ROLLED_BACK, line)),
        Outcome::Unreachable => Err(Failure(EXIT_NOT_BACK, line)),
        Outcome::Activated | Outcome::Reset => Ok(line),
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
    let v: ResetView = cli.call(&Command::Reset(a.clone()))?;
    let line = reset_outcome(&v.activation)?;
    if !cli.json {
        println!("{line}");
        if let Some(why) = &v.activation.plain_because {
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
    let mut client = cli.connect()?;
    let mut request = a.request.clone();
    request.archive = a.archive.is_some();
    let command = Command::UpdateStart(request);
    let response = client
        .request_with(&command, Some(std::os::fd::AsFd::as_fd(&image)))
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    drop(image);
    let r: UpdateRecord = cli.settle(response)?;
    let (sp, component, slot) = (&a.request.sp, &a.request.component, a.request.slot);
    // The same id again names the same update, in whatever state it is:
    // one that already ended is reported as it ended.
    if r.phase == api::views::Phase::Complete {
        if !cli.json {
            println!(
                "update {} already complete: {sp} {component} slot {slot}",
                r.id
            );
        }
        return Ok(());
    }
    if r.phase.is_terminal() {
        return finished(cli, &r);
    }
    if !cli.json {
        println!("update {} started: {sp} {component} slot {slot}", r.id);
        print::artifact(r.artifact.as_ref());
    }
    if a.watch || a.request.activate {
        return watch::update(cli, r.id);
    }
    Ok(())
}

/// An update's end: exit 0 only if it is complete (and, when activated,
/// the new image runs).
fn finished(cli: &Cli, r: &UpdateRecord) -> Result<(), Failure> {
    if let Some(activation) = &r.activation {
        let line = reset_outcome(activation).map_err(|Failure(code, line)| {
            Failure(code, format!("update {} delivered; {line}", r.id))
        })?;
        if !cli.json {
            println!("{line}");
        }
    }
    if r.phase == api::views::Phase::Complete {
        if !cli.json {
            let verified = if r.hash_verified {
                ", hash verified"
            } else {
                ""
            };
            println!("update {} complete{verified}", r.id);
        }
        Ok(())
    } else {
        let phase = r.phase.as_str();
        let why = r.failure.as_deref().unwrap_or(phase);
        Err(Failure(
            EXIT_UPDATE_FAILED,
            format!("update {} {phase}: {why}", r.id),
        ))
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
