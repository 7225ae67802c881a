//! What a client cannot make the daemon spend, against the real `mgsd`
//! binary (a child process, so a daemon that bloats or hangs cannot take
//! the test down with it) and a simulated rack in this process: memory for
//! a line without end, connections beyond the limit, a watcher that stops
//! reading, and SP traffic for a thousand questions at once.

mod common;

use common::hostile::rig;
use common::{err_code, host_image, new_id, Rig, HBF, MIB};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The daemon's resident memory (KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Whether a key named `key` occurs anywhere in `v`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| k == key || has_key(v, key)),
        Value::Array(items) => items.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

// 1. Memory and connections.

#[actix::test]
async fn a_gibibyte_without_a_newline_does_not_grow_the_daemon() {
    let r = rig(1, 0).start().await;
    let pid = r.pid();
    r.ok(&["list"]).await;
    let base = rss_kib(pid);
    let mut peak = base;
    let mut c = r.conn().await;
    let chunk = vec![b'x'; MIB];
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..1024 {
        c.write(&chunk).await;
        if i % 16 == 15 {
            peak = peak.max(rss_kib(pid));
            assert!(
                Instant::now() < deadline,
                "only {} MiB taken in 120 s",
                i + 1
            );
        }
    }
    c.write(b"\n").await;
    let v = c.next().await.expect("an answer");
    assert_eq!(err_code(&v), "request_too_large", "{v}");
    peak = peak.max(rss_kib(pid));
    let v = c.ask(&json!({"cmd": "version"})).await;
    assert_eq!(v["ok"]["protocol"], 1, "the connection serves on: {v}");
    eprintln!("1 GiB without a newline: RSS {base} KiB before, {peak} KiB at most");
    assert!(
        peak - base < 32 * 1024,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

#[actix::test]
async fn connections_beyond_the_limit_are_told_busy_and_closed() {
    let r = rig(1, 0).control("max_connections = 4").start().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = r.conn().await;
        let v = c.ask(&json!({"cmd": "version"})).await;
        assert_eq!(v["ok"]["protocol"], 1, "{v}");
        held.push(c);
    }
    let mut fifth = r.conn().await;
    let v = fifth.next().await.expect("one line");
    assert_eq!(err_code(&v), "busy", "{v}");
    assert_eq!(fifth.next().await, None, "then closed");
    let (code, _, err) = r.mgsctl(&["list"]).await;
    assert_eq!(code, 3, "mgsctl on a busy daemon: {err}");
    // A place frees once a client leaves.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = r.conn().await;
        let asked = c.try_write(b"{\"cmd\":\"version\"}\n").await;
        let v = c.next().await;
        if asked.is_ok() && v.as_ref().is_some_and(|v| v["ok"]["protocol"] == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {v:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// 2. A slow watcher.

#[actix::test]
async fn a_watcher_that_stops_reading_still_gets_the_final_record() {
    let r = rig(1, 2048).start().await;
    let img = r.file("host.img", &host_image(4 * MIB, 5));
    let id = new_id();
    let mut c = r.conn().await;
    // A small receive buffer, so the daemon's writes back up soon.
    rustix::net::sockopt::set_socket_recv_buffer_size(c.stream(), 4096).unwrap();
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
        "--id",
        &id,
    ])
    .await;
    let first = c.ask(&json!({"cmd": "watch", "id": id})).await;
    assert!(first["event"].is_object(), "{first}");
    // Read nothing until the update has ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = r.ok(&["update", "status", "sled-0", HBF]).await["delivery"].clone();
        if ["complete", "failed", "aborted"].contains(&d["phase"].as_str().unwrap_or("")) {
            assert_eq!(d["phase"], "complete", "{d}");
            break;
        }
        assert!(Instant::now() < deadline, "update not done: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = 1;
    let last = loop {
        let v = c.next().await.expect("the stream ends with an ok line");
        if v["event"].is_object() {
            events += 1;
            continue;
        }
        break v;
    };
    assert_eq!(
        last["ok"]["phase"], "complete",
        "after {events} events: {last}"
    );
    assert_eq!(last["ok"]["id"], id.as_str());
}

// 3. No fan-out storms.

/// Each of `requests` on its own connection, all written before any
/// answer is read: the answers, and the datagrams the SPs received
/// meanwhile beyond `rate` per second (twice over, plus `slack`).
async fn storm(r: &Rig, requests: Vec<Value>, rate: f64) -> (Vec<Value>, u64, u64) {
    let before = r.received();
    let t = Instant::now();
    let mut conns = Vec::new();
    for request in &requests {
        let mut c = r.conn().await;
        c.send(request).await;
        conns.push(c);
    }
    let mut answers = Vec::new();
    for c in &mut conns {
        answers.push(c.next().await.expect("an answer"));
    }
    let sent = r.received() - before;
    let allowed = (rate * t.elapsed().as_secs_f64() * 2.0).ceil() as u64 + 2;
    (answers, sent, allowed)
}

#[actix::test]
async fn a_thousand_lists_and_states_cost_the_sps_nothing() {
    let r = rig(4, 0).control("max_connections = 1100").start().await;
    // Let what the actors know age past a second, so that a daemon that
    // refreshes a stale answer on demand shows it every run.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = r.ok(&["list"]).await;
        let ages: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|sp| sp["age_ms"].as_u64())
            .collect();
        if ages.iter().all(|age| *age >= Some(1500)) {
            break;
        }
        assert!(Instant::now() < deadline, "ages: {ages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = r.idle_rate().await;

    let lists = vec![json!({"cmd": "list"}); 1000];
    let (answers, sent, allowed) = storm(&r, lists, rate).await;
    for v in &answers {
        assert_eq!(v["ok"].as_array().map(Vec::len), Some(4), "{v}");
    }
    assert!(
        sent <= allowed,
        "1000 lists: the SPs received {sent} datagrams (idle: {rate:.1}/s, allowed {allowed})"
    );

    let states = (0..1000)
        .map(|i| json!({"cmd": "state", "sp": format!("sled-{}", i % 4)}))
        .collect();
    let (answers, sent, allowed) = storm(&r, states, rate).await;
    for v in &answers {
        assert!(v["ok"]["state"]["serial"].is_string(), "{v}");
        assert!(has_key(&v["ok"], "age_ms"), "state carries age_ms: {v}");
    }
    assert!(
        sent <= allowed,
        "1000 states: the SPs received {sent} datagrams (idle: {rate:.1}/s, allowed {allowed})"
    );
}
