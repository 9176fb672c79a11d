//! A first-in, first-out queue stored in fixed-size chunks, for the label join's arrivals.
//!
//! Why not `VecDeque`: the join's queue holds up to a million 64-byte arrivals per partition.
//! A `VecDeque` that grows doubles its buffer and copies every entry into it, so on the way to
//! a million entries one event pays for copying 32 MB (the throughput bench, with a quarter
//! of that per join, saw stalls of up to ~5 ms), and old and new buffer together hold half
//! again the memory the entries need. Here the entries live in chunks of `CHUNK` (1,024) that never move once
//! allocated: appending takes a fresh chunk when the last is full, and the chunk that empties
//! at the front is kept for that, so a queue at its bound allocates nothing.
//!
//! Only the front chunk loses entries and only the back chunk gains them, so every chunk in
//! between is full and the entry at a position is found with one division.

use std::collections::VecDeque;

/// Entries per chunk: 64 KiB of the join's 64-byte arrivals, small beside a million-entry
/// queue and large enough that the chunk list stays short.
const CHUNK: usize = 1024;

/// A FIFO queue in fixed-size chunks (see the module documentation).
#[derive(Debug, Clone)]
pub struct ChunkedQueue<T> {
    /// Each with capacity for `CHUNK` (1,024) entries; all but the first and last hold exactly
    /// `CHUNK`. Never holds an empty chunk except a lone first one.
    chunks: VecDeque<VecDeque<T>>,
    len: usize,
    /// The last chunk that emptied, kept for the next one needed.
    spare: Option<VecDeque<T>>,
    /// Chunks allocated so far, for the test that a queue at its bound allocates none.
    #[cfg(test)]
    allocated: usize,
}

impl<T> Default for ChunkedQueue<T> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            spare: None,
            #[cfg(test)]
            allocated: 0,
        }
    }
}

impl<T> ChunkedQueue<T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the queue holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `value` at the back.
    #[inline]
    pub fn push_back(&mut self, value: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push_back(value),
            _ => {
                let mut chunk = match self.spare.take() {
                    Some(chunk) => chunk,
                    None => {
                        #[cfg(test)]
                        {
                            self.allocated += 1;
                        }
                        VecDeque::with_capacity(CHUNK)
                    }
                };
                chunk.push_back(value);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    /// Removes and returns the front entry.
    #[inline]
    pub fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let value = first.pop_front()?;
        self.len -= 1;
        if first.is_empty() && self.chunks.len() > 1 {
            self.spare = self.chunks.pop_front();
        }
        Some(value)
    }

    /// The front entry.
    pub fn front(&self) -> Option<&T> {
        self.chunks.front()?.front()
    }

    /// The back entry.
    pub fn back(&self) -> Option<&T> {
        self.chunks.back()?.back()
    }

    /// (chunk, place in it) of the entry at `position`, when there is one.
    #[inline]
    fn locate(&self, position: usize) -> Option<(usize, usize)> {
        if position >= self.len {
            return None;
        }
        let first = self.chunks.front()?.len();
        if position < first {
            return Some((0, position));
        }
        let rest = position - first;
        Some((1 + rest / CHUNK, rest % CHUNK))
    }

    /// The entry at `position` from the front.
    #[inline]
    pub fn get(&self, position: usize) -> Option<&T> {
        let (chunk, place) = self.locate(position)?;
        self.chunks.get(chunk)?.get(place)
    }

    /// The entry at `position` from the front, mutably.
    #[inline]
    pub fn get_mut(&mut self, position: usize) -> Option<&mut T> {
        let (chunk, place) = self.locate(position)?;
        self.chunks.get_mut(chunk)?.get_mut(place)
    }

    /// The entries from front to back.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for ChunkedQueue<T> {
    type Output = T;

    /// The entry at `position`; panics when there is none, as `VecDeque` does.
    fn index(&self, position: usize) -> &T {
        match self.get(position) {
            Some(value) => value,
            None => panic!("position {position} out of a queue of {}", self.len),
        }
    }
}

impl<T: PartialEq> PartialEq for ChunkedQueue<T> {
    /// Equal entries in the same order, however they are chunked.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Pop,
        Get(usize),
        Set(usize, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Pushes outweigh pops so the queue spans many chunks.
            6 => any::<u32>().prop_map(Op::Push),
            3 => Just(Op::Pop),
            2 => any::<usize>().prop_map(Op::Get),
            1 => (any::<usize>(), any::<u32>()).prop_map(|(i, v)| Op::Set(i, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The queue behaves as a `VecDeque` under any sequence of operations, across chunk
        /// boundaries (runs of a few thousand operations cross several).
        #[test]
        fn behaves_as_a_vecdeque(ops in proptest::collection::vec(op(), 0..6000)) {
            let mut queue = ChunkedQueue::default();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(v) => {
                        queue.push_back(v);
                        model.push_back(v);
                    }
                    Op::Pop => prop_assert_eq!(queue.pop_front(), model.pop_front()),
                    Op::Get(i) => {
                        // Half the probes inside the queue, half anywhere.
                        let i = if i % 2 == 0 { i % (model.len() + 1) } else { i };
                        prop_assert_eq!(queue.get(i), model.get(i));
                    }
                    Op::Set(i, v) => {
                        let i = i % (model.len() + 1);
                        if let (Some(a), Some(b)) = (queue.get_mut(i), model.get_mut(i)) {
                            *a = v;
                            *b = v;
                        } else {
                            prop_assert!(queue.get(i).is_none() && model.get(i).is_none());
                        }
                    }
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.front(), model.front());
                prop_assert_eq!(queue.back(), model.back());
            }
            prop_assert!(queue.iter().eq(model.iter()));
        }
    }

    /// What the queue is for: appending never moves an entry already queued, so no append
    /// pays for copying the queue (the stall a growing `VecDeque` has).
    #[test]
    fn appending_never_moves_queued_entries() {
        let mut queue = ChunkedQueue::default();
        let mut addresses = Vec::new();
        for i in 0..(10 * CHUNK as u64) {
            queue.push_back(i);
            addresses.push(std::ptr::from_ref(queue.get(i as usize).unwrap()));
        }
        for (i, address) in addresses.iter().enumerate() {
            assert_eq!(std::ptr::from_ref(queue.get(i).unwrap()), *address);
        }
    }

    /// A queue kept at its bound (one out for each one in) reuses the chunk that emptied
    /// instead of allocating: its storage stays within two chunks of what it holds.
    #[test]
    fn a_queue_at_its_bound_reuses_its_chunks() {
        let mut queue = ChunkedQueue::default();
        let bound = 5 * CHUNK + 17;
        for i in 0..(40 * CHUNK) {
            queue.push_back(i);
            if queue.len() > bound {
                assert_eq!(queue.pop_front(), Some(i - bound));
            }
        }
        assert_eq!(queue.len(), bound);
        // The chunks it needs at most, allocated once, however many times it turned over.
        assert!(queue.allocated <= bound / CHUNK + 2, "{}", queue.allocated);
    }
}
