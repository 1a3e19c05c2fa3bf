//! Time and id sources, both injectable.
//!
//! The apply step never reads a clock or draws an id: the engine asks its
//! [`Clock`] and [`IdSource`] once per call, puts the answers in the
//! [`Command`](crate::Command), and applies that. Tests and replicas inject
//! their own sources and get the same state from the same commands.

use std::fmt;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::id::JobId;
use crate::sync::{AtomicU64, Ordering};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Times saturate at [`Timestamp::MAX`], one millisecond short of
/// `u64::MAX` (some 584 million years out); that spare value lets an
/// `Option<Timestamp>` take 8 bytes, which the task table stores three of
/// per task.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "u64", into = "u64")
)]
// Holds the bitwise complement of the milliseconds, never zero.
pub struct Timestamp(NonZeroU64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp::from_millis(0);

    /// The latest representable time: `u64::MAX - 1` milliseconds.
    pub const MAX: Timestamp = Timestamp(NonZeroU64::MIN);

    /// A timestamp `ms` milliseconds after the Unix epoch (saturating at
    /// [`Timestamp::MAX`]).
    #[inline]
    pub const fn from_millis(ms: u64) -> Self {
        match NonZeroU64::new(!ms) {
            Some(n) => Self(n),
            None => Self::MAX,
        }
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub const fn as_millis(self) -> u64 {
        !self.0.get()
    }

    /// This time plus `d`, saturating at [`Timestamp::MAX`].
    #[inline]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self::from_millis(self.as_millis().saturating_add(ms))
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.as_millis().saturating_sub(earlier.as_millis()))
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::ZERO
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_millis().cmp(&other.as_millis())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timestamp").field(&self.as_millis()).finish()
    }
}

impl From<u64> for Timestamp {
    fn from(ms: u64) -> Self {
        Self::from_millis(ms)
    }
}

impl From<Timestamp> for u64 {
    fn from(t: Timestamp) -> Self {
        t.as_millis()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.as_millis())
    }
}

/// Where the engine gets the time of a command.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// ```
/// use graph_lifecycle::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: Timestamp) -> Self {
        Self(AtomicU64::new(t.as_millis()))
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d`, saturating at [`Timestamp::MAX`].
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let max = Timestamp::MAX.as_millis();
        let mut now = self.0.load(Ordering::SeqCst);
        loop {
            let next = now.saturating_add(ms).min(max);
            match self
                .0
                .compare_exchange(now, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(seen) => now = seen,
            }
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// Where the engine gets the id of a new task.
///
/// Ids must be unique for the life of the engine (and of its journal, when
/// there is one). The engine refuses a command whose job id is already in
/// the graph's table, so a source that repeats itself causes errors, never
/// corruption.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh id for a task created at `now`.
    fn next_id(&self, now: Timestamp) -> JobId;
}

/// Time-ordered UUIDv7 ids: the default.
///
/// The first 48 bits are the command's time in milliseconds, so ids sort
/// by creation time to the millisecond; the other 74 bits are random,
/// from a generator per thread seeded from the operating system, so
/// drawing an id takes no lock and no system call.
///
/// ```
/// use graph_lifecycle::{IdSource, Timestamp, UuidV7Ids};
/// let a = UuidV7Ids.next_id(Timestamp::from_millis(1_000));
/// let b = UuidV7Ids.next_id(Timestamp::from_millis(1_001));
/// assert!(a < b);
/// assert_eq!(a.as_uuid().get_version_num(), 7);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV7Ids;

impl IdSource for UuidV7Ids {
    fn next_id(&self, now: Timestamp) -> JobId {
        let r = random_u128().to_le_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&r[..10]);
        JobId::from_uuid(
            uuid::Builder::from_unix_timestamp_millis(now.as_millis(), &tail).into_uuid(),
        )
    }
}

/// 128 random bits from a per-thread SplitMix64 generator, seeded from the
/// operating system's randomness (through std's `RandomState`).
fn random_u128() -> u128 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};

    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x5eed_u64));
    }
    fn next(state: &Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    STATE.with(|s| (u128::from(next(s)) << 64) | u128::from(next(s)))
}

/// Deterministic v7-shaped ids from a counter: the same sequence in every
/// run, for tests and for replicas that must agree on ids.
///
/// ```
/// use graph_lifecycle::{IdSource, SequentialIds, Timestamp};
/// let ids = SequentialIds::new(7);
/// let a = ids.next_id(Timestamp::from_millis(5));
/// let b = ids.next_id(Timestamp::from_millis(5));
/// assert!(a < b);
/// assert_eq!(a, SequentialIds::new(7).next_id(Timestamp::from_millis(5)));
/// ```
#[derive(Debug, Default)]
pub struct SequentialIds {
    seed: u64,
    counter: AtomicU64,
}

impl SequentialIds {
    /// A source whose ids embed the low 12 bits of `seed`, so that sources
    /// with different seeds (below 4096) never collide.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self, now: Timestamp) -> JobId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // The 10 bytes after the timestamp: 2 of seed, 8 of counter. The
        // builder overwrites the version nibble (top of the seed) and the
        // variant bits (top of the counter); what is left still makes ids
        // sort by (time, seed, counter) and stay distinct.
        let mut tail = [0u8; 10];
        tail[..2].copy_from_slice(&self.seed.to_be_bytes()[6..]);
        tail[2..].copy_from_slice(&n.to_be_bytes());
        JobId::from_uuid(
            uuid::Builder::from_unix_timestamp_millis(now.as_millis(), &tail).into_uuid(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_advanced_past_the_end_of_time_stays_there() {
        let c = ManualClock::new(Timestamp::from_millis(u64::MAX - 10));
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Timestamp::from_millis(u64::MAX - 5));
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Timestamp::MAX);
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Timestamp::MAX);
    }
}
