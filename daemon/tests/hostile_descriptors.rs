//! Images passed as descriptors, against the real `mgsd` binary (a child
//! process) and a simulated rack in this process: `update_start` takes
//! exactly one descriptor and no path, refuses at once what is not a
//! regular file or is larger than the component, and `mgsctl` opens the
//! image with its caller's rights.

mod common;

use common::hostile::{cannot_switch_user, mgsctl_as, newest_audit, rig, OTHER};
use common::{err_code, host_image, message, new_id, Rig, HBF, KIB, MIB};
use serde_json::{json, Value};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn update_start(sp: &str, component: &str, slot: u16, id: &str) -> Value {
    json!({"cmd": "update_start", "sp": sp, "component": component, "slot": slot, "id": id})
}

/// A sparse file of `len` bytes in the rig's directory (nothing in it is
/// ever written).
fn sparse(r: &Rig, name: &str, len: usize) -> PathBuf {
    let path = r.dir().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
    path
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[actix::test]
async fn update_start_takes_its_image_as_exactly_one_descriptor() {
    let r = rig(2, 0).start().await;
    let img = r.file("host.img", &host_image(300_000, 1));
    let mut c = r.conn().await;
    let id = new_id();

    let mut by_path = update_start("sled-0", HBF, 1, &id);
    by_path["image"] = json!(img.display().to_string());
    let v = c.ask(&by_path).await;
    assert_eq!(err_code(&v), "bad_request", "{v}");
    assert!(message(&v).contains("descriptor"), "{v}");

    let v = c.ask(&update_start("sled-0", HBF, 1, &id)).await;
    assert_eq!(err_code(&v), "bad_request", "no descriptor: {v}");

    let (a, b) = (
        std::fs::File::open(&img).unwrap(),
        std::fs::File::open(&img).unwrap(),
    );
    let v = c
        .ask_fds(
            &update_start("sled-0", HBF, 1, &id),
            &[a.as_fd(), b.as_fd()],
        )
        .await;
    assert!(v["error"].is_object(), "two descriptors: {v}");
    assert_eq!(r.rack().sps[0].fault_stats().prepares, 0, "nothing started");

    let v = c
        .ask_fds(&update_start("sled-0", HBF, 1, &id), &[a.as_fd()])
        .await;
    assert_eq!(v["ok"]["id"], id.as_str(), "{v}");
    drop((a, b));
    let (code, out, err) = r.mgsctl(&["watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");

    // mgsctl opens the file and passes the descriptor itself.
    let img_s = img.to_str().unwrap();
    let args = [
        "update", "start", "sled-1", HBF, "--image", img_s, "--watch",
    ];
    let (code, out, err) = r.mgsctl(&args).await;
    assert_eq!(code, 0, "{out}{err}\n{}", r.log());
    assert!(out.contains("hash verified"), "{out}");
}

#[actix::test]
async fn descriptors_of_non_regular_files_are_refused_at_once() {
    let r = rig(1, 0).start().await;
    let fifo = r.dir().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Read and write: opening does not wait for a writer, and a read
    // would wait forever.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let cases: [(&str, BorrowedFd<'_>); 3] = [
        ("a FIFO", fifo.as_fd()),
        ("/dev/zero", zero.as_fd()),
        ("a socket", socket.as_fd()),
    ];
    let mut c = r.conn().await;
    for (what, fd) in cases {
        let t = Instant::now();
        let v = c
            .ask_fds(&update_start("sled-0", HBF, 1, &new_id()), &[fd])
            .await;
        assert_eq!(err_code(&v), "bad_image", "{what}: {v}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: answered after {:?}",
            t.elapsed()
        );
    }
    assert_eq!(r.rack().sps[0].fault_stats().prepares, 0);
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert_eq!(v["ok"]["protocol"], 1, "still serving: {v}");
}

#[actix::test]
async fn images_larger_than_the_component_are_refused_before_reading() {
    let r = rig(1, 0).start().await;
    let rate = r.idle_rate().await;
    let before = r.received();
    let t = Instant::now();
    let cases = [
        (HBF, sparse(&r, "host", 4 * MIB + 1)),
        // Reading this would take minutes: the answer must not.
        (HBF, sparse(&r, "huge", 64 * 1024 * MIB)),
        ("sp", sparse(&r, "sp", 2048 * KIB + 1)),
        ("rot", sparse(&r, "rot", 256 * KIB + 1)),
        ("stage0", sparse(&r, "stage0", 256 * KIB + 1)),
    ];
    let mut c = r.conn().await;
    for (component, path) in &cases {
        let file = std::fs::File::open(path).unwrap();
        let asked = Instant::now();
        let v = c
            .ask_fds(
                &update_start("sled-0", component, 0, &new_id()),
                &[file.as_fd()],
            )
            .await;
        assert_eq!(
            err_code(&v),
            "bad_image",
            "{component} {}: {v}",
            path.display()
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{component}: answered after {:?}",
            asked.elapsed()
        );
    }
    let huge = cases[1].1.to_str().unwrap();
    let (code, _, err) = r
        .mgsctl(&["update", "start", "sled-0", HBF, "--image", huge])
        .await;
    assert_eq!(code, 5, "{err}");
    let sp = &r.rack().sps[0];
    assert_eq!(sp.fault_stats().prepares, 0);
    let sent = r.received() - before;
    let allowed = (rate * t.elapsed().as_secs_f64() * 2.0).ceil() as u64 + 2;
    assert!(
        sent <= allowed,
        "{sent} datagrams reached the SP (periodic traffic alone: {rate:.1}/s, allowed {allowed})"
    );
}

#[actix::test]
async fn mgsctl_opens_the_image_with_the_callers_rights() {
    if cannot_switch_user().await {
        return;
    }
    let access = format!("[control.access]\noperate_users = [\"root\", \"{OTHER}\"]\n");
    let r = rig(2, 0).tables(&access).start().await;
    let secret = r.file_mode("secret.img", &host_image(200_000, 2), 0o600);
    let open = r.file_mode("open.img", &host_image(200_000, 2), 0o644);
    let start = |sp: &str, path: &Path| -> Vec<String> {
        let path = path.to_str().unwrap();
        ["update", "start", sp, HBF, "--image", path]
            .map(String::from)
            .to_vec()
    };
    let args = start("sled-0", &secret);
    let (code, out, err) = mgsctl_as(OTHER, &r.socket(), &strs(&args)).await;
    assert_eq!(code, 5, "{out}{err}");
    assert_eq!(r.rack().sps[0].fault_stats().prepares, 0);
    let audit = newest_audit(&r, 100).await;
    assert!(
        !audit.iter().any(|e| e["uid"] == OTHER),
        "nothing reached the daemon: {audit:?}"
    );
    // The same user may update from a file it can read.
    let args = start("sled-1", &open);
    let (code, out, err) = mgsctl_as(OTHER, &r.socket(), &strs(&args)).await;
    assert_eq!(code, 0, "{out}{err}");
    let audit = newest_audit(&r, 100).await;
    assert!(
        audit
            .iter()
            .any(|e| e["uid"] == OTHER && e["command"] == "update_start" && e["result"] == "ok"),
        "{audit:?}"
    );
}
