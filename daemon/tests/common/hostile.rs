//! What the hostile suites (`hostile_*.rs`) share: their rig, clients run
//! as other users, and the audit log that records them.

use super::{standard_rack, Rig, RigBuilder, SpDefaults};
use serde_json::{json, Value};
use sp_sim::Timings;
use std::path::Path;

/// A uid (and gid) other clients run as; it has no name.
pub const OTHER: u32 = 65533;
/// `nobody`, named in an access list by name.
pub const NOBODY: u32 = 65534;
/// A uid in no access list.
pub const STRANGER: u32 = 65532;

/// `sleds` sleds with 4 MiB of host flash written at `write_kib_per_s`
/// (0: unlimited), and the real `mgsd` (a child, so a daemon that hangs or
/// bloats cannot take the test down with it) with a state directory, no
/// periodic SP traffic, and its files in a 0755 directory so other users
/// reach the socket.
pub fn rig(sleds: usize, write_kib_per_s: u64) -> RigBuilder {
    let rack = standard_rack(
        sleds,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            reset_ms: 100,
            write_kib_per_s,
            ..Timings::instant()
        },
    );
    Rig::child(rack)
        .state()
        .dir_mode(0o755)
        .sp_defaults(SpDefaults::quiet())
}

/// Whether this process cannot run a client as another user; if so, it
/// says on stderr that the test is skipped.
pub async fn cannot_switch_user() -> bool {
    let id = OTHER.to_string();
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", "true"])
        .output()
        .await;
    let why = match out {
        Err(e) => format!("setpriv: {e}"),
        Ok(o) if o.status.success() => return false,
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    eprintln!("skipped: cannot run mgsctl as another user: {why}");
    true
}

/// `mgsctl ARGS` run as `uid` (and gid `uid`, no other groups): exit
/// code, stdout, stderr.
pub async fn mgsctl_as(uid: u32, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let id = uid.to_string();
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mgsctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The newest `limit` audit entries, asked as root over the socket.
pub async fn newest_audit(r: &Rig, limit: u64) -> Vec<Value> {
    let v = r.ask(&json!({"cmd": "audit", "limit": limit})).await;
    v["ok"]
        .as_array()
        .unwrap_or_else(|| panic!("audit: {v}"))
        .clone()
}
