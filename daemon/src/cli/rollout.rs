//! `mgsctl rollout`: plans read from files (their images opened here,
//! with the caller's rights), started, followed and steered.

use super::print;
use super::watch::{event, next, style};
use super::{open_image, Cli, Failure};
use crate::api::views::{RolloutPhase, RolloutView, TargetState};
use crate::api::{self, Command, RolloutSpec};
use clap::Subcommand;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub(super) enum RolloutCmd {
    /// Check a plan (a TOML file) and start it; the images it names are
    /// opened here, with your rights, and handed to the daemon.
    Start(StartCli),
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
pub(super) struct StartCli {
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

pub(super) fn run(cli: &Cli, cmd: &RolloutCmd) -> Result<(), Failure> {
    let one = |command| -> Result<(), Failure> {
        let v: RolloutView = cli.call(&command)?;
        if !cli.json {
            print::rollout(&v);
        }
        Ok(())
    };
    match cmd {
        RolloutCmd::Start(a) => start(cli, a),
        RolloutCmd::Watch(a) => watch(cli, a.id),
        RolloutCmd::Status(a) => one(Command::RolloutStatus(a.clone())),
        RolloutCmd::Pause(a) => one(Command::RolloutPause(a.clone())),
        RolloutCmd::Resume(a) => one(Command::RolloutResume(a.clone())),
        RolloutCmd::Abort(a) => one(Command::RolloutAbort(a.clone())),
        RolloutCmd::List => {
            let all: Vec<RolloutView> = cli.call(&Command::RolloutList(api::NoArgs {}))?;
            if !cli.json {
                print::rollouts(&all);
            }
            Ok(())
        }
    }
}

/// Read a plan file, open the images it names (relative to its
/// directory): the plan with images as descriptor indices, and the files.
fn load_plan(path: &Path) -> Result<(RolloutSpec<usize>, Vec<std::fs::File>), Failure> {
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
    let base = path.parent().unwrap_or(Path::new("."));
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
fn start(cli: &Cli, a: &StartCli) -> Result<(), Failure> {
    let (plan, files) = load_plan(&a.plan)?;
    let mut client = cli.connect()?;
    let fds: Vec<std::os::fd::BorrowedFd<'_>> =
        files.iter().map(std::os::fd::AsFd::as_fd).collect();
    let command = Command::RolloutStart(api::RolloutStartArgs { id: a.id, plan });
    let response = client
        .request_with_fds(&command, &fds)
        .map_err(|e| Failure(3, format!("talking to mgsd: {e}")))?;
    drop(files);
    let v: RolloutView = cli.settle(response)?;
    if !cli.json {
        println!(
            "rollout {} started: {} targets in {} waves (canary first), {} at a time",
            v.id,
            v.targets.len(),
            v.waves,
            v.max_concurrent,
        );
        if v.counts.complete > 0 || v.phase != RolloutPhase::Running {
            println!("(already under way: {})", v.phase.as_str());
        }
    }
    if a.watch {
        return watch(cli, v.id);
    }
    Ok(())
}

/// Follow a rollout: a bar per running target and a total bar; exit 0
/// only if every target completed.
fn watch(cli: &Cli, id: uuid::Uuid) -> Result<(), Failure> {
    let mut client = cli.connect()?;
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
        let Some(v) = event::<RolloutView>(&response)? else {
            total.finish_and_clear();
            for (_, b) in bars.drain() {
                b.finish_and_clear();
            }
            let v: RolloutView = cli.settle(response)?;
            if !cli.json {
                print::rollout(&v);
            }
            return if v.phase == RolloutPhase::Complete && v.counts.failed == 0 {
                Ok(())
            } else {
                let why = v.reason.as_deref().unwrap_or("not every target completed");
                Err(Failure(
                    super::EXIT_UPDATE_FAILED,
                    format!("rollout {} {}: {why}", v.id, v.phase.as_str()),
                ))
            };
        };
        if cli.json {
            println!("{}", serde_json::to_string(&response).unwrap_or_default());
        }
        total.set_length(v.targets.iter().map(|t| t.total_bytes).sum::<u64>().max(1));
        total.set_position(v.targets.iter().map(|t| t.bytes_acked).sum());
        let c = &v.counts;
        total.set_message(format!(
            "{} done, {} running, {} failed, {} pending; {} eta {}",
            c.complete,
            c.running,
            c.failed,
            c.pending,
            print::rate(Some(v.rate_bytes_per_second)),
            print::eta(v.eta_s),
        ));
        for t in &v.targets {
            let key = format!("{} {}", t.sp, t.component);
            if t.state == TargetState::Running {
                let bar = bars.entry(key.clone()).or_insert_with(|| {
                    let b = multi.insert_before(&total, ProgressBar::new(1));
                    b.set_style(style(&format!(
                        "{key:<28} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}}"
                    )));
                    b
                });
                bar.set_length(t.total_bytes.max(1));
                bar.set_position(t.bytes_acked);
                bar.set_message(format!(
                    "{} {} eta {}",
                    t.phase.map_or("-", |p| p.as_str()),
                    print::rate(t.rate_bytes_per_second),
                    print::eta(t.eta_s)
                ));
            } else if let Some(b) = bars.remove(&key) {
                b.finish_and_clear();
                if t.state != TargetState::Pending {
                    let _ = multi.println(format!("{key}: {}", t.state.as_str()));
                }
            }
        }
        response = next(&mut client)?;
    }
}
