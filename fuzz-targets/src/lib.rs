//! Fuzz targets for every parser a client, an SP or a file can reach, one
//! function per target: `fn(&[u8])` that must not panic, hang or allocate
//! without bound on any input (it may return errors; a broken invariant
//! is a panic).
//!
//! - [`wire_decode`] decodes datagrams, with round trips.
//! - [`sp_dispatch`] feeds the SP-side dispatcher over sp-sim's device
//!   model.
//! - [`control_framing`] splits the control socket's stream into lines.
//! - [`control_request`] parses control request lines.
//! - [`rollout_plan`] reads rollout plans, as TOML files and as JSON.
//! - [`artifacts_tlvc`], [`artifacts_image`], [`artifacts_auxflash`] and
//!   [`artifacts_archive`] read firmware artifacts.
//!
//! The coverage-guided fuzzer (`fuzz/`, run by `fuzz/run.sh`) calls these
//! through libFuzzer; [`short_form`] replays the committed corpora and
//! regressions and mutates them for a few seconds, as a plain test that
//! CI runs. Every binary that links this crate counts its heap
//! ([`alloc_limit`]): an input that makes a target hold more than
//! [`alloc_limit::LIMIT`] aborts, which both count as a crash.

pub mod alloc_limit;
pub mod artifacts;
pub mod dispatch;
pub mod framing;
pub mod plan;
pub mod request;
pub mod seeds;
pub mod short_form;
pub mod wire;

pub use artifacts::{artifacts_archive, artifacts_auxflash, artifacts_image, artifacts_tlvc};
pub use dispatch::sp_dispatch;
pub use framing::control_framing;
pub use plan::rollout_plan;
pub use request::control_request;
pub use wire::wire_decode;

/// A target: its name (the directory of its corpus and regressions, and
/// the name of its `fuzz_target!`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `fuzz/run.sh all` runs them.
pub const TARGETS: &[Target] = &[
    ("wire_decode", wire_decode),
    ("sp_dispatch", sp_dispatch),
    ("control_framing", control_framing),
    ("control_request", control_request),
    ("rollout_plan", rollout_plan),
    ("artifacts_tlvc", artifacts_tlvc),
    ("artifacts_image", artifacts_image),
    ("artifacts_auxflash", artifacts_auxflash),
    ("artifacts_archive", artifacts_archive),
];

/// The function of target `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// This crate's directory, where `corpus/` and `regressions/` are.
pub fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
