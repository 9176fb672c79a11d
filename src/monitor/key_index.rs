//! A hash index from the label join's 64-bit keys to arrival numbers, whose slot for a key
//! can be fetched into the cache ahead of its use.
//!
//! Why not a standard hash map: the join holds up to a million waiting predictions per
//! partition, so the slot a new prediction lands in is almost never in the cache, and the
//! miss (one for the control bytes and one for the entry with `std`'s table) was ~40 % of
//! `Engine::process` (~480 ns of ~1,100 ns per event). The engine knows the key before it
//! spends ~600 ns on the event's features; [`KeyIndex::prefetch`] asks for the key's slot
//! then, so the insertion finds it in the cache. No maintained crate exposes where a key's
//! bucket lives (hashbrown removed its raw table), so this is a small open-addressing table:
//! linear probing over 16-byte slots (four to a cache line; one line holds most probes) and
//! backward-shift deletion (no tombstones, so probes stay short however many entries come
//! and go).
//!
//! The slot of a key comes from a per-process seeded hash of it (the keys themselves are an
//! unseeded FNV of producer-chosen ids), so nobody can precompute ids that pile into one run.

use std::hash::BuildHasher;

/// Marks an empty slot: no arrival number reaches it (one per event, from 0).
const EMPTY: u64 = u64::MAX;

/// Slots of a table's first allocation.
const INITIAL_SLOTS: usize = 16;

/// The table grows once more than this fraction of its slots would be full: with linear
/// probing, a search for an absent key then inspects ~3.6 slots on average (one cache line).
const MAX_LOAD: (usize, usize) = (5, 8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    key: u64,
    /// [`EMPTY`] when the slot is free.
    arrival: u64,
}

const FREE: Slot = Slot {
    key: 0,
    arrival: EMPTY,
};

/// Where a search for a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The key is present with this arrival number.
    Found(u64),
    /// The key is absent; [`KeyIndex::insert_vacant`] puts it at this slot.
    Vacant(usize),
}

/// Map from join key to arrival number (see the module documentation).
#[derive(Clone)]
pub struct KeyIndex {
    /// A power of two long, or empty before the first insertion.
    slots: Vec<Slot>,
    len: usize,
    /// `64 - log2(slots.len())`: a key's home slot is the top bits of its hash.
    shift: u32,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            shift: 64,
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl KeyIndex {
    /// Keys present.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The key's home slot; only for a table with slots (`shift` < 64).
    fn home(&self, key: u64) -> usize {
        // The top bits of a multiplicative-style hash are its best mixed ones.
        (self.hasher.hash_one(key) >> self.shift) as usize
    }

    /// Asks the processor to bring `key`'s home slot into the cache, so a later
    /// [`Self::probe`] of it does not wait for memory. Only a hint: it changes no state and
    /// costs a few cycles.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if self.slots.is_empty() {
            return;
        }
        if let Some(slot) = self.slots.get(self.home(key)) {
            crate::hint::prefetch_read(slot);
        }
    }

    /// Searches for `key`.
    pub fn probe(&self, key: u64) -> Probe {
        if self.slots.is_empty() {
            return Probe::Vacant(0);
        }
        let mask = self.mask();
        let mut at = self.home(key);
        loop {
            let slot = self.slots[at];
            if slot.arrival == EMPTY {
                return Probe::Vacant(at);
            }
            if slot.key == key {
                return Probe::Found(slot.arrival);
            }
            at = (at + 1) & mask;
        }
    }

    /// The arrival number of `key`, if present.
    pub fn get(&self, key: u64) -> Option<u64> {
        match self.probe(key) {
            Probe::Found(arrival) => Some(arrival),
            Probe::Vacant(_) => None,
        }
    }

    /// Adds `key`, which `probe` just reported [`Probe::Vacant`] at `at` (no change in
    /// between). `arrival` must not be `u64::MAX`.
    pub fn insert_vacant(&mut self, at: usize, key: u64, arrival: u64) {
        debug_assert_ne!(arrival, EMPTY);
        let (numerator, denominator) = MAX_LOAD;
        if (self.len + 1) * denominator > self.slots.len() * numerator {
            self.grow();
            // The table changed shape: search the vacant slot again.
            if let Probe::Vacant(at) = self.probe(key) {
                self.slots[at] = Slot { key, arrival };
                self.len += 1;
            }
            return;
        }
        self.slots[at] = Slot { key, arrival };
        self.len += 1;
    }

    /// Adds `key` if absent; returns false (and changes nothing) when it is present.
    pub fn insert(&mut self, key: u64, arrival: u64) -> bool {
        match self.probe(key) {
            Probe::Found(_) => false,
            Probe::Vacant(at) => {
                self.insert_vacant(at, key, arrival);
                true
            }
        }
    }

    /// Removes `key`; returns its arrival number when it was present.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut hole = self.home(key);
        loop {
            let slot = self.slots[hole];
            if slot.arrival == EMPTY {
                return None;
            }
            if slot.key == key {
                break;
            }
            hole = (hole + 1) & mask;
        }
        let removed = self.slots[hole].arrival;
        self.len -= 1;
        // Backward shift: every later slot of the run whose home is not between the hole and
        // itself moves into the hole, so every key stays reachable from its home without
        // crossing an empty slot.
        let mut next = (hole + 1) & mask;
        loop {
            let slot = self.slots[next];
            if slot.arrival == EMPTY {
                break;
            }
            let home = self.home(slot.key);
            let distance_from_home = next.wrapping_sub(home) & mask;
            let distance_from_hole = next.wrapping_sub(hole) & mask;
            if distance_from_home >= distance_from_hole {
                self.slots[hole] = slot;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = FREE;
        Some(removed)
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(INITIAL_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![FREE; capacity]);
        self.shift = 64 - capacity.trailing_zeros();
        let mask = self.mask();
        for slot in old.into_iter().filter(|s| s.arrival != EMPTY) {
            let mut at = self.home(slot.key);
            while self.slots[at].arrival != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so removals hit present keys and runs of collisions form.
        prop_oneof![
            (0u64..200).prop_map(Op::Insert),
            (0u64..200).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// The index answers as a map does after any sequence of insertions and removals,
        /// through growth and backward shifts.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 0..2_000)) {
            let mut index = KeyIndex::default();
            let mut model: HashMap<u64, u64> = HashMap::new();
            for (arrival, op) in ops.iter().enumerate() {
                let arrival = arrival as u64;
                match *op {
                    Op::Insert(key) => {
                        let fresh = !model.contains_key(&key);
                        if fresh {
                            model.insert(key, arrival);
                        }
                        prop_assert_eq!(index.insert(key, arrival), fresh);
                    }
                    Op::Remove(key) => prop_assert_eq!(index.remove(key), model.remove(&key)),
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for key in 0..200 {
                prop_assert_eq!(index.get(key), model.get(&key).copied());
            }
        }
    }

    #[test]
    fn a_full_run_of_collisions_stays_reachable_after_removals() {
        // A table of 16 slots holding 10 keys has long runs; removing every other key must
        // leave the rest findable, and re-inserting them must not duplicate any.
        let mut index = KeyIndex::default();
        for key in 0..10 {
            assert!(index.insert(key * 7_919, key));
        }
        for key in (0..10).step_by(2) {
            assert_eq!(index.remove(key * 7_919), Some(key));
        }
        for key in 0..10 {
            let expected = (key % 2 == 1).then_some(key);
            assert_eq!(index.get(key * 7_919), expected, "key {key}");
        }
        for key in (1..10).step_by(2) {
            assert!(!index.insert(key * 7_919, 99));
        }
        assert_eq!(index.len(), 5);
        assert_eq!(index.remove(12_345), None);
        index.prefetch(12_345);
    }

    #[test]
    fn an_empty_index_answers_without_allocating() {
        let mut index = KeyIndex::default();
        index.prefetch(1);
        assert_eq!(index.get(1), None);
        assert_eq!(index.remove(1), None);
        assert!(index.is_empty());
        assert!(index.slots.is_empty());
    }
}
