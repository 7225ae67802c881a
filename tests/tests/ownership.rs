//! Who owns what is happening on an SP, against a simulated rack over
//! loopback through the registry's typed API: the SP's operation slot
//! (a reset and an update exclude each other, resets take turns), starts
//! the SP refused (nothing left behind), and reconfiguration that would
//! take an SP from under its update.

use actors::registry::{SpEntry, State};
use actors::store::{Spool, Store};
use actors::{
    ImageSource, Phase, RegistryConfig, RegistryError, RegistryHandle, SpTarget, StartUpdate,
    UpdateError,
};
use mgsd_tests::{bytes, entries, fast_settings, host_image, start, wait_record, wait_terminal};
use sp_sim::{RackConfig, SimRack, Timings};
use std::time::Duration;
use uuid::Uuid;

const HBF: &str = "host-boot-flash";
const LONG: Duration = Duration::from_secs(60);

/// One sled (and, with `sleds`, more) that reboots in `reset_ms` and
/// writes at `write_kib_per_s`.
fn rack(sleds: usize, reset_ms: u64, write_kib_per_s: u64) -> RackConfig {
    let mut r = RackConfig::standard(sleds, 0, 0);
    r.timings = Timings {
        host_flash_mib: 1,
        reset_ms,
        write_kib_per_s,
        ..Timings::instant()
    };
    r.seed = 11;
    r
}

fn is_busy(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Update(UpdateError::SpBusy { .. } | UpdateError::AlreadyRunning { .. })
    )
}

#[actix::test]
async fn a_reset_and_an_update_start_at_once_are_never_both_accepted() {
    let (rack, h) = start(rack(1, 30, 2048), fast_settings(1)).await;
    let img = host_image(128 * 1024, 3);
    let (mut resets, mut updates) = (0, 0);
    for i in 0..100 {
        let id = Uuid::from_u128(0x5eed_0000 + i);
        let (hr, hu) = (h.clone(), h.clone());
        let reset = actix::spawn(async move {
            hr.reset("sled-0", "sp", actors::reset::ResetOptions::default())
                .await
        });
        let image = img.clone();
        let update =
            actix::spawn(async move { hu.start_update(bytes("sled-0", HBF, 0, id, image)).await });
        let (reset, update) = (reset.await.unwrap(), update.await.unwrap());
        match (&reset, &update) {
            (Ok(_), Ok(_)) => panic!("iteration {i}: both the reset and the update were accepted"),
            (Ok(_), Err(e)) => {
                assert!(is_busy(e), "iteration {i}: the update was refused for {e}");
                resets += 1;
            }
            (Err(e), Ok(u)) => {
                let RegistryError::Update(UpdateError::SpBusy { held, .. }) = e else {
                    panic!("iteration {i}: the reset was refused for {e}")
                };
                assert!(
                    matches!(held, actors::Operation::Update { id: held, .. } if *held == id),
                    "the refusal names the update: {e}"
                );
                assert!(e.to_string().contains(&id.to_string()), "{e}");
                updates += 1;
                h.abort_update("sled-0", HBF, u.id()).await.unwrap();
                wait_terminal(&h, id, LONG).await;
            }
            (Err(r), Err(u)) => panic!("iteration {i}: both refused: {r}; {u}"),
        }
    }
    // Both orders happened, and nothing holds the SP now.
    assert!(resets > 0 || updates > 0);
    assert_eq!(h.info("sled-0").await.unwrap().operation, None);
    rack.stop().await;
}

#[actix::test]
async fn two_resets_of_one_sp_take_turns() {
    let (rack, h) = start(rack(1, 200, 0), fast_settings(1)).await;
    let before = rack.sps[0].fault_stats().resets;
    let resets: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            actix::spawn(async move {
                let t = std::time::Instant::now();
                let a = h
                    .reset("sled-0", "sp", actors::reset::ResetOptions::default())
                    .await;
                (a, t.elapsed())
            })
        })
        .collect();
    let mut took = Vec::new();
    for r in resets {
        let (a, t) = r.await.unwrap();
        assert_eq!(a.unwrap().outcome, actors::reset::Outcome::Reset);
        took.push(t);
    }
    assert_eq!(rack.sps[0].fault_stats().resets, before + 2);
    // The second waited for the first: it took two reboots' time.
    took.sort();
    assert!(took[1] >= Duration::from_millis(400), "{took:?}");
    rack.stop().await;
}

#[actix::test]
async fn a_refused_start_leaves_no_record_no_row_and_no_binding() {
    let rack = SimRack::start(rack(1, 30, 0)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let state = State {
        store,
        spool: Spool::open(dir.path()).unwrap(),
    };
    // The daemon is told of 2 MiB of host flash where the SP has 1 (so the
    // slot hashes differ: not checked here).
    let mut settings = fast_settings(2);
    settings.delivery.verify_host_flash_hash = false;
    let config = RegistryConfig::new(entries(&rack), settings);
    let (h, _, _) = RegistryHandle::start_with_state(config, Some(state)).unwrap();
    while !h.info("sled-0").await.unwrap().reachable {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = Uuid::new_v4();
    // An image larger than the SP's flash: the SP refuses the prepare.
    let e = h
        .start_update(bytes("sled-0", HBF, 1, id, host_image(1536 * 1024, 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Update(UpdateError::Prepare { .. })),
        "{e}"
    );
    assert!(matches!(
        h.update(id).await.unwrap_err(),
        RegistryError::UnknownUpdate(_)
    ));
    assert_eq!(h.running_updates().await.unwrap(), 0);
    assert!(h.history(all_history()).await.unwrap().is_empty());
    // Nothing in the journal either (read as a restart would).
    let (store, _) = Store::open(dir.path()).unwrap();
    let (rows, bad) = store.load().unwrap();
    assert!(
        rows.iter().all(|r| r.id != id) && bad.is_empty(),
        "{rows:?}"
    );
    // And the id binds nothing: another image under it starts.
    let other = host_image(70 * 1024, 2);
    h.start_update(bytes("sled-0", HBF, 1, id, other))
        .await
        .unwrap();
    assert_eq!(wait_terminal(&h, id, LONG).await.phase, Phase::Complete);
    rack.stop().await;
}

fn all_history() -> actors::registry::History {
    actors::registry::History {
        sp: None,
        component: None,
        since_unix_ms: None,
        limit: 100,
    }
}

fn entry(name: &str, addr: std::net::SocketAddr) -> SpEntry {
    SpEntry::new(name, SpTarget::Addr(addr))
}

#[actix::test]
async fn an_sp_running_an_update_is_neither_removed_nor_renamed() {
    // 1 MiB at 512 KiB/s: two seconds of delivery to reconfigure in.
    let (rack, h) = start(rack(2, 30, 512), fast_settings(1)).await;
    let (a, b) = (rack.sps[0].addr, rack.sps[1].addr);
    let id = Uuid::new_v4();
    h.start_update(bytes("sled-0", HBF, 0, id, host_image(1024 * 1024, 4)))
        .await
        .unwrap();
    wait_record(&h, id, LONG, |p| p.phase == Phase::Delivering).await;
    for (what, sps) in [
        ("removed", vec![entry("sled-1", b)]),
        ("renamed", vec![entry("sled-x", a), entry("sled-1", b)]),
        ("moved", vec![entry("sled-0", b), entry("sled-1", a)]),
    ] {
        let e = h.reconfigure(sps).await.unwrap_err();
        assert!(matches!(e, RegistryError::Reconfigure(_)), "{what}: {e}");
        let text = e.to_string();
        assert!(
            text.contains("sled-0") && text.contains(&id.to_string()),
            "{what}: the refusal names the SP and its update: {text}"
        );
        // Nothing changed.
        let names: Vec<_> = h
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.info.name.to_string())
            .collect();
        assert_eq!(names, ["sled-0", "sled-1"], "{what}");
    }
    // A list with no SP is refused too, whatever runs.
    let e = h.reconfigure(Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("no [[sp]]"), "{e}");
    // The update goes on to its end, and then nothing holds the SP.
    assert_eq!(wait_terminal(&h, id, LONG).await.phase, Phase::Complete);
    assert_eq!(h.running_updates().await.unwrap(), 0);
    // Once it ended, the SP may go, and come back under another name:
    // its status is found again by its serial.
    h.reconfigure(vec![entry("sled-1", b)]).await.unwrap();
    h.reconfigure(vec![entry("sled-x", a), entry("sled-1", b)])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    while h.info("sled-x").await.unwrap().identity.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "sled-x not found again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let view = h.update_status("sled-x", HBF).await.unwrap();
    assert_eq!(view.delivery.map(|u| u.id()), Some(id));
    assert_eq!(
        view.sp_status,
        actors::SpUpdateState::Complete { id },
        "the SP's own status, read from the SP"
    );
    rack.stop().await;
}

#[actix::test]
async fn a_start_while_a_reset_runs_is_refused_naming_the_reset() {
    let (rack, h) = start(rack(1, 500, 0), fast_settings(1)).await;
    let hr = h.clone();
    let reset = actix::spawn(async move {
        hr.reset("sled-0", "sp", actors::reset::ResetOptions::default())
            .await
    });
    let deadline = std::time::Instant::now() + LONG;
    while h.info("sled-0").await.unwrap().operation.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reset never claimed the SP"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = StartUpdate::new(
        "sled-0",
        HBF,
        0,
        Uuid::new_v4(),
        ImageSource::Bytes(host_image(70 * 1024, 5)),
    );
    let e = h.start_update(start).await.unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Update(UpdateError::SpBusy {
                held: actors::Operation::Reset { .. },
                ..
            })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("reset"), "{e}");
    reset.await.unwrap().unwrap();
    rack.stop().await;
}
