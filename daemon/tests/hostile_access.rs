//! Who may reach the daemon and what is kept of it, against the real
//! `mgsd` binary (a child process) and a simulated rack in this process:
//! peer credentials checked against the access lists, the audit log of
//! operate commands and refusals (kept across a restart), and the demo's
//! new private directory.

mod common;

use common::hostile::{cannot_switch_user, mgsctl_as, newest_audit, rig, NOBODY, OTHER, STRANGER};
use common::{host_image, mgsctl, new_id, HBF};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

// 1. Peer credentials.

#[actix::test]
async fn peers_in_no_access_list_are_refused_everything() {
    if cannot_switch_user().await {
        return;
    }
    // Default lists: operate = user root + group mgsd, read = group mgsd-ro.
    let r = rig(1, 0).start().await;
    let id = new_id();
    let commands: [&[&str]; 12] = [
        &["version"],
        &["health"],
        &["list"],
        &["state", "sled-0"],
        &["power", "get", "sled-0"],
        &["update", "status", "sled-0", HBF],
        &["history"],
        &["audit"],
        &["watch", &id],
        &["reset", "sled-0"],
        &["power", "set", "sled-0", "A2"],
        &["slot", "set", "sled-0", HBF, "1"],
    ];
    for args in commands {
        let all = [&["--json"][..], args].concat();
        let (code, out, err) = mgsctl_as(STRANGER, &r.socket(), &all).await;
        assert_eq!(code, 9, "{args:?}: {out}{err}");
        let v: Value = serde_json::from_str(out.lines().last().unwrap_or("null")).unwrap();
        assert_eq!(v["error"]["code"], "permission_denied", "{args:?}: {out}");
    }
    let sp = &r.rack().sps[0];
    assert_eq!(sp.fault_stats().resets, 0);
    // Root still may.
    assert_eq!(r.ok(&["power", "get", "sled-0"]).await["power_state"], "A0");
}

#[actix::test]
async fn read_only_peers_may_look_but_not_operate() {
    if cannot_switch_user().await {
        return;
    }
    let access = format!(
        "[control.access]\noperate_users = [\"root\"]\noperate_groups = []\n\
         read_users = [\"nobody\"]\nread_groups = [\"{OTHER}\"]\n"
    );
    let r = rig(1, 0).tables(&access).start().await;
    let img = r.file_mode("host.img", &host_image(100_000, 3), 0o644);
    let img = img.to_str().unwrap();
    let unknown = new_id();
    let reads: [(&[&str], i32); 12] = [
        (&["version"], 0),
        (&["health"], 0),
        (&["list"], 0),
        (&["state", "sled-0"], 0),
        (&["caboose", "sled-0"], 0),
        (&["power", "get", "sled-0"], 0),
        (&["slot", "get", "sled-0", HBF], 0),
        (&["update", "status", "sled-0", HBF], 0),
        (&["history"], 0),
        (&["audit"], 0),
        // Let through, and then not found.
        (&["watch", &unknown], 4),
        (&["state", "sled-42"], 4),
    ];
    for (args, want) in reads {
        let (code, out, err) = mgsctl_as(OTHER, &r.socket(), args).await;
        assert_eq!(code, want, "read {args:?} by gid {OTHER}: {out}{err}");
    }
    let operates: [&[&str]; 5] = [
        &["reset", "sled-0"],
        &["power", "set", "sled-0", "A2"],
        &["slot", "set", "sled-0", HBF, "1"],
        &["update", "abort", "sled-0", HBF, &unknown],
        &["update", "start", "sled-0", HBF, "--image", img],
    ];
    for args in operates {
        let (code, out, err) = mgsctl_as(OTHER, &r.socket(), args).await;
        assert_eq!(code, 9, "operate {args:?} by gid {OTHER}: {out}{err}");
    }
    // A user named in the read list.
    let (code, _, err) = mgsctl_as(NOBODY, &r.socket(), &["list"]).await;
    assert_eq!(code, 0, "list by nobody: {err}");
    let (code, _, err) = mgsctl_as(NOBODY, &r.socket(), &["reset", "sled-0"]).await;
    assert_eq!(code, 9, "reset by nobody: {err}");
    // A user in neither.
    let (code, _, err) = mgsctl_as(STRANGER, &r.socket(), &["list"]).await;
    assert_eq!(code, 9, "list by a stranger: {err}");
    let stats = r.rack().sps[0].fault_stats();
    assert_eq!((stats.resets, stats.prepares), (0, 0));
    assert_eq!(r.ok(&["power", "get", "sled-0"]).await["power_state"], "A0");
}

// 2. Audit.

#[actix::test]
async fn operate_commands_and_refusals_are_audited_newest_first_and_kept() {
    if cannot_switch_user().await {
        return;
    }
    let access =
        format!("[control.access]\noperate_users = [\"root\"]\nread_users = [\"{OTHER}\"]\n");
    let r = rig(2, 0).tables(&access).start().await;
    let img = r.file("host.img", &host_image(100_000, 4));
    let id = new_id();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    r.ok(&["reset", "sled-0"]).await;
    let started = r
        .ok(&[
            "update",
            "start",
            "sled-1",
            HBF,
            "--image",
            img.to_str().unwrap(),
            "--id",
            &id,
        ])
        .await;
    let (code, _, err) = mgsctl_as(OTHER, &r.socket(), &["power", "set", "sled-0", "A2"]).await;
    assert_eq!(code, 9, "{err}");
    let (code, _, err) = mgsctl_as(STRANGER, &r.socket(), &["version"]).await;
    assert_eq!(code, 9, "{err}");
    let (code, _, err) = mgsctl_as(OTHER, &r.socket(), &["list"]).await;
    assert_eq!(code, 0, "reads are not audited: {err}");

    let audit = newest_audit(&r, 10).await;
    assert_eq!(audit.len(), 4, "{audit:#?}");
    for e in &audit {
        for key in [
            "time_unix_ms",
            "uid",
            "gid",
            "pid",
            "command",
            "sp",
            "component",
            "update_id",
            "image_sha256",
            "result",
        ] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        assert!(e["time_unix_ms"].as_u64() >= Some(t0), "{e}");
        assert!(e["pid"].as_u64() > Some(0), "{e}");
    }
    let times: Vec<_> = audit.iter().map(|e| e["time_unix_ms"].as_u64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let summary: Vec<_> = audit
        .iter()
        .map(|e| {
            (
                e["uid"].as_u64().unwrap_or(u64::MAX),
                e["command"].as_str().unwrap_or("").to_string(),
                e["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let row = |uid: u32, cmd: &str, res: &str| (uid as u64, cmd.to_string(), res.to_string());
    assert_eq!(
        summary,
        [
            row(STRANGER, "version", "permission_denied"),
            row(OTHER, "power_set", "permission_denied"),
            row(0, "update_start", "ok"),
            row(0, "reset", "ok"),
        ]
    );
    assert_eq!(audit[0]["gid"], STRANGER);
    assert_eq!(audit[1]["sp"], "sled-0");
    assert_eq!(audit[2]["sp"], "sled-1");
    assert_eq!(audit[2]["component"], HBF);
    assert_eq!(audit[2]["update_id"], id.as_str());
    assert_eq!(audit[2]["image_sha256"], started["image_sha256"]);
    assert_eq!(audit[3]["sp"], "sled-0");

    assert_eq!(newest_audit(&r, 2).await, audit[..2]);
    let (code, out, err) = r.mgsctl(&["audit", "--json", "--limit", "2"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"].as_array().map(Vec::len), Some(2), "{out}");
    let (code, out, err) = r.mgsctl(&["audit", "--json", "--since", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"].as_array().map(Vec::len), Some(4), "{out}");
    let (code, table, err) = r.mgsctl(&["audit"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("permission_denied") && table.contains("power_set"),
        "{table}"
    );
    let log = r.log();
    assert!(
        log.lines()
            .any(|l| l.contains("audit") && l.contains("permission_denied")),
        "refusals are logged (target audit): {log}"
    );

    // Kept in the state directory across a restart.
    r.restart().await;
    assert_eq!(newest_audit(&r, 10).await, audit);
}

// 3. Demo.

/// Removes `/tmp/mgsd-demo` if this test planted it.
struct Planted(Option<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        if let Some(link) = &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[actix::test]
async fn the_demo_uses_a_new_private_directory() {
    let tmp = std::env::temp_dir();
    let listed = || -> std::collections::HashSet<PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    };
    let decoy = tempfile::tempdir().unwrap();
    let link = Path::new("/tmp/mgsd-demo");
    let planted = std::fs::symlink_metadata(link).is_err()
        && std::os::unix::fs::symlink(decoy.path(), link).is_ok();
    let _planted = Planted(planted.then(|| link.to_path_buf()));
    let before = listed();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .arg("--demo")
        .env("MGSD_METRICS__LISTEN", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The socket, and the private directory if printed on its own line.
    let (socket, printed) = tokio::time::timeout(Duration::from_secs(30), async {
        let (mut socket, mut dir) = (None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix("Control socket:") {
                socket = Some(PathBuf::from(s.trim()));
            } else if line.contains("directory") {
                dir = line.rsplit(": ").next().map(PathBuf::from);
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        (socket.expect("the demo printed its control socket"), dir)
    })
    .await
    .expect("the demo starts within 30 s");
    let dir = printed.unwrap_or_else(|| socket.parent().unwrap().to_path_buf());
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    let through_link = std::fs::read_dir(decoy.path()).unwrap().count();
    // The instructions come before the socket is bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, err) = loop {
        let (code, _, err) = mgsctl(&socket, &["version"]).await;
        if code == 0 || Instant::now() > deadline {
            break (code, err);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Stop it (SIGTERM, so the demo removes its directory) before judging.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    if planted {
        assert_eq!(through_link, 0, "nothing went through the planted link");
    } else {
        eprintln!("note: /tmp/mgsd-demo already exists; not replaced by a planted link");
    }
    assert_eq!(code, 0, "the demo serves: {err}");
    assert_eq!(socket.parent(), Some(dir.as_path()), "the socket is inside");
    assert_ne!(dir, link, "never the fixed name");
    assert!(!before.contains(&dir), "{} existed before", dir.display());
    assert!(
        meta.is_dir(),
        "{} is a directory, not a link",
        dir.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        dir.display()
    );
}
