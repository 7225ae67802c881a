//! Rollouts interrupted, end to end: the real `mgsd` binary (a child
//! process) against a simulated rack in this process. The daemon killed
//! (SIGKILL) mid-rollout takes it up again without updating any target
//! twice; a second client pauses, resumes and aborts it while a watch
//! runs.

mod common;

use common::rollouts::*;
use common::{err_code, host_image, new_id, KIB, MIB};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::{json, Value};
use sp_sim::expected_slot_hash;
use std::time::{Duration, Instant};

// 1. kill -9 mid-rollout.

#[actix::test]
async fn a_rollout_survives_sigkill_and_updates_no_target_twice() {
    let r = rig(12, 0, 1024).start().await;
    let image = host_image(960 * KIB, 41);
    r.file("host.img", &image);
    let plan = r.file(
        "kill.toml",
        "max_concurrent = 3\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n".as_bytes(),
    );
    let id = new_id();
    r.start_rollout(&plan, &id).await;

    // Kill once some targets are complete and a running one is mid-image.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let s = r.rollout_status(&id).await;
        let mid = targets(&s)
            .iter()
            .filter(|t| state(t) == "running")
            .any(|t| {
                in_progress(r.sp(sp_of(t)), SpComponent::HOST_CPU_BOOT_FLASH).is_some_and(
                    |(got, total)| got >= 64 * KIB as u32 && got < total - 192 * KIB as u32,
                )
            });
        if count(&s, "complete") >= 3 && mid {
            r.restart().await;
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "never mid-rollout: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let done_before = names(&before, |t| state(t) == "complete");
    let after = r.rollout_status(&id).await;
    eprintln!(
        "killed at: {}\nafter the restart: {}",
        summary(&before),
        summary(&after)
    );
    assert!(
        done_before.is_subset(&names(&after, |t| state(t) == "complete")),
        "complete before the kill: {done_before:?}; after: {}",
        summary(&after)
    );
    assert!(
        !["complete", "stopped", "aborted"].contains(&phase(&after)),
        "still under way after the restart: {}",
        summary(&after)
    );
    assert_eq!(after["resumed"], 1, "{}", summary(&after));

    let fin = r.until_rollout_ended(&id, Duration::from_secs(40)).await;
    assert_eq!(phase(&fin), "complete", "{}\n{}", summary(&fin), r.log());
    assert_eq!(count(&fin, "complete"), 12, "{}", summary(&fin));
    let (code, out, err) = r.mgsctl(&["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let want = expected_slot_hash(&image, FLASH_MIB * MIB as u32);
    for t in targets(&fin) {
        let sp = r.sp(sp_of(t));
        assert_eq!(
            sp.fault_stats().prepares,
            1,
            "{}: prepared once (an update taken up again is not prepared again)",
            sp.name
        );
        assert_eq!(
            sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
            Ok(UpdateStatus::Complete(update_id(t).into())),
            "{}",
            sp.name
        );
        assert_eq!(sp.slot_hash(1), Some(want), "{} slot 1", sp.name);
    }
    let (_, breaks) = timeline_breaks(&fin, 3);
    assert!(breaks.is_empty(), "{breaks:?}");
}

// 2. Pause, resume and abort from another client.

#[actix::test]
async fn pause_resume_and_abort_from_a_second_client_while_a_watch_runs() {
    let r = rig(12, 0, 1024).start().await;
    let image = host_image(960 * KIB, 51);
    r.file("host.img", &image);
    let plan = r.file(
        "ops.toml",
        "max_concurrent = 2\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n".as_bytes(),
    );
    let id = new_id();
    r.start_rollout(&plan, &id).await;
    let watch = r.watch_rollout(&id).await;
    let mut ops = r.conn().await;
    let ask = |cmd: &str| json!({"cmd": cmd, "id": id});

    // What cannot be done.
    let v = ops.ask(&ask("rollout_resume")).await;
    assert_eq!(err_code(&v), "rollout_state", "resume while running: {v}");
    let (code, _, err) = r.mgsctl(&["rollout", "resume", &id]).await;
    assert_eq!(code, 8, "{err}");
    let unknown = new_id();
    let v = ops
        .ask(&json!({"cmd": "rollout_status", "id": unknown}))
        .await;
    assert_eq!(err_code(&v), "unknown_rollout", "{v}");
    let (code, _, err) = r.mgsctl(&["rollout", "pause", &unknown]).await;
    assert_eq!(code, 4, "{err}");

    // Pause once wave 1 runs two targets.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        if s["current_wave"] == 1 && count(&s, "running") == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "wave 1 never ran two: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v = ops.ask(&ask("rollout_pause")).await;
    let paused = v["ok"].clone();
    assert_eq!(phase(&paused), "paused", "{v}");
    let begun = names(&paused, started);
    let running = names(&paused, |t| state(t) == "running");
    assert!(!running.is_empty(), "{}", summary(&paused));

    // The running ones finish; nothing new starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let idle = loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        assert_eq!(phase(&s), "paused", "{}", summary(&s));
        assert_eq!(
            names(&s, started),
            begun,
            "a start while paused: {}",
            summary(&s)
        );
        if count(&s, "running") == 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "running targets never finished: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        running.is_subset(&names(&idle, |t| state(t) == "complete")),
        "running at the pause: {running:?}; then {}",
        summary(&idle)
    );
    // Had the daemon meant to start more, it would have as the places
    // freed; look once more a little later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = ops.ask(&ask("rollout_status")).await["ok"].clone();
    assert_eq!(phase(&still), "paused", "{}", summary(&still));
    assert_eq!(names(&still, started), begun, "{}", summary(&still));
    let v = ops.ask(&ask("rollout_pause")).await;
    assert_eq!(err_code(&v), "rollout_state", "pause while paused: {v}");

    // Resume: it goes on.
    let v = ops.ask(&ask("rollout_resume")).await;
    assert!(v["ok"].is_object(), "{v}");
    assert_ne!(phase(&v["ok"]), "paused", "{v}");
    // Then abort while the new targets are early in their images.
    let deadline = Instant::now() + Duration::from_secs(20);
    let early_snapshot = loop {
        let s = ops.ask(&ask("rollout_status")).await["ok"].clone();
        let run: Vec<&Value> = targets(&s)
            .iter()
            .filter(|t| state(t) == "running")
            .collect();
        let early = !run.is_empty()
            && run.iter().all(|t| {
                in_progress(r.sp(sp_of(t)), SpComponent::HOST_CPU_BOOT_FLASH)
                    .is_some_and(|(got, total)| got >= 32 * KIB as u32 && got < total / 2)
            });
        if early {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no new target under way: {}",
            summary(&s)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let early = names(&early_snapshot, |t| state(t) == "running");
    let v = ops.ask(&ask("rollout_abort")).await;
    let aborting = v["ok"].clone();
    assert!(["aborting", "aborted"].contains(&phase(&aborting)), "{v}");
    // Running when the abort came (the answer is read after the actor
    // took the abort, so a target whose SP abort landed already shows as
    // aborted).
    let hit = names(&aborting, |t| matches!(state(t), "running" | "aborted"));
    assert!(
        early.is_subset(&hit),
        "running before the abort: {early:?}; in the abort's answer: {}",
        summary(&aborting)
    );
    assert!(!hit.is_empty(), "{}", summary(&aborting));
    assert!(
        !hit.iter().any(|n| begun.contains(n)),
        "resumed targets were new: {hit:?} vs {begun:?}"
    );

    // The watch, on the first connection, ends with the final record.
    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the watch ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "aborted", "{last}\n{}", r.log());
    assert_eq!(fin["id"], id.as_str());
    assert_eq!(
        names(&fin, |t| state(t) == "aborted"),
        hit,
        "final: {}\nthe abort's answer: {}",
        summary(&fin),
        summary(&aborting)
    );
    assert_eq!((count(&fin, "pending"), count(&fin, "running")), (0, 0));
    assert!(count(&fin, "skipped") > 0, "{}", summary(&fin));
    assert_eq!(
        count(&fin, "skipped") + count(&fin, "aborted") + count(&fin, "complete"),
        12,
        "{}",
        summary(&fin)
    );
    for t in targets(&fin) {
        let sp = r.sp(sp_of(t));
        match state(t) {
            "aborted" => assert_eq!(
                sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
                Ok(UpdateStatus::Aborted(update_id(t).into())),
                "{}",
                sp.name
            ),
            "skipped" => assert_eq!(sp.fault_stats().prepares, 0, "{}", sp.name),
            _ => {}
        }
    }
    // While paused, the watch saw no new start either.
    for e in events.iter().filter(|e| phase(e) == "paused") {
        assert!(
            names(e, started).is_subset(&begun),
            "a start while paused: {}",
            summary(e)
        );
    }
    assert!(
        events.iter().any(|e| phase(e) == "paused"),
        "the watch saw the pause"
    );
    let v = ops.ask(&ask("rollout_abort")).await;
    assert_eq!(err_code(&v), "rollout_state", "abort after the end: {v}");
    let v = ops.ask(&ask("rollout_resume")).await;
    assert_eq!(err_code(&v), "rollout_state", "resume after the end: {v}");
    let (code, out, err) = r.mgsctl(&["rollout", "watch", &id]).await;
    assert_eq!(code, 7, "{out}{err}");
}
