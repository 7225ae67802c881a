//! The HTTP API over TLS with client certificates: the certificate's
//! common name decides the class; a client without a certificate, with
//! one another CA signed, or a reader calling an operate path is refused
//! (403) and audited. Plain HTTP where other hosts reach it needs
//! `trusted_network`.

mod common;

use common::http::{fixture, Client};
use common::{host_image, mgsctl, standard_rack, Rig, HBF, MIB};
use serde_json::json;
use sp_sim::Timings;

async fn daemon() -> (Rig, std::net::SocketAddr) {
    let tables = format!(
        "[http.access]\noperate_subjects = [\"operator\"]\nread_subjects = [\"reader\"]\n\
         [[http.listener]]\naddr = \"127.0.0.1:0\"\n\
         [http.listener.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        fixture("server.pem").display(),
        fixture("server-key.pem").display(),
        fixture("ca.pem").display(),
    );
    let timings = Timings {
        host_flash_mib: 4,
        ..Timings::instant()
    };
    let rig = Rig::in_process(standard_rack(1, 0, 0, timings))
        .state()
        .tables(&tables)
        .start()
        .await;
    let addr = rig.http_addr().await;
    (rig, addr)
}

#[actix::test]
async fn certificates_decide_who_may_do_what() {
    let (_rig, addr) = daemon().await;
    let operator = Client::tls(addr, Some("operator"));
    let a = operator.get("/sp/sled/0/power-state").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = operator
        .post_json("/sp/sled/0/power-state", json!("A2"))
        .await;
    assert_eq!(a.status, 204, "{}", a.text);

    let reader = Client::tls(addr, Some("reader"));
    let a = reader.get("/sp/sled/0/power-state").await;
    assert_eq!(a.status, 200, "a reader reads: {}", a.text);
    let a = reader
        .post_json("/sp/sled/0/power-state", json!("A0"))
        .await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["error_code"], "PermissionDenied");
    assert_eq!(
        operator.get("/sp/sled/0/power-state").await.json,
        json!("A2"),
        "unchanged"
    );

    let anonymous = Client::tls(addr, None);
    let a = anonymous.get("/sp/sled/0/power-state").await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{}",
        a.text
    );

    let stranger = Client::tls(addr, Some("stranger"));
    let a = stranger.get("/sp/sled/0/power-state").await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(
        a.json["message"].as_str().unwrap().contains("not trusted"),
        "{}",
        a.text
    );

    // Every refusal is in the audit, naming the client.
    let audit = operator.get("/mgsd/v1/audit?limit=50").await;
    let rows = audit.json.as_array().unwrap();
    let refused = |command: &str, needle: &str| {
        rows.iter().any(|r| {
            r["command"] == command
                && r["result"] == "permission_denied"
                && r["message"].as_str().is_some_and(|m| m.contains(needle))
        })
    };
    assert!(refused("power_set", "CN=reader"), "{}", audit.text);
    assert!(refused("connect", "no"), "{}", audit.text);
    assert!(refused("connect", "not trusted"), "{}", audit.text);
    assert!(
        rows.iter().any(|r| r["command"] == "power_set"
            && r["result"] == "ok"
            && r["peer"]
                .as_str()
                .is_some_and(|p| p.contains("CN=operator"))),
        "{}",
        audit.text
    );
}

#[actix::test]
async fn mgsctl_drives_a_remote_daemon_over_https() {
    let (rig, addr) = daemon().await;
    let url = format!("https://localhost:{}", addr.port());
    let tls = |who: &str| {
        [
            "--http".to_string(),
            url.clone(),
            "--cacert".into(),
            fixture("ca.pem").display().to_string(),
            "--cert".into(),
            fixture(&format!("{who}.pem")).display().to_string(),
            "--key".into(),
            fixture(&format!("{who}-key.pem")).display().to_string(),
        ]
    };
    // The socket is not where the commands go: a path nothing serves.
    let nowhere = rig.dir().join("nowhere.sock");
    let run = async |who: &str, args: &[&str]| {
        let mut all: Vec<String> = tls(who).to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        mgsctl(&nowhere, &all).await
    };
    let (code, out, err) = run("reader", &["list"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sled-0"), "{out}");
    let (code, _, err) = run("reader", &["power", "set", "sled-0", "A2"]).await;
    assert_eq!(code, 9, "a reader may not: {err}");
    let image = rig.dir().join("hbf.img");
    std::fs::write(&image, host_image(MIB, 8)).unwrap();
    let image = image.display().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let (code, out, err) = run(
        "operator",
        &[
            "update", "start", "sled-0", HBF, "--image", &image, "--id", &id, "--watch",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("complete"), "{out}");
    let (code, out, err) = run("operator", &["--json", "update", "status", "sled-0", HBF]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["ok"]["sp_status"]["id"], id.as_str(), "{out}");
    // Without a certificate: refused, as over the API.
    let (code, _, err) = mgsctl(
        &nowhere,
        &[
            "--http",
            &url,
            "--cacert",
            &fixture("ca.pem").display().to_string(),
            "list",
        ],
    )
    .await;
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("client certificate"), "{err}");
}

#[test]
fn plain_http_other_hosts_reach_needs_trusted_network() {
    let plain = "[[http.listener]]\naddr = \"0.0.0.0:12225\"\n";
    let e = mgsd::config::Config::from_toml(plain)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("trusted_network") && e.contains("0.0.0.0:12225"),
        "{e}"
    );
    mgsd::config::Config::from_toml(&format!("{plain}trusted_network = true\n")).unwrap();
    mgsd::config::Config::from_toml("[[http.listener]]\naddr = \"[::1]:0\"\n").unwrap();
    let tls_without_ca = "[[http.listener]]\naddr = \"[::]:12225\"\n\
                          [http.listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
    let e = mgsd::config::Config::from_toml(tls_without_ca)
        .unwrap_err()
        .to_string();
    assert!(e.contains("client_ca"), "{e}");
}

#[actix::test]
async fn the_daemon_does_not_start_with_such_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mgsd.toml");
    std::fs::write(&config, "[[http.listener]]\naddr = \"0.0.0.0:0\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mgsd"))
        .env("MGSD_CONTROL__SOCKET", "/nonexistent/mgsd.sock")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain HTTP") && err.contains("trusted_network"),
        "{err}"
    );
}
