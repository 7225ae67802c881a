//! The short form of the coverage-guided runs, cheap enough for every CI
//! run: a target's whole corpus and regressions replayed, then seeded
//! pseudo-random inputs (mostly mutations of the corpus: bit flips,
//! interesting values, in binary and as decimal text, truncations,
//! insertions, deletions, splices) for a bounded time. Deterministic in
//! what it generates (a fixed seed per target); how many it gets through
//! depends on the machine.
//!
//! It finds what the corpus is a few mutations away from. The real
//! fuzzer, which follows coverage, is `fuzz/run.sh`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one short run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Corpus and regression files replayed.
    pub replayed: usize,
    /// Generated inputs run.
    pub generated: usize,
}

/// Inputs of `target` kept in the repository: its corpus, then its
/// regressions, each `(path, bytes)`, sorted by path.
pub fn kept_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = crate::crate_dir().join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            inputs.push((path, bytes));
        }
    }
    inputs
}

/// Replay `target`'s kept inputs, then run generated ones until `budget`
/// has passed or `max_generated` ran. A panic fails with the input's path
/// (a generated input is first written to the system's temporary
/// directory, ready to be copied into `regressions/`).
pub fn run(target: &str, budget: Duration, max_generated: usize) -> Report {
    let f = crate::target(target).unwrap_or_else(|| panic!("no target {target}"));
    let started = Instant::now();
    let kept = kept_inputs(target);
    for (path, bytes) in &kept {
        if catch_unwind(AssertUnwindSafe(|| f(bytes))).is_err() {
            panic!(
                "{target}: {} panics (the message is above; replay it with \
                 fuzz/target/x86_64-unknown-linux-gnu/release/{target} FILE)",
                path.display()
            );
        }
    }
    let corpus: Vec<&[u8]> = kept.iter().map(|(_, b)| b.as_slice()).collect();
    let mut rng = Rng::new(seed_of(target));
    let mut generated = 0;
    while generated < max_generated && started.elapsed() < budget {
        let input = generate(&mut rng, &corpus);
        generated += 1;
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            let path = save(target, &input);
            panic!(
                "{target}: generated input #{generated} panics; saved as {}",
                path.display()
            );
        }
    }
    Report {
        replayed: kept.len(),
        generated,
    }
}

/// Write a failing input where it can be picked up.
fn save(target: &str, input: &[u8]) -> PathBuf {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = std::env::temp_dir().join(format!("mgsd-fuzz-{target}-{hash:016x}"));
    if std::fs::write(&path, input).is_err() {
        return Path::new("(could not be saved)").to_path_buf();
    }
    path
}

/// A fixed seed per target (FNV-1a of its name).
fn seed_of(target: &str) -> u64 {
    target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64: small, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Values that sit on edges: signs, limits, lengths.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x3ff,
    0x400,
    0x7fff_ffff,
    0xffff_ffff,
    0xffff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
];

/// One input: random bytes (one in ten, or with no corpus), else a corpus
/// entry with one to four mutations.
fn generate(rng: &mut Rng, corpus: &[&[u8]]) -> Vec<u8> {
    if corpus.is_empty() || rng.below(10) == 0 {
        let len = rng.below(257);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut data = corpus[rng.below(corpus.len())].to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut data, corpus);
    }
    data
}

/// Apply one mutation to `data`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[&[u8]]) {
    let at = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(9) {
        // Flip a bit.
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        // A random byte.
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = rng.byte();
        }
        // An interesting value, 1, 2, 4 or 8 bytes little-endian.
        2 if !data.is_empty() => {
            let width = [1, 2, 4, 8][rng.below(4)].min(data.len());
            let i = rng.below(data.len() - width + 1);
            let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            data[i..i + width].copy_from_slice(&v[..width]);
        }
        // Truncate.
        3 => {
            let n = at(rng, data.len());
            data.truncate(n);
        }
        // Delete a range.
        4 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(64));
            data.drain(i..i + n);
        }
        // Insert random bytes.
        5 => {
            let i = at(rng, data.len());
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(i..i, bytes);
        }
        // Duplicate a range in place.
        6 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(64));
            let copy = data[i..i + n].to_vec();
            let j = at(rng, data.len());
            data.splice(j..j, copy);
        }
        // A number in text (JSON, TOML) replaced by an interesting one.
        7 if data.iter().any(u8::is_ascii_digit) => {
            let digits: Vec<usize> = (0..data.len())
                .filter(|&i| data[i].is_ascii_digit())
                .collect();
            let start = digits[rng.below(digits.len())];
            let end = (start..data.len())
                .find(|&i| !data[i].is_ascii_digit())
                .unwrap_or(data.len());
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let text = match rng.below(3) {
                0 => v.to_string(),
                1 => v.wrapping_add(1).to_string(),
                _ => (v / 1000).to_string(),
            };
            data.splice(start..end, text.into_bytes());
        }
        // Splice: this one's head, another entry's tail.
        _ => {
            let other = corpus[rng.below(corpus.len())];
            let head = at(rng, data.len());
            let tail = at(rng, other.len());
            data.truncate(head);
            data.extend_from_slice(&other[tail..]);
        }
    }
}
