//! A queue of entries kept in time order, each stored once, with an index
//! by id: the graph's retained (ended) tasks and its request window.
//!
//! Entries are ordered by a key `(time, counter)`, the counter unique
//! within the queue. They nearly always arrive in order (a command's time
//! never goes back on a steady clock), so an append is a push at the back;
//! one that arrives out of order (a wall clock stepped back, or an expiry
//! committed after commands with later times) is inserted where it
//! belongs, so that the front is always the oldest and eviction by age
//! only ever looks at the front.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

use crate::time::Timestamp;

/// What the queue orders an entry by.
pub(crate) type Key = (Timestamp, u64);

/// An entry of a [`TimedQueue`].
pub(crate) trait Timed {
    /// What the index finds it by.
    type Id: Eq + Hash + Clone;
    /// Its id.
    fn id(&self) -> &Self::Id;
    /// Its place in the queue.
    fn key(&self) -> Key;
}

/// Entries in key order with an index from id to key.
#[derive(Debug, Clone)]
pub(crate) struct TimedQueue<T: Timed, S> {
    items: VecDeque<T>,
    index: HashMap<T::Id, Key, S>,
}

impl<T: Timed> TimedQueue<T, std::hash::BuildHasherDefault<crate::graph::IdHasher>> {
    /// An empty queue, in a constant.
    pub(crate) const fn new() -> Self {
        Self {
            items: VecDeque::new(),
            index: HashMap::with_hasher(std::hash::BuildHasherDefault::new()),
        }
    }
}

impl<T: Timed, S: Default> Default for TimedQueue<T, S> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            index: HashMap::default(),
        }
    }
}

impl<T: Timed, S: BuildHasher> TimedQueue<T, S> {
    fn position(&self, id: &T::Id) -> Option<usize> {
        let key = *self.index.get(id)?;
        self.items.binary_search_by_key(&key, Timed::key).ok()
    }

    /// The entry with this id.
    pub(crate) fn get(&self, id: &T::Id) -> Option<&T> {
        self.items.get(self.position(id)?)
    }

    /// Makes room for `n` more entries at once, the queue holding at most
    /// `cap`: for the tasks one step ends together.
    pub(crate) fn reserve(&mut self, n: usize, cap: usize) {
        let len = self.items.len();
        let want = (len + n).min(cap.max(len));
        self.items.reserve_exact(want.saturating_sub(len));
        self.index.reserve(want.saturating_sub(len));
    }

    /// Adds an entry, keeping the order; the queue's capacity doubles up
    /// to `cap` and no further. The caller keeps ids and keys unique.
    pub(crate) fn push(&mut self, entry: T, cap: usize) {
        let len = self.items.len();
        if len == self.items.capacity() {
            let want = (len * 2).max(1).min(cap.max(len + 1));
            self.items.reserve_exact(want - len);
        }
        let key = entry.key();
        self.index.insert(entry.id().clone(), key);
        if self.items.back().is_none_or(|b| b.key() <= key) {
            self.items.push_back(entry);
        } else {
            let at = self.items.partition_point(|e| e.key() < key);
            self.items.insert(at, entry);
        }
    }

    /// The oldest entry.
    pub(crate) fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Removes the oldest entry.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let e = self.items.pop_front()?;
        self.index.remove(e.id());
        Some(e)
    }

    /// Removes the entry with this id.
    pub(crate) fn remove(&mut self, id: &T::Id) -> Option<T> {
        let at = self.position(id)?;
        let e = self.items.remove(at)?;
        self.index.remove(e.id());
        Some(e)
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::RandomState;

    #[derive(Debug, Clone, PartialEq)]
    struct E(u32, u64, u64);

    impl Timed for E {
        type Id = u32;
        fn id(&self) -> &u32 {
            &self.0
        }
        fn key(&self) -> Key {
            (Timestamp::from_millis(self.1), self.2)
        }
    }

    #[test]
    fn entries_out_of_time_order_are_placed_by_time_so_the_front_is_the_oldest() {
        let mut q = TimedQueue::<E, RandomState>::default();
        q.push(E(1, 100, 0), 10);
        q.push(E(2, 300, 1), 10);
        q.push(E(3, 50, 2), 10);
        q.push(E(4, 300, 3), 10);
        q.push(E(5, 200, 4), 10);
        let ids: Vec<u32> = q.iter().map(|e| e.0).collect();
        assert_eq!(ids, [3, 1, 5, 2, 4]);
        for id in 1..=5 {
            assert_eq!(q.get(&id).map(|e| e.0), Some(id));
        }
        assert_eq!(q.remove(&5).map(|e| e.0), Some(5));
        assert_eq!(q.get(&5), None);
        assert_eq!(q.pop_front().map(|e| e.0), Some(3));
        assert_eq!(q.get(&3), None);
        assert_eq!(q.front().map(|e| e.0), Some(1));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn capacity_grows_to_the_bound_and_not_past_it() {
        let mut q = TimedQueue::<E, RandomState>::default();
        for i in 0..7 {
            q.push(E(i, u64::from(i), u64::from(i)), 7);
        }
        assert!(q.items.capacity() < 14, "{}", q.items.capacity());
    }
}
