//! Careless and hostile requests on the control socket, against the real
//! `mgsd` binary (a child process) and a simulated rack in this process:
//! an over-long line, what is not a strict JSON object, many requests
//! written at once on one connection, and update ids in error texts.

mod common;

use common::hostile::rig;
use common::{err_code, host_image, message, new_id, HBF};
use serde_json::json;

// 1. Bounds and strictness.

#[actix::test]
async fn an_over_long_line_is_answered_and_the_connection_serves_on() {
    let r = rig(1, 0).control("max_request_bytes = 1024").start().await;
    let mut c = r.conn().await;
    let pad = "x".repeat(5000);
    let v = c
        .ask(&json!({"cmd": "version", "request_id": 1, "pad": pad}))
        .await;
    assert_eq!(err_code(&v), "request_too_large", "{v}");
    let v = c.ask(&json!({"cmd": "version", "request_id": 2})).await;
    assert_eq!(v["request_id"], 2, "{v}");
    assert_eq!(v["ok"]["protocol"], 1, "{v}");
    // Under the limit, the unknown field is what is wrong.
    let v = c
        .ask(&json!({"cmd": "version", "request_id": 3, "pad": "x"}))
        .await;
    assert_eq!(err_code(&v), "bad_request", "{v}");
}

#[actix::test]
async fn requests_are_strict_json_objects() {
    let r = rig(1, 0).start().await;
    let mut c = r.conn().await;
    let lines: [&[u8]; 8] = [
        b"{\"cmd\":\"list\",\"x\":1}\n",
        b"{\"cmd\":\"version\",\"x\":1}\n",
        b"{\"cmd\":\"health\",\"x\":1}\n",
        b"{\"cmd\":\"list\",\"cmd\":\"version\"}\n",
        b"{\"cmd\":\"state\",\"sp\":\"sled-0\",\"sp\":\"sled-1\"}\n",
        b"{\"cmd\":\"version\",\"v\":1,\"v\":1}\n",
        b"   \t  \n",
        b"[\"list\"]\n",
    ];
    for line in lines {
        c.write(line).await;
        let v = c.next().await.expect("an answer");
        assert_eq!(
            err_code(&v),
            "bad_request",
            "{:?}: {v}",
            String::from_utf8_lossy(line)
        );
    }
    let v = c
        .ask(&json!({"cmd": "version", "request_id": "last"}))
        .await;
    assert_eq!(v["request_id"], "last", "one answer per line: {v}");
}

#[actix::test]
async fn requests_on_one_connection_are_answered_in_order() {
    let r = rig(2, 0).start().await;
    let requests = [
        json!({"cmd": "reset", "sp": "sled-0"}),
        json!({"cmd": "version"}),
        json!({"cmd": "state", "sp": "sled-42"}),
        json!({"cmd": "caboose", "sp": "sled-1"}),
        json!({"cmd": "no_such_command"}),
        json!({"cmd": "power_get", "sp": "sled-1"}),
        json!({"cmd": "health"}),
        json!({"cmd": "list"}),
        json!({"cmd": "update_status", "sp": "sled-0", "component": HBF}),
        json!({"cmd": "version"}),
    ];
    let mut batch = String::new();
    for (i, mut req) in requests.into_iter().enumerate() {
        req["request_id"] = json!(i);
        batch += &format!("{req}\n");
    }
    let mut c = r.conn().await;
    c.write(batch.as_bytes()).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = c.next().await.expect("an answer");
        if ids.is_empty() {
            assert_eq!(v["ok"]["reset"], true, "the reset first: {v}");
        }
        ids.push(v["request_id"].as_u64());
    }
    assert_eq!(ids, (0..10).map(Some).collect::<Vec<_>>());
    assert_eq!(r.rack().sps[0].fault_stats().resets, 1);
}

// 2. Ids in error texts.

#[actix::test]
async fn error_messages_spell_update_ids_as_uuids() {
    let r = rig(1, 200).start().await;
    let img = r.file("host.img", &host_image(400_000, 6));
    let other = r.file("other.img", &host_image(200_000, 7));
    let running = new_id();
    r.ok(&[
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        img.to_str().unwrap(),
        "--id",
        &running,
    ])
    .await;
    let wrong = new_id();
    let mut c = r.conn().await;
    let v = c
        .ask(&json!({"cmd": "update_abort", "sp": "sled-0", "component": HBF, "id": wrong}))
        .await;
    assert!(v["error"].is_object(), "{v}");
    let text = message(&v);
    assert!(!text.contains("UpdateId("), "{text}");
    assert!(text.contains(&wrong), "names the id asked for: {text}");
    if !text.contains(&running) {
        eprintln!("note: the abort refusal does not name the running update: {text}");
    }
    let (code, _, err) = r.mgsctl(&["update", "abort", "sled-0", HBF, &wrong]).await;
    assert_eq!(code, 8, "{err}");
    assert!(err.contains(&wrong) && !err.contains("UpdateId("), "{err}");
    // Other errors that name an id.
    let unknown = new_id();
    let v = c.ask(&json!({"cmd": "watch", "id": unknown})).await;
    assert_eq!(err_code(&v), "unknown_update", "{v}");
    assert!(message(&v).contains(&unknown), "{v}");
    let args = [
        "update",
        "start",
        "sled-0",
        HBF,
        "--image",
        other.to_str().unwrap(),
        "--id",
        &running,
    ];
    let (code, _, err) = r.mgsctl(&args).await;
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains(&running) && !err.contains("UpdateId("),
        "{err}"
    );
}
