//! The SP's operation slot as a plain type: at most one [`Operation`]
//! holds it. An update is granted the slot only when it is free; a reset
//! is granted it when free, waits behind another reset (resets of one SP
//! are serialised), and is refused while an update holds it (the reset
//! would end that update). Claims are numbered, so a release names the
//! claim it ends.

use crate::types::Operation;
use std::collections::VecDeque;

/// What became of a claim; the waiter comes back unless it was kept.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim<W> {
    /// Granted: the claim's number, to release it with.
    Granted(u64, W),
    /// A reset waits behind a reset; it is granted at a later release.
    Waiting,
    /// Refused: this holds the slot.
    Refused(Operation, W),
}

/// The slot. `W` is how a waiting reset is told it was granted.
#[derive(Debug)]
pub struct OpSlot<W> {
    held: Option<(u64, Operation)>,
    waiting: VecDeque<(Operation, W)>,
    claims: u64,
}

impl<W> Default for OpSlot<W> {
    fn default() -> Self {
        Self {
            held: None,
            waiting: VecDeque::new(),
            claims: 0,
        }
    }
}

impl<W> OpSlot<W> {
    /// What holds the slot now.
    pub fn held(&self) -> Option<Operation> {
        self.held.map(|(_, op)| op)
    }

    /// Claim the slot for `op`; a reset that must wait is kept with
    /// `waiter`.
    pub fn claim(&mut self, op: Operation, waiter: W) -> Claim<W> {
        match (self.held, op) {
            (None, _) => Claim::Granted(self.grant(op), waiter),
            (Some((_, Operation::Reset { .. })), Operation::Reset { .. }) => {
                self.waiting.push_back((op, waiter));
                Claim::Waiting
            }
            (Some((_, held)), _) => Claim::Refused(held, waiter),
        }
    }

    /// End claim `number`. The next waiting reset, if any, is granted the
    /// slot: its number and waiter are returned (a waiter that is gone is
    /// the caller's to release again).
    pub fn release(&mut self, number: u64) -> Option<(u64, W)> {
        if self.held.map(|(n, _)| n) != Some(number) {
            return None;
        }
        self.held = None;
        let (op, waiter) = self.waiting.pop_front()?;
        Some((self.grant(op), waiter))
    }

    fn grant(&mut self, op: Operation) -> u64 {
        self.claims += 1;
        self.held = Some((self.claims, op));
        self.claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_messages::SpComponent;

    fn update() -> Operation {
        Operation::Update {
            id: uuid::Uuid::nil(),
            component: SpComponent::HOST_CPU_BOOT_FLASH,
        }
    }

    fn reset() -> Operation {
        Operation::Reset {
            component: SpComponent::SP_ITSELF,
        }
    }

    #[test]
    fn an_update_excludes_resets_and_other_updates() {
        let mut slot = OpSlot::default();
        let Claim::Granted(n, ()) = slot.claim(update(), ()) else {
            panic!()
        };
        assert_eq!(slot.claim(reset(), ()), Claim::Refused(update(), ()));
        assert_eq!(slot.claim(update(), ()), Claim::Refused(update(), ()));
        assert!(slot.release(n + 1).is_none(), "another claim's number");
        assert_eq!(slot.held(), Some(update()));
        assert!(slot.release(n).is_none());
        assert_eq!(slot.held(), None);
        assert!(matches!(slot.claim(reset(), ()), Claim::Granted(..)));
    }

    #[test]
    fn resets_wait_in_turn_and_updates_are_refused_meanwhile() {
        let mut slot = OpSlot::default();
        let Claim::Granted(first, 0) = slot.claim(reset(), 0) else {
            panic!()
        };
        assert_eq!(slot.claim(reset(), 1), Claim::Waiting);
        assert_eq!(slot.claim(reset(), 2), Claim::Waiting);
        assert_eq!(slot.claim(update(), 9), Claim::Refused(reset(), 9));
        let (second, waiter) = slot.release(first).unwrap();
        assert_eq!(waiter, 1);
        assert_eq!(slot.held(), Some(reset()));
        let (third, waiter) = slot.release(second).unwrap();
        assert_eq!(waiter, 2);
        assert!(slot.release(third).is_none());
        assert_eq!(slot.held(), None);
    }
}
