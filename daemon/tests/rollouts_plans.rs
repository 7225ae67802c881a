//! Rollout plans that are wrong, end to end: the real `mgsd` binary (a
//! child process) against a simulated rack in this process, plans handed
//! to the real `mgsctl`. Every problem is named with its line, alone or
//! together with others, whether the daemon or `mgsctl` finds it, and
//! nothing starts; the daemon's own sled is a target only with
//! `allow_self`.

mod common;

use common::rollouts::*;
use common::{err_code, host_image, new_id, Rig, KIB};
use serde_json::Value;
use std::path::Path;

/// `mgsctl --json rollout start PLAN`: exit code, the daemon's answer (if
/// mgsctl got as far as asking), stderr.
async fn try_start(r: &Rig, plan: &Path) -> (i32, Option<Value>, String) {
    let (code, last, err) = r.json(&["rollout", "start", plan.to_str().unwrap()]).await;
    (code, Some(last).filter(|v| !v.is_null()), err)
}

/// Line (1-based) of the first line of `text` containing `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in the plan"))
        + 1
}

#[actix::test]
async fn every_plan_error_is_named_with_its_line_and_nothing_starts() {
    let r = rig(4, 0, 2048)
        .tables("[rollout]\nown_sp = \"sled-3\"\n")
        .start()
        .await;
    r.file("host.img", &host_image(192 * KIB, 61));
    let mut wrong: Vec<String> = Vec::new();

    // Each problem the daemon finds, alone: (what, plan, what the message
    // must also say).
    let target = |head: &str, body: &str| {
        format!("{head}\n{body}\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown SP",
            format!(
                "max_concurrent = 2\n\n{}",
                target("[[target]]", "sps = [\"sled-0\", \"sled-9\"]")
            ),
            "sled-9",
        ),
        (
            "kind matching no SP",
            format!("canary = 1\n{}", target("[[target]]", "kind = \"psc\"")),
            "psc",
        ),
        (
            "the same SP and component twice (by name, then by serial)",
            format!(
                "{}\n{}",
                target("[[target]]", "sps = [\"sled-0\"]"),
                target("[[target]]", "sps = [\"BRM42220000\"]\nslot = 1")
            ),
            "twice",
        ),
        (
            "the own sled without allow_self",
            format!("\n\n{}", target("[[target]]", "sps = [\"sled-3\"]")),
            "allow_self",
        ),
        (
            "the own sled picked by kind",
            target("[[target]]", "kind = \"sled\""),
            "allow_self",
        ),
        (
            "no selector",
            target("[[target]]", "slot = 1"),
            "exactly one",
        ),
        (
            "two selectors",
            format!(
                "{}\n{}",
                target("[[target]]", "sps = [\"sled-1\"]"),
                target("[[target]]", "kind = \"sled\"\nall = true")
            ),
            "exactly one",
        ),
    ];
    for (i, (what, text, says)) in cases.iter().enumerate() {
        let plan = r.file(&format!("bad-{i}.toml"), text.as_bytes());
        // The [[target]] the problem is in: the last one.
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("[[target]]"))
            .map(|(n, _)| n + 1)
            .last()
            .unwrap();
        let (code, answer, err) = try_start(&r, &plan).await;
        let answer = answer.unwrap_or(Value::Null);
        let message = answer["error"]["message"].as_str().unwrap_or("");
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({err})"));
        }
        if err_code(&answer) != "bad_plan" {
            wrong.push(format!(
                "{what}: error code {:?}, not bad_plan: {answer}",
                err_code(&answer)
            ));
        }
        if !message.contains(&format!("line {line}")) {
            wrong.push(format!(
                "{what}: the message does not name line {line}: {message:?}"
            ));
        }
        if !message.contains(says) {
            wrong.push(format!(
                "{what}: the message does not say {says:?}: {message:?}"
            ));
        }
    }

    // All of them in one plan: every one listed, each with its line.
    let all = "max_concurrent = 2\n\
        [[target]] # unknown\nsps = [\"sled-0\", \"sled-9\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n\
        [[target]] # kind\nkind = \"psc\"\ncomponent = \"sp\"\nimage = \"host.img\"\n\
        [[target]] # twice\nsps = [\"BRM42220000\"]\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n\
        [[target]] # own\nsps = [\"sled-3\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n\
        [[target]] # none\ncomponent = \"rot\"\nimage = \"host.img\"\n\
        [[target]] # two\nkind = \"sled\"\nall = true\ncomponent = \"stage0\"\nimage = \"host.img\"\n";
    let plan = r.file("bad-all.toml", all.as_bytes());
    let (code, answer, err) = try_start(&r, &plan).await;
    let answer = answer.unwrap_or(Value::Null);
    let message = answer["error"]["message"].as_str().unwrap_or("");
    if code != 5 || err_code(&answer) != "bad_plan" {
        wrong.push(format!("all in one: exit {code}, {answer} {err}"));
    }
    for marker in ["# unknown", "# kind", "# twice", "# own", "# none", "# two"] {
        let line = line_of(all, marker);
        if !message.contains(&format!("line {line}")) {
            wrong.push(format!(
                "all in one: line {line} ({marker}) not named: {message:?}"
            ));
        }
    }
    // The duplicate names where the first was given, too.
    if !message.contains(&format!("(line {})", line_of(all, "# unknown"))) {
        wrong.push(format!(
            "all in one: the duplicate does not name the first target's line: {message:?}"
        ));
    }

    // What mgsctl cannot read names its line too: a wave out of range, and
    // a TOML syntax error.
    let client_side = [
        (
            "a wave of 200%",
            "max_concurrent = 2\nwaves = [\"200%\"]\n[[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n",
            2,
        ),
        (
            "a TOML syntax error",
            "max_concurrent = 2\n\n[[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\nimage = \"host.img\"\n",
            5,
        ),
    ];
    for (i, (what, text, line)) in client_side.iter().enumerate() {
        let plan = r.file(&format!("unreadable-{i}.toml"), text.as_bytes());
        let (code, answer, err) = try_start(&r, &plan).await;
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({answer:?} {err})"));
        }
        let said = format!(
            "{err} {}",
            answer.map(|a| a.to_string()).unwrap_or_default()
        );
        if !said.contains(&format!("line {line}")) {
            wrong.push(format!("{what}: line {line} not named: {said:?}"));
        }
    }

    // Nothing was started anywhere.
    for (name, prepares) in r.prepares_by_sp() {
        if prepares != 0 {
            wrong.push(format!("{name}: {prepares} prepare(s) after refused plans"));
        }
    }
    let list = r.ok(&["rollout", "list"]).await;
    if list.as_array().is_none_or(|l| !l.is_empty()) {
        wrong.push(format!("rollouts after refused plans: {list}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // With allow_self the own sled is a target like any other.
    let plan = r.file(
        "self.toml",
        "allow_self = true\n[[target]]\nsps = [\"sled-3\"]\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n".as_bytes(),
    );
    let id = new_id();
    let started_rec = r.start_rollout(&plan, &id).await;
    assert_eq!(sp_of(&targets(&started_rec)[0]), "sled-3");
    let (code, out, err) = r.mgsctl(&["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[actix::test]
async fn an_image_too_large_for_its_component_is_a_plan_error_naming_its_line() {
    let r = rig(4, 0, 2048).start().await;
    r.file("host.img", &host_image(192 * KIB, 71));
    // Over the 256 KiB a RoT slot holds.
    r.file("big.img", &vec![0x5Au8; 300 * KIB]);
    let mut wrong: Vec<String> = Vec::new();
    let alone = "max_concurrent = 1\n[[target]]\nsps = [\"sled-1\"]\ncomponent = \"rot\"\nimage = \"big.img\"\n";
    // With another problem: both are to be listed.
    let with_other = "[[target]] # big\nsps = [\"sled-1\"]\ncomponent = \"rot\"\nimage = \"big.img\"\n\
        [[target]] # unknown\nsps = [\"sled-9\"]\ncomponent = \"host-boot-flash\"\nimage = \"host.img\"\n";
    for (what, text, lines) in [
        ("alone", alone, vec![2]),
        (
            "with an unknown SP",
            with_other,
            vec![
                line_of(with_other, "# big"),
                line_of(with_other, "# unknown"),
            ],
        ),
    ] {
        let plan = r.file(&format!("big-{}.toml", lines.len()), text.as_bytes());
        let (code, answer, err) = try_start(&r, &plan).await;
        let answer = answer.unwrap_or(Value::Null);
        let message = answer["error"]["message"].as_str().unwrap_or("");
        if code != 5 {
            wrong.push(format!("{what}: exit {code}, not 5 ({err})"));
        }
        if err_code(&answer) != "bad_plan" {
            wrong.push(format!(
                "{what}: error code {:?}, not bad_plan: {answer}",
                err_code(&answer)
            ));
        }
        for line in lines {
            if !message.contains(&format!("line {line}")) {
                wrong.push(format!("{what}: line {line} not named: {message:?}"));
            }
        }
    }
    for (name, prepares) in r.prepares_by_sp() {
        if prepares != 0 {
            wrong.push(format!("{name}: {prepares} prepare(s) after refused plans"));
        }
    }
    let list = r.ok(&["rollout", "list"]).await;
    if list.as_array().is_none_or(|l| !l.is_empty()) {
        wrong.push(format!("rollouts after refused plans: {list}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
