//! The allocation bound: every binary that links this crate (the fuzz
//! targets, the short-form test) counts its heap through [`cap::Cap`], and
//! each target runs in [`bounded`]: if the heap it held at its peak grew
//! more than [`LIMIT`] bytes beyond what was allocated when it started,
//! that is a panic, a finding like any other.
//!
//! Allocations are also refused outright past [`HARD_LIMIT`] beyond the
//! start, so a runaway input cannot take the machine's memory: a refused
//! allocation aborts the process (libFuzzer reports it as a crash with the
//! input), unless it was a `try_reserve` (as `Read::read_to_end` does),
//! whose error the code handles; the peak before it still shows.

use cap::Cap;
use std::alloc::System;

/// The global allocator: the system's, counted.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes a target may hold beyond what was allocated when it started:
/// what no parser needs for an input of fuzzer size, and what a zip bomb
/// must be refused within.
pub const LIMIT: usize = 64 << 20;

/// Bytes beyond the start at which allocations fail.
pub const HARD_LIMIT: usize = 4 * LIMIT;

/// Run `f` and panic if the heap grew more than [`LIMIT`] bytes at its
/// peak (nested calls, as targets make of each other, share the outer
/// bound).
pub fn bounded<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous hard limit back, also when `f` panics.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = ALLOCATOR.set_limit(self.0);
        }
    }
    let outer = ALLOCATOR.limit();
    if outer != usize::MAX {
        return f();
    }
    let start = ALLOCATOR.allocated();
    let restore = Restore(outer);
    let _ = ALLOCATOR.set_limit(start.saturating_add(HARD_LIMIT));
    let result = f();
    drop(restore);
    // The peak is the process's high-water mark: one input at a time
    // moves it, and an earlier input past the bound was reported then.
    let peak = ALLOCATOR.max_allocated();
    assert!(
        peak <= start.saturating_add(LIMIT),
        "the input made the heap grow by {} MiB (bound: {} MiB)",
        (peak - start) >> 20,
        LIMIT >> 20
    );
    result
}

/// Bytes allocated now.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}
