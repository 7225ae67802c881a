//! Serial consoles end to end against sp-sim: through the socket
//! (`console_attach`), the HTTP API's websocket and `mgsctl console`.
//! Scrollback, typing, break, one typist at a time, forced detach, an SP
//! reset while attached, loss, and a reader that stops reading.

mod common;

use base64::Engine;
use common::conn::Conn;
use common::{err_code, message, standard_rack, until, Rig, SpDefaults};
use serde_json::{json, Value};
use sp_sim::{FaultConfig, Timings};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn daemon(scrollback_kib: Option<u64>, tables: &str) -> Rig {
    let rack = standard_rack(1, 0, 0, Timings::instant());
    Rig::in_process(rack)
        .sp_defaults(SpDefaults {
            console_keepalive_ms: Some(200),
            console_retry_ms: Some(100),
            console_scrollback_kib: scrollback_kib,
            ..SpDefaults::default()
        })
        .tables(tables)
        .start()
        .await
}

async fn attached(rig: &Rig) {
    until("mgsd attaches to the console", LIMIT, async || {
        rig.sp("sled-0").console_attached().is_some()
    })
    .await;
}

/// Open a console session on `conn`; its answer.
async fn attach(conn: &mut Conn, extra: Value) -> Value {
    let mut request = json!({"cmd": "console_attach", "sp": "sled-0"});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    conn.ask(&request).await
}

/// Console output read from `conn` until `want` appears in it (other
/// events are returned too).
async fn read_until(conn: &mut Conn, want: &[u8]) -> (Vec<u8>, Vec<Value>) {
    let mut out = Vec::new();
    let mut events = Vec::new();
    while !out.windows(want.len()).any(|w| w == want) {
        let line = conn.next_within(LIMIT).await.unwrap_or_else(|| {
            panic!(
                "no {:?} in {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&out)
            )
        });
        match line["event"].as_str() {
            Some("output") => out.extend(B64.decode(line["data"].as_str().unwrap()).unwrap()),
            _ => events.push(line),
        }
    }
    (out, events)
}

/// `mgsctl console sled-0` against `rig`, its standard streams to be set.
fn mgsctl_console(rig: &Rig) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsctl"));
    c.args([
        "--socket",
        rig.socket().to_str().unwrap(),
        "console",
        "sled-0",
    ]);
    c
}

async fn type_bytes(conn: &mut Conn, bytes: &[u8]) {
    conn.send(&json!({"write": B64.encode(bytes)})).await;
}

#[actix::test]
async fn attach_scrollback_type_break_and_one_typist() {
    let rig = daemon(None, "").await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    // Output while nobody watches fills the scrollback.
    sled.inject_host_output(b"boot banner: nobody watching\r\n");
    until("the daemon holds it", LIMIT, async || {
        let mut c = rig.conn().await;
        let a = attach(&mut c, json!({"read_only": true})).await;
        a["ok"]["scrollback_bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let mut typist = rig.conn().await;
    let a = attach(&mut typist, json!({})).await;
    assert_eq!(a["ok"]["read_only"], false, "{a}");
    read_until(&mut typist, b"nobody watching").await;

    // Typing reaches the host, which echoes it.
    type_bytes(&mut typist, b"uname -a\r").await;
    read_until(&mut typist, b"uname -a").await;
    assert!(sled.console_input().ends_with(b"uname -a\r"));
    typist.send(&json!({"break": true})).await;
    until("the host got a break", LIMIT, async || {
        sled.console_breaks() == 1
    })
    .await;

    // A second typist is refused, naming the first; a watcher is not.
    let mut second = rig.conn().await;
    let refused = attach(&mut second, json!({})).await;
    assert_eq!(err_code(&refused), "console_held", "{refused}");
    assert!(message(&refused).contains("uid"), "{refused}");
    let mut watcher = rig.conn().await;
    let w = attach(
        &mut watcher,
        json!({"read_only": true, "no_scrollback": true}),
    )
    .await;
    assert_eq!(w["ok"]["scrollback_bytes"], 0, "{w}");
    // The watcher cannot type: told once, nothing reaches the host.
    type_bytes(&mut watcher, b"rm -rf /\r").await;
    let notice = watcher.next_within(LIMIT).await.unwrap();
    assert_eq!(notice["event"], "notice", "{notice}");
    // Both see new output.
    sled.inject_host_output(b"for everyone\r\n");
    read_until(&mut typist, b"for everyone").await;
    read_until(&mut watcher, b"for everyone").await;
    assert!(!sled.console_input().windows(5).any(|w| w == b"rm -r"));

    // Leaving ends the stream; the console is free again.
    typist.send(&json!({"detach": true})).await;
    until("the stream ends", LIMIT, async || loop {
        match typist.next_within(LIMIT).await {
            None => return true,
            Some(l) if l["event"] == "output" => continue,
            Some(l) => panic!("unexpected {l}"),
        }
    })
    .await;
    let again = attach(&mut second, json!({})).await;
    assert_eq!(again["ok"]["read_only"], false, "{again}");
}

#[actix::test]
async fn forced_detach_and_a_reset_while_attached() {
    let rig = daemon(None, "").await;
    attached(&rig).await;
    let mut typist = rig.conn().await;
    attach(&mut typist, json!({})).await;
    // Another operator takes the console over.
    let d = rig
        .ask(&json!({"cmd": "console_detach", "sp": "sled-0"}))
        .await;
    assert!(d["ok"]["ended"].as_str().unwrap().contains("uid"), "{d}");
    let ended = loop {
        let l = typist
            .next_within(LIMIT)
            .await
            .expect("the session says it ended");
        if l["event"] == "ended" {
            break l;
        }
    };
    assert!(
        ended["reason"].as_str().unwrap().contains("detached"),
        "{ended}"
    );
    assert!(typist.next_within(LIMIT).await.is_none());
    // mgsd attaches again by itself.
    attached(&rig).await;

    let mut s = rig.conn().await;
    attach(&mut s, json!({"no_scrollback": true})).await;
    rig.sp("sled-0").reset_now();
    let reattached = loop {
        let l = s
            .next_within(LIMIT)
            .await
            .expect("the session hears of the reset");
        if l["event"] == "reattached" {
            break l;
        }
    };
    assert!(!reattached["reason"].as_str().unwrap().is_empty());
    // Still a working session after it.
    attached(&rig).await;
    type_bytes(&mut s, b"after reset\r").await;
    read_until(&mut s, b"after reset").await;
}

#[actix::test]
async fn typed_bytes_reach_the_host_once_in_order_under_loss() {
    let rig = daemon(None, "").await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    sled.set_faults(FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        ..FaultConfig::default()
    });
    let mut c = rig.conn().await;
    attach(&mut c, json!({"no_scrollback": true})).await;
    let typed: Vec<u8> = (0..20_000u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i % 36) as usize])
        .collect();
    for piece in typed.chunks(700) {
        type_bytes(&mut c, piece).await;
    }
    // (The echoes are not read: input goes on while output waits.)
    until(
        "the host has every typed byte",
        Duration::from_secs(60),
        async || sled.console_input().len() >= typed.len(),
    )
    .await;
    assert_eq!(sled.console_input(), typed, "exactly once, in order");
    let stats = rig.ask(&json!({"cmd": "state", "sp": "sled-0"})).await;
    assert!(stats.get("ok").is_some(), "{stats}");
}

#[actix::test]
async fn a_reader_that_stops_reading_loses_the_oldest_not_memory() {
    let rig = daemon(Some(8), "").await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    let mut slow = rig.conn().await;
    attach(&mut slow, json!({"read_only": true, "no_scrollback": true})).await;
    // 1 MiB of output, far more than the ring and the socket's buffers.
    let line = [b'x'; 1023];
    for _ in 0..1024 {
        sled.inject_host_output(&line);
        sled.inject_host_output(b"\n");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sled.inject_host_output(b"THE END\r\n");
    until("the ring took it all", LIMIT, async || {
        sled.console_output().ends_with(b"THE END\r\n")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (out, events) = read_until(&mut slow, b"THE END").await;
    let lost: u64 = events
        .iter()
        .filter(|e| e["event"] == "lost")
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    assert!(lost > 0, "the slow reader is told what it lost: {events:?}");
    assert!(out.len() < 1024 * 1024, "{} bytes", out.len());
}

#[actix::test]
async fn the_http_websocket_attaches_types_and_is_detached() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rig = daemon(
        None,
        "[http]\nswitch_slot = 0\n[[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n",
    )
    .await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    sled.inject_host_output(b"banner over http\r\n");
    let addr = rig.http_addr().await;
    let url = format!("ws://{addr}/sp/sled/0/component/sp3-host-cpu/serial-console/attach");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade");
    let mut seen = Vec::new();
    let read_ws =
        async |ws: &mut tokio_tungstenite::WebSocketStream<_>, want: &[u8], seen: &mut Vec<u8>| {
            while !seen.windows(want.len()).any(|w| w == want) {
                match tokio::time::timeout(LIMIT, ws.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => seen.extend_from_slice(&b),
                    other => panic!("{other:?}"),
                }
            }
        };
    read_ws(&mut ws, b"banner over http", &mut seen).await;
    ws.send(Message::Binary(b"ls\r".to_vec().into()))
        .await
        .unwrap();
    read_ws(&mut ws, b"ls", &mut seen).await;
    until("the host got it", LIMIT, async || {
        sled.console_input().ends_with(b"ls\r")
    })
    .await;
    // A second typist is refused with 409.
    let second = tokio_tungstenite::connect_async(&url).await;
    assert!(
        matches!(&second, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 409),
        "{second:?}"
    );
    // Detach ends the first with a close frame.
    let c = common::http::Client::new(addr);
    let d = c
        .post_empty("/sp/sled/0/component/sp3-host-cpu/serial-console/detach")
        .await;
    assert_eq!(d.status, 204, "{}", d.text);
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => {
                assert!(f.unwrap().reason.contains("detached"));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("{other:?}"),
        }
    }
    // A component without a console is refused.
    let bad = c.get("/sp/sled/0/component/sp/serial-console/attach").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[actix::test]
async fn mgsctl_console_types_and_leaves_with_tilde_dot() {
    let rig = daemon(None, "").await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    sled.inject_host_output(b"hello from the host\r\n");
    let mut child = mgsctl_console(&rig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"whoami\r").await.unwrap();
    until("the host got it", LIMIT, async || {
        sled.console_input().ends_with(b"whoami\r")
    })
    .await;
    stdin.write_all(b"~B").await.unwrap();
    until("a break", LIMIT, async || sled.console_breaks() == 1).await;
    stdin.write_all(b"\r~.").await.unwrap();
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("mgsctl leaves on ~.")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello from the host"), "{stdout}");
    assert!(stdout.contains("whoami"), "{stdout}");
    // The console is free for the next typist.
    let mut c = rig.conn().await;
    let a = attach(&mut c, json!({})).await;
    assert_eq!(a["ok"]["read_only"], false, "{a}");
}

#[actix::test]
async fn console_logs_rotate_and_are_the_daemons_own() {
    use std::os::unix::fs::PermissionsExt;
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("console");
    let rig = daemon(
        None,
        &format!(
            "[console]\nlog_dir = \"{}\"\nlog_max_kib = 4\nlog_keep = 2\n",
            dir.display()
        ),
    )
    .await;
    attached(&rig).await;
    let sled = rig.sp("sled-0");
    for i in 0..20 {
        sled.inject_host_output(format!("line {i:04} {}\r\n", "x".repeat(1000)).as_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sled.inject_host_output(b"LAST LINE\r\n");
    let log = dir.join("sled-0.log");
    until("the last line is logged", LIMIT, async || {
        std::fs::read(&log).is_ok_and(|l| l.windows(9).any(|w| w == b"LAST LINE"))
    })
    .await;
    assert!(dir.join("sled-0.log.1").exists());
    assert!(dir.join("sled-0.log.2").exists());
    assert!(!dir.join("sled-0.log.3").exists(), "log_keep = 2");
    for f in [log.clone(), dir.join("sled-0.log.1")] {
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f:?}");
        assert!(meta.len() <= 4096, "{f:?}: {}", meta.len());
    }
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[actix::test]
async fn a_killed_client_frees_the_console_and_sigterm_ends_sessions() {
    let rack = standard_rack(1, 0, 0, Timings::instant());
    let rig = Rig::child(rack)
        .sp_defaults(SpDefaults {
            console_keepalive_ms: Some(200),
            ..SpDefaults::default()
        })
        .start()
        .await;
    attached(&rig).await;
    let mut child = mgsctl_console(&rig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // What it types arriving proves it holds the console (probing with
    // attaches of our own could take the console first).
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"held\r").await.unwrap();
    until("mgsctl holds the console", LIMIT, async || {
        rig.sp("sled-0").console_input().ends_with(b"held\r")
    })
    .await;
    let mut probe = rig.conn().await;
    assert_eq!(
        err_code(&attach(&mut probe, json!({})).await),
        "console_held"
    );
    child.kill().await.unwrap();
    let mut c = rig.conn().await;
    until("the console is free again", LIMIT, async || {
        attach(&mut c, json!({})).await.get("ok").is_some()
    })
    .await;
    // SIGTERM: the daemon does not wait on console sessions, and the
    // client's stream ends.
    let (took, code) = rig.term().await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    loop {
        match c.next_within(LIMIT).await {
            None => break,
            Some(l) if l["event"] == "output" => continue,
            Some(l) => assert_eq!(l["event"], "ended", "{l}"),
        }
    }
}

#[actix::test]
async fn the_terminal_is_restored_after_tilde_dot() {
    use rustix::termios::{tcgetattr, LocalModes};
    let rig = daemon(None, "").await;
    attached(&rig).await;
    let master =
        rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let before = tcgetattr(&slave).unwrap();
    assert!(before.local_modes.contains(LocalModes::ICANON));
    let child = mgsctl_console(&rig)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("raw mode", LIMIT, async || {
        !tcgetattr(&slave)
            .unwrap()
            .local_modes
            .contains(LocalModes::ICANON)
    })
    .await;
    let mut m = std::fs::File::from(master);
    use std::io::Write;
    m.write_all(b"\r~.").unwrap();
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("mgsctl leaves")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes);
    assert_eq!(after.input_modes, before.input_modes);
    assert_eq!(after.output_modes, before.output_modes);
}
