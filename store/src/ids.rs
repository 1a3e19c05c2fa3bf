//! The vertex ids of a graph: a flat table, so that an edge file's id
//! lookups (random ids, two per edge, over every vertex) touch as little
//! memory as can be.
//!
//! - `text`: every id, one after the other, in node order;
//! - `ends`: where each id ends in `text` (it starts where the one before
//!   ends), so node → id is one step;
//! - `slots`: an open-addressing hash table (linear probing, a power of
//!   two long) of 16-byte slots. A slot holds the node index (plus one: 0
//!   is an empty slot), the id's length, and either the id itself (up to
//!   [`SHORT`] bytes) or, for a longer id, 16 bits of its hash and where it
//!   starts in `text`. So id → node reads one slot for a short id (two
//!   words compared, no other memory) and a slot and the id's bytes for a
//!   long one. A table that grows is kept at most half full (short runs
//!   for an import's lookups); once an import is done it is packed to at
//!   most seven eighths full, and ids added to a packed table fill it up
//!   to that before it grows again (a few new vertices do not rebuild a
//!   large table).
//!
//! A vertex costs 8 bytes in `ends`, 18 to 37 in a packed table and its
//! id's bytes; nothing is allocated per id. Ids are only ever added; a
//! cleared graph starts a new table.
//!
//! Ids come from clients' files, so where an id lands must not be
//! predictable, or one file of crafted ids could put them all in one run
//! and make every lookup walk it (the answers stay right; only the time
//! goes). Each table hashes with its own randomly seeded foldhash state
//! (`foldhash::fast::RandomState`: a seed drawn per process, mixed with
//! one per table). foldhash is fast, not cryptographic: it resists
//! colliding inputs written without the seed, and the seed never shows
//! (no output of the hash leaves the process, and the table's order is
//! never shown: ids come back in node order). A fixed-seed or unseeded
//! hash would not do.

use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;

/// The most ids a table holds: a slot keeps an index plus one in 32 bits,
/// and petgraph's `u32` indexes end at `u32::MAX - 1`.
pub(crate) const MAX_IDS: usize = u32::MAX as usize - 1;

/// Ids of at most this many bytes live in their slot.
pub(crate) const SHORT: usize = 10;

/// The length a slot gives an id of this length or longer (the real one
/// is in `ends`).
const LONG_LEN: u32 = 0xffff;

/// How full a growing table gets: at most half, so that lookups (an
/// import's, two per edge) walk short runs.
const GROWING: (usize, usize) = (1, 2);
/// How full a packed table gets (packed once an import is done, or read
/// from the stored form): at most seven eighths, which costs less memory
/// and slows lookups a little. Ids added to a packed table fill it up to
/// that; past it, the table grows (and grows again at half full) until it
/// is packed again.
const PACKED: (usize, usize) = (7, 8);

/// One slot: `[index + 1 | length << 32 | extra << 48, rest]`, where for
/// a short id `extra` and `rest` are its bytes (2 and 8, zero-padded), and
/// for a long one `extra` is 16 bits of its hash and `rest` its start in
/// `text`.
type Slot = [u64; 2];

/// An id as slots compare it: the slot's high 32 bits (length and
/// `extra`), and for a short id its `rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    high: u32,
    rest: u64,
    short: bool,
}

impl Key {
    /// The key of `id`, whose hash is `hash`.
    #[inline]
    fn new(hash: u64, id: &[u8]) -> Key {
        Key::with(hash, id, None)
    }

    /// The key of `id`; `window`, when given, is 16 bytes starting where
    /// `id` does (it lets a short id be read in one load).
    #[inline]
    fn with(hash: u64, id: &[u8], window: Option<&[u8]>) -> Key {
        let len = id.len();
        if len > SHORT {
            let len = (len as u64).min(u64::from(LONG_LEN)) as u32;
            return Key {
                high: len | ((hash >> 48) as u32) << 16,
                rest: 0,
                short: false,
            };
        }
        let bits = match window.and_then(|w| <[u8; 16]>::try_from(w).ok()) {
            Some(w) => u128::from_le_bytes(w) & ((1u128 << (8 * len)) - 1),
            None => id.iter().rev().fold(0u128, |v, &b| v << 8 | u128::from(b)),
        };
        Key {
            high: len as u32 | ((bits as u32) & 0xffff) << 16,
            rest: (bits >> 16) as u64,
            short: true,
        }
    }
}

/// The hash table's slots.
#[derive(Debug, Clone, Default)]
struct Slots(Vec<Slot>);

impl Slots {
    /// `n` empty slots (a power of two, or 0).
    fn new(n: usize) -> Slots {
        Slots(vec![[0; 2]; n])
    }

    /// How many slots.
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[inline]
    fn get(&self, at: usize) -> Slot {
        self.0[at]
    }

    fn set(&mut self, at: usize, slot: Slot) {
        self.0[at] = slot;
    }

    /// Where the run of a hash starts.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.0.len() - 1)
    }

    fn heap_bytes(&self) -> usize {
        self.0.capacity() * size_of::<Slot>()
    }
}

/// The vertex ids, index ↔ id.
#[derive(Clone, Default)]
pub(crate) struct IdTable {
    state: RandomState,
    text: String,
    ends: Vec<u64>,
    slots: Slots,
    /// Whether the table grew since it was last packed.
    growing: bool,
}

impl std::fmt::Debug for IdTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The smallest table (a power of two) that holds `n` ids at most `load`
/// full.
fn slots_for(n: usize, load: (usize, usize)) -> usize {
    if n == 0 {
        return 0;
    }
    (n.saturating_mul(load.1) / load.0 + 1)
        .max(16)
        .next_power_of_two()
}

/// What the second stage of [`IdTable::find_many`] left for the third.
const MISSING: u64 = u64::MAX;
const FOUND: u64 = u64::MAX - 1;

impl IdTable {
    /// An empty table with room for `n` ids of `bytes` bytes in all.
    pub(crate) fn with_capacity(n: usize, bytes: usize) -> IdTable {
        let mut t = IdTable::default();
        t.reserve(n, bytes);
        t
    }

    /// How many ids.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The hash of an id, for [`find_hashed`](Self::find_hashed) and
    /// [`push_hashed`](Self::push_hashed).
    #[inline]
    pub(crate) fn hash(&self, id: &[u8]) -> u64 {
        let mut h = self.state.build_hasher();
        h.write(id);
        h.finish()
    }

    fn bounds(&self, index: usize) -> (usize, usize) {
        let start = match index.checked_sub(1) {
            Some(before) => self.ends[before] as usize,
            None => 0,
        };
        (start, self.ends[index] as usize)
    }

    /// The id at a node index.
    pub(crate) fn get(&self, index: usize) -> Option<&str> {
        if index >= self.ends.len() {
            return None;
        }
        let (start, end) = self.bounds(index);
        self.text.get(start..end)
    }

    /// Whether the slot `slot`, whose high bits are `key`'s, holds `id`.
    #[inline]
    fn holds(&self, slot: Slot, key: Key, id: &[u8]) -> bool {
        if key.short {
            return slot[1] == key.rest;
        }
        let start = slot[1] as usize;
        let end = if id.len() < LONG_LEN as usize {
            start + id.len()
        } else {
            self.ends[(slot[0] as u32 - 1) as usize] as usize
        };
        self.text.as_bytes().get(start..end) == Some(id)
    }

    /// The node index of an id whose hash is `hash`.
    pub(crate) fn find_hashed(&self, hash: u64, id: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let key = Key::new(hash, id);
        let mask = self.slots.len() - 1;
        let mut at = self.slots.home(hash);
        loop {
            let slot = self.slots.get(at);
            if slot[0] == 0 {
                return None;
            }
            if (slot[0] >> 32) as u32 == key.high && self.holds(slot, key, id) {
                return Some(slot[0] as u32 - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// The node index of an id.
    pub(crate) fn find(&self, id: &str) -> Option<u32> {
        self.find_hashed(self.hash(id.as_bytes()), id.as_bytes())
    }

    /// Loads the first slot of each of `hashes`, so that the lookups and
    /// inserts that follow find them in the cache: these loads do not wait
    /// for one another, where lookups one at a time would.
    pub(crate) fn touch(&self, hashes: &[u64]) {
        if self.slots.is_empty() {
            return;
        }
        let mut any = 0u64;
        for &h in hashes {
            any |= self.slots.get(self.slots.home(h))[0];
        }
        std::hint::black_box(any);
    }

    /// Looks up many ids at once, each as [`find_hashed`](Self::find_hashed)
    /// would, into `found`: the ids are the `keys` ranges of `bytes`, with
    /// `hashes`. The work goes in stages (every id's first slot; then
    /// every id's run of slots, which settles a short id; then every long
    /// id's bytes), so that the cache misses of different ids overlap.
    /// `scratch` is room the stages reuse.
    pub(crate) fn find_many(
        &self,
        bytes: &[u8],
        keys: &[(usize, usize)],
        hashes: &[u64],
        scratch: &mut Vec<[u64; 2]>,
        found: &mut Vec<Option<u32>>,
    ) {
        found.clear();
        if self.slots.is_empty() {
            found.resize(keys.len(), None);
            return;
        }
        let mask = self.slots.len() - 1;
        scratch.clear();
        scratch.extend(hashes.iter().map(|&h| self.slots.get(self.slots.home(h))));
        for ((s, &(start, end)), &h) in scratch.iter_mut().zip(keys).zip(hashes) {
            let key = Key::with(h, &bytes[start..end], bytes.get(start..start + 16));
            let mut at = self.slots.home(h);
            let mut slot = *s;
            *s = loop {
                if slot[0] == 0 {
                    break [MISSING, 0];
                }
                if (slot[0] >> 32) as u32 == key.high {
                    if !key.short {
                        // A long id's bytes are for the next stage.
                        break slot;
                    }
                    if slot[1] == key.rest {
                        break [FOUND, slot[0]];
                    }
                }
                at = (at + 1) & mask;
                slot = self.slots.get(at);
            };
        }
        for ((s, &(start, end)), &h) in scratch.iter().zip(keys).zip(hashes) {
            let id = &bytes[start..end];
            found.push(match *s {
                [MISSING, _] => None,
                [FOUND, w] => Some(w as u32 - 1),
                slot if self.holds(slot, Key::new(h, id), id) => Some(slot[0] as u32 - 1),
                // Another long id with the same length and 16 bits of hash
                // (rare): the slow way.
                _ => self.find_hashed(h, id),
            });
        }
    }

    /// The slot of the id at `index`, whose hash is `hash`.
    fn slot(&self, hash: u64, index: usize) -> Slot {
        let (start, end) = self.bounds(index);
        let id = &self.text.as_bytes()[start..end];
        let key = Key::new(hash, id);
        let first = u64::from(key.high) << 32 | (index as u64 + 1);
        [first, if key.short { key.rest } else { start as u64 }]
    }

    /// Puts `slot` into the first free slot of its run (the table has
    /// one).
    fn place(slots: &mut Slots, hash: u64, slot: Slot) {
        let mask = slots.len() - 1;
        let mut at = slots.home(hash);
        while slots.get(at)[0] != 0 {
            at = (at + 1) & mask;
        }
        slots.set(at, slot);
    }

    /// The hash of the id in `slot`: a short id's bytes are in the slot.
    fn slot_hash(&self, slot: Slot) -> u64 {
        let len = (slot[0] >> 32) as usize & 0xffff;
        if len <= SHORT {
            let mut b = [0u8; 2 + 8];
            b[..2].copy_from_slice(&((slot[0] >> 48) as u16).to_le_bytes());
            b[2..].copy_from_slice(&slot[1].to_le_bytes());
            self.hash(&b[..len])
        } else {
            let (start, end) = self.bounds((slot[0] as u32 - 1) as usize);
            self.hash(&self.text.as_bytes()[start..end])
        }
    }

    /// Rebuilds the slots at `len` slots (a power of two that holds every
    /// id). The old slots are taken in order, so that the new ones are
    /// written nearly in order too (a run's start in a table twice or half
    /// the size is where it was, or a fixed distance away) rather than
    /// all over the table.
    fn rehash(&mut self, len: usize) {
        let mut slots = Slots::new(len);
        if len > 0 {
            for &slot in &self.slots.0 {
                if slot[0] != 0 {
                    Self::place(&mut slots, self.slot_hash(slot), slot);
                }
            }
        }
        self.slots = slots;
    }

    /// Adds an id that is not in the table (the caller found it missing)
    /// with its hash; returns its index. `None` when the table holds
    /// [`MAX_IDS`] ids.
    pub(crate) fn push_hashed(&mut self, hash: u64, id: &str) -> Option<u32> {
        let index = self.ends.len();
        if index >= MAX_IDS {
            return None;
        }
        let load = if self.growing { GROWING } else { PACKED };
        if (index + 1) * load.1 > self.slots.len() * load.0 {
            self.rehash(slots_for(index + 1, GROWING).max(self.slots.len() * 2));
            self.growing = true;
        }
        self.text.push_str(id);
        self.ends.push(self.text.len() as u64);
        let slot = self.slot(hash, index);
        Self::place(&mut self.slots, hash, slot);
        Some(index as u32)
    }

    /// Adds an id; `false` if it is already in the table or the table is
    /// full.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        let h = self.hash(id.as_bytes());
        self.find_hashed(h, id.as_bytes()).is_none() && self.push_hashed(h, id).is_some()
    }

    /// Makes room for `n` more ids of `bytes` bytes in all, the table
    /// included (it does not grow while they are added).
    pub(crate) fn reserve(&mut self, n: usize, bytes: usize) {
        let want = slots_for(self.len().saturating_add(n).min(MAX_IDS), GROWING);
        if want > self.slots.len() {
            self.rehash(want);
            self.growing = true;
        }
        self.ends.reserve(n);
        self.text.reserve(bytes);
    }

    /// Gives back spare capacity, and slots past what the ids need.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
        let want = slots_for(self.len(), PACKED);
        if want < self.slots.len() {
            self.rehash(want);
        }
        self.growing = false;
    }

    /// The ids in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// The heap bytes the table holds, from its capacities.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * size_of::<u64>() + self.slots.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of every length around [`SHORT`] and [`LONG_LEN`], some alike
    /// but for their last byte or a trailing zero byte.
    fn ids() -> Vec<String> {
        let mut ids: Vec<String> = (0..3_000).map(|i| format!("id{i}")).collect();
        ids.push(String::new());
        for len in 1..=SHORT + 3 {
            ids.push("x".repeat(len));
            ids.push("y".repeat(len - 1) + "\0");
        }
        ids.push("ü".repeat(6));
        ids.push("a".repeat(LONG_LEN as usize - 1));
        ids.push("a".repeat(LONG_LEN as usize));
        ids.push("a".repeat(LONG_LEN as usize + 1));
        ids.push("b".repeat(LONG_LEN as usize + 1));
        ids
    }

    #[test]
    fn ids_are_found_after_growth_and_a_shrink() {
        let mut t = IdTable::default();
        assert_eq!(t.find("a"), None);
        assert_eq!(t.get(0), None);
        let ids = ids();
        for (i, id) in ids.iter().enumerate() {
            assert!(t.insert(id), "{id}");
            assert_eq!(t.find(id), Some(i as u32));
        }
        for id in &ids {
            assert!(!t.insert(id));
        }
        let copy = t.clone();
        t.reserve(100_000, 1 << 20);
        t.shrink_to_fit();
        let absent = [
            "id3000",
            "xxxxxxxxxxxxxxxx",
            "z\0",
            "x\0",
            "ü",
            "aa",
            "\0\0",
        ];
        for t in [&t, &copy] {
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(t.find(id), Some(i as u32));
                assert_eq!(t.get(i), Some(id.as_str()));
            }
            for id in absent {
                assert_eq!(t.find(id), None, "{id:?}");
            }
            assert_eq!(t.get(ids.len()), None);
            assert!(t.iter().eq(ids.iter().map(String::as_str)));
            assert!(t.slots.len() * PACKED.0 >= t.len() * PACKED.1);
            assert!(t.slots.len() <= slots_for(t.len(), GROWING) * 2);
        }
        assert_eq!(format!("{:?}", IdTable::with_capacity(3, 3)), "[]");
    }

    #[test]
    fn a_packed_table_fills_up_before_it_grows() {
        let mut t = IdTable::default();
        for i in 0..1_000 {
            assert!(t.insert(&format!("id{i}")));
        }
        assert!(t.slots.len() >= 2_000, "half full at most while growing");
        t.shrink_to_fit();
        let packed = t.slots.len();
        assert_eq!(packed, slots_for(1_000, PACKED));
        let mut i = 1_000;
        while (t.len() + 1) * PACKED.1 <= packed * PACKED.0 {
            assert!(t.insert(&format!("id{i}")));
            i += 1;
        }
        assert_eq!(t.slots.len(), packed, "no rebuild while it fits");
        assert!(t.insert("one more"));
        assert_eq!(t.slots.len(), packed * 2);
        for j in 0..i {
            assert_eq!(t.find(&format!("id{j}")), Some(j as u32));
        }
    }

    #[test]
    fn many_at_once_finds_what_one_at_a_time_finds() {
        let mut t = IdTable::default();
        let ids = ids();
        for id in ids.iter().step_by(2) {
            assert!(t.insert(id));
        }
        let mut bytes = Vec::new();
        let mut keys = Vec::new();
        let mut asked: Vec<String> = ids.iter().rev().cloned().collect();
        asked.extend([String::new(), "nope".into(), "x".repeat(SHORT + 1) + "!"]);
        for id in &asked {
            keys.push((bytes.len(), bytes.len() + id.len()));
            bytes.extend_from_slice(id.as_bytes());
        }
        let hashes: Vec<u64> = keys.iter().map(|&(a, b)| t.hash(&bytes[a..b])).collect();
        let (mut scratch, mut found) = (Vec::new(), Vec::new());
        t.find_many(&bytes, &keys, &hashes, &mut scratch, &mut found);
        assert_eq!(found.len(), keys.len());
        for (&(a, b), got) in keys.iter().zip(&found) {
            let id = &bytes[a..b];
            assert_eq!(*got, t.find_hashed(t.hash(id), id));
        }
        // Every other id, and the empty one asked again.
        assert_eq!(
            found.iter().filter(|f| f.is_some()).count(),
            ids.len().div_ceil(2) + 1
        );
        IdTable::default().find_many(&bytes, &keys, &hashes, &mut scratch, &mut found);
        assert!(found.iter().all(Option::is_none) && found.len() == keys.len());
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_the_ids() {
        // Every id given the same hash: the table stays correct, only
        // slower.
        let ids: Vec<String> = (0..200u32)
            .map(|i| format!("x{i}"))
            .chain((0..200u32).map(|i| format!("a long id, number {i}")))
            .collect();
        let mut t = IdTable::with_capacity(ids.len() * 2, 10_000);
        let slots = t.slots.len();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.find_hashed(42, id.as_bytes()), None);
            assert_eq!(t.push_hashed(42, id), Some(i as u32));
        }
        let mut bytes = Vec::new();
        let mut keys = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.find_hashed(42, id.as_bytes()), Some(i as u32));
            keys.push((bytes.len(), bytes.len() + id.len()));
            bytes.extend_from_slice(id.as_bytes());
        }
        assert_eq!(t.find_hashed(42, b"x200"), None);
        assert_eq!(t.find_hashed(42, b"a long id, number 200"), None);
        let (mut scratch, mut found) = (Vec::new(), Vec::new());
        t.find_many(
            &bytes,
            &keys,
            &vec![42; keys.len()],
            &mut scratch,
            &mut found,
        );
        assert!(found.iter().enumerate().all(|(i, f)| *f == Some(i as u32)));
        assert_eq!(t.slots.len(), slots, "no rehash moved them");
    }
}
