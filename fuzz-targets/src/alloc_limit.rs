//! The allocation bound: every binary that links this crate (the fuzz
//! targets, the short-form test) counts its heap through [`cap::Cap`], and
//! each target runs in [`bounded`], under which it may hold at most
//! [`LIMIT`] bytes more than it found. An allocation past that fails,
//! and a failed allocation aborts the process: libFuzzer reports it as a
//! crash with the input, the test harness as a failed test binary.

use cap::Cap;
use std::alloc::System;

/// The global allocator: the system's, counted.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes a target may hold beyond what was allocated when it started:
/// what no parser needs for an input of fuzzer size, and what a zip bomb
/// must be refused within.
pub const LIMIT: usize = 64 << 20;

/// Run `f` with at most [`LIMIT`] more bytes allocated than now (or the
/// bound already in force, if lower: targets call each other).
pub fn bounded<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous limit back, also when `f` panics.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = ALLOCATOR.set_limit(self.0);
        }
    }
    let outer = ALLOCATOR.limit();
    let _restore = Restore(outer);
    let _ = ALLOCATOR.set_limit(outer.min(ALLOCATOR.allocated().saturating_add(LIMIT)));
    f()
}

/// Bytes allocated now.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}
