//! The registry of graphs: sharded so that graphs never share one lock,
//! with a lock-free state word per graph.
//!
//! Locks, always taken in this order and never the other way:
//!
//! 1. `projects` (the per-project index), only by create, remove and
//!    listings;
//! 2. one shard of the key map, held only to look a graph up (read) or to
//!    insert or remove it (write); a lookup releases it before the graph's
//!    mutex is taken, only a removal holds it (and `projects`) while it
//!    takes the graph's mutex, so that checking the graph's state and
//!    unlinking it are one step;
//! 3. one graph's mutex, held for a whole command: apply, then publish the
//!    state word, fire tokens, send jobs and offer events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};

use crate::config::Config;
use crate::graph::{Effects, GraphData};
use crate::id::{Epoch, GraphId, GraphKey, ProjectId};
use crate::state::GraphState;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, RwLock};
use crate::time::Timestamp;

/// The state code of a removed graph in the state word.
const REMOVED: u64 = 0xFF;
const NO_DEADLINE: u64 = u64::MAX;

/// What the graph's mutex guards.
pub(crate) struct Slot {
    pub(crate) data: GraphData,
    /// Reused between commands, so a command allocates nothing for its
    /// effects in the common case.
    pub(crate) fx: Effects,
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
        let word = pack(data.state, data.epoch);
        data.fence.set(data.epoch, data.removed);
        Self {
            word: AtomicU64::new(word),
            deadline: AtomicU64::new(NO_DEADLINE),
            slot: Mutex::new(Slot {
                data,
                fx: Effects::default(),
            }),
        }
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

type Shard = RwLock<HashMap<GraphKey, Arc<GraphCell>>>;

/// Graphs by key, and by project for listings.
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: RandomState,
    projects: RwLock<Index>,
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
            shards: (0..n).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            projects: RwLock::new(Index::default()),
        }
    }

    #[inline]
    fn shard(&self, key: &GraphKey) -> &Shard {
        let h = self.hasher.hash_one(key);
        &self.shards[(h % self.shards.len() as u64) as usize]
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

    /// Inserts a new graph if the key is free and fewer than `max` graphs
    /// exist. `announce` runs before the shard lock is released, so nothing
    /// can reach the graph before it ran.
    pub(crate) fn insert(
        &self,
        key: &GraphKey,
        max: usize,
        cell: Arc<GraphCell>,
        announce: impl FnOnce(),
    ) -> Result<(), InsertError> {
        let mut index = self.projects.write();
        let mut shard = self.shard(key).write();
        if shard.contains_key(key) {
            return Err(InsertError::Exists);
        }
        if index.count >= max {
            return Err(InsertError::Full);
        }
        shard.insert(key.clone(), cell);
        index
            .by_project
            .entry(key.project.clone())
            .or_default()
            .insert(key.graph.clone());
        index.count += 1;
        announce();
        Ok(())
    }

    /// How many graphs there are.
    pub(crate) fn len(&self) -> usize {
        self.projects.read().count
    }

    /// Removes `key` if `decide` agrees. `decide` runs with the index locks
    /// held and gets the graph's cell.
    pub(crate) fn remove_if<T, E>(
        &self,
        key: &GraphKey,
        missing: E,
        decide: impl FnOnce(&GraphCell) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut index = self.projects.write();
        let mut shard = self.shard(key).write();
        let Some(cell) = shard.get(key) else {
            return Err(missing);
        };
        let out = decide(cell)?;
        shard.remove(key);
        if let Some(set) = index.by_project.get_mut(&key.project) {
            set.remove(&key.graph);
            if set.is_empty() {
                index.by_project.remove(&key.project);
            }
        }
        index.count -= 1;
        Ok(out)
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

/// Why [`Registry::insert`] refused.
pub(crate) enum InsertError {
    Exists,
    Full,
}
