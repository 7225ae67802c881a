//! Nobody can lock the socket, against the real `mgsd` binary: watchers
//! whose clients are gone are dropped, idle connections time out, readers
//! cannot take the places kept for operators, a descriptor whose reads
//! block is refused in time, and refusals are summed (in the audit and
//! the log) and slowed, however many a peer causes.

mod common;

use common::hostile::{cannot_switch_user, newest_audit, rig, OTHER, STRANGER};
use common::{err_code, host_image, message, new_id, Conn, Rig, HBF, MIB};
use serde_json::{json, Value};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Until `mgsctl list` (as root) is answered, within `limit`.
async fn until_served(r: &Rig, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let (code, _, _) = r.mgsctl(&["list"]).await;
        if code == 0 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "still busy after {limit:?}: {}",
            r.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run `script` (Perl, whose sockets come with the base system) as `uid`
/// with the socket path as its argument; its stdout.
async fn perl_as(uid: u32, socket: &Path, script: &str) -> String {
    let id = uid.to_string();
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "/usr/bin/perl",
            "-e",
        ])
        .arg(script)
        .arg(socket)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "perl as {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[actix::test]
async fn watchers_whose_clients_are_gone_are_dropped_and_free_their_places() {
    let r = rig(1, 256)
        .control("max_connections = 8\nreserved_operate_connections = 0\n")
        .start()
        .await;
    // An update runs, so the watch streams have something to send.
    let img = r.file("host.img", &host_image(4 * MIB, 2));
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
    ])
    .await;
    for round in 0..3 {
        let mut watchers = Vec::new();
        for _ in 0..8 {
            let mut c = r.conn().await;
            c.send(&json!({"cmd": "watch"})).await;
            watchers.push(c);
        }
        // Every place is a watcher's now.
        let (code, _, _) = r.mgsctl(&["list"]).await;
        assert_eq!(code, 3, "round {round}: busy while they watch");
        // The clients die without a word (no write fails: the update may
        // be between records).
        drop(watchers);
        let took = until_served(&r, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(2), "round {round}: {took:?}");
    }
}

#[actix::test]
async fn a_rollout_watcher_that_is_gone_frees_its_place_while_the_rollout_is_paused() {
    let r = rig(2, 0)
        .control("max_connections = 2\nreserved_operate_connections = 0\n")
        .start()
        .await;
    let img = r.file("host.img", &host_image(256 * 1024, 5));
    let plan = r.file(
        "plan.toml",
        format!(
            "canary = 1\npause_between_waves = \"manual\"\n[[target]]\nkind = \"sled\"\n\
             component = \"{HBF}\"\nslot = 1\nimage = \"{}\"\n",
            img.display()
        )
        .as_bytes(),
    );
    let id = new_id();
    r.ok(&["rollout", "start", plan.to_str().unwrap(), "--id", &id])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.ok(&["rollout", "status", &id]).await["phase"] != "paused" {
        assert!(Instant::now() < deadline, "the rollout never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let mut c = r.conn().await;
        let first = c.ask(&json!({"cmd": "rollout_watch", "id": id})).await;
        assert!(first["event"].is_object(), "{first}");
        watchers.push(c);
    }
    assert_eq!(r.mgsctl(&["list"]).await.0, 3, "busy while they watch");
    // Paused: no record is coming, so no write can fail.
    drop(watchers);
    until_served(&r, Duration::from_secs(2)).await;
}

#[actix::test]
async fn idle_connections_time_out() {
    let r = rig(1, 0)
        .control("max_connections = 4\nidle_timeout_ms = 300\n")
        .start()
        .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(r.conn().await);
    }
    assert_eq!(r.mgsctl(&["list"]).await.0, 3, "busy while they sit");
    let t = Instant::now();
    for c in &mut idle {
        assert_eq!(c.next_within(Duration::from_secs(5)).await, None, "closed");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    until_served(&r, Duration::from_secs(1)).await;
}

#[actix::test]
async fn readers_cannot_take_the_places_kept_for_operators() {
    if cannot_switch_user().await {
        return;
    }
    let access = format!("[control.access]\nread_users = [\"{OTHER}\"]\n");
    let r = rig(1, 0)
        .control("max_connections = 8\nreserved_operate_connections = 3\n")
        .tables(&access)
        .start()
        .await;
    // A reader opens 8 connections and holds those it got while root asks.
    let script = r#"
use IO::Socket::UNIX;
my (@held, $busy);
for (1..8) {
    my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
    print $s "{\"cmd\":\"version\"}\n";
    my $line = <$s>;
    if ($line =~ /"busy"/) { $busy++ } else { push @held, $s }
}
$| = 1;
print scalar(@held), " ", $busy + 0, "\n";
sleep 3;
"#;
    let reader = {
        let socket = r.socket();
        actix::spawn(async move { perl_as(OTHER, &socket, script).await })
    };
    // While the reader holds its five, root is served at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.log().contains("busy") {
        assert!(Instant::now() < deadline, "the reader never hit the limit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        r.mgsctl(&["list"]).await.0,
        0,
        "an operator still gets a place"
    );
    let out = reader.await.unwrap();
    assert_eq!(out.trim(), "5 3", "readers get all but the reserved places");
}

#[actix::test]
async fn a_descriptor_whose_reads_would_block_is_refused_in_time() {
    let r = rig(1, 0).start().await;
    let Ok(kmsg) = std::fs::File::open("/proc/kmsg") else {
        eprintln!("skipped: /proc/kmsg cannot be opened here");
        return;
    };
    let mut c = r.conn().await;
    let t = Instant::now();
    let request = json!({"cmd": "update_start", "sp": "sled-0", "component": HBF, "id": new_id()});
    let v = c.ask_fds(&request, &[kmsg.as_fd()]).await;
    assert_eq!(err_code(&v), "bad_image", "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.rack().sps[0].fault_stats().prepares, 0);
    // The connection serves on.
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert!(v["ok"].is_object(), "{v}");
}

#[actix::test]
async fn refusals_are_summed_in_the_audit_and_slowed_on_one_connection() {
    if cannot_switch_user().await {
        return;
    }
    let access = format!("[control.access]\nread_users = [\"{OTHER}\"]\n");
    let r = rig(1, 0).tables(&access).start().await;
    r.ok(&["reset", "sled-0"]).await;
    // A stranger connects 300 times; each is refused.
    let strangers = r#"
use IO::Socket::UNIX;
for (1..300) {
    my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
    print $s "{\"cmd\":\"version\"}\n";
    my $line = <$s>;
}
"#;
    perl_as(STRANGER, &r.socket(), strangers).await;
    // A reader pipelines 40 operate requests on one connection.
    let pipelined = r#"
use IO::Socket::UNIX;
use Time::HiRes qw(time);
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
my $t = time;
print $s "{\"cmd\":\"power_set\",\"sp\":\"sled-0\",\"state\":\"A2\"}\n" x 40;
for (1..40) { my $line = <$s>; }
print time - $t, "\n";
"#;
    let took: f64 = perl_as(OTHER, &r.socket(), pipelined)
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(took >= 2.0, "past 16, each refusal waits: {took} s for 40");
    let audit = newest_audit(&r, 1000).await;
    let of = |uid: u32| -> Vec<&Value> { audit.iter().filter(|e| e["uid"] == uid).collect() };
    let strangers = of(STRANGER);
    assert_eq!(
        strangers.len(),
        2,
        "the first, then the sum: {strangers:#?}"
    );
    let total: u64 = strangers.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 300);
    let readers = of(OTHER);
    assert_eq!(readers.len(), 2, "{readers:#?}");
    // Root's reset is there, untouched.
    assert!(audit
        .iter()
        .any(|e| e["uid"] == 0 && e["command"] == "reset" && e["result"] == "ok"));
    // And the log says it once per kind, not 340 times.
    let lines = r
        .log()
        .lines()
        .filter(|l| l.contains("permission_denied"))
        .count();
    assert!(lines <= 6, "{lines} log lines about refusals");
    // The pipelined ones are answered, each refused.
    let mut c: Conn = r.conn().await;
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert!(v["ok"].is_object() && message(&v).is_empty(), "{v}");
}
