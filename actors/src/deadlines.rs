//! Timers as data: a min-heap of deadlines for whoever arms a single
//! `Sleep` to the earliest. The SP actor keeps its backoffs and its
//! discovery tick here (the deadlines of the few datagrams in flight live
//! with them). Entries are never removed early; the owner checks, when one
//! fires, whether what it was for still stands (a request answered
//! meanwhile simply finds nothing to do).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use tokio::time::Instant;

struct Entry<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<K> Eq for Entry<K> {}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Deadlines keyed by `K`, earliest first; equal deadlines in insertion
/// order.
pub struct Deadlines<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    seq: u64,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K> Deadlines<K> {
    /// Wake for `key` at `at`.
    pub fn insert(&mut self, at: Instant, key: K) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            key,
        }));
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// The earliest key due at `now`, removed.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.next()? <= now {
            self.heap.pop().map(|e| e.0.key)
        } else {
            None
        }
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_ties_in_order() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Deadlines::default();
        d.insert(t + ms(30), "c");
        d.insert(t + ms(10), "a");
        d.insert(t + ms(10), "b");
        assert_eq!(d.next(), Some(t + ms(10)));
        assert_eq!(d.pop_due(t + ms(5)), None);
        assert_eq!(d.pop_due(t + ms(10)), Some("a"));
        assert_eq!(d.pop_due(t + ms(10)), Some("b"));
        assert_eq!(d.pop_due(t + ms(10)), None);
        assert_eq!(d.pop_due(t + ms(99)), Some("c"));
        assert!(d.is_empty());
    }
}
