//! How the server picks a new client's id.

use crate::protocol::PeerId;

/// Id assignment policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdPolicy {
    /// What QEMU's ivshmem-server does: continue after the last id handed
    /// out, wrapping at 65535, skipping ids in use. An id is not reused right
    /// after its peer left, so a late doorbell aimed at the old peer does not
    /// hit a newcomer, and logs stay unambiguous.
    #[default]
    NextFree,
    /// The lowest id not in use: a restarted peer gets its old id back when
    /// nobody took it (handy for fixed two-VM setups).
    LowestFree,
}

/// Hands out peer ids according to an [`IdPolicy`].
#[derive(Debug, Clone)]
pub struct IdAllocator {
    policy: IdPolicy,
    next: PeerId,
}

impl IdAllocator {
    /// The first id handed out is 0 under either policy (the spec says so).
    pub fn new(policy: IdPolicy) -> IdAllocator {
        IdAllocator { policy, next: 0 }
    }

    /// Picks a free id, or `None` if all 65536 are in use.
    pub fn allocate(&mut self, in_use: impl Fn(PeerId) -> bool) -> Option<PeerId> {
        let start = match self.policy {
            IdPolicy::NextFree => self.next,
            IdPolicy::LowestFree => 0,
        };
        // All 65536 candidates, starting at `start` and wrapping.
        let id = (0..=PeerId::MAX)
            .map(|offset| start.wrapping_add(offset))
            .find(|&id| !in_use(id))?;
        self.next = id.wrapping_add(1);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn next_free_does_not_reuse_immediately() {
        let mut alloc = IdAllocator::new(IdPolicy::NextFree);
        let mut used = BTreeSet::new();
        for expect in 0..3 {
            let id = alloc.allocate(|i| used.contains(&i)).unwrap();
            assert_eq!(id, expect);
            used.insert(id);
        }
        used.remove(&1);
        assert_eq!(alloc.allocate(|i| used.contains(&i)), Some(3));
    }

    #[test]
    fn next_free_wraps_and_skips_used() {
        let mut alloc = IdAllocator::new(IdPolicy::NextFree);
        alloc.next = u16::MAX;
        let used: BTreeSet<u16> = [u16::MAX, 0].into_iter().collect();
        assert_eq!(alloc.allocate(|i| used.contains(&i)), Some(1));
    }

    #[test]
    fn lowest_free_reuses() {
        let mut alloc = IdAllocator::new(IdPolicy::LowestFree);
        let used: BTreeSet<u16> = [0, 2].into_iter().collect();
        assert_eq!(alloc.allocate(|i| used.contains(&i)), Some(1));
        assert_eq!(alloc.allocate(|i| used.contains(&i)), Some(1));
    }

    #[test]
    fn all_ids_used_gives_none() {
        let mut alloc = IdAllocator::new(IdPolicy::NextFree);
        assert_eq!(alloc.allocate(|_| true), None);
        let mut alloc = IdAllocator::new(IdPolicy::LowestFree);
        assert_eq!(alloc.allocate(|i| i != u16::MAX), Some(u16::MAX));
    }
}
