//! The registry of graphs: sharded so that graphs never share one lock,
//! with a lock-free state word per graph.
//!
//! Locks, always taken in this order and never the other way:
//!
//! 1. `projects` (the per-project index), only by create, remove, listings
//!    and [`replace`](Registry::replace);
//! 2. one shard of the key map, held only to look a graph up (read) or to
//!    insert or remove it (write); a lookup releases it before the graph's
//!    mutex is taken, only a create or a removal holds it (and `projects`)
//!    while it takes the graph's mutex, so that checking the graph's state
//!    and linking or unlinking it are one step;
//! 3. one graph's mutex, held for a whole command: apply, then publish the
//!    state word, fire tokens, send jobs and offer events;
//! 4. `absent`, the request windows of keys with no graph: taken by a
//!    create (to hand the key's window to the new graph), a removal (to
//!    keep the removed graph's), and a command with a request id that
//!    finds no graph, which holds its shard's read lock meanwhile so that
//!    no create slips in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::Config;
use crate::graph::{GraphData, Requests};
use crate::id::{Epoch, GraphId, GraphKey, ProjectId};
use crate::state::GraphState;
use crate::sync::{
    Arc, AtomicU64, Mutex, MutexGuard, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use crate::time::Timestamp;

/// The state code of a removed graph in the state word.
const REMOVED: u64 = 0xFF;
const NO_DEADLINE: u64 = u64::MAX;

/// What the graph's mutex guards.
pub(crate) struct Slot {
    pub(crate) data: GraphData,
}

/// A graph in the registry.
pub(crate) struct GraphCell {
    /// `epoch << 8 | state code`, written under the mutex after every
    /// commit, read without any lock.
    word: AtomicU64,
    /// The graph's next deadline in milliseconds, `NO_DEADLINE` if none.
    deadline: AtomicU64,
    pub(crate) slot: Mutex<Slot>,
}

impl GraphCell {
    pub(crate) fn new(data: GraphData) -> Self {
        let word = if data.removed {
            REMOVED
        } else {
            pack(data.state, data.epoch)
        };
        data.fence.set(data.epoch, data.removed);
        Self {
            word: AtomicU64::new(word),
            deadline: AtomicU64::new(NO_DEADLINE),
            slot: Mutex::new(Slot { data }),
        }
    }

    /// A cell for `key` that reads as removed: the handle a repeated
    /// create gets when its graph is gone.
    pub(crate) fn detached(key: &GraphKey) -> Self {
        let mut data = GraphData::new(key.clone(), Timestamp::ZERO, Requests::default());
        data.removed = true;
        Self::new(data)
    }

    /// State and epoch, `None` once removed. One atomic load.
    #[inline]
    pub(crate) fn status(&self) -> Option<(GraphState, Epoch)> {
        let w = self.word.load(Ordering::Acquire);
        let code = (w & 0xFF) as u8;
        GraphState::from_code(code).map(|s| (s, Epoch(w >> 8)))
    }

    /// Makes the graph's committed state visible to lock-free readers.
    /// Called with the mutex held.
    pub(crate) fn publish(&self, data: &GraphData, cfg: &Config) {
        let word = if data.removed {
            REMOVED
        } else {
            pack(data.state, data.epoch)
        };
        self.word.store(word, Ordering::Release);
        // After the state word: a worker that finds its token void finds
        // the new state too.
        data.fence.set(data.epoch, data.removed);
        let d = if data.removed {
            None
        } else {
            data.next_deadline(cfg)
        };
        // A deadline saturated at the end of time must not read as "none",
        // or `expire` would never honour it: it is stored a millisecond
        // early (an `expire` then finds nothing due and changes nothing).
        self.deadline.store(
            d.map_or(NO_DEADLINE, |t| t.as_millis().min(NO_DEADLINE - 1)),
            Ordering::Release,
        );
    }

    #[inline]
    pub(crate) fn deadline(&self) -> Option<Timestamp> {
        match self.deadline.load(Ordering::Acquire) {
            NO_DEADLINE => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }
}

#[inline]
fn pack(state: GraphState, epoch: Epoch) -> u64 {
    (epoch.0.min(u64::MAX >> 8) << 8) | u64::from(state.code())
}

/// The shards' hasher: a key's [`Hash`](std::hash::Hash) writes one
/// `u64`, [`GraphKey::hash64`], made of its ids' keyed hashes, which this
/// passes through. A lookup by key so hashes nothing: the ids were hashed
/// once, when they were made, with a per-process random key, so clients
/// cannot choose colliding keys.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    /// Not reached: a key writes one `u64`. Mixes the bytes in all the
    /// same, so that a map of this hasher stays a map.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

type Map = HashMap<GraphKey, Arc<GraphCell>, BuildHasherDefault<KeyHasher>>;

/// A shard: its lock and map on cache lines of their own. Taking a read
/// lock writes the lock's word, so two threads reading graphs of two
/// shards that shared a line would pass the line back and forth; aligned
/// to 128 bytes, since x86 processors fetch lines in adjacent pairs.
#[repr(align(128))]
struct Shard(RwLock<Map>);

impl std::ops::Deref for Shard {
    type Target = RwLock<Map>;

    #[inline]
    fn deref(&self) -> &RwLock<Map> {
        &self.0
    }
}

/// Graphs by key, and by project for listings.
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    projects: RwLock<Index>,
    absent: Mutex<Absent>,
}

/// The request windows of keys with no graph, bounded: when there are
/// more than the bound, the key whose newest answer is oldest goes first
/// (ties by key), so that the same commands leave the same windows.
#[derive(Default)]
pub(crate) struct Absent {
    windows: HashMap<GraphKey, Requests>,
    order: BTreeSet<(Timestamp, GraphKey)>,
}

impl Absent {
    /// Runs `f` on the key's window (an empty one if it has none) and
    /// keeps what is left of it, within `cap` windows.
    pub(crate) fn with_window<R>(
        &mut self,
        key: &GraphKey,
        cap: usize,
        f: impl FnOnce(&mut Requests) -> R,
    ) -> R {
        let mut w = self.take(key);
        let out = f(&mut w);
        self.put(key, w, cap);
        out
    }

    /// Takes the key's window out.
    pub(crate) fn take(&mut self, key: &GraphKey) -> Requests {
        match self.windows.remove(key) {
            Some(w) => {
                if let Some(t) = w.newest() {
                    self.order.remove(&(t, key.clone()));
                }
                w
            }
            None => Requests::default(),
        }
    }

    /// Keeps `w` as the key's window (dropped if empty), then evicts
    /// windows past `cap`.
    pub(crate) fn put(&mut self, key: &GraphKey, w: Requests, cap: usize) {
        let Some(t) = w.newest() else {
            return;
        };
        self.order.insert((t, key.clone()));
        self.windows.insert(key.clone(), w);
        while self.windows.len() > cap {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            self.windows.remove(&k);
        }
    }

    /// Every window, in key order.
    pub(crate) fn sorted(&self) -> Vec<(&GraphKey, &Requests)> {
        let mut v: Vec<_> = self.windows.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }
}

/// The project index and the key's shard, both held for writing: a create
/// or a removal, checked and carried out as one step.
pub(crate) struct IndexGuard<'a> {
    registry: &'a Registry,
    index: RwLockWriteGuard<'a, Index>,
    shard: RwLockWriteGuard<'a, Map>,
}

impl IndexGuard<'_> {
    /// The key's graph, if it has one.
    pub(crate) fn cell(&self, key: &GraphKey) -> Option<Arc<GraphCell>> {
        self.shard.get(key).cloned()
    }

    /// How many graphs there are.
    pub(crate) fn count(&self) -> usize {
        self.index.count
    }

    /// How many graphs `project` holds.
    pub(crate) fn project_count(&self, project: &ProjectId) -> usize {
        self.index.by_project.get(project).map_or(0, BTreeSet::len)
    }

    /// Links a new graph under `key` (free: the caller checked).
    pub(crate) fn insert(&mut self, key: &GraphKey, cell: Arc<GraphCell>) {
        self.shard.insert(key.clone(), cell);
        self.index
            .by_project
            .entry(key.project.clone())
            .or_default()
            .insert(key.graph.clone());
        self.index.count += 1;
    }

    /// Unlinks the key's graph.
    pub(crate) fn unlink(&mut self, key: &GraphKey) {
        if self.shard.remove(key).is_none() {
            return;
        }
        if let Some(set) = self.index.by_project.get_mut(&key.project) {
            set.remove(&key.graph);
            if set.is_empty() {
                self.index.by_project.remove(&key.project);
            }
        }
        self.index.count -= 1;
    }

    /// The windows of keys with no graph.
    pub(crate) fn absent(&self) -> MutexGuard<'_, Absent> {
        self.registry.absent.lock()
    }
}

/// A key with no graph, held so: its shard's read lock (no create can
/// link a graph under it meanwhile) and the windows of absent keys.
pub(crate) struct AbsentGuard<'a> {
    _shard: RwLockReadGuard<'a, Map>,
    pub(crate) absent: MutexGuard<'a, Absent>,
}

/// Graph ids by project, and their number.
#[derive(Default)]
struct Index {
    by_project: BTreeMap<ProjectId, BTreeSet<GraphId>>,
    count: usize,
}

impl Registry {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.clamp(1, 1 << 16);
        Self {
            shards: (0..n).map(|_| Shard(RwLock::new(Map::default()))).collect(),
            projects: RwLock::new(Index::default()),
            absent: Mutex::new(Absent::default()),
        }
    }

    /// The key's shard: the high half of its hash (the maps inside use
    /// the low bits, and the top seven).
    #[inline]
    fn shard_index(&self, key: &GraphKey) -> usize {
        ((key.hash64() >> 32) % self.shards.len() as u64) as usize
    }

    #[inline]
    fn shard(&self, key: &GraphKey) -> &Shard {
        &self.shards[self.shard_index(key)]
    }

    /// The graph's cell; the shard lock is released on return.
    #[inline]
    pub(crate) fn get(&self, key: &GraphKey) -> Option<Arc<GraphCell>> {
        self.shard(key).read().get(key).cloned()
    }

    /// Runs `f` on the graph's cell under the shard's read lock: no
    /// reference count is touched, for the registry's state read.
    #[inline]
    pub(crate) fn with<R>(&self, key: &GraphKey, f: impl FnOnce(&GraphCell) -> R) -> Option<R> {
        self.shard(key).read().get(key).map(|c| f(c))
    }

    /// Locks the index and the key's shard for a create or a removal.
    pub(crate) fn lock_index(&self, key: &GraphKey) -> IndexGuard<'_> {
        let index = self.projects.write();
        let shard = self.shard(key).write();
        IndexGuard {
            registry: self,
            index,
            shard,
        }
    }

    /// Holds a key that has no graph (see [`AbsentGuard`]); `None` if it
    /// has one.
    pub(crate) fn lock_absent(&self, key: &GraphKey) -> Option<AbsentGuard<'_>> {
        let shard = self.shard(key).read();
        if shard.contains_key(key) {
            return None;
        }
        Some(AbsentGuard {
            _shard: shard,
            absent: self.absent.lock(),
        })
    }

    /// How many graphs there are.
    pub(crate) fn len(&self) -> usize {
        self.projects.read().count
    }

    /// Replaces every graph and every absent window; returns the graphs
    /// replaced. Holds the index and every shard for writing meanwhile.
    pub(crate) fn replace(
        &self,
        cells: Vec<(GraphKey, Arc<GraphCell>)>,
        absent: Absent,
    ) -> Vec<Arc<GraphCell>> {
        let mut index = self.projects.write();
        let mut shards: Vec<_> = self.shards.iter().map(|s| s.write()).collect();
        let mut old = Vec::new();
        for s in &mut shards {
            old.extend(s.drain().map(|(_, c)| c));
        }
        *index = Index::default();
        for (key, cell) in cells {
            let i = self.shard_index(&key);
            index
                .by_project
                .entry(key.project.clone())
                .or_default()
                .insert(key.graph.clone());
            index.count += 1;
            shards[i].insert(key, cell);
        }
        *self.absent.lock() = absent;
        old
    }

    /// Runs `f` on the windows of absent keys.
    pub(crate) fn with_absent<R>(&self, f: impl FnOnce(&Absent) -> R) -> R {
        f(&self.absent.lock())
    }

    /// The project's graphs in id order, from `offset`, at most `limit`,
    /// and how many it has.
    pub(crate) fn project_graphs(
        &self,
        project: &ProjectId,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<(GraphKey, Arc<GraphCell>)>) {
        let index = self.projects.read();
        let Some(set) = index.by_project.get(project) else {
            return (0, Vec::new());
        };
        let page = set
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|g| {
                let key = GraphKey::new(project.clone(), g.clone());
                let cell = self.shard(&key).read().get(&key).cloned()?;
                Some((key, cell))
            })
            .collect();
        (set.len(), page)
    }

    /// Every graph, in key order.
    pub(crate) fn all(&self) -> Vec<(GraphKey, Arc<GraphCell>)> {
        let mut out: Vec<_> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .iter()
                    .map(|(k, c)| (k.clone(), c.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Calls `f` on every graph's cell, shard by shard, without sorting or
    /// copying keys.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<GraphCell>)) {
        for s in self.shards.iter() {
            for c in s.read().values() {
                f(c);
            }
        }
    }
}
