//! The CI short form of the fuzzing: for every target, its committed
//! corpus and regressions replayed, then a few thousand seeded mutations
//! of them for at most a couple of seconds, under the allocation bound.
//! A panic fails the test (an allocation past the bound aborts it).
//!
//! This is the short form of the coverage-guided runs; the real fuzzer is
//! `fuzz/run.sh TARGET SECONDS` (see the README's Fuzzing section).

use fuzz_targets::short_form::{kept_inputs, run};
use fuzz_targets::TARGETS;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time each target gets, replay included, at most.
const BUDGET: Duration = Duration::from_secs(3);

/// Generated inputs per target, at most.
const MAX_GENERATED: usize = 5_000;

/// The allocation bound counts the whole process: one target at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn short(target: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let report = run(target, BUDGET, MAX_GENERATED);
    println!(
        "{target}: {} kept inputs replayed, {} generated, in {:.2?}",
        report.replayed,
        report.generated,
        started.elapsed()
    );
    assert!(report.replayed > 0, "{target} has a corpus");
}

macro_rules! short_form {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                short(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_short_form() {
            let covered = [$(stringify!($name)),*];
            let all: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(covered.as_slice(), all.as_slice());
        }
    };
}

short_form!(
    wire_decode,
    sp_dispatch,
    control_framing,
    control_request,
    rollout_plan,
    artifacts_tlvc,
    artifacts_image,
    artifacts_auxflash,
    artifacts_archive,
);

#[test]
fn the_corpus_holds_every_seed_and_stays_small() {
    let root = fuzz_targets::crate_dir().join("corpus");
    for (target, name, bytes) in fuzz_targets::seeds::all() {
        let path = root.join(target).join(&name);
        let kept = std::fs::read(&path).unwrap_or_default();
        assert!(
            kept == bytes,
            "{} is missing or stale: cargo run -p mgsd-fuzz --bin fuzz-seeds",
            path.display()
        );
    }
    let total: usize = TARGETS
        .iter()
        .flat_map(|(t, _)| kept_inputs(t))
        .map(|(_, b)| b.len())
        .sum();
    assert!(total < 2 << 20, "corpus and regressions are {total} bytes");
}
