//! `mgsctl`'s tables and lines, from the typed answers.

use crate::api::views::{
    ArtifactInfo, AuditEntry, HistoryRow, Phase, RolloutView, SpRow, UpdateStatusView,
};
use serde_json::Value;

/// Any answer, as indented `key: value` lines.
pub(super) fn value(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) => {
                        println!("{pad}{k}:");
                        value(v, indent + 2);
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

/// An optional value, `-` when absent.
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A Unix-ms time as RFC 3339 to the second (UTC, no `Z`).
fn time(ms: Option<u64>) -> String {
    ms.map(|ms| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        humantime::format_rfc3339_seconds(t)
            .to_string()
            .trim_end_matches('Z')
            .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

pub(super) fn rate(bytes_per_second: Option<u64>) -> String {
    bytes_per_second.map_or("-".into(), |b| format!("{:.1} MiB/s", b as f64 / 1048576.0))
}

pub(super) fn eta(seconds: Option<u64>) -> String {
    seconds.map_or("-".into(), |s| {
        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
    })
}

pub(super) fn list(rows: &[SpRow]) {
    println!(
        "{:<10} {:<5} {:<7} {:<13} {:<12} {:<5} {:<8} {:<8} UPDATE",
        "NAME", "UP", "LINK", "SERIAL", "MODEL", "POWER", "SP", "ROT"
    );
    for sp in rows {
        let update = match (&sp.active_update, sp.unknown_updates.first()) {
            (Some(u), _) => format!("{} {} {}%", u.component, u.phase.as_str(), u.percent()),
            (None, Some(u)) => format!(
                "{} held by an unknown client ({})",
                u.component,
                or_dash(u.sp_status.id())
            ),
            (None, None) => "-".to_string(),
        };
        println!(
            "{:<10} {:<5} {:<7} {:<13} {:<12} {:<5} {:<8} {:<8} {}",
            sp.name,
            if sp.reachable { "yes" } else { "no" },
            or_dash(sp.link.as_deref()),
            or_dash(sp.serial.as_deref()),
            or_dash(sp.model.as_deref()),
            or_dash(sp.power_state.as_deref()),
            or_dash(sp.versions.sp.as_deref()),
            or_dash(sp.versions.rot.as_deref()),
            update
        );
    }
}

pub(super) fn history(rows: &[HistoryRow]) {
    println!(
        "{:<20} {:<10} {:<16} {:<36} {:<9} {:>9} {:>10}  FAILURE",
        "FINISHED (UTC)", "SP", "COMPONENT", "ID", "OUTCOME", "DURATION", "RATE"
    );
    for r in rows {
        let u = &r.record;
        let duration = r
            .duration_ms
            .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        // An activated update says so.
        let outcome = match (&u.phase, u.activation.as_ref().map(|a| a.outcome)) {
            (Phase::Complete, Some(crate::api::views::Outcome::Activated)) => "activated",
            (phase, _) => phase.as_str(),
        };
        println!(
            "{:<20} {:<10} {:<16} {:<36} {:<9} {:>9} {:>10}  {}",
            time(u.finished_unix_ms),
            u.sp,
            u.component,
            u.id,
            outcome,
            duration,
            rate(r.mean_bytes_per_second),
            u.failure.as_deref().unwrap_or("")
        );
    }
}

pub(super) fn audit(rows: &[AuditEntry]) {
    println!(
        "{:<20} {:>6} {:>6} {:>8} {:<13} {:<10} {:<16} {:<36} RESULT",
        "TIME (UTC)", "UID", "GID", "PID", "COMMAND", "SP", "COMPONENT", "UPDATE"
    );
    for e in rows {
        println!(
            "{:<20} {:>6} {:>6} {:>8} {:<13} {:<10} {:<16} {:<36} {}",
            time(Some(e.time_unix_ms)),
            e.uid,
            e.gid,
            or_dash(e.pid),
            e.command,
            or_dash(e.sp.as_deref()),
            or_dash(e.component.as_deref()),
            or_dash(e.update_id),
            e.result
        );
    }
}

/// An archive's caboose, as an update's record carries it.
pub(super) fn artifact(a: Option<&ArtifactInfo>) {
    if let Some(a) = a {
        println!(
            "  archive: {} {} for {} (git {}){}",
            or_dash(a.name.as_deref()),
            or_dash(a.vers.as_deref()),
            or_dash(a.bord.as_deref()),
            or_dash(a.gitc.as_deref()),
            a.image_name
                .as_deref()
                .map_or(String::new(), |n| format!(", image {n}"))
        );
    }
}

pub(super) fn status(v: &UpdateStatusView) {
    use crate::api::views::SpUpdateState as S;
    let (state, detail) = match &v.sp_status {
        S::None => ("none", String::new()),
        S::Preparing {
            erase_current,
            erase_total,
            ..
        } => (
            "preparing",
            format!(
                " (erasing sector {}/{})",
                or_dash(*erase_current),
                or_dash(*erase_total)
            ),
        ),
        S::AuxFlashScanned { .. } => ("aux flash scanned", String::new()),
        S::InProgress {
            bytes_received,
            total_size,
            ..
        } => (
            "in progress",
            format!(" ({bytes_received}/{total_size} bytes received)"),
        ),
        S::Complete { .. } => ("complete", String::new()),
        S::Aborted { .. } => ("aborted", String::new()),
        S::Failed { code, .. } => ("failed", format!(" (code {code})")),
        S::RotError { error, .. } => ("rot error", format!(" ({error})")),
    };
    println!("{} {}: {state}{detail}", v.sp, v.component);
    if let Some(id) = v.sp_status.id() {
        let whose = match v.sp_status_holder {
            Some(crate::api::views::Holder::UnknownClient) => {
                " (held by an unknown client: `update abort` takes this id, `update start --take-over` replaces it)"
            }
            _ => "",
        };
        println!("  update id: {id}{whose}");
    }
    if v.sp_status_age_ms > 0 {
        println!("  (as the SP reported {} ms ago)", v.sp_status_age_ms);
    }
    let Some(d) = &v.delivery else {
        return;
    };
    println!("  daemon delivery of {}:", d.id);
    println!("    phase: {}", d.phase.as_str());
    println!(
        "    bytes: {}/{} ({}%)",
        d.bytes_acked,
        d.total_bytes,
        d.percent()
    );
    println!(
        "    chunks sent: {}, retransmitted: {}, rewinds: {}, timeouts: {}",
        d.chunks_sent, d.chunks_retransmitted, d.rewinds, d.timeouts
    );
    if d.hash_verified {
        println!("    host-flash hash verified");
    }
    if d.aux_flash_bytes > 0 {
        println!("    of which aux flash: {} bytes", d.aux_flash_bytes);
    }
    artifact(d.artifact.as_ref());
    if let Some(a) = &d.activation {
        println!(
            "    activation: {} ({} trigger): {}",
            a.outcome.as_str(),
            a.method.as_str(),
            a.detail
        );
    } else if d.phase == Phase::Activating {
        println!("    activation: resetting the SP into the new image");
    }
    if let Some(f) = &d.failure {
        println!("    failure: {f}");
    }
}

pub(super) fn rollout(v: &RolloutView) {
    let c = &v.counts;
    println!(
        "rollout {}: {} (wave {} of {}), {} complete, {} running, {} failed, {} pending, {} skipped; {} eta {}",
        v.id,
        v.phase.as_str(),
        v.current_wave + 1,
        v.waves,
        c.complete,
        c.running,
        c.failed,
        c.pending,
        c.skipped,
        rate(Some(v.rate_bytes_per_second)),
        eta(v.eta_s),
    );
    if let Some(reason) = &v.reason {
        println!("  {reason}");
    }
    println!(
        "  {:<10} {:<16} {:>4} {:<9} {:<10} {:>5} {:>11} {:>8}  FAILURE",
        "SP", "COMPONENT", "WAVE", "STATE", "PHASE", "DONE", "RATE", "ETA"
    );
    for t in &v.targets {
        println!(
            "  {:<10} {:<16} {:>4} {:<9} {:<10} {:>4}% {:>11} {:>8}  {}",
            t.sp,
            t.component,
            t.wave,
            t.state.as_str(),
            or_dash(t.phase.map(|p| p.as_str())),
            t.percent(),
            rate(t.rate_bytes_per_second),
            eta(t.eta_s),
            t.failure.as_deref().unwrap_or("")
        );
    }
}

pub(super) fn rollouts(all: &[RolloutView]) {
    println!(
        "{:<36} {:<9} {:>7} {:>8} {:>6} {:>7}",
        "ID", "PHASE", "TARGETS", "COMPLETE", "FAILED", "RUNNING"
    );
    for r in all {
        println!(
            "{:<36} {:<9} {:>7} {:>8} {:>6} {:>7}",
            r.id,
            r.phase.as_str(),
            r.targets.len(),
            r.counts.complete,
            r.counts.failed,
            r.counts.running,
        );
    }
}
