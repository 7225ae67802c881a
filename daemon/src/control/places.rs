//! Connection places: at most `max` connections are served at once, and
//! the last `reserved` places are kept for operate-class peers (root,
//! the operate lists), so readers alone can never fill the socket and
//! lock out an operator.

use crate::api::Class;
use std::sync::{Arc, Mutex};

/// Places taken: by everyone, and by readers.
#[derive(Debug, Default)]
struct Taken {
    all: usize,
    readers: usize,
}

/// The places. Cloned handles share them.
#[derive(Debug, Clone)]
pub struct Places {
    taken: Arc<Mutex<Taken>>,
    max: usize,
    reserved: usize,
}

/// One place, given back when dropped.
#[derive(Debug)]
pub struct Place {
    taken: Arc<Mutex<Taken>>,
    reader: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.all = taken.all.saturating_sub(1);
        if self.reader {
            taken.readers = taken.readers.saturating_sub(1);
        }
        metrics::gauge!("mgsd_control_connections").set(taken.all as f64);
    }
}

impl Places {
    /// `max` places, `reserved` of them for operate-class peers (at most
    /// all but one, so readers always have a place when all are free).
    pub fn new(max: usize, reserved: usize) -> Self {
        Self {
            taken: Arc::default(),
            max,
            reserved: reserved.min(max.saturating_sub(1)),
        }
    }

    /// A place for a peer of `class`, if one is free for it: readers
    /// together hold at most all but the reserved places.
    pub fn take(&self, class: Class) -> Option<Place> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let reader = class == Class::Read;
        if taken.all >= self.max || (reader && taken.readers >= self.max - self.reserved) {
            return None;
        }
        taken.all += 1;
        taken.readers += usize::from(reader);
        metrics::gauge!("mgsd_control_connections").set(taken.all as f64);
        Some(Place {
            taken: self.taken.clone(),
            reader,
        })
    }

    #[cfg(test)]
    fn taken(&self) -> usize {
        self.taken.lock().unwrap_or_else(|e| e.into_inner()).all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_cannot_take_the_reserved_places() {
        let places = Places::new(4, 2);
        let readers: Vec<_> = (0..2).map(|_| places.take(Class::Read).unwrap()).collect();
        assert!(places.take(Class::Read).is_none(), "the rest is reserved");
        let op = places.take(Class::Operate).unwrap();
        let op2 = places.take(Class::Operate).unwrap();
        assert!(places.take(Class::Operate).is_none(), "all taken");
        drop(readers);
        assert_eq!(places.taken(), 2);
        assert!(places.take(Class::Read).is_some());
        drop((op, op2));
    }
}
