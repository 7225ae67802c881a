//! The HTTP API end to end against an in-process simulated rack, through
//! real HTTP: every served reference path answers bodies that validate
//! against `gateway-3.0.0.json`, the update flow of the reference's
//! clients, bad input refused before any traffic, 501 for paths not
//! served yet, and the `api-version` header.

mod common;

use artifacts::build::{self, ArchiveSpec, SP_CHIP, SP_IMAGE_BASE};
use common::http::{reference, validate, Client};
use common::{host_image, standard_rack, until, Rig, SpDefaults, HBF, MIB};
use serde_json::json;
use sp_sim::Timings;
use std::time::Duration;

/// Two sleds, a switch and a power shelf, the API on loopback for a
/// trusted network.
async fn daemon() -> (Rig, Client) {
    let rack = standard_rack(
        2,
        1,
        1,
        Timings {
            host_flash_mib: 4,
            write_kib_per_s: 8 * 1024,
            ..Timings::instant()
        },
    );
    let rig = Rig::in_process(rack)
        .sp_defaults(SpDefaults::default())
        .state()
        .tables(
            "[http]\nswitch_slot = 0\n\
             [[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n",
        )
        .start()
        .await;
    let client = Client::new(rig.http_addr().await);
    (rig, client)
}

const SLED0: &str = "/sp/sled/0";

fn hbf(path: &str) -> String {
    format!("{SLED0}/component/{HBF}/{path}")
}

fn prepares(rig: &Rig, sp: &str) -> u64 {
    rig.sp(sp).fault_stats().prepares
}

#[actix::test]
async fn every_served_reference_path_validates() {
    let (_rig, c) = daemon().await;
    let a = c.get("/local/all-sp-ids").await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("get", "/local/all-sp-ids", &a);
    assert_eq!(a.json.as_array().unwrap().len(), 4);
    assert!(a
        .json
        .as_array()
        .unwrap()
        .contains(&json!({"type": "power", "slot": 0})));
    let a = c.get("/local/switch-id").await;
    validate("get", "/local/switch-id", &a);
    assert_eq!(a.json, json!({"type": "switch", "slot": 0}));
    for sp in ["/sp/sled/0", "/sp/sled/1", "/sp/switch/0", "/sp/power/0"] {
        let a = c.get(sp).await;
        assert_eq!(a.status, 200, "{sp}: {}", a.text);
        validate("get", "/sp/{type}/{slot}", &a);
    }
    let a = c.get("/sp/sled/0/power-state").await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("get", "/sp/{type}/{slot}/power-state", &a);
    let a = c.post_json("/sp/sled/0/power-state", json!("A2")).await;
    assert_eq!(a.status, 204, "{}", a.text);
    validate("post", "/sp/{type}/{slot}/power-state", &a);
    assert_eq!(c.get("/sp/sled/0/power-state").await.json, json!("A2"));
    let a = c.get("/sp/sled/0/startup-options").await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("get", "/sp/{type}/{slot}/startup-options", &a);
    let mut options = a.json.clone();
    options["verbose"] = json!(true);
    options["kmdb"] = json!(true);
    let a = c
        .post_json("/sp/sled/0/startup-options", options.clone())
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(c.get("/sp/sled/0/startup-options").await.json, options);
    let slot = "/sp/{type}/{slot}/component/{component}/active-slot";
    let a = c.get("/sp/sled/0/component/rot/active-slot").await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("get", slot, &a);
    let a = c
        .post_json(
            "/sp/sled/0/component/rot/active-slot?persist=false",
            json!({"slot": 1}),
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    validate("post", slot, &a);
    for component in ["sp", "rot"] {
        let a = c
            .get(&format!(
                "/sp/sled/0/component/{component}/caboose?firmware_slot=0"
            ))
            .await;
        assert_eq!(a.status, 200, "{component}: {}", a.text);
        validate("get", "/sp/{type}/{slot}/component/{component}/caboose", &a);
    }
    let hash = "/sp/{type}/{slot}/component/{component}/hash/{firmware_slot}";
    let a = c.get(&hbf("hash/0")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate("get", hash, &a);
    let a = c.post_empty(&hbf("hash/0")).await;
    assert_eq!(a.status, 204, "{}", a.text);
    validate("post", hash, &a);
    until("the slot is hashed", Duration::from_secs(30), async || {
        c.get(&hbf("hash/0")).await.json["status"] == "hashed"
    })
    .await;
    validate("get", hash, &c.get(&hbf("hash/0")).await);
    let a = c
        .send(
            "GET",
            "/sp/sled/0/component/rot/rot-boot-info",
            Some(br#"{"version": 3}"#.to_vec()),
            Some("application/json"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate(
        "get",
        "/sp/{type}/{slot}/component/{component}/rot-boot-info",
        &a,
    );
    let a = c.get(&hbf("update-status")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    validate(
        "get",
        "/sp/{type}/{slot}/component/{component}/update-status",
        &a,
    );
    assert_eq!(a.json, json!({"state": "none"}));
    // Errors are the reference's Error shape too.
    let a = c.get("/sp/sled/9").await;
    assert_eq!(a.status, 404, "{}", a.text);
    validate("get", "/sp/{type}/{slot}", &a);
    assert_eq!(a.json["error_code"], "UnknownSp");
    let a = c.get("/sp/rack/0").await;
    assert_eq!(a.status, 400, "{}", a.text);
    validate("get", "/sp/{type}/{slot}", &a);
}

#[actix::test]
async fn paths_not_served_yet_answer_501_and_unknown_ones_404() {
    let (_rig, c) = daemon().await;
    let doc: serde_json::Value = serde_json::from_str(&mgsd::http::openapi::document()).unwrap();
    let mut unserved = 0;
    for (path, ops) in reference()["paths"].as_object().unwrap() {
        if doc["paths"].get(path).is_some() {
            continue;
        }
        let concrete = path
            .replace("{type}", "sled")
            .replace("{slot}", "0")
            .replace("{component}", "sp")
            .replace("{sensor_id}", "1")
            .replace("{task_dump_index}", "0")
            .replace("{command}", "power-on");
        for method in ops.as_object().unwrap().keys() {
            let a = c.send(&method.to_uppercase(), &concrete, None, None).await;
            assert_eq!(a.status, 501, "{method} {path}: {}", a.text);
            assert_eq!(a.json["error_code"], "NotImplemented", "{}", a.text);
            // (The reference's websocket path declares no error bodies.)
            if ops[method]["responses"].get("5XX").is_some() {
                validate(method, path, &a);
            }
            unserved += 1;
        }
    }
    assert!(unserved > 10, "{unserved}");
    let a = c.get("/no/such/thing").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json["error_code"], "NotFound", "{}", a.text);
}

#[actix::test]
async fn the_api_version_header_is_checked() {
    let (_rig, c) = daemon().await;
    let a = c
        .clone()
        .version(Some("2.0.0"))
        .get("/local/all-sp-ids")
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error_code"], "UnsupportedApiVersion");
    assert!(a.json["message"].as_str().unwrap().contains("3.0.0"));
    // Without one, a request is taken as 3.0.0.
    let a = c.clone().version(None).get("/local/all-sp-ids").await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[actix::test]
async fn the_update_flow_of_the_reference_clients() {
    let (rig, c) = daemon().await;
    let image = host_image(2 * MIB, 1);
    let id = uuid::Uuid::new_v4();
    let start =
        |id: uuid::Uuid, slot: u16| format!("{}?firmware_slot={slot}&id={id}", hbf("update"));
    let a = c
        .post_bytes(&start(id, 0), image.clone(), "application/octet-stream")
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    validate("post", "/sp/{type}/{slot}/component/{component}/update", &a);
    // Answered at the prepare's ack: the SP names the update at once.
    let status = c.get(&hbf("update-status")).await;
    validate(
        "get",
        "/sp/{type}/{slot}/component/{component}/update-status",
        &status,
    );
    assert_eq!(status.json["id"], id.to_string(), "{}", status.text);
    // The same id and image: the same update.
    let again = c
        .post_bytes(&start(id, 0), image.clone(), "application/octet-stream")
        .await;
    assert_eq!(again.status, 204, "{}", again.text);
    assert_eq!(prepares(&rig, "sled-0"), 1, "not started twice");
    // The same id, another image: a conflict.
    let other = c
        .post_bytes(
            &start(id, 0),
            host_image(MIB, 2),
            "application/octet-stream",
        )
        .await;
    assert_eq!(other.status, 409, "{}", other.text);
    validate(
        "post",
        "/sp/{type}/{slot}/component/{component}/update",
        &other,
    );
    // Abort by another id is refused; by its id, done.
    let abort = "/sp/{type}/{slot}/component/{component}/update-abort";
    let wrong = c
        .post_json(&hbf("update-abort"), json!({"id": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(wrong.status, 409, "{}", wrong.text);
    validate("post", abort, &wrong);
    let a = c.post_json(&hbf("update-abort"), json!({"id": id})).await;
    assert_eq!(a.status, 204, "{}", a.text);
    validate("post", abort, &a);
    until("the SP says aborted", Duration::from_secs(30), async || {
        c.get(&hbf("update-status")).await.json["state"] == "aborted"
    })
    .await;
    // A new update runs to completion, status all the way from the SP.
    let id2 = uuid::Uuid::new_v4();
    let a = c
        .post_bytes(&start(id2, 1), image.clone(), "application/octet-stream")
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    until(
        "the SP says complete",
        Duration::from_secs(60),
        async || {
            let s = c.get(&hbf("update-status")).await;
            validate(
                "get",
                "/sp/{type}/{slot}/component/{component}/update-status",
                &s,
            );
            assert_eq!(s.json["id"], id2.to_string(), "{}", s.text);
            s.json["state"] == "complete"
        },
    )
    .await;
    // Posted again once complete, and after a restart: the same update,
    // reported as it ended, nothing sent again.
    let prepared = prepares(&rig, "sled-0");
    let again = c
        .post_bytes(&start(id2, 1), image.clone(), "application/octet-stream")
        .await;
    assert_eq!(again.status, 204, "{}", again.text);
    rig.restart().await;
    let c = Client::new(rig.http_addr().await);
    let again = c
        .post_bytes(&start(id2, 1), image.clone(), "application/octet-stream")
        .await;
    assert_eq!(again.status, 204, "{}", again.text);
    assert_eq!(prepares(&rig, "sled-0"), prepared, "not run again");
    // mgsd's own record of it, and the audit naming the HTTP client.
    until(
        "mgsd verified the slot's hash",
        Duration::from_secs(60),
        async || {
            let record = c.get(&format!("/mgsd/v1/updates/{id2}")).await;
            assert_eq!(record.status, 200, "{}", record.text);
            record.json["phase"] == "complete"
        },
    )
    .await;
    let audit = c.get("/mgsd/v1/audit?limit=20").await;
    let rows = audit.json.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["command"] == "update_start"
            && r["update_id"] == id2.to_string()
            && r["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("http 127.0.0.1:"))),
        "{}",
        audit.text
    );
}

/// An SP archive for `board`.
fn sp_archive(board: &str) -> Vec<u8> {
    build::archive(ArchiveSpec {
        image: build::sp_image(board, 128 * 1024, "1.0.40"),
        base: SP_IMAGE_BASE,
        aux: None,
        image_name: Some("default"),
        board,
        name: board,
        chip: SP_CHIP,
        git_rev: &build::fake_git_rev(board, "1.0.40"),
        bzip2: false,
    })
}

#[actix::test]
async fn bad_input_is_refused_before_any_traffic() {
    let (rig, c) = daemon().await;
    let image = host_image(MIB, 3);
    let id = uuid::Uuid::new_v4();
    let octets = "application/octet-stream";
    let cases: Vec<(String, Vec<u8>, &str, u16, &str)> = vec![
        (
            format!("/sp/sled/7/component/{HBF}/update?firmware_slot=0&id={id}"),
            image.clone(),
            octets,
            404,
            "UnknownSp",
        ),
        (
            format!("{}?firmware_slot=0&id=not-a-uuid", hbf("update")),
            image.clone(),
            octets,
            400,
            "BadRequest",
        ),
        (
            format!("{}?firmware_slot=2&id={id}", hbf("update")),
            image.clone(),
            octets,
            400,
            "BadSlot",
        ),
        (
            format!("{}?firmware_slot=0&id={id}", hbf("update")),
            image.clone(),
            "application/x-www-form-urlencoded",
            415,
            "UnsupportedMediaType",
        ),
        (
            format!("{}?firmware_slot=0&id={id}", hbf("update")),
            vec![0u8; 128 * 1024],
            octets,
            400,
            "BadImage",
        ),
        (
            format!("{SLED0}/component/sp/update?firmware_slot=0&id={id}"),
            sp_archive("sidecar-c"),
            octets,
            400,
            "BadImage",
        ),
        (
            format!("{SLED0}/component/fan/update?firmware_slot=0&id={id}"),
            image.clone(),
            octets,
            400,
            "BadComponent",
        ),
    ];
    for (path, body, content_type, status, code) in cases {
        let a = c.post_bytes(&path, body, content_type).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
        assert_eq!(a.json["error_code"], code, "{path}: {}", a.text);
        validate("post", "/sp/{type}/{slot}/component/{component}/update", &a);
        if code == "BadImage" && path.contains("/sp/update") {
            let m = a.json["message"].as_str().unwrap();
            assert!(
                m.contains("sidecar-c") && m.contains("gimlet"),
                "names both boards: {m}"
            );
        }
    }
    // Too large: said up front (answered before the body is sent, to a
    // client that waits for `100 Continue`), or found as it streams.
    let path = format!("{}?firmware_slot=0&id={id}", hbf("update"));
    let addr = rig.http_addr().await;
    let (head, _) = raw(addr, &path, Some(5 * MIB), &[], true).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.contains("RequestTooLarge") && head.contains("4194304"),
        "{head}"
    );
    let (head, _) = raw(addr, &path, None, &host_image(5 * MIB, 3), false).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(prepares(&rig, "sled-0"), 0, "nothing reached the SP");
    assert_eq!(c.get(&hbf("update-status")).await.json["state"], "none");
}

/// POST `body` to `path` over a raw connection: with `length`, as a
/// declared length (`expect: 100-continue` if `expect`), else chunked;
/// stops writing once the server answers. The answer's text, and
/// whether all of the body went.
async fn raw(
    addr: std::net::SocketAddr,
    path: &str,
    length: Option<usize>,
    body: &[u8],
    expect: bool,
) -> (String, bool) {
    use std::io::{Read, Write};
    let (path, body) = (path.to_string(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let framing = match length {
            Some(n) => format!("content-length: {n}\r\n"),
            None => "transfer-encoding: chunked\r\n".into(),
        };
        let expect = if expect {
            "expect: 100-continue\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n\
             {framing}{expect}\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut sent_all = true;
        if length.is_none() {
            for chunk in body.chunks(64 * 1024) {
                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                if s.write_all(&framed).is_err() {
                    sent_all = false;
                    break;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
        let mut answer = vec![0u8; 64 * 1024];
        let n = s.read(&mut answer).unwrap_or(0);
        (String::from_utf8_lossy(&answer[..n]).into_owned(), sent_all)
    })
    .await
    .unwrap()
}

#[actix::test]
async fn a_client_gone_mid_upload_starts_nothing_and_stops_nothing() {
    use std::io::Write;
    let (rig, c) = daemon().await;
    let id = uuid::Uuid::new_v4();
    let a = c
        .post_bytes(
            &format!("{}?firmware_slot=0&id={id}", hbf("update")),
            host_image(2 * MIB, 4),
            "application/octet-stream",
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    // Half an upload to the other sled, then the client goes.
    let addr = rig.http_addr().await;
    let gone = uuid::Uuid::new_v4();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /sp/sled/1/component/{HBF}/update?firmware_slot=0&id={gone} HTTP/1.1\r\n\
             host: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            2 * MIB
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&host_image(2 * MIB, 5)[..MIB]).unwrap();
    })
    .await
    .unwrap();
    until(
        "the first update completes",
        Duration::from_secs(60),
        async || c.get(&hbf("update-status")).await.json["state"] == "complete",
    )
    .await;
    assert_eq!(
        prepares(&rig, "sled-1"),
        0,
        "the broken upload started nothing"
    );
    let other = c
        .get(&format!("/sp/sled/1/component/{HBF}/update-status"))
        .await;
    assert_eq!(other.json["state"], "none", "{}", other.text);
}

#[actix::test]
async fn a_hundred_update_posts_at_once_are_all_accepted() {
    let rack = standard_rack(
        100,
        0,
        0,
        Timings {
            host_flash_mib: 4,
            ..Timings::instant()
        },
    );
    // Fewer places than clients: the rest wait for one, none is refused.
    let rig = Rig::in_process(rack)
        .sp_defaults(SpDefaults::quiet())
        .tables("[http]\nmax_connections = 16\n[[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n")
        .start()
        .await;
    let c = Client::new(rig.http_addr().await);
    let image = host_image(256 * 1024, 7);
    let posts: Vec<_> = (0..100)
        .map(|slot| {
            let (c, image) = (c.clone(), image.clone());
            let id = uuid::Uuid::new_v4();
            let path = format!("/sp/sled/{slot}/component/{HBF}/update?firmware_slot=0&id={id}");
            tokio::spawn(
                async move { c.post_bytes(&path, image, "application/octet-stream").await },
            )
        })
        .collect();
    for (slot, post) in posts.into_iter().enumerate() {
        let a = post.await.unwrap();
        assert_eq!(a.status, 204, "sled {slot}: {}", a.text);
    }
    for sp in &rig.rack().sps {
        assert_eq!(sp.fault_stats().prepares, 1, "{}", sp.name);
    }
}

#[actix::test]
async fn past_the_connection_limit_clients_wait_then_are_told_busy() {
    let rig = Rig::in_process(standard_rack(1, 0, 0, Timings::instant()))
        .tables(
            "[http]\nmax_connections = 1\nconnection_wait_ms = 300\n\
             [[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n",
        )
        .start()
        .await;
    let addr = rig.http_addr().await;
    // One connection holds the only place (an idle keep-alive client).
    let held = std::net::TcpStream::connect(addr).unwrap();
    let c = Client::new(addr);
    let a = c.get("/local/all-sp-ids").await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.json["error_code"], "Busy", "{}", a.text);
    drop(held);
    // With the place free again, a waiting client is served.
    until("a place is free", Duration::from_secs(10), async || {
        c.get("/local/all-sp-ids").await.status == 200
    })
    .await;
}

#[actix::test]
async fn the_stream_follows_updates_without_polling() {
    use std::io::BufRead;
    let (rig, c) = daemon().await;
    let addr = rig.http_addr().await;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    // A reader of the event stream, on its own thread.
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let r = agent
            .get(format!("http://{addr}/mgsd/v1/updates/stream"))
            .call()
            .unwrap();
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let reader = std::io::BufReader::new(r.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The stream says when it follows.
    let first = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with(':'), "{first}");
    let id = uuid::Uuid::new_v4();
    let a = c
        .post_bytes(
            &format!("{}?firmware_slot=0&id={id}", hbf("update")),
            host_image(MIB, 6),
            "application/octet-stream",
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    let mut phases = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !phases.contains(&"complete".to_string()) {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .expect("the stream goes on until the update ends")
            .expect("the stream is open");
        if let Some(data) = line.strip_prefix("data: ") {
            let record: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(record["id"], id.to_string(), "{record}");
            phases.push(record["phase"].as_str().unwrap().to_string());
        } else {
            assert!(
                line.is_empty() || line == "event: update" || line.starts_with(':'),
                "{line}"
            );
        }
    }
    assert!(phases.len() >= 2, "{phases:?}");
}

/// The daemon's peak resident memory so far (VmHWM), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[actix::test]
async fn a_32_mib_upload_is_streamed_and_delivered_from_its_file() {
    let rack = standard_rack(
        1,
        0,
        0,
        Timings {
            host_flash_mib: 32,
            ..Timings::instant()
        },
    );
    let rig = Rig::child(rack)
        .sp_defaults(SpDefaults {
            host_flash_capacity_mib: Some(32),
            ..SpDefaults::default()
        })
        .state()
        .tables("[[http.listener]]\naddr = \"127.0.0.1:0\"\ntrusted_network = true\n")
        .start()
        .await;
    let c = Client::new(rig.http_addr().await);
    let before = peak_rss_kib(rig.pid());
    let id = uuid::Uuid::new_v4();
    let a = c
        .post_bytes(
            &format!("{}?firmware_slot=0&id={id}", hbf("update")),
            host_image(32 * MIB, 9),
            "application/octet-stream",
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    until("verified", Duration::from_secs(120), async || {
        c.get(&format!("/mgsd/v1/updates/{id}")).await.json["phase"] == "complete"
    })
    .await;
    let grew = peak_rss_kib(rig.pid()).saturating_sub(before);
    eprintln!("peak RSS grew {grew} KiB for a 32 MiB upload and update");
    assert!(
        grew < 8 * 1024,
        "peak RSS grew {grew} KiB: the image was held in memory"
    );
}

#[actix::test]
async fn an_sp_holding_another_clients_update_is_a_conflict_naming_it() {
    use gateway_messages::{ComponentUpdatePrepare, MgsRequest, SpComponent, UpdateId};
    let (rig, c) = daemon().await;
    // Another gateway prepares an update of sled-0's host flash.
    let theirs = uuid::Uuid::new_v4();
    let mut other = sp_sim::client::Client::new(rig.sp("sled-0").addr)
        .await
        .unwrap();
    let prepare = MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
        component: SpComponent::HOST_CPU_BOOT_FLASH,
        id: UpdateId(*theirs.as_bytes()),
        slot: 0,
        total_size: MIB as u32,
    });
    other.rpc(prepare, &[]).await.unwrap();
    let a = c
        .post_bytes(
            &format!(
                "{}?firmware_slot=0&id={}",
                hbf("update"),
                uuid::Uuid::new_v4()
            ),
            host_image(MIB, 11),
            "application/octet-stream",
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.text);
    validate("post", "/sp/{type}/{slot}/component/{component}/update", &a);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains(&theirs.to_string()),
        "{}",
        a.text
    );
    // The SP's status names their update; ours changed nothing.
    let s = c.get(&hbf("update-status")).await;
    assert_eq!(s.json["id"], theirs.to_string(), "{}", s.text);
}
