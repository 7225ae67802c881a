//! The allocation bound: every binary that links this crate (the fuzz
//! targets, the short-form test) counts its heap through [`cap::Cap`], and
//! each target runs in [`bounded`]: if the heap grew more than [`LIMIT`]
//! bytes at its peak beyond what was allocated when the target started,
//! that is a panic, a finding like any other.
//!
//! Past [`HARD_LIMIT`] bytes in all, allocations are refused outright, so
//! a runaway input cannot take the machine's memory: a refused allocation
//! aborts the process (libFuzzer reports it as a crash with the input),
//! unless it was a `try_reserve` (as `Read::read_to_end` does), whose
//! error the code handles; the peak before it still shows. The mark
//! never comes down: in one process, the targets after one that went past
//! the bound fail too (the first failure names the input).

use cap::Cap;
use std::alloc::System;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes a target may hold beyond what was allocated when it started:
/// what no parser needs for an input of fuzzer size, and what a zip bomb
/// must be refused within.
pub const LIMIT: usize = 64 << 20;

/// The most the whole process may hold. Fixed: changing cap's limit while
/// other threads allocate skews its high-water mark.
pub const HARD_LIMIT: usize = 8 * LIMIT;

/// The global allocator: the system's, counted.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, HARD_LIMIT);

/// Set while a target runs under the bound (targets call each other).
static BOUNDED: AtomicBool = AtomicBool::new(false);

/// Run `f` and panic if the heap grew more than [`LIMIT`] bytes at its
/// peak. A call inside another shares the outer bound.
pub fn bounded<R>(f: impl FnOnce() -> R) -> R {
    /// Clears [`BOUNDED`], also when `f` panics.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            BOUNDED.store(false, Ordering::SeqCst);
        }
    }
    if BOUNDED.swap(true, Ordering::SeqCst) {
        return f();
    }
    let _clear = Clear;
    let start = ALLOCATOR.allocated();
    let result = f();
    // The peak is the process's high-water mark: one input at a time
    // moves it, and an earlier input past the bound was reported then.
    let peak = ALLOCATOR.max_allocated();
    assert!(
        peak <= start.saturating_add(LIMIT),
        "the input made the heap grow by {} MiB (bound: {} MiB)",
        peak.saturating_sub(start) >> 20,
        LIMIT >> 20
    );
    result
}

/// Bytes allocated now.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_passes_what_fits_and_fails_what_grows_past_it() {
        // In this order: past the bound, the high-water mark stays.
        assert_eq!(bounded(|| vec![1u8; LIMIT / 2].len()), LIMIT / 2);
        let nested = bounded(|| bounded(|| vec![1u8; 1 << 20].len()));
        assert_eq!(nested, 1 << 20);
        let past = std::panic::catch_unwind(|| bounded(|| vec![1u8; LIMIT + (1 << 20)].len()));
        assert!(past.is_err(), "growing past the bound panics");
    }
}
