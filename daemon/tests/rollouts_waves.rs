//! Rollouts through a rack, end to end: the real `mgsd` binary (a child
//! process) against a simulated rack in this process, plans handed to the
//! real `mgsctl`, progress followed over raw `rollout_watch` streams and
//! checked against what the simulated SPs saw. This suite: a whole rack in
//! canary and percentage waves under the concurrency cap, and the stop
//! rule (a failed canary, a second failure mid-wave).

mod common;

use common::rollouts::*;
use common::{host_image, new_id, HBF, KIB, MIB};
use gateway_messages::{SpComponent, UpdateStatus};
use serde_json::{json, Value};
use sp_sim::{expected_slot_hash, SimSp};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

// 1. A whole rack, in waves.

#[actix::test]
async fn a_rack_rollout_keeps_to_canary_waves_and_the_cap() {
    let t0 = Instant::now();
    let r = rig(32, 2, 1024).start().await;
    let host = host_image(768 * KIB, 11);
    // Valid for the switches: header, caboose and their board.
    let sp_image = sp_sim::artifacts::build::sp_image("sidecar-c", 256 * KIB, "1.0.40");
    r.file("host.img", &host);
    r.file("sp.img", &sp_image);
    let plan = r.file(
        "rack.toml",
        "max_concurrent = 8\ncanary = 1\nwaves = [\"25%\", \"100%\"]\n\
         stop_after_failures = 1\npause_between_waves = \"0s\"\nafter = \"nothing\"\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n\
         [[target]]\nkind = \"switch\"\ncomponent = \"sp\"\nimage = \"sp.img\"\n".as_bytes(),
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    assert_eq!(first["id"], id.as_str(), "{first}");
    assert_eq!(targets(&first).len(), 34, "{}", summary(&first));
    let sizes: Vec<usize> = (0..3)
        .map(|w| targets(&first).iter().filter(|t| wave(t) == w).count())
        .collect();
    assert_eq!(first["waves"], 3, "{}", summary(&first));
    assert_eq!(
        sizes,
        [1, 8, 25],
        "canary, up to 25% of 34 (9 in all), the rest"
    );
    let watch = r.watch_rollout(&id).await;
    let (events, last) = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("the rollout ends within 60 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "complete", "{last}\n{}", r.log());
    assert_eq!(count(&fin, "complete"), 34, "{}", summary(&fin));
    assert!(fin["reason"].is_null(), "{}", summary(&fin));
    assert!(!events.is_empty(), "the watch sent events before its end");

    // Each snapshot kept to the cap and the waves, and so did the times.
    let mut most = 0;
    let mut wave_seen = 0;
    for (i, e) in events.iter().chain([&fin]).enumerate() {
        let breaks = snapshot_breaks(e, 8);
        assert!(breaks.is_empty(), "event {i}: {breaks:?}\n{}", summary(e));
        most = most.max(count(e, "running"));
        let w = e["current_wave"].as_u64().unwrap();
        assert!(
            w >= wave_seen,
            "event {i}: wave went back from {wave_seen} to {w}"
        );
        wave_seen = w;
    }
    let (most_at_once, breaks) = timeline_breaks(&fin, 8);
    assert!(breaks.is_empty(), "{breaks:?}");
    eprintln!(
        "{} events; at most {most} running in an event, {most_at_once} by the timestamps",
        events.len()
    );

    // What the SPs hold.
    let want = expected_slot_hash(&host, FLASH_MIB * MIB as u32);
    for t in targets(&fin) {
        let sp = r.sp(sp_of(t));
        let id = update_id(t);
        if t["component"] == HBF {
            assert_eq!(sp.slot_hash(1), Some(want), "{} slot 1", sp.name);
            assert_eq!(
                sp.update_status(SpComponent::HOST_CPU_BOOT_FLASH),
                Ok(UpdateStatus::Complete(id.into())),
                "{}",
                sp.name
            );
        } else {
            assert_eq!(t["component"], "sp", "{t}");
            assert_eq!(
                sp.update_status(SpComponent::SP_ITSELF),
                Ok(UpdateStatus::Complete(id.into())),
                "{}",
                sp.name
            );
        }
        assert_eq!(sp.fault_stats().prepares, 1, "{}: one prepare", sp.name);
    }

    // Clients see the same: a watch of an ended rollout exits 0 at once,
    // the target's update is an ordinary update, and the list has it.
    let (code, out, err) = r.mgsctl(&["rollout", "watch", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let t = &targets(&fin)[0];
    let mut c = r.conn().await;
    let v = c.ask(&json!({"cmd": "watch", "id": t["update_id"]})).await;
    assert_eq!(v["ok"]["phase"], "complete", "{v}");
    let list = r.ok(&["rollout", "list"]).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str() && phase(x) == "complete"),
        "{list}"
    );
    eprintln!("rack rollout test took {:?}", t0.elapsed());
}

// 2. A failing canary.

#[actix::test]
async fn a_failed_canary_stops_the_rollout_and_nothing_else_starts() {
    let r = rig(6, 0, 1024).start().await;
    let image = host_image(960 * KIB, 21);
    r.file("host.img", &image);
    let plan = r.file(
        "canary.toml",
        "max_concurrent = 4\nwaves = [\"50%\"]\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n".as_bytes(),
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    let canaries: Vec<&Value> = targets(&first).iter().filter(|t| wave(t) == 0).collect();
    assert_eq!(canaries.len(), 1, "{}", summary(&first));
    let canary = sp_of(canaries[0]).to_string();
    let watch = r.watch_rollout(&id).await;

    // Reset the canary's SP once a quarter of its image is in.
    let sim = r.sp(&canary);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((got, total)) = in_progress(sim, SpComponent::HOST_CPU_BOOT_FLASH) {
            if got >= total / 4 {
                assert!(got < total, "the canary was not slow enough to interrupt");
                sim.reset_now();
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the canary never got a quarter in: {}",
            summary(&r.rollout_status(&id).await)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the rollout ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "stopped", "{last}\n{}", r.log());
    let reason = fin["reason"].as_str().unwrap_or("");
    assert!(reason.contains("stop_after_failures"), "reason: {reason:?}");
    for e in events.iter().chain([&fin]) {
        let moved = names(e, |t| {
            sp_of(t) != canary && state(t) != "pending" && state(t) != "skipped"
        });
        assert!(moved.is_empty(), "{moved:?} left pending: {}", summary(e));
    }
    for t in targets(&fin) {
        if sp_of(t) == canary {
            assert_eq!(state(t), "failed", "{t}");
            assert!(t["failure"].as_str().is_some_and(|f| !f.is_empty()), "{t}");
        } else {
            assert_eq!(state(t), "skipped", "{t}");
            assert!(t["started_unix_ms"].is_null(), "{t}");
        }
    }
    assert_eq!(
        (count(&fin, "failed"), count(&fin, "skipped")),
        (1, 5),
        "{}",
        summary(&fin)
    );
    for (name, prepares) in r.prepares_by_sp() {
        let want = u64::from(name == canary);
        assert_eq!(prepares, want, "{name}: prepares");
    }
    let (code, out, err) = r.mgsctl(&["rollout", "watch", &id]).await;
    assert_eq!(code, 7, "{out}{err}");
    let failure = targets(&fin).iter().find(|t| sp_of(t) == canary).unwrap()["failure"].clone();
    eprintln!("failed canary {canary}: {failure}; reason: {reason}");
}

// 3. Two failures mid-wave.

#[actix::test]
async fn the_second_failure_stops_new_starts_and_running_targets_finish() {
    let r = rig(10, 0, 1024).start().await;
    let image = host_image(960 * KIB, 31);
    r.file("host.img", &image);
    let plan = r.file(
        "two.toml",
        "max_concurrent = 4\nstop_after_failures = 2\n\
         [[target]]\nkind = \"sled\"\ncomponent = \"host-boot-flash\"\nslot = 1\nimage = \"host.img\"\n".as_bytes(),
    );
    let id = new_id();
    let first = r.start_rollout(&plan, &id).await;
    let canary = targets(&first)
        .iter()
        .find(|t| wave(t) == 0)
        .map(|t| sp_of(t).to_string())
        .unwrap();
    let watch = r.watch_rollout(&id).await;

    // Two SPs of wave 1, a fifth of the way in: reset both.
    let deadline = Instant::now() + Duration::from_secs(20);
    let victims: Vec<String> = loop {
        let mid: Vec<&SimSp> = r
            .rack()
            .sps
            .iter()
            .filter(|sp| sp.name != canary)
            .filter(|sp| {
                in_progress(sp, SpComponent::HOST_CPU_BOOT_FLASH)
                    .is_some_and(|(got, total)| got >= total / 5 && got < total - 128 * KIB as u32)
            })
            .collect();
        if mid.len() >= 2 {
            for sp in &mid[..2] {
                sp.reset_now();
            }
            break mid[..2].iter().map(|sp| sp.name.clone()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "never two wave-1 targets mid-delivery: {}",
            summary(&r.rollout_status(&id).await)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    let (events, last) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the rollout ends within 30 s")
        .unwrap();
    let fin = last["ok"].clone();
    assert_eq!(phase(&fin), "stopped", "{last}\n{}", r.log());
    let reason = fin["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("stop_after_failures") && reason.contains('2'),
        "reason: {reason:?}"
    );
    let failed: BTreeSet<String> = targets(&fin)
        .iter()
        .filter(|t| state(t) == "failed")
        .map(|t| sp_of(t).to_string())
        .collect();
    assert_eq!(
        failed,
        victims.iter().cloned().collect::<BTreeSet<_>>(),
        "{}",
        summary(&fin)
    );
    assert!(count(&fin, "skipped") > 0, "{}", summary(&fin));
    assert_eq!(
        (
            count(&fin, "pending"),
            count(&fin, "running"),
            count(&fin, "aborted")
        ),
        (0, 0, 0),
        "{}",
        summary(&fin)
    );

    // No start after the second failure: by the daemon's own times...
    let second = targets(&fin)
        .iter()
        .filter(|t| state(t) == "failed")
        .filter_map(|t| t["finished_unix_ms"].as_u64())
        .max()
        .unwrap();
    for t in targets(&fin) {
        if let Some(s) = t["started_unix_ms"].as_u64() {
            assert!(
                s <= second,
                "{} started at {s}, after the second failure at {second}",
                sp_of(t)
            );
        }
    }
    // ...and by what watchers saw: once two had failed, no target left
    // pending, and those running then finished (complete).
    let stop = events
        .iter()
        .chain([&fin])
        .position(|e| count(e, "failed") >= 2)
        .unwrap();
    let all: Vec<&Value> = events.iter().chain([&fin]).collect();
    let begun = names(all[stop], started);
    let running_then = names(all[stop], |t| state(t) == "running");
    for e in &all[stop..] {
        assert_eq!(
            names(e, started),
            begun,
            "a start after the stop: {}",
            summary(e)
        );
    }
    let complete = names(&fin, |t| state(t) == "complete");
    assert!(
        running_then.is_subset(&complete),
        "running at the stop: {running_then:?}; complete: {complete:?}"
    );
    for t in targets(&fin) {
        let sp = r.sp(sp_of(t));
        let prepares = sp.fault_stats().prepares;
        match state(t) {
            "skipped" => assert_eq!(prepares, 0, "{}", sp.name),
            _ => assert_eq!(prepares, 1, "{}", sp.name),
        }
    }
    eprintln!("two failures: {}", summary(&fin));
}
